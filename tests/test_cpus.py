"""CPUs: the -smp topology, query-cpus, query-hotpluggable-cpus, cpu-add, device_add's
CPU checks, unplug refusals, and the HMP commands of CPUs (devices/cpus.py,
devices/machine_commands.py, vmm/hmp/machine_devices.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devices.cpus import Cpus, Topology, cpu_type
from schema.errors import GenericError
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, hmp, new_vm, ok


def machine(vms: list[SyncVm], *argv: str) -> SyncVm:
    return new_vm(vms, "-S", *argv)


def counter() -> Any:
    n = iter(range(100))
    return lambda: f"/machine/unattached/device[{next(n)}]"


# -- topology ---------------------------------------------------------------------------


def test_apic_ids_follow_the_topology() -> None:
    """include/hw/i386/topology.h x86_apicid_from_cpu_idx: each level takes as many
    bits as its count needs, so 3 cores leave a hole (APIC ID 3 is unused)."""
    topo = Topology(cpus=2, sockets=2, cores=3, threads=2, max_cpus=12)
    assert [topo.apic_id(i) for i in range(8)] == [0, 1, 2, 3, 4, 5, 8, 9]
    assert topo.ids(9) == (1, 0, 1)
    assert topo.apic_id_from_ids(1, 2, 1) == 13


def test_query_cpus_of_smp_2() -> None:
    """cpus.c qmp_query_cpus on pc (devices.md §7, verified members): `current` only
    for CPU 0, the APs halted at reset (x86_cpu_reset), pc = CS base + EIP of the
    reset vector, props from pc_possible_cpu_arch_ids."""
    cpus = Cpus.create(topology=Topology(cpus=2, sockets=2, max_cpus=2),
                       machine_type="pc-i440fx-2.11", cpu_type="qemu64-x86_64-cpu", pc=True,
                       thread_id=7, boot_cpus=2, unattached_path=counter())
    assert cpus.query_cpus() == [
        {"CPU": 0, "current": True, "halted": False, "qom_path": "/machine/unattached/device[0]",
         "thread_id": 7, "props": {"socket-id": 0, "core-id": 0, "thread-id": 0}, "arch": "x86",
         "pc": 4294967280},
        {"CPU": 1, "current": False, "halted": True, "qom_path": "/machine/unattached/device[1]",
         "thread_id": 7, "props": {"socket-id": 1, "core-id": 0, "thread-id": 0}, "arch": "x86",
         "pc": 4294967280}]


def test_query_cpus_from_the_command_line(vms: list[SyncVm]) -> None:
    """-smp 4,sockets=1,cores=2,threads=2 (vl.c smp_parse): props per
    pc_possible_cpu_arch_ids; the reply conforms to the schema (strict machine)."""
    vm = machine(vms, "-smp", "4,sockets=1,cores=2,threads=2")
    cpus = ok(vm, "query-cpus")
    assert [c["props"] for c in cpus] == [
        {"socket-id": 0, "core-id": 0, "thread-id": 0},
        {"socket-id": 0, "core-id": 0, "thread-id": 1},
        {"socket-id": 0, "core-id": 1, "thread-id": 0},
        {"socket-id": 0, "core-id": 1, "thread-id": 1}]
    assert [c["current"] for c in cpus] == [True, False, False, False]


def test_machine_none_has_no_props(vms: list[SyncVm]) -> None:
    """-machine none has no cpu_index_to_instance_props (hw/core/null-machine.c), so
    query-cpus leaves out `props`; without -cpu it has no CPU at all."""
    assert ok(machine(vms, "-machine", "none"), "query-cpus") == []
    cpus = ok(machine(vms, "-machine", "none", "-cpu", "qemu64"), "query-cpus")
    assert len(cpus) == 1 and "props" not in cpus[0]


def test_query_hotpluggable_cpus_highest_slot_first(vms: list[SyncVm]) -> None:
    """hw/core/machine.c machine_query_hotpluggable_cpus prepends each slot: the
    highest first (devices.md §7, verified); qom-path only for present CPUs."""
    vm = machine(vms, "-smp", "1,maxcpus=3")
    assert ok(vm, "query-hotpluggable-cpus") == [
        {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
         "props": {"socket-id": 2, "core-id": 0, "thread-id": 0}},
        {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
         "props": {"socket-id": 1, "core-id": 0, "thread-id": 0}},
        {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
         "props": {"socket-id": 0, "core-id": 0, "thread-id": 0},
         "qom-path": "/machine/unattached/device[0]"}]


def test_query_hotpluggable_cpus_not_on_machine_none(vms: list[SyncVm]) -> None:
    """monitor.c qmp_query_hotpluggable_cpus: QERR_FEATURE_DISABLED without
    mc->has_hotpluggable_cpus."""
    vm = machine(vms, "-machine", "none")
    assert error(vm, "query-hotpluggable-cpus") == (
        "GenericError", "The feature 'query-hotpluggable-cpus' is not enabled")


def test_cpu_type_of_the_board() -> None:
    """pc.c pc_machine_class_init (qemu64) and pc_piix.c isapc_machine_options (486)."""
    assert cpu_type("pc-i440fx-2.11", None) == "qemu64-x86_64-cpu"
    assert cpu_type("isapc", None) == "486-x86_64-cpu"
    assert cpu_type("pc-q35-2.11", "Haswell,+vmx") == "Haswell-x86_64-cpu"


# -- cpu-add ----------------------------------------------------------------------------


def test_cpu_add_fills_a_free_slot(vms: list[SyncVm]) -> None:
    """pc.c pc_hot_add_cpu: the new CPU shows in query-cpus, halted until the guest
    starts it, and its slot gets a qom-path in query-hotpluggable-cpus."""
    vm = machine(vms, "-smp", "1,maxcpus=4")
    assert ok(vm, "cpu-add", {"id": 2}) == {}
    cpus = ok(vm, "query-cpus")
    assert [(c["CPU"], c["halted"]) for c in cpus] == [(0, False), (2, True)]
    slots = ok(vm, "query-hotpluggable-cpus")
    assert [("qom-path" in s) for s in slots] == [False, True, False, True]


def test_cpu_add_negative_id(vms: list[SyncVm]) -> None:
    """pc.c pc_hot_add_cpu: `Invalid CPU id: -1`."""
    vm = machine(vms, "-smp", "1,maxcpus=4")
    assert error(vm, "cpu-add", {"id": -1}) == ("GenericError", "Invalid CPU id: -1")


def test_cpu_add_outside_maxcpus(vms: list[SyncVm]) -> None:
    """pc.c pc_cpu_pre_plug: no slot has that APIC ID (devices.md §7, verified)."""
    vm = machine(vms, "-smp", "1,maxcpus=4")
    assert error(vm, "cpu-add", {"id": 9}) == (
        "GenericError", "Invalid CPU [socket: 9, core: 0, thread: 0] with APIC ID 9, "
        "valid index range 0:3")


def test_cpu_add_existing(vms: list[SyncVm]) -> None:
    """pc.c pc_cpu_pre_plug: `CPU[%d] with APIC ID %u exists` (verified)."""
    vm = machine(vms, "-smp", "2,maxcpus=4")
    assert error(vm, "cpu-add", {"id": 1}) == ("GenericError", "CPU[1] with APIC ID 1 exists")


def test_cpu_add_apic_id_too_large(vms: list[SyncVm]) -> None:
    """pc.c pc_hot_add_cpu: an APIC ID at or above ACPI_CPU_HOTPLUG_ID_LIMIT (256)."""
    vm = machine(vms, "-smp", "1,maxcpus=4")
    assert error(vm, "cpu-add", {"id": 300}) == (
        "GenericError", "Unable to add CPU: 300, resulting APIC ID (300) is too large")


def test_cpu_add_not_supported_on_old_and_none_machines(vms: list[SyncVm]) -> None:
    """qmp.c qmp_cpu_add: "Not supported" without mc->hot_add_cpu (-machine none;
    pc_piix.c pc_i440fx_1_4_machine_options and older)."""
    assert error(machine(vms, "-machine", "none"), "cpu-add", {"id": 1}) == (
        "GenericError", "Not supported")
    assert error(machine(vms, "-machine", "pc-1.2", "-smp", "1,maxcpus=2"), "cpu-add",
                 {"id": 1}) == ("GenericError", "Not supported")


def test_qmp_cpu_does_nothing(vms: list[SyncVm]) -> None:
    """qmp.c qmp_cpu: "Just do nothing", whatever the index."""
    assert ok(machine(vms), "cpu", {"index": 5}) == {}


# -- device_add of a CPU (pc_cpu_pre_plug) -------------------------------------------------


@pytest.fixture
def cpus4() -> Cpus:
    return Cpus.create(topology=Topology(cpus=1, sockets=2, cores=2, threads=1, max_cpus=4),
                       machine_type="pc-i440fx-2.11", cpu_type="qemu64-x86_64-cpu", pc=True,
                       thread_id=1, boot_cpus=1, unattached_path=counter())


def test_device_add_cpu_wrong_type(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: only the machine's CPU type."""
    with pytest.raises(GenericError, match=r"^Invalid CPU type, expected cpu type: "
                                           r"'qemu64-x86_64-cpu'$"):
        cpus4.pre_plug("Haswell-x86_64-cpu", {})


def test_device_add_cpu_socket_unset(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: `CPU socket-id is not set`."""
    with pytest.raises(GenericError, match=r"^CPU socket-id is not set$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"core-id": 0, "thread-id": 0})


def test_device_add_cpu_socket_out_of_range(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: max_socket = (max_cpus - 1) / threads / cores."""
    with pytest.raises(GenericError, match=r"^Invalid CPU socket-id: 2 must be in range 0:1$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"socket-id": 2, "core-id": 0, "thread-id": 0})


def test_device_add_cpu_core_unset(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: `CPU core-id is not set`."""
    with pytest.raises(GenericError, match=r"^CPU core-id is not set$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"socket-id": 0, "thread-id": 0})


def test_device_add_cpu_core_out_of_range(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: core-id below smp_cores."""
    with pytest.raises(GenericError, match=r"^Invalid CPU core-id: 2 must be in range 0:1$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"socket-id": 0, "core-id": 2, "thread-id": 0})


def test_device_add_cpu_thread_unset(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: `CPU thread-id is not set`."""
    with pytest.raises(GenericError, match=r"^CPU thread-id is not set$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"socket-id": 0, "core-id": 0})


def test_device_add_cpu_thread_out_of_range(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: thread-id below smp_threads."""
    with pytest.raises(GenericError, match=r"^Invalid CPU thread-id: 1 must be in range 0:0$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"socket-id": 0, "core-id": 0, "thread-id": 1})


def test_device_add_cpu_into_a_busy_slot(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: the slot of socket 0 core 0 holds the boot CPU."""
    with pytest.raises(GenericError, match=r"^CPU\[0\] with APIC ID 0 exists$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"socket-id": 0, "core-id": 0, "thread-id": 0})


def test_device_add_cpu_apic_id_mismatch(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug: a given apic-id decides; a socket-id that disagrees
    is refused."""
    with pytest.raises(GenericError, match=r"^property socket-id: 0 doesn't match set "
                                           r"apic-id: 0x3 \(socket-id: 1\)$"):
        cpus4.pre_plug("qemu64-x86_64-cpu", {"apic-id": 3, "socket-id": 0})


def test_device_add_cpu_plugs_into_its_slot(cpus4: Cpus) -> None:
    """pc.c pc_cpu_pre_plug/pc_cpu_plug: socket 1 core 1 is slot 3, APIC ID 3."""
    index, apic = cpus4.pre_plug("qemu64-x86_64-cpu",
                                 {"socket-id": 1, "core-id": 1, "thread-id": 0})
    assert (index, apic) == (3, 3)
    cpu = cpus4.plug(index, apic, qom_path="/machine/peripheral/cpu3", ident="cpu3")
    assert cpus4.query_hotpluggable_cpus()[0]["qom-path"] == "/machine/peripheral/cpu3"
    assert cpu.halted


def test_unplug_of_the_boot_cpu_is_refused(cpus4: Cpus) -> None:
    """pc.c pc_cpu_unplug_request_cb: `Boot CPU is unpluggable`."""
    boot = cpus4.get(0)
    assert boot is not None
    with pytest.raises(GenericError, match=r"^Boot CPU is unpluggable$"):
        cpus4.unplug_request(boot, acpi=True)


def test_unplug_without_acpi_is_refused(cpus4: Cpus) -> None:
    """pc.c pc_cpu_unplug_request_cb: without the ACPI device (-no-acpi)."""
    cpu = cpus4.get(0)
    assert cpu is not None
    with pytest.raises(GenericError, match=r"^CPU hot unplug not supported without ACPI$"):
        cpus4.unplug_request(cpu, acpi=False)


# -- HMP --------------------------------------------------------------------------------


def test_hmp_info_cpus(vms: list[SyncVm]) -> None:
    """hmp.c hmp_info_cpus: `*` on the monitor's CPU, pc as %016x, `(halted)`."""
    vm = machine(vms, "-smp", "2")
    tid = vm.machine.options.pid
    assert hmp(vm, "info cpus") == (
        f"* CPU #0: pc=0x00000000fffffff0 thread_id={tid}\r\n"
        f"  CPU #1: pc=0x00000000fffffff0 (halted) thread_id={tid}\r\n")


def test_hmp_cpu_selects_the_monitor_cpu(vms: list[SyncVm]) -> None:
    """monitor.c monitor_set_cpu: a readline monitor keeps the CPU it chose; an
    unknown index prints `invalid CPU index`."""
    vm = machine(vms, "-smp", "2")
    mon = vm.vm.hmp_monitor()
    mon.connect()
    mon.take_output()
    mon.feed(b"cpu 1\r")
    mon.feed(b"info cpus\r")
    out = mon.take_output().decode()
    assert "  CPU #0:" in out and "* CPU #1:" in out
    assert hmp(vm, "cpu 7") == "invalid CPU index\r\n"


def test_hmp_info_hotpluggable_cpus(vms: list[SyncVm]) -> None:
    """hmp.c hmp_hotpluggable_cpus."""
    vm = machine(vms, "-smp", "1,maxcpus=2")
    assert hmp(vm, "info hotpluggable-cpus") == (
        'Hotpluggable CPUs:\r\n'
        '  type: "qemu64-x86_64-cpu"\r\n'
        '  vcpus_count: "1"\r\n'
        '  CPUInstance Properties:\r\n'
        '    socket-id: "1"\r\n'
        '    core-id: "0"\r\n'
        '    thread-id: "0"\r\n'
        '  type: "qemu64-x86_64-cpu"\r\n'
        '  vcpus_count: "1"\r\n'
        '  qom_path: "/machine/unattached/device[0]"\r\n'
        '  CPUInstance Properties:\r\n'
        '    socket-id: "0"\r\n'
        '    core-id: "0"\r\n'
        '    thread-id: "0"\r\n')


def test_hmp_cpu_add(vms: list[SyncVm]) -> None:
    """hmp.c hmp_cpu_add: qmp_cpu_add's error through hmp_handle_error."""
    vm = machine(vms, "-smp", "1,maxcpus=2")
    assert hmp(vm, "cpu-add 1") == ""
    assert hmp(vm, "cpu-add 1") == "CPU[1] with APIC ID 1 exists\r\n"


# -- query-cpu-model-expansion ----------------------------------------------------------


def test_every_model_and_type_expands_as_recorded(vm_factory, catalog) -> None:
    """target/i386/cpu.c arch_query_cpu_model_expansion without props: the 2.11.0
    binary's replies for all 34 models, full and static (schema/data README),
    members on the wire in the order QEMU wrote them."""
    import json

    vm = vm_factory(start=False)
    talk = vm.talk()
    models = [d["name"] for d in catalog.cpu_definitions("tcg")]
    assert len(models) == 34
    for name in models:
        for type in ("full", "static"):
            line = talk.lines({"execute": "query-cpu-model-expansion",
                               "arguments": {"type": type, "model": {"name": name}}})[0]
            reply = json.loads(line)["return"]
            recorded = catalog.cpu_model_expansion(name, type)
            assert reply == recorded
            assert list(reply["model"]["props"]) == list(recorded["model"]["props"])


def test_expansion_applies_props_through_aliases(vms: list[SyncVm]) -> None:
    """x86_cpu_from_model applies `props` (object_apply_props); `sse4_1` is an alias
    of the feature `sse4.1` (x86_cpu_initfn), so every name of it changes in the
    full expansion, and the static one names `base`."""
    vm = machine(vms)
    full = ok(vm, "query-cpu-model-expansion",
              {"type": "full", "model": {"name": "Haswell", "props": {"sse4_1": False,
                                                                      "vmx": True}}})
    props = full["model"]["props"]
    assert full["model"]["name"] == "Haswell"
    assert (props["sse4.1"], props["sse4-1"], props["sse4_1"], props["vmx"]) == (
        False, False, False, True)
    static = ok(vm, "query-cpu-model-expansion",
                {"type": "static", "model": {"name": "Haswell", "props": {"sse4_1": False}}})
    assert static["model"]["name"] == "base"
    assert static["model"]["props"]["sse4.1"] is False


def test_expansion_of_an_unknown_model(vms: list[SyncVm]) -> None:
    """cpu.c x86_cpu_from_model: `CPU model '%s' not found`."""
    assert error(machine(vms), "query-cpu-model-expansion",
                 {"type": "full", "model": {"name": "nosuch"}}) == (
        "GenericError", "CPU model 'nosuch' not found")


def test_expansion_with_an_unknown_property(vms: list[SyncVm]) -> None:
    """qom/object.c object_property_find through object_property_set_qobject."""
    assert error(machine(vms), "query-cpu-model-expansion",
                 {"type": "full", "model": {"name": "qemu64", "props": {"bogus": 1}}}) == (
        "GenericError", "Property '.bogus' not found")


def test_expansion_with_a_property_of_the_wrong_type(vms: list[SyncVm]) -> None:
    """qapi/qobject-input-visitor.c: a feature is a bool property."""
    assert error(machine(vms), "query-cpu-model-expansion",
                 {"type": "static", "model": {"name": "qemu64", "props": {"vmx": 1}}}) == (
        "GenericError", "Invalid parameter type for 'vmx', expected: boolean")


# -- ACPI CPU hotplug: legacy and modern interfaces -------------------------------------


def cpu_device(vm: SyncVm, ident: str, **props: int) -> None:
    """device_add qemu64-x86_64-cpu,id=IDENT,..."""
    assert ok(vm, "device_add", {"driver": "qemu64-x86_64-cpu", "id": ident, **props}) == {}


def acpi_events(vm: SyncVm) -> list[tuple[str, Any]]:
    return events(vm, "ACPI_DEVICE_OST", "DEVICE_DELETED")


def test_unplug_refused_on_the_legacy_interface(vms: list[SyncVm]) -> None:
    """hw/acpi/piix4.c piix4_device_unplug_request_cb: without the modern CPU hotplug
    interface (only SeaBIOS runs: nothing evaluates the ACPI tables' _INI) a CPU
    unplug request is refused."""
    vm = machine(vms, "-smp", "1,maxcpus=2", "--emu-guest=firmware")
    ok(vm, "cont")
    cpu_device(vm, "cpu1", **{"socket-id": 1, "core-id": 0, "thread-id": 0})
    assert vm.execute({"execute": "device_del", "arguments": {"id": "cpu1"}}) == {
        "error": {"class": "GenericError", "desc": "acpi: device unplug request for not "
                                                   "supported device type: qemu64-x86_64-cpu"}}


def test_old_machine_types_stay_legacy(vms: list[SyncVm]) -> None:
    """pc_piix.c pc_i440fx_2_6_machine_options: legacy_cpu_hotplug, so even an ACPI
    OS cannot switch, and query-acpi-ospm-status lists no CPU."""
    vm = machine(vms, "-machine", "pc-i440fx-2.6", "-smp", "1,maxcpus=2")
    ok(vm, "cont")
    assert ok(vm, "query-acpi-ospm-status") == []


def test_modern_interface_after_the_os_runs(vms: list[SyncVm]) -> None:
    """hw/acpi/cpu.c: the OS's _INI switches a 2.7+ machine to the modern interface;
    piix4_ospm_status then lists every possible CPU after the memory slots, and a
    hot-added CPU is answered with _OST (device check, success)."""
    vm = machine(vms, "-smp", "1,maxcpus=2", "-m", "128,slots=1,maxmem=1G")
    assert len(ok(vm, "query-acpi-ospm-status")) == 1  # -S: the OS has not run
    ok(vm, "cont")
    assert ok(vm, "query-acpi-ospm-status") == [
        {"slot": "0", "slot-type": "DIMM", "source": 0, "status": 0},
        {"slot": "0", "slot-type": "CPU", "source": 0, "status": 0},
        {"slot": "1", "slot-type": "CPU", "source": 0, "status": 0}]
    acpi_events(vm)
    ok(vm, "cpu-add", {"id": 1})
    vm.tick(1)
    assert acpi_events(vm) == [("ACPI_DEVICE_OST", {"info": {
        "slot": "1", "slot-type": "CPU", "source": 1, "status": 0}})]


def test_guest_ejects_a_cpu(vms: list[SyncVm]) -> None:
    """device_del of a hot-plugged CPU in modern mode: the guest answers "ejection
    in progress", ejects it (DEVICE_DELETED), then reports success; the slot is free
    again in query-hotpluggable-cpus."""
    vm = machine(vms, "-smp", "1,maxcpus=2")
    ok(vm, "cont")
    cpu_device(vm, "cpu1", **{"socket-id": 1, "core-id": 0, "thread-id": 0})
    vm.tick(1)
    acpi_events(vm)
    assert ok(vm, "device_del", {"id": "cpu1"}) == {}
    vm.tick(1)
    assert acpi_events(vm) == [
        ("ACPI_DEVICE_OST", {"info": {"device": "cpu1", "slot": "1", "slot-type": "CPU",
                                      "source": 3, "status": 128}}),
        ("DEVICE_DELETED", {"device": "cpu1", "path": "/machine/peripheral/cpu1"}),
        ("ACPI_DEVICE_OST", {"info": {"slot": "1", "slot-type": "CPU", "source": 3,
                                      "status": 0}})]
    assert "qom-path" not in ok(vm, "query-hotpluggable-cpus")[0]


def test_cpu_add_numbers_the_cpu_after_the_board(vms: list[SyncVm]) -> None:
    """hw/core/qdev.c device_set_realized: a cpu-add'ed CPU has no parent, so it is
    the next /machine/unattached/device[N] after the board's 27 on a -nodefaults pc
    (devices.md §1, verified: device[27])."""
    vm = machine(vms, "-nodefaults", "-smp", "1,maxcpus=2")
    ok(vm, "cpu-add", {"id": 1})
    assert ok(vm, "query-cpus")[1]["qom_path"] == "/machine/unattached/device[27]"
    assert ok(vm, "qom-get", {"path": "/machine/unattached/device[27]",
                              "property": "type"}) == "qemu64-x86_64-cpu"


def test_device_del_of_the_boot_cpu(vms: list[SyncVm]) -> None:
    """pc.c pc_cpu_unplug_request_cb: the boot CPU, by its QOM path."""
    vm = machine(vms, "-smp", "1,maxcpus=2")
    assert vm.execute({"execute": "device_del",
                       "arguments": {"id": "/machine/unattached/device[0]"}}) == {
        "error": {"class": "GenericError", "desc": "Boot CPU is unpluggable"}}


def test_cpus_take_the_board_s_unattached_numbers(vms: list[SyncVm]) -> None:
    """hw/core/qdev.c device_set_realized names an unattached device before its
    realize, and the first CPU's APIC realize creates kvmvapic: CPU 1 is device[2]."""
    vm = machine(vms, "-smp", "2")
    assert [c["qom_path"] for c in ok(vm, "query-cpus")] == [
        "/machine/unattached/device[0]", "/machine/unattached/device[2]"]
