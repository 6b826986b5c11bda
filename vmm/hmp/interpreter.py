"""The human monitor (HMP): QEMU's command table, parser and texts, as a view of the Machine.

`vmm` layer, synchronous. `Hmp.run(line)` executes one command line and returns what
QEMU would print (with `\\n` line ends; the monitor turns them into CR LF). Used by
`human-monitor-command` and by `-monitor`/`-mon mode=readline` monitors. Command
names, parameter hints, help texts and output formats are QEMU 2.11.0's
(hmp-commands.hx, hmp-commands-info.hx, hmp.c, monitor.c monitor_parse_command);
commands whose subsystem is not modelled yet are not in the table, so QEMU's
"unknown command" text answers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from schema.errors import QMPError

if TYPE_CHECKING:
    from vmm.machine.commands import CoreCommands


@attrs.frozen
class HmpCommand:
    name: str  # "c|cont": aliases separated by |
    args_type: str
    params: str
    help: str
    handler: Callable[[Hmp, dict[str, str]], None] | None = None
    sub_table: tuple[HmpCommand, ...] | None = None

    def matches(self, word: str) -> bool:
        return word in self.name.split("|")


class HmpSyntaxError(Exception):
    pass


def _is_space(ch: str) -> bool:
    return ch in " \t\n\r\v\f"


class Hmp:
    """One human monitor's command interpreter over a machine's core commands."""

    def __init__(self, core: CoreCommands) -> None:
        self.core = core
        self.out: list[str] = []
        self.table = _TABLE

    def printf(self, text: str) -> None:
        self.out.append(text)

    def run(self, line: str) -> str:
        """monitor.c handle_hmp_command; returns the printed text."""
        self.out = []
        self.core.trace.log("handle_hmp_command", f"mon {id(self):#x} cmdline: {line}")
        cmd, rest = self._parse_command(line, line, self.table)
        if cmd is not None:
            try:
                args = self._parse_arguments(cmd, rest)
            except HmpSyntaxError as err:
                if str(err):
                    self.printf(str(err))
                self.printf(f'Try "help {cmd.name}" for more information\n')
            else:
                assert cmd.handler is not None
                try:
                    cmd.handler(self, args)
                except QMPError as err:
                    # hmp_handle_error -> error_report to the current monitor
                    self.printf(err.desc + "\n")
        text = "".join(self.out)
        self.out = []
        return text

    def _parse_command(self, start: str, line: str,
                       table: tuple[HmpCommand, ...]) -> tuple[HmpCommand | None, str]:
        p = 0
        while p < len(line) and _is_space(line[p]):
            p += 1
        if p == len(line):
            return None, ""
        q = p
        while q < len(line) and line[q] != "/" and not _is_space(line[q]):
            q += 1
        name = line[p:q]
        cmd = next((c for c in table if c.matches(name)), None)
        consumed = len(start) - len(line) + q
        if cmd is None:
            self.printf(f"unknown command: '{start[:consumed]}'\n")
            return None, ""
        while q < len(line) and _is_space(line[q]):
            q += 1
        rest = line[q:]
        if cmd.sub_table is not None and rest:
            return self._parse_command(start, rest, cmd.sub_table)
        return cmd, rest

    def _parse_arguments(self, cmd: HmpCommand, rest: str) -> dict[str, str]:
        """monitor_parse_arguments for the argument types the table uses (s, S, optional)."""
        args: dict[str, str] = {}
        p = rest
        for spec in filter(None, cmd.args_type.split(",")):
            key, _, typ = spec.partition(":")
            optional = typ.endswith("?")
            typ = typ.rstrip("?")
            p = p.lstrip(" \t\n\r\v\f")
            if not p:
                if optional:
                    continue
                raise HmpSyntaxError("")  # no command in this table has a required argument
            if typ == "S":  # the rest of the line
                args[key] = p.rstrip()
                p = ""
            else:  # one word
                word = p.split(None, 1)
                args[key] = word[0]
                p = word[1] if len(word) > 1 else ""
        if p.strip():
            raise HmpSyntaxError(f"{cmd.name}: extraneous characters at the end of line\n")
        return args

    # -- commands ---------------------------------------------------------------------

    def help(self, args: dict[str, str]) -> None:
        """monitor.c help_cmd."""
        words = args.get("name", "").split()
        self._help_dump(self.table, words, 0)

    def _help_dump(self, cmds: tuple[HmpCommand, ...], words: list[str], index: int) -> None:
        prefix = "".join(f"{w} " for w in words[:index])
        if index >= len(words):
            for c in cmds:
                self.printf(f"{prefix}{c.name} {c.params} -- {c.help}\n")
            return
        for c in cmds:
            if c.matches(words[index]):
                if c.sub_table is not None:
                    self._help_dump(c.sub_table, words, index + 1)
                else:
                    self.printf(f"{prefix}{c.name} {c.params} -- {c.help}\n")
                break

    def info_help(self, args: dict[str, str]) -> None:
        """hmp_info_help: `info` alone lists the info subcommands."""
        self._help_dump(self.table, ["info"], 0)

    def info_status(self, args: dict[str, str]) -> None:
        """hmp.c hmp_info_status."""
        info = self.core.query_status()
        text = "VM status: " + ("running" if info["running"] else "paused")
        if info["singlestep"]:
            text += " (single step mode)"
        if not info["running"] and info["status"] != "paused":
            text += f" ({info['status']})"
        self.printf(text + "\n")

    def info_version(self, args: dict[str, str]) -> None:
        v = self.core.query_version()
        q = v["qemu"]
        self.printf(f"{q['major']}.{q['minor']}.{q['micro']}{v['package']}\n")

    def info_name(self, args: dict[str, str]) -> None:
        name = self.core.query_name().get("name")
        if name is not None:
            self.printf(f"{name}\n")

    def info_uuid(self, args: dict[str, str]) -> None:
        self.printf(self.core.query_uuid()["UUID"] + "\n")

    def info_kvm(self, args: dict[str, str]) -> None:
        info = self.core.query_kvm()
        if info["present"]:
            self.printf("kvm support: " + ("enabled" if info["enabled"] else "disabled") + "\n")
        else:
            self.printf("kvm support: not compiled\n")

    def stop(self, args: dict[str, str]) -> None:
        self.core.stop()

    def cont(self, args: dict[str, str]) -> None:
        self.core.cont()

    def system_reset(self, args: dict[str, str]) -> None:
        self.core.system_reset()

    def system_powerdown(self, args: dict[str, str]) -> None:
        self.core.system_powerdown()

    def quit(self, args: dict[str, str]) -> None:
        self.core.quit()


_INFO_TABLE = (
    HmpCommand("version", "", "", "show the version of QEMU", Hmp.info_version),
    HmpCommand("kvm", "", "", "show KVM information", Hmp.info_kvm),
    HmpCommand("status", "", "", "show the current VM status (running|paused)",
               Hmp.info_status),
    HmpCommand("name", "", "", "show the current VM name", Hmp.info_name),
    HmpCommand("uuid", "", "", "show the current VM UUID", Hmp.info_uuid),
)

_TABLE = (
    HmpCommand("help|?", "name:S?", "[cmd]", "show the help", Hmp.help),
    HmpCommand("q|quit", "", "", "quit the emulator", Hmp.quit),
    HmpCommand("stop", "", "", "stop emulation", Hmp.stop),
    HmpCommand("c|cont", "", "", "resume emulation", Hmp.cont),
    HmpCommand("system_reset", "", "", "reset the system", Hmp.system_reset),
    HmpCommand("system_powerdown", "", "", "send system power down event",
               Hmp.system_powerdown),
    HmpCommand("info", "item:s?", "[subcommand]",
               "show various information about the system state", Hmp.info_help,
               sub_table=_INFO_TABLE),
)
