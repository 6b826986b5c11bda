"""The human monitor (HMP): QEMU's command-line parser and the interpreter that runs it.

`vmm` layer, synchronous. `Hmp.run(line)` executes one command line and returns what
QEMU would print (with `\\n` line ends; the monitor turns them into CR LF). Used by
`human-monitor-command` and by `-monitor`/`-mon mode=readline` monitors. As hmp.c
calls the qmp_* functions, a command's function calls QMP handlers by schema name
through the machine's command table (`Hmp.qmp`), with this monitor's session for the
per-monitor ones; what HMP reaches beyond that table (the block layer's internal
snapshots for savevm, the dump format monitor.c keeps in statics) is the machine's
`HmpState`. A QMP error a command meets is printed as hmp.c's hmp_handle_error
prints it (its description and a newline); a command whose subsystem is not modelled
answers that way too, with the dispatcher's "not implemented" text.

Parsing follows monitor.c handle_hmp_command: the command name (and an `info`
subcommand) by monitor_parse_command, the arguments by monitor_parse_arguments
(`vmm.hmp.args`); `help` is help_cmd. The table itself, QEMU's command names,
argument types, parameter hints and help texts, is `vmm.hmp.table`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from schema.errors import GenericError, QMPError
from vmm.hmp.args import ArgumentError, ParseContext, parse_arguments, parse_cmdline
from vmm.hmp.state import HmpState
from vmm.qmp.dispatch import not_implemented

if TYPE_CHECKING:
    from vmm.hmp.readline import Readline
    from vmm.qmp.dispatch import Dispatcher, MonitorSession

Handler = Callable[["Hmp", dict[str, Any]], None]


@attrs.frozen
class HmpCommand:
    """One entry of hmp-commands.hx / hmp-commands-info.hx."""

    name: str  # "c|cont": aliases separated by |
    args_type: str
    params: str
    help: str
    handler: Handler | None = None
    sub_table: tuple[HmpCommand, ...] | None = None

    def matches(self, word: str) -> bool:
        """monitor.c compare_cmd."""
        return word in self.name.split("|")


def command_table(commands: Iterable[HmpCommand]) -> tuple[HmpCommand, ...]:
    """monitor.c sortcmdlist: a table (and each sub-table) in strcmp order of names."""
    return tuple(sorted(commands, key=lambda c: c.name.encode()))


class HmpNotImplemented(GenericError):
    """An HMP command (or `info` subcommand) whose subsystem is not modelled yet and
    that has no QMP command of its own: the dispatcher's text, naming it."""

    def __init__(self, name: str) -> None:
        super().__init__(not_implemented(name))


_SPACE = " \t\n\r\v\f"


class Hmp:
    """One human monitor's command interpreter over a machine's command table."""

    def __init__(self, dispatcher: Dispatcher, session: MonitorSession,
                 table: tuple[HmpCommand, ...] | None = None,
                 state: HmpState | None = None) -> None:
        from vmm.hmp.table import TABLE

        self.dispatcher = dispatcher
        self.session = session
        self.machine = dispatcher.machine
        self.table = TABLE if table is None else table
        self.state = HmpState() if state is None else state
        self.out: list[str] = []
        # The monitor's line editor (its history); None for human-monitor-command's
        # throw-away monitors, which also forget the CPU `cpu` selected.
        self.readline: Readline | None = None
        self.cpu_index: int | None = None  # monitor.c mon_cpu_path
        # A terminal monitor's monitor_suspend (it returns monitor_resume) and its
        # output outside a command (a timer's monitor_printf); None without a terminal.
        self.suspend: Callable[[], Callable[[], None]] | None = None
        self.write: Callable[[str], None] | None = None

    def printf(self, text: str) -> None:
        self.out.append(text)

    def qmp(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """The QMP command `name`'s handler (snake_case keywords, as in QMP)."""
        return self.dispatcher.call(self.session, name, *args, **kwargs)

    def run(self, line: str) -> str:
        """monitor.c handle_hmp_command; returns the printed text."""
        self.out = []
        if self.readline is None:
            self.cpu_index = None  # monitor_data_init: a new monitor per command
        line = line.split("\0", 1)[0]  # a C string
        self.machine.trace.log("handle_hmp_command", f"mon {id(self):#x} cmdline: {line}")
        cmd, rest = self._parse_command(line, line, self.table)
        if cmd is not None:
            try:
                args = parse_arguments(cmd.name, cmd.args_type, rest, self._context())
                assert cmd.handler is not None
            except ArgumentError as err:
                self.printf(err.text)
                self.printf(f'Try "help {cmd.name}" for more information\n')
            except QMPError as err:  # a `$register` the emulator cannot read
                self.report(err)
            else:
                try:
                    cmd.handler(self, args)
                except QMPError as err:
                    self.report(err)
        text = "".join(self.out)
        self.out = []
        return text

    def read_password(self, callback: Callable[[str], None]) -> None:
        """monitor.c monitor_read_password on a terminal: the next line, echoed as
        stars after a `Password: ` prompt, goes to `callback`; then the monitor reads
        commands again (monitor_read_command)."""
        readline = self.readline
        assert readline is not None
        command_cb, prompt = readline.submit, readline.prompt

        def got(line: str) -> None:
            callback(line)
            readline.start(prompt, False, command_cb)
            readline.show_prompt()

        readline.start("Password: ", True, got)

    def report(self, err: QMPError) -> None:
        """hmp_handle_error / error_report_err: the message to the current monitor."""
        self.printf(err.desc + "\n")

    def _context(self) -> ParseContext:
        from vmm.hmp.commands import monitor_register, parse_group_opts

        return ParseContext(formats=self.state.formats,
                            register=lambda name: monitor_register(self, name),
                            opts=parse_group_opts)

    def _parse_command(self, start: str, line: str,
                       table: tuple[HmpCommand, ...]) -> tuple[HmpCommand | None, str]:
        """monitor.c monitor_parse_command (with get_command_name)."""
        p = 0
        while p < len(line) and line[p] in _SPACE:
            p += 1
        if p == len(line):
            return None, ""
        q = p
        while q < len(line) and line[q] != "/" and line[q] not in _SPACE:
            q += 1
        name = line[p:q].encode("utf-8", "surrogateescape")[:255].decode(
            "utf-8", "surrogateescape")
        cmd = next((c for c in table if c.matches(name)), None)
        consumed = len(start) - len(line) + q
        if cmd is None:
            self.printf(f"unknown command: '{start[:consumed]}'\n")
            return None, ""
        while q < len(line) and line[q] in _SPACE:
            q += 1
        rest = line[q:]
        if cmd.sub_table is not None and rest:
            return self._parse_command(start, rest, cmd.sub_table)
        return cmd, rest

    # -- help (monitor.c help_cmd), used by the `help` and `info` commands ---------------

    def help(self, name: str | None) -> None:
        """monitor.c help_cmd: every command, or those `name`'s words select."""
        words: list[str] = []
        if name is not None:
            if name == "log":
                from vmm.hmp.commands import print_log_items

                print_log_items(self)
                return
            parsed = parse_cmdline(name)
            if parsed is None:
                return
            words = parsed
        self.help_dump(self.table, words, 0)

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
