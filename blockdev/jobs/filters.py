"""The block jobs' filter drivers: `mirror_top` and `commit_top`, and the nodes the
jobs make of them.

Pure part of the `blockdev` layer (`blockdev.jobs`) [block/mirror.c bdrv_mirror_top,
block/commit.c bdrv_commit_top, block.c bdrv_new_open_driver]. drive-mirror,
blockdev-mirror and the active block-commit (`blockdev.jobs.mirror`) put a
`mirror_top` node above the source; the intermediate block-commit
(`blockdev.jobs.commit`) puts a `commit_top` node above `top`. Both filters pass every
request to their `backing` child and name themselves after it (their `file` in
query-named-block-nodes is the filename of the node below). Neither driver is
registered (`blockdev.drivers.registry`): no `-drive` or blockdev-add can open one.

Without `filter-node-name` the node gets a generated `#block…` name and is
*implicit*: query-block and the block-level query-blockstats look through it
(`blockdev.query`), query-named-block-nodes shows it (block.md §1.4).

    new_filter_node(layer, drv, node_name, *, rdwr, total_sectors) -> Node
    drop_filter(layer, filter_bs) -> None     the filter leaves the graph again

The permissions follow QEMU: `mirror_top` forwards only its parents' WRITE to the
source and shares everything (consistent reads of the top are its own business);
`commit_top` takes nothing and shares everything.
"""

from __future__ import annotations

import errno as errno_mod
from typing import TYPE_CHECKING

import attrs

from blockdev import open as bdrv
from blockdev.graph import (
    PERM_ALL,
    Child,
    DriverContext,
    DriverSpec,
    Node,
    OpenFlags,
    child_try_set_perm,
)
from blockdev.image.lock import Perm
from blockdev.iotypes import BlockIOError, BlockStatus, GenericIO
from blockdev.options import Flat

if TYPE_CHECKING:
    from blockdev.layer import BlockLayer

__all__ = ["COMMIT_TOP", "MIRROR_TOP", "BackingOps", "drop_filter", "new_filter_node"]


class BackingOps:
    """The I/O callbacks of both filters: every request goes to the backing child
    (bdrv_mirror_top_preadv/pwritev/pwrite_zeroes/pdiscard/flush,
    bdrv_commit_top_preadv); block status is the backing node's
    (bdrv_co_get_block_status_from_backing)."""

    @staticmethod
    def _backing(bs: Node) -> Node:
        child = bs.backing_bs
        if child is None:
            raise BlockIOError(errno_mod.ENOMEDIUM)
        return child

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        return io.bdrv_pread(self._backing(bs), offset, length)

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        io.bdrv_pwrite(self._backing(bs), offset, data)

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int,
                      unmap: bool) -> None:
        io.bdrv_pwrite_zeroes(self._backing(bs), offset, length, may_unmap=unmap)

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        io.bdrv_pdiscard(self._backing(bs), offset, length)

    def flush(self, io: GenericIO, bs: Node) -> None:
        # bdrv_mirror_top_flush: nothing to do after a failed bdrv_append
        if bs.backing_bs is not None:
            io.bdrv_flush(bs.backing_bs)

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        st = io.bdrv_block_status(self._backing(bs), offset, length)
        return attrs.evolve(st, pnum=st.pnum or length)


@attrs.define(kw_only=True)
class TopFilterState:
    """The filter node's driver state: only its callbacks (`blockdev.drivers.dataio`
    uses a state's `io_ops`)."""

    io_ops: BackingOps = attrs.Factory(BackingOps)


def _open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """Neither filter has an open function: the node is its driver and nothing else."""
    bs.state = TopFilterState()


def _refresh_filename(bs: Node, options: Flat) -> None:
    """bdrv_mirror_top_refresh_filename / bdrv_commit_top_refresh_filename: the
    filename of the node below (nothing yet while the backing edge is missing)."""
    backing = bs.backing_bs
    if backing is None:
        return
    bdrv.refresh_filename(backing)
    bs.exact_filename = backing.filename


def _mirror_top_child_perm(bs: Node, c: Child | None, role: str, perm: int,
                           shared: int) -> tuple[int, int]:
    """bdrv_mirror_top_child_perm: guest writes must reach the source."""
    nperm = int(Perm.WRITE) if perm & Perm.WRITE else 0
    return nperm, PERM_ALL


def _commit_top_child_perm(bs: Node, c: Child | None, role: str, perm: int,
                           shared: int) -> tuple[int, int]:
    """bdrv_commit_top_child_perm."""
    return 0, PERM_ALL


MIRROR_TOP = DriverSpec(format_name="mirror_top", open=_open,
                        child_perm=_mirror_top_child_perm,
                        refresh_filename=_refresh_filename)
COMMIT_TOP = DriverSpec(format_name="commit_top", open=_open,
                        child_perm=_commit_top_child_perm,
                        refresh_filename=_refresh_filename)


def new_filter_node(layer: BlockLayer, drv: DriverSpec, node_name: str | None, *,
                    rdwr: bool, total_sectors: int) -> Node:
    """bdrv_new_open_driver(drv, node_name, rdwr ? BDRV_O_RDWR : 0), then what
    mirror_start_job / commit_start do with the node: without a name it is implicit,
    and its size is the node's it will sit on. The caller owns the one reference.
    A bad or taken `node_name` raises the layer's texts (`Invalid node name`,
    `Duplicate node name`, `node-name=… is conflicting with a device id`)."""
    bs = Node(open_flags=OpenFlags(rdwr=rdwr))
    options: Flat = {}
    bdrv._update_options_from_flags(options, bs.open_flags)
    bs.options = options
    bs.explicit_options = {}
    layer.assign_node_name(bs, node_name)
    bs.driver = drv
    bs.read_only = not rdwr
    drv.open(layer, bs, options)
    bs.implicit = node_name is None
    bs.total_sectors = total_sectors
    return bs


def drop_filter(layer: BlockLayer, filter_bs: Node) -> None:
    """What the jobs do to take their filter out again: it gives up its permissions
    on the node below, and every parent of the filter points at that node instead
    (bdrv_child_try_set_perm(filter->backing, 0, BLK_PERM_ALL); bdrv_replace_node).
    The caller holds a reference to the filter and drops it afterwards."""
    backing = filter_bs.backing
    assert backing is not None and backing.bs is not None
    child_try_set_perm(backing, 0, PERM_ALL)
    layer.replace_node(filter_bs, backing.bs)
