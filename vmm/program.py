"""The `qmp-emulator` program: QEMU's command line in, a QMP-speaking fake QEMU out.

The program of the `vmm` layer, entered through `vmm.launch` (`qmp-emulator ...` or
`python -m vmm ...`, which first put the signal handlers in place). It parses
the command line as qemu-system-x86_64 2.11 does, daemonizes and writes the pid file
as QEMU does, loads the schema persona and the catalogue, then builds the machine in
vl.c's order (`vmm.startup`, with the server binding the chardevs in between) and
runs the trio server until the machine exits. Messages go to stderr prefixed with the
program name, and a refused command line exits with status 1, as QEMU's do. The
emulator's own diagnostics (the per-VM loggers under `vmm`) go to stderr too.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

import trio

from schema.catalog import Catalog
from schema.loader import load_schema
from schema.model import Schema
from vmm import startup
from vmm.cmdline import CommandLine, CommandLineError, action_output, parse_command_line
from vmm.config import EMU_OPTIONS, Config, ConfigError, build_config
from vmm.daemon import Daemon, PidfileError, create_pidfile, daemonize
from vmm.launch import TERMINATING_SIGNALS, EarlySignals
from vmm.listings import help_listing
from vmm.machine.clock import Clock
from vmm.server import BoundAddress, Server, ServerError, progname
from vmm.vm import Vm


def main(argv: Sequence[str] | None = None, *,
         early_signals: EarlySignals | None = None,
         gc_thresholds: tuple[int, int, int] | None = None) -> int:
    """Run the program; `gc_thresholds` are the collector's thresholds to restore once
    it has loaded (`vmm.launch` raises them meanwhile)."""
    prog = progname()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cl = parse_command_line(args, extra_options=EMU_OPTIONS)
    except CommandLineError as err:
        sys.stderr.write(err.render(prog))
        return err.exit_status
    for warning in cl.warnings:
        sys.stderr.write(warning.render(prog))
    output = action_output(cl, prog, EMU_OPTIONS)
    if output is not None:
        text, status = output
        sys.stdout.write(text)
        return status
    catalog = Catalog.load()
    try:
        listing = help_listing(cl, catalog, prog)
        if listing is not None:
            sys.stdout.write(listing.stdout)
            sys.stderr.write(listing.stderr)
            return listing.exit_status
        config = build_config(cl, catalog)
    except CommandLineError as cl_err:
        sys.stderr.write(cl_err.render(prog))
        return cl_err.exit_status
    except ConfigError as cfg_err:
        print(f"{prog}: {cfg_err}", file=sys.stderr)
        return 1
    daemon: Daemon | None = daemonize() if config.daemonize else None
    if config.pidfile is not None:
        try:
            create_pidfile(config.pidfile)
        except PidfileError as pid_err:
            print(f"{prog}: {pid_err}", file=sys.stderr)
            if daemon is not None:
                daemon.failed()
            return 1
    schema = load_schema(config.persona)
    _diagnostics_to_stderr(prog)
    if gc_thresholds is not None:
        gc.set_threshold(*gc_thresholds)
    try:
        code = trio.run(_run, config, cl, schema, catalog, daemon, early_signals)
        if code < 0:
            _die_by(-code)  # a qtest assertion: QEMU aborts
        return code
    except* CommandLineError as refused:
        for failure in refused.exceptions:
            assert isinstance(failure, CommandLineError)
            sys.stderr.write(failure.render(prog))
        if daemon is not None:
            daemon.failed()
    except* ServerError as unserved:
        for problem in unserved.exceptions:
            print(f"{prog}: {problem}", file=sys.stderr)
        if daemon is not None:
            daemon.failed()
    return 1


async def _run(config: Config, cl: CommandLine, schema: Schema, catalog: Catalog,
               daemon: Daemon | None, early: EarlySignals | None) -> int:
    clock = Clock.anchored(trio.current_time, time.time())
    vm = startup.create_vm(config, schema=schema, catalog=catalog, clock=clock)
    server = Server(vm, list(config.monitors), on_bound=lambda: startup.finish(vm, cl),
                    qtest=config.qtest)
    async with trio.open_nursery() as nursery:

        async def serve(*, task_status: trio.TaskStatus[list[BoundAddress]] =
                        trio.TASK_STATUS_IGNORED) -> None:
            await server.serve(task_status=task_status)
            nursery.cancel_scope.cancel()  # the machine exited: stop listening for signals

        nursery.start_soon(_signals, vm, config.qtest is not None, early)
        await nursery.start(serve)
        if daemon is not None:
            daemon.initialised()
    vm.close()
    code = vm.machine.exit_code
    return 0 if code is None else code


def _diagnostics_to_stderr(prog: str) -> None:
    """The per-VM loggers (`vmm.vm.<name>`) print to stderr, prefixed like QEMU's
    messages."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    log = logging.getLogger("vmm")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


async def _signals(vm: Vm, qtest: bool, early: EarlySignals | None) -> None:
    """vl.c termsig_handler: SHUTDOWN {"guest": false} and exit, -no-shutdown or not;
    the message is not printed under a qtest driver (qemu_kill_report). A signal
    that came while the emulator was still starting (`vmm.launch`) is handled the
    same way, now that the machine can exit."""
    with trio.open_signal_receiver(*TERMINATING_SIGNALS) as signals:
        if early is not None and early.received:
            _terminate(vm, qtest, early.received[0])
        async for signum in signals:
            _terminate(vm, qtest, signum)


def _terminate(vm: Vm, qtest: bool, signum: int) -> None:
    if not qtest:
        print(f"{progname()}: terminating on signal {signum}", file=sys.stderr, flush=True)
    vm.machine.no_shutdown = False
    vm.machine.request_shutdown("host-signal")


def _die_by(signum: int) -> None:
    """End the process by `signum` with its default action, as abort() does."""
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
