"""HMP's guest memory and I/O port commands: x, xp, sum, i, o, memsave, pmemsave.

`vmm` layer, over the guest address spaces of `devices.address_space` (RAM as the
board lays it out, unassigned memory reading 0, the port space with the board's
devices) as monitor.c's memory_dump, hmp_sum, hmp_ioport_read/_write and hmp.c's
hmp_memsave/hmp_pmemsave use QEMU's memory API. The CPU's state is not modelled:
what needs it (a virtual address in `x` and `memsave`, `x/i`'s disassembly) says so
when the machine has a CPU, and QEMU's "without CPU" texts when it has none.
"""

from __future__ import annotations

from devices.address_space import AddressSpaces
from vmm.hmp.commands import Args, _c_int, has_cpu, printc
from vmm.hmp.interpreter import Hmp, HmpNotImplemented

IOPORTS_MASK = 0xFFFF
_CHUNK = 1 << 16


def address_spaces(hmp: Hmp) -> AddressSpaces:
    spaces = hmp.state.memory
    assert spaces is not None, "a machine's human monitors reach its address spaces"
    return spaces()


def _value(data: bytes, size: int) -> int:
    """ldub_p / lduw_p / ldl_p / ldq_p (little-endian target)."""
    return int.from_bytes(data[:size], "little")


def _digits(fmt: str, wsize: int) -> int:
    if fmt == "o":
        return (wsize * 8 + 2) // 3
    if fmt in ("u", "d"):
        return (wsize * 8 * 10 + 32) // 33
    return wsize * 8 // 4


def _format(fmt: str, value: int, digits: int, wsize: int) -> str:
    """One value of memory_dump."""
    if fmt == "o":
        text = f"0{value:o}" if value else "0"
        return text.rjust(digits)
    if fmt == "u":
        return str(value).rjust(digits)
    if fmt == "d":
        signed = value - (1 << 64) if value >> 63 else value
        return str(signed).rjust(digits)
    if fmt == "c":
        return printc(value)
    return "0x" + f"{value:x}".zfill(digits)


def memory_dump(hmp: Hmp, count: int, fmt: str, wsize: int, addr: int,
                physical: bool) -> None:
    """monitor.c memory_dump."""
    cpu = has_cpu(hmp)
    if not cpu and (fmt == "i" or not physical):
        hmp.printf("Can not dump without CPU\n")
        return
    if fmt == "i":
        raise HmpNotImplemented("x/i" if not physical else "xp/i")  # monitor_disas
    if not physical:
        raise HmpNotImplemented("x")  # cpu_memory_rw_debug: the CPU's page tables
    spaces = address_spaces(hmp)
    length = wsize * count
    line_size = 8 if wsize == 1 else 16
    digits = _digits(fmt, wsize)
    if fmt == "c":
        wsize = 1
    addr &= (1 << 64) - 1
    while length > 0:
        n = min(length, line_size)
        data = spaces.read(addr, n)
        values = [_format(fmt, _value(data[i:i + wsize], wsize), digits, wsize)
                  for i in range(0, n, wsize)]
        hmp.printf(f"{addr:016x}:" + "".join(" " + v for v in values) + "\n")
        addr = (addr + n) & ((1 << 64) - 1)
        length -= n


def hmp_memory_dump(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_memory_dump (`x`: virtual addresses)."""
    memory_dump(hmp, _c_int(args["count"]), args["format"], _c_int(args["size"]),
                args["addr"], physical=False)


def hmp_physical_memory_dump(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_physical_memory_dump (`xp`)."""
    memory_dump(hmp, _c_int(args["count"]), args["format"], _c_int(args["size"]),
                args["addr"], physical=True)


def _bsd_sum(total: int, data: bytes) -> int:
    """The BSD checksum of `sum`, continued over `data`."""
    if not data.count(0) == len(data):
        for byte in data:
            total = ((total >> 1) | (total << 15)) & 0xFFFF
            total = (total + byte) & 0xFFFF
        return total
    # zeros only rotate: 16 rotations of 16 bits are the identity
    turns = len(data) % 16
    for _ in range(turns):
        total = ((total >> 1) | (total << 15)) & 0xFFFF
    return total


def hmp_sum(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_sum: the BSD sum of guest-physical bytes [start, start + size)
    (32-bit arithmetic: a range past 4 GiB is empty)."""
    start = args["start"] & 0xFFFFFFFF
    end = (start + (args["size"] & 0xFFFFFFFF)) & 0xFFFFFFFF
    spaces = address_spaces(hmp)
    total = 0
    addr = start
    while addr < end:
        n = min(_CHUNK, end - addr)
        total = _bsd_sum(total, spaces.read(addr, n))
        addr += n
    hmp.printf(f"{total:05d}\n")


def hmp_ioport_read(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_ioport_read: `.index` first writes the index byte to the port,
    then reads the next one (an index/data pair such as the RTC's 0x70/0x71)."""
    spaces = address_spaces(hmp)
    size = _c_int(args["size"])
    addr = _c_int(args["addr"])
    if "index" in args:
        spaces.port_write(addr & IOPORTS_MASK, _c_int(args["index"]) & 0xFF, 1)
        addr += 1
    addr &= 0xFFFF
    if size not in (2, 4):
        size = 1
    value = spaces.port_read(addr, size)
    suffix = {1: "b", 2: "w", 4: "l"}[size]
    text = ("0x" + f"{value:x}".zfill(size * 2 - 2)) if value else "0" * (size * 2)
    hmp.printf(f"port{suffix}[0x{addr:04x}] = {text}\n")


def hmp_ioport_write(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_ioport_write."""
    size = _c_int(args["size"])
    if size not in (2, 4):
        size = 1
    value = _c_int(args["val"]) & ((1 << (8 * size)) - 1)
    address_spaces(hmp).port_write(_c_int(args["addr"]) & IOPORTS_MASK, value, size)


def hmp_memsave(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_memsave: the monitor's CPU, then qmp memsave."""
    if not has_cpu(hmp):
        hmp.printf("No CPU available\n")
        return
    hmp.qmp("memsave", args["val"], args["size"] & 0xFFFFFFFF, args["filename"],
            cpu_index=hmp.cpu_index or 0)


def hmp_pmemsave(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_pmemsave."""
    hmp.qmp("pmemsave", args["val"], args["size"] & 0xFFFFFFFF, args["filename"])
