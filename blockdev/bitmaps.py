"""Dirty bitmaps: which parts of a node were written since the bitmap was cleared.

Pure model of the `blockdev` layer [block/dirty-bitmap.c, blockdev.c
qmp_block_dirty_bitmap_*]. A node keeps its bitmaps newest first, as QEMU's list
does (`query-block` lists them in that order, anonymous ones included). A bitmap
records dirty granules; `count` is dirty bytes (granules times granularity, as
hbitmap_count reports). A *frozen* bitmap has a successor (an incremental backup
owns it); a *disabled* one records nothing; a *readonly* one was loaded from an
image opened read-only. Persistent bitmaps live in the emulator's model of the qcow2
image only: the image file itself is never rewritten.
"""

from __future__ import annotations

import attrs

from schema.errors import GenericError


@attrs.define(kw_only=True, eq=False)
class DirtyBitmap:
    name: str | None
    granularity: int
    size: int
    disabled: bool = False
    readonly: bool = False
    persistent: bool = False
    autoload: bool = False
    successor: DirtyBitmap | None = None
    dirty: set[int] = attrs.Factory(set)

    @property
    def frozen(self) -> bool:
        return self.successor is not None

    @property
    def status(self) -> str:
        """bdrv_dirty_bitmap_status."""
        if self.frozen:
            return "frozen"
        if self.disabled:
            return "disabled"
        return "active"

    @property
    def count(self) -> int:
        return len(self.dirty) * self.granularity

    def mark(self, offset: int, length: int) -> None:
        """bdrv_set_dirty: a write to [offset, offset+length) dirties its granules."""
        if self.disabled or length <= 0:
            return
        first = offset // self.granularity
        last = (offset + length - 1) // self.granularity
        limit = max(0, (self.size + self.granularity - 1) // self.granularity)
        self.dirty.update(range(first, min(last + 1, limit)))

    def sha256(self) -> str:
        """hbitmap_sha256 [util/hbitmap.c]: SHA-256 of the bottom level of the
        HBitmap, which holds one bit per granule (size rounded up) in whole
        64-bit words, little-endian on the hosts QEMU 2.11 is measured on, at
        least one word."""
        import hashlib

        granules = (self.size + self.granularity - 1) // self.granularity
        words = max(1, (granules + 63) // 64)
        value = 0
        for g in self.dirty:
            value |= 1 << g
        return hashlib.sha256(value.to_bytes(words * 8, "little")).hexdigest()

    def clear(self) -> set[int]:
        """bdrv_clear_dirty_bitmap; returns the old content (for a transaction's undo)."""
        old, self.dirty = self.dirty, set()
        return old

    def undo_clear(self, backup: set[int]) -> None:
        """bdrv_undo_clear_dirty_bitmap: the content `clear` returned comes back,
        replacing whatever the bitmap holds now."""
        self.dirty = backup

    def truncate(self, size: int) -> None:
        """bdrv_dirty_bitmap_truncate: granules past the new end are dropped."""
        self.size = size
        limit = (size + self.granularity - 1) // self.granularity
        self.dirty = {g for g in self.dirty if g < limit}

    def info(self) -> dict[str, object]:
        """BlockDirtyInfo [bdrv_query_dirty_bitmaps]."""
        out: dict[str, object] = {}
        if self.name is not None:
            out["name"] = self.name
        out["count"] = self.count
        out["granularity"] = self.granularity
        out["status"] = self.status
        return out


def default_granularity(cluster_size: int | None) -> int:
    """bdrv_get_default_bitmap_granularity: the cluster size clamped to [4K, 64K];
    64K when the driver reports none."""
    if cluster_size and cluster_size > 0:
        return min(65536, max(4096, cluster_size))
    return 65536


def valid_granularity(granularity: int) -> bool:
    return granularity >= 512 and granularity & (granularity - 1) == 0


def create_successor(bitmaps: list[DirtyBitmap], bitmap: DirtyBitmap) -> DirtyBitmap:
    """bdrv_dirty_bitmap_create_successor: an anonymous bitmap of the same
    granularity joins the node's list (`bitmaps`, newest first) and records the
    writes from now on; `bitmap` is frozen (it records nothing) until the successor
    is abdicated to or reclaimed."""
    if bitmap.frozen:
        raise GenericError("Cannot create a successor for a bitmap that is currently frozen")
    child = DirtyBitmap(name=None, granularity=bitmap.granularity, size=bitmap.size,
                        disabled=bitmap.disabled)
    bitmaps.insert(0, child)
    bitmap.successor = child
    return child


def abdicate(bitmaps: list[DirtyBitmap], bitmap: DirtyBitmap) -> DirtyBitmap:
    """bdrv_dirty_bitmap_abdicate: the successor takes the bitmap's name (and its
    persistence), the bitmap goes; the returned successor holds only what was
    written since it was created."""
    successor = bitmap.successor
    assert successor is not None
    successor.name, bitmap.name = bitmap.name, None
    bitmap.successor = None
    successor.persistent, bitmap.persistent = bitmap.persistent, False
    successor.autoload, bitmap.autoload = bitmap.autoload, False
    bitmaps.remove(bitmap)
    return successor


def reclaim(bitmaps: list[DirtyBitmap], bitmap: DirtyBitmap) -> DirtyBitmap:
    """bdrv_reclaim_dirty_bitmap: the successor's bits merge into the bitmap
    (hbitmap_merge), the successor goes, the bitmap is no longer frozen."""
    successor = bitmap.successor
    assert successor is not None
    bitmap.dirty |= successor.dirty
    bitmaps.remove(successor)
    bitmap.successor = None
    return bitmap
