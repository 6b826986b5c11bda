"""HMP's memory and port commands on the guest address spaces: monitor.c memory_dump
(x, xp), hmp_sum, hmp_ioport_read / hmp_ioport_write (i, o), hmp.c hmp_memsave /
hmp_pmemsave -> cpus.c qmp_pmemsave; and the RAM savevm keeps (migration/ram.c).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_block_support import make_image
from tests.test_hmp_help import hmp
from vmm.hmp.savevm import vm_state_size
from vmm.qmp.dispatch import not_implemented


@pytest.fixture
def none(vm_cmdline):
    vm = vm_cmdline("-machine", "none", "-m", "16", "-S")
    vm.vm.memory.write(0x1000, bytes([1, 2, 3, 4, 0x41, 0x0A, 0xFF, 0x80]) + bytes(8))
    return vm


@pytest.mark.parametrize(("line", "out"), [
    ("xp/4xb 0x1000", "0000000000001000: 0x01 0x02 0x03 0x04"),
    ("xp/2xw 0x1000", "0000000000001000: 0x04030201 0x80ff0a41"),
    ("xp/1xg 0x1000", "0000000000001000: 0x80ff0a4104030201"),
    ("xp/3dh 0x1000", "0000000000001000:   513  1027  2625"),
    ("xp/2ub 0x1006", "0000000000001006: 255 128"),
    ("xp/1dg 0x1000", "0000000000001000: -9151584643437100543"),
    ("xp/2ob 0x1000", "0000000000001000:  01  02"),
    ("xp/6cb 0x1002", "0000000000001002: '\\x03' '\\x04' 'A' '\\n' '\\xff' '\\x80'"),
    ("xp/10xb 0x1000", "0000000000001000: 0x01 0x02 0x03 0x04 0x41 0x0a 0xff 0x80\r\n"
                       "0000000000001008: 0x00 0x00"),
    # `c` without a size: count x the last size (4 to begin with) bytes, one by one
    ("xp/2c 0x1000", "0000000000001000: '\\x01' '\\x02' '\\x03' '\\x04' 'A' '\\n' '\\xff' "
                     "'\\x80'"),
])
def test_physical_memory_dump(none, line: str, out: str) -> None:
    """monitor.c memory_dump: 8 bytes a line for bytes, else 16; each format's width
    (TARGET_FMT_plx addresses); unwritten RAM reads as zeros."""
    assert hmp(none, line) == out + "\r\n"


def test_dump_sizes_and_counts(none) -> None:
    """`c` keeps the size it was given for the length (count x size) and prints bytes;
    a zero count prints nothing; unassigned memory reads 0."""
    assert hmp(none, "xp/1cw 0x1000") == (
        "0000000000001000: '\\x01' '\\x02' '\\x03' '\\x04'\r\n")
    assert hmp(none, "xp/0x 0x1000") == ""
    assert hmp(none, "xp/2xw 0x10000000") == "0000000010000000: 0x00000000 0x00000000\r\n"


def test_dumps_that_need_a_cpu(vm_cmdline, none) -> None:
    """memory_dump without a CPU: a virtual address or x/i cannot be dumped; with a
    CPU (whose state is not modelled) they are not implemented."""
    assert hmp(none, "x/4x 0") == "Can not dump without CPU\r\n"
    assert hmp(none, "xp/4i 0") == "Can not dump without CPU\r\n"
    pc = vm_cmdline("-machine", "pc", "-S")
    assert hmp(pc, "x/4x 0") == not_implemented("x") + "\r\n"
    assert hmp(pc, "xp/4i 0") == not_implemented("xp/i") + "\r\n"
    assert hmp(pc, "xp/4xb 0") == "0000000000000000: 0x00 0x00 0x00 0x00\r\n"


def bsd_sum(data: bytes) -> int:
    total = 0
    for byte in data:
        total = ((total >> 1) | ((total & 1) << 15)) + byte
        total &= 0xFFFF
    return total


def test_sum(none) -> None:
    """monitor.c hmp_sum: the BSD checksum (`sum` of Unix), five digits."""
    expected = bsd_sum(bytes([1, 2, 3, 4, 0x41, 0x0A, 0xFF, 0x80]) + bytes(8))
    assert hmp(none, "sum 0x1000 16") == f"{expected:05d}\r\n"
    whole = bsd_sum(none.vm.memory.read(0x1000, 0x10003))
    assert hmp(none, "sum 0x1000 0x10003") == f"{whole:05d}\r\n"
    assert hmp(none, "sum 0 0") == "00000\r\n"


def test_ports(vm_cmdline) -> None:
    """monitor.c hmp_ioport_read: `port<size>[0x....] = %#0*x` (an unassigned port
    reads all ones; the size is the format's, 4 to begin with); hmp_ioport_write
    reaches the board's devices (PIIX3's reset control: a guest reset)."""
    pc = vm_cmdline("-machine", "pc")
    talk = pc.talk()
    assert hmp(pc, "i 0x300") == "portl[0x0300] = 0xffffffff\r\n"
    assert hmp(pc, "i/b 0x300") == "portb[0x0300] = 0xff\r\n"
    assert hmp(pc, "i 0x300") == "portb[0x0300] = 0xff\r\n"  # the format stays
    assert hmp(pc, "i/h 0x10300") == "portw[0x0300] = 0xffff\r\n"
    assert hmp(pc, "i/b 0x92") == "portb[0x0092] = 00\r\n"
    assert hmp(pc, "o/b 0xcf9 6") == ""
    assert talk.pending() == ['{"timestamp": T, "event": "RESET", "data": {"guest": true}}']


def test_pmemsave(none, tmp_path: Path) -> None:
    """cpus.c qmp_pmemsave (through hmp_pmemsave): the bytes of guest-physical memory;
    the file's open error as error_setg_file_open words it. (An absolute path must be
    quoted: after the size's expression, `/` divides.)"""
    out = tmp_path / "mem.bin"
    assert hmp(none, f"pmemsave 0x1000 12 {out}") == (
        f"invalid char '{str(out)[1]}' in expression\r\n"
        'Try "help pmemsave" for more information\r\n')
    assert hmp(none, f'pmemsave 0x1000 12 "{out}"') == ""
    assert out.read_bytes() == bytes([1, 2, 3, 4, 0x41, 0x0A, 0xFF, 0x80, 0, 0, 0, 0])
    assert none.talk().execute("pmemsave", {"val": 0x1002, "size": 2, "filename": str(out)}
                               ) == {"return": {}}
    assert out.read_bytes() == bytes([3, 4])
    bad = tmp_path / "no" / "such"
    assert hmp(none, f'pmemsave 0 1 "{bad}"') == (
        f"Could not open '{bad}': No such file or directory\r\n")


def test_memsave(vm_cmdline, none, tmp_path: Path) -> None:
    """hmp.c hmp_memsave: no CPU, no dump; qmp_memsave reads through the CPU, whose
    paging is off (virtual = physical: cpus.c qmp_memsave, cpu_memory_rw_debug)."""
    assert hmp(none, "memsave 0 1 x") == "No CPU available\r\n"
    pc = vm_cmdline("-machine", "pc", "-S")
    out = tmp_path / "m"
    assert hmp(pc, f'memsave 0 4 "{out}"') == ""
    assert out.read_bytes() == bytes(4)


def test_savevm_keeps_ram(vm_cmdline, tmp_path: Path) -> None:
    """save_snapshot writes RAM into the VM state (its size counts the pages that hold
    something: migration/ram.c); load_snapshot puts it back."""
    img = make_image(tmp_path / "a.qcow2", "qcow2")
    vm = vm_cmdline("-machine", "none", "-m", "16", "-S", "-drive", f"file={img},if=none,id=d")
    memory = vm.vm.memory
    memory.write(0x2000, b"before")
    assert hmp(vm, "savevm s") == ""
    sn = vm.talk().execute("query-block")["return"][0]["inserted"]["image"]["snapshots"][0]
    assert sn["vm-state-size"] == vm_state_size(16 << 20, 1) == 8 + 4095 * 9 + 4104 + 1
    memory.write(0x2000, b"after!")
    memory.write(0x5000, b"new page")
    assert hmp(vm, "loadvm s") == ""
    assert memory.read(0x2000, 6) == b"before"
    assert memory.read(0x5000, 8) == bytes(8)
