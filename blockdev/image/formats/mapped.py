"""The shared shape of the read engines of the formats whose data the emulator
reads but does not write (vmdk, vpc, vdi, vhdx, qed, qcow, luks): each maps a
guest range onto its file(s) through its block table, and `MappedData` turns that
map into `block_status` and `read`. Part of the real-file edge
(`blockdev.image.formats`), driven by the request path through `FormatData`.

Writes: QEMU 2.11 writes all of these formats (vpc, vdi, vhdx, qed, qcow, vmdk
and luks have write paths); the emulator does not, and a write to one of them
fails as a driver without that operation fails in block/io.c: -ENOTSUP
("Operation not supported"), or -EPERM on a read-only node, which block/io.c
checks first. The refusal is for the data; opening and header reads are as
before.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import attrs

from blockdev.image.formats.base import (
    BackingRead,
    BlockIOError,
    BlockStatus,
    FileView,
    read_only_engine_error,
)

DATA = "data"
ZERO = "zero"
UNALLOCATED = "unallocated"
COMPRESSED = "compressed"


@attrs.frozen
class Extent:
    """One piece of a guest range: `length` bytes of `kind`, at `host` in `file`
    (data), or with their bytes given in `payload` (compressed: already
    inflated)."""

    kind: str
    length: int
    file: FileView | None = None
    host: int | None = None
    payload: bytes | None = None


class MappedData:
    """A read engine over a block map; subclasses give `length` and `_map`."""

    writable: bool = False
    backing: BackingRead | None = None
    #: block_status reports the host offset of data (OFFSET_VALID) when True.
    offset_valid: bool = True

    @property
    def length(self) -> int:
        raise NotImplementedError

    def _map(self, offset: int, length: int) -> Extent:
        """The extent starting at `offset`, at most `length` bytes."""
        raise NotImplementedError

    def _extents(self, offset: int, length: int) -> Iterator[tuple[int, Extent]]:
        pos = 0
        while pos < length:
            ext = self._map(offset + pos, length - pos)
            assert ext.length > 0
            yield pos, ext
            pos += ext.length

    def block_status(self, offset: int, length: int) -> BlockStatus:
        ext = self._map(offset, length)
        if ext.kind == DATA:
            return BlockStatus(pnum=ext.length, data=True,
                               offset=ext.host if self.offset_valid else None)
        if ext.kind == COMPRESSED:
            return BlockStatus(pnum=ext.length, data=True)
        if ext.kind == ZERO:
            return BlockStatus(pnum=ext.length, zero=True)
        return BlockStatus(pnum=ext.length)

    def _read_host(self, ext: Extent) -> bytes:
        assert ext.file is not None and ext.host is not None
        try:
            return ext.file.pread(ext.host, ext.length)
        except OSError as e:
            raise BlockIOError(e.errno or errno.EIO) from None

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(length)
        for pos, ext in self._extents(offset, length):
            if ext.kind == DATA:
                out[pos:pos + ext.length] = self._read_host(ext)
            elif ext.kind == COMPRESSED:
                assert ext.payload is not None
                out[pos:pos + ext.length] = ext.payload
        return bytes(out)

    def _refuse(self) -> BlockIOError:
        if not self.writable:
            return read_only_engine_error()
        return BlockIOError(errno.ENOTSUP)

    def write(self, offset: int, data: bytes) -> None:
        raise self._refuse()

    def write_zeroes(self, offset: int, length: int, *, unmap: bool) -> None:
        raise self._refuse()

    def discard(self, offset: int, length: int) -> None:
        """bdrv_co_pdiscard: a read-only node is -EPERM; a driver without discard
        is no error (block/io.c returns 0 when there is no callback)."""
        if not self.writable:
            raise read_only_engine_error()

    def flush(self) -> None:
        """Nothing cached: nothing to write back."""

    def truncate(self, size: int) -> None:
        """bdrv_truncate for a driver the emulator cannot resize."""
        if not self.writable:
            raise read_only_engine_error()
        raise BlockIOError(errno.ENOTSUP, "Image format driver does not support resize")

    def close(self) -> None:
        """Nothing to write back; the file views belong to the caller."""

    def set_backing(self, read: BackingRead | None) -> None:
        self.backing = read
