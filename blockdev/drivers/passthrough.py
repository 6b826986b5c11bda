"""The data path of filters that pass every request to their `file` child
(throttle, blkverify's raw side, replication) [block/throttle.c,
block/blkverify.c, block/replication.c].

Pure part of the `blockdev` layer (`blockdev.drivers`), loaded with the data path.
A throttle node's throttling happens before the request is submitted
(`blockdev.throttle.path_deadline`), so its callbacks only pass through.
"""

from __future__ import annotations

import errno as errno_mod

from blockdev.graph import Node
from blockdev.iotypes import BlockIOError, BlockStatus, GenericIO


class PassOps:
    """A filter that passes every request to its `file` child (throttle,
    blkverify's raw side, replication)."""

    def _child(self, bs: Node) -> Node:
        child = bs.file_bs
        if child is None:
            raise BlockIOError(errno_mod.ENOMEDIUM)
        return child

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        return io.bdrv_pread(self._child(bs), offset, length)

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        io.bdrv_pwrite(self._child(bs), offset, data)

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int, unmap: bool) -> None:
        io.bdrv_pwrite_zeroes(self._child(bs), offset, length, may_unmap=unmap)

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        io.bdrv_pdiscard(self._child(bs), offset, length)

    def flush(self, io: GenericIO, bs: Node) -> None:
        pass

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        st = io.bdrv_block_status(self._child(bs), offset, length)
        return BlockStatus(pnum=st.pnum or length, data=st.data, zero=st.zero,
                           allocated=True, offset=st.offset, file=st.file)
