"""The trio server: sockets for every monitor, the machine's main loop, orderly exit.

I/O edge of the `vmm` layer. It binds the listening sockets QEMU's chardevs would
(unix paths, TCP ports, a listening descriptor handed in with `fd=`, or stdio),
serves one client at a time per chardev as QEMU's socket chardev does (a second
client waits in the backlog and is greeted when the first leaves), receives
SCM_RIGHTS descriptors on unix sockets, and runs the Machine's timers. Everything
below `serve` lives in one nursery: when the machine exits (quit, guest power-off,
a signal), replies and events already produced are flushed to every client and then
every task is cancelled.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import stat
import sys
from collections.abc import Callable
from typing import Any

import attrs
import trio

from vmm.qmp.monitor import HIGH_WATER, HmpMonitor, QmpMonitor
from vmm.vm import Vm

MAX_FDS_PER_MESSAGE = 16
FLUSH_TIMEOUT = 5.0  # seconds a client gets to take the last replies before exit


class ServerError(Exception):
    """A chardev could not be set up; the message is QEMU's."""


@attrs.frozen
class ChardevSpec:
    """Where a monitor's chardev listens (or talks): a socket server or stdio."""

    id: str
    backend: str  # "socket" | "stdio"
    path: str | None = None
    host: str | None = None
    port: str | None = None
    fd: int | None = None
    server: bool = True
    wait: bool = True
    telnet: bool = False
    ipv4: bool = False
    ipv6: bool = False

    def filename(self) -> str:
        """chardev/char-socket.c SocketAddress_to_str, as QEMU names the chardev."""
        suffix = ",server" if self.server else ""
        if self.path is not None:
            return f"disconnected:unix:{self.path}{suffix}"
        if self.fd is not None:
            return f"disconnected:fd:{self.fd}{suffix}"
        kind = "telnet" if self.telnet else "tcp"
        return f"disconnected:{kind}:{self.host or ''}:{self.port}{suffix}"


@attrs.frozen
class MonitorSpec:
    chardev: ChardevSpec
    mode: str = "control"  # or "readline"
    pretty: bool = False


@attrs.frozen
class BoundAddress:
    """What a started server reports: each chardev's id and socket address."""

    chardev: str
    family: str
    address: Any


class _Signal:
    """A level-triggered wake-up flag that sync code can raise inside trio."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class Listener:
    """A bound listening socket of one chardev."""

    def __init__(self, spec: ChardevSpec, sock: trio.socket.SocketType) -> None:
        self.spec = spec
        self.sock = sock
        self.pending: trio.socket.SocketType | None = None  # accepted early (server,wait)

    @property
    def is_unix(self) -> bool:
        return self.sock.family == socket.AF_UNIX

    async def accept(self) -> trio.socket.SocketType:
        if self.pending is not None:
            conn, self.pending = self.pending, None
            return conn
        if not self.spec.server:
            await trio.sleep_forever()  # a client chardev without reconnect stays closed
        conn, _ = await self.sock.accept()
        return conn

    def address(self) -> BoundAddress:
        family = {socket.AF_UNIX: "unix", socket.AF_INET: "inet",
                  socket.AF_INET6: "inet6"}.get(self.sock.family, str(self.sock.family))
        return BoundAddress(self.spec.id, family, self.sock.getsockname())


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
        raise ServerError(f"Failed to connect socket {where}: {e.strerror}") from None
    listener = Listener(spec, sock)
    listener.pending = sock
    return listener


async def open_listener(spec: ChardevSpec) -> Listener:
    """Bind and listen as QEMU's socket chardev does (util/qemu-sockets.c)."""
    if not spec.server and spec.fd is None:
        return await open_client(spec)
    if spec.fd is not None:
        try:
            raw = socket.socket(fileno=spec.fd)
        except OSError as e:
            raise ServerError(f"Failed to use socket fd {spec.fd}: {e.strerror}") from None
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
            raise ServerError(f"Failed to unlink socket {spec.path}: {e.strerror}") from None
        try:
            await sock.bind(spec.path)
        except OSError as e:
            sock.close()
            raise ServerError(f"Failed to bind socket to {spec.path}: {e.strerror}") from None
        sock.listen(1)
        return Listener(spec, sock)
    host = spec.host or ("::" if spec.ipv6 else "0.0.0.0")
    family = socket.AF_INET6 if spec.ipv6 or ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        await sock.bind((host, int(spec.port or "0")))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServerError("Failed to bind socket: Address already in use") from None
        raise ServerError(f"Failed to bind socket: {e.strerror}") from None
    sock.listen(1)
    return Listener(spec, sock)


class Connection:
    """One client of one monitor: reads requests, writes what the monitor produced."""

    def __init__(self, sock: Any, monitor: QmpMonitor | HmpMonitor, unix: bool,
                 on_exit: Callable[[], None]) -> None:
        self.sock = sock
        self.monitor = monitor
        self.unix = unix
        self.on_exit = on_exit
        self.output = _Signal()
        self.drained = _Signal()
        self.closed = False
        self.sending = False

    async def run(self) -> None:
        monitor = self.monitor
        monitor.on_output = self.output.set
        monitor.connect()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                await self.flush()
                nursery.cancel_scope.cancel()
        finally:
            monitor.disconnect()
            self.closed = True
            self.sock.close()

    async def _reader(self) -> None:
        machine = self.monitor.machine
        while True:
            while len(self.monitor.outbox) > HIGH_WATER:
                await self.drained.wait()  # back-pressure: keep the requests unread
            try:
                data, fds = await self._receive()
            except OSError:
                return
            if not data:
                return
            try:
                self.monitor.feed(data, fds)
            except Exception:
                # A bug of ours must not take the other clients down: log it here, at
                # this connection's edge, and keep serving (unless --emu-strict).
                if machine.options.strict:
                    raise
                machine.log.exception("a request failed at its connection's edge")
            if machine.exit_code is not None:
                self.on_exit()
                await trio.sleep_forever()

    async def _receive(self) -> tuple[bytes, list[int]]:
        if not self.unix:
            return await self.sock.recv(65536), []
        fds = array.array("i")
        data, ancdata, _flags, _addr = await self.sock.recvmsg(
            65536, socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % fds.itemsize
                fds.frombytes(payload[:usable])
        return data, list(fds)

    async def _writer(self, scope: trio.CancelScope) -> None:
        monitor = self.monitor
        while True:
            if monitor.dropped:
                scope.cancel()  # too far behind on events: the slow-client policy
                return
            data = monitor.take_output()
            if data:
                view = memoryview(data)
                self.sending = True
                try:
                    while view:
                        sent = await self.sock.send(view)
                        view = view[sent:]
                except OSError:
                    scope.cancel()
                    return
                finally:
                    self.sending = False
                self.drained.set()
                continue
            self.drained.set()
            await self.output.wait()

    async def flush(self) -> None:
        """Wait until everything the monitor produced has been handed to the kernel."""
        with trio.move_on_after(FLUSH_TIMEOUT):
            while (self.monitor.outbox or self.sending) and not self.closed:
                self.output.set()
                await self.drained.wait()


class StdioStream:
    """stdin/stdout as one duplex byte stream (a chardev that is open from the start)."""

    def __init__(self) -> None:
        self.reader = trio.lowlevel.FdStream(os.dup(0))
        self.writer = trio.lowlevel.FdStream(os.dup(1))

    async def recv(self, size: int) -> bytes:
        return await self.reader.receive_some(size)

    async def send(self, data: memoryview) -> int:
        await self.writer.send_all(data)
        return len(data)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class Server:
    """All monitors of one VM, its main loop, and the exit sequence."""

    def __init__(self, vm: Vm, monitors: list[MonitorSpec],
                 on_bound: Callable[[], None] = lambda: None) -> None:
        self.vm = vm
        self.specs = monitors
        self.on_bound = on_bound  # the rest of start-up (vmm.startup.finish)
        self.listeners: list[tuple[Listener, QmpMonitor | HmpMonitor]] = []
        self.stdio: list[QmpMonitor | HmpMonitor] = []
        self.connections: list[Connection] = []
        self.exiting = trio.Event()
        self.kicked = _Signal()

    def _new_monitor(self, spec: MonitorSpec) -> QmpMonitor | HmpMonitor:
        if spec.mode == "control":
            return self.vm.qmp_monitor(pretty=spec.pretty, name=spec.chardev.id)
        return self.vm.hmp_monitor(name=spec.chardev.id)

    async def bind(self) -> list[BoundAddress]:
        """Create every chardev; accept the first client of `server,wait` ones."""
        for spec in self.specs:
            monitor = self._new_monitor(spec)
            if spec.chardev.backend == "stdio":
                self.stdio.append(monitor)
                continue
            listener = await open_listener(spec.chardev)
            self.listeners.append((listener, monitor))
        for listener, _ in self.listeners:
            if listener.spec.wait and listener.spec.server:
                print(f"{progname()}: info: QEMU waiting for connection on: "
                      f"{listener.spec.filename()}", file=sys.stderr, flush=True)
                conn, _ = await listener.sock.accept()
                listener.pending = conn
        return [listener.address() for listener, _ in self.listeners]

    def request_exit(self) -> None:
        self.exiting.set()

    async def serve(self, *, task_status: trio.TaskStatus[list[BoundAddress]] =
                    trio.TASK_STATUS_IGNORED) -> int:
        """Run until the machine exits; report the bound addresses once listening."""
        addresses = await self.bind()
        self.on_bound()
        machine = self.vm.machine
        machine.kick = self.kicked.set
        async with trio.open_nursery() as nursery:
            for listener, monitor in self.listeners:
                nursery.start_soon(self._accept_loop, listener, monitor)
            for monitor in self.stdio:
                nursery.start_soon(self._serve_stdio, monitor)
            nursery.start_soon(self._main_loop)
            task_status.started(addresses)
            await self.exiting.wait()
            await self._flush_all()
            nursery.cancel_scope.cancel()
        for listener, _ in self.listeners:
            listener.sock.close()
        machine.fdsets.close_all()
        return machine.exit_code if machine.exit_code is not None else 0

    async def _accept_loop(self, listener: Listener, monitor: QmpMonitor | HmpMonitor) -> None:
        while True:
            sock = await listener.accept()
            conn = Connection(sock, monitor, listener.is_unix, self.request_exit)
            self.connections.append(conn)
            try:
                await conn.run()
            finally:
                self.connections.remove(conn)

    async def _serve_stdio(self, monitor: QmpMonitor | HmpMonitor) -> None:
        conn = Connection(StdioStream(), monitor, False, self.request_exit)
        self.connections.append(conn)
        try:
            await conn.run()
        finally:
            self.connections.remove(conn)

    async def _main_loop(self) -> None:
        machine = self.vm.machine
        machine.process_requests()
        while machine.exit_code is None:
            with trio.move_on_at(machine.next_deadline()):
                await self.kicked.wait()
            machine.run_timers(trio.current_time())
        self.request_exit()

    async def _flush_all(self) -> None:
        for conn in list(self.connections):
            await conn.flush()


def progname() -> str:
    """The name QEMU prefixes its messages with: its argv[0]'s base name."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not name or name in ("__main__.py", "-c"):
        return "qmp-emulator"  # started as `python -m vmm`
    return name


def is_socket_fd(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
