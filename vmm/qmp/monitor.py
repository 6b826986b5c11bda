"""Monitors as protocol state machines: bytes in, bytes out, no sockets.

`vmm` layer, synchronous. A `QmpMonitor` is QEMU's QMP monitor for one chardev: it
greets each new client, decodes its bytes with QEMU's JSON dialect, runs each
message through the dispatcher in order, and writes replies and events (CR LF
framed, compact or `pretty=on`) to its outbox. An `HmpMonitor` is the readline
monitor: banner, prompt, echo, one command line at a time. The server (trio) owns
the sockets and moves bytes between them and these objects; ordering is decided
here: events raised while a command runs go out before its reply, events of the
requests it queued after (`qmp-protocol.md` §4, `runstate.md` §7).

Outbox policy for a client that stops reading: the server stops reading its input
while its outbox holds more than `HIGH_WATER` bytes (so requests are never lost, only
delayed), and disconnects it if events alone push the outbox past `EVENT_LIMIT`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schema.output import check_return
from schema.qobject import to_json
from vmm.hmp.readline import Readline
from vmm.hmp.state import HmpState
from vmm.machine.events import Event
from vmm.qmp.dispatch import Dispatcher, MonitorSession, ParseError
from vmm.qmp.wire import MessageDecoder, ParseFailure, encode

if TYPE_CHECKING:
    from vmm.hmp.interpreter import Hmp
    from vmm.machine.commands import CoreCommands
    from vmm.machine.core import Machine

HIGH_WATER = 1 << 20      # stop reading a client's requests above this backlog
SEND_CHUNK = 1 << 18      # the most the server takes out of an outbox per send
# A client this far behind on events is disconnected. The policy is that a silent
# client costs the process at most 64 MiB; the queue's limit leaves room for the
# chunk being sent and the allocator's slack (measured: 65 MiB of RSS at 64 MiB).
EVENT_LIMIT = 56 << 20


def _nothing() -> None:
    pass


def take_from(outbox: bytearray, limit: int | None) -> bytes:
    """The first `limit` bytes of `outbox` (all of it without a limit), removed from it;
    what stays is still counted against the outbox limits while a send is blocked."""
    if limit is None or len(outbox) <= limit:
        data = bytes(outbox)
        outbox.clear()
        return data
    data = bytes(outbox[:limit])
    del outbox[:limit]  # cheap: bytearray deletes from its front in place
    return data


class MonitorHub:
    """The monitors of one machine; counts connected clients (monitor.c mon_refcount)."""

    def __init__(self, machine: Machine, dispatcher: Dispatcher, core: CoreCommands,
                 hmp_state: HmpState | None = None) -> None:

        self.machine = machine
        self.dispatcher = dispatcher
        self.core = core
        self.hmp_state = HmpState() if hmp_state is None else hmp_state
        self.monitors: list[QmpMonitor | HmpMonitor] = []

    def new_hmp(self) -> Hmp:
        """An HMP interpreter with its own session (the monitor it prints to)."""
        from vmm.hmp.interpreter import Hmp

        return Hmp(self.dispatcher, MonitorSession(connected_monitors=self.connected),
                   state=self.hmp_state)

    def connected(self) -> int:
        return sum(1 for m in self.monitors if m.is_connected)

    def qmp(self, *, pretty: bool = False, name: str = "") -> QmpMonitor:
        mon = QmpMonitor(self, pretty=pretty, name=name)
        self.monitors.append(mon)
        return mon

    def hmp(self, *, name: str = "") -> HmpMonitor:
        mon = HmpMonitor(self, name=name)
        self.monitors.append(mon)
        return mon


class QmpMonitor:
    """One `-qmp`/`-mon mode=control` monitor."""

    def __init__(self, hub: MonitorHub, *, pretty: bool, name: str) -> None:
        self.hub = hub
        self.machine = hub.machine
        self.dispatcher = hub.dispatcher
        self.pretty = pretty
        self.name = name
        self.decoder = MessageDecoder()
        self.outbox = bytearray()
        self.is_connected = False
        self.dropped = False  # set when the event limit forced a disconnect
        self.on_output: Callable[[], None] = _nothing  # the server's "write me out"
        self.session = MonitorSession(run_hmp=self._run_hmp,
                                      connected_monitors=hub.connected)
        self._hmp: Hmp | None = None

    # -- connection lifecycle (monitor.c monitor_qmp_event) ------------------------------

    def connect(self) -> None:
        self.is_connected = True
        self.dropped = False
        self.session.negotiated = False
        self.outbox.clear()
        version = check_return(self.machine.schema.commands["query-version"],
                               self.dispatcher.call(self.session, "query-version"))
        self._write({"QMP": {"version": version, "capabilities": []}})
        self.machine.events.subscribe(self.on_event)

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        self.is_connected = False
        self.machine.events.unsubscribe(self.on_event)
        self.decoder.reset()
        self.session.fds.drop_received()
        self.outbox.clear()
        self.machine.fdsets.cleanup_all(running=self.machine.runstate.running,
                                        monitors_connected=self.hub.connected())

    # -- traffic ------------------------------------------------------------------------

    def feed(self, data: bytes, fds: list[int] | None = None) -> None:
        """Process client bytes (and descriptors that came with them)."""
        if fds:
            self.session.fds.received.extend(fds)
        for message in self.decoder.feed(data):
            self.handle(message)
            if not self.is_connected or self.machine.exit_code is not None:
                break

    def handle(self, message: Any) -> None:
        if isinstance(message, ParseFailure):
            request: Any = ParseError(message.desc)
        else:
            request = message
            self._trace_request(message)
        reply = self.dispatcher.execute(self.session, request)
        self.session.fds.drop_received()
        if reply is not None:
            self._write(reply)
        self.machine.process_requests()

    def _trace_request(self, request: Any) -> None:
        """trace_handle_qmp_command: the parsed request as JSON without its `id`, built
        only when the event is enabled [monitor.c handle_qmp_command]."""
        trace = self.hub.core.trace
        if "handle_qmp_command" not in trace.enabled:
            return
        if isinstance(request, dict):
            request = {k: v for k, v in request.items() if k != "id"}
        trace.log("handle_qmp_command", f"mon {id(self):#x} req: {to_json(request)}")

    def on_event(self, event: Event) -> None:
        if not self.is_connected or not self.session.negotiated or self.dropped:
            return
        self._write(event.message())
        if len(self.outbox) > EVENT_LIMIT:
            # The slow-client policy: nothing more is queued for it, and the server
            # (woken by on_output) disconnects it even while a send to it is blocked.
            self.dropped = True
            self.outbox.clear()
            self.on_output()

    def _write(self, value: Any) -> None:
        self.outbox += encode(value, pretty=self.pretty)
        self.on_output()

    def take_output(self, limit: int | None = None) -> bytes:
        return take_from(self.outbox, limit)

    def _run_hmp(self, command_line: str) -> str:
        if self._hmp is None:
            self._hmp = self.hub.new_hmp()
        assert self._hmp is not None
        return self._hmp.run(command_line).replace("\n", "\r\n")


class HmpMonitor:
    """One `-monitor`/`-mon mode=readline` monitor (monitor.c + util/readline.c)."""

    PROMPT = "(qemu) "

    def __init__(self, hub: MonitorHub, *, name: str) -> None:
        self.hub = hub
        self.machine = hub.machine
        self.name = name
        self.outbox = bytearray()
        self.is_connected = False
        self.dropped = False
        self.on_output: Callable[[], None] = _nothing
        self.hmp: Hmp = hub.new_hmp()
        self.readline = Readline(self._print, self._command)
        self.hmp.readline = self.readline  # its history (info history), password prompts
        self.hmp.suspend = self.suspend
        self.hmp.write = self._print
        # monitor_suspend: while > 0, what the client types waits (held) and no prompt
        self.suspended = 0
        self.held = bytearray()

    def connect(self) -> None:
        """monitor_event CHR_EVENT_OPENED: banner, then the prompt (readline_restart:
        the history stays)."""
        self.is_connected = True
        self.outbox.clear()
        version = self.machine.catalog.version()["qemu"]
        qemu_version = f"{version['major']}.{version['minor']}.{version['micro']}"
        self._print(f"QEMU {qemu_version} monitor - type 'help' for more information\n")
        self.readline.start(self.PROMPT, False, self._command)
        self.readline.show_prompt()

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        self.is_connected = False
        self.outbox.clear()
        self.hmp.session.fds.drop_received()
        self.machine.fdsets.cleanup_all(running=self.machine.runstate.running,
                                        monitors_connected=self.hub.connected())

    def feed(self, data: bytes, fds: list[int] | None = None) -> None:
        """Bytes typed into the monitor. Descriptors that came with them replace those
        of an earlier read (chardev/char-socket.c tcp_chr_recv) until a command
        (getfd) takes them."""
        if fds:
            self.hmp.session.fds.drop_received()
            self.hmp.session.fds.received.extend(fds)
        self.held += data
        self._drain()

    def _drain(self) -> None:
        """Hand the held bytes to the line editor, one by one, until a command
        suspends the monitor (monitor_can_read is false while suspended)."""
        while self.held and not self.suspended:
            data = bytes(self.held)
            self.held.clear()
            for i, byte in enumerate(data):
                if self.machine.exit_code is not None:
                    return
                if self.suspended:
                    self.held[:0] = data[i:]  # ahead of what arrived meanwhile
                    return
                self.readline.handle_byte(byte)

    def suspend(self) -> Callable[[], None]:
        """monitor_suspend; the returned function is its monitor_resume, which shows
        the prompt again and reads on once nothing holds the monitor."""
        self.suspended += 1
        resumed = False

        def resume() -> None:
            nonlocal resumed
            if resumed:
                return
            resumed = True
            self.suspended -= 1
            if not self.suspended and self.is_connected and self.machine.exit_code is None:
                self.readline.show_prompt()
                self._drain()

        return resume

    def _command(self, line: str) -> None:
        """monitor_command_cb: run the line, then show the prompt (unless quitting, or
        the command suspended the monitor: its resume shows it)."""
        self._print(self.hmp.run(line))
        self.machine.process_requests()
        if self.machine.exit_code is None and not self.suspended:
            self.readline.show_prompt()  # "(qemu) ", or a password prompt the command started

    def _print(self, text: str) -> None:
        self.outbox += text.replace("\n", "\r\n").encode("utf-8", "surrogateescape")
        self.on_output()

    def take_output(self, limit: int | None = None) -> bytes:
        return take_from(self.outbox, limit)
