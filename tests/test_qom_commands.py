"""qom-list, qom-get, qom-set, qom-list-types, device-list-properties, object-add and
object-del with QEMU 2.11's answers (../shared/reference/devices.md §3; qmp.c
qmp_qom_list, qmp_qom_get, qmp_qom_set, qmp_qom_list_types,
qmp_device_list_properties, qmp_object_add; qom/object_interfaces.c
user_creatable_add_type, user_creatable_del; backends/hostmem*.c; crypto/secret.c).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from tests.emulator import SyncVm
from tests.test_qdev_hotplug import err, ok

CATALOGUE = Path(__file__).resolve().parents[1] / "schema" / "data"


def vm_of(*argv: str) -> SyncVm:
    return SyncVm(["-machine", "pc", "-nodefaults", *argv])


def test_partial_path() -> None:
    """object_resolve_path: a unique partial path works (verified with vga0)."""
    vm = vm_of("-device", "VGA,id=vga0")
    assert ok(vm, "qom-get", path="vga0", property="type") == "VGA"


def test_ambiguous_partial_path() -> None:
    vm = vm_of()
    assert err(vm, "qom-list", path="parent_bus") == ("GenericError",
                                                       "Path 'parent_bus' is ambiguous")
    assert err(vm, "qom-get", path="parent_bus", property="type") == (
        "DeviceNotFound", "Device 'parent_bus' not found")


def test_path_not_found() -> None:
    vm = vm_of()
    assert err(vm, "qom-list", path="/nosuch") == ("DeviceNotFound",
                                                   "Device '/nosuch' not found")


def test_unknown_property() -> None:
    vm = vm_of()
    assert err(vm, "qom-get", path="/machine", property="nosuch")[1] == \
        "Property '.nosuch' not found"


def test_set_read_only() -> None:
    vm = vm_of()
    assert err(vm, "qom-set", path="/machine", property="type", value="x")[1] == \
        "Insufficient permission to perform this operation"


def test_set_after_realize_named_and_anonymous() -> None:
    """qdev_prop_set_after_realize (verified)."""
    vm = vm_of("-device", "e1000,id=n", "-device", "e1000")
    assert err(vm, "qom-set", path="n", property="mac", value="x")[1] == (
        "Attempt to set property 'mac' on device 'n' (type 'e1000') after it was realized")
    assert err(vm, "qom-set", path="/machine/peripheral-anon/device[0]", property="mac",
               value="x")[1] == ("Attempt to set property 'mac' on anonymous device "
                                 "(type 'e1000') after it was realized")


def test_links_and_children() -> None:
    """child<> and link<> properties, a link's value being the target's path."""
    vm = vm_of("-device", "e1000,id=n")
    props = {p["name"]: p["type"] for p in ok(vm, "qom-list", path="n")}
    assert props["parent_bus"] == "link<bus>"
    assert ok(vm, "qom-get", path="n", property="parent_bus") == "/machine/i440fx/pci.0"
    assert {"name": "n", "type": "child<e1000>"} in ok(vm, "qom-list",
                                                       path="/machine/peripheral")


def _types(vm: SyncVm, **args: Any) -> list[str]:
    return sorted(t["name"] for t in ok(vm, "qom-list-types", **args))


def test_qom_list_types_as_recorded() -> None:
    """The four recorded qom-list-types answers, as sets (hash order)."""
    with gzip.open(CATALOGUE / "qom-list-types.json.gz", "rt") as f:
        recorded = json.load(f)
    vm = vm_of()
    for key, args in (("all", {}), ("all+abstract", {"abstract": True}),
                      ("implements=device", {"implements": "device"}),
                      ("implements=device+abstract", {"implements": "device",
                                                      "abstract": True})):
        want = sorted(json.dumps(t, sort_keys=True) for t in recorded[key]["response"]["return"])
        got = sorted(json.dumps(t, sort_keys=True) for t in ok(vm, "qom-list-types", **args))
        assert got == want, key


def test_qom_list_types_unknown_implements() -> None:
    assert ok(vm_of(), "qom-list-types", implements="nosuch") == []


def test_device_list_properties_as_recorded() -> None:
    """usb-tablet (verified) and the recorded errors of device-list-properties."""
    vm = vm_of()
    names = [p["name"] for p in ok(vm, "device-list-properties", typename="usb-tablet")]
    assert sorted(names) == sorted(["port", "attached", "display", "usb_version",
                                    "msos-desc", "serial", "head", "full-path"])
    with gzip.open(CATALOGUE / "device-list-properties-other.json.gz", "rt") as f:
        other = json.load(f)
    for group in other.values():
        for typename, reply in group.items():
            got = vm.execute({"execute": "device-list-properties",
                              "arguments": {"typename": typename}})
            assert got == reply, typename


def test_object_add_and_del_memory_backend() -> None:
    vm = vm_of()
    ok(vm, "object-add", **{"qom-type": "memory-backend-ram", "id": "m0",
                            "props": {"size": 1 << 20}})
    assert ok(vm, "qom-get", path="/objects/m0", property="size") == 1 << 20
    ok(vm, "object-del", id="m0")
    assert err(vm, "qom-list", path="/objects/m0")[0] == "DeviceNotFound"


def test_object_add_errors() -> None:
    """user_creatable_add_type's texts, in its order (verified)."""
    vm = vm_of()

    def add(typename: str, ident: str = "o", props: Any = None) -> str:
        args: dict[str, Any] = {"qom-type": typename, "id": ident}
        if props is not None:
            args["props"] = props
        return err(vm, "object-add", **args)[1]

    assert add("nosuch") == "invalid object type: nosuch"
    assert add("e1000") == "object type 'e1000' isn't supported by object-add"
    assert add("memory-backend") == "object type 'memory-backend' is abstract"
    assert add("iothread", props=[1]) == "Invalid parameter type for 'props', expected: dict"
    assert add("memory-backend-ram") == "can't create backend with size 0"
    assert add("memory-backend-file", props={"size": 4096}) == "mem-path property not set"
    assert add("secret") == "Either 'file' or 'data' must be provided"
    assert add("iothread", props={"nosuch": 1}) == "Property '.nosuch' not found"
    assert add("iothread", props={"poll-max-ns": "x"}) == \
        "Invalid parameter type for 'poll-max-ns', expected: integer"
    ok(vm, "object-add", **{"qom-type": "iothread", "id": "io0"})
    assert add("iothread", "io0") == \
        "attempt to add duplicate property 'io0' to object (type 'container')"


def test_object_del_errors() -> None:
    vm = vm_of()
    assert err(vm, "object-del", id="nosuch")[1] == "object 'nosuch' not found"
    ok(vm, "object-add", **{"qom-type": "memory-backend-ram", "id": "m0",
                            "props": {"size": 1 << 20}})
    vm.vm.qdev.objects.use("m0", "dimm0")
    assert err(vm, "object-del", id="m0")[1] == "object 'm0' is in use, can not be deleted"


def test_command_line_objects() -> None:
    """-object creates the object before the devices (vl.c object_create)."""
    vm = vm_of("-object", "memory-backend-ram,id=m1,size=2M", "-object", "secret,id=s,data=x")
    assert ok(vm, "qom-get", path="/objects/m1", property="size") == 2 << 20
    assert ok(vm, "qom-get", path="/objects/s", property="loaded") is True
