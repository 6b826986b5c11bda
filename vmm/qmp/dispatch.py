"""The QMP dispatcher: one request object in, one reply object (or none) out.

`vmm` layer, synchronous. It applies QEMU 2.11's request checks in QEMU's order
(`../shared/reference/qmp-protocol.md` §3–§5: parse failures, the `id`, the request
object's members in QDict order, the command table of the monitor's mode), lets the
schema visitor check the arguments, calls the handler registered under the command's
schema name, and turns its result or its QMPError into the reply. Return values go
through the schema's output checker, which also puts their members in schema order
for the serializer.

The command table is one mapping from schema name to handler, built from the
`@qmp_command` marks of the objects composed into the machine (the machine's own
commands, each subsystem's, and the protocol's: `query-commands`, `query-events`,
`query-qmp-schema`) and of the per-monitor class (`qmp_capabilities`, the fds,
`human-monitor-command`), whose instance each session gets. An owner composed as a
`schema.handlers.LazyOwner` is loaded with the first of its commands that runs (a
plain start-up does not import it); a command no table entry names builds them all
before it answers 'not implemented'. Members reach a handler
as snake_case keywords; a `boxed` command, and a `gen: false` one (which marshals its
own arguments), gets the argument object as one value. HMP calls the same handlers by
schema name (`Dispatcher.call`). Commands of the schema without a handler answer a
GenericError naming them as not implemented; `Dispatcher.unimplemented()` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from schema.errors import CommandNotFound, GenericError, QMPError
from schema.handlers import (
    LazyOwner,
    collect_handlers,
    handler_functions,
    member_to_param,
    qmp_command,
)
from schema.jsontypes import JSONValue
from schema.model import Command
from schema.output import OutputMismatch, check_return
from schema.qobject import qdict_order
from schema.visitor import InputVisitor
from vmm.machine.fds import MonitorFds

if TYPE_CHECKING:
    from vmm.machine.core import Machine

# gen: false commands, registered by hand after the generated ones (monitor.c
# monitor_init_qmp_commands), in this order.
HAND_WRITTEN = ("query-qmp-schema", "device_add", "netdev_add")


def not_implemented(name: str) -> str:
    return f"The command {name} is not implemented yet by qmp-emulator"


class ParseError:
    """Stands for a message the wire decoder could not parse (`desc` is the reply)."""

    def __init__(self, desc: str) -> None:
        self.desc = desc


class MonitorSession:
    """The per-monitor state the dispatcher needs: negotiation, fds, HMP passthrough,
    and the per-monitor command handlers' owner (bound on first use)."""

    def __init__(self, *, run_hmp: Callable[[str], str] | None = None,
                 connected_monitors: Callable[[], int] = lambda: 1) -> None:
        self.negotiated = False
        self.fds = MonitorFds()
        self._run_hmp = run_hmp
        self.connected_monitors = connected_monitors
        self.commands: object | None = None

    def run_hmp(self, command_line: str) -> str:
        if self._run_hmp is None:
            raise GenericError("no human monitor is available")
        return self._run_hmp(command_line)


@attrs.frozen
class Handler:
    """One entry of the command table."""

    fn: Callable[..., Any]  # bound, or (per_monitor) to be called with the session's owner
    per_monitor: bool = False


class ProtocolCommands:
    """The commands about the protocol itself (monitor.c, qmp-introspect.c)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    @qmp_command("query-commands")
    def query_commands(self) -> list[dict[str, str]]:
        """monitor.c qmp_query_commands: reverse registration order."""
        return [{"name": n} for n in reversed(self.dispatcher.registration_order)]

    @qmp_command("query-events")
    def query_events(self) -> list[dict[str, str]]:
        """monitor.c qmp_query_events: every event of the schema, reverse sorted."""
        return [{"name": n} for n in sorted(self.dispatcher.schema.events,
                                            key=lambda n: n.encode(), reverse=True)]

    @qmp_command("query-qmp-schema")
    def query_qmp_schema(self, arguments: dict[str, Any]) -> Any:
        """monitor.c qmp_query_qmp_schema (hand-written: its arguments are ignored)."""
        return self.dispatcher.schema.introspection()


class Dispatcher:
    """The command table of one machine and the logic that runs a request against it."""

    def __init__(self, machine: Machine, *owners: object,
                 per_monitor: type[Any] | None = None) -> None:
        """`owners` hold the machine-wide handlers; `per_monitor` is the class of the
        object whose handlers act on one monitor, built as `per_monitor(machine,
        session)` for each session on first use."""
        self.machine = machine
        self.schema = machine.schema
        self.strict = machine.options.strict
        self.visitor = InputVisitor(new_glib=machine.options.new_glib)
        self.per_monitor = per_monitor
        self.table: dict[str, Handler] = {
            name: Handler(fn) for name, fn in
            collect_handlers(ProtocolCommands(self), *owners).items()}
        self._lazy = [owner for owner in owners if isinstance(owner, LazyOwner)]
        self._lazy_loaded = not self._lazy
        if per_monitor is not None:
            for name, fn in handler_functions(per_monitor).items():
                if name in self.table:
                    raise ValueError(f"two handlers for QMP command {name!r}")
                self.table[name] = Handler(fn, per_monitor=True)
        recorded = set(machine.catalog.command_names())
        generated = sorted((c.name for c in self.schema.commands.values()
                            if c.gen and (c.name in recorded or not recorded)),
                           key=lambda n: n.encode())
        hand = [n for n in HAND_WRITTEN if n in self.schema.commands]
        self.registration_order = [*generated, *hand]
        self.registered = set(self.registration_order)
        self.mismatches: list[str] = []
        # monitor.c cur_mon: the session whose command runs (monitor_fd_param,
        # migrate fd:NAME, dump-guest-memory fd:NAME take that monitor's descriptors).
        self.current: MonitorSession | None = None

    def unimplemented(self) -> list[str]:
        """Registered commands without a handler (they answer 'not implemented')."""
        self._load_lazy()
        return sorted(n for n in self.registration_order if n not in self.table)

    def _handler(self, name: str) -> Handler | None:
        handler = self.table.get(name)
        if handler is None and not self._lazy_loaded:
            self._load_lazy()
            handler = self.table.get(name)
        return handler

    def _load_lazy(self) -> None:
        """Build the lazily registered owners and add what their classes mark beyond
        the names they were registered with: a name list that lags its class costs
        the start-up time it saved, never a command."""
        if self._lazy_loaded:
            return
        self._lazy_loaded = True
        for owner in self._lazy:
            for name, fn in owner.handlers().items():
                if name not in owner.names:
                    self.table.setdefault(name, Handler(fn))

    def call(self, session: MonitorSession, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run the handler of `name` directly, as hmp.c calls qmp_* functions: no
        visitor, no output checker; a QMPError propagates."""
        handler = self._handler(name)
        if handler is None:
            raise GenericError(not_implemented(name))
        outer, self.current = self.current, session  # monitor.c cur_mon
        try:
            if handler.per_monitor:
                return handler.fn(self._owner(session), *args, **kwargs)
            return handler.fn(*args, **kwargs)
        finally:
            self.current = outer

    def take_monitor_fd(self, name: str) -> int | None:
        """monitor_get_fd(cur_mon, name): the running command's monitor gives up its
        descriptor of that name (None: it has none)."""
        if self.current is None:
            return None
        return self.current.fds.named.pop(name, None)

    def monitor_get_fd(self, fdname: str) -> int:
        """monitor.c monitor_get_fd(cur_mon, ...) with its error: the consumer (such as
        `add_client` or `dump-guest-memory fd:NAME`) owns the descriptor from now on."""
        fd = self.take_monitor_fd(fdname)
        if fd is None:
            raise GenericError(f"File descriptor named '{fdname}' has not been found")
        return fd

    def monitor_fd_param(self, fdname: str) -> int:
        """monitor.c monitor_fd_param: a name is taken out of the running command's
        monitor (monitor_get_fd); a number is parsed (qemu_parse_fd)."""
        if fdname[:1].isdigit() or self.current is None:
            if fdname.isdigit() and fdname.isascii() and int(fdname) <= 0x7FFFFFFF:
                return int(fdname)
            raise GenericError(f"Invalid file descriptor number '{fdname}'")
        return self.monitor_get_fd(fdname)

    def _owner(self, session: MonitorSession) -> object:
        if session.commands is None:
            assert self.per_monitor is not None
            session.commands = self.per_monitor(self.machine, session)
        return session.commands

    # -- one request ------------------------------------------------------------------

    def execute(self, session: MonitorSession, request: JSONValue | ParseError) -> dict[str, Any] | None:
        """Run one parsed message; return the reply object (None: no reply at all)."""
        if isinstance(request, ParseError):
            return {"error": {"class": "GenericError", "desc": request.desc}}
        req_id: JSONValue = None
        has_id = False
        if isinstance(request, dict) and "id" in request:
            has_id = True
            request = dict(request)
            req_id = request.pop("id")
        try:
            result = self._execute(session, request)
        except QMPError as err:
            reply: dict[str, Any] = {"error": {"class": err.error_class, "desc": err.desc}}
        else:
            if result is _NO_REPLY:
                return None
            reply = {"return": result}
        if has_id:
            reply["id"] = req_id
        return reply

    def _execute(self, session: MonitorSession, request: JSONValue) -> Any:
        name, arguments = self._check_request(request)
        command = self._lookup(session, name)
        try:
            return self._run(session, command, arguments)
        except CommandNotFound as err:
            if not session.negotiated:
                raise CommandNotFound(
                    "Expecting capabilities negotiation with 'qmp_capabilities'") from err
            raise

    def _check_request(self, request: JSONValue) -> tuple[str, dict[str, JSONValue]]:
        """qapi/qmp-dispatch.c qmp_dispatch_check_obj."""
        if not isinstance(request, dict):
            raise GenericError("QMP input must be a JSON object")
        name: str | None = None
        arguments: dict[str, JSONValue] = {}
        for key in qdict_order(request):
            value = request[key]
            if key == "execute":
                if not isinstance(value, str):
                    raise GenericError("QMP input member 'execute' must be a string")
                name = value
            elif key == "arguments":
                if not isinstance(value, dict):
                    raise GenericError("QMP input member 'arguments' must be an object")
                arguments = value
            else:
                raise GenericError(f"QMP input member '{key}' is unexpected")
        if name is None:
            raise GenericError("QMP input lacks member 'execute'")
        return name, arguments

    def _lookup(self, session: MonitorSession, name: str) -> Command:
        if not session.negotiated:
            if name != "qmp_capabilities":
                raise CommandNotFound(
                    "Expecting capabilities negotiation with 'qmp_capabilities'")
        command = self.schema.commands.get(name)
        if command is None or name not in self.registered:
            raise CommandNotFound(f"The command {name} has not been found")
        return command

    def _run(self, session: MonitorSession, command: Command,
             arguments: dict[str, JSONValue]) -> Any:
        name = command.name
        if not command.gen:
            # A hand-written marshaller: the arguments as they came, the return value
            # as the handler built it (monitor.c qmp_query_qmp_schema, device_add, ...).
            return self._call(session, name, (arguments,), {})
        args = self.visitor.visit_command(command, arguments)
        if command.boxed:
            value = self._call(session, name, (args,), {})
        else:
            value = self._call(session, name, (),
                               {member_to_param(k): v for k, v in args.items()})
        if not command.success_response:
            return _NO_REPLY
        return self._check_return(command, value)

    def _call(self, session: MonitorSession, name: str, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        """`call`, with a bug of ours turned into a GenericError (and logged)."""
        try:
            return self.call(session, name, *args, **kwargs)
        except QMPError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            self.machine.log.exception("internal error in %s", name)
            raise GenericError(f"qmp-emulator internal error in {name}: {exc}") from exc

    def _check_return(self, command: Command, value: Any) -> Any:
        try:
            return check_return(command, value)
        except OutputMismatch as err:
            if self.strict:
                raise
            message = f"reply of {command.name}: {err}"
            self.mismatches.append(message)
            self.machine.log.warning("schema mismatch in %s", message)
            return value if value is not None else {}


_NO_REPLY = object()
