"""HMP's command table and `help`: every command of QEMU 2.11's x86_64 build.

monitor.c help_cmd / help_cmd_dump print `NAME PARAMS -- HELP` for each entry of the
sorted table (sortcmdlist); hmp-commands.hx and hmp-commands-info.hx are the entries.
The whole `help` is compared byte for byte with the real binary's
(schema/data/qemu-2.11.0-hmp-help.txt, see schema/data/README.md).
"""

from __future__ import annotations

from importlib import resources

import pytest

from tests.conftest import VmHarness
from vmm.hmp.table import INFO, TABLE


def hmp(vm: VmHarness, line: str) -> str:
    """human-monitor-command's reply (monitor_puts: every \\n is CR LF)."""
    reply = vm.talk().execute("human-monitor-command", {"command-line": line})
    return reply["return"]


def recorded_help() -> str:
    data = resources.files("schema") / "data" / "qemu-2.11.0-hmp-help.txt"
    return data.read_bytes().decode()


@pytest.mark.parametrize("machine", ["pc", "q35", "none"])
def test_help_is_the_real_binarys(vm_cmdline, machine: str) -> None:
    """monitor.c do_help_cmd without an argument: QEMU 2.11.0's `help`, byte for byte
    (the table is the same on every machine type)."""
    vm = vm_cmdline("-machine", machine, "-nodefaults", "-S")
    assert hmp(vm, "help") == recorded_help()
    assert hmp(vm, "?") == recorded_help()


def test_table_has_every_command_of_the_recording() -> None:
    """One entry per command of the recorded help, in its order."""
    text = "\r\n" + recorded_help()
    starts = [text.index(f"\r\n{c.name} ") for c in TABLE]
    assert starts == sorted(starts)
    assert len(TABLE) == text.count(" -- ") - text.count("\t-- ") == 107


def test_help_of_one_command(vm_factory) -> None:
    """help_cmd with words: the entry they name (an alias works), nothing for an
    unknown name."""
    vm = vm_factory()
    assert hmp(vm, "help c") == "c|cont  -- resume emulation\r\n"
    assert hmp(vm, "help block_resize") == "block_resize device size -- resize a block image\r\n"
    assert hmp(vm, "help nosuchcommand") == ""
    assert hmp(vm, 'help "eject"') == (
        "eject [-f] device -- eject a removable medium (use -f to force it)\r\n")


def test_help_info(vm_factory) -> None:
    """hmp-commands-info.hx: `help info` and `info` list the subcommands with the
    `info ` prefix, sorted; `help info block` shows one."""
    vm = vm_factory()
    listing = hmp(vm, "info")
    assert listing == hmp(vm, "help info")
    lines = listing.split("\r\n")[:-1]
    assert len(lines) == len(INFO) == 56
    assert lines[:3] == [
        "info balloon  -- show balloon information",
        "info block [-n] [-v] [device] -- show info of one block device or all block devices "
        "(-n: show named nodes; -v: show details)",
        "info block-jobs  -- show progress of ongoing block device operations",
    ]
    assert "info trace-events [name] [vcpu] -- show available trace-events & their state " \
           "(name: event name pattern; vcpu: vCPU to query, default is any)" in lines
    assert "info spice  -- show the spice server status" not in lines  # not compiled in
    assert hmp(vm, "help info status") == (
        "info status  -- show the current VM status (running|paused)\r\n")


def test_help_log_lists_the_log_items(vm_factory) -> None:
    """monitor.c help_cmd: `help log` is util/log.c's qemu_log_items."""
    text = hmp(vm_factory(), "help log")
    assert text.startswith("Log items (comma separated):\r\n"
                           "none       remove all logs\r\n"
                           "out_asm    show generated host assembly code for each compiled TB\r\n")
    assert text.endswith('nochain    do not chain compiled TBs so that "exec" and "cpu" show\r\n'
                         "complete traces\r\n")


def test_help_with_too_many_words_prints_nothing(vm_factory) -> None:
    """parse_cmdline takes at most 16 words; an unterminated string fails too (QEMU
    complains on its stdout, not on the monitor)."""
    vm = vm_factory()
    assert hmp(vm, "help " + " ".join(["x"] * 17)) == ""
    assert hmp(vm, 'help "info') == ""
