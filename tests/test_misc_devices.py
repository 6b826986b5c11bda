"""The machine's other devices: watchdogs the guest lets fire, pvpanic and
GUEST_PANICKED, rtc-reset-reinjection, query-tpm*, rocker, Xen and COLO answered as
a 2.11 x86_64 without them (devices/misc.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devices.host import RecordingDeviceHost
from devices.misc import I6300esb
from devices.qdev import Device
from devices.qom import QomObject
from tests.emulator import SyncVm
from tests.syncvm_helpers import events, execute, new_vm


def machine(vms: list[SyncVm], *argv: str) -> SyncVm:
    return new_vm(vms, *argv)


def names(vm: SyncVm) -> list[tuple[str, Any]]:
    return events(vm)


# -- QMP commands of absent devices -------------------------------------------------------


def test_rtc_reset_reinjection(vms: list[SyncVm]) -> None:
    """hw/timer/mc146818rtc.c qmp_rtc_reset_reinjection: x86 has it; it only clears
    the coalesced interrupt counts."""
    assert execute(machine(vms, "-S"), "rtc-reset-reinjection") == {"return": {}}


def test_query_tpm_without_tpmdev(vms: list[SyncVm]) -> None:
    """tpm.c qmp_query_tpm: no -tpmdev, no backend."""
    assert execute(machine(vms, "-S"), "query-tpm") == {"return": []}


def test_query_tpm_types_and_models(vms: list[SyncVm]) -> None:
    """tpm.c qmp_query_tpm_types/models: the recorded binary's (catalogue)."""
    vm = machine(vms, "-S")
    assert execute(vm, "query-tpm-types") == {"return": ["passthrough", "emulator"]}
    assert execute(vm, "query-tpm-models") == {"return": ["tpm-tis"]}


@pytest.mark.parametrize(("command", "arguments"), [
    ("query-rocker", {"name": "sw1"}), ("query-rocker-ports", {"name": "sw1"}),
    ("query-rocker-of-dpa-flows", {"name": "sw1"}),
    ("query-rocker-of-dpa-groups", {"name": "sw1", "type": 0}),
])
def test_rocker_not_found(vms: list[SyncVm], command: str, arguments: dict[str, Any]) -> None:
    """hw/net/rocker/rocker.c rocker_find finds no switch (x86_64 builds rocker)."""
    assert execute(machine(vms, "-S"), command, arguments)["error"] == {
        "class": "GenericError", "desc": "rocker sw1 not found"}


def test_xen_set_global_dirty_log(vms: list[SyncVm]) -> None:
    """stubs/xen-hvm.c: a no-op without Xen."""
    assert execute(machine(vms, "-S"), "xen-set-global-dirty-log",
                   {"enable": True}) == {"return": {}}


def test_xen_replication(vms: list[SyncVm]) -> None:
    """migration/colo.c with CONFIG_REPLICATION (configure's default): no replication
    state is registered, so starting, stopping, checkpointing succeed and the status
    has no error."""
    vm = machine(vms, "-S")
    assert execute(vm, "xen-set-replication", {"enable": True, "primary": True}) == {
        "return": {}}
    assert execute(vm, "xen-set-replication", {"enable": False, "primary": True,
                                               "failover": True}) == {"return": {}}
    assert execute(vm, "query-xen-replication-status") == {"return": {"error": False}}
    assert execute(vm, "xen-colo-do-checkpoint") == {"return": {}}


def test_xen_replication_failover_only_when_stopping(vms: list[SyncVm]) -> None:
    """migration/colo.c qmp_xen_set_replication."""
    vm = machine(vms, "-S")
    assert execute(vm, "xen-set-replication", {"enable": True, "primary": False,
                                               "failover": True})["error"] == {
        "class": "GenericError",
        "desc": "Parameter 'failover' is only for stopping replication"}


def test_x_colo_lost_heartbeat(vms: list[SyncVm]) -> None:
    """migration/colo-failover.c: not in COLO mode -> QERR_FEATURE_DISABLED."""
    assert execute(machine(vms, "-S"), "x-colo-lost-heartbeat")["error"] == {
        "class": "GenericError", "desc": "The feature 'colo' is not enabled"}


def test_hmp_info_tpm_and_rocker(vms: list[SyncVm]) -> None:
    """hmp.c hmp_info_tpm (nothing without backends) and hmp_rocker."""
    vm = machine(vms, "-S")

    def hmp(line: str) -> str:
        return execute(vm, "human-monitor-command", {"command-line": line})["return"]

    assert hmp("info tpm") == ""
    assert hmp("info rocker sw0") == "rocker sw0 not found\r\n"


# -- watchdogs ----------------------------------------------------------------------------


def test_i6300esb_two_stages() -> None:
    """wdt_i6300esb.c i6300esb_restart_timer: each stage is (preload << 15) * 30 ns at
    the 1 kHz scale; the driver's heartbeat << 9 makes the two stages together
    2 * 30 * 2^24 ns per second of heartbeat; the second stage's expiry runs the
    watchdog action."""
    host = RecordingDeviceHost()
    dog = I6300esb(host=host)
    dog.arm(10)
    stage = ((10 << 9) << 15) * 30
    host.advance(stage)
    assert host.take() == []
    host.advance(stage)
    assert host.take() == ["watchdog"]


def test_i6300esb_reset_disarms() -> None:
    """wdt_i6300esb.c i6300esb_reset: disabled, preloads back to 0xfffff."""
    host = RecordingDeviceHost()
    dog = I6300esb(host=host)
    dog.arm(1)
    dog.reset()
    host.advance(10**12)
    assert host.take() == []
    assert (dog.enabled, dog.preload) == (False, 0xFFFFF)


def i6300esb(vm: SyncVm) -> Device:
    node = QomObject("i6300esb", name="wdt0")
    QomObject("container", name="peripheral").add_child("wdt0", node)
    dev = Device("i6300esb", "wdt0", node, hotplugged=False)
    vm.vm.qdev.kinds["i6300esb"].realize(vm.vm.qdev, dev)
    return dev


def test_guest_lets_the_watchdog_fire(vms: list[SyncVm]) -> None:
    """`watchdog=starve`: the guest arms the watchdog with `watchdog-timeout` and
    stops feeding it; hw/watchdog/watchdog.c watchdog_perform_action: WATCHDOG
    first, then the action's events (reset: RESET {"guest": true}); after the reset
    the OS boots again and the watchdog fires once more (devices.md §12)."""
    vm = machine(vms, "-S", "--emu-behaviour=watchdog=starve",
                 "--emu-behaviour=watchdog-timeout=4", "--emu-behaviour=firmware-reboot=off")
    i6300esb(vm)
    execute(vm, "cont")
    names(vm)
    vm.tick(4.0)
    assert names(vm) == []
    vm.tick(0.1)
    assert names(vm) == [("WATCHDOG", {"action": "reset"}), ("RESET", {"guest": True})]
    vm.tick(4.2)
    assert [n for n, _ in names(vm)] == ["WATCHDOG", "RESET"]


def test_watchdog_action_pause(vms: list[SyncVm]) -> None:
    """watchdog-set-action pause: WATCHDOG, then STOP into the `watchdog` run state."""
    vm = machine(vms, "--emu-behaviour=watchdog=starve", "--emu-behaviour=watchdog-timeout=2")
    i6300esb(vm)
    # the OS booted at start-up, before the device existed: a reset boots it again
    execute(vm, "system_reset")
    execute(vm, "watchdog-set-action", {"action": "pause"})
    names(vm)  # the start-up RESUME
    vm.tick(3)
    assert [n for n, _ in names(vm) if n != "RESET"] == ["WATCHDOG", "STOP"]
    assert execute(vm, "query-status")["return"]["status"] == "watchdog"


def test_ib700_from_the_command_line(vms: list[SyncVm]) -> None:
    """-watchdog-action none with -device ib700: the guest writes its timeout index
    to port 0x443 (wdt_ib700.c, 30 - 2 * index seconds); WATCHDOG {"action":
    "none"} and nothing else."""
    vm = machine(vms, "-device", "ib700", "-watchdog-action", "none",
                 "--emu-behaviour=watchdog=starve", "--emu-behaviour=watchdog-timeout=6")
    names(vm)
    vm.tick(5.9)
    assert names(vm) == []
    vm.tick(0.2)
    assert names(vm) == [("WATCHDOG", {"action": "none"})]


def test_guest_without_watchdog_daemon(vms: list[SyncVm]) -> None:
    """The default `watchdog=none`: an OS that never opens the device."""
    vm = machine(vms, "-device", "ib700")
    vm.tick(120)
    assert [n for n, _ in names(vm) if n == "WATCHDOG"] == []


# -- pvpanic ------------------------------------------------------------------------------


def test_guest_panic_through_pvpanic(vms: list[SyncVm]) -> None:
    """hw/misc/pvpanic.c -> vl.c qemu_system_guest_panicked: GUEST_PANICKED pause,
    the `guest-panicked` run state (STOP), then poweroff and SHUTDOWN without
    -no-shutdown."""
    vm = machine(vms, "-device", "pvpanic", "-no-shutdown", "--emu-behaviour=panic=once",
                 "--emu-behaviour=panic-delay=2")
    names(vm)
    vm.tick(2.1)
    assert names(vm) == [("GUEST_PANICKED", {"action": "pause"}), ("STOP", None)]
    assert execute(vm, "query-status")["return"]["status"] == "guest-panicked"


def test_guest_panic_without_pvpanic_is_invisible(vms: list[SyncVm]) -> None:
    """Without pvpanic the host learns nothing of a guest panic."""
    vm = machine(vms, "--emu-behaviour=panic=once", "--emu-behaviour=panic-delay=1")
    names(vm)
    vm.tick(5)
    assert names(vm) == []
    assert execute(vm, "query-status")["return"]["status"] == "running"


# -- NMI ---------------------------------------------------------------------------------


def test_inject_nmi_reaches_a_guest_that_panics_on_it(vms: list[SyncVm]) -> None:
    """cpus.c qmp_inject_nmi -> hw/i386/pc.c x86_nmi: every CPU takes the NMI; an OS
    with unknown_nmi_panic (`nmi=panic`) panics, which pvpanic reports."""
    vm = machine(vms, "-device", "pvpanic", "-no-shutdown", "--emu-behaviour=nmi=panic")
    names(vm)
    assert execute(vm, "inject-nmi") == {"return": {}}
    assert names(vm) == [("GUEST_PANICKED", {"action": "pause"}), ("STOP", None)]


def test_inject_nmi_ignored_by_default(vms: list[SyncVm]) -> None:
    """Linux's default for an unknown NMI: a log line, nothing a monitor sees."""
    vm = machine(vms, "-device", "pvpanic")
    names(vm)
    assert execute(vm, "inject-nmi") == {"return": {}}
    assert names(vm) == []


def test_nmi_is_taken_when_the_cpus_run(vms: list[SyncVm]) -> None:
    """A pending CPU_INTERRUPT_NMI is handled once the vCPUs run again (after cont)."""
    vm = machine(vms, "-S", "-device", "pvpanic", "-no-shutdown",
                 "--emu-behaviour=nmi=panic")
    execute(vm, "inject-nmi")
    assert [n for n, _ in names(vm)] == []
    execute(vm, "cont")
    assert [n for n, _ in names(vm)] == ["RESUME", "GUEST_PANICKED", "STOP"]


def test_watchdog_action_inject_nmi(vms: list[SyncVm]) -> None:
    """hw/watchdog/watchdog.c watchdog_perform_action: inject-nmi sends WATCHDOG, then
    nmi_monitor_handle(0, ...)."""
    vm = machine(vms, "-device", "pvpanic", "-device", "ib700", "-no-shutdown",
                 "-watchdog-action", "inject-nmi", "--emu-behaviour=nmi=panic",
                 "--emu-behaviour=watchdog=starve", "--emu-behaviour=watchdog-timeout=2")
    names(vm)
    vm.tick(2.5)
    assert names(vm) == [("WATCHDOG", {"action": "inject-nmi"}),
                         ("GUEST_PANICKED", {"action": "pause"}), ("STOP", None)]
