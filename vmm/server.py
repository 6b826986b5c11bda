"""The trio server: a connection for every monitor and for qtest, the machine's main loop, orderly exit.

I/O edge of the `vmm` layer. Each monitor, and the qtest protocol of `-qtest`
(`vmm.qtest`, with its `-qtest-log` file), is a frontend of a chardev: the chardev
edge (`devices.chardev.edge`) opens the socket or stdio the monitor's `ChardevSpec`
names, and hands over one client at a time as QEMU's socket chardev does (a second
client waits in the backlog and is greeted when the first leaves). A `Connection`
feeds what its client sends (bytes and SCM_RIGHTS descriptors) to the monitor and
writes back what the monitor produced; the main loop runs the Machine's timers.
Everything below `serve` lives in one nursery: when the machine exits (quit, guest
power-off, a signal), replies and events already produced are flushed to every
client and then every task is cancelled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol

import trio

from devices.chardev.edge import (
    BoundAddress,
    ChardevError,
    ChardevStream,
    Listener,
    ListenerIO,
    MonitorHold,
    SocketStream,
    StdioStream,
    open_listener,
    serve_chardevs,
)
from vmm.config import MonitorSpec, QtestSpec
from vmm.machine.core import Machine
from vmm.qmp.monitor import HIGH_WATER, SEND_CHUNK
from vmm.vm import Vm

if TYPE_CHECKING:
    from migration.commands import Migration

FLUSH_TIMEOUT = 0.02  # what a client may take at exit: QEMU writes what the socket takes and exits

__all__ = ["BoundAddress", "Connection", "Frontend", "MonitorSpec", "Server", "ServerError",
           "progname"]

# The name `vmm.program` catches: a chardev that could not be opened.
ServerError = ChardevError


class Frontend(Protocol):
    """What sits on a chardev: a QMP or HMP monitor, or qtest."""

    machine: Machine
    outbox: bytearray
    dropped: bool
    on_output: Callable[[], None]

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def feed(self, data: bytes, fds: list[int] | None = None) -> None: ...

    def take_output(self, limit: int | None = None) -> bytes: ...


class _Signal:
    """A level-triggered wake-up flag that sync code can raise inside trio."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class Connection:
    """One client of one monitor: reads requests, writes what the monitor produced."""

    def __init__(self, stream: ChardevStream, monitor: Frontend,
                 on_exit: Callable[[], None]) -> None:
        self.stream = stream
        self.monitor = monitor
        self.on_exit = on_exit
        self.output = _Signal()
        self.drained = _Signal()
        self.closed = False
        self.sending = False

    async def run(self) -> None:
        monitor = self.monitor
        monitor.connect()
        try:
            async with trio.open_nursery() as nursery:
                monitor.on_output = lambda: self._wake(nursery.cancel_scope)
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                await self.flush()
                nursery.cancel_scope.cancel()
        finally:
            monitor.disconnect()
            self.closed = True
            self.stream.close()

    def _wake(self, scope: trio.CancelScope) -> None:
        """The monitor has output, or gave up on this client (the slow-client policy):
        then the connection ends at once, even if a send to it is blocked."""
        if self.monitor.dropped:
            scope.cancel()
        self.output.set()

    async def _reader(self) -> None:
        machine = self.monitor.machine
        while True:
            while len(self.monitor.outbox) > HIGH_WATER:
                await self.drained.wait()  # back-pressure: keep the requests unread
            try:
                data, fds = await self.stream.receive()
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

    async def _writer(self, scope: trio.CancelScope) -> None:
        monitor = self.monitor
        while True:
            if monitor.dropped:
                scope.cancel()  # too far behind on events: the slow-client policy
                return
            data = monitor.take_output(SEND_CHUNK)
            if data:
                view = memoryview(data)
                self.sending = True
                try:
                    while view:
                        sent = await self.stream.send(view)
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


class Server:
    """All monitors of one VM, its main loop, and the exit sequence."""

    def __init__(self, vm: Vm, monitors: list[MonitorSpec],
                 on_bound: Callable[[], None] = lambda: None,
                 qtest: QtestSpec | None = None) -> None:
        self.vm = vm
        self.specs = monitors
        self.qtest_spec = qtest
        self.qtest_log: IO[bytes] | None = None
        self.on_bound = on_bound  # the rest of start-up (vmm.startup.finish)
        self.listeners: list[tuple[Listener, Frontend]] = []
        self.stdio: list[Frontend] = []
        self.connections: list[Connection] = []
        self.exiting = trio.Event()
        self.kicked = _Signal()

    def _new_monitor(self, spec: MonitorSpec) -> Frontend:
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
            self.vm.chardevs.adopt(spec.chardev.id, ListenerIO(listener), MonitorHold())
        if self.qtest_spec is not None:
            await self._bind_qtest(self.qtest_spec)
        for listener, _ in self.listeners:
            if listener.spec.wait and listener.spec.server:
                print(f"{progname()}: info: QEMU waiting for connection on: "
                      f"{listener.spec.filename()}", file=sys.stderr, flush=True)
                await listener.wait_connected()
        return [listener.address() for listener, _ in self.listeners]

    async def _bind_qtest(self, spec: QtestSpec) -> None:
        """qtest.c qtest_init, after the monitors' chardevs (vl.c): its chardev, and
        its log (stderr without -qtest-log, nothing for `none`, else the file
        opened "w+", or nothing if it cannot be)."""
        log: Callable[[bytes], None] | None = None
        if spec.log is None:
            def log(data: bytes) -> None:
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
        elif spec.log != "none":
            try:
                self.qtest_log = open(spec.log, "w+b")  # closed when serve ends
            except OSError:
                self.qtest_log = None
            if self.qtest_log is not None:
                out = self.qtest_log

                def log(data: bytes) -> None:
                    out.write(data)
                    out.flush()
        frontend = self.vm.qtest(log=log, stderr=_to_stderr)
        if spec.chardev is None:
            return
        if spec.chardev.backend == "stdio":
            self.stdio.append(frontend)
            return
        try:
            listener = await open_listener(spec.chardev)
        except ChardevError as err:
            raise ChardevError(f"{err}\n{progname()}: Failed to initialize device for "
                               f'qtest: "{spec.arg}"') from None
        self.listeners.append((listener, frontend))

    def request_exit(self) -> None:
        self.exiting.set()

    async def serve(self, *, task_status: trio.TaskStatus[list[BoundAddress]] =
                    trio.TASK_STATUS_IGNORED) -> int:
        """Run until the machine exits; report the bound addresses once listening."""
        machine = self.vm.machine
        try:
            addresses = await self.bind()
            self.on_bound()
            machine.kick = self.kicked.set
            async with trio.open_nursery() as nursery:
                machine.tasks.attach(nursery.start_soon)
                for listener, monitor in self.listeners:
                    nursery.start_soon(self._accept_loop, listener, monitor)
                for monitor in self.stdio:
                    nursery.start_soon(self._serve_stdio, monitor)
                nursery.start_soon(self._main_loop)
                nursery.start_soon(serve_chardevs, self.vm.chardevs)
                self._attach_migration(nursery)
                task_status.started(addresses)
                await self.exiting.wait()
                await self._flush_all()
                machine.tasks.detach()
                nursery.cancel_scope.cancel()
        finally:
            # However the server ends (an exit, a refused start-up, a strict-mode
            # failure), its chardevs close and their socket files go.
            for listener, _ in self.listeners:
                listener.close()
            if self.qtest_log is not None:
                self.qtest_log.close()
            machine.fdsets.close_all()
        return machine.exit_code if machine.exit_code is not None else 0

    def _attach_migration(self, nursery: trio.Nursery) -> None:
        """Migration streams are real: their edge runs in this nursery, and the
        destination's load errors go to stderr as QEMU's error_report does."""

        def attach(migration: Migration) -> None:
            from migration.transport import TrioEdge

            migration.report = _report
            migration.attach_edge(TrioEdge(nursery, self.vm.machine.kick))

        self.vm.lazy_migration.when_built(attach)  # the subsystem loads on first use

    async def _accept_loop(self, listener: Listener, monitor: Frontend) -> None:
        while True:
            stream = await listener.accept()
            conn = Connection(stream, monitor, self.request_exit)
            self.connections.append(conn)
            held = self.vm.chardevs.find(listener.spec.id)
            io = held.io if held is not None else None
            if isinstance(io, ListenerIO) and isinstance(stream, SocketStream):
                sock = stream.sock
                io.peer = listener.spec.connected_filename(sock.getsockname(),
                                                           sock.getpeername())
            try:
                await conn.run()
            finally:
                self.connections.remove(conn)
                if isinstance(io, ListenerIO):
                    io.peer = None

    async def _serve_stdio(self, monitor: Frontend) -> None:
        conn = Connection(StdioStream(), monitor, self.request_exit)
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


def _report(line: str) -> None:
    print(f"{progname()}: {line}", file=sys.stderr, flush=True)


def _to_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def progname() -> str:
    """The name QEMU prefixes its messages with: its argv[0]'s base name."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not name or name in ("__main__.py", "-c"):
        return "qmp-emulator"  # started as `python -m vmm`
    return name

