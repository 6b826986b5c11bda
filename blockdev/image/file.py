"""The block layer's real-file I/O edge: opening, probing, creating and locking
image files the way QEMU 2.11 does.

The pure block-graph model calls this module through a small interface and never
the other way round; nothing here knows about nodes, BlockBackends, trio or QMP.

* `open_image(path, fmt=None, read_only=..., ...)` opens a file as a format node
  would be opened (file node, lock descriptor, probing, the driver's header checks)
  and returns an `OpenImage`: the immutable `ImageFacts` QEMU would report for it,
  plus the open file descriptions and their locks, which live as long as the node.
* `read_image_facts(...)` is the same without keeping anything open.
* `probe_format(path)` is only the probing step of `bdrv_open`.
* `create_image(path, fmt, size, backing_file=..., backing_format=..., now=...,
  rng=...)` writes a new, empty image as `bdrv_img_create` does for
  `blockdev-snapshot-sync`, `drive-mirror` and `drive-backup` targets; the caller
  gives the creation time and the random source of its identifiers (UUIDs, CIDs).
* Locking lives in `blockdev.image.lock` (`FileLock`, `Perm` and the permission
  rules) and is re-exported here.

Every failure is an `ImageError` whose `desc` is QEMU's message; the QMP layer wraps
it into a GenericError. Paths are plain host paths (no protocol prefixes, no
`json:` filenames).
"""

from __future__ import annotations

import errno as errno_mod
import os
import random
from collections.abc import Callable, Mapping

import attrs

from blockdev.image.formats import qcow, qcow2, qed, raw, vdi, vhdx, vmdk, vpc
from blockdev.image.formats import registry as formats
from blockdev.image.formats.base import FileNode, ImageError, OpenContext, fail_errno
from blockdev.image.formats.facts import (
    FormatSpecific,
    ImageFacts,
    LuksInfo,
    LuksSlot,
    LuksSpecific,
    PersistentBitmap,
    Qcow2Encryption,
    Qcow2Specific,
    SnapshotInfo,
    VmdkExtentInfo,
    VmdkSpecific,
)
from blockdev.image.lock import (
    FileLock,
    LockingMode,
    Perm,
    blk_new_open_perms,
    device_perms,
    filter_child_perms,
    format_backing_child_perms,
    format_file_child_perms,
    perm_names,
)

__all__ = [
    "BLOCK_PROBE_BUF_SIZE",
    "EmulatorLimitation",
    "FileLock",
    "FormatSpecific",
    "ImageError",
    "ImageFacts",
    "LockingMode",
    "LuksInfo",
    "LuksSlot",
    "LuksSpecific",
    "OpenImage",
    "Perm",
    "PersistentBitmap",
    "Qcow2Encryption",
    "Qcow2Specific",
    "SnapshotInfo",
    "VmdkExtentInfo",
    "VmdkSpecific",
    "blk_new_open_perms",
    "create_image",
    "device_perms",
    "filter_child_perms",
    "format_backing_child_perms",
    "format_file_child_perms",
    "known_formats",
    "open_image",
    "perm_names",
    "probe_format",
    "read_image_facts",
]

BLOCK_PROBE_BUF_SIZE = 512  # include/block/block_int.h

# Format drivers of a 2.11 build that image creation can name but that have no
# create options [block.c bdrv_img_create].
_NO_CREATE = frozenset(
    {
        "bochs",
        "cloop",
        "dmg",
        "vvfat",
        "quorum",
        "blkdebug",
        "blkverify",
        "null-co",
        "null-aio",
        "throttle",
        "nbd",
    }
)

CreateOptions = Mapping[str, str | int | bool]


class EmulatorLimitation(ImageError):
    """Something QEMU 2.11 would do that this emulator does not (creating LUKS or
    parallels images, qcow2 encryption or preallocation). Its `desc` says so; it is
    still an ImageError so that callers need only one except clause."""


def known_formats() -> tuple[str, ...]:
    """The format names `open_image` accepts."""
    return tuple(sorted(formats.BY_NAME))


# --- Opening ------------------------------------------------------------------------


@attrs.define(kw_only=True, eq=False)
class OpenImage:
    """An image opened as a format node: its facts, and the file descriptions and
    lock descriptors the node holds (the image file first, then vmdk extents).

    Permissions: `set_parent_perms` takes the node's cumulative parent permissions
    (what its BlockBackends and parent nodes want) and applies the child
    permissions the format driver derives from them to every file below, all or
    nothing; `set_file_perms` sets the file nodes' permissions directly. Opening
    already applied the driver's permissions for a node without parents.
    """

    facts: ImageFacts
    read_only: bool
    force_share: bool = False
    inactive: bool = False
    files: list[FileNode]
    locks: list[FileLock]
    _child_perms: formats.ChildPerms = "format"

    def file_perms_for(self, perm: int, shared: int) -> tuple[Perm, Perm]:
        """What this node asks of its file(s) when its parents want (perm, shared)."""
        if self._child_perms == "filter":
            nperm, nshared = filter_child_perms(perm, shared)
        else:
            nperm, nshared = format_file_child_perms(
                perm, shared, writable=not self.read_only, inactive=self.inactive
            )
        if self.force_share:
            nshared = Perm.ALL
        return nperm, nshared

    def set_file_perms(self, perm: int, shared: int) -> None:
        """Apply (perm, shared) to every file node, checking all before changing any
        (bdrv_check_perm then bdrv_set_perm); on a conflict nothing changes."""
        prepared: list[FileLock] = []
        try:
            for lock in self.locks:
                lock.prepare(perm, shared)
                prepared.append(lock)
        except ImageError:
            for lock in prepared:
                lock.abort()
            raise
        for lock in self.locks:
            lock.commit()

    def set_parent_perms(self, perm: int, shared: int) -> None:
        self.set_file_perms(*self.file_perms_for(perm, shared))

    def set_inactive(
        self, inactive: bool, *, parent_perm: int = 0, parent_shared: int = Perm.ALL
    ) -> None:
        """bdrv_inactivate / bdrv_invalidate_cache for this node and its files: the
        format node's child permissions are recomputed first (an inactive format
        node shares write and resize), then the file nodes stop or resume locking."""
        if inactive:
            self.inactive = True
            self.set_parent_perms(parent_perm, parent_shared)
            for lock in self.locks:
                lock.set_inactive(True)
        else:
            self.inactive = False
            for lock in self.locks:
                lock.inactive = False
            self.set_parent_perms(parent_perm, parent_shared)

    def close(self) -> None:
        for lock in self.locks:
            lock.close()
        for file in self.files:
            file.close()

    def __enter__(self) -> OpenImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_format(file: FileNode) -> str:
    """find_image_format: an empty file is raw; otherwise the first
    BLOCK_PROBE_BUF_SIZE (512) bytes go to every driver's probe [block.c
    bdrv_probe_all]. A non-empty file is at least one (rounded-up) sector long, so
    the read never runs past the end."""
    if file.length == 0:
        return "raw"
    try:
        buf = file.pread(0, BLOCK_PROBE_BUF_SIZE)
    except OSError as e:
        fail_errno("Could not read image for determining its format", e.errno or 0)
    driver = formats.probe(buf, file.path)
    if driver is None:
        raise ImageError("Could not determine image format: No compatible driver found")
    return driver.name


def open_image(
    filename: str,
    fmt: str | None = None,
    *,
    read_only: bool = False,
    key_secret: str | None = None,
    force_share: bool = False,
    inactive: bool = False,
    locking: LockingMode = "auto",
    system_emulator: bool = True,
) -> OpenImage:
    """Open `filename` as QEMU's bdrv_open would open a format node on a file
    node, in 2.11's order: file node (`Could not open ...`), lock descriptor,
    probing when `fmt` is None, whitelist, the file child's permissions (lock
    conflicts), then the driver's header checks.

    `key_secret` is the id of the secret for an encrypted image (only its presence
    is checked). `system_emulator=False` behaves like qemu-img (no refusal of
    AES-encrypted images). `inactive` opens as for an incoming migration (no
    locks until `set_inactive(False)`).
    """
    if force_share and not read_only:
        raise ImageError("force-share=on can only be used with read-only images")
    if fmt is not None and fmt not in formats.BY_NAME:
        raise ImageError(f"Unknown driver '{fmt}'")
    writable = not read_only
    file = FileNode.open(filename, writable=writable)
    files: list[FileNode] = [file]
    locks: list[FileLock] = []
    try:
        locks.append(FileLock.open(filename, writable=writable, locking=locking, inactive=inactive))
        probed = fmt is None
        name = probe_format(file) if fmt is None else fmt
        driver = formats.BY_NAME[name]
        if driver.open is None:
            raise EmulatorLimitation(f"Driver '{name}' is not whitelisted")
        image = OpenImage(
            facts=ImageFacts(filename=filename, format=name, virtual_size=0),
            read_only=read_only,
            force_share=force_share,
            inactive=inactive,
            files=files,
            locks=locks,
            child_perms=driver.child_perms,
        )
        initial = image.file_perms_for(Perm.NONE, Perm.ALL)
        locks[0].set_perms(*initial)

        def open_extent(path: str) -> FileNode:
            extent = FileNode.open(path, writable=writable)
            files.append(extent)
            lock = FileLock.open(path, writable=writable, locking=locking, inactive=inactive)
            locks.append(lock)
            lock.set_perms(*initial)
            return extent

        ctx = OpenContext(
            file=file,
            filename=filename,
            read_only=read_only,
            key_secret=key_secret,
            probed=probed,
            inactive=inactive,
            system_emulator=system_emulator,
            open_extent=open_extent,
        )
        image.facts = driver.open(ctx)
        return image
    except BaseException:
        for lock in locks:
            lock.close()
        for f in files:
            f.close()
        raise


def read_image_facts(
    filename: str,
    fmt: str | None = None,
    *,
    read_only: bool = True,
    key_secret: str | None = None,
    force_share: bool = False,
    locking: LockingMode = "auto",
    system_emulator: bool = True,
) -> ImageFacts:
    """`open_image` followed by closing: the facts alone. Read-only by default."""
    with open_image(
        filename,
        fmt,
        read_only=read_only,
        key_secret=key_secret,
        force_share=force_share,
        locking=locking,
        system_emulator=system_emulator,
    ) as image:
        return image.facts


# --- Creating -----------------------------------------------------------------------


def _create_file(path: str) -> None:
    """file-posix raw_create: create or truncate the file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as e:
        fail_errno("Could not create file", e.errno or 0)
    os.close(fd)


class _NewFile:
    """blk_new_open(path, RDWR | RESIZE | PROTOCOL) on a just-created file: the file
    node, locked for consistent read + write + resize, sharing everything."""

    def __init__(self, path: str, locking: LockingMode) -> None:
        self.file = FileNode.open(path, writable=True)
        try:
            self.lock = FileLock.open(path, writable=True, locking=locking)
            self.lock.set_perms(*blk_new_open_perms(read_write=True, resize=True))
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> FileNode:
        return self.file

    def __exit__(self, *exc: object) -> None:
        self.lock.close()
        self.file.close()


def create_image(
    filename: str,
    fmt: str,
    size: int,
    *,
    backing_file: str | None = None,
    backing_format: str | None = None,
    options: CreateOptions | None = None,
    locking: LockingMode = "auto",
    now: float,
    rng: random.Random,
) -> None:
    """Create an empty image as `bdrv_img_create` does, checks and messages in its
    order: the format, whether it can create images, unknown options
    (`Invalid options for file format ...`), backing file / backing format support,
    a backing file named like the image, then the driver's own option checks, the
    file (created or truncated), its lock check and the driver's writes.

    `backing_file` is recorded exactly as given (relative names stay relative).
    `options` are the driver's `-o` options by their QEMU names (`cluster_size`,
    `compat`, `lazy_refcounts`, `refcount_bits`, `preallocation`, `subformat`,
    `table_size`, ...). Only the target path -- and for split or flat vmdk the
    extent files vmdk_create names after it -- is written. `now` (wall-clock
    seconds) is the creation time formats record (vpc); `rng` draws the identifiers
    they record (vpc, vdi and vhdx UUIDs, the vmdk CID, the vhdx sequence number).
    """
    opts = dict(options or {})
    if fmt in _NO_CREATE:
        raise ImageError(f"Format driver '{fmt}' does not support image creation")
    driver = formats.BY_NAME.get(fmt)
    if driver is None or driver.create_options is None:
        raise ImageError(f"Unknown file format '{fmt}'")
    if any(name not in driver.create_options for name in opts):
        raise ImageError(f"Invalid options for file format '{fmt}'")
    if backing_file is not None and "backing_file" not in driver.create_options:
        raise ImageError(f"Backing file not supported for file format '{fmt}'")
    if backing_format is not None and "backing_fmt" not in driver.create_options:
        raise ImageError(f"Backing file format not supported for file format '{fmt}'")
    if backing_file is not None and backing_file == filename:
        raise ImageError(
            "Error: Trying to create an image with the same filename as the backing file"
        )
    if size < 0:
        raise ImageError("Image creation needs a size parameter")
    try:
        _create(filename, fmt, size, backing_file, backing_format, opts, locking, now, rng)
    except ImageError as e:
        if e.errno == errno_mod.EFBIG:
            # bdrv_img_create's own wording for any driver's EFBIG.
            raise ImageError(
                f"The image size is too large for file format '{fmt}'", errno=e.errno
            ) from None
        raise


def _create(
    filename: str,
    fmt: str,
    size: int,
    backing_file: str | None,
    backing_format: str | None,
    opts: dict[str, str | int | bool],
    locking: LockingMode,
    now: float,
    rng: random.Random,
) -> None:
    if fmt == "raw":
        raw_plan = raw.plan_create(size, opts)
        _create_file(filename)
        fd_node = FileNode.open(filename, writable=True)
        try:
            raw.create(fd_node, raw_plan)
        finally:
            fd_node.close()
        return
    # Each driver checks its options before the file is touched, as its
    # create function parses them before bdrv_create_file.
    if fmt == "qcow2":
        q2_plan = qcow2.parse_create_options(size, backing_file, backing_format, opts)
        _write_new(filename, locking, lambda node: qcow2.create(node, q2_plan))
        return
    if fmt == "qcow":
        q_plan = qcow.plan_create(size, backing_file, opts)
        _write_new(filename, locking, lambda node: qcow.create(node, q_plan))
        return
    if fmt == "qed":
        qed_plan = qed.plan_create(size, backing_file, backing_format, opts)
        _write_new(filename, locking, lambda node: qed.create(node, qed_plan))
        return
    if fmt == "vdi":
        vdi_plan = vdi.plan_create(size, opts)
        _write_new(filename, locking, lambda node: vdi.create(node, vdi_plan, rng=rng))
        return
    if fmt == "vpc":
        vpc_plan = vpc.plan_create(size, opts)
        _write_new(filename, locking, lambda node: vpc.create(node, vpc_plan, now=now, rng=rng))
        return
    if fmt == "vhdx":
        vhdx_plan = vhdx.plan_create(size, opts)
        _write_new(filename, locking, lambda node: vhdx.create(node, vhdx_plan, rng=rng))
        return
    if fmt == "vmdk":
        _create_vmdk(filename, size, backing_file, opts, locking, rng)
        return
    if fmt == "luks":
        if opts.get("key-secret") is None:
            raise ImageError("Parameter 'key-secret' is required for cipher")
        raise EmulatorLimitation("Creating LUKS images is not supported by the emulator")
    raise EmulatorLimitation(f"Creating {fmt} images is not supported by the emulator")


def _write_new(filename: str, locking: LockingMode,
               write: Callable[[FileNode], None]) -> None:
    """Create (truncate) the file, then write the image through a locked node."""
    _create_file(filename)
    with _NewFile(filename, locking) as node:
        write(node)


def _create_vmdk(
    filename: str,
    size: int,
    backing_file: str | None,
    opts: dict[str, str | int | bool],
    locking: LockingMode,
    rng: random.Random,
) -> None:
    """vmdk_create: extents first, then the descriptor (inside the extent at 0x200
    for monolithicSparse/streamOptimized, else as its own file)."""

    def read_backing_cid(path: str) -> int:
        # blk_new_open(full_backing, NULL, NULL, BDRV_O_NO_BACKING): a read-only,
        # probing open; anything but vmdk, or a descriptor without a CID, fails
        # with a bare EINVAL, which bdrv_create words.
        with open_image(path, read_only=True, locking=locking) as image:
            specific = image.facts.format_specific
            if image.facts.format != "vmdk" or not isinstance(specific, VmdkSpecific):
                fail_errno("Could not create image", errno_mod.EINVAL)
            return specific.cid

    plan = vmdk.plan_create(filename, size, backing_file, opts, read_backing_cid)
    for path, _name, extent_size in vmdk.extent_paths(plan):
        _create_file(path)
        with _NewFile(path, locking) as node:
            vmdk.write_extent(node, plan, extent_size)
    desc = vmdk.descriptor(plan, rng=rng)
    if vmdk.is_monolithic_sparse(plan):
        with _NewFile(filename, locking) as node:
            node.pwrite(0x200, desc)
        return
    _create_file(filename)
    with _NewFile(filename, locking) as node:
        node.pwrite(0, desc)
        node.truncate(len(desc))
