"""qcow2's internal snapshots written into the image: the snapshot table, the copy
of the L1 table and the refcounts that make the snapshot's clusters shared
[block/qcow2-snapshot.c qcow2_snapshot_create, qcow2_snapshot_delete,
qcow2_write_snapshots; block/qcow2-refcount.c qcow2_update_snapshot_refcount].

Part of the real-file edge (`blockdev.image.formats`), above `qcow2_data` whose
engine (`Qcow2Data`) it works on: its caches, refcounts and L1 table; the request
path (`blockdev.io.bdrv_snapshot_create/_delete`) calls `create` and `delete`. After a
snapshot, the clusters it shares with the active image have a refcount above one
and lose their COPIED flag, so that the engine's next write to them copies them
(handle_alloc / get_cluster_table) and the snapshot keeps its data. `qemu-img
snapshot -l` and `qemu-img check` read what this module writes.
"""

from __future__ import annotations

import errno
import struct

import attrs

from blockdev.image.formats.base import BlockIOError, round_up
from blockdev.image.formats.qcow2 import (
    _SNAPSHOT,
    QCOW_MAX_SNAPSHOTS,
    QCOW_MAX_SNAPSHOTS_SIZE,
)
from blockdev.image.formats.qcow2_check import (
    COMPRESSED,
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    NORMAL,
    QCOW_OFLAG_COPIED,
    ZERO_ALLOC,
    cluster_type,
)
from blockdev.image.formats.qcow2_data import Qcow2Data, _Corrupt

# QCowSnapshotHeader (qcow2.py reads it): l1_table_offset, l1_size, id_str_size,
# name_size, date_sec, date_nsec, vm_clock_nsec, vm_state_size, extra_data_size.
_ENTRY = _SNAPSHOT
# QCowSnapshotExtraData: vm_state_size_large, disk_size.
_EXTRA = struct.Struct(">QQ")
_OFF_SNAPSHOTS = 60  # nb_snapshots (u32) then snapshots_offset (u64)


@attrs.define(kw_only=True)
class Snapshot:
    """QCowSnapshot: one entry of the table."""

    l1_table_offset: int
    l1_size: int
    id_str: str
    name: str
    date_sec: int
    date_nsec: int
    vm_clock_nsec: int
    vm_state_size: int
    disk_size: int


def read_table(e: Qcow2Data) -> tuple[list[Snapshot], int]:
    """qcow2_read_snapshots: the entries and the table's size in bytes."""
    snaps: list[Snapshot] = []
    offset = e.snapshots_offset
    for _ in range(e.nb_snapshots):
        offset = round_up(offset, 8)
        (l1_offset, l1_size, id_size, name_size, date_sec, date_nsec, vm_clock_nsec,
         vm_state_size, extra_size) = _ENTRY.unpack(e._pread(offset, _ENTRY.size))
        offset += _ENTRY.size
        extra = e._pread(offset, min(_EXTRA.size, extra_size)) if extra_size else b""
        offset += extra_size
        disk_size = e.size
        if len(extra) >= 8:
            vm_state_size = struct.unpack_from(">Q", extra, 0)[0]
        if len(extra) >= 16:
            disk_size = struct.unpack_from(">Q", extra, 8)[0]
        id_str = e._pread(offset, id_size).decode("utf-8", "surrogateescape")
        offset += id_size
        name = e._pread(offset, name_size).decode("utf-8", "surrogateescape")
        offset += name_size
        snaps.append(Snapshot(l1_table_offset=l1_offset, l1_size=l1_size, id_str=id_str,
                              name=name, date_sec=date_sec, date_nsec=date_nsec,
                              vm_clock_nsec=vm_clock_nsec, vm_state_size=vm_state_size,
                              disk_size=disk_size))
    return snaps, offset - e.snapshots_offset


def _flush(e: Qcow2Data) -> None:
    """bdrv_flush of the qcow2 node: refcount blocks, L2 tables, then the file."""
    e.refcounts.write()
    e.l2_cache.write()
    e._file_flush()


def write_table(e: Qcow2Data, snaps: list[Snapshot], old_size: int) -> None:
    """qcow2_write_snapshots: the whole table in new clusters, the header pointed at
    it, the old table's clusters freed."""
    size = 0
    for sn in snaps:
        size = round_up(size, 8) + _ENTRY.size + _EXTRA.size
        size += len(sn.id_str.encode("utf-8", "surrogateescape"))
        size += len(sn.name.encode("utf-8", "surrogateescape"))
        if size > QCOW_MAX_SNAPSHOTS_SIZE:
            raise BlockIOError(errno.EFBIG)
    table_offset = e.refcounts.alloc(size)
    _flush(e)
    buf = bytearray()
    for sn in snaps:
        buf += bytes(round_up(len(buf), 8) - len(buf))
        id_bytes = sn.id_str.encode("utf-8", "surrogateescape")
        name_bytes = sn.name.encode("utf-8", "surrogateescape")
        vm_state_32 = sn.vm_state_size if sn.vm_state_size <= 0xFFFFFFFF else 0
        buf += _ENTRY.pack(sn.l1_table_offset, sn.l1_size, len(id_bytes), len(name_bytes),
                           sn.date_sec, sn.date_nsec, sn.vm_clock_nsec, vm_state_32,
                           _EXTRA.size)
        buf += _EXTRA.pack(sn.vm_state_size, sn.disk_size)
        buf += id_bytes + name_bytes
    if buf:
        e._pwrite(table_offset, bytes(buf))
    e._file_flush()
    e._pwrite(_OFF_SNAPSHOTS, struct.pack(">IQ", len(snaps), table_offset))
    e._file_flush()
    old_offset = e.snapshots_offset
    e.nb_snapshots, e.snapshots_offset = len(snaps), table_offset
    if old_size:
        e.refcounts.free(old_offset, old_size)


def _update_refcount(e: Qcow2Data, offset: int, length: int, addend: int) -> None:
    while e.refcounts._update(offset, length, addend):
        pass  # a refcount block was allocated first: search again, as QEMU does


def update_snapshot_refcount(e: Qcow2Data, l1: list[int], addend: int) -> bool:
    """qcow2_update_snapshot_refcount over the L1 table `l1` (the active one, or a
    snapshot's copy): every L2 table and data cluster it references gets `addend`
    (-1, 0 or 1), and each entry's COPIED flag says whether its refcount is now
    one. `l1` is changed in place; True when an entry of it changed."""
    cs = e.cluster_size
    l1_modified = False
    for i, l1_entry in enumerate(l1):
        if not l1_entry:
            continue
        l2_offset = l1_entry & L1E_OFFSET_MASK
        if l2_offset % cs:
            raise _Corrupt(f"L2 table offset {l2_offset:#x} unaligned (L1 index: {i:#x})")
        table = e.l2_cache.get(l2_offset)
        for j, old in enumerate(e._l2_entries(table, 0, e.l2_size)):
            entry = old & ~QCOW_OFLAG_COPIED
            typ = cluster_type(entry)
            if typ == COMPRESSED:
                nb_csectors = ((entry >> e.csize_shift) & e.csize_mask) + 1
                if addend:
                    _update_refcount(e, (entry & e.cluster_offset_mask) & ~511,
                                     nb_csectors * 512, addend)
                refcount = 2  # compressed clusters are never modified in place
            elif typ in (NORMAL, ZERO_ALLOC):
                host = entry & L2E_OFFSET_MASK
                if host % cs:
                    raise _Corrupt(f"Cluster allocation offset {host:#x} unaligned "
                                   f"(L2 offset: {l2_offset:#x}, L2 index: {j:#x})")
                if addend:
                    _update_refcount(e, host, cs, addend)
                refcount = e.refcounts.get(host // cs)
            else:
                refcount = 0
            if refcount == 1:
                entry |= QCOW_OFLAG_COPIED
            if entry != old:
                table = e.l2_cache.get(l2_offset)
                struct.pack_into(">Q", table, j * 8, entry)
                e.l2_cache.mark_dirty(l2_offset)
        if addend:
            _update_refcount(e, l2_offset, cs, addend)
        new_entry = l2_offset
        if e.refcounts.get(l2_offset // cs) == 1:
            new_entry |= QCOW_OFLAG_COPIED
        if new_entry != l1_entry:
            l1[i] = new_entry
            l1_modified = True
    _flush(e)
    return l1_modified


def _write_active_l1(e: Qcow2Data) -> None:
    e._pwrite(e.l1_table_offset, struct.pack(f">{len(e.l1)}Q", *e.l1))
    e._file_flush()


def create(e: Qcow2Data, *, id_str: str, name: str, date_sec: int, date_nsec: int,
           vm_clock_nsec: int, vm_state_size: int = 0) -> None:
    """qcow2_snapshot_create on an open engine (the caller chose the id,
    find_new_snapshot_id); a corruption found on the way is the engine's."""
    e._check_writable()
    e._guard(lambda: _create(e, id_str=id_str, name=name, date_sec=date_sec,
                             date_nsec=date_nsec, vm_clock_nsec=vm_clock_nsec,
                             vm_state_size=vm_state_size))


def delete(e: Qcow2Data, snapshot_id: str | None, name: str | None) -> None:
    """qcow2_snapshot_delete on an open engine."""
    e._check_writable()
    e._guard(lambda: _delete(e, snapshot_id, name))


def _create(e: Qcow2Data, *, id_str: str, name: str, date_sec: int, date_nsec: int,
            vm_clock_nsec: int, vm_state_size: int) -> None:
    """qcow2_snapshot_create."""
    snaps, old_size = read_table(e)
    if len(snaps) >= QCOW_MAX_SNAPSHOTS:
        raise BlockIOError(errno.EFBIG)
    if any(sn.id_str == id_str for sn in snaps):
        raise BlockIOError(errno.EEXIST)
    l1_size = len(e.l1)
    l1_offset = e.refcounts.alloc(l1_size * 8)
    e._pwrite(l1_offset, struct.pack(f">{l1_size}Q", *e.l1))
    if update_snapshot_refcount(e, e.l1, 1):
        _write_active_l1(e)
    snaps.append(Snapshot(l1_table_offset=l1_offset, l1_size=l1_size, id_str=id_str,
                          name=name, date_sec=date_sec, date_nsec=date_nsec,
                          vm_clock_nsec=vm_clock_nsec, vm_state_size=vm_state_size,
                          disk_size=e.size))
    write_table(e, snaps, old_size)


def _delete(e: Qcow2Data, snapshot_id: str | None, name: str | None) -> None:
    """qcow2_snapshot_delete: out of the table first, then the clusters only it
    used are freed, then the active image's COPIED flags are brought up to date.
    ENOENT when no snapshot matches (find_snapshot_by_id_and_name)."""
    snaps, old_size = read_table(e)
    found = [sn for sn in snaps if (snapshot_id is None or sn.id_str == snapshot_id)
             and (name is None or sn.name == name)]
    if not found:
        raise BlockIOError(errno.ENOENT, "Can't find the snapshot")
    sn = found[0]
    snaps.remove(sn)
    write_table(e, snaps, old_size)
    raw = e._pread(sn.l1_table_offset, sn.l1_size * 8) if sn.l1_size else b""
    update_snapshot_refcount(e, list(struct.unpack(f">{sn.l1_size}Q", raw)), -1)
    if sn.l1_size:
        e.refcounts.free(sn.l1_table_offset, sn.l1_size * 8)
    if update_snapshot_refcount(e, e.l1, 0):
        _write_active_l1(e)
    _flush(e)
