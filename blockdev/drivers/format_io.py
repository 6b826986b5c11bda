"""The data path of image formats with a data engine (qcow2, qcow, vmdk, vpc, vdi,
vhdx, qed, luks, ...): the generic part QEMU's format drivers share.

Pure part of the `blockdev` layer (`blockdev.drivers`), loaded on the first request
to such a node. The per-format work (L1/L2 lookup, allocation, refcounts) is the
format's `FormatData` engine in `blockdev.image.formats`, made on first use over a
`ChildView` of the node's `file` child, so that every metadata and data write the
engine makes goes through the graph (`blockdev.io`) to the real file. What this
module adds is what the engines leave to the block layer:

* backing fall-through: what the image does not allocate reads from the backing
  node, and as zeros past the backing node's end [qcow2_co_preadv's
  QCOW2_CLUSTER_UNALLOCATED case];
* copy-on-write: a write that covers part of a cluster the image does not allocate
  first gets the rest of that cluster from the backing chain, so the engine
  allocates whole clusters with the right content [qcow2's perform_cow];
* the fallback of zero writes an engine cannot express (ENOTSUP) to writing zeros
  [bdrv_co_do_pwrite_zeroes]; a discard an engine cannot do is ignored
  [bdrv_co_pdiscard].
"""

from __future__ import annotations

import errno as errno_mod
from typing import Any

from blockdev.drivers.blkdebug_io import blkdbg_event
from blockdev.graph import Node
from blockdev.iotypes import BlockIOError, BlockStatus, GenericIO


class ChildView:
    """The file view a format engine works on: the node's `file` child, through
    the graph (pread/pwrite/truncate/flush/length)."""

    def __init__(self, io: GenericIO, bs: Node) -> None:
        self._io = io
        self._bs = bs
        self.path = bs.filename

    def _child(self) -> Node:
        child = self._bs.file_bs
        if child is None:
            raise BlockIOError(errno_mod.ENOMEDIUM)
        return child

    @property
    def length(self) -> int:
        return self._io.bdrv_getlength(self._child())

    @property
    def raw_length(self) -> int:
        return self.length

    def pread(self, offset: int, size: int) -> bytes:
        return self._io.bdrv_pread(self._child(), offset, size)

    def pwrite(self, offset: int, data: bytes) -> None:
        self._io.bdrv_pwrite(self._child(), offset, bytes(data))

    def truncate(self, size: int) -> None:
        self._io.bdrv_truncate(self._child(), size)

    def flush(self) -> None:
        self._io.bdrv_flush(self._child())

    def allocated_size(self) -> int:
        state = getattr(self._child(), "state", None)
        allocated = getattr(state, "allocated_size", None)
        return int(allocated()) if callable(allocated) else 0


def engine(io: GenericIO, bs: Node) -> Any:
    """The node's data engine, made on the first request."""
    image = bs.state
    if image.engine is None:
        from blockdev.image.formats import registry as formats

        fmt = image.facts.format
        driver = formats.BY_NAME.get(fmt)
        make = getattr(driver, "data", None) if driver is not None else None
        if make is None:
            raise BlockIOError(errno_mod.ENOTSUP)
        image.engine = make(ChildView(io, bs), image.facts,
                            read_only=bs.read_only or not bs.open_flags.rdwr,
                            options=dict(image.raw_options))
    return image.engine


def _status(raw: Any, offset: int) -> BlockStatus:
    """An engine's block_status answer as a BlockStatus."""
    if isinstance(raw, BlockStatus):
        return raw
    kind = getattr(raw, "kind", None)
    pnum = int(raw.pnum)
    host = getattr(raw, "host_offset", None)
    if kind is not None:
        kind = str(kind)
        return BlockStatus(pnum=pnum, data=kind == "data", zero=kind == "zero",
                           allocated=kind in ("data", "zero"), offset=host)
    return BlockStatus(pnum=pnum, data=bool(raw.data), zero=bool(raw.zero),
                       allocated=bool(getattr(raw, "allocated", raw.data or raw.zero)),
                       offset=host)


class FormatOps:
    """The callbacks of a format node with a data engine."""

    def _size(self, bs: Node) -> int:
        return int(bs.state.virtual_size)

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        size = self._size(bs)
        if offset >= size:
            return BlockStatus(pnum=length, zero=True, allocated=True)
        length = min(length, size - offset)
        st = _status(engine(io, bs).block_status(offset, length), offset)
        file = bs.file_bs if st.offset is not None else None
        st = BlockStatus(pnum=max(1, min(st.pnum, length)), data=st.data, zero=st.zero,
                         allocated=st.allocated, offset=st.offset, file=file)
        if not st.allocated and bs.backing_bs is None:
            # no backing file: unallocated reads as zeros [bdrv_co_block_status]
            return BlockStatus(pnum=st.pnum, zero=True, allocated=False)
        return st

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        size = self._size(bs)
        tail = 0
        if offset + length > size:
            tail = offset + length - max(offset, size)
            length = max(0, size - offset)
        out = bytearray()
        eng = engine(io, bs) if length else None
        backing = bs.backing_bs
        blkdbg_event(bs.file_bs, "read_aio")
        if eng is not None and backing is None:
            out += eng.read(offset, length)
        elif eng is not None and backing is not None:
            pos, end = offset, offset + length
            while pos < end:
                st = _status(eng.block_status(pos, end - pos), pos)
                n = max(1, min(st.pnum, end - pos))
                if st.allocated:
                    out += eng.read(pos, n)
                else:
                    out += _read_backing(io, backing, pos, n)
                pos += n
        if tail:
            out += bytes(tail)
        return bytes(out)

    def _cow(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> tuple[int, bytes]:
        """Widen a write over partly covered, unallocated clusters to whole
        clusters with the backing chain's content around it."""
        backing = bs.backing_bs
        cluster = bs.state.facts.cluster_size or 0
        if backing is None or cluster <= 0:
            return offset, data
        size = self._size(bs)
        end = offset + len(data)
        head = offset - offset % cluster
        tail = min(size, -(-end // cluster) * cluster)
        eng = engine(io, bs)
        prefix = b""
        suffix = b""
        if head < offset and not _status(eng.block_status(head, 1), head).allocated:
            prefix = self.pread(io, bs, head, offset - head)
        if tail > end and not _status(eng.block_status(end, 1), end).allocated:
            suffix = self.pread(io, bs, end, tail - end)
        return offset - len(prefix), prefix + data + suffix

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        offset, data = self._cow(io, bs, offset, data)
        blkdbg_event(bs.file_bs, "write_aio")
        engine(io, bs).write(offset, data)

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int, unmap: bool) -> None:
        eng = engine(io, bs)
        try:
            eng.write_zeroes(offset, length, unmap=unmap)
            return
        except BlockIOError as e:
            if e.errno != errno_mod.ENOTSUP:
                raise
        except NotImplementedError:
            pass
        pos, end = offset, offset + length
        while pos < end:
            n = min(end - pos, 1 << 20)
            self.pwrite(io, bs, pos, bytes(n))
            pos += n

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        try:
            engine(io, bs).discard(offset, length)
        except BlockIOError as e:
            if e.errno != errno_mod.ENOTSUP:
                raise
        except NotImplementedError:
            pass

    def flush(self, io: GenericIO, bs: Node) -> None:
        image = bs.state
        if image.engine is not None:
            image.engine.flush()


def _read_backing(io: GenericIO, backing: Node, offset: int, length: int) -> bytes:
    """What a backing node gives for [offset, offset+length): zeros past its end."""
    blen = io.bdrv_getlength(backing)
    if offset >= blen:
        return bytes(length)
    n = min(length, blen - offset)
    data = io.bdrv_pread(backing, offset, n)
    return data + bytes(length - n)
