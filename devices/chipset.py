"""The PC board devices whose ports a guest (or qtest, or HMP `o`) uses to reset,
power off, suspend or panic the machine, and the address spaces of each board.

Pure model of the `devices` layer. Each device is a `PortDevice` of
`devices.address_space` and asks the Machine for a reset, a power-off and so on
through `devices.host.DeviceHost`; the request is carried out by the Machine's main
loop afterwards, as in QEMU (so a qtest reply or an HMP prompt comes first).

Which board has which (`devices.board.board_kind` of the machine type):

| board | RAM | devices |
|---|---|---|
| `none` | flat at 0 | none |
| `isapc` | PC layout | i8042 (0x60, 0x64), port 92, the PIT's channel 0 timer |
| `i440fx` (pc-*) | PC layout, 3.5 GiB below 4G (3 GiB if gigabyte-aligned) | i8042, port 92, PIIX3 RCR (0xcf9), PIIX4 ACPI PM (0x600) |
| `q35` | PC layout, 2 GiB below 4G (2.75 GiB if it fits) | i8042, port 92, ICH9 RST_CNT (0xcf9), ICH9 ACPI PM (0x600) |

[hw/core/null-machine.c; hw/i386/pc_piix.c pc_init1; hw/i386/pc_q35.c pc_q35_init;
hw/i386/pc.c pc_basic_device_init, port92; hw/input/pckbd.c; hw/pci-host/piix.c
rcr_ops; hw/isa/lpc_ich9.c ich9_rst_cnt_ops; hw/acpi/core.c; hw/acpi/piix4.c;
hw/acpi/ich9.c; hw/misc/pvpanic.c; hw/watchdog/wdt_ib700.c.]

The ACPI PM block is mapped where SeaBIOS puts it (PM base 0x600: PM1a_EVT at
0x600, PM1a_CNT at 0x604, PM_TMR at 0x608), since the simulated firmware always runs
(`vmm.machine.guest`); in QEMU the chipset maps it only once the firmware has
programmed its PCI configuration (PIIX4 registers 0x40/0x80, ICH9 PMBASE/ACPI_CTRL).
`-device pvpanic` (port 0x505) and `-device ib700` / `-watchdog ib700` (ports
0x441-0x444) are added by `add_pvpanic` and `add_ib700`.

The i8254 PIT is there for its channel 0 timer only, the one QEMU_CLOCK_VIRTUAL
timer of a PC after a reset (mode 3, count 0x10000: a transition every 32768 PIT
ticks, each also 1 ns later when the tick conversion rounds down: hw/timer/
i8254_common.c pit_get_next_transition_time, hw/timer/i8254.c pit_irq_timer). Its
interrupt is not modelled, so its deadlines matter only to a qtest `clock_step`
without argument; the board arms the timer only for the qtest accelerator (`pit`),
where it costs nothing between steps, rather than wake a running VM's main loop
73 times a second for nothing.

Not modelled: the PS/2 keyboard's and mouse's own command sets (bytes written to
port 0x60 for them are dropped), interrupts (no IRQ lines), the PM timer's overflow
interrupt and its S3 wake-up, the ACPI power button's status bit, the PCI
configuration ports 0xcf8/0xcfc, the PIT's ports, the RTC and the other legacy
devices (their ports read as unassigned).
"""

from __future__ import annotations

import attrs

from devices.address_space import (
    Access,
    AddressSpaces,
    IoPorts,
    MemoryLayout,
    PortRegion,
    SystemMemory,
)
from devices.board import board_kind
from devices.host import DeviceHost, TimerHandle

# PC machine types older than 2.1 do not align the RAM split to a gigabyte
# (hw/i386/pc_piix.c: pc_i440fx_1_7_machine_options and isapc clear gigabyte_align).
_UNALIGNED_PREFIXES = ("pc-0.", "pc-1.", "pc-i440fx-1.", "isapc")

NANOSECONDS_PER_SECOND = 1_000_000_000
PM_TIMER_FREQUENCY = 3_579_545
PIT_FREQ = 1_193_182
ACPI_PM_BASE = 0x600  # SeaBIOS's PM base on both chipsets


def memory_layout(machine_type: str, ram_size: int) -> MemoryLayout:
    """The RAM layout of pc_init1 / pc_q35_init (default max-ram-below-4g)."""
    kind = board_kind(machine_type)
    if kind == "none":
        return MemoryLayout.flat(ram_size)
    if kind == "q35":
        lowmem = 0x80000000 if ram_size >= 0xB0000000 else 0xB0000000
    else:
        lowmem = 0xE0000000
        if ram_size >= lowmem and not machine_type.startswith(_UNALIGNED_PREFIXES):
            lowmem = 0xC0000000
    return MemoryLayout.pc(ram_size, lowmem=lowmem)


def _muldiv64(a: int, b: int, c: int) -> int:
    return (a * b) // c


# -- the devices ------------------------------------------------------------------------


@attrs.define(kw_only=True, eq=False)
class ResetControl:
    """PIIX3's Reset Control Register / ICH9's RST_CNT at port 0xcf9: a write with
    bit 2 (RST_CPU) set requests a guest reset and leaves the register alone; other
    writes keep only the reset-type bits (`keep`: 0x2 on PIIX3, 0xa on ICH9)."""

    host: DeviceHost
    keep: int
    value: int = 0

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, value: int, size: int) -> None:
        if value & 4:
            self.host.guest_reset()
            return
        self.value = value & self.keep

    def reset(self) -> None:
        self.value = 0


@attrs.define(kw_only=True, eq=False)
class Port92:
    """System control port A: bit 0 going from 0 to 1 requests a fast reset, bit 1 is
    A20. A reset clears bit 0 only."""

    host: DeviceHost
    outport: int = 0

    def read(self, offset: int, size: int) -> int:
        return self.outport

    def write(self, offset: int, value: int, size: int) -> None:
        old = self.outport
        self.outport = value & 0xFF
        if value & 1 and not old & 1:
            self.host.guest_reset()

    def reset(self) -> None:
        self.outport &= ~1


PS2_QUEUE_SIZE = 16

KBD_STAT_OBF = 0x01
KBD_STAT_SELFTEST = 0x04
KBD_STAT_CMD = 0x08
KBD_STAT_UNLOCKED = 0x10
KBD_STAT_MOUSE_OBF = 0x20
KBD_MODE_KBD_INT = 0x01
KBD_MODE_MOUSE_INT = 0x02
KBD_MODE_DISABLE_KBD = 0x10
KBD_MODE_DISABLE_MOUSE = 0x20
KBD_OUT_RESET = 0x01
KBD_OUT_A20 = 0x02
KBD_OUT_OBF = 0x10
KBD_OUT_MOUSE_OBF = 0x20
KBD_OUT_ONES = 0xCC
KBD_PENDING_KBD = 1
KBD_PENDING_AUX = 2


@attrs.define(kw_only=True, eq=False)
class Ps2Queue:
    """hw/input/ps2.c's PS2Queue: 16 slots, at most 15 bytes queued; reading an
    empty queue returns the byte read last again."""

    data: list[int] = attrs.Factory(lambda: [0] * PS2_QUEUE_SIZE)
    rptr: int = 0
    wptr: int = 0
    count: int = 0

    def put(self, byte: int) -> bool:
        if self.count >= PS2_QUEUE_SIZE - 1:
            return False
        self.data[self.wptr] = byte & 0xFF
        self.wptr = (self.wptr + 1) % PS2_QUEUE_SIZE
        self.count += 1
        return True

    def take(self) -> int:
        if self.count == 0:
            return self.data[(self.rptr - 1) % PS2_QUEUE_SIZE]
        value = self.data[self.rptr]
        self.rptr = (self.rptr + 1) % PS2_QUEUE_SIZE
        self.count -= 1
        return value

    def clear(self) -> None:
        self.rptr = self.wptr = self.count = 0


@attrs.define(kw_only=True, eq=False)
class I8042:
    """The keyboard controller: data port 0x60 (`DataPort`), command/status port
    0x64 (`CommandPort`). Command 0xfe (and any 0xf0-0xfe pulse of bit 0) requests a
    reset, as does writing an output port value with bit 0 clear (command 0xd1)."""

    host: DeviceHost
    write_cmd: int = 0
    status: int = 0
    mode: int = 0
    outport: int = 0
    pending: int = 0
    kbd: Ps2Queue = attrs.Factory(Ps2Queue)
    mouse: Ps2Queue = attrs.Factory(Ps2Queue)

    def _update(self) -> None:
        """kbd_update_irq (the status and output-port copies of the OBF bits)."""
        self.status &= ~(KBD_STAT_OBF | KBD_STAT_MOUSE_OBF)
        self.outport &= ~(KBD_OUT_OBF | KBD_OUT_MOUSE_OBF)
        if self.pending:
            self.status |= KBD_STAT_OBF
            self.outport |= KBD_OUT_OBF
            if self.pending == KBD_PENDING_AUX:
                self.status |= KBD_STAT_MOUSE_OBF
                self.outport |= KBD_OUT_MOUSE_OBF

    def _queue(self, byte: int, aux: bool = False) -> None:
        if (self.mouse if aux else self.kbd).put(byte):
            self.pending |= KBD_PENDING_AUX if aux else KBD_PENDING_KBD
            self._update()

    def _outport_write(self, value: int) -> None:
        self.outport = value & 0xFF
        if not value & 1:
            self.host.guest_reset()

    def read_status(self) -> int:
        return self.status

    def write_command(self, value: int) -> None:
        if value & 0xF0 == 0xF0:
            value = 0xFE if not value & 1 else 0xFF
        if value == 0x20:
            self._queue(self.mode)
        elif value in (0x60, 0xD1, 0xD2, 0xD3, 0xD4):
            self.write_cmd = value
        elif value == 0xA7:
            self.mode |= KBD_MODE_DISABLE_MOUSE
        elif value == 0xA8:
            self.mode &= ~KBD_MODE_DISABLE_MOUSE
        elif value in (0xA9, 0xAB):
            self._queue(0x00)
        elif value == 0xAA:
            self.status |= KBD_STAT_SELFTEST
            self._queue(0x55)
        elif value == 0xAD:
            self.mode |= KBD_MODE_DISABLE_KBD
            self._update()
        elif value == 0xAE:
            self.mode &= ~KBD_MODE_DISABLE_KBD
            self._update()
        elif value == 0xC0:
            self._queue(0x80)
        elif value == 0xD0:
            self._queue(self.outport)
        elif value == 0xDF:
            self.outport |= KBD_OUT_A20
        elif value == 0xDD:
            self.outport &= ~KBD_OUT_A20
        elif value == 0xFE:
            self.host.guest_reset()
        # 0xff is a no-op; QEMU reports other commands on stderr and ignores them

    def read_data(self) -> int:
        aux = self.pending == KBD_PENDING_AUX
        queue = self.mouse if aux else self.kbd
        was = queue.count
        value = queue.take()
        if was:
            bit = KBD_PENDING_AUX if aux else KBD_PENDING_KBD
            if queue.count:
                self.pending |= bit
            else:
                self.pending &= ~bit
            self._update()
        return value

    def write_data(self, value: int) -> None:
        cmd = self.write_cmd
        if cmd == 0x60:
            self.mode = value & 0xFF
            self._update()
        elif cmd == 0xD2:
            self._queue(value)
        elif cmd == 0xD3:
            self._queue(value, aux=True)
        elif cmd == 0xD1:
            self._outport_write(value)
        # 0 (the keyboard) and 0xd4 (the mouse): their own command sets, not modelled
        self.write_cmd = 0

    def reset(self) -> None:
        """ps2_kbd_reset and ps2_mouse_reset (queues emptied), then kbd_reset."""
        self.kbd.clear()
        self.mouse.clear()
        self.pending = 0
        self._update()
        self.mode = KBD_MODE_KBD_INT | KBD_MODE_MOUSE_INT
        self.status = KBD_STAT_CMD | KBD_STAT_UNLOCKED
        self.outport = KBD_OUT_RESET | KBD_OUT_A20 | KBD_OUT_ONES


@attrs.define(kw_only=True, eq=False)
class _I8042Data:
    kbd: I8042

    def read(self, offset: int, size: int) -> int:
        return self.kbd.read_data()

    def write(self, offset: int, value: int, size: int) -> None:
        self.kbd.write_data(value)


@attrs.define(kw_only=True, eq=False)
class _I8042Command:
    kbd: I8042

    def read(self, offset: int, size: int) -> int:
        return self.kbd.read_status()

    def write(self, offset: int, value: int, size: int) -> None:
        self.kbd.write_command(value)


ACPI_TMR_STS = 0x0001
ACPI_SLP_EN = 0x2000


@attrs.define(kw_only=True, eq=False)
class AcpiPm:
    """The ACPI PM1a event, control and timer registers [hw/acpi/core.c].

    A PM1a_CNT write with SLP_EN (bit 13) set and SLP_TYP (bits 10-12) 0 powers
    off, 1 suspends to RAM (also when S3 is disabled: `disable_s3` only changes what
    the firmware tables advertise, acpi_pm1_cnt_init), `s4_val` (2) suspends to
    disk; other types do nothing. PIIX4 does not reset these registers on a system
    reset (piix4_reset leaves them); ICH9 does (hw/acpi/ich9.c pm_reset).
    """

    host: DeviceHost
    resets: bool
    s4_val: int = 2
    evt_sts: int = 0
    evt_en: int = 0
    cnt: int = 0
    overflow_time: int = 0  # in PM timer ticks

    def _ticks(self) -> int:
        return _muldiv64(self.host.vm_clock_ns(), PM_TIMER_FREQUENCY, NANOSECONDS_PER_SECOND)

    def status(self) -> int:
        """acpi_pm1_evt_get_sts: the timer status bit is set once the timer passed
        its overflow time."""
        due = _muldiv64(self.overflow_time, NANOSECONDS_PER_SECOND, PM_TIMER_FREQUENCY)
        if self.host.vm_clock_ns() >= due:
            self.evt_sts |= ACPI_TMR_STS
        return self.evt_sts

    def write_status(self, value: int) -> None:
        if self.status() & value & ACPI_TMR_STS:
            self.overflow_time = (self._ticks() + 0x800000) & ~0x7FFFFF
        self.evt_sts &= ~value & 0xFFFF

    def write_control(self, value: int) -> None:
        value &= 0xFFFF
        self.cnt = value & ~ACPI_SLP_EN
        if not value & ACPI_SLP_EN:
            return
        sleep_type = (value >> 10) & 7
        if sleep_type == 0:
            self.host.guest_poweroff()
        elif sleep_type == 1:
            self.host.guest_suspend()
        elif sleep_type == self.s4_val:
            self.host.guest_suspend_disk()

    def timer(self) -> int:
        return self._ticks() & 0xFFFFFF

    def reset(self) -> None:
        if self.resets:
            self.evt_sts = self.evt_en = self.cnt = self.overflow_time = 0


@attrs.define(kw_only=True, eq=False)
class _AcpiEvt:
    pm: AcpiPm

    def read(self, offset: int, size: int) -> int:
        if offset == 0:
            return self.pm.status()
        if offset == 2:
            return self.pm.evt_en
        return 0

    def write(self, offset: int, value: int, size: int) -> None:
        if offset == 0:
            self.pm.write_status(value)
        elif offset == 2:
            self.pm.evt_en = value & 0xFFFF


@attrs.define(kw_only=True, eq=False)
class _AcpiCnt:
    pm: AcpiPm

    def read(self, offset: int, size: int) -> int:
        return self.pm.cnt

    def write(self, offset: int, value: int, size: int) -> None:
        self.pm.write_control(value)


@attrs.define(kw_only=True, eq=False)
class _AcpiTmr:
    pm: AcpiPm

    def read(self, offset: int, size: int) -> int:
        return self.pm.timer()

    def write(self, offset: int, value: int, size: int) -> None:
        pass


@attrs.define(kw_only=True, eq=False)
class Pvpanic:
    """The pvpanic ISA device: reads its supported events (bit 0, PANICKED); a
    write with bit 0 set reports a guest panic."""

    host: DeviceHost

    def read(self, offset: int, size: int) -> int:
        return 1

    def write(self, offset: int, value: int, size: int) -> None:
        if value & 1:
            self.host.guest_panicked()

    def reset(self) -> None:
        pass


# wdt_ib700.c ib700_write_enable_reg: seconds for the low nibble of the value.
IB700_TIMEOUTS = (30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)


@attrs.define(kw_only=True, eq=False)
class Ib700:
    """The iBASE 700 watchdog, a PortioList of byte writes: 0x441-0x442 stop the
    timer, 0x443-0x444 (re)start it with the timeout the value's low nibble selects;
    when it expires the watchdog action runs (ioport.c portio_read/portio_write)."""

    host: DeviceHost
    timer: TimerHandle | None = None

    def read(self, offset: int, size: int) -> int:
        return (1 << (size * 8)) - 1  # no read callbacks: all ones

    def write(self, offset: int, value: int, size: int) -> None:
        # Only 1-byte handlers: a 2-byte access is split into two, a 4-byte one
        # finds no handler at all.
        if size == 1:
            self._byte(offset, value)
        elif size == 2:
            self._byte(offset, value & 0xFF)
            if offset + 1 < (2 if offset < 2 else 4):
                self._byte(offset + 1, value >> 8)

    def _byte(self, offset: int, value: int) -> None:
        if offset < 2:
            self._stop()
        else:
            self._stop()
            deadline = self.host.vm_clock_ns() + \
                IB700_TIMEOUTS[value & 0xF] * NANOSECONDS_PER_SECOND
            self.timer = self.host.vm_call_at(deadline, self._expired)

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        self.host.watchdog_expired()

    def reset(self) -> None:
        self._stop()


@attrs.define(kw_only=True, eq=False)
class PitTimer:
    """Channel 0 of the i8254 in its reset state (mode 3, count 0x10000), as a
    QEMU_CLOCK_VIRTUAL timer from one output transition to the next."""

    host: DeviceHost
    count: int = 0x10000
    count_load_time: int = 0
    next_transition: int = 0
    timer: TimerHandle | None = None

    def transition_after(self, now: int) -> int:
        """pit_get_next_transition_time in mode 3."""
        d = _muldiv64(now - self.count_load_time, PIT_FREQ, NANOSECONDS_PER_SECOND)
        base = d - d % self.count
        half = (self.count + 1) >> 1
        ticks = base + half if d - base < half else base + self.count
        when = self.count_load_time + _muldiv64(ticks, NANOSECONDS_PER_SECOND, PIT_FREQ)
        return when if when > now else now + 1

    def reset(self) -> None:
        """pit_reset_common + pit_reset: the count reloads now, the timer re-arms."""
        if self.timer is not None:
            self.timer.cancel()
        self.count_load_time = self.host.vm_clock_ns()
        self._arm(self.transition_after(self.count_load_time))

    def _arm(self, when: int) -> None:
        self.next_transition = when
        self.timer = self.host.vm_call_at(when, self._fire)

    def _fire(self) -> None:
        """pit_irq_timer: the next transition counts from this one's deadline."""
        self._arm(self.transition_after(self.next_transition))


# -- the boards -------------------------------------------------------------------------

_BYTE = Access(impl_min=1, impl_max=1)


def build_address_spaces(machine_type: str, ram_size: int, host: DeviceHost, *,
                         pit: bool = False) -> AddressSpaces:
    """The memory and port spaces of a machine type, with its board devices (and,
    with `pit`, the PIT's channel 0 timer)."""
    kind = board_kind(machine_type)
    spaces = AddressSpaces(memory=SystemMemory.create(memory_layout(machine_type, ram_size)),
                           io=IoPorts())
    if kind == "none":
        return spaces
    kbd = I8042(host=host)
    port92 = Port92(host=host)
    spaces.io.map(PortRegion("i8042-data", 0x60, 1, _I8042Data(kbd=kbd), _BYTE))
    spaces.io.map(PortRegion("i8042-cmd", 0x64, 1, _I8042Command(kbd=kbd), _BYTE))
    spaces.io.map(PortRegion("port92", 0x92, 1, port92, _BYTE))
    spaces.devices += [kbd, port92]
    if pit:
        spaces.devices.append(PitTimer(host=host))
    if kind == "isapc":
        return spaces
    rcr = ResetControl(host=host, keep=0xA if kind == "q35" else 0x2)
    # Over the PCI host's configuration address register, at priority 1.
    spaces.io.map(PortRegion("reset-control", 0xCF9, 1, rcr, priority=1))
    pm = AcpiPm(host=host, resets=kind == "q35")
    two = Access(valid_max=2)
    spaces.io.map(PortRegion("acpi-evt", ACPI_PM_BASE, 4, _AcpiEvt(pm=pm), two))
    spaces.io.map(PortRegion("acpi-cnt", ACPI_PM_BASE + 4, 2, _AcpiCnt(pm=pm), two))
    spaces.io.map(PortRegion("acpi-tmr", ACPI_PM_BASE + 8, 4, _AcpiTmr(pm=pm),
                             Access(valid_max=4)))
    spaces.devices += [rcr, pm]
    return spaces


def add_pvpanic(spaces: AddressSpaces, host: DeviceHost, ioport: int = 0x505) -> Pvpanic:
    """-device pvpanic[,ioport=N] (hw/misc/pvpanic.c: one byte-wide port)."""
    device = Pvpanic(host=host)
    spaces.io.map(PortRegion("pvpanic", ioport, 1, device, _BYTE))
    spaces.devices.append(device)
    return device


def add_ib700(spaces: AddressSpaces, host: DeviceHost) -> Ib700:
    """-device ib700 / -watchdog ib700: one portio region over 0x441-0x444."""
    device = Ib700(host=host)
    spaces.io.map(PortRegion("ib700", 0x441, 4, device,
                             Access(valid_unaligned=True, impl_unaligned=True)))
    spaces.devices.append(device)
    return device
