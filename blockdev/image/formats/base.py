"""Shared pieces of the image-format readers and writers behind
`blockdev.image.file` (the block layer's real-file edge): the one exception they
raise, the file node they read through, and QEMU's path rules; and the contract of
the data engines (`FormatData`, `BlockStatus`, `BlockIOError`, `DataContext`) that
each format module's `open_data` returns and the request path (blockdev/io.py)
drives.

`FileNode` stands for a file-posix node (block/file-posix.c) as the 2.11 format
drivers see it through `bs->file`: it is opened with the same flags, reports the
same length (rounded up to whole 512-byte sectors, because block.c keeps lengths
in sectors), and reads past the end of the file return zeros, as the block layer's
request alignment and file-posix's short-read padding make them do. Reading goes
through real `pread` calls, so errors such as EISDIR arrive with the errno QEMU
would see and the drivers wrap them in QEMU's wording.
"""

from __future__ import annotations

import errno as errno_mod
import os
import random
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import attrs

from schema.osdep import PLAIN_OPENER, Opener

if TYPE_CHECKING:
    from blockdev.image.formats.facts import ImageFacts

SECTOR_SIZE = 512


class ImageError(Exception):
    """An image could not be opened, probed or created. `desc` is QEMU 2.11's error
    text (without hint lines); `errno` is the errno QEMU's return value carried, when
    there was one. The QMP layer turns this into a GenericError."""

    def __init__(self, desc: str, *, errno: int | None = None) -> None:
        super().__init__(desc)
        self.desc = desc
        self.errno = errno

    def __repr__(self) -> str:
        return f"ImageError({self.desc!r})"


def strerror(err: int) -> str:
    """The C library's text for `err`, as QEMU's error_setg_errno appends it."""
    return os.strerror(err)


def fail_errno(prefix: str, err: int) -> NoReturn:
    """`error_setg_errno(errp, err, prefix)`: raise "<prefix>: <strerror>"."""
    raise ImageError(f"{prefix}: {strerror(err)}", errno=err)


def round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def random_uuid(rng: random.Random) -> uuid.UUID:
    """qemu_uuid_generate: a version 4 UUID from the image creator's random source."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


class FileNode:
    """One open image file, as a file-posix node.

    Not an attrs class: it owns a descriptor and is closed explicitly (or by its
    owner); two FileNodes on the same path are two independent opens, as in QEMU.
    """

    def __init__(self, path: str, fd: int, *, writable: bool,
                 opener: Opener = PLAIN_OPENER) -> None:
        self.path = path
        self.fd: int | None = fd
        self.writable = writable
        self.opener = opener

    @classmethod
    def open(cls, path: str, *, writable: bool, opener: Opener = PLAIN_OPENER) -> FileNode:
        """raw_open_common (qemu_open of the file name, so `/dev/fdset/N` dups a
        descriptor of that fd set), then refresh_total_sectors as bdrv_open_driver does.

        Errors: `Could not open '<path>': <strerror>` (ENOENT, EACCES, EISDIR for a
        directory opened read-write, an fd set without a descriptor of the access
        mode, ...); a length that cannot be found gives
        `Could not refresh total sector count: <strerror>`.
        """
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            fd = opener.qemu_open(path, flags, 0o644)
        except OSError as e:
            fail_errno(f"Could not open '{path}'", e.errno or 0)
        node = cls(path, fd, writable=writable, opener=opener)
        try:
            node.refresh_length()
        except ImageError:
            node.close()
            raise
        return node

    def _fd(self) -> int:
        if self.fd is None:
            raise ValueError(f"{self.path}: file node is closed")
        return self.fd

    def refresh_length(self) -> int:
        """raw_getlength: the byte length from lseek to the end; a failure is worded
        as refresh_total_sectors' caller words it."""
        try:
            length = os.lseek(self._fd(), 0, os.SEEK_END)
        except OSError as e:
            fail_errno("Could not refresh total sector count", e.errno or 0)
        return length

    @property
    def length(self) -> int:
        """`bdrv_getlength(bs->file->bs)`: the length rounded up to whole sectors.
        file-posix has a variable length, so every query re-reads it."""
        return round_up(self.refresh_length(), SECTOR_SIZE)

    def pread(self, offset: int, size: int) -> bytes:
        """`bdrv_pread(bs->file, offset, buf, size)`: bytes past the (sector-rounded)
        end read as zeros without touching the file; an OSError from the read
        itself propagates for the caller to word."""
        if size <= 0:
            return b""
        limit = self.length
        data = b""
        if offset < limit:
            data = os.pread(self._fd(), min(size, limit - offset), offset)
        if len(data) < size:
            data += bytes(size - len(data))
        return data

    def pwrite(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd(), view, offset)
            offset += written
            view = view[written:]

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd(), size)

    def flush(self) -> None:
        """raw_co_flush_to_disk: fdatasync."""
        os.fdatasync(self._fd())

    def allocated_size(self) -> int:
        """raw_get_allocated_file_size: st_blocks * 512."""
        return os.fstat(self._fd()).st_blocks * 512

    def close(self) -> None:
        """raw_close: qemu_close (a descriptor dup'ed from an fd set leaves it)."""
        if self.fd is not None:
            self.opener.qemu_close(self.fd)
            self.fd = None


# --- Paths, as block.c handles them (POSIX build) ----------------------------------


def path_has_protocol(path: str) -> bool:
    """block.c path_has_protocol: a ':' before the first '/'."""
    for ch in path:
        if ch == "/":
            return False
        if ch == ":":
            return True
    return False


def path_is_absolute(path: str) -> bool:
    return path.startswith("/")


def path_combine(base_path: str, filename: str) -> str:
    """block.c path_combine: an absolute `filename` as is; otherwise `filename`
    appended to everything of `base_path` up to and including its last '/' (or to
    the start of `base_path` after a protocol prefix). No normalisation."""
    if path_is_absolute(filename):
        return filename
    start = 0
    if path_has_protocol(base_path):
        start = base_path.index(":") + 1
    slash = base_path.rfind("/")
    cut = slash + 1 if slash >= 0 else 0
    cut = max(cut, start)
    return base_path[:cut] + filename


def full_backing_filename(backed: str, backing: str) -> str:
    """bdrv_get_full_backing_filename_from_filename: where QEMU looks for the
    backing file `backing` recorded in the image `backed`. Raises QEMU's error for a
    relative name whose image has no usable file name."""
    if backing == "" or path_has_protocol(backing) or path_is_absolute(backing):
        return backing
    if backed == "" or backed.startswith("json:"):
        raise ImageError(f"Cannot use relative backing file names for '{backed}'")
    return path_combine(backed, backing)


def reported_full_backing(backed: str, backing: str | None) -> str | None:
    """ImageInfo's `full-backing-filename`: the resolved name, or absent when there is
    no backing file or it cannot be resolved (bdrv_query_image_info drops the error)."""
    if not backing:
        return None
    try:
        return full_backing_filename(backed, backing)
    except ImageError:
        return None


def c_string(raw: bytes) -> str:
    """Bytes up to the first NUL, decoded the way QEMU passes them on (as UTF-8
    text in QMP; invalid sequences replaced rather than refused)."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", errors="replace")


# --- What a format driver's open gets -----------------------------------------------


@attrs.frozen
class OpenContext:
    """The inputs of one format driver's open: the already opened file node below
    it and the open flags that matter to header parsing.

    `filename` is the node's file name as QEMU reports it (the path as given).
    `system_emulator` stands for `bdrv_uses_whitelist()`, true in qemu-system
    (vl.c calls bdrv_init_with_whitelist) and false in qemu-img; it decides whether
    AES-encrypted qcow/qcow2 images are refused. `open_extent` opens another file
    node with the same flags (vmdk descriptor extents), taking its lock as well.
    """

    file: FileNode
    filename: str
    read_only: bool
    key_secret: str | None = None
    probed: bool = False
    inactive: bool = False
    system_emulator: bool = True
    open_extent: Callable[[str], FileNode] | None = None


def read_or_fail(file: FileNode, offset: int, size: int, prefix: str) -> bytes:
    """A header read whose failure QEMU words as "<prefix>: <strerror>"."""
    try:
        return file.pread(offset, size)
    except OSError as e:
        fail_errno(prefix, e.errno or 0)


def open_fail(ctx: OpenContext, err: int) -> NoReturn:
    """bdrv_open_driver for a driver that failed with -err and no message."""
    fail_errno(f"Could not open '{ctx.filename}'", err)


# --- The data engines: guest-visible bytes of one open format node -------------------


class BlockIOError(Exception):
    """A data request failed as a driver's coroutine returns `-errno` in QEMU.

    `errno` is positive (EIO, ENOSPC, ENOTSUP, EPERM, ...); the request path turns it
    into whatever its caller shows (qemu-io's "write failed: <strerror>", an NBD
    error reply, a guest I/O error under rerror/werror). `desc` is an optional text a
    driver reports on the side with error_report (QEMU's wording), not part of the
    errno."""

    def __init__(self, errno: int, desc: str | None = None) -> None:
        super().__init__(errno, desc or strerror(errno))
        self.errno = errno
        self.desc = desc

    def __repr__(self) -> str:
        return f"BlockIOError({self.errno}, {self.desc!r})"

    def __str__(self) -> str:
        return self.desc or strerror(self.errno)


class FileView(Protocol):
    """What a data engine reads and writes through: the file child of its node
    (`bs->file`), as the request path hands it over (a `FileNode`, or an adapter
    that goes through the protocol driver, its throttling and statistics).

    `pread` past the end reads zeros; `pwrite` past the end grows the file;
    `length` is the current length in bytes. An OSError from any of them becomes
    BlockIOError(e.errno) in the engine. A view may also have `discard(offset,
    length)`, which raw passes through (file-posix punches a hole)."""

    @property
    def length(self) -> int: ...

    def pread(self, offset: int, size: int) -> bytes: ...

    def pwrite(self, offset: int, data: bytes) -> None: ...

    def truncate(self, size: int) -> None: ...

    def flush(self) -> None: ...


@attrs.frozen
class BlockStatus:
    """bdrv_co_get_block_status of one extent, as a driver answers it [block/io.c].

    - `pnum`: bytes from the queried offset with this same status (> 0, at most
      the queried length);
    - `data` (BDRV_BLOCK_DATA): the bytes are read from this node's file;
    - `zero` (BDRV_BLOCK_ZERO): the bytes read as zeros;
    - `offset` (BDRV_BLOCK_OFFSET_VALID): where the extent starts in the file, or
      None (compressed clusters, zero clusters without a host cluster, ...);
    - `raw` (BDRV_BLOCK_RAW, raw-format only): `data` is set, but the real status
      is the file node's at `offset` (raw_co_get_block_status; file-posix says
      data, or zero for a hole).

    Neither `data` nor `zero` means unallocated in this node: the caller reads those
    bytes from the backing node (or zeros if there is none). `allocated` is
    BDRV_BLOCK_ALLOCATED, which block/io.c derives from DATA|ZERO."""

    pnum: int
    data: bool = False
    zero: bool = False
    offset: int | None = None
    raw: bool = False

    @property
    def allocated(self) -> bool:
        return self.data or self.zero


BackingRead = Callable[[int, int], bytes]
"""`read(offset, length)`: the guest-visible bytes of a node's backing child, exactly
`length` bytes (zeros past the backing node's end). A format engine calls it for the
copy-on-write of a partial cluster write (qcow2 do_perform_cow_read reads the old
data through the node's own read path, which falls through to bs->backing)."""


class FormatData(Protocol):
    """The data engine of one open format node over its file view.

    Offsets and lengths are bytes of the node's guest-visible disk; the request path
    above has already checked them against `length` (block/io.c
    bdrv_check_byte_request) and aligned nothing: engines accept any byte range and
    do their own read-modify-write. Every method raises BlockIOError on failure.

    - `block_status(offset, length)`: the extent that starts at `offset`.
    - `read`: exactly `length` bytes; unallocated ranges read as zeros (the caller
      reads them from the backing node, using block_status, when there is one).
    - `write`: allocates as the driver does; partial-cluster copy-on-write reads the
      old bytes through the engine's own allocation and, where unallocated, the
      reader given to `set_backing` (zeros without one).
    - `write_zeroes(offset, length, unmap=...)`: bdrv_co_pwrite_zeroes with or
      without BDRV_REQ_MAY_UNMAP, including block/io.c's fallback to writing a
      zeroed buffer where the driver answers -ENOTSUP.
    - `discard`: bdrv_co_pdiscard; a driver's -ENOTSUP is swallowed here, as
      block/io.c does.
    - `flush`: write back cached metadata, then flush the file.
    - `truncate(size)`: the driver's bdrv_truncate (block_resize).
    - `close`: what the driver's close does (qcow2: write back caches, clear the
      dirty bit). The engine does not close the file view.
    - `set_backing(read)`: the backing child changed (or went away: None).
    """

    @property
    def length(self) -> int: ...

    def block_status(self, offset: int, length: int) -> BlockStatus: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def write_zeroes(self, offset: int, length: int, *, unmap: bool) -> None: ...

    def discard(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...

    def truncate(self, size: int) -> None: ...

    def close(self) -> None: ...

    def set_backing(self, read: BackingRead | None) -> None: ...


@attrs.frozen
class DataContext:
    """The inputs of `open_data` for one format node, given after the header checks
    of `open_image` passed.

    `file` is the node's file child; `writable` whether the node was opened
    read-write (qcow2 then sets its dirty bit / repairs as QEMU does at open);
    `options` the node's runtime options (raw's `offset`/`size`); `probed` whether
    the format was probed (raw refuses writes that would change it); `passphrase`
    the resolved key secret's bytes (luks, qcow2 with LUKS); `open_extent` as in
    OpenContext; `backing` the backing child's reader, if it has one."""

    file: FileView
    facts: ImageFacts
    writable: bool
    options: Mapping[str, Any] = attrs.Factory(dict)
    probed: bool = False
    passphrase: bytes | None = None
    open_extent: Callable[[str], FileView] | None = None
    backing: BackingRead | None = None


def io_errno(e: OSError) -> BlockIOError:
    """An OSError of the file view as the driver passes it up: -errno."""
    return BlockIOError(e.errno or errno_mod.EIO)


def read_only_engine_error() -> BlockIOError:
    """What a node opened read-only answers to a write: block/io.c
    bdrv_co_pwritev checks BDRV_O_RDONLY first and returns -EPERM."""
    return BlockIOError(errno_mod.EPERM)
