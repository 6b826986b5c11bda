"""The chardev edge: real sockets and stdio for the backends `ChardevSpec` describes.

I/O edge of `devices.chardev` (trio). It binds, listens and connects as QEMU's
socket chardev does [chardev/char-socket.c, util/qemu-sockets.c]: unix paths
(whatever is at the path is removed first), TCP ports, a listening descriptor
handed in with `fd=`, or a client connection made once at start-up (`server=off`).
One client at a time per chardev: the listening socket has a backlog of one, and a
second client waits there until the frontend takes it. A frontend reads and writes
through a stream (`SocketStream`, `StdioStream`): bytes, plus the descriptors a
unix client passes with SCM_RIGHTS (tcp_chr_recv). Failures raise `ChardevError`
with QEMU's message. `serve_chardevs` is the trio side of the chardevs the model
holds (`Chardevs`, opened by `devices.chardev.hostio`): it waits until a descriptor
is readable and lets the chardev read it; `ListenerIO`/`MonitorHold` enter a
monitor's chardev into the model (query-chardev, busy) while the server serves it.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from devices.chardev.model import Chardev, Chardevs, ChardevSpec
from schema.opts.cutils import Errno, qemu_strtoi64

MAX_FDS_PER_MESSAGE = 16  # char-socket.c TCP_MAX_FDS
RECV_SIZE = 65536


class ChardevError(Exception):
    """A chardev could not be opened; the message is QEMU's."""


@attrs.frozen
class BoundAddress:
    """What an opened socket chardev reports: its id and its socket address."""

    chardev: str
    family: str
    address: Any


class ChardevStream(Protocol):
    """A connected chardev as its frontend sees it."""

    async def receive(self) -> tuple[bytes, list[int]]:
        """The next bytes (b"" at end of stream) and the descriptors passed with them."""
        ...

    async def send(self, data: memoryview) -> int: ...

    def close(self) -> None: ...


class SocketStream:
    """One accepted (or connected) socket; unix ones also carry descriptors."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.unix = sock.family == socket.AF_UNIX

    async def receive(self) -> tuple[bytes, list[int]]:
        if not self.unix:
            return await self.sock.recv(RECV_SIZE), []
        fds = array.array("i")
        data, ancdata, _flags, _addr = await self.sock.recvmsg(
            RECV_SIZE, socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % fds.itemsize
                fds.frombytes(payload[:usable])
        return data, list(fds)

    async def send(self, data: memoryview) -> int:
        return await self.sock.send(data)

    def close(self) -> None:
        self.sock.close()


class StdioStream:
    """stdin/stdout as one duplex stream (the stdio chardev, open from the start)."""

    def __init__(self) -> None:
        self.reader = trio.lowlevel.FdStream(os.dup(0))
        self.writer = trio.lowlevel.FdStream(os.dup(1))

    async def receive(self) -> tuple[bytes, list[int]]:
        return await self.reader.receive_some(RECV_SIZE), []

    async def send(self, data: memoryview) -> int:
        await self.writer.send_all(data)
        return len(data)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class Listener:
    """The socket of one socket chardev: listening, or (client mode) connected."""

    def __init__(self, spec: ChardevSpec, sock: trio.socket.SocketType, *,
                 listening: bool = False) -> None:
        self.spec = spec
        self.sock = sock
        self.listening = listening  # we called listen(): the socket file is ours
        self.pending: trio.socket.SocketType | None = None  # accepted early (server,wait)

    async def wait_connected(self) -> None:
        """tcp_chr_wait_connected: a `server,wait` chardev takes its first client
        before the machine starts."""
        self.pending, _ = await self.sock.accept()

    async def accept(self) -> SocketStream:
        """The next client (the one taken early, if any)."""
        if self.pending is not None:
            conn, self.pending = self.pending, None
            return SocketStream(conn)
        if not self.spec.server:
            await trio.sleep_forever()  # a client chardev without reconnect stays closed
        conn, _ = await self.sock.accept()
        return SocketStream(conn)

    def address(self) -> BoundAddress:
        family = {socket.AF_UNIX: "unix", socket.AF_INET: "inet",
                  socket.AF_INET6: "inet6"}.get(self.sock.family, str(self.sock.family))
        return BoundAddress(self.spec.id, family, self.sock.getsockname())

    def close(self) -> None:
        """Close the socket; a unix socket this chardev listened on loses its file, as
        QEMU's listening channel does when it is finalized at exit
        [io/channel-socket.c qio_channel_socket_finalize, util/qemu-sockets.c
        socket_listen_cleanup: the path comes from getsockname; ENOENT is fine]."""
        if self.sock.fileno() < 0:
            return
        path = None
        if self.listening and self.sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                path = self.sock.getsockname()
        self.sock.close()
        if isinstance(path, str) and path and not path.startswith("\0"):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _is_socket(fd: int) -> bool:
    """fd_is_socket: fstat says S_ISSOCK (a closed descriptor is not one)."""
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


async def open_client(spec: ChardevSpec) -> Listener:
    """A `server=off` socket chardev: connect once at start-up (tcp_chr_wait_connected)."""
    if spec.path is not None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = spec.path
        where = spec.path
    else:
        family = socket.AF_INET6 if spec.ipv6 or ":" in (spec.host or "") else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        target = (spec.host or "localhost", int(spec.port or "0"))
        where = f"{spec.host}:{spec.port}"
    try:
        await sock.connect(target)
    except OSError as e:
        sock.close()
        raise ChardevError(f"Failed to connect socket {where}: {e.strerror}") from None
    listener = Listener(spec, sock)
    listener.pending = sock
    return listener


def socket_get_fd(text: str) -> int:
    """QEMU 2.12 util/qemu-sockets.c socket_get_fd without a current monitor: the
    number by qemu_strtoi (base 10, the whole string, a C int), and on failure
    "Unable to parse FD number" with strerror(errno) when strtol set one (ERANGE)."""
    err, value, end = qemu_strtoi64(text, 10, need_full=False)
    erange = err is Errno.ERANGE or not -(1 << 31) <= value < 1 << 31
    if end == 0 or end < len(text) or erange:
        suffix = f": {os.strerror(errno.ERANGE)}" if erange else ""
        raise ChardevError(f"Unable to parse FD number {text}{suffix}")
    return value


async def open_listener(spec: ChardevSpec) -> Listener:
    """Bind and listen as QEMU's socket chardev does (util/qemu-sockets.c); a client
    chardev connects instead."""
    if not spec.server and spec.fd is None:
        return await open_client(spec)
    if spec.fd is not None:
        fd = socket_get_fd(spec.fd)
        if not _is_socket(fd):
            # QEMU 2.12 util/qemu-sockets.c socket_get_fd (fd= is 2.12's option)
            raise ChardevError(f"File descriptor '{spec.fd}' is not a socket")
        raw = socket.socket(fileno=fd)
        raw.setblocking(False)
        return Listener(spec, trio.socket.from_stdlib_socket(raw))
    if spec.path is not None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(spec.path)  # unix_listen_saddr removes whatever is there first
        except FileNotFoundError:
            pass
        except OSError as e:
            sock.close()
            raise ChardevError(f"Failed to unlink socket {spec.path}: {e.strerror}") from None
        try:
            await sock.bind(spec.path)
        except OSError as e:
            sock.close()
            raise ChardevError(f"Failed to bind socket to {spec.path}: {e.strerror}") from None
        sock.listen(1)
        return Listener(spec, sock, listening=True)
    host = spec.host or ("::" if spec.ipv6 else "0.0.0.0")
    family = socket.AF_INET6 if spec.ipv6 or ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        await sock.bind((host, int(spec.port or "0")))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            # inet_listen_saddr tries the port range, and with every port taken says
            # so [util/qemu-sockets.c]
            raise ChardevError("Failed to find an available port: Address already in use") \
                from None
        raise ChardevError(f"Failed to bind socket: {e.strerror}") from None
    sock.listen(1)
    return Listener(spec, sock, listening=True)


async def serve_chardevs(chardevs: Chardevs) -> None:
    """The trio side of the chardevs `chardev-add` and the command line created: wait
    until a host descriptor is readable and let the chardev read it (accept a client,
    take bytes for its frontend). Runs until cancelled; the set of descriptors is
    read again whenever the chardevs change."""
    changed = trio.Event()

    def wake() -> None:
        nonlocal changed
        changed.set()

    chardevs.on_change = wake
    chardevs.before_close = trio.lowlevel.notify_closing
    watching: dict[tuple[int, int], trio.CancelScope] = {}
    try:
        async with trio.open_nursery() as nursery:
            while True:
                wanted = {(id(c), fd): c for c, fd in chardevs.fds()}
                for key in [k for k in watching if k not in wanted]:
                    watching.pop(key).cancel()
                for key, chardev in wanted.items():
                    if key not in watching:
                        watching[key] = await nursery.start(_watch, chardev, key, wake,
                                                            watching)
                await changed.wait()
                changed = trio.Event()
    finally:
        chardevs.on_change = lambda: None
        chardevs.before_close = lambda fd: None


async def _watch(chardev: Chardev, key: tuple[int, int], wake: Callable[[], None],
                 watching: dict[tuple[int, int], trio.CancelScope], *,
                 task_status: trio.TaskStatus[trio.CancelScope] =
                 trio.TASK_STATUS_IGNORED) -> None:
    """Wait on one descriptor; when what to wait on changes, hand back to
    `serve_chardevs` (which starts the watchers anew)."""
    with trio.CancelScope() as scope:
        task_status.started(scope)
        while True:
            try:
                await trio.lowlevel.wait_readable(key[1])
                changed = chardev.readable(key[1])
            except (trio.ClosedResourceError, OSError):
                changed = True
            if changed:
                if watching.get(key) is scope:
                    del watching[key]
                wake()
                return
            await trio.lowlevel.checkpoint()


class MonitorHold:
    """A monitor as the frontend of its chardev: it holds it (chardev-remove says
    "busy") and has it open (query-chardev's frontend-open, verified true)."""

    hotswap = False
    frontend_open = True

    def receive(self, data: bytes) -> None:
        pass  # the server's Connection feeds the monitor itself

    def event(self, event: str) -> None:
        pass

    def backend_changed(self, chardev: Chardev) -> bool:
        return False


class ListenerIO:
    """A monitor's socket chardev as the chardevs see it: its filename (connected or
    not), served by the server's own accept loop (so no descriptors to wait on)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.peer: str | None = None

    def filename(self) -> str:
        return self.peer if self.peer is not None else self.listener.spec.filename()

    def connected(self) -> bool:
        return self.peer is not None

    def write(self, data: bytes) -> None:
        pass

    def read_fds(self) -> tuple[int, ...]:
        return ()

    def readable(self, fd: int) -> tuple[bytes | None, str | None]:
        return None, None

    def retry(self) -> bool:
        return False

    def close(self) -> None:
        pass  # the server closes its listeners
