"""The block layer as block migration sees it: `migration.host.Disks` on the data path.

Part of the `blockdev` layer, loaded with the first block migration (never at
start-up): `vmm.vm` hands `disks(layer)` to the migration, whose
`migration.block` runs QEMU 2.11's migration/block.c over these objects. The source
reads the nodes bdrv_next returns (bdrv_pread, bdrv_is_allocated on the top node
only, an anonymous dirty bitmap that every write through the graph marks, an op
blocker); the destination writes through the named BlockBackend (blk_pwrite,
blk_pwrite_zeroes with MAY_UNMAP) after taking the node over
[block.c bdrv_invalidate_cache, block/block-backend.c blk_root_activate]. Errors
of the data path become OSError with QEMU's errno.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from blockdev import graph as g
from blockdev import io, query
from blockdev.bitmaps import DirtyBitmap
from blockdev.graph import Backend, Node, Reason
from blockdev.image.io import FileHandle
from blockdev.iotypes import BlockIOError
from blockdev.layer import BlockLayer

T = TypeVar("T")


def _io(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except BlockIOError as err:
        raise OSError(err.errno, os.strerror(err.errno)) from None


def activate(layer: BlockLayer, bs: Node) -> None:
    """bdrv_invalidate_cache of one node: its children first, then the node (its
    file starts locking), its permissions, and the BlockBackends above it take the
    permissions they deferred (blk_root_activate). A GenericError on a conflict."""
    if bs.driver is None or not bs.open_flags.inactive:
        return
    for c in bs.children:
        if c.bs is not None:
            activate(layer, c.bs)
    bs.open_flags.inactive = False
    if isinstance(bs.state, FileHandle):
        bs.state.lock.inactive = False
    g.guarded(lambda: g.check_perm(bs, *g.cumulative_perm(bs), []), bs)
    g.set_perm(bs, *g.cumulative_perm(bs))
    for blk in layer.backends:
        if blk.bs is bs and blk.disable_perm:
            blk.disable_perm = False
            layer.blk_set_perm(blk, blk.perm, blk.shared)


@attrs.define(kw_only=True, eq=False)
class NodeDisk:
    """One node (the source) or BlockBackend (the destination) of a block migration."""

    layer: BlockLayer
    bs: Node | None
    blk: Backend | None = None
    name: str = ""
    bitmap: DirtyBitmap | None = None
    reason: Reason | None = None

    def _node(self) -> Node:
        if self.bs is None:
            raise OSError(123, os.strerror(123))  # ENOMEDIUM
        return self.bs

    def length(self) -> int:
        """bdrv_nb_sectors / blk_nb_sectors in bytes (0 without a medium)."""
        return self.bs.nb_sectors() * 512 if self.bs is not None else 0

    def is_allocated(self, offset: int, length: int) -> tuple[bool, int]:
        node = self._node()
        return _io(lambda: io.bdrv_is_allocated(node, offset, length))

    def pread(self, offset: int, length: int) -> bytes:
        node = self._node()
        return _io(lambda: io.bdrv_pread(node, offset, length))

    def dirty_start(self, granularity: int) -> None:
        """bdrv_create_dirty_bitmap(bs, BLOCK_SIZE, NULL): anonymous, newest first."""
        node = self._node()
        self.bitmap = DirtyBitmap(name=None, granularity=granularity, size=node.length())
        node.bitmaps.insert(0, self.bitmap)

    def _granules(self, offset: int, length: int) -> range:
        assert self.bitmap is not None
        size = self.bitmap.granularity
        return range(offset // size, (offset + max(length, 1) - 1) // size + 1)

    def dirty_get(self, offset: int) -> bool:
        bm = self.bitmap
        return bm is not None and offset // bm.granularity in bm.dirty

    def dirty_reset(self, offset: int, length: int) -> None:
        if self.bitmap is not None:
            self.bitmap.dirty.difference_update(self._granules(offset, length))

    def dirty_count(self) -> int:
        return self.bitmap.count if self.bitmap is not None else 0

    def dirty_stop(self) -> None:
        """bdrv_release_dirty_bitmap."""
        if self.bitmap is not None and self.bs is not None and self.bitmap in self.bs.bitmaps:
            self.bs.bitmaps.remove(self.bitmap)
        self.bitmap = None

    def block_ops(self, reason: str) -> None:
        if self.bs is not None:
            self.reason = Reason(reason)
            self.bs.op_block_all(self.reason)

    def unblock_ops(self) -> None:
        if self.bs is not None and self.reason is not None:
            self.bs.op_unblock_all(self.reason)
        self.reason = None

    def activate(self) -> None:
        """blk_invalidate_cache."""
        if self.bs is not None:
            activate(self.layer, self.bs)

    def cluster_size(self) -> int:
        if self.bs is None:
            return 0
        info: dict[str, Any] | None = query.get_info(self.layer, self.bs)
        return int(info["cluster_size"]) if info is not None else 0

    def pwrite(self, offset: int, data: bytes) -> None:
        blk = self.blk
        assert blk is not None
        _io(lambda: io.blk_pwrite(blk, offset, data))

    def pwrite_zeroes(self, offset: int, length: int) -> None:
        blk = self.blk
        assert blk is not None
        _io(lambda: io.blk_pwrite_zeroes(blk, offset, length, may_unmap=True))


@attrs.define(kw_only=True, eq=False)
class LayerDisks:
    """`migration.host.Disks` of one machine's block layer."""

    layer: BlockLayer

    def migratable(self) -> list[NodeDisk]:
        """init_blk_migration: bdrv_next's nodes that are not read-only, named by
        bdrv_get_device_name."""
        return [NodeDisk(layer=self.layer, bs=bs, name=bs.device_name())
                for bs in self.layer.bdrv_next_roots() if not bs.read_only]

    def by_name(self, name: str) -> NodeDisk | None:
        blk = self.layer.blk_by_name(name)
        if blk is None:
            return None
        return NodeDisk(layer=self.layer, bs=blk.bs, blk=blk, name=name)


def disks(layer: BlockLayer) -> LayerDisks:
    return LayerDisks(layer=layer)
