"""The QMP dispatcher: one request object in, one reply object (or none) out.

`vmm` layer, synchronous. It applies QEMU 2.11's request checks in QEMU's order
(`../shared/reference/qmp-protocol.md` §3–§5: parse failures, the `id`, the request
object's members in QDict order, the command table of the monitor's mode), lets the
schema visitor check the arguments, calls the handler registered under the command's
schema name, and turns its result or its QMPError into the reply. Return values go
through the schema's output checker, which also puts their members in schema order
for the serializer.

Commands of the schema that no subsystem handles yet answer a GenericError naming
them as not implemented; `Dispatcher.unimplemented()` lists them.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schema.errors import CommandNotFound, GenericError, QMPError
from schema.handlers import collect_handlers, command_names, member_to_param
from schema.jsontypes import JSONValue
from schema.model import Command
from schema.output import OutputMismatch, check_return
from schema.qdict import qdict_order
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
    """The per-monitor state the dispatcher needs: negotiation, fds, HMP passthrough."""

    def __init__(self, *, run_hmp: Callable[[str], str] | None = None,
                 connected_monitors: Callable[[], int] = lambda: 1) -> None:
        self.negotiated = False
        self.fds = MonitorFds()
        self._run_hmp = run_hmp
        self.connected_monitors = connected_monitors
        self.handlers: dict[str, Callable[..., Any]] = {}

    def run_hmp(self, command_line: str) -> str:
        if self._run_hmp is None:
            raise GenericError("no human monitor is available")
        return self._run_hmp(command_line)


class Dispatcher:
    """The command table of one machine and the logic that runs a request against it."""

    def __init__(self, machine: Machine, *owners: object) -> None:
        self.machine = machine
        self.schema = machine.schema
        self.strict = machine.options.strict
        self.visitor = InputVisitor(new_glib=machine.options.new_glib)
        self.handlers = collect_handlers(*owners)
        recorded = set(machine.catalog.command_names())
        generated = sorted((c.name for c in self.schema.commands.values()
                            if c.gen and (c.name in recorded or not recorded)),
                           key=lambda n: n.encode())
        hand = [n for n in HAND_WRITTEN if n in self.schema.commands]
        self.registration_order = [*generated, *hand]
        self.registered = set(self.registration_order)
        self.mismatches: list[str] = []

    # -- introspective commands ------------------------------------------------------

    def query_commands(self) -> list[dict[str, str]]:
        """monitor.c qmp_query_commands: reverse registration order."""
        return [{"name": n} for n in reversed(self.registration_order)]

    def query_events(self) -> list[dict[str, str]]:
        """monitor.c qmp_query_events: every event of the schema, reverse sorted."""
        return [{"name": n} for n in sorted(self.schema.events, key=lambda n: n.encode(),
                                            reverse=True)]

    def unimplemented(self) -> list[str]:
        """Registered commands without a handler (they answer 'not implemented')."""
        from vmm.machine.commands import MonitorCommands

        builtin = {"qmp_capabilities", "query-commands", "query-events", "query-qmp-schema"}
        per_monitor = set(command_names(MonitorCommands))
        return sorted(n for n in self.registration_order
                      if n not in self.handlers and n not in builtin and n not in per_monitor)

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
        if name == "query-qmp-schema":
            return self.schema.introspection()  # arguments ignored (hand-written handler)
        if command.gen:
            args = self.visitor.visit_command(command, arguments)
        else:
            args = arguments  # device_add, netdev_add: QemuOpts-style, in the handler
        if name == "qmp_capabilities":
            if session.negotiated:
                raise CommandNotFound(
                    "Capabilities negotiation is already complete, command ignored")
            session.negotiated = True
            return {}
        if name == "query-commands":
            value: Any = self.query_commands()
        elif name == "query-events":
            value = self.query_events()
        else:
            handler = session.handlers.get(name) or self.handlers.get(name)
            if handler is None:
                raise GenericError(not_implemented(name))
            if command.gen:
                kwargs = {member_to_param(k): v for k, v in args.items()}
                value = self._call(handler, name, kwargs)
            else:
                value = self._call(handler, name, {"arguments": args})
        if not command.success_response:
            return _NO_REPLY
        return self._check_return(command, value)

    def _call(self, handler: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> Any:
        try:
            return handler(**kwargs)
        except QMPError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            traceback.print_exc(file=sys.stderr)
            raise GenericError(f"qmp-emulator internal error in {name}: {exc}") from exc

    def _check_return(self, command: Command, value: Any) -> Any:
        try:
            return check_return(command, value)
        except OutputMismatch as err:
            if self.strict:
                raise
            message = f"reply of {command.name}: {err}"
            self.mismatches.append(message)
            print(f"qmp-emulator: schema mismatch in {message}", file=sys.stderr)
            return value if value is not None else {}


_NO_REPLY = object()
