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
* the backing reader an engine uses for the copy-on-write of a partly written
  cluster (it follows the node's backing child as it is at the time of the write)
  [qcow2 do_perform_cow_read];
* raw's BDRV_BLOCK_RAW answers are asked of the file node;
* BLKDBG events on the file child (read_aio, write_aio) for blkdebug rules below.
The engines themselves fall back to writing zeros where a driver cannot express a
zero write, and ignore a discard the driver cannot do [block/io.c].
"""

from __future__ import annotations

import errno as errno_mod
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.drivers.blkdebug_io import blkdbg_event
from blockdev.graph import Node
from blockdev.iotypes import BlockIOError, BlockStatus, GenericIO

if TYPE_CHECKING:
    from blockdev.image.formats.base import FormatData


class ChildView:
    """The file view a format engine works on: the node's `file` child, through
    the graph (pread/pwrite/truncate/flush/length)."""

    def __init__(self, io: GenericIO, bs: Node, *, direct: bool = False) -> None:
        self._io = io
        self._bs = bs
        self._direct = direct  # a view of `bs` itself (a vmdk extent), not its file
        self.path = bs.filename

    def _child(self) -> Node:
        if self._direct:
            return self._bs
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

    def discard(self, offset: int, length: int) -> None:
        self._io.bdrv_pdiscard(self._child(), offset, length)

    def allocated_size(self) -> int:
        state = getattr(self._child(), "state", None)
        allocated = getattr(state, "allocated_size", None)
        return int(allocated()) if callable(allocated) else 0


def engine(io: GenericIO, bs: Node) -> FormatData:
    """The node's data engine (`image.data`), made on the first request over a view
    of the node's `file` child, with a backing reader that follows the node's
    current backing child [ImageIO.open_data]."""
    image = bs.state
    if image.data is not None:
        return image.data
    from blockdev.image.formats import registry as formats
    from blockdev.image.formats.base import DataContext, ImageError

    fmt = image.facts.format
    driver = formats.BY_NAME.get(fmt)
    if driver is None or driver.open_data is None:
        raise BlockIOError(errno_mod.ENOTSUP)

    def backing_read(offset: int, length: int) -> bytes:
        backing = bs.backing_bs
        if backing is None:
            return bytes(length)
        return _read_backing(io, backing, offset, length)

    def open_extent(path: str) -> ChildView:
        for c in bs.children:
            if c.name.startswith("extents.") and c.bs is not None and \
                    c.bs.filename == path:
                return ChildView(io, c.bs, direct=True)
        raise BlockIOError(errno_mod.ENOENT)

    ctx = DataContext(file=ChildView(io, bs), facts=image.facts,
                      writable=not bs.read_only and bs.open_flags.rdwr,
                      options=image.raw_options, probed=bs.probed,
                      open_extent=open_extent, backing=backing_read)
    try:
        image.data = driver.open_data(ctx)
    except ImageError as e:
        raise BlockIOError(errno_mod.EIO, e.desc) from None
    return image.data


def _status(io: GenericIO, bs: Node, raw: Any) -> BlockStatus:
    """An engine's answer (`formats.base.BlockStatus`) as the graph's BlockStatus;
    raw's BDRV_BLOCK_RAW asks the file node at the mapped offset."""
    file = bs.file_bs
    if getattr(raw, "raw", False) and file is not None and raw.offset is not None:
        st = io.bdrv_block_status(file, raw.offset, raw.pnum)
        if st.pnum == 0:
            return BlockStatus(pnum=raw.pnum, zero=True, allocated=True)
        return BlockStatus(pnum=st.pnum, data=st.data, zero=st.zero, allocated=True,
                           offset=st.offset, file=st.file)
    return BlockStatus(pnum=int(raw.pnum), data=bool(raw.data), zero=bool(raw.zero),
                       allocated=bool(raw.data or raw.zero), offset=raw.offset,
                       file=file if raw.offset is not None else None)


class FormatOps:
    """The callbacks of a format node: its engine, plus the backing fall-through of
    reads (the engine reads unallocated ranges as zeros)."""

    flushes_file = True  # the engine's flush ends with its file's (qcow2_co_flush_to_os)

    def block_status(self, io: GenericIO, bs: Node, offset: int,
                     length: int) -> BlockStatus:
        eng = engine(io, bs)
        size = eng.length
        if offset >= size:
            return BlockStatus(pnum=length, zero=True, allocated=True)
        length = min(length, size - offset)
        st = _status(io, bs, eng.block_status(offset, length))
        st = attrs.evolve(st, pnum=max(1, min(st.pnum, length)))
        if not st.allocated and bs.backing_bs is None:
            # no backing file: unallocated reads as zeros [bdrv_co_block_status]
            return BlockStatus(pnum=st.pnum, zero=True, allocated=False)
        return st

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        eng = engine(io, bs)
        size = eng.length
        tail = 0
        if offset + length > size:
            tail = offset + length - max(offset, size)
            length = max(0, size - offset)
        blkdbg_event(bs.file_bs, "read_aio")
        backing = bs.backing_bs
        if not length:
            data = b""
        elif backing is None:
            data = eng.read(offset, length)
        else:
            out = bytearray()
            pos, end = offset, offset + length
            while pos < end:
                st = eng.block_status(pos, end - pos)
                n = max(1, min(st.pnum, end - pos))
                if st.data or st.zero:
                    out += eng.read(pos, n)
                else:
                    out += _read_backing(io, backing, pos, n)
                pos += n
            data = bytes(out)
        return data + bytes(tail) if tail else data

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        eng = engine(io, bs)
        blkdbg_event(bs.file_bs, "write_aio")
        eng.write(offset, data)

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int,
                      unmap: bool) -> None:
        engine(io, bs).write_zeroes(offset, length, unmap=unmap)

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        engine(io, bs).discard(offset, length)

    def flush(self, io: GenericIO, bs: Node) -> None:
        image = bs.state
        if image.data is not None:
            image.data.flush()
        elif bs.file_bs is not None:
            io.bdrv_flush(bs.file_bs)


def _read_backing(io: GenericIO, backing: Node, offset: int, length: int) -> bytes:
    """What a backing node gives for [offset, offset+length): zeros past its end."""
    blen = io.bdrv_getlength(backing)
    if offset >= blen:
        return bytes(length)
    n = min(length, blen - offset)
    data = io.bdrv_pread(backing, offset, n)
    return data + bytes(length - n)
