"""Image file locking as QEMU 2.10+ file-posix does it; part of the block layer's
real-file I/O edge (`blockdev.image.file` is the facade the graph model calls).

Two halves:

* pure permission arithmetic (`Perm`, `perm_names`, and the child-permission rules of
  block.c that decide what a node asks of the file below it), which the graph model
  uses to compute what each file node must hold;
* `FileLock`, an open file description on which those permissions are turned into
  open-file-description byte locks, exactly as `raw_apply_lock_bytes` /
  `raw_check_lock_bytes` / `raw_handle_perm_lock` in block/file-posix.c do.

The lock bytes [block/file-posix.c RAW_LOCK_PERM_BASE, RAW_LOCK_SHARED_BASE]: for
every permission bit n a node holds, byte 100+n carries a shared (read) lock; for
every bit n it does *not* share with other users, byte 200+n does. Byte 0 is left to
libvirt. Other processes (another QEMU, `qemu-img`) see the bytes through
`F_OFD_GETLK`, so the emulator and real QEMU tools exclude each other the way two
QEMUs would.

What 2.11 takes, so that the model can reproduce it (all [block.c], [hw/block/block.c]):

* A guest device's BlockBackend [hw/block/block.c blkconf_apply_backend_options]:
  perm = consistent read (+ write unless the device is read-only); shared =
  consistent read + write unchanged + change children, + resize for resizable
  devices (virtio-blk, scsi-hd, ide-hd; not the CD-ROMs), + write with
  `share-rw=on`. See `device_perms`.
* A `-drive`/`blk_new_open` BlockBackend before a device attaches
  [block/block-backend.c blk_new_open]: consistent read (+ write if read-write,
  + resize with BDRV_O_RESIZE), sharing everything. See `blk_new_open_perms`.
* A format node (qcow2, qed, vmdk, ...) passes its parents' wishes down to its
  `file` child and adds what metadata updates need [block.c
  bdrv_format_default_perms]: consistent read always, write + resize when the node
  is writable, and it never shares write or resize. So a writable qcow2 image locks
  bytes 100, 101, 103, 201, 203 as soon as it is opened; a read-only one (a backing
  file, `qemu-img info`) locks 100, 201, 203 -- which is why `qemu-img info` on a
  running guest's qcow2 disk fails with `Failed to get shared "write" lock`.
  See `format_file_child_perms`, `format_backing_child_perms`.
* raw is a filter [block/raw-format.c uses bdrv_filter_default_perms]: it passes
  the parents' permissions through, so a raw image locks nothing until a device
  attaches (then 100, 101 and 201 for a writable disk). See `filter_child_perms`.
* `force-share=on` (`qemu-img info -U`) makes the file child share everything
  [block.c bdrv_child_perm].
* An inactive node (incoming migration) does no locking at all [block/file-posix.c
  raw_handle_perm_lock]; a format node that is inactive shares write and resize.

No trio and no QMP here; the only I/O is `open`/`fcntl`/`close` on the image path.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import os
from typing import ClassVar, Literal

import attrs

from blockdev.image.formats.base import ImageError
from schema.osdep import PLAIN_OPENER, Opener

RAW_LOCK_PERM_BASE = 100
RAW_LOCK_SHARED_BASE = 200


class Perm(enum.IntFlag):
    """BlockPermission bits of include/block/block.h (BLK_PERM_*)."""

    CONSISTENT_READ = 0x01
    WRITE = 0x02
    WRITE_UNCHANGED = 0x04
    RESIZE = 0x08
    GRAPH_MOD = 0x10

    NONE = 0
    ALL = 0x1F


# The wording of block.c bdrv_perm_names, in bit order.
_PERM_NAMES: tuple[tuple[Perm, str], ...] = (
    (Perm.CONSISTENT_READ, "consistent read"),
    (Perm.WRITE, "write"),
    (Perm.WRITE_UNCHANGED, "write unchanged"),
    (Perm.RESIZE, "resize"),
    (Perm.GRAPH_MOD, "change children"),
)

# block.c DEFAULT_PERM_PASSTHROUGH / DEFAULT_PERM_UNCHANGED
_PASSTHROUGH = Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE
_UNCHANGED = Perm.ALL & ~_PASSTHROUGH


def perm_names(perm: int) -> str:
    """`bdrv_perm_names`: the set bits of `perm` as a comma-separated list."""
    return ", ".join(name for bit, name in _PERM_NAMES if perm & bit)


_BITS = range(Perm.ALL.bit_length())


# --- What one node asks of its children (block.c) ----------------------------------


def filter_child_perms(perm: int, shared: int) -> tuple[Perm, Perm]:
    """`bdrv_filter_default_perms` for a child being attached (no previous child
    permissions to carry over): pass through read/write/resize, always share
    "change children"."""
    return Perm(perm & _PASSTHROUGH), Perm((shared & _PASSTHROUGH) | _UNCHANGED)


def format_file_child_perms(
    perm: int, shared: int, *, writable: bool, inactive: bool = False
) -> tuple[Perm, Perm]:
    """`bdrv_format_default_perms` for the `file` child (and vmdk's extents): what a
    format node whose parents want (`perm`, `shared`) takes on the file below."""
    nperm, nshared = filter_child_perms(perm, shared)
    if writable and not inactive:
        nperm |= Perm.WRITE | Perm.RESIZE
    nperm |= Perm.CONSISTENT_READ
    nshared &= ~(Perm.WRITE | Perm.RESIZE)
    if inactive:
        nshared |= Perm.WRITE | Perm.RESIZE
    return Perm(nperm), Perm(nshared)


def format_backing_child_perms(
    perm: int, shared: int, *, inactive: bool = False
) -> tuple[Perm, Perm]:
    """`bdrv_format_default_perms` for the `backing` child."""
    nperm = Perm(perm & Perm.CONSISTENT_READ)
    nshared = (Perm.WRITE | Perm.RESIZE) if shared & Perm.WRITE else Perm.NONE
    nshared |= Perm.CONSISTENT_READ | Perm.GRAPH_MOD | Perm.WRITE_UNCHANGED
    if inactive:
        nshared |= Perm.WRITE | Perm.RESIZE
    return nperm, Perm(nshared)


def device_perms(*, read_only: bool, resizable: bool, share_rw: bool = False) -> tuple[Perm, Perm]:
    """What a guest device takes on its BlockBackend
    [hw/block/block.c blkconf_apply_backend_options]. `resizable` is true for
    virtio-blk, scsi-hd and ide-hd, false for ide-cd/scsi-cd."""
    perm = Perm.CONSISTENT_READ
    if not read_only:
        perm |= Perm.WRITE
    shared = Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD
    if resizable:
        shared |= Perm.RESIZE
    if share_rw:
        shared |= Perm.WRITE
    return perm, shared


def blk_new_open_perms(
    *, read_write: bool, resize: bool = False, no_io: bool = False
) -> tuple[Perm, Perm]:
    """[block/block-backend.c blk_new_open]: a BlockBackend opened by flags (a `-drive`
    before its device attaches, image creation, the tools) shares everything."""
    perm = Perm.NONE
    if not no_io:
        perm |= Perm.CONSISTENT_READ
        if read_write:
            perm |= Perm.WRITE
    if resize:
        perm |= Perm.RESIZE
    return perm, Perm.ALL


# --- OFD byte locks ----------------------------------------------------------------


class _Flock(ctypes.Structure):
    """`struct flock` of the C library, laid out by the platform's ABI."""

    _fields_: ClassVar = [
        ("l_type", ctypes.c_short),
        ("l_whence", ctypes.c_short),
        ("l_start", ctypes.c_int64),
        ("l_len", ctypes.c_int64),
        ("l_pid", ctypes.c_int32),
    ]


_F_OFD_GETLK: int | None = getattr(fcntl, "F_OFD_GETLK", None)
_F_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
_ofd_available: bool | None = None


def has_ofd_lock() -> bool:
    """`qemu_has_ofd_lock`: probe F_OFD_GETLK on /dev/null once, as util/osdep.c does."""
    global _ofd_available
    if _ofd_available is None:
        if _F_OFD_GETLK is None:
            _ofd_available = False
        else:
            try:
                fd = os.open("/dev/null", os.O_RDWR)
            except OSError:
                _ofd_available = False
            else:
                try:
                    fl = _Flock(l_type=fcntl.F_WRLCK, l_whence=os.SEEK_SET, l_start=0, l_len=0)
                    fcntl.fcntl(fd, _F_OFD_GETLK, bytes(fl))
                    _ofd_available = True
                except OSError:
                    _ofd_available = False
                finally:
                    os.close(fd)
    return _ofd_available


def _fcntl_lock(fd: int, cmd: int, start: int, l_type: int) -> _Flock:
    fl = _Flock(l_type=l_type, l_whence=os.SEEK_SET, l_start=start, l_len=1, l_pid=0)
    out = fcntl.fcntl(fd, cmd, bytes(fl))
    return _Flock.from_buffer_copy(out)


LockingMode = Literal["auto", "on", "off"]


@attrs.define(kw_only=True, eq=False)
class FileLock:
    """The lock side of one file node: a second open file description of the image
    (file-posix's `lock_fd`) plus the permissions currently applied.

    `set_perms` is `raw_check_perm` followed by `raw_set_perm`; for a transaction
    over several files (a vmdk node and its extents) use `prepare` on each, then
    `commit` or `abort` on all. `close` releases every byte, as closing the
    descriptor does.
    """

    path: str
    fd: int | None
    perm: Perm = Perm.NONE
    shared: Perm = Perm.ALL
    inactive: bool = False
    opener: Opener = PLAIN_OPENER
    _pending: tuple[Perm, Perm] | None = None
    # The bytes actually locked on the descriptor: (held bits, unshared bits).
    _locked: tuple[Perm, Perm] = (Perm.NONE, Perm.NONE)

    @classmethod
    def open(
        cls, path: str, *, writable: bool, locking: LockingMode = "auto", inactive: bool = False,
        opener: Opener = PLAIN_OPENER,
    ) -> FileLock:
        """Open the lock descriptor as raw_open_common does. With `locking="auto"` the
        locks are used only if OFD locks exist (2.11 does not fall back to POSIX
        locks unless `locking=on`, and warns then; the emulator keeps to OFD and
        treats "on" like "auto")."""
        use_lock = locking != "off" and has_ofd_lock()
        fd: int | None = None
        if use_lock:
            flags = os.O_RDWR if writable else os.O_RDONLY
            try:
                fd = opener.qemu_open(path, flags)
            except OSError as e:
                raise ImageError(
                    f"Could not open '{path}' for locking: {os.strerror(e.errno or 0)}",
                    errno=e.errno,
                ) from None
        return cls(path=path, fd=fd, inactive=inactive, opener=opener)

    @property
    def uses_lock(self) -> bool:
        return self.fd is not None

    def _active_fd(self) -> int | None:
        if self.fd is None or self.inactive:
            return None
        return self.fd

    def _apply(self, perm: int, not_shared: int, *, unlock: bool) -> None:
        """raw_apply_lock_bytes: read-lock byte 100+n per held bit and 200+n per
        unshared bit; with `unlock`, release the bytes of the other bits."""
        fd = self.fd
        assert fd is not None and _F_OFD_SETLK is not None
        locked = list(self._locked)
        for index, (base, bits) in enumerate(
            ((RAW_LOCK_PERM_BASE, perm), (RAW_LOCK_SHARED_BASE, not_shared))
        ):
            for i in _BITS:
                off = base + i
                try:
                    if bits & (1 << i):
                        _fcntl_lock(fd, _F_OFD_SETLK, off, fcntl.F_RDLCK)
                        locked[index] |= 1 << i
                    elif unlock:
                        _fcntl_lock(fd, _F_OFD_SETLK, off, fcntl.F_UNLCK)
                        locked[index] &= ~(1 << i)
                except OSError as e:
                    verb = "lock" if bits & (1 << i) else "unlock"
                    raise ImageError(f"Failed to {verb} byte {off}", errno=e.errno) from None
                finally:
                    self._locked = (Perm(locked[0]), Perm(locked[1]))

    def _check(self, perm: int, shared: int) -> None:
        """raw_check_lock_bytes: is anyone refusing to share what we want to take, or
        holding what we refuse to share? The first conflict in bit order wins, and
        "taking" is checked before "sharing"."""
        fd = self.fd
        assert fd is not None and _F_OFD_GETLK is not None
        for i in _BITS:
            p = 1 << i
            if perm & p and self._conflicts(fd, RAW_LOCK_SHARED_BASE + i):
                raise ImageError(f'Failed to get "{perm_names(p)}" lock', errno=errno.EAGAIN)
        for i in _BITS:
            p = 1 << i
            if not shared & p and self._conflicts(fd, RAW_LOCK_PERM_BASE + i):
                raise ImageError(f'Failed to get shared "{perm_names(p)}" lock', errno=errno.EAGAIN)

    @staticmethod
    def _conflicts(fd: int, off: int) -> bool:
        """qemu_lock_fd_test(fd, off, 1, exclusive=true): would a write lock on the
        byte conflict with someone else's lock? Our own OFD locks never conflict
        with this descriptor."""
        assert _F_OFD_GETLK is not None
        try:
            fl = _fcntl_lock(fd, _F_OFD_GETLK, off, fcntl.F_WRLCK)
        except OSError as e:
            raise ImageError(f"Failed to test byte {off}: {os.strerror(e.errno or 0)}") from None
        return fl.l_type != fcntl.F_UNLCK

    def prepare(self, perm: int, shared: int) -> None:
        """RAW_PL_PREPARE: lock the union of old and new bytes, then check for
        conflicts; on a conflict, restore the old bytes and raise QEMU's error."""
        fd = self._active_fd()
        self._pending = (Perm(perm), Perm(shared))
        if fd is None:
            return
        try:
            self._apply(self.perm | perm, (~self.shared | ~shared) & Perm.ALL, unlock=False)
            self._check(perm, shared)
        except ImageError:
            self.abort()
            raise

    def commit(self) -> None:
        """RAW_PL_COMMIT: hold exactly the prepared bytes."""
        assert self._pending is not None, "commit without prepare"
        perm, shared = self._pending
        self._pending = None
        if self._active_fd() is not None:
            self._apply(perm, ~shared & Perm.ALL, unlock=True)
        self.perm, self.shared = perm, shared

    def abort(self) -> None:
        """RAW_PL_ABORT: back to exactly the bytes of the current permissions."""
        self._pending = None
        if self._active_fd() is not None:
            self._apply(self.perm, ~self.shared & Perm.ALL, unlock=True)

    def set_perms(self, perm: int, shared: int) -> None:
        """Check, then apply (`bdrv_check_perm` + `bdrv_set_perm` on a file node)."""
        self.prepare(perm, shared)
        self.commit()

    def set_inactive(self, inactive: bool) -> None:
        """BDRV_O_INACTIVE on the file node: while set, permission changes are recorded
        but the bytes are left as they are [raw_handle_perm_lock]. Clearing it
        (`bdrv_invalidate_cache`) re-applies the current permissions."""
        self.inactive = inactive
        if not inactive and self.fd is not None:
            self.set_perms(self.perm, self.shared)

    def held_bytes(self) -> tuple[int, ...]:
        """The lock bytes this descriptor holds right now. (While inactive these are
        whatever was locked when the node became inactive.)"""
        perm, not_shared = self._locked
        held = [RAW_LOCK_PERM_BASE + i for i in _BITS if perm & (1 << i)]
        held += [RAW_LOCK_SHARED_BASE + i for i in _BITS if not_shared & (1 << i)]
        return tuple(held)

    def close(self) -> None:
        """Closing the descriptor drops all of its OFD locks."""
        if self.fd is not None:
            self.opener.qemu_close(self.fd)
            self.fd = None
        self._locked = (Perm.NONE, Perm.NONE)
