"""The Machine as the subsystems see it: hooks, the virtual clock, the board, its logger.

Pins cpus.c's virtual clock (cpu_get_clock: QEMU_CLOCK_VIRTUAL counts only while the
VM runs, from 0; cpu_enable_ticks in vm_prepare_start, cpu_disable_ticks in
do_vm_stop; qtest_clock_warp for the qtest accelerator), hw/core/nmi.c
nmi_monitor_handle (QERR_UNSUPPORTED without an NMI handler), and the Subsystem hooks
of vmm/machine/subsystem.py in the order vl.c's main loop and cpus.c call them.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from blockdev.layer import BlockLayer
from schema.errors import GenericError
from tests.conftest import VmHarness
from vmm.machine.subsystem import Subsystem
from vmm.qmp.dispatch import Handler

SECOND = 1_000_000_000


def test_vm_clock_is_zero_until_the_vm_runs(vm_cmdline) -> None:
    """cpu_get_clock: 0 before the first cpu_enable_ticks (a -S machine never ran)."""
    vm = vm_cmdline("-S")
    vm.tick(7)
    assert vm.machine.vm_clock_ns() == 0


def test_vm_clock_counts_only_running_time(vm_cmdline) -> None:
    """do_vm_stop disables the ticks, vm_start enables them again; a suspended guest's
    clock runs on (qemu_system_suspend pauses vCPUs but keeps the ticks)."""
    vm = vm_cmdline("-S")
    t = vm.talk()
    t.send('{"execute":"cont"}')
    vm.tick(1.5)
    assert vm.machine.vm_clock_ns() == 3 * SECOND // 2
    t.send('{"execute":"stop"}')
    vm.tick(10)
    assert vm.machine.vm_clock_ns() == 3 * SECOND // 2
    t.send('{"execute":"cont"}')
    vm.tick(0.25)
    assert vm.machine.vm_clock_ns() == 7 * SECOND // 4
    vm.machine.guest_suspend()
    vm.machine.process_requests()
    vm.tick(1)
    assert vm.machine.vm_clock_ns() == 11 * SECOND // 4


def test_guest_timers_run_on_the_virtual_clock(vm_cmdline) -> None:
    """A guest reaction due in 0.5 s of guest time: stopping the VM halfway keeps the
    remaining 0.25 s for after `cont`."""
    vm = vm_cmdline("-no-shutdown")
    t = vm.talk()
    t.send('{"execute":"system_powerdown"}')
    vm.tick(0.25)
    t.send('{"execute":"stop"}')
    vm.tick(30)
    t.send('{"execute":"cont"}')
    vm.tick(0.24)
    assert t.pending() == []
    vm.tick(0.01)
    assert t.pending()[0] == '{"timestamp": T, "event": "SHUTDOWN", "data": {"guest": true}}'


def test_qtest_accelerator_owns_the_virtual_clock(vm_cmdline) -> None:
    """-machine accel=qtest: only warps move the clock (qtest.c clock_step/clock_set ->
    cpus.c qtest_clock_warp), running the timers due on the way at their deadlines."""
    vm = vm_cmdline("-machine", "none,accel=qtest", "-no-shutdown")
    t = vm.talk()
    vm.tick(5)
    assert vm.machine.vm_clock_ns() == 0
    t.send('{"execute":"system_powerdown"}')
    vm.tick(5)
    assert t.pending() == []
    seen: list[int] = []
    vm.machine.vm_call_at(SECOND // 4, lambda: seen.append(vm.machine.vm_clock_ns()))
    assert vm.machine.vm_deadline_ns() == SECOND // 4  # what a bare clock_step steps
    assert vm.machine.warp_vm_clock(SECOND) == SECOND
    assert seen == [SECOND // 4]
    assert t.pending() == []  # the power-off request waits for the main loop
    vm.machine.process_requests()
    assert t.pending()[0] == '{"timestamp": T, "event": "SHUTDOWN", "data": {"guest": true}}'
    assert vm.machine.vm_deadline_ns() == -1  # stopped (-no-shutdown): no deadline


def test_warping_a_running_clock_is_refused(vm_cmdline) -> None:
    """Only the qtest accelerator lets something else own the virtual clock."""
    with pytest.raises(ValueError):
        vm_cmdline().machine.warp_vm_clock(SECOND)


@pytest.mark.parametrize(("argv", "reply"), [
    (("-machine", "none"), {"error": {"class": "GenericError", "desc":
                                      "this feature or command is not currently supported"}}),
    (("-machine", "pc"), {"return": {}}),
    (("-machine", "q35"), {"return": {}}),
])
def test_inject_nmi(vm_cmdline, argv: tuple[str, ...], reply: dict[str, Any]) -> None:
    """cpus.c qmp_inject_nmi -> hw/core/nmi.c nmi_monitor_handle: a PC machine
    implements TYPE_NMI (hw/i386/pc.c); -machine none has no object that does, so
    error_setg(QERR_UNSUPPORTED), a GenericError."""
    assert vm_cmdline(*argv).talk().execute("inject-nmi") == reply


class Recorder:
    """A subsystem that records the hooks it sees."""

    def __init__(self, calls: list[str], deadline: float = math.inf) -> None:
        self.calls = calls
        self.deadline = deadline

    def reset(self) -> None:
        self.calls.append("reset")

    def before_cont(self) -> None:
        self.calls.append("before_cont")

    def vm_start(self) -> None:
        self.calls.append("vm_start")

    def vm_stop(self) -> None:
        self.calls.append("vm_stop")

    def next_deadline(self) -> float:
        return self.deadline

    def run_due(self, now: float) -> None:
        if now >= self.deadline:
            self.calls.append(f"run_due {now}")
            self.deadline = math.inf

    def close(self) -> None:
        self.calls.append("close")


def test_subsystem_hooks_in_qemus_order(vm_factory) -> None:
    """The hooks of a plugged subsystem: start-up's silent reset, then the VM start;
    qmp_cont's preparation before the VM start; vm_stop before STOP goes out
    (do_vm_stop), vm_start after RESUME (vm_prepare_start); a reset before RESET;
    deadlines in the Machine's; close at exit."""
    calls: list[str] = []
    vm: VmHarness = vm_factory(start=False, machine_type="none")
    recorder = Recorder(calls, deadline=2.0)
    vm.machine.plug(recorder)
    vm.machine.events.history = []
    vm.machine.events.sinks.append(lambda ev: calls.append(ev.name))
    vm.machine.start()
    t = vm.talk()
    t.send('{"execute":"stop"}')
    t.send('{"execute":"cont"}')
    t.send('{"execute":"system_reset"}')
    assert vm.machine.next_deadline() == 2.0
    vm.tick(3)
    vm.vm.close()
    assert calls == ["reset", "RESUME", "vm_start", "vm_stop", "STOP", "before_cont",
                     "RESUME", "vm_start", "reset", "RESET", "run_due 2.0", "close"]


def test_the_block_layer_is_a_subsystem(vm_factory) -> None:
    """BlockLayer has every hook without importing vmm (ARCHITECTURE.md: a subsystem
    never imports vmm)."""
    hooks = [name for name in vars(Subsystem) if not name.startswith("_")]
    assert hooks == ["reset", "before_cont", "vm_start", "vm_stop", "next_deadline",
                     "run_due", "close"]
    assert all(callable(getattr(BlockLayer, name)) for name in hooks)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, blockdev.layer; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('vmm', 'trio')))"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert probe.stdout == "[]\n"
    vm: VmHarness = vm_factory()
    assert vm.vm.block in vm.machine.subsystems


def test_internal_errors_go_to_the_vms_logger(vm_factory, caplog) -> None:
    """A bug of ours is a GenericError to the client and a traceback on the VM's own
    logger (vmm.vm.<name>), not a print to stderr."""
    vm: VmHarness = vm_factory(strict=False, name="guest1")

    def broken() -> None:
        raise RuntimeError("boom")

    vm.vm.dispatcher.table["query-name"] = Handler(broken)
    with caplog.at_level(logging.ERROR, logger="vmm.vm.guest1"):
        reply = vm.talk().execute("query-name")
    assert reply == {"error": {"class": "GenericError",
                               "desc": "qmp-emulator internal error in query-name: boom"}}
    [record] = caplog.records
    assert record.name == "vmm.vm.guest1"
    assert record.exc_info is not None


def test_a_failing_handler_stays_a_qmp_error(vm_factory) -> None:
    """A QMPError from a handler is the reply, whatever the strictness."""
    vm: VmHarness = vm_factory()

    def refuse() -> None:
        raise GenericError("no")

    vm.vm.dispatcher.table["query-name"] = Handler(refuse)
    assert vm.talk().execute("query-name") == {"error": {"class": "GenericError",
                                                         "desc": "no"}}
