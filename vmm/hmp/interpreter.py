"""The human monitor (HMP): QEMU's command-line parser and the interpreter that runs it.

`vmm` layer, synchronous. `Hmp.run(line)` executes one command line and returns what
QEMU would print (with `\\n` line ends; the monitor turns them into CR LF). Used by
`human-monitor-command` and by `-monitor`/`-mon mode=readline` monitors. As hmp.c
calls the qmp_* functions, a command's function calls QMP handlers by schema name
through the machine's command table (`Hmp.qmp`), with this monitor's session for the
per-monitor ones. The table itself, QEMU's command names, parameter hints and help
texts, is `vmm.hmp.commands`; parsing follows monitor.c monitor_parse_command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from schema.errors import QMPError

if TYPE_CHECKING:
    from vmm.qmp.dispatch import Dispatcher, MonitorSession


@attrs.frozen
class HmpCommand:
    """One entry of hmp-commands.hx / hmp-commands-info.hx."""

    name: str  # "c|cont": aliases separated by |
    args_type: str
    params: str
    help: str
    handler: Callable[[Hmp, dict[str, str]], None] | None = None
    sub_table: tuple[HmpCommand, ...] | None = None

    def matches(self, word: str) -> bool:
        return word in self.name.split("|")


def command_table(commands: Iterable[HmpCommand]) -> tuple[HmpCommand, ...]:
    """monitor.c sortcmdlist: a table (and each sub-table) in strcmp order of names."""
    return tuple(sorted(commands, key=lambda c: c.name.encode()))


class HmpSyntaxError(Exception):
    pass


def _is_space(ch: str) -> bool:
    return ch in " \t\n\r\v\f"


class Hmp:
    """One human monitor's command interpreter over a machine's command table."""

    def __init__(self, dispatcher: Dispatcher, session: MonitorSession,
                 table: tuple[HmpCommand, ...] | None = None) -> None:
        from vmm.hmp.commands import TABLE

        self.dispatcher = dispatcher
        self.session = session
        self.machine = dispatcher.machine
        self.table = TABLE if table is None else table
        self.out: list[str] = []

    def printf(self, text: str) -> None:
        self.out.append(text)

    def qmp(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """The QMP command `name`'s handler (snake_case keywords, as in QMP)."""
        return self.dispatcher.call(self.session, name, *args, **kwargs)

    def run(self, line: str) -> str:
        """monitor.c handle_hmp_command; returns the printed text."""
        self.out = []
        self.machine.trace.log("handle_hmp_command", f"mon {id(self):#x} cmdline: {line}")
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

    # -- help (monitor.c help_cmd), used by the `help` and `info` commands ---------------

    def help_dump(self, cmds: tuple[HmpCommand, ...], words: list[str], index: int) -> None:
        prefix = "".join(f"{w} " for w in words[:index])
        if index >= len(words):
            for c in cmds:
                self.printf(f"{prefix}{c.name} {c.params} -- {c.help}\n")
            return
        for c in cmds:
            if c.matches(words[index]):
                if c.sub_table is not None:
                    self.help_dump(c.sub_table, words, index + 1)
                else:
                    self.printf(f"{prefix}{c.name} {c.params} -- {c.help}\n")
                break
