"""Run states: vl.c's transition table and the cpus.c primitives, pinned.

Source: runstate_transitions_def in vl.c (QEMU 2.11.0), restated in
../shared/reference/runstate.md §2 and §2.1.
"""

from __future__ import annotations

import itertools

import pytest

from vmm.machine.runstate import RUN_STATES, TRANSITIONS, InvalidTransition, RunState

ALLOWED = {
    "debug": {"prelaunch", "finish-migrate", "running", "suspended"},
    "inmigrate": {"internal-error", "io-error", "paused", "postmigrate", "prelaunch",
                  "finish-migrate", "running", "shutdown", "suspended", "watchdog",
                  "guest-panicked", "colo"},
    "internal-error": {"paused", "prelaunch", "finish-migrate"},
    "io-error": {"prelaunch", "finish-migrate", "running"},
    "paused": {"postmigrate", "prelaunch", "finish-migrate", "running", "colo"},
    "postmigrate": {"prelaunch", "finish-migrate", "running"},
    "prelaunch": {"inmigrate", "finish-migrate", "running"},
    "finish-migrate": {"paused", "postmigrate", "prelaunch", "running", "colo"},
    "restore-vm": {"prelaunch", "running"},
    "running": {"debug", "internal-error", "io-error", "paused", "finish-migrate",
                "restore-vm", "save-vm", "shutdown", "suspended", "watchdog",
                "guest-panicked", "colo"},
    "save-vm": {"running"},
    "shutdown": {"paused", "prelaunch", "finish-migrate"},
    "suspended": {"prelaunch", "finish-migrate", "running", "colo"},
    "watchdog": {"prelaunch", "finish-migrate", "running", "colo"},
    "guest-panicked": {"prelaunch", "finish-migrate", "running"},
    "colo": {"running"},
}


def test_table_has_the_68_transitions_of_vl_c() -> None:
    """runstate.md §2: 68 allowed transitions, exactly the ones listed."""
    assert len(TRANSITIONS) == 68
    assert TRANSITIONS == {(s, d) for s, ds in ALLOWED.items() for d in ds}
    assert set(RUN_STATES) == set(ALLOWED)


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(RUN_STATES, RUN_STATES)))
def test_every_transition_is_allowed_or_refused_as_in_qemu(src: str, dst: str) -> None:
    """runstate_set: same state is a no-op; a pair outside the table is what QEMU
    aborts on, with `invalid runstate transition: 'FROM' -> 'TO'` on stderr."""
    rs = RunState(state=src)
    if src == dst or dst in ALLOWED[src]:
        rs.set(dst)
        assert rs.state == dst
    else:
        with pytest.raises(InvalidTransition) as info:
            rs.set(dst)
        assert str(info.value) == f"invalid runstate transition: '{src}' -> '{dst}'"
        assert rs.state == src


@pytest.mark.parametrize("state", RUN_STATES)
def test_vm_stop_only_stops_a_running_vm(state: str) -> None:
    """cpus.c do_vm_stop: STOP only when leaving running; otherwise nothing."""
    rs = RunState(state=state)
    events = rs.vm_stop("paused")
    if state == "running":
        assert (events, rs.state) == (["STOP"], "paused")
    else:
        assert (events, rs.state) == ([], state)


@pytest.mark.parametrize("state", [s for s in RUN_STATES if "running" in ALLOWED[s] or s == "running"])
def test_vm_start_resumes_anything_but_running(state: str) -> None:
    """cpus.c vm_prepare_start: RESUME unless already running."""
    rs = RunState(state=state)
    events = rs.vm_start()
    assert rs.state == "running"
    assert events == ([] if state == "running" else ["RESUME"])


def test_vm_stop_force_sets_the_state_silently_when_not_running() -> None:
    """cpus.c vm_stop_force_state: a VM stop if running, else just the state."""
    rs = RunState(state="paused")
    assert rs.vm_stop_force("finish-migrate") == []
    assert rs.state == "finish-migrate"
    rs = RunState(state="running")
    assert rs.vm_stop_force("finish-migrate") == ["STOP"]
