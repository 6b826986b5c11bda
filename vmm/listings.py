"""The help listings QEMU 2.11 prints instead of starting a machine.

`vmm` layer, pure: from the parsed `CommandLine` and the `Catalog`, what vl.c prints
for `-machine help`, `-machine TYPE,help`, `-cpu help`, `-device help` and
`-device DRIVER,help`, on which stream, and the exit status. `vmm.program` calls
`help_listing` after the options are parsed and before the machine is configured and
writes the result. vl.c main checks them in this order: select_machine
(machine_parse), machine_help_func, list_cpus, then device_help_func over the
`-device` options (qdev_device_help).

Where the catalogue has the facts, the text is computed: the device type list
(`Catalog.device_help`) and a device's properties (`device-list-properties`, as
`devices.commands.device_properties` answers it). The machine and CPU lists and the
machine properties need descriptions the catalogue's QMP answers lack; their text is
the recording of the 2.11.0 binary (`Catalog.cli_help`).
"""

from __future__ import annotations

import attrs

from schema.catalog import Catalog
from schema.opts.qemuopts import QemuOpts, is_help_option
from vmm.cmdline import CommandLine, Diagnostic


@attrs.frozen
class Listing:
    """What QEMU writes before it exits."""

    stdout: str = ""
    stderr: str = ""
    exit_status: int = 0


def help_listing(cl: CommandLine, catalog: Catalog, progname: str) -> Listing | None:
    """The listing the command line asks for, or None to go on starting the machine.

    An unknown machine type is not decided here: `vmm.config` reports it."""
    wanted = cl.machine_type
    if wanted is not None and is_help_option(wanted):
        # vl.c machine_parse: printf of every machine type, then exit(0).
        return Listing(stdout=catalog.cli_help("-machine help")["stdout"])
    if cl.machine is not None and _has_help_opt(cl.machine):
        text = _machine_properties(catalog, _machine_name(cl, catalog))
        if text is not None:
            return Listing(stderr=text)
    if cl.cpu_model is not None and is_help_option(cl.cpu_model):
        # vl.c main: list_cpus(stdout, ...) [target/i386/cpu.c x86_cpu_list], exit(0).
        return Listing(stdout=catalog.cli_help("-cpu help")["stdout"])
    for opts in cl.devices:
        text = device_help(catalog, opts, progname)
        if text is not None:
            return Listing(stderr=text)
    return None


def _has_help_opt(opts: QemuOpts) -> bool:
    """util/qemu-option.c qemu_opt_has_help_opt: an option named `help` or `?`."""
    return any(is_help_option(key) for key in opts.keys())


def _machine_name(cl: CommandLine, catalog: Catalog) -> str | None:
    """The machine class the command line selects (an alias resolved), or None."""
    wanted = cl.machine_type
    for m in catalog.machines():
        if (wanted is None and m.get("is-default")) or wanted in (m["name"], m.get("alias")):
            return str(m["name"])
    return None


def _machine_properties(catalog: Catalog, name: str | None) -> str | None:
    """vl.c machine_help_func: `CLASS.PROP=TYPE (DESCRIPTION)` on stderr for every
    settable property of the machine object. The recording has them for `pc`, `q35`
    and `none`; every i440FX (and ISA) board has the pc machine's properties, every
    Q35 board the q35 machine's, under its own class name."""
    if name is None:
        return None
    if name == "none":
        return str(catalog.cli_help("-machine none,help")["stderr"])
    recorded, prefix = (("-machine q35,help", "pc-q35-2.11.") if name.startswith("pc-q35")
                        else ("-machine pc,help", "pc-i440fx-2.11."))
    lines = str(catalog.cli_help(recorded)["stderr"]).splitlines(keepends=True)
    return "".join(f"{name}.{line.removeprefix(prefix)}" for line in lines)


def device_help(catalog: Catalog, opts: QemuOpts, progname: str) -> str | None:
    """qdev-monitor.c qdev_device_help: `-device help` prints the user-creatable types
    (qdev_print_devinfos), `-device DRIVER,help` the type's properties as
    `DRIVER.PROP=TYPE (DESCRIPTION)`, or reports device-list-properties's error at the
    option; all on stderr, and QEMU then exits 0. None when `opts` asks for neither."""
    from devices.commands import device_properties
    from devices.qdev import ALIASES
    from schema.errors import QMPError

    driver = opts.get("driver")
    if driver is not None and is_help_option(driver):
        return catalog.device_help_text()
    if driver is None or not _has_help_opt(opts):
        return None
    if driver not in catalog.qom_type_index():
        driver = ALIASES.get(driver, driver)
    try:
        props = device_properties(catalog, driver)
    except QMPError as err:
        return Diagnostic(err.desc, location=opts.location).render(progname)
    out = []
    for p in props:
        desc = f" ({p['description']})" if "description" in p else ""
        out.append(f"{driver}.{p['name']}={p['type']}{desc}\n")
    return "".join(out)
