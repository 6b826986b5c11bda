"""The synchronous commit of HMP `commit`: a node's data written into its backing file.

Pure part of the `blockdev` layer [block/commit.c bdrv_commit; block/block-backend.c
blk_commit_all]. Not a block job (those are `blockdev.jobs`): the whole image is
copied within the command, through the data path (`blockdev.io`), so the backing
node's dirty bitmaps and write threshold see the writes; then the top image is
emptied (drv->bdrv_make_empty) so that it reads as its backing file again. The
graph does not change: the top keeps its backing file.

Failures are `BlockIOError`s whose errno is bdrv_commit's `-ret`; HMP prints
"'commit' error for '<device>': <strerror>". What bdrv_commit reports on the side
with error_report_err (a failed resize of the backing file) goes to `report`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from blockdev import io
from blockdev.iotypes import BlockIOError
from schema.errors import GenericError

if TYPE_CHECKING:
    from blockdev.graph import Node
    from blockdev.layer import BlockLayer

# block/commit.c COMMIT_BUF_SIZE: the most bdrv_commit asks or copies at once.
COMMIT_BUF_SIZE = 2048 * 512

# The 2.11 drivers with a bdrv_make_empty (block/qcow2.c, block/qcow.c, block/vdi.c).
MAKE_EMPTY_DRIVERS = frozenset({"qcow2", "qcow", "vdi"})

# bdrv_truncate's texts and the -errno each comes with [block.c bdrv_truncate].
_TRUNCATE_ERRNO = {
    "No medium inserted": errno.ENOMEDIUM,
    "Image format driver does not support resize": errno.ENOTSUP,
    "Image is read-only": errno.EACCES,
}


def bdrv_commit(layer: BlockLayer, bs: Node, report: Callable[[str], None]) -> None:
    """bdrv_commit: copy what `bs` allocates into its backing node, then empty `bs`.

    ENOMEDIUM without a driver, ENOTSUP without a backing file, EBUSY when either
    node is blocked for a commit, EACCES when a read-only backing node cannot be
    reopened read-write (it is made read-only again at the end, whatever happened)."""
    drv = bs.driver
    if drv is None:
        raise BlockIOError(errno.ENOMEDIUM)
    backing = bs.backing_bs
    if backing is None:
        raise BlockIOError(errno.ENOTSUP)
    if bs.op_blocked("commit-source") is not None or \
            backing.op_blocked("commit-target") is not None:
        raise BlockIOError(errno.EBUSY)
    ro = backing.read_only
    if ro:
        try:
            layer.reopen_read_only(backing, False)
        except GenericError:
            raise BlockIOError(errno.EACCES) from None
    try:
        length = io.bdrv_getlength(bs)
        if length > io.bdrv_getlength(backing):
            _grow(layer, backing, length, report)
        offset = 0
        while offset < length:
            allocated, n = io.bdrv_is_allocated(bs, offset, COMMIT_BUF_SIZE)
            if allocated:
                io.bdrv_pwrite(backing, offset, io.bdrv_pread(bs, offset, n))
            offset += n
        if drv.format_name in MAKE_EMPTY_DRIVERS:
            io.bdrv_make_empty(bs)
            io.bdrv_flush(bs)
        io.bdrv_flush(backing)
    finally:
        if ro:
            try:
                layer.reopen_read_only(backing, True)
            except GenericError:
                pass


def _grow(layer: BlockLayer, backing: Node, length: int,
          report: Callable[[str], None]) -> None:
    """blk_truncate of the backing file to the top's length, its error reported."""
    from blockdev.commands import truncate

    try:
        truncate(layer, backing, length)
    except GenericError as e:
        report(e.desc)
        raise BlockIOError(_TRUNCATE_ERRNO.get(e.desc, errno.EIO)) from None


def commit_all(layer: BlockLayer, report: Callable[[str], None]) -> None:
    """blk_commit_all: every BlockBackend with a medium whose root has a backing
    file, in creation order; the first failure ends it."""
    for blk in list(layer.backends):
        bs = blk.bs
        if blk.is_inserted() and bs is not None and bs.backing_bs is not None:
            bdrv_commit(layer, bs, report)
