"""-daemonize and -pidfile, as QEMU 2.11's os-posix.c and util/oslib-posix.c do them.

Process-level I/O of the `vmm` layer, used by `vmm.program` before and right after
the server starts. `-daemonize`: fork; the parent waits on a pipe and exits 0 only
when the child reports that initialisation (every monitor listening) succeeded,
else 1; the child starts a new session, forks once more, and once initialised moves
to `/`, points stdin/stdout/stderr at /dev/null and writes its one-byte status.
`-pidfile`: created (mode 0600) if missing, locked with lockf for the life of the
process, the pid written at its start; QEMU 2.11 neither truncates nor removes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from typing import NoReturn


class PidfileError(Exception):
    """The message is QEMU's `could not acquire pid file: <strerror>`."""


def create_pidfile(path: str) -> int:
    """qemu_create_pidfile: returns the descriptor that keeps the lock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise PidfileError(f"could not acquire pid file: {os.strerror(e.errno or 0)}") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        code = e.errno if e.errno is not None else errno.EAGAIN
        raise PidfileError(f"could not acquire pid file: {os.strerror(code)}") from None
    data = f"{os.getpid()}\n".encode()
    if os.write(fd, data) != len(data):
        os.close(fd)
        raise PidfileError("could not acquire pid file: short write")
    return fd


class Daemon:
    """The child side of -daemonize, after `daemonize()` returned in it."""

    def __init__(self, status_fd: int) -> None:
        self.status_fd = status_fd

    def initialised(self, *, keep_stderr: bool = False) -> None:
        """os_setup_post: chdir /, stdio to /dev/null, tell the waiting parent."""
        os.chdir("/")
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        if not keep_stderr:
            os.dup2(null, 2)
        os.close(null)
        os.write(self.status_fd, b"\0")
        os.close(self.status_fd)

    def failed(self) -> None:
        try:
            os.close(self.status_fd)  # the parent reads EOF and exits 1
        except OSError:
            pass


def daemonize() -> Daemon:
    """os_daemonize. Returns only in the grandchild; the others exit."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        _parent_waits(read_end)
    os.close(read_end)
    os.set_inheritable(write_end, False)
    os.setsid()
    pid = os.fork()
    if pid > 0:
        os._exit(0)
    os.umask(0o027)
    for sig in (signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(sig, signal.SIG_IGN)
    return Daemon(write_end)


def _parent_waits(read_end: int) -> NoReturn:
    while True:
        try:
            status = os.read(read_end, 1)
            break
        except InterruptedError:
            continue
    os._exit(0 if status == b"\0" else 1)
