"""File descriptors passed in over SCM_RIGHTS: monitors' named fds and the fd sets.

`vmm` layer, the one place besides the server that owns real descriptors: QEMU keeps
what `getfd` and `add-fd` hand it open until `closefd`/`remove-fd` (or a cleanup)
closes it, and reports the descriptor numbers of its own process, which are the
numbers these descriptors have here too. Semantics of monitor.c (QEMU 2.11):
`../shared/reference/devices.md` §11.
"""

from __future__ import annotations

import errno
import fcntl
import os

import attrs

from schema.errors import GenericError

QERR_FD_NOT_SUPPLIED = "No file descriptor supplied via SCM_RIGHTS"
QERR_FD_NOT_FOUND = "File descriptor named '%s' not found"


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@attrs.define
class FdsetFd:
    fd: int
    opaque: str | None
    removed: bool = False


@attrs.define
class Fdset:
    id: int
    fds: list[FdsetFd] = attrs.Factory(list)  # newest first, as monitor.c keeps them
    dup_fds: list[int] = attrs.Factory(list)  # descriptors handed out to consumers


@attrs.define(kw_only=True)
class FdSets:
    """The process-wide fd sets (one per Machine here), ordered by id."""

    sets: list[Fdset] = attrs.Factory(list)

    def add(self, fd: int, fdset_id: int | None, opaque: str | None) -> dict[str, int]:
        """monitor_fdset_add_fd: returns the AddfdInfo."""
        fdset = None
        if fdset_id is not None:
            fdset = next((s for s in self.sets if s.id == fdset_id), None)
        if fdset is None:
            if fdset_id is not None:
                if fdset_id < 0:
                    raise GenericError("Parameter 'fdset-id' expects a non-negative value")
                new_id = fdset_id
            else:
                new_id = 0
                for s in self.sets:  # the first gap in the ids
                    if s.id != new_id:
                        break
                    new_id += 1
            fdset = Fdset(new_id)
            self.sets.append(fdset)
            self.sets.sort(key=lambda s: s.id)
        fdset.fds.insert(0, FdsetFd(fd, opaque))
        return {"fdset-id": fdset.id, "fd": fd}

    def add_inherited(self, fd: int, fdset_id: int, opaque: str | None) -> None:
        """vl.c parse_add_fd (`-add-fd fd=FD,set=N`), the descriptor's part: FD must be
        open and inherited (no FD_CLOEXEC); a close-on-exec duplicate joins set N.
        The caller closes FD itself once every -add-fd is done (cleanup_add_fd)."""
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            flags = -1
        if flags == -1 or flags & fcntl.FD_CLOEXEC:
            raise GenericError("fd is not valid or already in use")
        try:
            dup = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as e:
            raise GenericError(f"error duplicating fd: {os.strerror(e.errno or 0)}") from None
        self.add(dup, fdset_id, opaque)

    def remove(self, fdset_id: int, fd: int | None, *, running: bool,
               monitors_connected: int) -> None:
        """qmp_remove_fd."""
        for fdset in self.sets:
            if fdset.id != fdset_id:
                continue
            found = False
            for entry in fdset.fds:
                if fd is None or entry.fd == fd:
                    entry.removed = True
                    found = True
                    if fd is not None:
                        break
            if fd is not None and not found:
                break
            self._cleanup(fdset, running=running, monitors_connected=monitors_connected)
            return
        name = f"fdset-id:{fdset_id}" if fd is None else f"fdset-id:{fdset_id}, fd:{fd}"
        raise GenericError(QERR_FD_NOT_FOUND % name)

    def cleanup_all(self, *, running: bool, monitors_connected: int) -> None:
        """monitor_fdsets_cleanup (run when a monitor's client goes away)."""
        for fdset in list(self.sets):
            self._cleanup(fdset, running=running, monitors_connected=monitors_connected)

    def _cleanup(self, fdset: Fdset, *, running: bool, monitors_connected: int) -> None:
        for entry in list(fdset.fds):
            if (entry.removed or (not fdset.dup_fds and monitors_connected == 0)) and running:
                close_quietly(entry.fd)
                fdset.fds.remove(entry)
        if not fdset.fds and not fdset.dup_fds:
            self.sets.remove(fdset)

    def query(self) -> list[dict[str, object]]:
        """qmp_query_fdsets: sets by descending id, each set's fds oldest first."""
        out: list[dict[str, object]] = []
        for fdset in reversed(self.sets):
            fds: list[dict[str, object]] = []
            for entry in reversed(fdset.fds):
                info: dict[str, object] = {"fd": entry.fd}
                if entry.opaque is not None:
                    info["opaque"] = entry.opaque
                fds.append(info)
            out.append({"fdset-id": fdset.id, "fds": fds})
        return out

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """util/osdep.c qemu_open: `/dev/fdset/N` dups the set's first descriptor of
        the same access mode (monitor_fdset_get_fd; no such set: ENOENT, none of the
        mode: EACCES; a bad number: EINVAL), truncating as open() would
        (qemu_dup_flags); any other name is opened. Raises OSError with errno set.
        Close the result with `qemu_close`."""
        if not name.startswith("/dev/fdset/"):
            return os.open(name, flags | os.O_CLOEXEC, mode)
        text = name[len("/dev/fdset/"):]
        try:
            fdset_id = int(text, 0)
        except ValueError:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL)) from None
        fdset = next((s for s in self.sets if s.id == fdset_id), None)
        if fdset is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        for entry in fdset.fds:
            if fcntl.fcntl(entry.fd, fcntl.F_GETFL) & os.O_ACCMODE == flags & os.O_ACCMODE:
                dup = os.dup(entry.fd)
                if flags & os.O_TRUNC or flags & (os.O_CREAT | os.O_EXCL) == (
                        os.O_CREAT | os.O_EXCL):
                    os.ftruncate(dup, 0)
                fdset.dup_fds.append(dup)
                return dup
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    def qemu_close(self, fd: int) -> None:
        """util/osdep.c qemu_close: a descriptor dup'ed from a set leaves the set."""
        for fdset in self.sets:
            if fd in fdset.dup_fds:
                fdset.dup_fds.remove(fd)
        close_quietly(fd)

    def close_all(self) -> None:
        for fdset in self.sets:
            for entry in fdset.fds:
                close_quietly(entry.fd)
        self.sets.clear()


@attrs.define(kw_only=True)
class MonitorFds:
    """One monitor's named descriptors (getfd/closefd) and those waiting to be taken."""

    named: dict[str, int] = attrs.Factory(dict)
    received: list[int] = attrs.Factory(list)  # arrived with the current message

    def take_received(self) -> int | None:
        """qemu_chr_fe_get_msgfd: the first descriptor sent with this message."""
        if not self.received:
            return None
        return self.received.pop(0)

    def drop_received(self) -> None:
        for fd in self.received:
            close_quietly(fd)
        self.received.clear()

    def getfd(self, fdname: str) -> None:
        fd = self.take_received()
        if fd is None:
            raise GenericError(QERR_FD_NOT_SUPPLIED)
        if fdname[:1] in tuple("0123456789"):
            close_quietly(fd)
            raise GenericError("Parameter 'fdname' expects a name not starting with a digit")
        old = self.named.get(fdname)
        if old is not None:
            close_quietly(old)
        self.named[fdname] = fd

    def closefd(self, fdname: str) -> None:
        fd = self.named.pop(fdname, None)
        if fd is None:
            raise GenericError(QERR_FD_NOT_FOUND % fdname)
        close_quietly(fd)

    def close_all(self) -> None:
        for fd in self.named.values():
            close_quietly(fd)
        self.named.clear()
        self.drop_received()
