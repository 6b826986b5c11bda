"""The block layer's real-file edge: file nodes, header reading, image creation.

I/O module of the `blockdev` layer. The drivers (`blockdev.drivers`) and `bdrv_open`
(`blockdev.open`) call it through the `ImageIO` their context holds; it knows nothing
of the graph (no nodes, no layer): it is handed byte views and paths, and calls back
only through the `open_extent` function a format driver gives it. It adapts
`blockdev.image.file` / `blockdev.image.formats` / `blockdev.image.lock`, which own the
byte-level work, to the graph's shape, where a file node and the format node on top
of it are separate nodes with separate permissions:

* `FileHandle` is what a `file`/`host_device`/`host_cdrom` node holds: the open file
  description and the lock descriptor, with QEMU's check/set/abort permission steps;
* `FormatImage` is what a format node holds: the facts read from the header at open,
  and the emulator's *model* of the image, which commands change where QEMU would
  rewrite metadata (resize, backing file string, bitmaps, savevm's snapshots); the
  internal snapshots of blockdev-snapshot-internal-sync are in it and, for qcow2,
  also written into the file (`formats.qcow2_snapshot`).
  Existing image files are never written by the header readers: they get a
  read-only view. `ImageIO.open_data` hands out the node's data engine
  (`formats.base.FormatData`) over the file view the request path gives it.
* `create` writes new images (snapshot overlays, job targets) and
  `create_temp_overlay` the overlay of `-drive snapshot=on`, the only writes we make;
  the caller passes the time and the random source new images are stamped with.
"""

from __future__ import annotations

import errno as errno_mod
import os
import random
import stat
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.image.formats.base import (
    BackingRead,
    DataContext,
    FileNode,
    FileView,
    FormatData,
    ImageError,
    OpenContext,
)
from blockdev.image.lock import FileLock
from schema.errors import GenericError
from schema.osdep import PLAIN_OPENER, Opener

if TYPE_CHECKING:
    # The format drivers (and their facts) load on the first image opened or
    # created, not when the emulator starts: most machines start without images.
    from blockdev.image.formats.facts import ImageFacts, SnapshotInfo


class ReadView:
    """The file-like object a format reader gets: reads go through, writes are
    dropped (the emulator never modifies an existing image)."""

    def __init__(self, path: str, pread: Any, length: Any, allocated: Any) -> None:
        self.path = path
        self._pread = pread
        self._length = length
        self._allocated = allocated

    @property
    def length(self) -> int:
        return int(self._length())

    @property
    def raw_length(self) -> int:
        return int(self._length())

    def pread(self, offset: int, size: int) -> bytes:
        return bytes(self._pread(offset, size))

    def pwrite(self, offset: int, data: bytes) -> None:
        """Dropped on purpose: metadata updates stay in the emulator's model."""

    def truncate(self, size: int) -> None:
        """Dropped on purpose, as pwrite."""

    def flush(self) -> None:
        pass

    def allocated_size(self) -> int:
        return int(self._allocated())


@attrs.define(kw_only=True, eq=False)
class FileHandle:
    """A file-posix node's open file description and lock descriptor."""

    path: str
    kind: str
    file: FileNode
    lock: FileLock
    writable: bool
    model_size: int | None = None  # block_resize changes the model, not the file

    def length(self) -> int:
        if self.model_size is not None:
            return self.model_size
        return self.file.length

    def allocated_size(self) -> int:
        """raw_get_allocated_file_size: the blocks the file takes, or -errno."""
        try:
            return self.file.allocated_size()
        except OSError as e:
            return -(e.errno or errno_mod.EIO)

    def pread(self, offset: int, size: int) -> bytes:
        return self.file.pread(offset, size)

    def view(self) -> ReadView:
        return ReadView(self.path, self.file.pread, lambda: self.file.length,
                        self.file.allocated_size)

    def is_device(self) -> bool:
        try:
            mode = os.fstat(self.file.fd or -1).st_mode
        except OSError:
            return False
        return stat.S_ISBLK(mode) or stat.S_ISCHR(mode)

    def media_present(self) -> bool:
        return True

    # raw_check_perm / raw_set_perm / raw_abort_perm_update
    def prepare(self, perm: int, shared: int) -> None:
        try:
            self.lock.prepare(perm, shared)
        except ImageError as e:
            raise GenericError(e.desc) from None

    def commit(self, perm: int, shared: int) -> None:
        if self.lock._pending is None:
            self.lock.prepare(perm, shared)
        self.lock.commit()

    def abort(self) -> None:
        if self.lock._pending is not None:
            self.lock.abort()

    def set_inactive(self, inactive: bool) -> None:
        self.lock.set_inactive(inactive)

    def close(self) -> None:
        self.lock.close()
        self.file.close()


@attrs.define(kw_only=True, eq=False)
class FormatImage:
    """A format node's image: the header facts, plus the model commands change."""

    facts: ImageFacts
    virtual_size: int
    snapshots: list[SnapshotInfo] = attrs.Factory(list)
    raw_options: dict[str, Any] = attrs.Factory(dict)
    reader: Any = None
    data: FormatData | None = None  # the data engine, once ImageIO.open_data gave it

    @property
    def cluster_size(self) -> int | None:
        return self.facts.cluster_size


class ZeroView:
    """What a format reader sees over a simulated protocol node: zeros."""

    def __init__(self, path: str, length: int) -> None:
        self.path = path
        self._len = length

    @property
    def length(self) -> int:
        return self._len

    @property
    def raw_length(self) -> int:
        return self._len

    def pread(self, offset: int, size: int) -> bytes:
        return bytes(max(0, size))

    def pwrite(self, offset: int, data: bytes) -> None:
        pass

    def truncate(self, size: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def allocated_size(self) -> int:
        return 0


@attrs.define(kw_only=True)
class ImageIO:
    """The real-file operations the graph needs; one instance per block layer."""

    system_emulator: bool = True
    #: qemu_open/qemu_close: the host's, which knows its fd sets (`BlockHost`).
    opener: Opener = PLAIN_OPENER

    def open_file(self, path: str, *, writable: bool, locking: str, inactive: bool,
                  kind: str) -> FileHandle:
        """raw_open_common: the data descriptor, then the lock descriptor."""
        try:
            file = FileNode.open(path, writable=writable, opener=self.opener)
        except ImageError as e:
            raise GenericError(e.desc) from None
        try:
            mode: Any = "on" if locking == "on" else locking
            lock = FileLock.open(path, writable=writable, locking=mode, inactive=inactive,
                                 opener=self.opener)
        except ImageError as e:
            file.close()
            raise GenericError(e.desc) from None
        return FileHandle(path=path, kind=kind, file=file, lock=lock, writable=writable)

    def reopen_file(self, handle: FileHandle, *, writable: bool) -> None:
        """raw_reopen_prepare/commit: a new data descriptor in the new mode (the
        lock descriptor stays); a failure keeps the old one."""
        if handle.file.writable == writable or handle.file.fd is None:
            return
        try:
            file = FileNode.open(handle.path, writable=writable, opener=self.opener)
        except ImageError as e:
            raise GenericError(e.desc) from None
        handle.file.close()
        handle.file = file
        handle.writable = writable

    def probe(self, view: Any) -> str:
        """find_image_format on a node's byte view."""
        try:
            from blockdev.image.file import probe_format

            return probe_format(view)
        except ImageError as e:
            raise GenericError(e.desc) from None

    def open_format(self, view: Any, fmt: str, *, filename: str, read_only: bool,
                    probed: bool, inactive: bool, extra: dict[str, Any],
                    open_extent: Callable[[str], Any]) -> FormatImage:
        """The format driver's header checks on the byte view of the node's file
        child; `open_extent` opens a file the header names (a vmdk extent) and
        returns its view."""
        from blockdev.image.formats import registry as formats

        driver = formats.BY_NAME.get(fmt)
        if driver is None or driver.open is None:
            raise GenericError(f"Driver '{fmt}' is not whitelisted")
        ctx = OpenContext(
            file=view, filename=filename, read_only=read_only,
            key_secret=extra.get("key-secret") or extra.get("encrypt.key-secret"),
            probed=probed, inactive=inactive,
            system_emulator=self.system_emulator, open_extent=open_extent)
        try:
            facts = driver.open(ctx)
        except ImageError as e:
            raise GenericError(e.desc) from None
        return FormatImage(facts=facts, virtual_size=facts.virtual_size,
                           snapshots=list(facts.snapshots), raw_options=dict(extra),
                           reader=view)

    def open_data(self, image: FormatImage, file: FileView, *, writable: bool,
                  probed: bool = False, passphrase: bytes | None = None,
                  open_extent: Callable[[str], FileView] | None = None,
                  backing: BackingRead | None = None) -> FormatData:
        """The data engine of a format node whose header `open_format` accepted,
        over `file` (the node's file child, read-write when `writable`); kept in
        `image.data`. Errors an engine's open still has (a qcow2 that needs repair,
        a wrong LUKS passphrase, raw's offset/size options) are GenericErrors in
        QEMU's words."""
        from blockdev.image.formats import registry as formats

        fmt = image.facts.format
        driver = formats.BY_NAME.get(fmt)
        if driver is None or driver.open_data is None:
            raise GenericError(f"Driver '{fmt}' is not whitelisted")
        ctx = DataContext(file=file, facts=image.facts, writable=writable,
                          options=image.raw_options, probed=probed,
                          passphrase=passphrase, open_extent=open_extent,
                          backing=backing)
        try:
            engine = driver.open_data(ctx)
        except ImageError as e:
            raise GenericError(e.desc) from None
        image.data = engine
        return engine

    def probe_device(self, filename: str) -> str | None:
        """find_hdev_driver: /dev/cdrom* is a host_cdrom, block or character devices
        are host_device (cdrom_probe_device needs an ioctl; a block device that
        answers it is a host_cdrom)."""
        if filename.startswith("/dev/cdrom"):
            return "host_cdrom"
        try:
            st = os.stat(filename)
        except OSError:
            return None
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            return "host_device"
        return None

    def create(self, path: str, fmt: str, size: int, *, backing_file: str | None,
               backing_format: str | None, now: float, rng: random.Random) -> None:
        """bdrv_img_create for a new overlay or target, stamped with `now` (wall-clock
        seconds) and identifiers drawn from `rng`."""
        try:
            from blockdev.image.file import create_image

            create_image(path, fmt, size, backing_file=backing_file,
                         backing_format=backing_format, now=now, rng=rng)
        except ImageError as e:
            raise GenericError(e.desc) from None

    def create_temp_overlay(self, size: int, *, now: float, rng: random.Random) -> str:
        """bdrv_append_temp_snapshot's file: a qcow2 image of `size` bytes in a new
        temporary file [block.c get_tmp_filename: $TMPDIR, else /var/tmp]; returns
        its path. The overlay's node deletes it on close (`remove_temporary`)."""
        tmpdir = os.environ.get("TMPDIR", "/var/tmp")
        try:
            fd, path = tempfile.mkstemp(prefix="vl.", dir=tmpdir)
            os.close(fd)
        except OSError as e:
            raise GenericError(f"Could not get temporary filename: "
                               f"{os.strerror(e.errno or errno_mod.EIO)}") from None
        try:
            self.create(path, "qcow2", size, backing_file=None, backing_format=None,
                        now=now, rng=rng)
        except GenericError as e:
            raise GenericError(f"Could not create temporary overlay '{path}': {e.desc}") \
                from None
        return path

    def remove_temporary(self, path: str) -> None:
        """A temporary overlay's file goes when its node closes (BDRV_O_TEMPORARY)."""
        try:
            os.unlink(path)
        except OSError:
            pass
