"""virtio-balloon: balloon/query-balloon and their errors, the guest driver moving
toward the target, BALLOON_CHANGE's rate limit, guest-stats and its polling interval
(devices/balloon.py, devices/machine_commands.py, devices/machine_kinds.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devices.qdev import Device
from devices.qom import QomObject
from schema.errors import GenericError
from tests.emulator import SyncVm
from tests.syncvm_helpers import execute, new_vm

MIB = 1 << 20


def machine(vms: list[SyncVm], *argv: str, balloon: bool = True) -> SyncVm:
    vm = new_vm(vms, *argv)
    if balloon:
        add_balloon(vm)
    return vm


def add_balloon(vm: SyncVm, ident: str = "balloon0") -> Device:
    """device_add virtio-balloon-pci,id=balloon0 as qdev realizes it: the proxy at
    /machine/peripheral/<id> with its virtio-backend child."""
    proxy = QomObject("virtio-balloon-pci", name=ident)
    QomObject("container", name="peripheral").add_child(ident, proxy)
    proxy.add_child("virtio-backend", QomObject("virtio-balloon-device"))
    dev = Device("virtio-balloon-pci", ident, proxy, hotplugged=True)
    vm.vm.qdev.kinds["virtio-balloon-pci"].realize(vm.vm.qdev, dev)
    return dev


def reply(vm: SyncVm, name: str, arguments: dict[str, Any] | None = None) -> Any:
    return execute(vm, name, arguments)


def changes(vm: SyncVm) -> list[int]:
    out = [e.data["actual"] for e in vm.events if e.name == "BALLOON_CHANGE"]
    vm.events.clear()
    return out


def test_query_balloon_without_a_balloon(vms: list[SyncVm]) -> None:
    """balloon.c have_balloon: DeviceNotActive (devices.md §6, verified)."""
    vm = machine(vms, "-S", balloon=False)
    assert reply(vm, "query-balloon")["error"] == {
        "class": "DeviceNotActive", "desc": "No balloon device has been activated"}


def test_balloon_without_a_balloon(vms: list[SyncVm]) -> None:
    """balloon.c qmp_balloon: the same check comes first."""
    vm = machine(vms, "-S", balloon=False)
    assert reply(vm, "balloon", {"value": 1})["error"] == {
        "class": "DeviceNotActive", "desc": "No balloon device has been activated"}


def test_balloon_target_must_be_positive(vms: list[SyncVm]) -> None:
    """balloon.c qmp_balloon: QERR_INVALID_PARAMETER_VALUE for target <= 0."""
    vm = machine(vms, "-S")
    assert reply(vm, "balloon", {"value": 0})["error"] == {
        "class": "GenericError", "desc": "Parameter 'target' expects a size"}


def test_only_one_balloon(vms: list[SyncVm]) -> None:
    """virtio-balloon.c virtio_balloon_device_realize (devices.md §2.3, verified)."""
    vm = machine(vms, "-S")
    with pytest.raises(GenericError, match=r"^Only one balloon device is supported$"):
        add_balloon(vm, "balloon1")


def test_query_balloon_starts_at_ram_size(vms: list[SyncVm]) -> None:
    """virtio-balloon.c virtio_balloon_stat: RAM less the balloon (devices.md §6:
    134217728 for 128 MiB)."""
    assert reply(machine(vms, "-S"), "query-balloon") == {"return": {"actual": 128 * MIB}}


def test_guest_moves_toward_the_target_with_rate_limited_events(vms: list[SyncVm]) -> None:
    """The guest's driver inflates at `balloon-rate` MiB/s, writing `actual` each
    step (virtio_balloon_set_config -> BALLOON_CHANGE); monitor.c
    monitor_qapi_event_queue sends the first at once, then the latest once a second."""
    vm = machine(vms, "--emu-behaviour=balloon-rate=10")
    assert reply(vm, "balloon", {"value": 100 * MIB}) == {"return": {}}
    vm.tick(0.1)
    assert changes(vm) == [127 * MIB]  # 1 MiB per 0.1 s step, sent at once
    vm.tick(0.95)
    assert changes(vm) == []  # held for the rest of the second (until t=1.1)
    vm.tick(0.1)
    assert changes(vm) == [118 * MIB]  # only the latest held one (written at t=1.0)
    vm.tick(10)
    assert reply(vm, "query-balloon") == {"return": {"actual": 100 * MIB}}
    assert changes(vm)[-1] == 100 * MIB


def test_target_is_capped_at_ram(vms: list[SyncVm]) -> None:
    """virtio-balloon.c virtio_balloon_to_target: a target above RAM deflates fully."""
    vm = machine(vms)
    reply(vm, "balloon", {"value": 64 * MIB})
    vm.tick(5)
    reply(vm, "balloon", {"value": 1 << 40})
    vm.tick(5)
    assert reply(vm, "query-balloon") == {"return": {"actual": 128 * MIB}}


def test_firmware_never_moves_the_balloon(vms: list[SyncVm]) -> None:
    """Without a guest driver (--emu-guest=firmware) `actual` never changes
    (devices.md §6: "without a guest, actual does not change")."""
    vm = machine(vms, "--emu-guest=firmware")
    reply(vm, "balloon", {"value": 64 * MIB})
    vm.tick(30)
    assert changes(vm) == []
    assert reply(vm, "query-balloon") == {"return": {"actual": 128 * MIB}}


def test_guest_does_not_move_while_paused(vms: list[SyncVm]) -> None:
    """The guest's driver runs only while the VM does (QEMU_CLOCK_VIRTUAL)."""
    vm = machine(vms, "-S")
    reply(vm, "balloon", {"value": 64 * MIB})
    vm.tick(30)
    assert reply(vm, "query-balloon") == {"return": {"actual": 128 * MIB}}


# -- guest-stats ----------------------------------------------------------------------


def test_guest_stats_unset_until_polled(vms: list[SyncVm]) -> None:
    """virtio-balloon.c balloon_stats_get_all: unset items are 2^64-1, last-update 0
    (devices.md §6, verified)."""
    vm = machine(vms, "-S")
    stats = vm.vm.devices.balloon.guest_stats()
    assert stats["last-update"] == 0
    assert set(stats["stats"].values()) == {18446744073709551615}
    assert list(stats["stats"]) == [
        "stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
        "stat-free-memory", "stat-total-memory", "stat-available-memory"]


def test_polling_interval_negative(vms: list[SyncVm]) -> None:
    """virtio-balloon.c balloon_stats_set_poll_interval (verified)."""
    dev = add_balloon(machine(vms, "-S", balloon=False))
    with pytest.raises(GenericError, match=r"^timer value must be greater than zero$"):
        dev.node.set("guest-stats-polling-interval", -1)


def test_polling_interval_too_big(vms: list[SyncVm]) -> None:
    """virtio-balloon.c balloon_stats_set_poll_interval: above UINT32_MAX (verified)."""
    dev = add_balloon(machine(vms, "-S", balloon=False))
    with pytest.raises(GenericError, match=r"^timer value is too big$"):
        dev.node.set("guest-stats-polling-interval", 4294967296)


def test_polling_interval_type(vms: list[SyncVm]) -> None:
    """qapi/qobject-input-visitor.c: visit_type_int wants an integer."""
    dev = add_balloon(machine(vms, "-S", balloon=False))
    with pytest.raises(GenericError, match=r"^Invalid parameter type for "
                                           r"'guest-stats-polling-interval', expected: "
                                           r"integer$"):
        dev.node.set("guest-stats-polling-interval", "2")


def test_guest_reports_stats_every_interval(vms: list[SyncVm]) -> None:
    """balloon_stats_set_poll_interval arms the timer at once; the guest answers the
    stats queue and last-update is the host's time of day (gettimeofday); the
    properties are aliased on the proxy and on the virtio-backend."""
    vm = machine(vms, balloon=False)
    dev = add_balloon(vm)
    dev.node.set("guest-stats-polling-interval", 2)
    assert dev.node.get("guest-stats-polling-interval") == 2
    vm.tick(0.5)
    stats = dev.node.get("guest-stats")
    assert stats["stats"]["stat-total-memory"] == 128 * MIB
    first = stats["last-update"]
    assert first == int(vm.machine.clock.wall())
    vm.tick(2)
    backend = dev.node.child("virtio-backend")
    assert backend is not None
    assert backend.get("guest-stats")["last-update"] >= first
    dev.node.set("guest-stats-polling-interval", 0)
    assert dev.node.get("guest-stats-polling-interval") == 0


def test_hmp_info_balloon_and_balloon(vms: list[SyncVm]) -> None:
    """hmp.c hmp_info_balloon (MiB) and hmp_balloon (its argument in MiB)."""
    vm = machine(vms, "--emu-behaviour=balloon-rate=1000")

    def hmp(line: str) -> str:
        return reply(vm, "human-monitor-command", {"command-line": line})["return"]

    assert hmp("info balloon") == "balloon: actual=128\r\n"
    assert hmp("balloon 64") == ""
    vm.tick(1)
    assert hmp("info balloon") == "balloon: actual=64\r\n"


def test_hmp_info_balloon_without_a_balloon(vms: list[SyncVm]) -> None:
    """hmp.c hmp_info_balloon: the error through hmp_handle_error."""
    vm = machine(vms, "-S", balloon=False)
    assert reply(vm, "human-monitor-command", {"command-line": "info balloon"}) == {
        "return": "No balloon device has been activated\r\n"}


def test_unrealize_deactivates_the_balloon(vms: list[SyncVm]) -> None:
    """virtio_balloon_device_unrealize -> qemu_remove_balloon_handler."""
    vm = machine(vms, "-S", balloon=False)
    dev = add_balloon(vm)
    vm.vm.qdev.kinds["virtio-balloon-pci"].unrealize(vm.vm.qdev, dev)
    assert reply(vm, "query-balloon")["error"]["class"] == "DeviceNotActive"


# -- through -device / device_add and qom-set --------------------------------------------


def test_balloon_from_the_command_line(vms: list[SyncVm]) -> None:
    """-device virtio-balloon (qdev_alias_table: virtio-balloon-pci) activates the
    balloon; a second one is refused (devices.md §2.3, verified)."""
    vm = machine(vms, "-S", "-device", "virtio-balloon,id=b0", balloon=False)
    assert reply(vm, "query-balloon") == {"return": {"actual": 128 * MIB}}
    assert reply(vm, "device_add", {"driver": "virtio-balloon-pci", "id": "b1"}) == {
        "error": {"class": "GenericError", "desc": "Only one balloon device is supported"}}


def test_qom_set_polling_interval(vms: list[SyncVm]) -> None:
    """qom-set guest-stats-polling-interval on the proxy (virtio-pci.c aliases the
    balloon's properties): the setter's texts, and the stats once the guest polled."""
    vm = machine(vms, "-device", "virtio-balloon,id=b0", balloon=False)
    path = "/machine/peripheral/b0"
    assert reply(vm, "qom-set", {"path": path, "property": "guest-stats-polling-interval",
                                 "value": -1})["error"]["desc"] == (
        "timer value must be greater than zero")
    assert reply(vm, "qom-set", {"path": path, "property": "guest-stats-polling-interval",
                                 "value": 3}) == {"return": {}}
    vm.tick(0.1)
    stats = reply(vm, "qom-get", {"path": path, "property": "guest-stats"})["return"]
    assert stats["stats"]["stat-total-memory"] == 128 * MIB
    assert reply(vm, "qom-get", {"path": path,
                                 "property": "guest-stats-polling-interval"}) == {"return": 3}
