"""QEMU 2.11's command line for qemu-system-x86_64, as a pure function.

Layer: vmm, pure (no I/O, no trio). The program's entry point calls
`parse_command_line(sys.argv[1:], extra_options=...)`, prints what
`CommandLineError` or `action_output` says, and otherwise builds the
Machine, its chardevs, monitors and devices from the `CommandLine` value.
Management tools start the emulator exactly as they start QEMU, so the
options, their syntax, the errors and their wording are QEMU 2.11's; the
emulator's own settings are `--emu-<name>[=<value>]` options the caller
declares (`EmuOption`).

Errors: `CommandLineError` carries what QEMU prints on stderr before it
exits (status 1, or 0 for the help listings QEMU prints on stderr, like
`-accel help`). `str(error)` is the message with QEMU's location and
without the program name (`-m 12x: Parameter 'size' expects ...`); print
`f"{progname}: {error}"` plus `error.hint`, or `error.render(progname)`
for everything including earlier warnings. Deprecation warnings of a
successful parse are in `CommandLine.warnings`.

The pieces: `table` (the option table), `groups` (the QemuOpts groups),
`chardev` (legacy chardev syntax), `parse` (vl.c's loop) over `state` (what
the loop keeps), `handlers` (each option's effect) and `checks` (what vl.c
checks after the loop), `model` (the result), `errors` (diagnostics). QEMU's option syntax itself (QemuOpts,
keyval, the C number conversions) is `schema.opts`, and `-blockdev` JSON is
read by `schema.qobject`.
"""

from __future__ import annotations

from collections.abc import Sequence

from schema.opts.qemuopts import OptParam, OptsList, OptType, QemuOpts
from vmm.cmdline.checks import LOG_ITEMS
from vmm.cmdline.errors import CommandLineError, Diagnostic, Location
from vmm.cmdline.groups import GROUP_INFO, GROUPS, GroupInfo
from vmm.cmdline.model import (
    Action,
    Blockdev,
    Boot,
    CharPort,
    CommandLine,
    DefaultDevices,
    Display,
    EmuOption,
    GlobalProperty,
    Memory,
    Monitor,
    ParsedOption,
    Rtc,
    Sandbox,
    Smp,
)
from vmm.cmdline.parse import Parser
from vmm.cmdline.table import OVERCOMMIT, TABLE, Heading, QemuOption

__all__ = [
    "GROUPS",
    "GROUP_INFO",
    "Action",
    "Blockdev",
    "Boot",
    "CharPort",
    "CommandLine",
    "CommandLineError",
    "DefaultDevices",
    "Diagnostic",
    "Display",
    "EmuOption",
    "GlobalProperty",
    "GroupInfo",
    "Location",
    "Memory",
    "Monitor",
    "OptParam",
    "OptType",
    "OptsList",
    "ParsedOption",
    "QemuOpts",
    "Rtc",
    "Sandbox",
    "Smp",
    "action_output",
    "help_text",
    "log_usage_text",
    "parse_command_line",
    "version_text",
]

QEMU_VERSION = "2.11.0"
QEMU_PKGVERSION = " (v2.11.0)"
QEMU_COPYRIGHT = "Copyright (c) 2003-2017 Fabrice Bellard and the QEMU Project developers"


def parse_command_line(argv: Sequence[str], extra_options: Sequence[EmuOption] = ()) -> CommandLine:
    """Parse `argv` (without the program name) as qemu-system-x86_64 2.11 does.

    Raises `CommandLineError` with QEMU's exact message when QEMU would
    refuse the command line; never raises anything else.
    """
    for opt in extra_options:
        if not opt.name or "=" in opt.name:
            raise ValueError(f"bad emulator option name {opt.name!r}")
    return Parser(argv, extra_options).run()


def version_text() -> str:
    """vl.c version(): what `-version` prints on stdout."""
    return f"QEMU emulator version {QEMU_VERSION}{QEMU_PKGVERSION}\n{QEMU_COPYRIGHT}\n"


def help_text(progname: str = "qemu-system-x86_64", extra_options: Sequence[EmuOption] = ()) -> str:
    """vl.c help(): `-help`'s output, from the option table.

    As in 2.11.0, each blank heading between sections prints a lone ':'
    (fixed in 2.12 by "qemu-options: Remove stray colons from output of
    --help"). The emulator's own options follow QEMU's.
    """
    out = [
        version_text(),
        f"usage: {progname} [options] [disk_image]\n\n",
        "'disk_image' is a raw hard disk image for IDE hard disk 0\n\n",
    ]
    for entry in TABLE:
        if isinstance(entry, Heading):
            out.append(f"{entry.title}:\n")
        elif isinstance(entry, QemuOption) and entry.target:
            out.append(entry.help)
    out.append("\nEmulator-only options (not in QEMU):\n")
    out.append(OVERCOMMIT.help.replace("\n", " (QEMU 3.1 syntax)\n", 1))
    for opt in extra_options:
        syntax = f"--emu-{opt.name}" + (f"={opt.metavar}" if opt.takes_value else "")
        text = opt.help + (f" ({'|'.join(opt.choices)})" if opt.choices else "")
        out.append(f"{syntax:<16}{text}\n" if len(syntax) < 16 else f"{syntax}\n{'':16}{text}\n")
    out.append(
        "\nDuring emulation, the following keys are useful:\n"
        "ctrl-alt-f      toggle full screen\n"
        "ctrl-alt-n      switch to virtual console 'n'\n"
        "ctrl-alt        toggle mouse and keyboard grab\n"
        "\n"
        "When using -nographic, press 'ctrl-a h' to get some help.\n"
        "\n"
        "See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
        "More information on the QEMU project at <https://qemu.org>.\n"
    )
    return "".join(out)


def log_usage_text() -> str:
    """util/log.c qemu_print_log_usage: printed when `-d` names an unknown item."""
    lines = ["Log items (comma separated):\n"]
    lines += [f"{name:<15} {text}\n" for name, text in _LOG_HELP]
    lines.append("trace:PATTERN   enable trace events\n")
    lines.append('\nUse "-d trace:help" to get a list of trace events.\n\n')
    return "".join(lines)


def action_output(
    cmdline: CommandLine,
    progname: str = "qemu-system-x86_64",
    extra_options: Sequence[EmuOption] = (),
) -> tuple[str, int] | None:
    """What to print on stdout, and the exit status, for a non-RUN action.

    `Action.AUDIO_HELP` and `Action.LIST_DATA_DIRS` depend on what the
    emulator provides (audio drivers, firmware directories): the text here
    is what an emulator without audio drivers and with only `-L` paths has.
    """
    action = cmdline.action
    if action is Action.RUN:
        return None
    if action is Action.VERSION:
        return version_text(), 0
    if action is Action.HELP:
        return help_text(progname, extra_options), 0
    if action is Action.LOG_USAGE:
        return log_usage_text(), 1
    if action is Action.LIST_DATA_DIRS:
        return "".join(f"{d}\n" for d in cmdline.data_dirs), 0
    return "Audio options:\n\nNo audio drivers are available.\n", 0


#: The lines util/log.c prints for the items in LOG_ITEMS (program output).
_LOG_HELP = tuple(
    zip(
        LOG_ITEMS,
        (
            "show generated host assembly code for each compiled TB",
            "show target assembly code for each compiled TB",
            "show micro ops for each compiled TB",
            "show micro ops after optimization",
            "show micro ops before indirect lowering",
            "show interrupts/exceptions in short format",
            "show trace before each executed TB (lots of logs)",
            "show CPU registers before entering a TB (lots of logs)",
            "log MMU-related activities",
            "x86 only: show protected mode far calls/returns/exceptions",
            "show CPU state before CPU resets",
            "log unimplemented functionality",
            "log when the guest OS does something invalid (eg accessing a\nnon-existent register)",
            "dump pages at beginning of user mode emulation",
            'do not chain compiled TBs so that "exec" and "cpu" show\ncomplete traces',
        ),
        strict=True,
    )
)
