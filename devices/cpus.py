"""The vCPUs of a PC machine: the -smp topology, APIC IDs, the possible CPU slots,
cpu-add and device_add of a CPU into a free slot, and unplug as 2.11 refuses it.

Pure model of the `devices` layer [hw/i386/pc.c pc_cpus_init, pc_hot_add_cpu,
pc_cpu_pre_plug, pc_cpu_unplug_request_cb, pc_possible_cpu_arch_ids;
include/hw/i386/topology.h; hw/core/machine.c machine_query_hotpluggable_cpus;
cpus.c qmp_query_cpus; qmp.c qmp_cpu_add]. `Cpus` belongs to one machine; its QOM
paths come from the caller (the QOM tree numbers `/machine/unattached/device[N]`),
and `devices.machine_commands` answers QMP from it. Errors raise `GenericError`
with QEMU's text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from schema.errors import QERR_FEATURE_DISABLED, GenericError

# hw/acpi/cpu_hotplug.c / include/hw/acpi/cpu_hotplug.h: the ACPI CPU hotplug
# bitmap covers APIC IDs below 256.
ACPI_CPU_HOTPLUG_ID_LIMIT = 256
# cpus.c: x86 CS base + EIP after reset (0xffff0000 + 0xfff0).
RESET_PC = 0xFFFFFFF0
# pc machine types without mc->hot_add_cpu (hw/i386/pc_piix.c
# pc_i440fx_1_4_machine_options, inherited by every older type).
# pc_piix.c pc_i440fx_2_6_machine_options and pc_q35.c pc_q35_2_6_machine_options set
# legacy_cpu_hotplug; every older type inherits it: their ACPI tables have no modern
# CPU hotplug interface to switch to.
def _modern_cpu_hotplug(machine_type: str) -> bool:
    for prefix in ("pc-i440fx-", "pc-q35-"):
        if machine_type.startswith(prefix):
            major, minor = machine_type[len(prefix):].split(".")
            return (int(major), int(minor)) >= (2, 7)
    return False


_NO_CPU_ADD = ("pc-i440fx-1.4", "pc-1.3", "pc-1.2", "pc-1.1", "pc-1.0", "pc-0.15",
               "pc-0.14", "pc-0.13", "pc-0.12", "pc-0.11", "pc-0.10")


def _bit_width(count: int) -> int:
    """topology.h apicid_bitwidth_for_count: bits to hold 0..count-1."""
    return (count - 1).bit_length() if count > 1 else 0


@attrs.frozen
class Topology:
    """`-smp` (after vl.c smp_parse): how many CPUs start, and their layout."""

    cpus: int = 1
    sockets: int = 1
    cores: int = 1
    threads: int = 1
    max_cpus: int = 1

    @property
    def _smt_width(self) -> int:
        return _bit_width(self.threads)

    @property
    def _pkg_offset(self) -> int:
        return self._smt_width + _bit_width(self.cores)

    def apic_id_from_ids(self, socket: int, core: int, thread: int) -> int:
        """topology.h apicid_from_topo_ids."""
        return (socket << self._pkg_offset) | (core << self._smt_width) | thread

    def apic_id(self, index: int) -> int:
        """topology.h x86_apicid_from_cpu_idx (pc.c x86_cpu_apic_id_from_index)."""
        core_offset, thread = divmod(index, self.threads)
        socket, core = divmod(core_offset, self.cores)
        return self.apic_id_from_ids(socket, core, thread)

    def ids(self, apic_id: int) -> tuple[int, int, int]:
        """topology.h x86_topo_ids_from_apicid: (socket, core, thread)."""
        thread = apic_id & ((1 << self._smt_width) - 1)
        core = (apic_id >> self._smt_width) & ((1 << _bit_width(self.cores)) - 1)
        return apic_id >> self._pkg_offset, core, thread


@attrs.define(kw_only=True)
class Vcpu:
    """One realized vCPU."""

    index: int
    apic_id: int
    qom_path: str  # where it was created; `path()` follows its QOM node once it has one
    node_path: Callable[[], str] | None = None
    id: str | None = None  # its qdev id when device_add'ed with one
    hotplugged: bool = False

    def path(self) -> str:
        """object_get_canonical_path."""
        return self.node_path() if self.node_path is not None else self.qom_path

    # x86_cpu_reset: every CPU but the bootstrap processor waits halted for its
    # INIT/SIPI; a hot-added one waits until the guest brings it online.
    halted: bool = False


@attrs.define(kw_only=True)
class Cpus:
    """The vCPUs of one machine and its possible CPU slots (a PC board's)."""

    topology: Topology
    cpu_type: str  # the QOM type of every CPU (ms->cpu_type)
    pc: bool  # a PC board: topology properties, hotpluggable CPU slots
    hot_add: bool  # mc->hot_add_cpu
    # the ACPI tables offer the modern CPU hotplug interface (2.7+ PC machine types),
    # and the guest switched to it (piix4/ich9 cpu_hotplug_legacy false)
    modern_capable: bool = False
    modern: bool = False
    ost: list[tuple[int, int]] = attrs.Factory(list)  # per possible CPU: _OST event, status
    thread_id: int
    slots: list[Vcpu | None] = attrs.Factory(list)

    @classmethod
    def create(cls, *, topology: Topology, machine_type: str, cpu_type: str, pc: bool,
               thread_id: int, boot_cpus: int,
               unattached_path: Callable[[], str]) -> Cpus:
        """pc_cpus_init: the possible slots of maxcpus, the first `boot_cpus` filled
        (each QOM path from `unattached_path`, in creation order)."""
        slots = max(topology.max_cpus, boot_cpus)
        cpus = cls(topology=topology, cpu_type=cpu_type, pc=pc,
                   hot_add=pc and machine_type not in _NO_CPU_ADD, thread_id=thread_id,
                   modern_capable=pc and _modern_cpu_hotplug(machine_type),
                   ost=[(0, 0)] * slots,
                   slots=[None] * slots)
        for index in range(boot_cpus):
            cpus.slots[index] = Vcpu(index=index, apic_id=cpus.apic_id(index),
                                     qom_path=unattached_path(), halted=index != 0)
        return cpus

    def apic_id(self, index: int) -> int:
        return self.topology.apic_id(index) if self.pc else index

    # -- lookups --------------------------------------------------------------------

    def present(self) -> list[Vcpu]:
        """CPU_FOREACH: the realized CPUs in index order."""
        return [cpu for cpu in self.slots if cpu is not None]

    def get(self, index: int) -> Vcpu | None:
        """qom/cpu.c qemu_get_cpu."""
        for cpu in self.present():
            if cpu.index == index:
                return cpu
        return None

    def by_path(self, qom_path: str) -> Vcpu | None:
        for cpu in self.present():
            if cpu.path() == qom_path:
                return cpu
        return None

    def _slot_of_apic(self, apic_id: int) -> int | None:
        """pc.c pc_find_cpu_slot: the possible CPU with this APIC ID."""
        for index in range(len(self.slots)):
            if self.apic_id(index) == apic_id:
                return index
        return None

    def props(self, index: int) -> dict[str, int]:
        """pc.c pc_possible_cpu_arch_ids: a slot's socket, core and thread ids."""
        socket, core, thread = self.topology.ids(self.apic_id(index))
        return {"socket-id": socket, "core-id": core, "thread-id": thread}

    # -- queries --------------------------------------------------------------------

    def query_cpus(self) -> list[dict[str, Any]]:
        """cpus.c qmp_query_cpus: `current` is first_cpu's, whatever a monitor chose."""
        out = []
        present = self.present()
        for cpu in present:
            info: dict[str, Any] = {
                "CPU": cpu.index, "current": cpu is present[0], "halted": cpu.halted,
                "qom_path": cpu.path(), "thread_id": self.thread_id, "arch": "x86",
                "pc": RESET_PC}
            if self.pc:
                info["props"] = self.props(cpu.index)
            out.append(info)
        return out

    def query_hotpluggable_cpus(self) -> list[dict[str, Any]]:
        """monitor.c qmp_query_hotpluggable_cpus -> machine_query_hotpluggable_cpus,
        which prepends: the highest slot first."""
        if not self.pc:
            raise GenericError(QERR_FEATURE_DISABLED % "query-hotpluggable-cpus")
        out = []
        for index in reversed(range(len(self.slots))):
            item: dict[str, Any] = {"type": self.cpu_type, "vcpus-count": 1,
                                    "props": self.props(index)}
            cpu = self.slots[index]
            if cpu is not None:
                item["qom-path"] = cpu.path()
            out.append(item)
        return out

    # -- hot-plug -------------------------------------------------------------------

    def hot_add_apic_id(self, ident: int) -> int:
        """qmp.c qmp_cpu_add -> pc.c pc_hot_add_cpu's own checks: the APIC ID of the
        CPU pc_new_cpu then creates (and realizes, with pre_plug's checks)."""
        if not self.hot_add:
            raise GenericError("Not supported")
        if ident < 0:
            raise GenericError(f"Invalid CPU id: {ident}")
        apic_id = self.apic_id(ident)
        if apic_id >= ACPI_CPU_HOTPLUG_ID_LIMIT:
            raise GenericError(f"Unable to add CPU: {ident}, resulting APIC ID ({apic_id}) "
                               "is too large")
        return apic_id

    def cpu_add(self, ident: int, unattached_path: Callable[[], str]) -> Vcpu:
        """cpu-add without a QOM tree: the checks, then the CPU in its slot."""
        apic_id = self.hot_add_apic_id(ident)
        index = self._free_slot(apic_id)
        cpu = Vcpu(index=index, apic_id=apic_id, qom_path=unattached_path(),
                   hotplugged=True, halted=True)
        self.slots[index] = cpu
        return cpu

    def pre_plug(self, typename: str, props: Mapping[str, int]) -> tuple[int, int]:
        """pc.c pc_cpu_pre_plug for `device_add` of a CPU type: `props` are its
        `socket-id`, `core-id`, `thread-id` and `apic-id` (absent: unset). Returns
        the slot index and APIC ID; `plug` then fills the slot."""
        if typename != self.cpu_type:
            raise GenericError(f"Invalid CPU type, expected cpu type: '{self.cpu_type}'")
        topo = self.topology
        socket = props.get("socket-id", -1)
        core = props.get("core-id", -1)
        thread = props.get("thread-id", -1)
        apic_id = props.get("apic-id")
        if apic_id is None:
            max_socket = (topo.max_cpus - 1) // topo.threads // topo.cores
            for name, value, top in (("socket", socket, max_socket),
                                     ("core", core, topo.cores - 1),
                                     ("thread", thread, topo.threads - 1)):
                if value < 0:
                    raise GenericError(f"CPU {name}-id is not set")
                if value > top:
                    raise GenericError(f"Invalid CPU {name}-id: {value} must be in range "
                                       f"0:{top}")
            apic_id = topo.apic_id_from_ids(socket, core, thread)
        index = self._free_slot(apic_id)
        for name, given, actual in zip(("socket", "core", "thread"), (socket, core, thread),
                                       topo.ids(apic_id), strict=True):
            if given != -1 and given != actual:
                raise GenericError(f"property {name}-id: {given} doesn't match set apic-id: "
                                   f"0x{apic_id:x} ({name}-id: {actual})")
        return index, apic_id

    def plug(self, index: int, apic_id: int, *, qom_path: str, ident: str | None,
             node_path: Callable[[], str] | None = None) -> Vcpu:
        """pc.c pc_cpu_plug: a device_add'ed CPU takes its slot."""
        cpu = Vcpu(index=index, apic_id=apic_id, qom_path=qom_path, id=ident,
                   hotplugged=True, halted=True, node_path=node_path)
        self.slots[index] = cpu
        return cpu

    def board_cpu(self, apic_id: int) -> Vcpu | None:
        """A CPU of -smp (pc_cpus_init) not yet given its QOM node: the board's tree,
        built later, adopts it."""
        waiting = [cpu for cpu in self.present() if not cpu.hotplugged and cpu.node_path is None]
        for cpu in waiting:
            if cpu.apic_id == apic_id:
                return cpu
        return waiting[0] if waiting else None  # the board numbers them by index

    def _free_slot(self, apic_id: int) -> int:
        index = self._slot_of_apic(apic_id)
        if index is None:
            socket, core, thread = self.topology.ids(apic_id)
            raise GenericError(f"Invalid CPU [socket: {socket}, core: {core}, thread: "
                               f"{thread}] with APIC ID {apic_id}, valid index range "
                               f"0:{len(self.slots) - 1}")
        if self.slots[index] is not None:
            raise GenericError(f"CPU[{index}] with APIC ID {apic_id} exists")
        return index

    def unplug_request(self, cpu: Vcpu, *, acpi: bool) -> None:
        """pc.c pc_cpu_unplug_request_cb: the boot CPU stays; any other is asked of
        the guest through ACPI (`acpi`: the board has its ACPI device), which only the
        modern interface can (hw/acpi/piix4.c piix4_device_unplug_request_cb)."""
        if not acpi:
            raise GenericError("CPU hot unplug not supported without ACPI")
        if cpu.index == 0:
            raise GenericError("Boot CPU is unpluggable")
        if not self.modern:
            raise GenericError("acpi: device unplug request for not supported device "
                               f"type: {self.cpu_type}")

    def switch_to_modern(self) -> None:
        """hw/acpi/cpu.c: the guest's ACPI interpreter runs \\_SB.PCI0.PRES._INI, whose
        write to the CPU selector switches a 2.7+ machine to the modern interface
        (for good: it survives resets)."""
        if self.modern_capable:
            self.modern = True

    def write_ost(self, index: int, source: int, status: int) -> dict[str, Any]:
        """hw/acpi/cpu.c cpu_hotplug_wr: the guest's _OST for a CPU slot; the
        ACPIOSTInfo of the ACPI_DEVICE_OST event."""
        self.ost[index] = (source, status)
        return self.ost_info(index)

    def ost_info(self, index: int) -> dict[str, Any]:
        """hw/acpi/cpu.c acpi_cpu_device_status."""
        source, status = self.ost[index]
        info: dict[str, Any] = {"slot": str(index), "slot-type": "CPU", "source": source,
                                "status": status}
        cpu = self.slots[index]
        if cpu is not None and cpu.id is not None:
            info["device"] = cpu.id
        return info

    def ospm_status(self) -> list[dict[str, Any]]:
        """acpi_cpu_ospm_status: every possible CPU, only in modern mode."""
        return [self.ost_info(i) for i in range(len(self.slots))] if self.modern else []

    def unplug(self, cpu: Vcpu) -> None:
        """pc.c pc_cpu_unplug_cb: the guest ejected it; its slot is free again."""
        self.slots[cpu.index] = None

    def reset(self) -> None:
        """x86_cpu_reset: the BSP runs, every other CPU waits for INIT/SIPI."""
        for cpu in self.present():
            cpu.halted = cpu.index != 0


def cpu_type(machine_type: str, cpu_model: str | None) -> str:
    """The QOM type of the machine's CPUs: -cpu's model (before its features), else
    the board's default (hw/i386/pc.c pc_machine_class_init: qemu64; pc_piix.c
    isapc_machine_options: 486)."""
    if cpu_model is not None:
        model = cpu_model.split(",", 1)[0]
    else:
        model = "486" if machine_type == "isapc" else "qemu64"
    return f"{model}-x86_64-cpu"


# target/i386/cpu.c x86_cpu_initfn: the properties that are other names of a feature
# (alias, target); feature names are canonical.
FEATURE_ALIASES = {
    "sse3": "pni", "pclmuldq": "pclmulqdq", "sse4-1": "sse4.1", "sse4-2": "sse4.2",
    "xd": "nx", "ffxsr": "fxsr-opt", "i64": "lm", "ds_cpl": "ds-cpl",
    "tsc_adjust": "tsc-adjust", "fxsr_opt": "fxsr-opt", "lahf_lm": "lahf-lm",
    "cmp_legacy": "cmp-legacy", "nodeid_msr": "nodeid-msr", "perfctr_core": "perfctr-core",
    "perfctr_nb": "perfctr-nb", "kvm_nopiodelay": "kvm-nopiodelay", "kvm_mmu": "kvm-mmu",
    "kvm_asyncpf": "kvm-asyncpf", "kvm_steal_time": "kvm-steal-time",
    "kvm_pv_eoi": "kvm-pv-eoi", "kvm_pv_unhalt": "kvm-pv-unhalt", "svm_lock": "svm-lock",
    "nrip_save": "nrip-save", "tsc_scale": "tsc-scale", "vmcb_clean": "vmcb-clean",
    "pause_filter": "pause-filter", "sse4_1": "sse4.1", "sse4_2": "sse4.2",
}


def _qobject_type_name(value: Any) -> str:
    """The name qobject-input-visitor.c gives the type a property's visitor wants."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "string"


def expand_cpu_model(recorded: Callable[[str, str], dict[str, Any] | None], type: str,
                     model: Mapping[str, Any]) -> dict[str, Any]:
    """target/i386/cpu.c arch_query_cpu_model_expansion: x86_cpu_from_model creates
    the model's CPU, applies `props` in order (object_apply_props, stopping at the
    first error), and the expansion lists its properties (full: every readable and
    writable one under the model's name; static: the static ones under `base`).
    `recorded(model, type)` is the binary's expansion without props; a property set
    through an alias changes the feature and so every name of it."""
    name = model["name"]
    full = recorded(name, "full")
    reply = recorded(name, type)
    if full is None or reply is None:
        raise GenericError(f"CPU model '{name}' not found")
    known = full["model"]["props"]
    props = model.get("props")
    values: dict[str, Any] = {}
    given: dict[str, Any] = props if isinstance(props, dict) else {}
    for key, value in given.items():
        if key not in known:
            raise GenericError(f"Property '.{key}' not found")
        want = _qobject_type_name(known[key])
        if _qobject_type_name(value) != want:
            raise GenericError(f"Invalid parameter type for '{key}', expected: {want}")
        values[FEATURE_ALIASES.get(key, key)] = value
    out = reply["model"]["props"]
    for key in out:
        canonical = FEATURE_ALIASES.get(key, key)
        if canonical in values:
            out[key] = values[canonical]
    return reply
