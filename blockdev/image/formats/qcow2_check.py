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
from typing import TYPE_CHECKING, Any, cast

from blockdev.image.formats.base import OpenContext

if TYPE_CHECKING:
    from blockdev.image.formats.qcow2_data import Qcow2Data

_SNAPSHOT = struct.Struct(">QIHHIIQII")
_BITMAP_DIR_ENTRY = struct.Struct(">QIIBBHI")
BME_TABLE_ENTRY_OFFSET_MASK = 0x00FFFFFFFFFFFE00


def expected_refcounts(engine: Qcow2Data) -> Counter[int]:
    """cluster index -> how many references the metadata makes to it."""
    from blockdev.image.formats import qcow2
    from blockdev.image.formats.qcow2_data import (
        COMPRESSED,
        L1E_OFFSET_MASK,
        L2E_OFFSET_MASK,
        NORMAL,
        REFT_OFFSET_MASK,
        ZERO_ALLOC,
        cluster_type,
    )

    cs = engine.cluster_size
    counts: Counter[int] = Counter()

    def inc(offset: int, size: int) -> None:
        """qcow2_inc_refcounts_imrt."""
        if size <= 0:
            return
        for idx in range(offset // cs, (offset + size - 1) // cs + 1):
            counts[idx] += 1

    def l1_table(l1: list[int]) -> None:
        """check_refcounts_l1 / check_refcounts_l2."""
        for entry in l1:
            l2_off = entry & L1E_OFFSET_MASK
            if not l2_off:
                continue
            inc(l2_off, cs)
            raw = engine.l2_cache.get(l2_off)
            for e in struct.unpack(f">{engine.l2_size}Q", bytes(raw)):
                typ = cluster_type(e)
                if typ == COMPRESSED:
                    nb_csectors = ((e >> engine.csize_shift) & engine.csize_mask) + 1
                    coff = (e & engine.cluster_offset_mask) & ~511
                    inc(coff, nb_csectors * 512)
                elif typ in (NORMAL, ZERO_ALLOC):
                    inc(e & L2E_OFFSET_MASK, cs)

    inc(0, cs)
    inc(engine.l1_table_offset, engine.l1_size * 8)
    l1_table(engine.l1)

    ctx = OpenContext(file=cast(Any, engine.file), filename="", read_only=True)
    header = qcow2.read_header(ctx).header
    # Snapshots: the table, then each snapshot's L1 table and what it references.
    offset = header.snapshots_offset
    for _ in range(header.nb_snapshots):
        offset = (offset + 7) // 8 * 8
        (l1_offset, l1_size, id_size, name_size, _ds, _dn, _vm, _vs,
         extra) = _SNAPSHOT.unpack(engine._pread(offset, _SNAPSHOT.size))
        offset += _SNAPSHOT.size + extra + id_size + name_size
        inc(l1_offset, l1_size * 8)
        raw = engine._pread(l1_offset, l1_size * 8)
        l1_table(list(struct.unpack(f">{l1_size}Q", raw)))
    if header.nb_snapshots:
        inc(header.snapshots_offset, offset - header.snapshots_offset)
    # Refcount structures.
    inc(engine.refcounts.table_offset, len(engine.refcounts.table) * 8)
    for entry in engine.refcounts.table:
        off = entry & REFT_OFFSET_MASK
        if off:
            inc(off, cs)
    # Persistent bitmaps.
    if header.bitmap_directory_offset and header.bitmap_directory_size:
        inc(header.bitmap_directory_offset, header.bitmap_directory_size)
        raw_dir = engine._pread(header.bitmap_directory_offset, header.bitmap_directory_size)
        pos = 0
        while pos + _BITMAP_DIR_ENTRY.size <= len(raw_dir):
            (table_offset, table_size, _flags, _kind, _gran, name_size,
             extra) = _BITMAP_DIR_ENTRY.unpack_from(raw_dir, pos)
            pos += (_BITMAP_DIR_ENTRY.size + extra + name_size + 7) // 8 * 8
            inc(table_offset, table_size * 8)
            table = engine._pread(table_offset, table_size * 8)
            for e in struct.unpack(f">{table_size}Q", table):
                if e & BME_TABLE_ENTRY_OFFSET_MASK:
                    inc(e & BME_TABLE_ENTRY_OFFSET_MASK, cs)
    if header.crypto_header is not None:
        inc(header.crypto_header[0], header.crypto_header[1])
    return counts
