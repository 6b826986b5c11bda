"""A Hypothesis state machine over device_add, device_del, object-add, object-del and
qom-set, with the guest's unplug behaviours changing under it.

Every request goes through `Dispatcher.execute` on a strict machine built from
QEMU's command line (`-machine pc -nodefaults` with a piix3-usb-uhci controller and
two spare drives). The model keeps which device and object ids exist, which PCI
devices wait for the guest to eject them, and whether the guest answers; rules
assert QEMU's reply or error text. Invariants after every step: every id is unique
(one /machine/peripheral child per model id), nothing deleted is still referenced
(no tree object, no PCI slot, no bus child link, no BlockBackend of a deleted disk),
query-pci agrees with the QOM tree, and every reply and event conformed to the
schema.

Sources: ../shared/reference/devices.md §2–3 (qdev-monitor.c qmp_device_add,
qmp_device_del; qom/object_interfaces.c; qmp.c qmp_qom_set;
hw/core/qdev-properties.c qdev_prop_set_after_realize).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from schema.output import check_event
from tests.emulator import SyncVm

ARGV = ["-machine", "pc", "-nodefaults", "-device", "piix3-usb-uhci,id=uhci",
        "-drive", "if=none,id=d0,driver=null-co", "-drive", "if=none,id=d1,driver=null-co",
        "--emu-strict", "--emu-behaviour=device-unplug-delay=1"]
IDS = st.sampled_from(["a", "b", "c", "n-1", "uhci"])
PCI = st.sampled_from(["e1000", "virtio-net-pci", "rtl8139"])
USB = st.sampled_from(["usb-tablet", "usb-kbd", "usb-mouse"])
OBJECT_IDS = st.sampled_from(["m0", "m1"])


class DeviceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.vm = SyncVm(ARGV)
        self.devices: dict[str, str] = {"uhci": "controller"}  # id -> pci/usb/blk
        self.pending: set[str] = set()
        self.objects: set[str] = set()
        self.drives = {"d0": None, "d1": None}  # drive -> device id using it
        self.ack = True
        self.seen = 0

    def run(self, name: str, **args: Any) -> dict[str, Any]:
        reply = self.vm.execute({"execute": name, "arguments": args})
        assert reply is not None
        return reply

    @rule(driver=PCI, ident=IDS)
    def add_pci(self, driver: str, ident: str) -> None:
        reply = self.run("device_add", driver=driver, id=ident)
        if ident in self.devices:
            assert reply["error"]["desc"] == f"Duplicate ID '{ident}' for device"
        else:
            assert reply == {"return": {}}
            self.devices[ident] = "pci"

    @rule(drive=st.sampled_from(["d0", "d1"]), ident=IDS)
    def add_disk(self, drive: str, ident: str) -> None:
        reply = self.run("device_add", driver="virtio-blk-pci", id=ident, drive=drive)
        if ident in self.devices:
            assert reply["error"]["desc"] == f"Duplicate ID '{ident}' for device"
        elif self.drives.get(drive, "gone") == "gone":
            assert reply["error"]["desc"] == \
                f"Property 'virtio-blk-device.drive' can't find value '{drive}'"
        elif self.drives[drive] is not None:
            assert reply["error"]["desc"] == \
                f"Drive '{drive}' is already in use by another device"
        else:
            assert reply == {"return": {}}
            self.devices[ident] = "blk"
            self.drives[drive] = ident

    @rule(driver=USB, ident=IDS)
    def add_usb(self, driver: str, ident: str) -> None:
        reply = self.run("device_add", driver=driver, id=ident)
        if ident in self.devices:
            assert reply["error"]["desc"] == f"Duplicate ID '{ident}' for device"
        elif "error" in reply:
            assert reply["error"]["desc"].startswith("tried to attach usb device")
        else:
            self.devices[ident] = "usb"

    @rule(ident=IDS)
    def delete(self, ident: str) -> None:
        reply = self.run("device_del", id=ident)
        kind = self.devices.get(ident)
        if kind is None:
            assert reply["error"] == {"class": "DeviceNotFound",
                                      "desc": f"Device '{ident}' not found"}
        elif kind == "controller":
            assert reply["error"]["desc"] == \
                "Device 'piix3-usb-uhci' does not support hotplugging"
        else:
            assert reply == {"return": {}}
            if kind == "usb":
                self._gone(ident)
            else:
                self.pending.add(ident)

    @rule(seconds=st.sampled_from([0.5, 2]))
    def time_passes(self, seconds: float) -> None:
        self.vm.tick(seconds)
        # the guest ejects what it was asked to (only while it acks, after 1 s)
        events = [e.data for e in self.vm.events[self.seen:] if e.name == "DEVICE_DELETED"]
        for data in events:
            if "device" in data and data["device"] in self.pending:
                self._gone(data["device"])
        if not self.ack:
            assert self.pending <= set(self.devices)

    @rule(ack=st.booleans())
    def guest_behaviour(self, ack: bool) -> None:
        self.vm.machine.behaviours.set("device-unplug", "ack" if ack else "never")
        self.ack = ack

    @rule(ident=OBJECT_IDS)
    def add_object(self, ident: str) -> None:
        reply = self.run("object-add", **{"qom-type": "memory-backend-ram", "id": ident,
                                          "props": {"size": 1 << 20}})
        if ident in self.objects:
            assert reply["error"]["desc"] == (f"attempt to add duplicate property '{ident}' "
                                              "to object (type 'container')")
        else:
            assert reply == {"return": {}}
            self.objects.add(ident)

    @rule(ident=OBJECT_IDS)
    def del_object(self, ident: str) -> None:
        reply = self.run("object-del", id=ident)
        if ident in self.objects:
            assert reply == {"return": {}}
            self.objects.discard(ident)
        else:
            assert reply["error"]["desc"] == f"object '{ident}' not found"

    @rule(ident=IDS)
    def set_property(self, ident: str) -> None:
        reply = self.run("qom-set", path=f"/machine/peripheral/{ident}", property="addr",
                         value=3)
        kind = self.devices.get(ident)
        if kind is None:
            assert reply["error"]["class"] == "DeviceNotFound"
        elif kind in ("pci", "blk", "controller"):
            assert reply["error"]["desc"].startswith(
                f"Attempt to set property 'addr' on device '{ident}'")
        else:
            assert reply["error"]["desc"] == "Property '.addr' not found"

    def _gone(self, ident: str) -> None:
        self.pending.discard(ident)
        kind = self.devices.pop(ident)
        if kind == "blk":
            drive = next(d for d, user in self.drives.items() if user == ident)
            self.drives[drive] = "gone"  # blockdev_auto_del took the -drive

    @invariant()
    def ids_unique_and_as_modelled(self) -> None:
        qdev = self.vm.vm.qdev
        peripheral = qdev.container("/machine/peripheral")
        names = [c.name for c in peripheral.children()]
        assert len(names) == len(set(names))
        assert sorted(names) == sorted(self.devices)
        assert sorted(d.id for d in qdev.devices if d.id) == sorted(self.devices)

    @invariant()
    def nothing_deleted_is_referenced(self) -> None:
        qdev = self.vm.vm.qdev
        live = {id(d.node) for d in qdev.devices}
        for bus in qdev.buses:
            for dev in bus.devices:
                assert id(dev.node) in live
            for prop in bus.node.props.values():
                if prop.link is not None and prop.name.startswith("child["):
                    target = prop.link()
                    assert target is not None and id(target) in live
        blocks = {b["device"] for b in self.run("query-block")["return"]}
        assert blocks == {d for d, user in self.drives.items() if user != "gone"}

    @invariant()
    def query_pci_agrees_with_the_tree(self) -> None:
        devices = self.run("query-pci")["return"][0]["devices"]
        pci_ids = sorted(d["qdev_id"] for d in devices if d["qdev_id"])
        assert pci_ids == sorted(i for i, k in self.devices.items()
                                 if k in ("pci", "blk", "controller"))
        for d in devices:
            if d["qdev_id"]:
                path = f"/machine/peripheral/{d['qdev_id']}"
                addr = self.run("qom-get", path=path, property="addr")["return"]
                assert addr == d["slot"] << 3 | d["function"]

    @invariant()
    def events_conform(self) -> None:
        for ev in self.vm.events[self.seen:]:
            check_event(self.vm.schema.events[ev.name], ev.data)
        self.seen = len(self.vm.events)


TestDevices = DeviceMachine.TestCase
TestDevices.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow])
