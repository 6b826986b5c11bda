"""The kdump-compressed core of `dump-guest-memory` (format kdump-zlib), as pieces.

Pure part of `devices.dump` [dump.c create_kdump_vmcore, write_start_flat_header,
write_buffer, write_end_flat_header, create_header32/64, write_dump_bitmap,
set_dump_bitmap, write_dump_pages, write_cache, get_next_page; include/sysemu/dump.h].
QEMU writes makedumpfile's *flattened* format: a 4096-byte header, then records of
(big-endian offset, size, data) that place pieces of the kdump file (disk_dump_header,
kdump_sub_header with the CPUs' notes, the two identical page bitmaps, the page
descriptors and the page data, each page zlib-compressed at Z_BEST_SPEED when that
makes it smaller, every zero page sharing one zero page), and an end record of
(-1, -1). `makedumpfile -R` turns it back into the kdump file. The notes are those
of the ELF core (`devices.dump.elf.cpu_notes`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Sequence

from devices.dump.elf import UINT_MAX, GuestBlock, cpu_notes, note_size
from devices.dump.job import Chunk

PAGE_SIZE = 4096  # TARGET_PAGE_SIZE, the block size of the kdump file
FLAT_HEADER_SIZE = 4096  # MAX_SIZE_MDF_HEADER
DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_LEVEL = 1
HEADER_BLOCKS = 1  # DISKDUMP_HEADER_BLOCKS
# target/i386/cpu.h ELF_MACHINE_UNAME of the x86_64 binary.
MACHINE_UNAME = b"x86_64"
PAGE_DESC = struct.Struct("<QIIQ")  # PageDescriptor: offset, size, flags, page_flags
SUB_HEADER_64 = struct.Struct("<QIIQQQQQQQQQQQ")
SUB_HEADER_32 = struct.Struct("<IIIIIQIQIQIQQQ")


def _div_up(a: int, b: int) -> int:
    return -(-a // b)


def _record(offset: int, data: bytes) -> bytes:
    """write_buffer: a MakedumpfileDataHeader (big-endian), then the data."""
    return struct.pack(">qq", offset, len(data)) + data


def _disk_dump_header(elf64: bool, *, max_mapnr: int, nr_cpus: int, sub_hdr_size: int,
                      bitmap_blocks: int) -> bytes:
    """create_header64 / create_header32: DiskDumpHeader, header version 6."""
    utsname = bytes(65 * 4) + MACHINE_UNAME.ljust(65, b"\0") + bytes(65)
    timestamp = bytes(22 if elf64 else 10)
    return (b"KDUMP   " + struct.pack("<I", 6) + utsname + timestamp
            + struct.pack("<10I", DUMP_DH_COMPRESSED_ZLIB, PAGE_SIZE, sub_hdr_size,
                          bitmap_blocks, min(max_mapnr, UINT_MAX), 0, 0, 0, 0, nr_cpus))


class _Cache:
    """write_cache's DataCache: four pages gathered, then one record."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.buf = bytearray()
        self.size = 4 * PAGE_SIZE

    def add(self, data: bytes) -> bytes:
        out = b""
        if len(self.buf) + len(data) > self.size:
            out = self.flush()
        self.buf += data
        return out

    def flush(self) -> bytes:
        if not self.buf:
            return b""
        out = _record(self.offset, bytes(self.buf))
        self.offset += len(self.buf)
        self.buf.clear()
        return out


def _pages(blocks: Sequence[GuestBlock]) -> Iterator[int]:
    """get_next_page: every page frame number of every block, in order."""
    for block in blocks:
        yield from range(block.start // PAGE_SIZE, block.end // PAGE_SIZE)


def kdump_chunks(blocks: Sequence[GuestBlock], read: Callable[[int, int], bytes], *,
                 nr_cpus: int) -> Iterator[Chunk]:
    """create_kdump_vmcore, piece by piece; each page counts PAGE_SIZE bytes of
    written_size."""
    elf64 = any(b.end > UINT_MAX for b in blocks)
    notes_len = note_size(nr_cpus)
    max_mapnr = blocks[-1].end // PAGE_SIZE
    len_bitmap = _div_up(_div_up(max_mapnr, 8), PAGE_SIZE) * PAGE_SIZE
    sub = SUB_HEADER_64 if elf64 else SUB_HEADER_32
    sub_hdr_size = _div_up(sub.size + notes_len, PAGE_SIZE)
    bitmap_blocks = _div_up(len_bitmap, PAGE_SIZE) * 2
    offset_note = HEADER_BLOCKS * PAGE_SIZE + sub.size
    offset_bitmap = (HEADER_BLOCKS + sub_hdr_size) * PAGE_SIZE
    offset_page = (HEADER_BLOCKS + sub_hdr_size + bitmap_blocks) * PAGE_SIZE

    flat = (b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)).ljust(
        FLAT_HEADER_SIZE, b"\0")
    yield flat, 0, "dump: failed to write start flat header"
    header = _disk_dump_header(elf64, max_mapnr=max_mapnr, nr_cpus=nr_cpus,
                               sub_hdr_size=sub_hdr_size, bitmap_blocks=bitmap_blocks)
    yield _record(0, header), 0, "dump: failed to write disk dump header"
    # phys_base, dump_level, split, start/end pfn, vmcoreinfo (none), the notes,
    # eraseinfo (none), start/end pfn 64, max_mapnr_64.
    kh = sub.pack(0, DUMP_LEVEL, 0, 0, 0, 0, 0, offset_note, notes_len, 0, 0, 0, 0,
                  max_mapnr)
    yield _record(HEADER_BLOCKS * PAGE_SIZE, kh), 0, "dump: failed to write kdump sub header"
    yield _record(offset_note, cpu_notes(nr_cpus)), 0, "dump: failed to write notes"

    # write_dump_bitmap: every page of every block is dumpable (dump level 1); the
    # buffers go out one page of bitmap at a time, the second bitmap a copy.
    bitmap = bytearray(len_bitmap)
    count = 0
    for pfn in _pages(blocks):
        bitmap[pfn // 8] |= 1 << (pfn % 8)
        count += 1
    used = ((max_mapnr - 1) // (PAGE_SIZE * 8) + 1) * PAGE_SIZE
    for off in range(0, used, PAGE_SIZE):
        piece = bytes(bitmap[off:off + PAGE_SIZE])
        yield (_record(offset_bitmap + off, piece)
               + _record(offset_bitmap + len_bitmap + off, piece)), 0, \
            "dump: failed to set dump_bitmap"

    # write_dump_pages
    descs = _Cache(offset_page)
    data = _Cache(offset_page + PAGE_DESC.size * count)
    offset_data = data.offset
    zero_desc = PAGE_DESC.pack(offset_data, PAGE_SIZE, 0, 0)
    out = data.add(bytes(PAGE_SIZE))
    offset_data += PAGE_SIZE
    if out:
        yield out, 0, "dump: failed to write page data (zero page)"
    for pfn in _pages(blocks):
        page = read(pfn * PAGE_SIZE, PAGE_SIZE)
        pieces = b""
        if not any(page):
            pieces += descs.add(zero_desc)
        else:
            packed = zlib.compress(page, 1)
            if len(packed) < PAGE_SIZE:
                flags, stored = DUMP_DH_COMPRESSED_ZLIB, packed
            else:
                flags, stored = 0, page
            pieces += data.add(stored)
            pieces += descs.add(PAGE_DESC.pack(offset_data, len(stored), flags, 0))
            offset_data += len(stored)
        yield pieces, PAGE_SIZE, "dump: failed to write page data"
    yield descs.flush(), 0, "dump: failed to sync cache for page_desc"
    yield data.flush(), 0, "dump: failed to sync cache for page_data"
    yield struct.pack(">qq", -1, -1), 0, "dump: failed to write end flat header"
