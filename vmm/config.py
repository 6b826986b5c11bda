"""From QEMU's command line to a machine: options, monitors, and the emulator's own.

`vmm` layer, pure: reads the `CommandLine` value `vmm.cmdline` parsed and decides
what QEMU's vl.c would decide from it (machine options, the monitors and the
chardevs they sit on, read by `devices.chardev.model`), plus the emulator-only `--emu-*` settings. Errors are
QEMU's messages, raised as `ConfigError` and printed by `vmm.program`.

The guest's behaviours come from its profile (`--emu-guest=os|firmware`), then the
overrides in command-line order: `--emu-behaviour=NAME=VALUE` for any behaviour a
composed subsystem declares (`vmm.vm.BEHAVIOURS`), and the older
`--emu-guest-powerdown[-delay]`, which set `powerdown` and `powerdown-delay`.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from devices.chardev.model import ChardevSpec, chardev_spec
from schema.catalog import Catalog
from schema.handlers import PROFILES, BehaviourError
from schema.loader import DEFAULT_PERSONA, PERSONAS
from schema.opts.cutils import INT64_MAX
from schema.opts.qemuopts import OptsError, OptsStore, opts_visitor_int64
from schema.qobject import qdict_order
from vmm.cmdline import GROUPS, CommandLine, CommandLineError, Diagnostic, EmuOption, QemuOpts
from vmm.cmdline.chardev import CompatError, chr_parse_compat
from vmm.machine.core import MachineOptions
from vmm.vm import BEHAVIOURS

# Older emulator options, each an override of one behaviour.
BEHAVIOUR_OPTIONS = {"guest-powerdown": "powerdown",
                     "guest-powerdown-delay": "powerdown-delay"}

EMU_OPTIONS = (
    # Only the 2.11 personas can be served yet; the 1.x ones load as schemas only.
    EmuOption("persona", choices=tuple(sorted(p for p in PERSONAS if p.startswith("2.11"))),
              metavar="VERSION",
              help=f"the QEMU whose schema is served (default {DEFAULT_PERSONA})"),
    EmuOption("package", metavar="STRING",
              help="the package string of query-version (default ' (v2.11.0)')"),
    EmuOption("strict", takes_value=False,
              help="treat a reply or event the schema rejects as a fatal error"),
    EmuOption("glib", choices=("2.56", "2.74"), metavar="VERSION",
              help="GLib whose hash order names unexpected arguments (default 2.56)"),
    EmuOption("allow-exec-migration", takes_value=False,
              help="let migrate and -incoming run the shell commands of exec: URIs"),
    EmuOption("guest", choices=PROFILES, metavar="PROFILE",
              help="the simulated guest: a cooperative OS (default), or firmware only"),
    EmuOption("behaviour", metavar="NAME=VALUE",
              help="change one behaviour of the simulated guest (repeatable)"),
    EmuOption("guest-powerdown", choices=("shutdown", "ignore"), metavar="REACTION",
              help="what the simulated guest does on an ACPI power button press"),
    EmuOption("guest-powerdown-delay", metavar="SECONDS",
              help="how long the simulated guest takes to power off (default 0.5)"),
)


class ConfigError(Exception):
    """The message is what QEMU would print (without the program name)."""


@attrs.frozen
class MonitorSpec:
    """A monitor (-qmp, -monitor, -mon) and the chardev it is the frontend of."""

    chardev: ChardevSpec
    mode: str = "control"  # or "readline"
    pretty: bool = False


@attrs.frozen
class QtestSpec:
    """`-qtest CHARDEV` and `-qtest-log FILE`."""

    arg: str                        # the -qtest argument, for QEMU's messages
    chardev: ChardevSpec | None     # None: a backend without I/O here (null, vc, ...)
    log: str | None = None          # None: stderr; "none": no log


@attrs.frozen
class Config:
    options: MachineOptions
    monitors: tuple[MonitorSpec, ...]
    persona: str
    daemonize: bool
    pidfile: str | None
    qtest: QtestSpec | None = None


def resolve_machine_type(cl: CommandLine, catalog: Catalog) -> str:
    """vl.c select_machine/machine_parse: an alias or a name of the recorded list."""
    wanted = cl.machine_type
    machines = catalog.machines()
    if wanted is None:
        default = next((m for m in machines if m.get("is-default")), None)
        if default is None:
            raise CommandLineError(Diagnostic(
                "No machine specified, and there is no default",
                hint="Use -machine help to list supported machines\n"))
        return str(default["name"])
    for m in machines:
        if wanted in (m["name"], m.get("alias")):
            return str(m["name"])
    raise CommandLineError(Diagnostic("unsupported machine type", location=cl.machine.location,
                                      hint="Use -machine help to list supported machines\n"))


def check_cpu_model(cl: CommandLine, catalog: Catalog, accel: str) -> None:
    """target/i386/cpu.c via cpu_parse_cpu_model: the model must exist."""
    if cl.cpu_model is None:
        return
    name = cl.cpu_model.split(",", 1)[0]
    known = {d["name"] for d in catalog.cpu_definitions(accel)} | {"host", "base"}
    if name not in known:
        raise CommandLineError(Diagnostic(f"unable to find CPU model '{name}'"))


def _iothread(opts: QemuOpts) -> tuple[str, int, int, int]:
    """An iothread's poll properties, set as user_creatable_add_opts sets them: in QDict
    order, each read by the OptsVisitor as an int64 and checked by
    iothread_set_poll_param (IOTHREAD_POLL_MAX_NS_DEFAULT is 32768); an error is
    reported at the -object option [qom/object_interfaces.c, qapi/opts-visitor.c,
    iothread.c]."""
    values = {"poll-max-ns": 32768, "poll-grow": 0, "poll-shrink": 0}
    given = opts.as_dict()
    for key in qdict_order(list(given)):
        if key not in values:
            continue
        try:
            value = opts_visitor_int64(key, given[key])
        except OptsError as exc:
            raise CommandLineError(Diagnostic(exc.message, location=opts.location)) from None
        if value < 0:
            raise CommandLineError(Diagnostic(
                f"{key} value must be in range [0, {INT64_MAX}]", location=opts.location))
        values[key] = value
    assert opts.id is not None
    return (opts.id, values["poll-max-ns"], values["poll-grow"], values["poll-shrink"])


def qtest_config(cl: CommandLine) -> QtestSpec | None:
    """qtest.c qtest_init's chardev: qemu_chr_new("qtest", ARG), the legacy chardev
    syntax (or `chardev:ID`); when it cannot be created QEMU reports why, then
    `Failed to initialize device for qtest: "ARG"`, and exits 1."""
    arg = cl.qtest
    if arg is None:
        return None
    failed = Diagnostic(f'Failed to initialize device for qtest: "{arg}"')
    if arg.startswith("chardev:"):
        found = next((c for c in cl.chardevs if c.id == arg[8:]), None)
        if found is None:
            raise CommandLineError(failed)
        return QtestSpec(arg=arg, chardev=chardev_spec(found), log=cl.qtest_log)
    if any(c.id == "qtest" for c in cl.chardevs):
        raise CommandLineError(failed, 1, (Diagnostic("Duplicate ID 'qtest' for chardev"),))
    try:
        opts = chr_parse_compat(OptsStore(GROUPS), GROUPS["chardev"], "qtest", arg, ())
    except CompatError as exc:
        earlier = (Diagnostic(exc.reported.message),) if exc.reported else ()
        raise CommandLineError(failed, 1, earlier) from None
    spec = chardev_spec(opts.freeze())
    if spec is not None and spec.backend == "stdio" and cl.daemonize:
        raise CommandLineError(failed, 1, (Diagnostic("cannot use stdio with -daemonize"),))
    return QtestSpec(arg=arg, chardev=spec, log=cl.qtest_log)


def behaviour_overrides(cl: CommandLine) -> tuple[tuple[str, Any], ...]:
    """The behaviours the command line changes, converted, in command-line order."""
    declared = {b.name: b for b in BEHAVIOURS}
    overrides: list[tuple[str, Any]] = []
    for option, text in cl.emu_options:
        if option == "behaviour":
            name, eq, value = text.partition("=")
            if not eq:
                raise ConfigError("--emu-behaviour: expects NAME=VALUE")
            prefix = f"--emu-behaviour: {name}"
        elif option in BEHAVIOUR_OPTIONS:
            name, value, prefix = BEHAVIOUR_OPTIONS[option], text, f"--emu-{option}"
        else:
            continue
        decl = declared.get(name)
        if decl is None:
            raise ConfigError(f"--emu-behaviour: unknown behaviour '{name}' (known: "
                              f"{', '.join(sorted(declared))})")
        try:
            overrides.append((name, decl.convert(value)))
        except BehaviourError as err:
            raise ConfigError(f"{prefix}: {err}") from None
    return tuple(overrides)


def build_config(cl: CommandLine, catalog: Catalog) -> Config:
    machine_type = resolve_machine_type(cl, catalog)
    accel = cl.accelerators[0] if cl.accelerators else "tcg"
    check_cpu_model(cl, catalog, accel)
    chardevs = {c.id: c for c in cl.chardevs}
    monitors: list[MonitorSpec] = []
    for mon in cl.monitors:
        opts = chardevs.get(mon.chardev)
        if opts is None:
            raise ConfigError(f"chardev \"{mon.chardev}\" not found")
        spec = chardev_spec(opts)
        if spec is None:
            continue
        if spec.backend == "stdio" and cl.daemonize:
            raise ConfigError("cannot use stdio with -daemonize")
        monitors.append(MonitorSpec(spec, mode=mon.mode, pretty=mon.pretty))
    emu = cl.emu
    options = MachineOptions(
        name=cl.name,
        uuid=cl.uuid or "00000000-0000-0000-0000-000000000000",
        machine_type=machine_type,
        accel=accel,
        cpu_model=cl.cpu_model,
        ram_bytes=cl.memory.ram_size,
        smp_cpus=cl.smp.cpus,
        max_cpus=cl.smp.max_cpus,
        smp_sockets=cl.smp.sockets,
        smp_cores=cl.smp.cores,
        smp_threads=cl.smp.threads,
        max_ram_bytes=cl.memory.max_ram_size,
        ram_slots=cl.memory.slots,
        start_paused=not cl.autostart,
        incoming=cl.incoming,
        no_shutdown=cl.no_shutdown,
        no_reboot=cl.no_reboot,
        singlestep=cl.singlestep,
        watchdog_action=cl.watchdog_action,
        package=emu.get("package", " (v2.11.0)"),
        strict="strict" in emu and emu["strict"] != "off",
        new_glib=emu.get("glib") == "2.74",
        guest_profile=emu.get("guest", "os"),
        allow_exec_migration="allow-exec-migration" in emu,
        behaviours=behaviour_overrides(cl),
        iothreads=tuple(_iothread(o) for o in cl.objects
                        if o.get("qom-type") == "iothread" and o.id is not None),
        pid=os.getpid(),
    )
    return Config(options=options, monitors=tuple(monitors),
                  persona=emu.get("persona", DEFAULT_PERSONA), daemonize=cl.daemonize,
                  pidfile=cl.pidfile, qtest=qtest_config(cl))
