"""Guest memory and the I/O port space, and the board devices in them.

Pins QEMU 2.11's memory API as a guest access, qtest or HMP sees it: RAM is sparse
and untouched RAM reads zeros; unassigned memory reads 0 (memory.c
unassigned_mem_accepts refuses, memory_region_dispatch_read returns
unassigned_mem_read's 0); unassigned ports read all ones (ioport.c
unassigned_io_ops); accesses are split as exec.c memory_access_size and
flatview_read_continue split them and adjusted as memory.c
access_with_adjusted_size does. The devices are those of hw/pci-host/piix.c,
hw/isa/lpc_ich9.c, hw/i386/pc.c (port 92), hw/input/pckbd.c, hw/acpi/core.c,
hw/misc/pvpanic.c and hw/watchdog/wdt_ib700.c.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.address_space import (
    Access,
    IoPorts,
    MemoryLayout,
    PortRegion,
    Ram,
    RamRange,
    SystemMemory,
)
from devices.board import board_kind
from devices.chipset import (
    PM_TIMER_FREQUENCY,
    add_ib700,
    add_pvpanic,
    build_address_spaces,
    memory_layout,
)
from devices.host import RecordingDeviceHost
from vmm.cmdline import CommandLineError

MIB = 1 << 20
GIB = 1 << 30


# -- RAM and its layout -------------------------------------------------------------------


def test_ram_is_allocated_on_first_write() -> None:
    """-m 128 allocates nothing until the guest writes (a page at a time); a page
    zeroed entirely is given back."""
    ram = Ram(size=128 * MIB)
    assert ram.read(0, 16) == bytes(16)
    assert ram.pages_allocated() == 0
    ram.write(4095, b"\x01\x02")
    assert ram.pages_allocated() == 2
    assert ram.read(4094, 4) == b"\x00\x01\x02\x00"
    ram.fill(0, 8192, 0)
    assert ram.pages_allocated() == 0
    ram.fill(0, 100, 0)  # zeros into a missing page allocate nothing
    assert ram.pages_allocated() == 0


@given(st.lists(st.tuples(st.integers(0, 3 * 4096), st.binary(max_size=5000)), max_size=8))
def test_ram_reads_back_what_was_written(writes: list[tuple[int, bytes]]) -> None:
    ram = Ram(size=4 * 4096 + 5000)
    shadow = bytearray(ram.size)
    for offset, data in writes:
        ram.write(offset, data)
        shadow[offset:offset + len(data)] = data
    assert ram.read(0, ram.size) == bytes(shadow)


@pytest.mark.parametrize(("machine", "ram", "ranges"), [
    ("none", 128 * MIB, ((0, 128 * MIB, 0),)),
    ("none", 0, ()),
    ("pc-i440fx-2.11", 128 * MIB, ((0, 0xA0000, 0), (0x100000, 127 * MIB, 0x100000))),
    # pc_init1: the 3.5 GiB split, lowered to 3 GiB by gigabyte_align (2.1 and later)
    ("pc-i440fx-2.11", 4 * GIB, ((0, 0xA0000, 0), (0x100000, 3 * GIB - MIB, MIB),
                                 (4 * GIB, GIB, 3 * GIB))),
    ("pc-i440fx-1.7", 4 * GIB, ((0, 0xA0000, 0), (0x100000, 0xE0000000 - MIB, MIB),
                                (4 * GIB, 4 * GIB - 0xE0000000, 0xE0000000))),
    # pc_q35_init: 2.75 GiB below 4G, or 2 GiB when the RAM does not fit there
    ("pc-q35-2.11", 3 * GIB, ((0, 0xA0000, 0), (0x100000, 2 * GIB - MIB, MIB),
                              (4 * GIB, GIB, 2 * GIB))),
    ("pc-q35-2.11", 0xA0000000, ((0, 0xA0000, 0), (0x100000, 0xA0000000 - MIB, MIB))),
])
def test_memory_layout(machine: str, ram: int, ranges: tuple[tuple[int, int, int], ...]) -> None:
    """hw/core/null-machine.c (RAM at 0), hw/i386/pc_piix.c pc_init1 and
    hw/i386/pc_q35.c pc_q35_init (the split below/above 4 GiB), hw/i386/pc.c
    pc_memory_init (ram-below-4g, ram-above-4g; the legacy window is not RAM)."""
    assert memory_layout(machine, ram) == MemoryLayout(
        ram_size=ram, ranges=tuple(RamRange(*r) for r in ranges))


def test_unassigned_memory_reads_zero_and_drops_writes() -> None:
    """memory.c: io_mem_unassigned refuses every access (unassigned_mem_accepts),
    so memory_region_dispatch_read returns unassigned_mem_read's 0 and a write
    goes nowhere; a read across the end of RAM mixes both."""
    mem = SystemMemory.create(memory_layout("none", 64 * 1024))
    mem.write(64 * 1024 - 2, b"\xaa\xbb\xcc\xdd")
    assert mem.read(64 * 1024 - 2, 4) == b"\xaa\xbb\x00\x00"
    mem.write(1 << 40, b"\xff")
    assert mem.read(1 << 40, 1) == b"\x00"


def test_pc_ram_above_4g_and_the_legacy_window() -> None:
    """RAM above 4 GiB continues the RAM below it; the VGA/ROM window below 1 MiB
    is not RAM (ROM contents are not modelled)."""
    mem = SystemMemory.create(memory_layout("pc-i440fx-2.11", 4 * GIB))
    mem.write(4 * GIB, b"hi")
    assert mem.ram.read(3 * GIB, 2) == b"hi"
    mem.write(0xB8000, b"x")
    assert mem.read(0xB8000, 1) == b"\x00"
    mem.write(0x9FFFF, b"ab")
    assert mem.read(0x9FFFF, 2) == b"a\x00"


def test_physical_addresses_wrap_at_2_64() -> None:
    """hwaddr arithmetic wraps: an access at the top of the space continues at 0."""
    mem = SystemMemory.create(memory_layout("none", MIB))
    mem.write((1 << 64) - 1, b"\x11\x22")
    assert mem.read(0, 1) == b"\x22"


# -- the port space -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        self.calls.append(("r", offset, 0, size))
        return 0x1234_5678_9ABC_DEF0 >> (offset * 8)

    def write(self, offset: int, value: int, size: int) -> None:
        self.calls.append(("w", offset, value, size))


def test_unassigned_ports_read_all_ones() -> None:
    """ioport.c unassigned_io_ops (the root of address_space_io): all ones of the
    access size; past 0xffff the access leaves the space and reads 0."""
    io = IoPorts()
    assert (io.read(0x80, 1), io.read(0x80, 2), io.read(0x80, 4)) == (0xFF, 0xFFFF,
                                                                       0xFFFF_FFFF)
    assert io.read(0xFFFF, 2) == 0x00FF
    assert io.read(0xFFFE, 4) == 0x0000_FFFF


def test_accesses_split_at_region_ends_and_by_valid_size() -> None:
    """flatview_read_continue: a 4-byte read over a 2-byte region ending early is a
    2-byte access to it, then 2 bytes of the unassigned root; memory_access_size caps
    a piece at valid.max_access_size and at the offset's alignment."""
    dev = Recorder()
    io = IoPorts()
    io.map(PortRegion("two", 0x604, 2, dev, Access(valid_max=2)))
    assert io.read(0x604, 4) == 0xFFFF_DEF0
    assert dev.calls == [("r", 0, 0, 2)]
    dev.calls.clear()
    assert io.read(0x605, 1) == 0xDE  # offset 1: a 1-byte access
    io.write(0x603, 0xAABBCCDD, 4)
    assert dev.calls == [("r", 1, 0, 1), ("w", 0, 0xBBCC, 2)]


def test_impl_sizes_split_or_widen_device_accesses() -> None:
    """access_with_adjusted_size: a device implementing only 1-byte accesses gets a
    2-byte access as two calls, little-endian."""
    dev = Recorder()
    io = IoPorts()
    io.map(PortRegion("bytes", 0x500, 4, dev, Access(impl_min=1, impl_max=1)))
    io.write(0x500, 0x1122, 2)
    assert dev.calls == [("w", 0, 0x22, 1), ("w", 1, 0x11, 1)]


def test_overlaps_go_to_the_higher_priority_then_the_later_region() -> None:
    low, high = Recorder(), Recorder()
    io = IoPorts()
    io.map(PortRegion("high", 0xCF9, 1, high, priority=1))
    io.map(PortRegion("low", 0xCF8, 4, low))
    io.write(0xCF9, 6, 1)
    io.write(0xCF8, 1, 1)
    assert (low.calls, high.calls) == ([("w", 0, 1, 1)], [("w", 0, 6, 1)])


# -- the boards ---------------------------------------------------------------------------


def test_board_kinds() -> None:
    assert [board_kind(m) for m in ("none", "isapc", "pc", "pc-1.0", "pc-i440fx-2.11",
                                    "pc-q35-2.11")] == \
        ["none", "isapc", "i440fx", "i440fx", "i440fx", "q35"]


def test_machine_none_has_no_ports() -> None:
    """hw/core/null-machine.c creates no device: every port is unassigned."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("none", 0, host)
    for port in (0x60, 0x64, 0x92, 0xCF9, 0x604):
        spaces.port_write(port, 0xFE, 1)
        assert spaces.port_read(port, 1) == 0xFF
    assert host.take() == []


@pytest.mark.parametrize(("machine", "kept"), [("pc-i440fx-2.11", 0x02),
                                               ("pc-q35-2.11", 0x0A)])
def test_reset_control_register(machine: str, kept: int) -> None:
    """PIIX3 rcr_write / ICH9 ich9_rst_cnt_write: bit 2 requests a guest reset
    (qemu_system_reset_request(SHUTDOWN_CAUSE_GUEST_RESET)) and stores nothing;
    otherwise only the reset-type bits are kept; a system reset clears it."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces(machine, 128 * MIB, host)
    spaces.port_write(0xCF9, 0x0E, 1)
    assert host.take() == ["reset"]
    assert spaces.port_read(0xCF9, 1) == 0
    spaces.port_write(0xCF9, 0x0B, 1)
    assert host.take() == []
    assert spaces.port_read(0xCF9, 1) == kept
    spaces.reset()
    assert spaces.port_read(0xCF9, 1) == 0


def test_isapc_has_no_reset_control_or_acpi() -> None:
    host = RecordingDeviceHost()
    spaces = build_address_spaces("isapc", 128 * MIB, host)
    spaces.port_write(0xCF9, 0x06, 1)
    spaces.port_write(0x604, 0x2000, 2)
    assert host.take() == []
    spaces.port_write(0x64, 0xFE, 1)
    assert host.take() == ["reset"]


def test_port92_fast_reset_on_a_rising_bit_0() -> None:
    """hw/i386/pc.c port92_write: bit 0 going 0 -> 1 requests a reset; a system
    reset clears only bit 0 (port92_reset)."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    spaces.reset()
    spaces.port_write(0x92, 0x03, 1)
    spaces.port_write(0x92, 0x03, 1)
    assert host.take() == ["reset"]
    spaces.reset()
    assert spaces.port_read(0x92, 1) == 0x02


@pytest.mark.parametrize("command", [0xFE, 0xF0, 0xFC])
def test_keyboard_controller_pulse_resets(command: int) -> None:
    """pckbd.c kbd_write_command: 0xfe pulses the reset line; any 0xf0-0xfe pulse
    with bit 0 clear is the same command."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc-q35-2.11", 128 * MIB, host)
    spaces.reset()
    spaces.port_write(0x64, command, 1)
    assert host.take() == ["reset"]


def test_keyboard_controller_registers() -> None:
    """kbd_reset: status CMD|UNLOCKED (0x18), mode KBD_INT|MOUSE_INT, output port
    0xcf; controller commands queue their replies on the keyboard's PS/2 queue;
    0xd1 writes the output port and bit 0 clear resets; an empty queue repeats
    the last byte (ps2_read_data)."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    spaces.reset()
    assert spaces.port_read(0x64, 1) == 0x18
    spaces.port_write(0x64, 0xAA, 1)  # self test
    assert spaces.port_read(0x64, 1) == 0x1D
    assert spaces.port_read(0x60, 1) == 0x55
    assert spaces.port_read(0x64, 1) == 0x1C
    assert spaces.port_read(0x60, 1) == 0x55
    spaces.port_write(0x64, 0xD0, 1)
    assert spaces.port_read(0x60, 1) == 0xCF  # queued before OBF was set
    spaces.port_write(0x64, 0xDD, 1)  # A20 off
    spaces.port_write(0x64, 0xD0, 1)
    assert spaces.port_read(0x60, 1) == 0xCD
    spaces.port_write(0x64, 0xD1, 1)
    spaces.port_write(0x60, 0x02, 1)
    assert host.take() == ["reset"]


@pytest.mark.parametrize(("value", "requested"), [
    (0x2000, ["poweroff"]),       # SLP_TYP 0: S5
    (0x2400, ["suspend"]),        # SLP_TYP 1: S3
    (0x2800, ["suspend-disk"]),   # SLP_TYP 2 = s4_val: S4
    (0x2C00, []),                 # another type: nothing
    (0x0400, []),                 # no SLP_EN
])
def test_acpi_pm1a_control(value: int, requested: list[str]) -> None:
    """hw/acpi/core.c acpi_pm1_cnt_write: SLP_EN with SLP_TYP 0 powers off, 1
    suspends (disable_s3 is not consulted), s4_val (2 on PIIX4 and ICH9) suspends to
    disk; the register keeps the value without SLP_EN."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    spaces.port_write(0x604, value, 2)
    assert host.take() == requested
    assert spaces.port_read(0x604, 2) == value & ~0x2000


def test_acpi_pm1a_control_byte_writes_are_whole_register_writes() -> None:
    """acpi_pm_cnt_write ignores the offset and the size: a byte written to 0x605
    is the register's new value (so 0x20 there is not SLP_EN)."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    spaces.port_write(0x605, 0x20, 1)
    assert host.take() == []
    assert spaces.port_read(0x604, 2) == 0x20


@pytest.mark.parametrize(("machine", "kept"), [("pc", 0x1), ("pc-q35-2.11", 0)])
def test_acpi_registers_across_a_reset(machine: str, kept: int) -> None:
    """piix4_reset does not reset the PM1 registers; ICH9's pm_reset does."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces(machine, 128 * MIB, host)
    spaces.port_write(0x604, 0x1, 2)
    spaces.reset()
    assert spaces.port_read(0x604, 2) == kept


def test_acpi_pm_timer_follows_the_virtual_clock() -> None:
    """acpi_pm_tmr_get: the 3.579545 MHz count of QEMU_CLOCK_VIRTUAL, 24 bits;
    PM1 status has TMR_STS once the overflow time passed (0 after reset: at once),
    and clearing it moves the overflow time to the next 2^23 tick boundary."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    host.vm_clock = 1_000_000_000
    assert spaces.port_read(0x608, 4) == PM_TIMER_FREQUENCY
    assert spaces.port_read(0x600, 2) & 1 == 1
    spaces.port_write(0x600, 1, 2)
    assert spaces.port_read(0x600, 2) & 1 == 0
    # the next boundary is at tick 0x800000: 2.3435... s
    host.vm_clock = 2_343_000_000
    assert spaces.port_read(0x600, 2) & 1 == 0
    host.vm_clock = 2_344_000_000
    assert spaces.port_read(0x600, 2) & 1 == 1
    host.vm_clock = (1 << 24) * 1_000_000_000 // PM_TIMER_FREQUENCY + 1000
    assert spaces.port_read(0x608, 4) < 10


def test_pvpanic() -> None:
    """hw/misc/pvpanic.c: reads PVPANIC_PANICKED, a write with bit 0 panics."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    add_pvpanic(spaces, host)
    assert spaces.port_read(0x505, 1) == 1
    spaces.port_write(0x505, 2, 1)
    spaces.port_write(0x505, 1, 1)
    assert host.take() == ["panicked"]


def test_ib700_watchdog() -> None:
    """wdt_ib700.c: a byte to 0x443 arms the timer (30 s for 0, down to 0 s for
    0xf), a byte to 0x441 disarms it; expiry runs the watchdog action. A 2-byte
    write is two byte writes (ioport.c portio_write), a 4-byte one finds no
    handler; a 4-byte write at 0x443 is cut to 2 bytes by the region's end."""
    host = RecordingDeviceHost()
    spaces = build_address_spaces("pc", 128 * MIB, host)
    add_ib700(spaces, host)
    spaces.port_write(0x443, 0x0, 1)
    host.advance(29 * 10**9)
    spaces.port_write(0x443, 0xE, 1)   # restart: 2 s
    host.advance(1 * 10**9)
    spaces.port_write(0x441, 0, 1)
    host.advance(60 * 10**9)
    assert host.take() == []
    spaces.port_write(0x443, 0x000F, 2)  # 0 s, then the high byte: 30 s
    host.advance(29 * 10**9)
    assert host.take() == []
    host.advance(10**9)
    assert host.take() == ["watchdog"]
    spaces.port_write(0x443, 0x0E, 1)
    spaces.port_write(0x441, 0x0F0F0F0F, 4)
    assert len(host.timers) == 1
    spaces.port_write(0x443, 0x0F0F0F0F, 4)
    host.advance(0)
    assert host.take() == ["watchdog"]
    assert spaces.port_read(0x443, 1) == 0xFF
    spaces.port_write(0x443, 0, 1)
    spaces.reset()
    assert host.timers == []


# -- composed into the machine ------------------------------------------------------------


def test_guest_port_writes_reach_the_machine(vm_cmdline) -> None:
    """The requests go through the Machine's main loop (runstate.md §4): a reset
    through 0xcf9 is RESET {"guest": true}; S3 through PM1a_CNT is SUSPEND."""
    vm = vm_cmdline("-machine", "pc")
    t = vm.talk()
    vm.vm.memory.port_write(0xCF9, 0x06, 1)
    assert t.pending() == []  # not before the main loop runs
    vm.machine.process_requests()
    assert t.pending() == ['{"timestamp": T, "event": "RESET", "data": {"guest": true}}']
    vm.vm.memory.port_write(0x604, 0x2400, 2)
    vm.machine.process_requests()
    assert t.pending() == ['{"timestamp": T, "event": "SUSPEND"}']
    assert t.execute("query-status")["return"]["status"] == "suspended"


def test_a_system_reset_keeps_ram(vm_cmdline) -> None:
    """qemu_system_reset resets devices (qemu_devices_reset); RAM has no reset
    handler and keeps its contents."""
    vm = vm_cmdline("-machine", "none", "-m", "1")
    vm.vm.memory.write(0x1000, b"kept")
    vm.talk().execute("system_reset")
    vm.machine.process_requests()
    assert vm.vm.memory.read(0x1000, 4) == b"kept"


def test_pvpanic_device_reports_a_panic(vm_cmdline) -> None:
    """-device pvpanic, then a write of 1 to port 0x505 (runstate.md §0, §4.5):
    GUEST_PANICKED pause, STOP, GUEST_PANICKED poweroff, then SHUTDOWN."""
    vm = vm_cmdline("-machine", "pc", "-device", "pvpanic")
    t = vm.talk()
    assert vm.vm.memory.port_read(0x505, 1) == 1
    vm.vm.memory.port_write(0x505, 1, 1)
    vm.machine.process_requests()
    assert t.pending() == [
        '{"timestamp": T, "event": "GUEST_PANICKED", "data": {"action": "pause"}}',
        '{"timestamp": T, "event": "STOP"}',
        '{"timestamp": T, "event": "GUEST_PANICKED", "data": {"action": "poweroff"}}',
        '{"timestamp": T, "event": "SHUTDOWN", "data": {"guest": true}}',
    ]


def test_pvpanic_ioport_property(vm_cmdline) -> None:
    vm = vm_cmdline("-machine", "q35", "-device", "pvpanic,ioport=0x600a")
    assert vm.vm.memory.port_read(0x505, 1) == 0xFF
    assert vm.vm.memory.port_read(0x600A, 1) == 1


def test_ib700_watchdog_from_the_command_line(vm_cmdline) -> None:
    """-watchdog ib700 adds the device (hw/watchdog/watchdog.c select_watchdog); a
    byte to 0x443 arms it on the virtual clock; at expiry the action runs
    (runstate.md §4.6: pause gives WATCHDOG, then STOP)."""
    vm = vm_cmdline("-machine", "pc", "-watchdog", "ib700", "-watchdog-action", "pause")
    t = vm.talk()
    vm.vm.memory.port_write(0x443, 0xE, 1)  # 2 s
    vm.tick(1.9)
    assert t.pending() == []
    vm.tick(0.1)
    assert t.pending() == ['{"timestamp": T, "event": "WATCHDOG", "data": {"action": "pause"}}',
                           '{"timestamp": T, "event": "STOP"}']


@pytest.mark.parametrize(("argv", "message"), [
    (("-machine", "none", "-device", "pvpanic"),
     "-device pvpanic: No 'ISA' bus found for device 'pvpanic'"),
    (("-machine", "none", "-watchdog", "ib700"), "No 'ISA' bus found for device 'ib700'"),
    (("-device", "pvpanic,ioport=0x10000"),
     "-device pvpanic,ioport=0x10000: Parameter 'ioport' expects uint16_t"),
    (("-device", "pvpanic,ioport=five"),
     "-device pvpanic,ioport=five: Parameter 'ioport' expects an int64 value or range"),
])
def test_port_device_errors(vm_cmdline, argv: tuple[str, ...], message: str) -> None:
    """qdev-monitor.c qdev_device_add (no ISA bus on -machine none); the uint16
    property through the string input visitor."""
    with pytest.raises(CommandLineError) as err:
        vm_cmdline(*argv)
    assert str(err.value) == message
