"""Memory: -m size,slots,maxmem, pc-dimm/nvdimm plug checks, the queries, the guest's
ACPI _OST answers and the HMP commands (devices/memory.py,
devices/machine_commands.py, devices/machine_kinds.py, vmm/hmp/machine_devices.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devices.memory import MemoryBackend, MemoryDevices
from devices.qdev import Device, Qdev, UnplugStyle
from devices.qom import QomObject
from schema.errors import DeviceNotFound, GenericError
from tests.emulator import SyncVm
from tests.syncvm_helpers import events as all_events
from tests.syncvm_helpers import new_vm, ok

MIB = 1 << 20
GIB = 1 << 30


def machine(vms: list[SyncVm], *argv: str) -> SyncVm:
    return new_vm(vms, *argv)


def memory(slots: int = 2, maxmem: int = 4 * GIB) -> MemoryDevices:
    mem = MemoryDevices(ram_size=128 * MIB, max_ram_size=maxmem, slots=slots, pc=True)
    mem.backends["m1"] = MemoryBackend(id="m1", size=128 * MIB)
    mem.backends["m2"] = MemoryBackend(id="m2", size=256 * MIB)
    mem.backends["odd"] = MemoryBackend(id="odd", size=128 * MIB + 512)
    return mem


def plug(mem: MemoryDevices, memdev: str | None, **kw: Any) -> Any:
    kw.setdefault("ident", f"d{len(mem.dimms)}")
    kw.setdefault("qom_path", f"/machine/peripheral/{kw['ident']}")
    return mem.plug(memdev=memdev, hotplugged=True, **kw)


# -- plug -------------------------------------------------------------------------------


def test_first_dimm_at_4_gib_slot_0() -> None:
    """pc.c pc_memory_init: the hot-plug region starts at ROUND_UP(4 GiB + RAM above
    4 GiB, 1 GiB); pc_dimm_get_free_addr fits the first DIMM at its start, slot 0
    (devices.md §8, verified: addr 4294967296)."""
    mem = memory()
    first = plug(mem, "m1")
    second = plug(mem, "m2")
    assert (first.addr, first.slot) == (4 * GIB, 0)
    assert (second.addr, second.slot) == (4 * GIB + 128 * MIB, 1)
    assert mem.query_memory_devices()[0] == {"type": "dimm", "data": {
        "id": "d0", "addr": 4 * GIB, "size": 128 * MIB, "slot": 0, "node": 0,
        "memdev": "/objects/m1", "hotplugged": True, "hotpluggable": True}}


def test_memdev_not_set() -> None:
    """pc-dimm.c pc_dimm_realize."""
    with pytest.raises(GenericError, match=r"^'memdev' property is not set$"):
        plug(memory(), None)


def test_memdev_unknown() -> None:
    """qom/object.c object_resolve_link: the link's target does not exist."""
    with pytest.raises(DeviceNotFound, match=r"^Device 'nosuch' not found$"):
        plug(memory(), "nosuch")


def test_memdev_busy() -> None:
    """pc-dimm.c pc_dimm_realize (devices.md §2.3, verified)."""
    mem = memory()
    plug(mem, "m1")
    with pytest.raises(GenericError, match=r"^can't use already busy memdev: m1$"):
        plug(mem, "m1")


def test_node_beyond_numa_nodes() -> None:
    """pc-dimm.c pc_dimm_realize: without -numa there is one node."""
    with pytest.raises(GenericError, match=r"^'DIMM property node has value 1' which exceeds "
                                           r"the number of numa nodes: 1$"):
        plug(memory(), "m1", node=1)


def test_hotplug_not_enabled_without_maxmem() -> None:
    """pc-dimm.c pc_dimm_get_free_addr: no hot-plug region."""
    mem = memory(slots=0, maxmem=128 * MIB)
    with pytest.raises(GenericError, match=r"^memory hotplug is not enabled, please add "
                                           r"maxmem option$"):
        plug(mem, "m1")


def test_unaligned_address() -> None:
    """pc-dimm.c pc_dimm_get_free_addr: the hint must be page aligned."""
    with pytest.raises(GenericError, match=r"^address must be aligned to 0x1000 bytes$"):
        plug(memory(), "m1", addr=4 * GIB + 1)


def test_unaligned_size() -> None:
    """pc-dimm.c pc_dimm_get_free_addr: the backend's size must be page aligned."""
    with pytest.raises(GenericError, match=r"^backend memory size must be multiple of "
                                           r"0x1000$"):
        plug(memory(), "odd")


def test_address_conflict() -> None:
    """pc-dimm.c pc_dimm_get_free_addr: an explicit address overlapping a DIMM."""
    mem = memory()
    plug(mem, "m1")
    with pytest.raises(GenericError, match=r"^address range conflicts with 'd0'$"):
        plug(mem, "m2", addr=4 * GIB)


def test_address_below_the_region() -> None:
    """pc-dimm.c pc_dimm_get_free_addr: `can't add memory [...] at`."""
    with pytest.raises(GenericError, match=r"^can't add memory \[0x1000:0x8000000\] at "
                                           r"0x100000000$"):
        plug(memory(), "m1", addr=0x1000)


def test_address_beyond_the_region() -> None:
    """pc-dimm.c pc_dimm_get_free_addr: the region is maxmem - size + 1 GiB a slot."""
    mem = memory(slots=1, maxmem=256 * MIB)
    with pytest.raises(GenericError, match=r"^can't add memory \[0x148000000:0x8000000\] "
                                           r"beyond 0x148000000$"):
        plug(mem, "m1", addr=0x148000000)


def test_not_enough_space() -> None:
    """pc-dimm.c pc_dimm_memory_plug: plugged DIMMs may not exceed maxmem - size."""
    mem = memory(slots=2, maxmem=256 * MIB)
    with pytest.raises(GenericError, match=r"^not enough space, currently 0x0 in use of "
                                           r"total hot pluggable 0x8000000$"):
        plug(mem, "m2")


def test_invalid_slot() -> None:
    """pc-dimm.c pc_dimm_get_free_slot."""
    with pytest.raises(GenericError, match=r"^invalid slot# 2, should be less than 2$"):
        plug(memory(), "m1", slot=2)


def test_busy_slot() -> None:
    """pc-dimm.c pc_dimm_get_free_slot."""
    mem = memory()
    plug(mem, "m1", slot=1)
    with pytest.raises(GenericError, match=r"^slot 1 is busy$"):
        plug(mem, "m2", slot=1)


def test_no_free_slots() -> None:
    """pc-dimm.c pc_dimm_get_free_slot: every slot taken."""
    mem = memory(slots=1)
    plug(mem, "m1")
    with pytest.raises(GenericError, match=r"^no free slots available$"):
        plug(mem, "m2")


def test_nvdimm_needs_the_machine_option() -> None:
    """pc.c pc_dimm_plug: nvdimm without -machine nvdimm=on."""
    with pytest.raises(GenericError, match=r"^nvdimm is not enabled: missing 'nvdimm' in "
                                           r"'-M'$"):
        plug(memory(), "m1", nvdimm=True)


def test_nvdimm_unplug_refused() -> None:
    """pc.c pc_dimm_unplug_request."""
    mem = memory()
    dimm = plug(mem, "m1", nvdimm=True, nvdimm_enabled=True)
    with pytest.raises(GenericError, match=r"^nvdimm device hot unplug is not supported "
                                           r"yet.$"):
        mem.unplug_request(dimm)


def test_no_acpi_device() -> None:
    """pc.c pc_dimm_plug: a board without ACPI."""
    mem = MemoryDevices(ram_size=128 * MIB, max_ram_size=GIB, slots=1, pc=False)
    mem.backends["m1"] = MemoryBackend(id="m1", size=128 * MIB)
    with pytest.raises(GenericError, match=r"^memory hotplug is not enabled: missing acpi "
                                           r"device$"):
        plug(mem, "m1")


# -- queries ----------------------------------------------------------------------------


def test_query_memory_size_summary(vms: list[SyncVm]) -> None:
    """qmp.c qmp_query_memory_size_summary: x86_64 links pc-dimm.c's
    get_plugged_memory_size, so plugged-memory is always there."""
    vm = machine(vms, "-S", "-m", "256")
    assert ok(vm, "query-memory-size-summary") == {"base-memory": 256 * MIB,
                                                   "plugged-memory": 0}


def test_query_acpi_ospm_status_lists_the_slots(vms: list[SyncVm]) -> None:
    """hw/acpi/memory_hotplug.c acpi_memory_ospm_status: one entry per -m slot
    (devices.md §8, verified shape)."""
    vm = machine(vms, "-S", "-m", "128,slots=2,maxmem=1G")
    assert ok(vm, "query-acpi-ospm-status") == [
        {"source": 0, "status": 0, "slot": "0", "slot-type": "DIMM"},
        {"source": 0, "status": 0, "slot": "1", "slot-type": "DIMM"}]


def test_query_acpi_ospm_status_without_acpi(vms: list[SyncVm]) -> None:
    """qmp.c qmp_query_acpi_ospm_status: no ACPI device (-machine none)."""
    vm = machine(vms, "-S", "-machine", "none")
    reply = vm.execute({"execute": "query-acpi-ospm-status"})
    assert reply is not None
    assert reply["error"] == {"class": "GenericError",
                              "desc": "command is not supported, missing ACPI device"}


def test_query_memdev_and_hmp(vms: list[SyncVm]) -> None:
    """numa.c qmp_query_memdev and hmp.c hmp_info_memdev over -object's backends."""
    vm = machine(vms, "-S", "-object", "memory-backend-ram,id=m1,size=64M")
    assert ok(vm, "query-memdev") == [{"id": "m1", "size": 64 * MIB, "merge": True,
                                       "dump": True, "prealloc": False, "policy": "default",
                                       "host-nodes": []}]
    assert ok(vm, "human-monitor-command", {"command-line": "info memdev"}) == (
        "memory backend: m1\r\n  size:  67108864\r\n  merge: true\r\n  dump: true\r\n"
        "  prealloc: false\r\n  policy: default\r\n  host nodes: \r\n\r\n")


def test_backend_in_use_cannot_be_deleted(vms: list[SyncVm]) -> None:
    """qom/object_interfaces.c user_creatable_del: a DIMM's backend is mapped
    (devices.md §3, verified); free again once the DIMM is gone."""
    vm = machine(vms, "-m", "128,slots=1,maxmem=1G", "-object",
                 "memory-backend-ram,id=m1,size=64M")
    ok(vm, "device_add", {"driver": "pc-dimm", "id": "dimm1", "memdev": "m1"})
    assert vm.execute({"execute": "object-del", "arguments": {"id": "m1"}}) == {
        "error": {"class": "GenericError", "desc": "object 'm1' is in use, can not be deleted"}}
    ok(vm, "device_del", {"id": "dimm1"})
    vm.tick(1)
    assert ok(vm, "object-del", {"id": "m1"}) == {}


def test_device_add_pc_dimm_busy_memdev(vms: list[SyncVm]) -> None:
    """pc-dimm.c pc_dimm_realize through device_add (devices.md §2.3, verified)."""
    vm = machine(vms, "-m", "128,slots=2,maxmem=1G", "-object",
                 "memory-backend-ram,id=m1,size=64M")
    ok(vm, "device_add", {"driver": "pc-dimm", "id": "dimm1", "memdev": "m1"})
    assert vm.execute({"execute": "device_add",
                       "arguments": {"driver": "pc-dimm", "id": "dimm2", "memdev": "m1"}}) == {
        "error": {"class": "GenericError", "desc": "can't use already busy memdev: m1"}}


# -- the guest's _OST answers -----------------------------------------------------------


def running(vms: list[SyncVm], *argv: str) -> SyncVm:
    return machine(vms, "-m", "128,slots=2,maxmem=1G", "-object",
                   "memory-backend-ram,id=m1,size=128M", *argv)


def events(vm: SyncVm) -> list[tuple[str, Any]]:
    return all_events(vm, "ACPI_DEVICE_OST", "DEVICE_DELETED")


def test_guest_acks_a_hotplugged_dimm(vms: list[SyncVm]) -> None:
    """hw/acpi/memory_hotplug.c acpi_memory_hotplug_write: the OS onlines the DIMM
    and writes _OST (device check, success): ACPI_DEVICE_OST with its id, after
    `memory-ost-delay` of run time, and query-acpi-ospm-status shows it."""
    vm = running(vms)
    vm.vm.devices.plug_dimm(ident="dimm1", qom_path="/machine/peripheral/dimm1",
                            memdev="m1")
    vm.tick(0.05)
    assert events(vm) == []
    vm.tick(0.1)
    info = {"device": "dimm1", "slot": "0", "slot-type": "DIMM", "source": 1, "status": 0}
    assert events(vm) == [("ACPI_DEVICE_OST", {"info": info})]
    assert ok(vm, "query-acpi-ospm-status")[0] == info
    assert ok(vm, "query-memory-size-summary")["plugged-memory"] == 128 * MIB


def test_guest_ejects_a_dimm(vms: list[SyncVm]) -> None:
    """device_del of a DIMM is a request (devices.md §8): the guest answers "ejection
    in progress", ejects (DEVICE_DELETED), then reports success for the now empty
    slot; the memory is no longer plugged."""
    vm = running(vms)
    devices = vm.vm.devices
    dimm = devices.plug_dimm(ident="dimm1", qom_path="/machine/peripheral/dimm1",
                             memdev="m1", hotplugged=False)
    devices.unplug_request_dimm(dimm)
    vm.tick(1)
    assert events(vm) == [
        ("ACPI_DEVICE_OST", {"info": {"device": "dimm1", "slot": "0", "slot-type": "DIMM",
                                      "source": 3, "status": 128}}),
        ("DEVICE_DELETED", {"device": "dimm1", "path": "/machine/peripheral/dimm1"}),
        ("ACPI_DEVICE_OST", {"info": {"slot": "0", "slot-type": "DIMM", "source": 3,
                                      "status": 0}})]
    assert ok(vm, "query-memory-devices") == []


def test_firmware_never_answers(vms: list[SyncVm]) -> None:
    """--emu-guest=firmware: only SeaBIOS runs, nothing evaluates _OST or ejects."""
    vm = running(vms, "--emu-guest=firmware")
    devices = vm.vm.devices
    dimm = devices.plug_dimm(ident="dimm1", qom_path="/machine/peripheral/dimm1",
                             memdev="m1")
    devices.unplug_request_dimm(dimm)
    vm.tick(60)
    assert events(vm) == []
    assert len(ok(vm, "query-memory-devices")) == 1


def test_guest_answers_only_while_running(vms: list[SyncVm]) -> None:
    """The guest's timers run on QEMU_CLOCK_VIRTUAL: nothing while paused (-S)."""
    vm = running(vms, "-S")
    vm.vm.devices.plug_dimm(ident="dimm1", qom_path="/machine/peripheral/dimm1",
                            memdev="m1")
    vm.tick(10)
    assert events(vm) == []
    ok(vm, "cont")
    vm.tick(1)
    assert [e for e, _ in events(vm)] == ["ACPI_DEVICE_OST"]


def test_ost_behaviour_at_run_time(vms: list[SyncVm]) -> None:
    """`memory-ost` is a named behaviour, changed at run time."""
    vm = running(vms)
    vm.machine.behaviours.set("memory-ost", "never")
    vm.vm.devices.plug_dimm(ident="dimm1", qom_path="/machine/peripheral/dimm1",
                            memdev="m1")
    vm.tick(10)
    assert events(vm) == []


# -- through qdev's DeviceKind ----------------------------------------------------------


def test_dimm_kind_realizes_and_unplugs_deferred(vms: list[SyncVm]) -> None:
    """devices.machine_kinds.DimmKind: device_add pc-dimm reaches the memory model;
    device_del is DEFERRED to the guest's eject."""
    vm = running(vms)
    qdev: Qdev = vm.vm.qdev
    kind = qdev.kinds["pc-dimm"]
    node = QomObject("pc-dimm", name="dimm1")
    QomObject("container", name="peripheral").add_child("dimm1", node)
    dev = Device("pc-dimm", "dimm1", node, props={"memdev": "m1"}, hotplugged=True)
    kind.realize(qdev, dev)
    assert ok(vm, "query-memory-devices")[0]["data"]["id"] == "dimm1"
    assert kind.unplug_request(qdev, dev) is UnplugStyle.DEFERRED
    vm.tick(1)
    assert ok(vm, "query-memory-devices") == []


# -- HMP --------------------------------------------------------------------------------


def test_hmp_info_memory_devices_and_summary(vms: list[SyncVm]) -> None:
    """hmp.c hmp_info_memory_devices and hmp_info_memory_size_summary."""
    vm = running(vms, "-S")
    vm.vm.devices.plug_dimm(ident="dimm1", qom_path="/machine/peripheral/dimm1",
                            memdev="m1", hotplugged=False)

    def hmp(line: str) -> str:
        return ok(vm, "human-monitor-command", {"command-line": line})

    assert hmp("info memory-devices") == (
        'Memory device [dimm]: "dimm1"\r\n  addr: 0x100000000\r\n  slot: 0\r\n'
        '  node: 0\r\n  size: 134217728\r\n  memdev: /objects/m1\r\n'
        '  hotplugged: false\r\n  hotpluggable: true\r\n')
    assert hmp("info memory_size_summary") == (
        "base memory: 134217728\r\nplugged memory: 134217728\r\n")
