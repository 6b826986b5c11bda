"""trace-event-get-state and trace-event-set-state over the binary's 2 138 trace events.

Pins QEMU 2.11.0's trace/qmp.c (qmp_trace_event_get_state, qmp_trace_event_set_state,
check_events, get_cpu), trace/control.c (pattern_glob: `*` is the only wildcard) and
trace/control-target.c (a per-vCPU event has a state per vCPU; without a vCPU index
the state is set on every vCPU and read as their OR). The recording is
schema/data/trace-event-get-state-all.json: a real 2.11.0 on `-machine none`
answering `{"name": "*"}`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VmHarness

RECORDED = Path(__file__).resolve().parent.parent / "schema" / "data" / \
    "trace-event-get-state-all.json"


def get(vm: VmHarness, **arguments: Any) -> Any:
    return vm.talk().execute("trace-event-get-state", arguments)


def set_(vm: VmHarness, **arguments: Any) -> Any:
    return vm.talk().execute("trace-event-set-state", arguments)


def error(desc: str) -> dict[str, Any]:
    return {"error": {"class": "GenericError", "desc": desc}}


def test_every_event_in_qemus_order(vm_cmdline) -> None:
    """`{"name": "*"}` on -machine none: the recorded reply, order, vcpu flags and the
    five compiled-out events ("unavailable") included."""
    vm = vm_cmdline("-machine", "none")
    reply = get(vm, name="*")
    assert reply == json.loads(RECORDED.read_text())
    assert len(reply["return"]) == 2138


def test_unknown_and_not_vcpu_specific(vm_cmdline) -> None:
    """check_events: an exact name must exist; with `vcpu` it must be a vCPU event."""
    vm = vm_cmdline("-machine", "pc", "-smp", "2")
    assert get(vm, name="nosuch") == error('unknown event "nosuch"')
    assert set_(vm, name="nosuch", enable=True) == error('unknown event "nosuch"')
    assert get(vm, name="runstate_set", vcpu=0) == error(
        'event "runstate_set" is not vCPU-specific')
    assert get(vm, name="nosuch*") == {"return": []}  # a pattern may match nothing


def test_vcpu_index_is_checked_first(vm_cmdline) -> None:
    """get_cpu: the int64 index is truncated to C's int; an index with no CPU is
    "invalid vCPU index %u". -machine none has no CPU unless -cpu names one
    (hw/core/null-machine.c)."""
    vm = vm_cmdline("-machine", "pc", "-smp", "2")
    assert get(vm, name="nosuch", vcpu=2) == error("invalid vCPU index 2")
    assert get(vm, name="nosuch", vcpu=-1) == error("invalid vCPU index 4294967295")
    assert get(vm, name="guest_cpu_enter", vcpu=2**32 + 1)["return"] == [
        {"name": "guest_cpu_enter", "state": "disabled", "vcpu": True}]
    bare = vm_cmdline("-machine", "none")
    assert get(bare, name="guest_cpu_enter", vcpu=0) == error("invalid vCPU index 0")
    with_cpu = vm_cmdline("-machine", "none", "-cpu", "qemu64")
    assert get(with_cpu, name="guest_cpu_enter", vcpu=0)["return"][0]["state"] == "disabled"


def test_set_and_get_by_pattern(vm_cmdline) -> None:
    """A name with `*` is a pattern; the reply lists its matches in QEMU's order."""
    vm = vm_cmdline("-machine", "pc")
    assert set_(vm, name="monitor_protocol_event_*", enable=True) == {"return": {}}
    assert get(vm, name="monitor_protocol_event_*")["return"] == [
        {"name": "monitor_protocol_event_queue", "state": "enabled", "vcpu": False},
        {"name": "monitor_protocol_event_emit", "state": "enabled", "vcpu": False},
        {"name": "monitor_protocol_event_handler", "state": "enabled", "vcpu": False}]
    assert get(vm, name="runstate_set")["return"] == [
        {"name": "runstate_set", "state": "disabled", "vcpu": False}]


def test_only_star_is_a_wildcard(vm_cmdline) -> None:
    """trace_event_is_pattern looks for `*` only, and pattern_glob compares every other
    character literally: `runstate?set` is no event, `runstate?set*` matches none."""
    vm = vm_cmdline("-machine", "pc")
    assert get(vm, name="runstate?set") == error('unknown event "runstate?set"')
    assert get(vm, name="runstate?set*") == {"return": []}
    assert [e["name"] for e in get(vm, name="*state_set")["return"]] == ["runstate_set"]


def test_unavailable_events(vm_cmdline) -> None:
    """check_events: setting a compiled-out event fails ("is disabled") unless
    ignore-unavailable; for a pattern the first such event in QEMU's iteration order
    is named (the reply order runs the other way); getting never fails."""
    vm = vm_cmdline("-machine", "pc")
    assert set_(vm, name="exec_tb", enable=True) == error('event "exec_tb" is disabled')
    assert set_(vm, name="exec_tb*", enable=True) == error('event "exec_tb" is disabled')
    assert set_(vm, name="exec_tb*", enable=True, **{"ignore-unavailable": True}) == {
        "return": {}}
    assert [e["state"] for e in get(vm, name="exec_tb*")["return"]] == ["unavailable"] * 3


def test_vcpu_events_have_a_state_per_vcpu(vm_cmdline) -> None:
    """trace_event_set_vcpu_state_dynamic: one vCPU's state; without `vcpu` the event
    reads as enabled when any vCPU has it, and setting it without `vcpu` sets all
    (trace_event_set_state_dynamic). With `vcpu`, a pattern lists vCPU events only."""
    vm = vm_cmdline("-machine", "pc", "-smp", "2")
    assert set_(vm, name="guest_cpu_enter", enable=True, vcpu=1) == {"return": {}}
    assert get(vm, name="guest_cpu_enter")["return"][0]["state"] == "enabled"
    assert get(vm, name="guest_cpu_enter", vcpu=0)["return"][0]["state"] == "disabled"
    assert get(vm, name="guest_cpu_enter", vcpu=1)["return"][0]["state"] == "enabled"
    assert set_(vm, name="guest_cpu_enter", enable=True) == {"return": {}}
    assert set_(vm, name="guest_cpu_enter", enable=False, vcpu=1) == {"return": {}}
    assert get(vm, name="guest_cpu_enter", vcpu=0)["return"][0]["state"] == "enabled"
    assert get(vm, name="guest_cpu_enter")["return"][0]["state"] == "enabled"
    assert set_(vm, name="guest_cpu_enter", enable=False) == {"return": {}}
    assert get(vm, name="guest_cpu_enter")["return"][0]["state"] == "disabled"
    listed = get(vm, name="*", vcpu=0)["return"]
    assert [e["name"] for e in listed] == [
        "guest_user_syscall_ret", "guest_user_syscall", "guest_mem_before_exec",
        "guest_mem_before_trans", "guest_cpu_reset", "guest_cpu_exit", "guest_cpu_enter"]


def test_vcpu_event_on_a_machine_without_vcpus(vm_cmdline) -> None:
    """trace_event_set_state_dynamic before any vCPU exists keeps one global state."""
    vm = vm_cmdline("-machine", "none")
    assert set_(vm, name="guest_cpu_enter", enable=True) == {"return": {}}
    assert get(vm, name="guest_cpu_enter")["return"][0]["state"] == "enabled"


@pytest.mark.parametrize(("event", "command"), [
    ("handle_qmp_command", {"execute": "query-name"}),
    ("handle_hmp_command", {"execute": "human-monitor-command",
                            "arguments": {"command-line": "info name"}}),
])
def test_the_emulator_logs_the_events_it_passes(vm_cmdline, event: str,
                                                command: dict[str, Any]) -> None:
    """trace-events: handle_qmp_command "mon %p req: %s", handle_hmp_command
    "mon %p cmdline: %s": once enabled, the log backend prints a line per command."""
    vm = vm_cmdline("-machine", "none")
    vm.machine.trace.stream = stream = io.StringIO()
    talk = vm.talk()
    talk.execute("trace-event-set-state", {"name": event, "enable": True})
    stream.truncate(0)
    talk.send(command)
    assert stream.getvalue().startswith(f"{event} mon 0x")
