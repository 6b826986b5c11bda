"""device_add and device_del against QEMU 2.11's behaviour (../shared/reference/devices.md
§2): the tree, the buses and slots they change, DEVICE_DELETED and its timing as the
guest answers, and the error texts of §2.1–2.4, each in its own test.

Sources: qdev-monitor.c qmp_device_add, qdev_device_add, qdev_get_device_class,
qbus_find, qbus_find_recursive, qmp_device_del, find_device_state; hw/pci/pci.c
do_pci_register_device; hw/core/qdev.c device_finalize; hw/usb/bus.c usb_claim_port;
hw/core/qdev-properties.c set_pci_devfn, set_blocksize; qom/object.c.
"""

from __future__ import annotations

from typing import Any

from tests.emulator import SyncVm


def vm_of(*argv: str) -> SyncVm:
    return SyncVm(["-machine", "pc", "-nodefaults", *argv])


def ok(vm: SyncVm, name: str, **args: Any) -> Any:
    reply = vm.execute({"execute": name, "arguments": args})
    assert reply is not None and "return" in reply, reply
    return reply["return"]


def err(vm: SyncVm, name: str, **args: Any) -> tuple[str, str]:
    reply = vm.execute({"execute": name, "arguments": args})
    assert reply is not None and "error" in reply, reply
    return reply["error"]["class"], reply["error"]["desc"]


def deleted(vm: SyncVm) -> list[dict[str, Any]]:
    return [e.data for e in vm.events if e.name == "DEVICE_DELETED"]


def pci_ids(vm: SyncVm) -> list[tuple[int, int, str]]:
    return [(d["slot"], d["function"], d["qdev_id"])
            for d in ok(vm, "query-pci")[0]["devices"]]


# -- plug and unplug ------------------------------------------------------------------

def test_virtio_net_pci_takes_the_first_free_slot_and_leaves_when_the_guest_ejects() -> None:
    """do_pci_register_device: first free slot (02.0 after 00.0, 01.x); the ACPI unplug
    is a request: the device stays until the guest ejects it, then DEVICE_DELETED for
    the virtio backend first, then the proxy (device_finalize order)."""
    vm = vm_of()
    assert ok(vm, "device_add", driver="virtio-net-pci", id="net0") == {}
    assert ok(vm, "qom-get", path="/machine/peripheral/net0", property="legacy-addr") == "02.0"
    assert (2, 0, "net0") in pci_ids(vm)
    assert ok(vm, "device_del", id="net0") == {}
    assert deleted(vm) == []
    assert err(vm, "device_add", driver="virtio-net-pci", id="net0") == (
        "GenericError", "Duplicate ID 'net0' for device")
    vm.tick(1)
    assert deleted(vm) == [{"path": "/machine/peripheral/net0/virtio-backend"},
                           {"device": "net0", "path": "/machine/peripheral/net0"}]
    assert (2, 0, "net0") not in pci_ids(vm)
    assert err(vm, "qom-list", path="/machine/peripheral/net0")[0] == "DeviceNotFound"


def test_e1000_at_a_given_address() -> None:
    """set_pci_devfn: addr=5 is slot 5 function 0; anonymous devices go to
    /machine/peripheral-anon/device[N] (qdev_set_id)."""
    vm = vm_of()
    ok(vm, "device_add", driver="e1000", addr="5")
    assert ok(vm, "qom-get", path="/machine/peripheral-anon/device[0]",
              property="addr") == 40
    assert (5, 0, "") in pci_ids(vm)
    ok(vm, "device_del", id="/machine/peripheral-anon/device[0]")
    vm.tick(1)
    assert deleted(vm) == [{"path": "/machine/peripheral-anon/device[0]"}]


def test_virtio_blk_pci_with_a_drive_releases_it() -> None:
    """blockdev_auto_del: the -drive's BlockBackend goes with the device."""
    vm = vm_of("-drive", "if=none,id=d0,driver=null-co")
    ok(vm, "device_add", driver="virtio-blk-pci", id="blk0", drive="d0")
    assert [b["qdev"] for b in ok(vm, "query-block")] == [
        "/machine/peripheral/blk0/virtio-backend"]
    ok(vm, "device_del", id="blk0")
    vm.tick(1)
    assert ok(vm, "query-block") == []
    assert deleted(vm)[-1] == {"device": "blk0", "path": "/machine/peripheral/blk0"}


def test_usb_tablet_on_piix3_usb_uhci_goes_at_once() -> None:
    """USB unplug is synchronous: DEVICE_DELETED before the reply (verified with
    usb-tablet); the tablet took port 1 of the controller's bus, which its `port`
    property does not say (hw/usb/bus.c usb_claim_port never writes port_path)."""
    vm = vm_of("-device", "piix3-usb-uhci,id=uhci")
    ok(vm, "device_add", driver="usb-tablet", id="tab0")
    assert ok(vm, "qom-get", path="tab0", property="port") == ""
    assert vm.vm.qdev.find_id("tab0").props["usb-port"] == "1"
    ok(vm, "device_del", id="tab0")
    assert deleted(vm) == [{"device": "tab0", "path": "/machine/peripheral/tab0"}]


def test_usb_last_free_port_gets_a_hub() -> None:
    """usb_claim_port: with one free port left a usb-hub is chained on first; the
    device takes the hub's first port (2.1)."""
    vm = vm_of("-device", "piix3-usb-uhci,id=uhci")
    ok(vm, "device_add", driver="usb-tablet", id="t1")
    ok(vm, "device_add", driver="usb-kbd", id="k1")
    assert vm.vm.qdev.find_id("k1").props["usb-port"] == "2.1"
    hub = [d for d in vm.vm.qdev.devices if d.typename == "usb-hub"]
    assert len(hub) == 1 and hub[0].path.startswith("/machine/unattached/device[")


def test_board_numbers_follow_qemu() -> None:
    """device_set_realized: a hot-plugged hub after the board's last device (the
    -nodefaults pc board ends with the eighth smbus-eeprom, device[26])."""
    vm = vm_of("-device", "piix3-usb-uhci,id=uhci")
    ok(vm, "device_add", driver="usb-tablet", id="t1")
    ok(vm, "device_add", driver="usb-kbd", id="k1")
    assert ok(vm, "qom-get", path="/machine/unattached/device[27]", property="type") == \
        "usb-hub"


# -- the guest's answer ---------------------------------------------------------------

def test_delete_arrives_after_the_configured_delay() -> None:
    """The os guest ejects after `device-unplug-delay` seconds of run time."""
    vm = vm_of("--emu-behaviour=device-unplug-delay=3")
    ok(vm, "device_add", driver="e1000", id="n")
    ok(vm, "device_del", id="n")
    vm.tick(2.9)
    assert deleted(vm) == []
    vm.tick(0.2)
    assert deleted(vm) == [{"device": "n", "path": "/machine/peripheral/n"}]


def test_delete_at_once_is_still_after_the_reply() -> None:
    """A delay of 0: the guest ejects as soon as it runs, after the reply."""
    vm = vm_of("--emu-behaviour=device-unplug-delay=0")
    ok(vm, "device_add", driver="e1000", id="n")
    ok(vm, "device_del", id="n")
    assert deleted(vm) == []
    vm.tick(0)
    assert deleted(vm) == [{"device": "n", "path": "/machine/peripheral/n"}]


def test_a_guest_that_never_answers() -> None:
    """device-unplug=never: no DEVICE_DELETED ever; a repeated request succeeds."""
    vm = vm_of("--emu-behaviour=device-unplug=never")
    ok(vm, "device_add", driver="e1000", id="n")
    ok(vm, "device_del", id="n")
    vm.tick(3600)
    assert ok(vm, "device_del", id="n") == {}
    vm.tick(3600)
    assert deleted(vm) == []
    assert ok(vm, "qom-get", path="n", property="type") == "e1000"


def test_firmware_never_acks() -> None:
    """--emu-guest=firmware: only SeaBIOS runs, nothing ejects (verified: e1000 with
    only firmware running, no event)."""
    vm = vm_of("--emu-guest=firmware")
    ok(vm, "device_add", driver="e1000", id="n")
    ok(vm, "device_del", id="n")
    vm.tick(60)
    assert deleted(vm) == []


def test_a_paused_guest_answers_only_after_cont() -> None:
    """The guest acts only while the VM runs (QEMU_CLOCK_VIRTUAL is stopped)."""
    vm = vm_of("-S")
    ok(vm, "device_add", driver="e1000", id="n")
    ok(vm, "device_del", id="n")
    vm.tick(60)
    assert deleted(vm) == []
    ok(vm, "cont")
    vm.tick(1)
    assert deleted(vm) == [{"device": "n", "path": "/machine/peripheral/n"}]


def test_behaviour_changed_at_run_time() -> None:
    """Behaviours are data: a test changes them while the machine runs."""
    vm = vm_of("--emu-behaviour=device-unplug=never")
    ok(vm, "device_add", driver="e1000", id="n")
    vm.machine.behaviours.set("device-unplug", "ack")
    ok(vm, "device_del", id="n")
    vm.tick(1)
    assert len(deleted(vm)) == 1


# -- §2.1 device_add checks -------------------------------------------------------------

def test_id_not_well_formed() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="e1000", id="1x")[1] == \
        "Parameter 'id' expects an identifier"


def test_duplicate_id() -> None:
    vm = vm_of()
    ok(vm, "device_add", driver="e1000", id="n")
    assert err(vm, "device_add", driver="e1000", id="n")[1] == "Duplicate ID 'n' for device"


def test_driver_missing() -> None:
    vm = vm_of()
    assert err(vm, "device_add", id="n")[1] == "Parameter 'driver' is missing"


def test_unknown_model() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="nosuch")[1] == \
        "'nosuch' is not a valid device model name"


def test_abstract_model() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="pci-device")[1] == \
        "Parameter 'driver' expects non-abstract device type"


def test_not_pluggable_model() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="i440FX-pcihost")[1] == \
        "Parameter 'driver' expects pluggable device type"


def test_bus_not_found() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="e1000", bus="nosuch")[1] == \
        "Bus 'nosuch' not found"


def test_bus_path_device_not_found() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="e1000", bus="pci.0/nosuch") == (
        "DeviceNotFound", "Device 'nosuch' not found")


def test_bus_path_device_with_several_buses() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="ide-hd", bus="pci.0/piix3-ide")[1] == \
        "Device 'piix3-ide' has multiple child buses"


def test_bus_path_device_without_bus() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="e1000", bus="pci.0/i440FX")[1] == \
        "Device 'i440FX' has no child bus"


def test_bus_of_the_wrong_type() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="usb-tablet", bus="pci.0")[1] == \
        "Device 'usb-tablet' can't go on PCI bus"


def test_no_bus_of_the_type() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="usb-tablet")[1] == \
        "No 'usb-bus' bus found for device 'usb-tablet'"


def test_bus_without_hotplug_isa() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="isa-serial")[1] == \
        "Bus 'isa.0' does not support hotplugging"


def test_q35_root_bus_without_hotplug() -> None:
    vm = SyncVm(["-machine", "q35", "-nodefaults"])
    assert err(vm, "device_add", driver="e1000")[1] == \
        "Bus 'pcie.0' does not support hotplugging"


def test_slot_in_use() -> None:
    vm = vm_of("-device", "piix3-usb-uhci,addr=2")
    assert err(vm, "device_add", driver="virtio-net-pci", addr="2")[1] == \
        "PCI: slot 2 function 0 not available for virtio-net-pci, in use by piix3-usb-uhci"


def test_function_of_an_occupied_slot_when_hotplugged() -> None:
    vm = vm_of()
    ok(vm, "device_add", driver="e1000", id="n", addr="4")
    assert err(vm, "device_add", driver="e1000", addr="4.1")[1] == \
        "PCI: slot 4 function 0 already ocuppied by e1000, new func e1000 cannot be " \
        "exposed to guest."


def test_bus_full() -> None:
    """qbus_is_full: an IDE bus takes two devices ever."""
    vm = vm_of("-drive", "if=none,id=a,driver=null-co", "-drive",
               "if=none,id=b,driver=null-co", "-drive", "if=none,id=c,driver=null-co",
               "-device", "ide-hd,drive=a,bus=ide.0", "-device", "ide-hd,drive=b,bus=ide.0")
    assert err(vm, "device_add", driver="ide-hd", drive="c", bus="ide.0")[1] == \
        "Bus 'ide.0' is full"


# -- §2.2 property errors ---------------------------------------------------------------

def test_unknown_property() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="e1000", bogus="1")[1] == "Property '.bogus' not found"


def test_unparsable_value() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="virtio-net-pci", addr="zz")[1] == \
        "Property 'virtio-net-pci.addr' doesn't take value 'zz'"


def test_integer_out_of_range() -> None:
    """set_blocksize names the device by its id (a virtio proxy's inner device has none)."""
    vm = vm_of("-drive", "if=none,id=d0,driver=null-co")
    assert err(vm, "device_add", driver="virtio-blk-pci", drive="d0",
               logical_block_size="100")[1] == \
        "Property .logical_block_size doesn't take value 100 (minimum: 512, maximum: 32768)"


def test_drive_not_found() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="virtio-blk-pci", drive="nosuch")[1] == \
        "Property 'virtio-blk-device.drive' can't find value 'nosuch'"


def test_drive_in_use() -> None:
    vm = vm_of("-drive", "if=none,id=d0,driver=null-co")
    ok(vm, "device_add", driver="virtio-blk-pci", drive="d0")
    assert err(vm, "device_add", driver="virtio-blk-pci", drive="d0")[1] == \
        "Drive 'd0' is already in use by another device"


def test_drive_in_use_by_a_board_device() -> None:
    vm = vm_of("-drive", "if=ide,id=d0,driver=null-co")
    assert err(vm, "device_add", driver="virtio-blk-pci", drive="d0")[1] == (
        "Drive 'd0' is already in use because it has been automatically connected to "
        "another device (did you need 'if=none' in the drive options?)")


# -- §2.3 realize ------------------------------------------------------------------------

def test_virtio_blk_without_drive() -> None:
    vm = vm_of()
    assert err(vm, "device_add", driver="virtio-blk-pci")[1] == "drive property not set"


def test_failed_realize_frees_the_slot_and_id() -> None:
    """object_unparent after a failed realize: the id and slot are free again."""
    vm = vm_of()
    err(vm, "device_add", driver="virtio-blk-pci", id="v", addr="6")
    ok(vm, "device_add", driver="e1000", id="v", addr="6")


# -- §2.4 device_del ---------------------------------------------------------------------

def test_del_not_found() -> None:
    vm = vm_of()
    assert err(vm, "device_del", id="nosuch") == ("DeviceNotFound",
                                                  "Device 'nosuch' not found")


def test_del_not_a_device() -> None:
    vm = vm_of()
    assert err(vm, "device_del", id="/machine/unattached")[1] == \
        "/machine/unattached is not a hotpluggable device"


def test_del_bus_without_hotplug() -> None:
    vm = vm_of()
    assert err(vm, "device_del", id="/machine/unattached/device[7]")[1] == \
        "Bus 'isa.0' does not support hotplugging"


def test_del_device_not_hotpluggable() -> None:
    vm = vm_of("-device", "piix3-usb-uhci,id=u")
    assert err(vm, "device_del", id="u")[1] == \
        "Device 'piix3-usb-uhci' does not support hotplugging"


def test_block_commands_find_devices_in_the_tree() -> None:
    """block-backend.c blk_by_qdev_id: qdev's find_device_state, then the device's
    BlockBackend: a NIC has none."""
    vm = vm_of("-device", "e1000,id=n0")
    assert err(vm, "blockdev-open-tray", id="n0")[1] == \
        "Device does not have a block device backend"
    assert err(vm, "blockdev-open-tray", id="/machine/unattached")[1] == \
        "/machine/unattached is not a hotpluggable device"


def test_nics_get_default_macs_in_turn() -> None:
    """net.c qemu_macaddr_default_if_unset: 52:54:00:12:34:56, then :57, ... for the
    machine's NICs without a mac (the default -net nic took :56)."""
    vm = SyncVm(["-machine", "pc"])
    ok(vm, "device_add", driver="e1000", id="a")
    ok(vm, "device_add", driver="virtio-net-pci", id="b", mac="52:54:00:00:00:01")
    ok(vm, "device_add", driver="rtl8139", id="c")
    assert [ok(vm, "qom-get", path=i, property="mac") for i in "abc"] == [
        "52:54:00:12:34:57", "52:54:00:00:00:01", "52:54:00:12:34:58"]
