"""The guest's two address spaces: physical memory and the I/O ports.

Pure model of the `devices` layer (no I/O, no clock). It reproduces what a guest
access, a qtest command or an HMP `xp`/`o` sees through QEMU 2.11's memory API
[exec.c memory_map_init, flatview_read_continue, flatview_write_continue,
memory_access_size; memory.c memory_region_dispatch_read/_write,
memory_region_access_valid, access_with_adjusted_size, unassigned_mem_ops;
ioport.c unassigned_io_ops]:

- `SystemMemory` (address_space_memory): guest RAM as the board lays it out
  (`MemoryLayout`), every other address unassigned. RAM is sparse (`Ram`): a page
  exists once something non-zero is written to it, untouched RAM reads as zeros, so
  `-m 4G` costs nothing until the guest writes. An unassigned address reads as 0 and
  drops writes: io_mem_unassigned refuses every access (unassigned_mem_accepts), and
  a refused read returns unassigned_mem_read's 0.
- `IoPorts` (address_space_io): the 64 KiB port space. Its root region is
  unassigned_io_ops, so a port nobody claims reads as all ones (0xff, 0xffff,
  0xffffffff) and ignores writes; beyond 0xffff the access falls out of the space
  and reads 0 like unassigned memory. Devices claim ports with `IoPorts.map`; an
  access is split as QEMU splits it (at region ends, into pieces no larger than the
  region's valid.max_access_size and no larger than the alignment of the offset)
  and widened or narrowed to the device's implemented sizes, little-endian.

`AddressSpaces` is the Machine subsystem that owns both, plus the board devices
mapped into them (`devices.chipset` builds them); its `reset` resets those devices
and leaves RAM alone, as qemu_system_reset does (RAM registers no reset handler:
hw/core/reset.c qemu_devices_reset). Its methods are the API the qtest protocol
(`vmm.qtest`) and HMP's memory and port commands use: `read`, `write`, `fill`,
`port_read`, `port_write`.

Not modelled: MMIO devices (the IOAPIC, HPET, LAPIC, VGA memory), ROM contents
(SeaBIOS at 0xe0000-0xfffff and below 4 GiB, option ROMs), which read here as
unassigned memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Protocol

import attrs

from schema.handlers import SubsystemHooks

PAGE_SIZE = 4096
ADDRESS_MASK = (1 << 64) - 1  # hwaddr arithmetic wraps at 2^64
IO_SPACE_SIZE = 0x10000       # memory_map_init: the "io" region is 65536 bytes

# The PC's legacy window below 1 MiB: VGA memory (0xa0000-0xbffff) and the ROM area
# (0xc0000-0xfffff), which the PAM/SMRAM regions of the northbridge overlay on the
# RAM alias [hw/pci-host/piix.c i440fx_init, hw/pci-host/q35.c mch_realize].
LEGACY_WINDOW = (0xa0000, 0x100000)
FOUR_GIB = 1 << 32


@attrs.frozen
class RamRange:
    """Guest-physical [base, base + size) is RAM from `ram_offset` on."""

    base: int
    size: int
    ram_offset: int

    @property
    def end(self) -> int:
        return self.base + self.size


@attrs.frozen
class MemoryLayout:
    """Where the RAM of a board is in the guest's physical address space."""

    ram_size: int
    ranges: tuple[RamRange, ...]

    @classmethod
    def flat(cls, ram_size: int) -> MemoryLayout:
        """All RAM at address zero (hw/core/null-machine.c machine_none_init;
        none at all with -m 0)."""
        ranges = (RamRange(0, ram_size, 0),) if ram_size else ()
        return cls(ram_size=ram_size, ranges=ranges)

    @classmethod
    def pc(cls, ram_size: int, *, lowmem: int) -> MemoryLayout:
        """A PC's RAM: up to `lowmem` bytes below 4 GiB ("ram-below-4g") without the
        legacy window, the rest from 4 GiB on ("ram-above-4g") [hw/i386/pc.c
        pc_memory_init]."""
        below = min(ram_size, lowmem)
        above = ram_size - below
        ranges: list[RamRange] = []
        start, stop = LEGACY_WINDOW
        if below > start:
            ranges.append(RamRange(0, start, 0))
            if below > stop:
                ranges.append(RamRange(stop, below - stop, stop))
        elif below:
            ranges.append(RamRange(0, below, 0))
        if above:
            ranges.append(RamRange(FOUR_GIB, above, below))
        return cls(ram_size=ram_size, ranges=tuple(ranges))

    def find(self, addr: int) -> tuple[RamRange | None, int]:
        """The RAM range holding `addr` (None: unassigned) and where the run of
        addresses of the same kind that starts at `addr` ends."""
        for r in self.ranges:
            if addr < r.base:
                return None, r.base
            if addr < r.end:
                return r, r.end
        return None, 1 << 64


@attrs.define(kw_only=True, eq=False)
class Ram:
    """Guest RAM, one sparse page at a time (a missing page is all zeros)."""

    size: int
    _pages: dict[int, bytearray] = attrs.Factory(dict)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(length)
        done = 0
        while done < length:
            page, start = divmod(offset + done, PAGE_SIZE)
            n = min(PAGE_SIZE - start, length - done)
            data = self._pages.get(page)
            if data is not None:
                out[done:done + n] = data[start:start + n]
            done += n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        done = 0
        length = len(data)
        while done < length:
            page, start = divmod(offset + done, PAGE_SIZE)
            n = min(PAGE_SIZE - start, length - done)
            self._store(page, start, data[done:done + n])
            done += n

    def fill(self, offset: int, length: int, byte: int) -> None:
        """memset: whole zeroed pages are dropped rather than allocated."""
        done = 0
        while done < length:
            page, start = divmod(offset + done, PAGE_SIZE)
            n = min(PAGE_SIZE - start, length - done)
            self._store(page, start, bytes([byte]) * n)
            done += n

    def _store(self, page: int, start: int, chunk: bytes) -> None:
        data = self._pages.get(page)
        if data is None:
            if not any(chunk):
                return
            data = self._pages[page] = bytearray(PAGE_SIZE)
        data[start:start + len(chunk)] = chunk
        if len(chunk) == PAGE_SIZE and not any(chunk):
            del self._pages[page]

    def pages_allocated(self) -> int:
        return len(self._pages)

    def pages(self) -> dict[int, bytes]:
        """A copy of the non-zero pages, by page number (what savevm keeps)."""
        return {page: bytes(data) for page, data in self._pages.items() if any(data)}

    def restore(self, pages: dict[int, bytes]) -> None:
        """All of RAM becomes `pages` (zeros elsewhere), as loadvm loads it."""
        self._pages = {page: bytearray(data) for page, data in pages.items()}


@attrs.define(kw_only=True, eq=False)
class SystemMemory:
    """address_space_memory: RAM where the layout puts it, unassigned elsewhere."""

    layout: MemoryLayout
    ram: Ram

    @classmethod
    def create(cls, layout: MemoryLayout) -> SystemMemory:
        return cls(layout=layout, ram=Ram(size=layout.ram_size))

    def _runs(self, addr: int, length: int) -> Iterable[tuple[RamRange | None, int, int]]:
        """(range or None, address, length) pieces of an access, wrapping at 2^64."""
        addr &= ADDRESS_MASK
        while length > 0:
            r, end = self.layout.find(addr)
            n = min(length, end - addr)
            yield r, addr, n
            length -= n
            addr = (addr + n) & ADDRESS_MASK

    def read(self, addr: int, length: int) -> bytes:
        """cpu_physical_memory_read."""
        out = bytearray()
        for r, a, n in self._runs(addr, length):
            out += self.ram.read(r.ram_offset + a - r.base, n) if r else bytes(n)
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        """cpu_physical_memory_write (writes to unassigned addresses vanish)."""
        done = 0
        for r, a, n in self._runs(addr, len(data)):
            if r is not None:
                self.ram.write(r.ram_offset + a - r.base, data[done:done + n])
            done += n

    def fill(self, addr: int, length: int, byte: int) -> None:
        """A write of `length` copies of `byte` (qtest's memset)."""
        for r, a, n in self._runs(addr, length):
            if r is not None:
                self.ram.fill(r.ram_offset + a - r.base, n, byte & 0xFF)


# -- the I/O port space -----------------------------------------------------------------


@attrs.frozen
class Access:
    """A region's MemoryRegionOps sizes (0: QEMU's default, 1 to 4 bytes)."""

    valid_max: int = 0
    valid_unaligned: bool = False
    impl_min: int = 0
    impl_max: int = 0
    impl_unaligned: bool = False


class PortDevice(Protocol):
    """A device's MemoryRegionOps on the port space: offsets within its region,
    values of `size` bytes (little-endian devices: the PC's are all)."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, value: int, size: int) -> None: ...


@attrs.frozen
class PortRegion:
    name: str
    base: int
    size: int
    device: PortDevice
    access: Access = Access()
    priority: int = 0

    @property
    def end(self) -> int:
        return self.base + self.size


class _UnassignedIo:
    """ioport.c unassigned_io_ops: reads all ones, writes ignored."""

    def read(self, offset: int, size: int) -> int:
        return (1 << (size * 8)) - 1

    def write(self, offset: int, value: int, size: int) -> None:
        pass


_ROOT = PortRegion("io", 0, IO_SPACE_SIZE, _UnassignedIo())


def _pow2floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _access_size(access: Access, length: int, offset: int) -> int:
    """exec.c memory_access_size: bounded by valid.max_access_size (4 if unset) and,
    unless the region takes unaligned accesses, by the offset's alignment."""
    limit = access.valid_max or 4
    if not access.impl_unaligned:
        align = offset & -offset
        if align and align < limit:
            limit = align
    return _pow2floor(min(length, limit))


@attrs.define(kw_only=True, eq=False)
class IoPorts:
    """address_space_io: regions over the unassigned root, as a flat view."""

    regions: list[PortRegion] = attrs.Factory(list)
    # The flat view: sorted segment starts, and (end, region) of each segment.
    _starts: list[int] = attrs.Factory(list)
    _segments: list[tuple[int, PortRegion]] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self._render()

    def map(self, region: PortRegion) -> None:
        """memory_region_add_subregion[_overlap]: a higher priority wins an overlap,
        and of equal priorities the region mapped last."""
        self.regions.append(region)
        self._render()

    def unmap(self, region: PortRegion) -> None:
        self.regions.remove(region)
        self._render()

    def _render(self) -> None:
        ordered = sorted(enumerate(self.regions), key=lambda ir: (ir[1].priority, ir[0]))
        owner: list[PortRegion | None] = []
        points = sorted({0, IO_SPACE_SIZE, *(r.base for r in self.regions),
                         *(r.end for r in self.regions)})
        points = [p for p in points if 0 <= p <= IO_SPACE_SIZE]
        for lo in points[:-1]:
            top: PortRegion | None = None
            for _, r in ordered:
                if r.base <= lo < r.end:
                    top = r
            owner.append(top)
        starts: list[int] = []
        segments: list[tuple[int, PortRegion]] = []
        for i, lo in enumerate(points[:-1]):
            region = owner[i] or _ROOT
            hi = points[i + 1]
            if segments and segments[-1][1] is region and segments[-1][0] == lo:
                segments[-1] = (hi, region)
                continue
            starts.append(lo)
            segments.append((hi, region))
        self._starts = starts
        self._segments = segments

    def _lookup(self, port: int) -> tuple[PortRegion | None, int]:
        """The region at `port` (None: outside the space) and the end of its segment."""
        if port >= IO_SPACE_SIZE:
            return None, 1 << 64
        i = bisect.bisect_right(self._starts, port) - 1
        end, region = self._segments[i]
        return region, end

    def _accesses(self, port: int, size: int) -> Iterator[tuple[PortRegion | None, int, int, int]]:
        """flatview_read/write_continue: the pieces of an access of `size` bytes, each
        (region or None outside the space, offset in it, length, offset in the
        access)."""
        done = 0
        while done < size:
            addr = (port + done) & ADDRESS_MASK
            region, end = self._lookup(addr)
            n = min(size - done, end - addr)
            if region is None:
                n = _access_size(Access(), n, addr)
                yield None, addr, n, done
            else:
                offset = addr - region.base
                n = _access_size(region.access, n, offset)
                yield region, offset, n, done
            done += n

    def read(self, port: int, size: int) -> int:
        """cpu_inb/inw/inl: address_space_read of `size` bytes, little-endian. Outside
        the space io_mem_unassigned refuses the access: unassigned_mem_read's 0."""
        value = 0
        for region, offset, n, done in self._accesses(port, size):
            if region is not None:
                value |= _dispatch_read(region, offset, n) << (done * 8)
        return value

    def write(self, port: int, value: int, size: int) -> None:
        """cpu_outb/outw/outl: address_space_write of `size` bytes, little-endian."""
        for region, offset, n, done in self._accesses(port, size):
            if region is not None:
                piece = (value >> (done * 8)) & ((1 << (n * 8)) - 1)
                _dispatch_write(region, offset, piece, n)


def _valid(region: PortRegion, offset: int, size: int) -> bool:
    """memory_region_access_valid for ops without an `accepts` hook: only the
    alignment check applies."""
    return region.access.valid_unaligned or not offset & (size - 1)


def _pieces(access: Access, size: int) -> tuple[int, range]:
    """access_with_adjusted_size: the device's access size and the byte offsets."""
    lo = access.impl_min or 1
    hi = access.impl_max or 4
    step = max(min(size, hi), lo)
    return step, range(0, size, step)


def _dispatch_read(region: PortRegion, offset: int, size: int) -> int:
    if not _valid(region, offset, size):
        return 0
    step, offsets = _pieces(region.access, size)
    mask = (1 << (step * 8)) - 1
    value = 0
    for i in offsets:
        value |= (region.device.read(offset + i, step) & mask) << (i * 8)
    return value & ((1 << (size * 8)) - 1)


def _dispatch_write(region: PortRegion, offset: int, value: int, size: int) -> None:
    if not _valid(region, offset, size):
        return
    step, offsets = _pieces(region.access, size)
    mask = (1 << (step * 8)) - 1
    for i in offsets:
        region.device.write(offset + i, (value >> (i * 8)) & mask, step)


# -- the subsystem --------------------------------------------------------------------


class Resettable(Protocol):
    def reset(self) -> None: ...


@attrs.define(kw_only=True, eq=False)
class AddressSpaces(SubsystemHooks):
    """The guest's memory and port spaces and the board devices in them (a
    Subsystem of the Machine)."""

    memory: SystemMemory
    io: IoPorts
    devices: list[Resettable] = attrs.Factory(list)

    # -- what the qtest protocol and HMP use ---------------------------------------

    @property
    def ram_size(self) -> int:
        return self.memory.layout.ram_size

    def read(self, addr: int, length: int) -> bytes:
        """Guest-physical bytes (cpu_physical_memory_read)."""
        return self.memory.read(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        """cpu_physical_memory_write."""
        self.memory.write(addr, data)

    def fill(self, addr: int, length: int, byte: int) -> None:
        self.memory.fill(addr, length, byte)

    def port_read(self, port: int, size: int) -> int:
        """cpu_inb (size 1), cpu_inw (2), cpu_inl (4)."""
        return self.io.read(port, size)

    def port_write(self, port: int, value: int, size: int) -> None:
        """cpu_outb (size 1), cpu_outw (2), cpu_outl (4)."""
        self.io.write(port, value, size)

    # -- Subsystem hooks -----------------------------------------------------------

    def reset(self) -> None:
        """qemu_devices_reset: the devices reset; RAM keeps its contents."""
        for device in self.devices:
            device.reset()

    def next_deadline(self) -> float:
        return float("inf")
