"""The ELF core of `dump-guest-memory`, as bytes: headers, notes, and where memory goes.

Pure part of `devices.dump` [dump.c dump_init, dump_begin, write_elf64_header,
write_elf32_header, write_elf64_note, write_elf_loads, get_offset_range,
dump_calculate_size, get_start_block; memory_mapping.c
qemu_get_guest_simple_memory_mapping, qemu_get_guest_memory_mapping,
memory_mapping_filter; target/i386/arch_dump.c cpu_get_dump_info,
cpu_get_note_size, x86_write_elf64_note, x86_cpu_write_elf32_note,
cpu_write_qemu_note]. `ElfCore.plan` lays the file out as QEMU does: the ELF header,
one PT_NOTE, one PT_LOAD per memory mapping, the CPUs' notes (an NT_PRSTATUS
"CORE" note each, then a "QEMU" note each with QEMUCPUState), then the guest's
memory block after block. The vCPUs are in their reset state and not in long mode
(no guest code changes them), so the machine is EM_386, and the class ELFCLASS32
unless a block ends above 4 GiB. The guest has no paging, so `paging` maps every
block at its physical address (and merges adjacent ones).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence

import attrs

from devices.dump.job import CHUNK, Chunk

EM_386 = 3
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
NT_PRSTATUS = 1
ELFCLASS32 = 1
ELFCLASS64 = 2
UINT_MAX = 0xFFFFFFFF
PN_XNUM = 0xFFFF

# arch_dump.c: sizeof(x86_elf_prstatus) and sizeof(QEMUCPUState), version 1.
PRSTATUS_SIZE = 144
QEMU_CPU_STATE_SIZE = 432
QEMUCPUSTATE_VERSION = 1


@attrs.frozen
class GuestBlock:
    """memory_mapping.h GuestPhysBlock: guest-physical [start, end) of one RAM-backed
    region (RAM, or a ROM)."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@attrs.frozen
class Mapping:
    """memory_mapping.h MemoryMapping."""

    phys: int
    virt: int
    length: int


def _note_size(head: int, name: int, desc: int) -> int:
    """ELF_NOTE_SIZE: each part rounded up to 4 bytes."""
    return (-(-head // 4) + -(-name // 4) + -(-desc // 4)) * 4


def note_size(nr_cpus: int) -> int:
    """cpu_get_note_size for EM_386: a CORE and a QEMU note per CPU (Elf32_Nhdr and
    Elf64_Nhdr are both 12 bytes)."""
    head = 12
    return (_note_size(head, 5, PRSTATUS_SIZE)
            + _note_size(head, 5, QEMU_CPU_STATE_SIZE)) * nr_cpus


def _note(name: bytes, kind: int, desc: bytes) -> bytes:
    head = struct.pack("<III", len(name) + 1, len(desc), kind)
    name_field = (name + b"\0").ljust(-(-(len(name) + 1) // 4) * 4, b"\0")
    return head + name_field + desc.ljust(-(-len(desc) // 4) * 4, b"\0")


# The reset state of an x86 CPU (target/i386/cpu.c x86_cpu_reset): CS 0xf000 based
# at 0xffff0000, IP 0xfff0, EFLAGS 2, the other segments 0 with limit 0xffff.
_RESET_CS = (0xF000, 0xFFFF, 0x9B00, 0xFFFF0000)
_RESET_DATA = (0, 0xFFFF, 0x9300, 0)
_RESET_SYS = (0, 0xFFFF, 0, 0)
_RESET_TR = (0, 0xFFFF, 0x8B00, 0)
_RESET_LDT = (0, 0xFFFF, 0x8200, 0)
_RESET_CR0 = 0x60000010
_RESET_EDX = 0x663


def _prstatus(cpu_id: int) -> bytes:
    """x86_fill_elf_prstatus for a CPU at reset."""
    # ebx ecx edx esi edi ebp eax, ds es fs gs (with padding), orig_eax eip, cs,
    # eflags esp, ss: EDX holds the CPUID signature at reset (qemu64: 0x663).
    regs = struct.pack("<7I8HII2HII2H", 0, 0, _RESET_EDX, 0, 0, 0, 0,
                       0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFFF0, 0xF000, 0, 2, 0, 0, 0)
    return bytes(24) + struct.pack("<I", cpu_id) + bytes(44) + regs + bytes(4)


def _qemu_cpu_state() -> bytes:
    """qemu_get_cpustate for a CPU at reset."""
    def seg(selector: int, limit: int, flags: int, base: int) -> bytes:
        return struct.pack("<IIIIQ", selector, limit, flags, 0, base)

    gprs = [0] * 16
    gprs[3] = _RESET_EDX
    state = struct.pack("<II", QEMUCPUSTATE_VERSION, QEMU_CPU_STATE_SIZE)
    state += struct.pack("<16Q", *gprs) + struct.pack("<QQ", 0xFFF0, 2)
    state += seg(*_RESET_CS) + b"".join(seg(*_RESET_DATA) for _ in range(5))
    state += seg(*_RESET_LDT) + seg(*_RESET_TR) + seg(*_RESET_SYS) + seg(*_RESET_SYS)
    state += struct.pack("<5Q", _RESET_CR0, 0, 0, 0, 0)
    return state


def cpu_notes(nr_cpus: int) -> bytes:
    """write_elf64_notes / write_elf32_notes: every CPU's CORE note, then every
    CPU's QEMU note (ids count from 1: cpu_index)."""
    core = b"".join(_note(b"CORE", NT_PRSTATUS, _prstatus(i + 1)) for i in range(nr_cpus))
    qemu = b"".join(_note(b"QEMU", 0, _qemu_cpu_state()) for _ in range(nr_cpus))
    return core + qemu


@attrs.frozen
class Filter:
    begin: int
    length: int

    @property
    def end(self) -> int:
        return self.begin + self.length


def _clip(block: GuestBlock, flt: Filter | None) -> tuple[int, int] | None:
    """The part of a block the filter keeps (start, size), None for none."""
    if flt is None:
        return block.start, block.size
    if block.start >= flt.end or block.end <= flt.begin:
        return None
    start = max(block.start, flt.begin)
    return start, min(block.end, flt.end) - start


def total_size(blocks: Sequence[GuestBlock], flt: Filter | None) -> int:
    """dump_calculate_size."""
    return sum(c[1] for b in blocks if (c := _clip(b, flt)) is not None)


def mappings(blocks: Sequence[GuestBlock], paging: bool) -> list[Mapping]:
    """The memory mappings: without paging one per block at virtual 0
    (qemu_get_guest_simple_memory_mapping); with paging on a guest that does not
    page, virtual = physical, and memory_mapping_list_add_merge_sorted merges
    mappings adjacent in both."""
    out: list[Mapping] = []
    for block in blocks:
        virt = block.start if paging else 0
        last = out[-1] if out else None
        if (last is not None and last.phys + last.length == block.start
                and last.virt + last.length == virt):
            out[-1] = Mapping(last.phys, last.virt, last.length + block.size)
        else:
            out.append(Mapping(block.start, virt, block.size))
    return out


def _filter_mappings(maps: list[Mapping], flt: Filter) -> list[Mapping]:
    """memory_mapping_filter: drop mappings outside [begin, end), trim the rest."""
    out = []
    for m in maps:
        if m.phys >= flt.end or m.phys + m.length <= flt.begin:
            continue
        phys, virt, length = m.phys, m.virt, m.length
        if phys < flt.begin:
            virt += flt.begin - phys
            length -= flt.begin - phys
            phys = flt.begin
        if phys + length > flt.end:
            length = flt.end - phys
        out.append(Mapping(phys, virt, length))
    return out


@attrs.frozen
class ElfCore:
    """The layout of one ELF core: `head` (headers and notes) is written first, then
    `segments` ((guest-physical address, size), in file order) of memory."""

    head: bytes
    segments: tuple[tuple[int, int], ...]

    @property
    def memory_size(self) -> int:
        return sum(size for _, size in self.segments)

    @classmethod
    def plan(cls, blocks: Sequence[GuestBlock], *, nr_cpus: int, paging: bool,
             flt: Filter | None) -> ElfCore:
        elf_class = ELFCLASS64 if any(b.end > UINT_MAX for b in blocks) else ELFCLASS32
        notes_size = note_size(nr_cpus)
        maps = mappings(blocks, paging)
        if flt is not None:
            maps = _filter_mappings(maps, flt)
        phdr_num = 1 + len(maps)  # the emulator's maps stay far below PN_XNUM
        if elf_class == ELFCLASS64:
            ehdr_size, phdr_size = 64, 56
        else:
            ehdr_size, phdr_size = 52, 32
        memory_offset = ehdr_size + phdr_size * phdr_num + notes_size
        segments = [c for b in blocks if (c := _clip(b, flt)) is not None]

        def offset_range(phys: int, length: int) -> tuple[int, int]:
            """get_offset_range: the file offset of `phys` and how much of the
            mapping is in the file (-1 and 0: none)."""
            if flt is not None and not flt.begin <= phys < flt.end:
                return -1, 0
            offset = memory_offset
            for start, size in segments:
                if start <= phys < start + size:
                    filesz = length if phys + length <= start + size else size - (phys - start)
                    return phys - start + offset, filesz
                offset += size
            return -1, 0

        ident = b"\x7fELF" + bytes((elf_class, 1, 1)) + bytes(9)
        if elf_class == ELFCLASS64:
            head = ident + struct.pack("<HHIQQQIHHHHHH", ET_CORE, EM_386, 1, 0, ehdr_size,
                                       0, 0, ehdr_size, phdr_size, phdr_num, 0, 0, 0)
            head += struct.pack("<IIQQQQQQ", PT_NOTE, 0, memory_offset - notes_size, 0, 0,
                                notes_size, notes_size, 0)
            for m in maps:
                offset, filesz = offset_range(m.phys, m.length)
                head += struct.pack("<IIQQQQQQ", PT_LOAD, 0, offset & (1 << 64) - 1,
                                    m.virt, m.phys, filesz, m.length, 0)
        else:
            head = ident + struct.pack("<HHIIIIIHHHHHH", ET_CORE, EM_386, 1, 0, ehdr_size,
                                       0, 0, ehdr_size, phdr_size, phdr_num, 0, 0, 0)
            head += struct.pack("<IIIIIIII", PT_NOTE, memory_offset - notes_size, 0, 0,
                                notes_size, notes_size, 0, 0)
            for m in maps:
                offset, filesz = offset_range(m.phys, m.length)
                head += struct.pack("<IIIIIIII", PT_LOAD, offset & UINT_MAX, m.virt, m.phys,
                                    filesz, m.length, 0, 0)
        head += cpu_notes(nr_cpus)
        assert len(head) == memory_offset
        return cls(head=head, segments=tuple(segments))


# The ROMs a PC maps below 1 MiB and below 4 GiB: guest_phys_blocks_append keeps every
# RAM-backed region, ROMs included [hw/i386/pc.c pc_memory_init: pc.rom, 128 KiB at
# 0xc0000; hw/i386/pc_sysfw.c old_pc_system_rom_init: the BIOS (SeaBIOS's 256 KiB
# image) at 4 GiB minus its size, its last 128 KiB aliased at 0xe0000 as isa-bios].
PC_ROMS = (GuestBlock(0xC0000, 0xE0000), GuestBlock(0xE0000, 0x100000),
           GuestBlock(0x100000000 - 0x40000, 0x100000000))


def guest_phys_blocks(ram: list[tuple[int, int]], pc: bool) -> list[GuestBlock]:
    """guest_phys_blocks_append: the RAM ranges (base, size) and, on a PC, its ROMs,
    in address order. Adjacent regions of different memory stay separate blocks
    (their host memory is not contiguous)."""
    blocks = [GuestBlock(base, base + size) for base, size in ram]
    if pc:
        blocks.extend(PC_ROMS)
    return sorted(blocks, key=lambda b: b.start)


def elf_chunks(core: ElfCore, read: Callable[[int, int], bytes]) -> Iterator[Chunk]:
    """create_vmcore: the head (dump_begin), then every block's memory (dump_iterate)."""
    yield core.head, 0, "dump: failed to write elf header"
    for start, size in core.segments:
        for offset in range(0, size, CHUNK):
            n = min(CHUNK, size - offset)
            yield read(start + offset, n), n, "dump: failed to save memory"


def machine_blocks(machine_type: str, ram_size: int) -> list[GuestBlock]:
    """The guest-physical blocks of a machine type with `ram_size` bytes of RAM."""
    from devices.board import board_kind
    from devices.chipset import memory_layout

    layout = memory_layout(machine_type, ram_size)
    return guest_phys_blocks([(r.base, r.size) for r in layout.ranges],
                             pc=board_kind(machine_type) != "none")
