"""Shared pieces of the image-format readers and writers behind
`blockdev.image.file` (the block layer's real-file edge): the one exception they
raise, the file node they read through, and QEMU's path rules.

`FileNode` stands for a file-posix node (block/file-posix.c) as the 2.11 format
drivers see it through `bs->file`: it is opened with the same flags, reports the
same length (rounded up to whole 512-byte sectors, because block.c keeps lengths
in sectors), and reads past the end of the file return zeros, as the block layer's
request alignment and file-posix's short-read padding make them do. Reading goes
through real `pread` calls, so errors such as EISDIR arrive with the errno QEMU
would see and the drivers wrap them in QEMU's wording.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from typing import NoReturn

import attrs

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

    def __init__(self, path: str, fd: int, *, writable: bool) -> None:
        self.path = path
        self.fd: int | None = fd
        self.writable = writable

    @classmethod
    def open(cls, path: str, *, writable: bool) -> FileNode:
        """raw_open_common, then refresh_total_sectors as bdrv_open_driver does.

        Errors: `Could not open '<path>': <strerror>` (ENOENT, EACCES, EISDIR for a
        directory opened read-write, ...); a length that cannot be found gives
        `Could not refresh total sector count: <strerror>`.
        """
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            fail_errno(f"Could not open '{path}'", e.errno or 0)
        node = cls(path, fd, writable=writable)
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

    def allocated_size(self) -> int:
        """raw_get_allocated_file_size: st_blocks * 512."""
        return os.fstat(self._fd()).st_blocks * 512

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
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
