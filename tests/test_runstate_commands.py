"""Run-state commands, guest actions and their events, in QEMU 2.11's order.

Source: ../shared/reference/runstate.md (QEMU 2.11.0 qmp.c qmp_stop/qmp_cont/
qmp_system_*, vl.c main_loop_should_exit, qemu_system_guest_panicked,
hw/watchdog/watchdog.c) — each test names its section. These tests set run states and
trigger guest actions from inside the machine; the conversations a client can have
(the §3.7 summary, -no-reboot, the simulated guest's power button) are golden
transcripts in tests/golden/. The machine is a pc unless a test says otherwise, so
SeaBIOS's own `RESET {"guest": true}` follows every system reset once the VM runs
again (runstate.md, top paragraph: "after a system reset, one RESET {"guest": true}
once the VM runs again"); on `-machine none` the transcripts are exactly those of the
sections.
"""

from __future__ import annotations

import pytest

from tests.conftest import VmHarness

STOP = '{"timestamp": T, "event": "STOP"}'
RESUME = '{"timestamp": T, "event": "RESUME"}'
OK = '{"return": {}}'


def reset_event(guest: bool) -> str:
    return f'{{"timestamp": T, "event": "RESET", "data": {{"guest": {str(guest).lower()}}}}}'


def shutdown_event(guest: bool) -> str:
    return f'{{"timestamp": T, "event": "SHUTDOWN", "data": {{"guest": {str(guest).lower()}}}}}'


def status(vm: VmHarness) -> str:
    return vm.machine.runstate.state


@pytest.mark.parametrize("state", ["prelaunch", "paused", "shutdown", "suspended"])
def test_stop_is_silent_when_not_running(vm_factory, state: str) -> None:
    """§3.1: every state but running: {"return": {}}, no event, state unchanged."""
    vm = vm_factory(start_paused=True)
    vm.machine.runstate.state = state
    assert vm.talk().lines('{"execute":"stop"}') == [OK]
    assert status(vm) == state


@pytest.mark.parametrize("state", ["shutdown", "internal-error"])
def test_cont_needs_a_reset(vm_factory, state: str) -> None:
    """§3.2 step 2: `Resetting the Virtual Machine is required`."""
    vm = vm_factory(start_paused=True)
    vm.machine.runstate.state = state
    assert vm.talk().execute("cont") == {"error": {
        "class": "GenericError", "desc": "Resetting the Virtual Machine is required"}}


@pytest.mark.parametrize("state", ["prelaunch", "paused", "postmigrate", "io-error",
                                   "watchdog", "guest-panicked", "debug"])
def test_cont_resumes(vm_factory, state: str) -> None:
    """§3.2 step 6: RESUME, then the reply; state running."""
    vm = vm_factory(start_paused=True)
    vm.machine.runstate.state = state
    assert vm.talk().lines('{"execute":"cont"}') == [RESUME, OK]
    assert status(vm) == "running"


def test_cont_in_suspended_does_nothing(vm_factory) -> None:
    """§3.2 step 3: stays suspended (use system_wakeup)."""
    vm = vm_factory()
    vm.machine.guest_suspend()
    vm.machine.process_requests()
    assert vm.talk().lines('{"execute":"cont"}') == [OK]
    assert status(vm) == "suspended"


def test_inmigrate_stop_and_cont_only_set_autostart(vm_factory) -> None:
    """§3.1/§3.2/§6: in inmigrate, stop clears and cont sets autostart, silently;
    system_reset still says RESET but the state stays inmigrate."""
    vm = vm_factory(incoming="defer")
    t = vm.talk()
    assert status(vm) == "inmigrate"
    assert t.lines('{"execute":"stop"}') == [OK]
    assert vm.machine.autostart is False
    assert t.lines('{"execute":"cont"}') == [OK]
    assert vm.machine.autostart is True
    assert t.lines('{"execute":"system_reset"}') == [OK, reset_event(False)]
    assert status(vm) == "inmigrate"


@pytest.mark.parametrize("state", ["paused", "shutdown", "suspended", "guest-panicked",
                                   "watchdog", "io-error", "internal-error", "postmigrate",
                                   "debug"])
def test_reset_leaves_stopped_vms_in_prelaunch(vm_factory, state: str) -> None:
    """§3.3: machine reset, RESET {"guest": false}; not running -> prelaunch."""
    vm = vm_factory(start_paused=True)
    vm.machine.runstate.state = state
    assert vm.talk().lines('{"execute":"system_reset"}') == [OK, reset_event(False)]
    assert status(vm) == "prelaunch"


@pytest.mark.parametrize("state", ["prelaunch", "paused", "running"])
def test_powerdown_in_any_state(vm_factory, state: str) -> None:
    """§3.4: POWERDOWN after the reply, in any state."""
    vm = vm_factory(start_paused=True)
    vm.machine.runstate.state = state
    assert vm.talk().lines('{"execute":"system_powerdown"}') == [
        OK, '{"timestamp": T, "event": "POWERDOWN"}']


def test_wakeup_from_suspend(vm_factory) -> None:
    """§3.5/§4.3: SUSPEND (no STOP); system_wakeup: running before the reply, then
    WAKEUP with no RESET, RESUME or STOP."""
    vm = vm_factory()
    t = vm.talk()
    vm.machine.guest_suspend()
    vm.machine.process_requests()
    assert t.pending() == ['{"timestamp": T, "event": "SUSPEND"}']
    assert status(vm) == "suspended"
    assert t.lines('{"execute":"system_wakeup"}') == [OK, '{"timestamp": T, "event": "WAKEUP"}']
    assert status(vm) == "running"


def test_suspend_twice_is_ignored(vm_factory) -> None:
    """§4.3: a suspend request while suspended is ignored."""
    vm = vm_factory()
    t = vm.talk()
    vm.machine.guest_suspend()
    vm.machine.process_requests()
    vm.machine.guest_suspend()
    vm.machine.process_requests()
    assert t.pending() == ['{"timestamp": T, "event": "SUSPEND"}']


def test_guest_poweroff_exits(vm_factory) -> None:
    """§4.1 default: SHUTDOWN {"guest": true}, exit."""
    vm = vm_factory()
    t = vm.talk()
    vm.machine.guest_poweroff()
    vm.machine.process_requests()
    assert t.pending() == [shutdown_event(True)]
    assert vm.machine.exit_code == 0


def test_guest_poweroff_with_no_shutdown(vm_factory) -> None:
    """§4.1 -no-shutdown: SHUTDOWN, STOP, state shutdown; cont refused; reset ->
    RESET {"guest": false} and prelaunch; then cont -> RESUME."""
    vm = vm_factory(no_shutdown=True)
    t = vm.talk()
    vm.machine.guest_poweroff()
    vm.machine.process_requests()
    assert t.pending() == [shutdown_event(True), STOP]
    assert status(vm) == "shutdown"
    assert t.execute("cont")["error"]["desc"] == "Resetting the Virtual Machine is required"
    assert t.lines('{"execute":"stop"}') == [OK]
    assert t.lines('{"execute":"system_reset"}') == [OK, reset_event(False)]
    assert status(vm) == "prelaunch"
    assert t.lines('{"execute":"cont"}') == [RESUME, OK]
    vm.tick(0.013)
    assert t.pending() == [reset_event(True)]  # SeaBIOS, 13 ms later (runstate.md top)


def test_guest_reset(vm_factory) -> None:
    """§4.2: RESET {"guest": true}, still running (on a pc SeaBIOS's own follows,
    runstate.md top); with -no-reboot a guest shutdown."""
    vm = vm_factory(machine_type="none")
    t = vm.talk()
    vm.machine.guest_reset()
    vm.machine.process_requests()
    assert t.pending() == [reset_event(True)]
    assert status(vm) == "running"
    vm = vm_factory()
    t = vm.talk()
    vm.machine.guest_reset()
    vm.machine.process_requests()
    vm.tick(0.013)
    assert t.pending() == [reset_event(True), reset_event(True)]
    vm = vm_factory(no_reboot=True)
    t = vm.talk()
    vm.machine.guest_reset()
    vm.machine.process_requests()
    assert t.pending() == [shutdown_event(True)]


def test_guest_suspend_to_disk(vm_factory) -> None:
    """§4.4: SUSPEND_DISK, then SHUTDOWN {"guest": true}."""
    vm = vm_factory()
    t = vm.talk()
    vm.machine.guest_suspend_disk()
    vm.machine.process_requests()
    assert t.pending() == ['{"timestamp": T, "event": "SUSPEND_DISK"}', shutdown_event(True)]


def test_guest_panic_default(vm_factory) -> None:
    """§4.5 default: GUEST_PANICKED pause, STOP, GUEST_PANICKED poweroff, SHUTDOWN, exit."""
    vm = vm_factory()
    t = vm.talk()
    vm.machine.guest_panicked()
    vm.machine.process_requests()
    assert t.pending() == [
        '{"timestamp": T, "event": "GUEST_PANICKED", "data": {"action": "pause"}}', STOP,
        '{"timestamp": T, "event": "GUEST_PANICKED", "data": {"action": "poweroff"}}',
        shutdown_event(True)]
    assert vm.machine.exit_code == 0


def test_guest_panic_with_no_shutdown_and_hyperv_info(vm_factory) -> None:
    """§4.5 -no-shutdown: pause + STOP only; `info` keys in hash order."""
    vm = vm_factory(no_shutdown=True)
    t = vm.talk()
    vm.machine.guest_panicked({"type": "hyper-v", "arg1": 1, "arg2": 2, "arg3": 3,
                               "arg4": 4, "arg5": 5})
    assert t.pending() == [
        '{"timestamp": T, "event": "GUEST_PANICKED", "data": {"action": "pause", "info": '
        '{"arg5": 5, "arg4": 4, "arg3": 3, "arg2": 2, "arg1": 1, "type": "hyper-v"}}}', STOP]
    assert status(vm) == "guest-panicked"
    assert t.lines('{"execute":"cont"}') == [RESUME, OK]


@pytest.mark.parametrize(("action", "after", "state"), [
    ("reset", [reset_event(True), reset_event(True)], "running"),  # the 2nd: SeaBIOS
    ("shutdown", ['{"timestamp": T, "event": "POWERDOWN"}'], "running"),
    ("pause", [STOP], "watchdog"),
    ("debug", [], "running"),
    ("none", [], "running"),
    ("inject-nmi", [], "running"),
])
def test_watchdog_actions(vm_factory, action: str, after: list[str], state: str) -> None:
    """§4.6: WATCHDOG {"action": A} first, then the action's consequence (after a
    reset, SeaBIOS's own RESET: runstate.md top)."""
    vm = vm_factory()
    t = vm.talk()
    assert t.lines({"execute": "watchdog-set-action", "arguments": {"action": action}}) == [OK]
    vm.machine.watchdog_expired()
    vm.machine.process_requests()
    vm.tick(0.013)  # SeaBIOS resets 13 ms after a reset (runstate.md top)
    assert t.pending() == [
        f'{{"timestamp": T, "event": "WATCHDOG", "data": {{"action": "{action}"}}}}', *after]
    assert status(vm) == state


def test_watchdog_poweroff_exits_without_shutdown_event(vm_factory) -> None:
    """§4.6: poweroff: immediate exit, no SHUTDOWN."""
    vm = vm_factory()
    t = vm.talk()
    t.send({"execute": "watchdog-set-action", "arguments": {"action": "poweroff"}})
    vm.machine.watchdog_expired()
    vm.machine.process_requests()
    assert t.pending() == ['{"timestamp": T, "event": "WATCHDOG", "data": {"action": "poweroff"}}']
    assert vm.machine.exit_code == 0


def test_watchdog_set_action_rejects_unknown(vm_factory) -> None:
    """devices.md §12: unknown action -> Invalid parameter '<a>'."""
    assert vm_factory().talk().execute("watchdog-set-action", {"action": "foo"}) == {
        "error": {"class": "GenericError", "desc": "Invalid parameter 'foo'"}}
