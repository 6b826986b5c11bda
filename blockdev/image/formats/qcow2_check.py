"""What every cluster's refcount of a qcow2 image should be, counted from the
metadata that references it: block/qcow2-refcount.c calculate_refcounts, the heart
of qcow2_check_refcounts. The data engine (`qcow2_data`) uses it to repair a dirty
image on a read-write open, as qcow2_do_open does; tests use it as an independent
checker next to `qemu-img check`.

Counted, as calculate_refcounts counts them: the header cluster, the active L1
table, its L2 tables and their data (compressed clusters by the sectors they span),
every internal snapshot's L1 table with its L2 tables and data, the snapshot
table, the refcount table and refcount blocks, the bitmap directory with each
bitmap's table and data clusters, and the LUKS header of an encrypted image.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, cast

from blockdev.image.formats.base import FileView, OpenContext

# qcow2.h: L1/L2 entry bits and the cluster types (qcow2_get_cluster_type).
QCOW_OFLAG_COPIED = 1 << 63
QCOW_OFLAG_COMPRESSED = 1 << 62
QCOW_OFLAG_ZERO = 1 << 0
L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_COMPRESSED_OFFSET_SIZE_MASK = 0x3FFFFFFFFFFFFFFF
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
UNALLOCATED = 0
ZERO_PLAIN = 1
ZERO_ALLOC = 2
NORMAL = 3
COMPRESSED = 4

_SNAPSHOT = struct.Struct(">QIHHIIQII")
_BITMAP_DIR_ENTRY = struct.Struct(">QIIBBHI")
BME_TABLE_ENTRY_OFFSET_MASK = 0x00FFFFFFFFFFFE00


def cluster_type(entry: int) -> int:
    """qcow2_get_cluster_type."""
    if entry & QCOW_OFLAG_COMPRESSED:
        return COMPRESSED
    if entry & QCOW_OFLAG_ZERO:
        return ZERO_ALLOC if entry & L2E_OFFSET_MASK else ZERO_PLAIN
    if not entry & L2E_OFFSET_MASK:
        return UNALLOCATED
    return NORMAL


def expected_refcounts(file: FileView, *, cluster_bits: int, l1: Sequence[int],
                       l1_table_offset: int, reftable: Sequence[int],
                       reftable_offset: int,
                       read_l2: Callable[[int], bytes]) -> Counter[int]:
    """cluster index -> how many references the metadata makes to it; `l1` and
    `reftable` are the in-memory tables, `read_l2(offset)` an L2 table (through
    the caller's cache, so that unwritten changes count)."""
    from blockdev.image.formats import qcow2

    cs = 1 << cluster_bits
    l2_size = cs // 8
    csize_shift = 62 - (cluster_bits - 8)
    csize_mask = (1 << (cluster_bits - 8)) - 1
    cluster_offset_mask = (1 << csize_shift) - 1
    counts: Counter[int] = Counter()

    def inc(offset: int, size: int) -> None:
        """qcow2_inc_refcounts_imrt."""
        if size <= 0:
            return
        for idx in range(offset // cs, (offset + size - 1) // cs + 1):
            counts[idx] += 1

    def l1_table(table: Sequence[int]) -> None:
        """check_refcounts_l1 / check_refcounts_l2."""
        for entry in table:
            l2_off = entry & L1E_OFFSET_MASK
            if not l2_off:
                continue
            inc(l2_off, cs)
            for e in struct.unpack(f">{l2_size}Q", read_l2(l2_off)):
                typ = cluster_type(e)
                if typ == COMPRESSED:
                    nb_csectors = ((e >> csize_shift) & csize_mask) + 1
                    inc((e & cluster_offset_mask) & ~511, nb_csectors * 512)
                elif typ in (NORMAL, ZERO_ALLOC):
                    inc(e & L2E_OFFSET_MASK, cs)

    inc(0, cs)
    inc(l1_table_offset, len(l1) * 8)
    l1_table(l1)

    # (An encrypted image's reader wants a key secret named; only its layout is read.)
    ctx = OpenContext(file=cast(Any, file), filename="", read_only=True, key_secret="",
                      system_emulator=False)
    header = qcow2.read_header(ctx).header
    # Snapshots: the table, then each snapshot's L1 table and what it references.
    offset = header.snapshots_offset
    for _ in range(header.nb_snapshots):
        offset = (offset + 7) // 8 * 8
        (l1_offset, l1_size, id_size, name_size, _ds, _dn, _vm, _vs,
         extra) = _SNAPSHOT.unpack(file.pread(offset, _SNAPSHOT.size))
        offset += _SNAPSHOT.size + extra + id_size + name_size
        inc(l1_offset, l1_size * 8)
        raw = file.pread(l1_offset, l1_size * 8)
        l1_table(struct.unpack(f">{l1_size}Q", raw))
    if header.nb_snapshots:
        inc(header.snapshots_offset, offset - header.snapshots_offset)
    # Refcount structures.
    inc(reftable_offset, len(reftable) * 8)
    for entry in reftable:
        off = entry & REFT_OFFSET_MASK
        if off:
            inc(off, cs)
    # Persistent bitmaps.
    if header.bitmap_directory_offset and header.bitmap_directory_size:
        inc(header.bitmap_directory_offset, header.bitmap_directory_size)
        raw_dir = file.pread(header.bitmap_directory_offset, header.bitmap_directory_size)
        pos = 0
        while pos + _BITMAP_DIR_ENTRY.size <= len(raw_dir):
            (table_offset, table_size, _flags, _kind, _gran, name_size,
             extra) = _BITMAP_DIR_ENTRY.unpack_from(raw_dir, pos)
            pos += (_BITMAP_DIR_ENTRY.size + extra + name_size + 7) // 8 * 8
            inc(table_offset, table_size * 8)
            table = file.pread(table_offset, table_size * 8)
            for e in struct.unpack(f">{table_size}Q", table):
                if e & BME_TABLE_ENTRY_OFFSET_MASK:
                    inc(e & BME_TABLE_ENTRY_OFFSET_MASK, cs)
    if header.crypto_header is not None:
        inc(header.crypto_header[0], header.crypto_header[1])
    return counts
