"""Each block driver's I/O callbacks: what `blockdev.io` calls once the generic
checks are done (QEMU's bdrv_co_preadv/pwritev/pwrite_zeroes/pdiscard/flush/
block_status members of BlockDriver).

Pure part of the `blockdev` layer (`blockdev.drivers`); loaded with `blockdev.io` on
the first request, never at start-up. Its neighbours: `blockdev.io` (the generic
path, which it calls back for child nodes), the image edge (`FileHandle`: the real
file of file-posix nodes) and the format data engines of
`blockdev.image.formats` (`FormatData`: qcow2, vmdk, ... over a view of the node's
`file` child).

* file / host_device / host_cdrom [block/file-posix.c]: pread/pwrite on the file
  descriptor; a read past the end of the file reads zeros; zero writes and discards
  write zeros or punch holes in the file;
* null-co / null-aio [block/null.c]: reads give zeros (read-zeroes is what a guest
  sees of a null device either way), writes vanish;
* raw and the other formats: their `FormatData` engine (raw applies `offset` and
  `size` [block/raw-format.c]), with backing fall-through for what the image does
  not allocate (`blockdev.drivers.format_io`);
* filters: throttle (the throttling happens before submission, in
  `blockdev.throttle`), blkdebug (rules inject errors [block/blkdebug.c]), quorum
  (reads vote, writes go to every child, QUORUM_* events [block/quorum.c]),
  blkverify and replication pass through;
* a driver whose node state has an `io_ops` attribute (the NBD client) uses it.
"""

from __future__ import annotations

import errno as errno_mod
import os

from blockdev.drivers.blkdebug_io import BlkdebugOps
from blockdev.drivers.passthrough import PassOps
from blockdev.graph import Node
from blockdev.iotypes import BlockIOError, BlockStatus, DataOps, GenericIO

SECTOR = 512


def _oserror(e: OSError) -> BlockIOError:
    return BlockIOError(e.errno or errno_mod.EIO)


# --- file-posix -----------------------------------------------------------------------------


class FileOps:
    """file-posix: raw_co_prw, raw_co_pwrite_zeroes, raw_co_pdiscard, raw_co_flush."""

    @staticmethod
    def _fd(bs: Node) -> int:
        fd = bs.state.file.fd
        if fd is None:
            raise BlockIOError(errno_mod.EBADF)
        return int(fd)

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        fd = self._fd(bs)
        try:
            data = os.pread(fd, length, offset)
            if len(data) < length:
                # A short read: either the end of the file (zeros follow, as
                # raw_co_prw fills them) or a read interrupted mid-way.
                more = os.pread(fd, length - len(data), offset + len(data)) if data else b""
                data += more
                if len(data) < length:
                    data += bytes(length - len(data))
        except OSError as e:
            raise _oserror(e) from None
        return data

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        fd = self._fd(bs)
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(fd, view, offset)
                if n <= 0:
                    raise BlockIOError(errno_mod.EIO)
                offset += n
                view = view[n:]
        except OSError as e:
            raise _oserror(e) from None

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int, unmap: bool) -> None:
        """raw_co_pwrite_zeroes: punching a hole when unmapping is allowed (reads
        zeros on a regular file), else writing zeros; never past the file's end
        with a hole (the file would not grow)."""
        fd = self._fd(bs)
        try:
            size = os.fstat(fd).st_size
        except OSError as e:
            raise _oserror(e) from None
        if unmap and offset + length <= size and _punch_hole(fd, offset, length):
            return
        chunk = 1 << 20
        pos = offset
        end = offset + length
        while pos < end:
            n = min(chunk, end - pos)
            self.pwrite(io, bs, pos, bytes(n))
            pos += n

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        """raw_co_pdiscard: a hole when the file system can punch one; else nothing
        (a discard is advisory)."""
        fd = self._fd(bs)
        try:
            size = os.fstat(fd).st_size
        except OSError as e:
            raise _oserror(e) from None
        if offset < size:
            _punch_hole(fd, offset, min(length, size - offset))

    def flush(self, io: GenericIO, bs: Node) -> None:
        """raw_co_flush_to_disk: fdatasync (not with cache.no-flush: bdrv_co_flush
        skips the flush to disk under BDRV_O_NO_FLUSH)."""
        if bs.open_flags.no_flush:
            return
        try:
            os.fdatasync(self._fd(bs))
        except OSError as e:
            raise _oserror(e) from None

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        """raw_co_get_block_status: SEEK_DATA/SEEK_HOLE; everything below a
        protocol node's data is its own (allocated)."""
        fd = self._fd(bs)
        try:
            size = os.fstat(fd).st_size
        except OSError as e:
            raise _oserror(e) from None
        if offset >= size:
            return BlockStatus(pnum=length, zero=True, allocated=True, offset=offset, file=bs)
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:
            data = -1
        if data > offset or data < 0:
            # in a hole
            end = size if data < 0 else data
            return BlockStatus(pnum=min(length, end - offset), zero=True, allocated=True,
                               offset=offset, file=bs)
        try:
            hole = os.lseek(fd, offset, os.SEEK_HOLE)
        except OSError:
            hole = size
        return BlockStatus(pnum=max(1, min(length, hole - offset)), data=True,
                           allocated=True, offset=offset, file=bs)


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    fallocate = getattr(os, "fallocate", None)
    punch = getattr(os, "FALLOC_FL_PUNCH_HOLE", 0x02)
    keep = getattr(os, "FALLOC_FL_KEEP_SIZE", 0x01)
    if fallocate is None:
        return _punch_hole_ctypes(fd, offset, length, punch | keep)
    try:
        fallocate(fd, punch | keep, offset, length)
    except OSError:
        return False
    return True


def _punch_hole_ctypes(fd: int, offset: int, length: int, mode: int) -> bool:
    """os.fallocate has no mode argument: fallocate(2) through libc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    fn = libc.fallocate
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return bool(fn(fd, mode, offset, length) == 0)


# --- simulated protocols ---------------------------------------------------------------------


class ZeroOps:
    """null-co / null-aio (and simulated protocol nodes): reads give zeros, writes
    vanish [block/null.c null_co_preadv, null_co_pwritev]; everything is data
    (null_co_get_block_status: BDRV_BLOCK_OFFSET_VALID, zero with read-zeroes)."""

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        return bytes(length)

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        pass

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int, unmap: bool) -> None:
        pass

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        pass

    def flush(self, io: GenericIO, bs: Node) -> None:
        pass

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        return BlockStatus(pnum=length, data=True, allocated=True, offset=offset, file=bs)


# --- filters ---------------------------------------------------------------------------------


class QuorumOps:
    """quorum: reads vote among the children (read-pattern quorum) or take the
    first that answers (fifo); writes go to every child and succeed when at least
    vote-threshold children succeed [block/quorum.c]."""

    @staticmethod
    def _children(bs: Node) -> list[Node]:
        return [c.bs for c in bs.state.extra["children"] if c.bs is not None]

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        from blockdev.drivers.quorum_io import quorum_read

        return quorum_read(io, bs, offset, length)

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        from blockdev.drivers.quorum_io import quorum_write

        quorum_write(io, bs, offset, len(data), lambda c: io.bdrv_pwrite(c, offset, data))

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int, unmap: bool) -> None:
        from blockdev.drivers.quorum_io import quorum_write

        quorum_write(io, bs, offset, length,
                     lambda c: io.bdrv_pwrite_zeroes(c, offset, length, may_unmap=unmap))

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        pass  # quorum has no bdrv_co_pdiscard in 2.11

    def flush(self, io: GenericIO, bs: Node) -> None:
        """quorum_co_flush: flush every child; the majority result wins."""
        from blockdev.drivers.quorum_io import quorum_flush

        quorum_flush(io, bs)

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        return BlockStatus(pnum=length, data=True, allocated=True)


# --- formats with a data engine --------------------------------------------------------------


def format_ops() -> DataOps:
    from blockdev.drivers.format_io import FormatOps

    return FormatOps()


_FILE = FileOps()
_ZERO = ZeroOps()
_PASS = PassOps()
_BLKDEBUG = BlkdebugOps()
_QUORUM = QuorumOps()
_BY_NAME: dict[str, DataOps] = {
    "file": _FILE, "host_device": _FILE, "host_cdrom": _FILE,
    "null-co": _ZERO, "null-aio": _ZERO, "vvfat": _ZERO,
    "throttle": _PASS, "replication": _PASS, "blkverify": _PASS,
    "blkdebug": _BLKDEBUG,
    "quorum": _QUORUM,
}


def ops_for(bs: Node) -> DataOps:
    """The callbacks of the node's driver."""
    custom = getattr(bs.state, "io_ops", None)
    if custom is not None:
        return custom
    drv = bs.driver
    assert drv is not None
    ops = _BY_NAME.get(drv.format_name)
    if ops is not None:
        return ops
    if drv.protocol:
        return _ZERO  # simulated network protocols: their length is all there is
    return format_ops()
