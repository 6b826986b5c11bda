"""The simulated guest: profiles, named behaviours, and SeaBIOS's reset after a reset.

Pins ../shared/reference/runstate.md's top paragraph (a pc boots SeaBIOS, which resets
the machine once after a system reset: one `RESET {"guest": true}` once the VM runs
again, about 13 ms of run time later, so after the next `cont` when it is paused;
`-machine none` has no firmware) and the emulator's guest profiles (README's options table):
`--emu-guest=os`, a cooperative OS that powers off on the ACPI power button, and
`--emu-guest=firmware`, where nothing answers ACPI (devices.md §0: with only SeaBIOS
running, guest-driven actions never happen). The first start shows no SeaBIOS reset:
the verified start-up and -S/cont transcripts of runstate.md §2.2 and §3.7 carry none
(SeaBIOS only reboots when it finds it has run POST before, src/resume.c).
"""

from __future__ import annotations

import pytest

from schema.handlers import BehaviourError
from tests.conftest import VmHarness

OK = '{"return": {}}'
RESUME = '{"timestamp": T, "event": "RESUME"}'
STOP = '{"timestamp": T, "event": "STOP"}'
POWERDOWN = '{"timestamp": T, "event": "POWERDOWN"}'
RESET_HOST = '{"timestamp": T, "event": "RESET", "data": {"guest": false}}'
RESET_GUEST = '{"timestamp": T, "event": "RESET", "data": {"guest": true}}'
SHUTDOWN_GUEST = '{"timestamp": T, "event": "SHUTDOWN", "data": {"guest": true}}'


def test_reset_while_running_brings_one_seabios_reset(vm_cmdline) -> None:
    """runstate.md top (verified: RESET {"guest": false}, then RESET {"guest": true}
    about 13 ms later): one firmware reset per system reset, not a loop."""
    vm = vm_cmdline("-machine", "pc")
    t = vm.talk()
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    vm.tick(0.012)
    assert t.pending() == []
    vm.tick(0.001)
    assert t.pending() == [RESET_GUEST]
    vm.tick(10)
    assert t.pending() == []
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    vm.tick(0.013)
    assert t.pending() == [RESET_GUEST]


def test_a_command_right_after_the_reset_comes_first(vm_cmdline) -> None:
    """runstate.md top: SeaBIOS's RESET comes 13 ms after QEMU's, so a command the
    client sends at once is answered before it, and a reset in between starts over."""
    vm = vm_cmdline("-machine", "pc")
    t = vm.talk()
    t.send('{"execute":"system_reset"}')
    assert t.lines('{"execute":"query-name"}') == [OK]
    vm.tick(0.005)
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    vm.tick(0.010)
    assert t.pending() == []
    vm.tick(0.003)
    assert t.pending() == [RESET_GUEST]


def test_reset_while_paused_waits_for_cont(vm_cmdline) -> None:
    """runstate.md top: "after the next cont when it is paused"."""
    vm = vm_cmdline("-machine", "q35")
    t = vm.talk()
    assert t.lines('{"execute":"stop"}') == [STOP, OK]
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    vm.tick(10)
    assert t.pending() == []
    assert t.lines('{"execute":"cont"}') == [RESUME, OK]
    vm.tick(0.013)
    assert t.pending() == [RESET_GUEST]


def test_no_seabios_reset_at_the_first_start(vm_cmdline) -> None:
    """§2.2 and §3.7: neither the start-up nor the first `cont` after -S shows a RESET,
    and neither does a reset before the firmware ever ran."""
    vm = vm_cmdline("-machine", "pc", "-S")
    t = vm.talk()
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    assert t.lines('{"execute":"cont"}') == [RESUME, OK]
    vm.tick(10)
    assert t.pending() == []


def test_machine_none_has_no_firmware(vm_cmdline) -> None:
    """runstate.md top: `-M none` has no firmware and shows none."""
    vm = vm_cmdline("-machine", "none")
    t = vm.talk()
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    t.send('{"execute":"stop"}')
    t.send('{"execute":"system_reset"}')
    assert t.lines('{"execute":"cont"}') == [RESUME, OK]


def test_wakeup_is_no_reboot(vm_cmdline) -> None:
    """runstate.md §3.5: a wake-up from S3 resets the machine silently and says WAKEUP
    only: SeaBIOS resumes the OS (CMOS shutdown status 0xfe) instead of rebooting."""
    vm = vm_cmdline("-machine", "pc")
    t = vm.talk()
    vm.machine.guest_suspend()
    vm.machine.process_requests()
    t.pending()
    assert t.lines('{"execute":"system_wakeup"}') == [OK, '{"timestamp": T, "event": "WAKEUP"}']
    vm.tick(1)
    assert t.pending() == []
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    vm.tick(0.013)
    assert t.pending() == [RESET_GUEST]


def test_silent_resets_bring_no_seabios_reset(vm_cmdline) -> None:
    """qemu_system_reset(SHUTDOWN_CAUSE_NONE) (start-up, S3 wake-up, loadvm) says no
    RESET, and SeaBIOS does not reboot after it: only a reset that says RESET runs the
    firmware from the reset vector of a machine it has run on."""
    vm = vm_cmdline("-machine", "pc")
    t = vm.talk()
    vm.machine.system_reset("none")
    vm.machine.process_requests()
    vm.tick(1)
    assert t.pending() == []


def test_os_profile_powers_off(vm_cmdline) -> None:
    """--emu-guest=os (the default): POWERDOWN, then SHUTDOWN {"guest": true} half a
    second of run time later."""
    vm = vm_cmdline("-machine", "pc", "-no-shutdown")
    t = vm.talk()
    assert t.lines('{"execute":"system_powerdown"}') == [OK, POWERDOWN]
    vm.tick(0.49)
    assert t.pending() == []
    vm.tick(0.01)
    assert t.pending() == [SHUTDOWN_GUEST, STOP]


def test_firmware_profile_ignores_the_power_button(vm_cmdline) -> None:
    """--emu-guest=firmware: nothing answers ACPI, but SeaBIOS still resets."""
    vm = vm_cmdline("-machine", "pc", "--emu-guest=firmware")
    t = vm.talk()
    assert t.lines('{"execute":"system_powerdown"}') == [OK, POWERDOWN]
    vm.tick(60)
    assert t.pending() == []
    assert vm.machine.exit_code is None
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    vm.tick(0.013)
    assert t.pending() == [RESET_GUEST]


def test_command_line_overrides_the_profile(vm_cmdline) -> None:
    """--emu-behaviour=NAME=VALUE and --emu-guest-powerdown-delay change one behaviour
    each, the later option winning."""
    vm = vm_cmdline("--emu-guest=firmware", "--emu-behaviour=powerdown=shutdown",
                    "--emu-behaviour=powerdown-delay=3", "--emu-guest-powerdown-delay=2",
                    "--emu-behaviour=firmware-reboot=off")
    t = vm.talk()
    t.send('{"execute":"system_powerdown"}')
    vm.tick(1.9)
    assert t.pending() == []
    assert t.lines('{"execute":"system_reset"}') == [OK, RESET_HOST]
    assert t.lines('{"execute":"system_powerdown"}') == [OK, POWERDOWN]
    vm.tick(2)
    assert t.pending() == [SHUTDOWN_GUEST]


def test_behaviours_change_at_run_time(vm_cmdline) -> None:
    """Machine.behaviours is the one interface: set a value (text or typed), read it,
    go back to a profile's values; unknown names and bad values are refused."""
    vm = vm_cmdline("-machine", "pc")
    behaviours = vm.machine.behaviours
    behaviours.set("powerdown", "ignore")
    t = vm.talk()
    t.send('{"execute":"system_powerdown"}')
    vm.tick(5)
    assert t.pending() == []
    behaviours.set("powerdown-delay", "0.25")
    assert behaviours.get("powerdown-delay") == 0.25
    behaviours.use_profile("firmware")
    assert (behaviours.profile, behaviours.get("powerdown")) == ("firmware", "ignore")
    with pytest.raises(BehaviourError, match="unknown behaviour 'nosuch'"):
        behaviours.set("nosuch", 1)
    with pytest.raises(BehaviourError, match="expects a non-negative number of seconds"):
        behaviours.set("powerdown-delay", -1)


def test_a_subsystem_declares_a_behaviour(vm_cmdline) -> None:
    """Adding a behaviour is a declaration: it takes its profile's value."""
    from schema.handlers import Behaviour, flag

    vm = vm_cmdline("--emu-guest=firmware")
    decl = Behaviour("unplug-ack", "the guest acks device_del", flag, os=True, firmware=False)
    vm.machine.behaviours.declare(decl)
    assert vm.machine.behaviours.get("unplug-ack") is False
    with pytest.raises(ValueError, match="declared twice"):
        vm.machine.behaviours.declare(decl)


def test_a_reset_cancels_the_decided_poweroff(vm_factory) -> None:
    """A machine reset reboots the guest: the power-off it had decided on is gone,
    and a second press is honoured afresh."""
    vm: VmHarness = vm_factory(machine_type="none")
    t = vm.talk()
    t.send('{"execute":"system_powerdown"}')
    vm.tick(0.3)
    t.send('{"execute":"system_reset"}')
    vm.tick(5)
    assert t.pending() == []
    t.send('{"execute":"system_powerdown"}')
    vm.tick(0.5)
    assert t.pending() == [SHUTDOWN_GUEST]
