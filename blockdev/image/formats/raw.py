"""raw: block/raw-format.c on top of the file node (block/file-posix.c).

raw is a filter in 2.11 (no metadata, permissions passed through), it answers
get_info through the file node (so `dirty-flag` is present and false, and there is
no `cluster-size`), and its size is the file's, rounded up to whole sectors.

`RawData` is its data engine: the `offset`/`size` runtime options are applied there
(not above it), so `RawData.length` is the node's size once they are given.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from blockdev.image.formats.base import (
    SECTOR_SIZE,
    BackingRead,
    BlockIOError,
    BlockStatus,
    DataContext,
    FileNode,
    FormatData,
    ImageError,
    OpenContext,
    fail_errno,
    io_errno,
    read_only_engine_error,
    round_up,
)
from blockdev.image.formats.facts import ImageFacts


def probe(buf: bytes, filename: str) -> int:
    """raw_probe: the smallest positive score, so raw wins only if nothing else does."""
    return 1


def open_image(ctx: OpenContext) -> ImageFacts:
    return ImageFacts(
        filename=ctx.filename,
        format="raw",
        virtual_size=ctx.file.length,
        actual_size=ctx.file.allocated_size(),
        dirty_flag=False,
        probed=ctx.probed,
    )


@attrs.frozen
class CreatePlan:
    size: int
    preallocation: str


def plan_create(size: int, options: dict[str, str | int | bool]) -> CreatePlan:
    """file-posix raw_create's option parsing, before the file is created."""
    opts = dict(options)
    prealloc = str(opts.pop("preallocation", "off"))
    opts.pop("nocow", None)
    if opts:
        raise ImageError("Invalid options for file format 'raw'")
    if prealloc not in ("off", "metadata", "falloc", "full"):
        raise ImageError(f"invalid parameter value: {prealloc}")
    return CreatePlan(size=round_up(size, SECTOR_SIZE), preallocation=prealloc)


def create(file: FileNode, plan: CreatePlan) -> None:
    """raw_create -> file-posix raw_regular_truncate on the new, empty file: sparse
    (`off`), posix_fallocate (`falloc`) or zeros written (`full`)."""
    total = plan.size
    prealloc = plan.preallocation
    fd = file.fd
    assert fd is not None
    try:
        if prealloc == "off":
            _step("Could not resize file", os.ftruncate, fd, total)
        elif prealloc == "falloc":
            _step("Could not preallocate new data", os.posix_fallocate, fd, 0, total)
        elif prealloc == "full":
            _step("Could not resize file", os.ftruncate, fd, total)
            _step("Failed to seek to the old end of file", os.lseek, fd, 0, os.SEEK_SET)
            chunk = bytes(65536)
            left = total
            while left > 0:
                n = _step(
                    "Could not write zeros for preallocation",
                    os.write,
                    fd,
                    chunk[: min(left, 65536)],
                )
                left -= n
            _step("Could not flush file to disk", os.fsync, fd)
        else:
            raise ImageError(f"Unsupported preallocation mode: {prealloc}")
    except ImageError:
        if prealloc != "off":
            os.ftruncate(fd, 0)
        raise


def _step(prefix: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError as e:
        fail_errno(prefix, e.errno or 0)


# --- Data engine ----------------------------------------------------------------------


def _size_option(options: Mapping[str, Any], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, int):
        return value
    from schema.opts.qemuopts import OptsError, parse_size

    try:
        return parse_size(name, str(value))
    except OptsError as e:
        raise ImageError(e.message) from None


class RawData:
    """block/raw-format.c's data path: every request shifted by `offset` and passed
    to the file; with an explicit `size`, writes past it fail with ENOSPC
    (raw_co_pwritev). The runtime options are checked here too, with
    raw_read_options' texts (ImageError at open).

    A node whose format was probed refuses a write to its first sector that would
    make it probe as another format: -EPERM (raw_co_pwritev, the BLOCK_PROBE_BUF_SIZE
    check; block/io.c has aligned such requests to 512 bytes first, here the write
    is widened by reading the rest of the sector). `probe` is bdrv_probe_all: the
    name of the driver a first sector probes as (the registry passes it)."""

    def __init__(self, ctx: DataContext,
                 probe: Callable[[bytes], str | None] | None = None) -> None:
        self.probe = probe
        self.file = ctx.file
        self.writable = ctx.writable
        self.probed = ctx.probed
        real_size = self.file.length
        offset = _size_option(ctx.options, "offset") or 0
        if offset > real_size:
            raise ImageError(f"Offset ({offset}) cannot be greater than size of the "
                             f"containing file ({real_size})")
        size = _size_option(ctx.options, "size")
        self.has_size = size is not None
        if size is None:
            size = real_size - offset
        if real_size - offset < size:
            raise ImageError(f"The sum of offset ({offset}) and size ({size}) has to be "
                             f"smaller or equal to the  actual size of the containing "
                             f"file ({real_size})")
        if self.has_size and size % SECTOR_SIZE:
            raise ImageError(f"Specified size is not multiple of {SECTOR_SIZE}")
        self.offset = offset
        self.size = size

    @property
    def length(self) -> int:
        """raw_getlength: the explicit size, else what the file has past `offset`."""
        if self.has_size:
            return self.size
        return max(0, self.file.length - self.offset)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        return BlockStatus(pnum=length, data=True, offset=self.offset + offset, raw=True)

    def read(self, offset: int, length: int) -> bytes:
        try:
            return self.file.pread(self.offset + offset, length)
        except OSError as e:
            raise io_errno(e) from None

    def _check_write(self, offset: int, length: int) -> None:
        if not self.writable:
            raise read_only_engine_error()
        if self.has_size and (offset > self.size or length > self.size - offset):
            raise BlockIOError(errno.ENOSPC)

    def write(self, offset: int, data: bytes) -> None:
        self._check_write(offset, len(data))
        if self.probed and self.probe is not None and offset < SECTOR_SIZE and data:
            head = (self.read(0, offset) + bytes(data) + self.read(
                offset + len(data), max(0, SECTOR_SIZE - offset - len(data))))[:SECTOR_SIZE]
            if self.probe(head) != "raw":
                raise BlockIOError(errno.EPERM)
        self._pwrite(offset, data)

    def _pwrite(self, offset: int, data: bytes) -> None:
        try:
            self.file.pwrite(self.offset + offset, data)
        except OSError as e:
            raise io_errno(e) from None

    def write_zeroes(self, offset: int, length: int, *, unmap: bool) -> None:
        """raw_co_pwrite_zeroes passes the request on; file-posix without
        fallocate flags here writes a zeroed buffer (block/io.c's fallback)."""
        self._check_write(offset, length)
        if self.probed and offset < SECTOR_SIZE and length:
            self.write(offset, bytes(min(length, SECTOR_SIZE)))
        chunk = 1 << 20
        pos = offset
        end = offset + length
        while pos < end:
            n = min(chunk, end - pos)
            self._pwrite(pos, bytes(n))
            pos += n

    def discard(self, offset: int, length: int) -> None:
        """raw_co_pdiscard: the file's discard, if its view has one; a file that
        cannot discard ignores it (-ENOTSUP is swallowed by bdrv_co_pdiscard)."""
        if not self.writable:
            raise read_only_engine_error()
        discard = getattr(self.file, "discard", None)
        if discard is None:
            return
        try:
            discard(self.offset + offset, length)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise io_errno(e) from None

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            raise io_errno(e) from None

    def truncate(self, size: int) -> None:
        """raw_truncate: not with an explicit offset or size (-ENOTSUP), else the
        file's truncate."""
        if self.has_size or self.offset:
            raise BlockIOError(errno.ENOTSUP)
        if not self.writable:
            raise read_only_engine_error()
        try:
            self.file.truncate(size)
        except OSError as e:
            raise io_errno(e) from None

    def close(self) -> None:
        """raw_close has nothing to write back."""

    def set_backing(self, read: BackingRead | None) -> None:
        """raw has no backing file."""


def open_data(ctx: DataContext,
              probe: Callable[[bytes], str | None] | None = None) -> FormatData:
    return RawData(ctx, probe)
