"""HMP's command table: QEMU 2.11's names, parameters, help texts and output formats.

`vmm` layer. Each command is an entry of `TABLE` (or of `INFO`, the `info`
subcommands) as hmp-commands.hx / hmp-commands-info.hx declare it, and a function in
the manner of hmp.c: it calls QMP handlers by schema name (`hmp.qmp("query-status")`)
and prints what hmp.c prints. A command that only runs a QMP command and prints
nothing is `run_qmp("stop")`. To add a command: write its function (or use
`run_qmp`) and add its entry; `command_table` sorts the tables as monitor.c's
sortcmdlist does. Commands whose subsystem is not modelled yet are not in the table,
so QEMU's "unknown command" text answers them.
"""

from __future__ import annotations

from collections.abc import Callable

from vmm.hmp.interpreter import Hmp, HmpCommand, command_table


def run_qmp(name: str) -> Callable[[Hmp, dict[str, str]], None]:
    """An HMP command that calls the argument-less QMP command `name` and prints
    nothing unless it fails (hmp.c hmp_stop, hmp_cont, hmp_system_reset, ...)."""

    def handler(hmp: Hmp, args: dict[str, str]) -> None:
        hmp.qmp(name)

    handler.__name__ = f"hmp_{name.replace('-', '_')}"
    handler.__doc__ = f"hmp.c: qmp_{name.replace('-', '_')}"
    return handler


def hmp_help(hmp: Hmp, args: dict[str, str]) -> None:
    """monitor.c help_cmd."""
    hmp.help_dump(hmp.table, args.get("name", "").split(), 0)


def hmp_info_help(hmp: Hmp, args: dict[str, str]) -> None:
    """monitor.c hmp_info_help: `info` alone lists the info subcommands."""
    hmp.help_dump(hmp.table, ["info"], 0)


def hmp_info_status(hmp: Hmp, args: dict[str, str]) -> None:
    """hmp.c hmp_info_status."""
    info = hmp.qmp("query-status")
    text = "VM status: " + ("running" if info["running"] else "paused")
    if info["singlestep"]:
        text += " (single step mode)"
    if not info["running"] and info["status"] != "paused":
        text += f" ({info['status']})"
    hmp.printf(text + "\n")


def hmp_info_version(hmp: Hmp, args: dict[str, str]) -> None:
    """hmp.c hmp_info_version."""
    v = hmp.qmp("query-version")
    q = v["qemu"]
    hmp.printf(f"{q['major']}.{q['minor']}.{q['micro']}{v['package']}\n")


def hmp_info_name(hmp: Hmp, args: dict[str, str]) -> None:
    """hmp.c hmp_info_name: nothing without -name."""
    name = hmp.qmp("query-name").get("name")
    if name is not None:
        hmp.printf(f"{name}\n")


def hmp_info_uuid(hmp: Hmp, args: dict[str, str]) -> None:
    """hmp.c hmp_info_uuid."""
    hmp.printf(hmp.qmp("query-uuid")["UUID"] + "\n")


def hmp_info_kvm(hmp: Hmp, args: dict[str, str]) -> None:
    """hmp.c hmp_info_kvm."""
    info = hmp.qmp("query-kvm")
    if info["present"]:
        hmp.printf("kvm support: " + ("enabled" if info["enabled"] else "disabled") + "\n")
    else:
        hmp.printf("kvm support: not compiled\n")


INFO = command_table((
    HmpCommand("version", "", "", "show the version of QEMU", hmp_info_version),
    HmpCommand("kvm", "", "", "show KVM information", hmp_info_kvm),
    HmpCommand("status", "", "", "show the current VM status (running|paused)",
               hmp_info_status),
    HmpCommand("name", "", "", "show the current VM name", hmp_info_name),
    HmpCommand("uuid", "", "", "show the current VM UUID", hmp_info_uuid),
))

TABLE = command_table((
    HmpCommand("help|?", "name:S?", "[cmd]", "show the help", hmp_help),
    HmpCommand("q|quit", "", "", "quit the emulator", run_qmp("quit")),
    HmpCommand("stop", "", "", "stop emulation", run_qmp("stop")),
    HmpCommand("c|cont", "", "", "resume emulation", run_qmp("cont")),
    HmpCommand("system_reset", "", "", "reset the system", run_qmp("system_reset")),
    HmpCommand("system_powerdown", "", "", "send system power down event",
               run_qmp("system_powerdown")),
    HmpCommand("info", "item:s?", "[subcommand]",
               "show various information about the system state", hmp_info_help,
               sub_table=INFO),
))
