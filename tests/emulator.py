"""The test suite's one point of contact with the emulator's composition APIs.

Tests that need a whole emulator (the golden transcripts, the server tests, the
machine-level state machine) build it here and nowhere else, so that when the
composition root changes (`vmm.vm`, `vmm.startup`, where the chardev transports
live) only this module follows. Three ways in:

- `build_from_argv(argv, clock)`: QEMU's command line applied as the program
  applies it (`vmm.program`), returning the Vm and its monitors' chardevs;
- `build_vm(schema, catalog, clock, **options)`: a Vm from MachineOptions values;
- `serve(nursery, built)`: the trio server on those chardevs, started in a nursery.

Nothing here sleeps or reads the real clock: the caller passes the clock (trio's
MockClock through `trio.current_time`, or a number the test moves).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from devices.chardev.model import ChardevSpec
from schema import Schema, load_schema
from schema.catalog import Catalog
from vmm import startup
from vmm.cmdline import parse_command_line
from vmm.config import EMU_OPTIONS, MonitorSpec, QtestSpec, build_config
from vmm.machine.core import Clock, MachineOptions
from vmm.qmp.dispatch import Dispatcher, MonitorSession
from vmm.server import BoundAddress, Server
from vmm.vm import Vm

__all__ = [
    "WALL_ORIGIN",
    "BoundAddress",
    "Built",
    "ChardevSpec",
    "Clock",
    "Dispatcher",
    "MachineOptions",
    "MonitorSession",
    "MonitorSpec",
    "Server",
    "SyncVm",
    "Vm",
    "build_from_argv",
    "build_vm",
    "mock_clock",
    "program_command",
    "qmp_session",
    "serve",
    "settle",
    "unix_monitor",
]

# The wall-clock time of virtual time 0: events carry timestamps derived from it.
WALL_ORIGIN = 1_500_000_000.0

_SCHEMAS: dict[str, Schema] = {}
_CATALOG: list[Catalog] = []


def _schema(persona: str | None) -> Schema:
    key = persona or ""
    if key not in _SCHEMAS:
        _SCHEMAS[key] = load_schema(persona, cache_dir=False) if persona else \
            load_schema(cache_dir=False)
    return _SCHEMAS[key]


def _catalog() -> Catalog:
    if not _CATALOG:
        _CATALOG.append(Catalog.load())
    return _CATALOG[0]


def mock_clock(monotonic: Callable[[], float] | None = None) -> Clock:
    """A Clock on trio's current clock (a MockClock in tests), anchored at WALL_ORIGIN."""
    return Clock.anchored(monotonic or trio.current_time, WALL_ORIGIN)


@attrs.define(kw_only=True)
class Built:
    """A Vm as the program builds it from a command line, not yet started."""

    vm: Vm
    monitors: list[MonitorSpec]
    qtest: QtestSpec | None = None

    def start(self) -> None:
        """vl.c's last step before the main loop (the start-up RESUME without -S)."""
        self.vm.machine.start()


def build_from_argv(argv: Sequence[str], clock: Clock) -> Built:
    """QEMU's command line (plus `--emu-*` options) applied as `vmm.program` does.

    Raises the CommandLineError/ConfigError the program would print and exit 1 on.
    """
    catalog = _catalog()
    cl = parse_command_line(list(argv), extra_options=EMU_OPTIONS)
    config = build_config(cl, catalog)
    schema = _schema(config.persona)
    vm = startup.create_vm(config, schema=schema, catalog=catalog, clock=clock)
    startup.configure_devices(vm, cl)
    return Built(vm=vm, monitors=list(config.monitors), qtest=config.qtest)


def build_vm(schema: Schema, catalog: Catalog, clock: Clock, **options: Any) -> Vm:
    """A Vm from MachineOptions values (strict unless told otherwise), not started."""
    options.setdefault("strict", True)
    return Vm.build(options=MachineOptions(**options), schema=schema, catalog=catalog,
                    clock=clock)


def unix_monitor(path: Path | str, ident: str = "mon0", *, mode: str = "control",
                 wait: bool = False) -> MonitorSpec:
    """`-chardev socket,id=IDENT,path=PATH,server[,nowait] -mon IDENT,mode=MODE`."""
    return MonitorSpec(ChardevSpec(id=ident, backend="socket", path=str(path), wait=wait),
                       mode=mode)


def tcp_monitor(ident: str = "tcp0", host: str = "127.0.0.1") -> MonitorSpec:
    """A QMP monitor on a TCP port the kernel picks (port 0)."""
    return MonitorSpec(ChardevSpec(id=ident, backend="socket", host=host, port="0",
                                   wait=False))


async def serve(nursery: trio.Nursery, vm: Vm, monitors: Sequence[MonitorSpec],
                exited: Callable[[int], None] | None = None,
                qtest: QtestSpec | None = None) -> tuple[Server, list[BoundAddress]]:
    """Start the trio server in `nursery`; return it once every chardev listens
    (the monitors', then the `-qtest` one's).

    `exited` is called with the exit status when the machine has exited and the
    server has flushed every client.
    """
    server = Server(vm, list(monitors), qtest=qtest)

    async def run(*, task_status: trio.TaskStatus[list[BoundAddress]] =
                  trio.TASK_STATUS_IGNORED) -> None:
        code = await server.serve(task_status=task_status)
        if exited is not None:
            exited(code)

    addresses = await nursery.start(run)
    return server, addresses


async def settle() -> None:
    """Wait until the emulator has done everything it can do at this (virtual) time:
    every task blocked, and no worker thread running (trio binds unix paths in one)."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        if trio.testing.active_thread_count() == 0:
            return
        await trio.testing.wait_all_threads_completed()


def qmp_session(vm: Vm) -> tuple[Dispatcher, MonitorSession]:
    """The dispatcher and a negotiated QMP session of a real monitor of `vm`.

    The session carries the per-monitor handlers (getfd, add-fd, …) as a socket
    client's would; requests go through `Dispatcher.execute`, schema visitor and
    output checker included.
    """
    monitor = vm.qmp_monitor(name="stateful")
    monitor.session.negotiated = True
    return vm.dispatcher, monitor.session


class SyncVm:
    """A whole emulator without sockets or trio, driven one request at a time.

    Built from QEMU's command line like the program, on a clock that is a number the
    caller moves (`tick`). Requests go through `Dispatcher.execute` on a negotiated
    monitor session (schema visitor and output checker included), then the main
    loop's pending requests run, as a monitor runs them after each command. Every
    event the machine sends is kept in `events`, in order.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.now = 0.0
        clock = Clock(monotonic=lambda: self.now, wall_origin=WALL_ORIGIN, mono_origin=0.0)
        built = build_from_argv(argv, clock)
        self.vm = built.vm
        self.machine = built.vm.machine
        self.schema = self.machine.schema
        self.dispatcher, self.session = qmp_session(self.vm)
        self.events: list[Any] = []
        self.machine.events.subscribe(self.events.append)
        built.start()

    def execute(self, request: dict[str, Any]) -> dict[str, Any] | None:
        reply = self.dispatcher.execute(self.session, request)
        self.machine.process_requests()
        return reply

    def tick(self, seconds: float) -> None:
        """Move the clock on, running every deadline at its own time on the way."""
        target = self.now + seconds
        while (deadline := self.machine.next_deadline()) <= target:
            self.now = max(self.now, deadline)
            self.machine.run_timers(self.now)
        self.now = target
        self.machine.run_timers(self.now)

    @property
    def block(self) -> Any:
        """The block layer (its graph: `nodes`, `backends`)."""
        return self.vm.block

    @property
    def exited(self) -> bool:
        return self.machine.exit_code is not None

    def mismatches(self) -> list[str]:
        """Replies and events the schema rejected (empty on a strict machine)."""
        return [*self.dispatcher.mismatches, *self.machine.events.mismatches]

    def close(self) -> None:
        self.vm.block.close_all()
        self.machine.fdsets.close_all()


def program_command() -> list[str]:
    """How to start the stand-alone program (`python -m vmm`, this interpreter)."""
    return [sys.executable, "-m", "vmm"]


def program_env(cache_dir: Path) -> dict[str, str]:
    return dict(os.environ, QMP_EMULATOR_CACHE_DIR=str(cache_dir))
