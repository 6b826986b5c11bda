"""The extension point other device models plug into (devices/qdev.py): a
`DeviceKind` registered for a type is called at realize, at device_del's unplug
request and at unrealize; a `BackendResolver` registered for a property claims
the backend it names and gets it back when the device goes (qdev-properties-system.c
set_chr/release_chr, set_netdev; hw/core/qdev.c device_set_realized, qdev_unplug)."""

from __future__ import annotations

from typing import Any

from devices.qdev import Device, Qdev, UnplugStyle
from schema.errors import GenericError
from tests.emulator import SyncVm
from tests.test_qdev_hotplug import deleted, err, ok


class Recorder:
    def __init__(self, style: UnplugStyle, refuse: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.style = style
        self.refuse = refuse

    def realize(self, qdev: Qdev, dev: Device) -> None:
        if self.refuse:
            raise GenericError(self.refuse)
        self.calls.append(("realize", dev.path))
        dev.state = "mine"

    def unrealize(self, qdev: Qdev, dev: Device) -> None:
        self.calls.append(("unrealize", dev.state))

    def unplug_request(self, qdev: Qdev, dev: Device) -> UnplugStyle:
        self.calls.append(("unplug", dev.id or ""))
        return self.style


def test_kind_sees_the_life_cycle() -> None:
    vm = SyncVm(["-machine", "pc", "-nodefaults"])
    kind = Recorder(UnplugStyle.NOW)
    vm.vm.qdev.register("virtio-balloon-pci", kind)
    ok(vm, "device_add", driver="virtio-balloon-pci", id="b")
    ok(vm, "device_del", id="b")
    assert kind.calls == [("realize", "/machine/peripheral/b"), ("unplug", "b"),
                          ("unrealize", "mine")]
    assert deleted(vm)[-1] == {"device": "b", "path": "/machine/peripheral/b"}


def test_kind_refuses_with_its_text() -> None:
    vm = SyncVm(["-machine", "pc", "-nodefaults"])
    vm.vm.qdev.register("virtio-balloon-pci",
                        Recorder(UnplugStyle.NOW, refuse="Only one balloon device is supported"))
    assert err(vm, "device_add", driver="virtio-balloon-pci", id="b")[1] == \
        "Only one balloon device is supported"
    assert err(vm, "qom-list", path="/machine/peripheral/b")[0] == "DeviceNotFound"


def test_deferred_unplug_is_completed_by_the_kind() -> None:
    from devices.qdev import complete_unplug

    vm = SyncVm(["-machine", "pc", "-nodefaults"])
    kind = Recorder(UnplugStyle.DEFERRED)
    vm.vm.qdev.register("pc-dimm", kind)
    ok(vm, "device_add", driver="pc-dimm", id="d")
    ok(vm, "device_del", id="d")
    vm.tick(10)
    assert deleted(vm) == []
    dev = vm.vm.qdev.find_id("d")
    assert dev is not None
    complete_unplug(vm.vm.qdev, dev)
    assert deleted(vm) == [{"device": "d", "path": "/machine/peripheral/d"}]


class Chardevs:
    def __init__(self) -> None:
        self.busy: set[str] = set()

    def claim(self, qdev: Qdev, dev: Device, owner: str, prop: str, value: str) -> Any:
        if value == "nosuch":
            raise GenericError(f"Property '{owner}.{prop}' can't find value '{value}'")
        if value in self.busy:
            raise GenericError(f"Property '{owner}.{prop}' can't take value '{value}': "
                               f"Device '{value}' is in use")
        self.busy.add(value)
        return value

    def release(self, qdev: Qdev, dev: Device, prop: str, claimed: Any) -> None:
        self.busy.discard(claimed)


def test_resolver_claims_and_releases() -> None:
    vm = SyncVm(["-machine", "pc", "-nodefaults", "-device", "virtio-serial-pci"])
    chardevs = Chardevs()
    vm.vm.qdev.register_resolver("chardev", chardevs)
    ok(vm, "device_add", driver="virtserialport", id="p0", chardev="c0")
    assert err(vm, "device_add", driver="virtserialport", id="p1", chardev="c0")[1] == \
        "Property 'virtserialport.chardev' can't take value 'c0': Device 'c0' is in use"
    assert err(vm, "device_add", driver="virtserialport", id="p1", chardev="nosuch")[1] \
        == "Property 'virtserialport.chardev' can't find value 'nosuch'"
    ok(vm, "device_del", id="p0")  # a virtio-serial port goes at once
    assert chardevs.busy == set()
    ok(vm, "device_add", driver="virtserialport", id="p1", chardev="c0")
