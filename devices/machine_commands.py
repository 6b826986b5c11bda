"""The machine's CPUs, memory devices and balloon as one subsystem, its QMP commands,
and the guest reactions to them (named behaviours).

`devices` layer. `MachineDevices` is the Machine's typed attribute for the models
of `devices.cpus`, `devices.memory` and `devices.balloon`, with the Subsystem hooks
(`vmm.machine.subsystem`); it reaches the Machine only through `MachineHost`.
`MachineDeviceCommands` holds the QMP handlers, registered by schema name. The
guest's side is played here on QEMU_CLOCK_VIRTUAL (the guest only acts while the VM
runs): its balloon driver moving `actual` toward the target at `balloon-rate`, the
statistics it reports every `guest-stats-polling-interval`, the switch of its ACPI
interpreter to the modern CPU hotplug interface (`cpu-hotplug`), and the _OST
answers and ejects of its memory and CPU hotplug drivers (`memory-ost`,
`memory-ost-delay`, `cpu-ost`, `cpu-ost-delay`). qdev's device_add/device_del reach
the models through `devices.machine_kinds` (`plug_dimm`, `unplug_request_dimm`,
`add_balloon`, `remove_balloon`, `cpus.pre_plug`/`cpus.plug`, `unplug_request_cpu`),
which also connects the DIMMs' backends to /objects (`devices.objects`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from devices.balloon import PFN_SHIFT, STAT_NAMES, Balloon, check_target, have_balloon
from devices.cpus import Cpus, Topology, Vcpu
from devices.guest_hooks import GuestTimedHooks
from devices.memory import Dimm, MemoryDevices
from schema.errors import GenericError
from schema.handlers import (
    Behaviour,
    choice,
    flag,
    non_negative,
    qmp_command,
    seconds,
)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class BehaviourValues(Protocol):
    def get(self, name: str) -> Any: ...


class MachineHost(Protocol):
    """What this subsystem needs from the Machine."""

    @property
    def behaviours(self) -> BehaviourValues: ...

    def emit(self, name: str, data: dict[str, Any] | None = None) -> object: ...

    def vm_call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


# A non-negative rate in MiB per second of guest run time.
mib_per_second = non_negative("MiB per second")


BALLOON_RATE = Behaviour(
    "balloon-rate", "MiB per second of run time the guest's balloon driver moves "
    "toward the target (0: the driver never moves)", mib_per_second, os=512.0, firmware=0.0)
BALLOON_STATS = Behaviour(
    "balloon-stats", "the guest's balloon driver answers the statistics queue (on|off)",
    flag, os=True, firmware=False)
MEMORY_OST = Behaviour(
    "memory-ost", "what the guest's ACPI memory hotplug driver does with a DIMM: "
    "ack (online it / eject it, with _OST) or never", choice("ack", "never"),
    os="ack", firmware="never")
MEMORY_OST_DELAY = Behaviour(
    "memory-ost-delay", "seconds of run time before the guest answers a DIMM hotplug "
    "or unplug request", seconds, os=0.1, firmware=0.1)

CPU_HOTPLUG = Behaviour(
    "cpu-hotplug", "modern: the guest's ACPI interpreter runs the tables' _INI, which "
    "switches a 2.7+ machine to the modern CPU hotplug interface; legacy: nothing "
    "evaluates ACPI (SeaBIOS)", choice("modern", "legacy"), os="modern", firmware="legacy")
CPU_OST = Behaviour(
    "cpu-ost", "what the guest does with a hot-added CPU or an unplug request in modern "
    "mode: ack (online it / eject it, with _OST) or never", choice("ack", "never"),
    os="ack", firmware="never")
CPU_OST_DELAY = Behaviour(
    "cpu-ost-delay", "seconds of run time before the guest answers a CPU hotplug or "
    "unplug request", seconds, os=0.1, firmware=0.1)

MACHINE_DEVICE_BEHAVIOURS = (BALLOON_RATE, BALLOON_STATS, MEMORY_OST, MEMORY_OST_DELAY, CPU_HOTPLUG,
                     CPU_OST, CPU_OST_DELAY)

# The guest's balloon driver reports its progress in steps of this much run time.
BALLOON_STEP = 0.1
# ACPI _OST source events and status codes (ACPI 6.0 table 6-198): device check
# (insert), eject request; success, ejection in progress.
OST_DEVICE_CHECK = 1
OST_EJECT_REQUEST = 3
OST_SUCCESS = 0
OST_EJECT_IN_PROGRESS = 0x80
# The statistics a guest with 1 GiB of swap would report (the 7 virtio items).
_GUEST_STATS = (0, 0, 312, 60718)


@attrs.define(kw_only=True, eq=False)
class MachineDevices(GuestTimedHooks):
    """CPUs, memory devices and the balloon of one machine (a Subsystem)."""

    host: MachineHost
    cpus: Cpus
    memory: MemoryDevices
    balloon: Balloon | None = None
    wall: Callable[[], float] = lambda: 0.0  # gettimeofday for the stats' last-update
    # qdev's DEVICE_DELETED for a device the guest ejected (id, canonical path).
    device_deleted: Callable[[str | None, str], None] | None = None
    # builds the QOM tree (qdev's, on first use), where the CPUs get their paths
    tree: Callable[[], object] = lambda: None
    # devices.objects' use/release of a backend (object-del refuses one in use)
    backend_used: Callable[[str, str], None] = lambda ident, user: None
    backend_released: Callable[[str, str], None] = lambda ident, user: None
    _balloon_timer: TimerHandle | None = None
    _stats_timer: TimerHandle | None = None
    _ost_timers: list[TimerHandle] = attrs.Factory(list)

    @classmethod
    def create(cls, host: MachineHost, *, topology: Topology, machine_type: str,
               cpu_type: str, pc: bool, boot_cpus: int, thread_id: int, ram_size: int,
               max_ram_size: int, slots: int, new_glib: bool,
               unattached_path: Callable[[], str]) -> MachineDevices:
        cpus = Cpus.create(topology=topology, machine_type=machine_type, cpu_type=cpu_type,
                           pc=pc, thread_id=thread_id, boot_cpus=boot_cpus,
                           unattached_path=unattached_path)
        memory = MemoryDevices(ram_size=ram_size, max_ram_size=max_ram_size, slots=slots,
                               pc=pc, new_glib=new_glib)
        return cls(host=host, cpus=cpus, memory=memory)

    def _deleted(self, ident: str | None, path: str) -> None:
        if self.device_deleted is not None:
            self.device_deleted(ident, path)
            return
        data: dict[str, Any] = {"path": path}
        if ident is not None:
            data["device"] = ident
        self.host.emit("DEVICE_DELETED", data)

    def _behaviour(self, name: str) -> Any:
        return self.host.behaviours.get(name)

    # -- memory devices -------------------------------------------------------------

    def plug_dimm(self, *, ident: str | None, qom_path: str, memdev: str | None,
                  addr: int = 0, slot: int = -1, node: int = 0, nvdimm: bool = False,
                  nvdimm_enabled: bool = False, hotplugged: bool = True) -> Dimm:
        """device_add pc-dimm/nvdimm: plugged, then (hot-plugged) the guest onlines it
        and answers _OST (acpi_memory_plug_cb notified it with a device check)."""
        dimm = self.memory.plug(ident=ident, qom_path=qom_path, memdev=memdev, addr=addr,
                                slot=slot, node=node, nvdimm=nvdimm,
                                nvdimm_enabled=nvdimm_enabled, hotplugged=hotplugged)
        self.backend_used(dimm.backend.id, qom_path)
        if hotplugged:
            self._guest_ost(dimm, OST_DEVICE_CHECK)
        return dimm

    def unplug_dimm(self, dimm: Dimm) -> None:
        """pc_dimm_unplug: the DIMM goes and its backend is free again."""
        if dimm in self.memory.dimms:
            self.memory.unplug(dimm)
            self.backend_released(dimm.backend.id, dimm.qom_path)

    def unplug_request_dimm(self, dimm: Dimm) -> None:
        """device_del of a DIMM: only a request; the guest decides."""
        self.memory.unplug_request(dimm)
        self._guest_ost(dimm, OST_EJECT_REQUEST)

    def _guest_ost(self, dimm: Dimm, event: int) -> None:
        if self._behaviour("memory-ost") != "ack":
            return

        def eject() -> None:
            self.unplug_dimm(dimm)
            if dimm.ejected is None or not dimm.ejected():
                self._deleted(dimm.id, dimm.qom_path)

        self._answer(self._behaviour("memory-ost-delay"), event,
                     present=lambda: dimm in self.memory.dimms,
                     ost=lambda source, status: self._ost(
                         self.memory.write_ost(dimm.slot, source, status)),
                     eject=eject)

    def _answer(self, delay: float, event: int, *, present: Callable[[], bool],
                ost: Callable[[int, int], None], eject: Callable[[], None]) -> None:
        """The guest's ACPI hotplug driver, `delay` seconds of run time after the
        notification: for a device check it onlines the device and writes _OST
        success; for an eject request (Linux's acpi_device_hotplug) it writes
        "ejection in progress", ejects (_EJ0: the device goes, DEVICE_DELETED), then
        writes the result for the now empty slot (hw/acpi/memory_hotplug.c,
        hw/acpi/cpu.c: each _OST status write is an ACPI_DEVICE_OST)."""
        timer: TimerHandle | None = None

        def answer() -> None:
            if timer is not None and timer in self._ost_timers:
                self._ost_timers.remove(timer)
            if not present():
                return
            if event == OST_DEVICE_CHECK:
                ost(event, OST_SUCCESS)
                return
            ost(event, OST_EJECT_IN_PROGRESS)
            eject()
            ost(event, OST_SUCCESS)

        timer = self.host.vm_call_later(delay, answer)
        self._ost_timers.append(timer)

    def _ost(self, info: dict[str, Any]) -> None:
        self.host.emit("ACPI_DEVICE_OST", {"info": info})

    def ospm_status(self) -> list[dict[str, Any]]:
        """qmp.c qmp_query_acpi_ospm_status -> piix4/ich9 *_ospm_status: the memory
        slots, then the CPU slots once the guest switched to the modern CPU hotplug
        interface."""
        if not self.cpus.pc:
            raise GenericError("command is not supported, missing ACPI device")
        return [*(self.memory.ost_info(slot) for slot in range(len(self.memory.ost))),
                *self.cpus.ospm_status()]

    # -- CPUs -----------------------------------------------------------------------

    def cpu_plugged(self, cpu: Vcpu) -> None:
        """A hot-added CPU (cpu-add, device_add): in modern mode the guest onlines it
        and answers _OST; the legacy interface has no _OST."""
        if self.cpus.modern and self._behaviour("cpu-ost") == "ack":
            self._answer(self._behaviour("cpu-ost-delay"), OST_DEVICE_CHECK,
                         present=lambda: cpu in self.cpus.present(),
                         ost=lambda source, status: self._ost(
                             self.cpus.write_ost(cpu.index, source, status)),
                         eject=lambda: None)

    def unplug_request_cpu(self, cpu: Vcpu, ejected: Callable[[], bool]) -> None:
        """device_del of a CPU (pc_cpu_unplug_request_cb): refused, or asked of the
        guest, which ejects it when its `cpu-ost` behaviour says so."""
        self.cpus.unplug_request(cpu, acpi=True)
        if self._behaviour("cpu-ost") != "ack":
            return

        def eject() -> None:
            self.cpus.unplug(cpu)
            if not ejected():
                self._deleted(cpu.id, cpu.path())

        self._answer(self._behaviour("cpu-ost-delay"), OST_EJECT_REQUEST,
                     present=lambda: cpu in self.cpus.present(),
                     ost=lambda source, status: self._ost(
                         self.cpus.write_ost(cpu.index, source, status)),
                     eject=eject)

    def ram_size(self) -> int:
        """virtio-balloon.c get_current_ram_size: RAM and the pc-dimms (not nvdimms)."""
        return self.memory.ram_size + sum(d.backend.size for d in self.memory.dimms
                                          if not d.nvdimm)

    # -- balloon --------------------------------------------------------------------

    def add_balloon(self, *, qom_path: str, ident: str | None = None) -> Balloon:
        """virtio_balloon_device_realize -> qemu_add_balloon_handler."""
        if self.balloon is not None:
            raise GenericError("Only one balloon device is supported")
        self.balloon = Balloon(qom_path=qom_path, id=ident)
        return self.balloon

    def remove_balloon(self) -> None:
        """virtio_balloon_device_unrealize."""
        self._cancel_balloon_timers()
        self.balloon = None

    def set_target(self, target: int) -> None:
        """qmp_balloon: the device's new num_pages; the guest's driver follows."""
        balloon = have_balloon(self.balloon)
        check_target(target)
        balloon.to_target(target, self.ram_size())
        self._schedule_balloon()

    def _schedule_balloon(self) -> None:
        balloon = self.balloon
        if balloon is None or self._balloon_timer is not None or \
                balloon.actual == balloon.num_pages or self._behaviour("balloon-rate") <= 0:
            return
        self._balloon_timer = self.host.vm_call_later(BALLOON_STEP, self._balloon_step)

    def _balloon_step(self) -> None:
        """The guest driver inflates or deflates by one step's worth and writes
        `actual` (virtio_balloon_set_config: BALLOON_CHANGE when it changed)."""
        self._balloon_timer = None
        balloon = self.balloon
        if balloon is None:
            return
        step = max(1, int(self._behaviour("balloon-rate") * BALLOON_STEP * (1 << 20))
                   >> PFN_SHIFT)
        delta = balloon.num_pages - balloon.actual
        pages = balloon.actual + max(-step, min(step, delta))
        size = balloon.set_actual(pages, self.ram_size())
        if size is not None:
            self.host.emit("BALLOON_CHANGE", {"actual": size})
        self._schedule_balloon()

    def set_stats_interval(self, value: int) -> None:
        """qom-set guest-stats-polling-interval: 0 stops the statistics timer; a new
        interval (re)arms it with its first poll at once
        (balloon_stats_change_timer(s, 0) or (s, value) on a change)."""
        balloon = have_balloon(self.balloon)
        first = balloon.poll_interval
        if not balloon.set_poll_interval(value):
            if value == 0 and self._stats_timer is not None:
                self._stats_timer.cancel()
                self._stats_timer = None
            return
        if self._stats_timer is not None:
            self._stats_timer.cancel()
        self._stats_timer = self.host.vm_call_later(value if first else 0, self._stats_poll)

    def _stats_poll(self) -> None:
        """balloon_stats_poll_cb: the guest answers with its statistics (when its
        driver does), then the timer is re-armed for the next interval."""
        self._stats_timer = None
        balloon = self.balloon
        if balloon is None or not balloon.poll_interval:
            return
        if self._behaviour("balloon-stats"):
            total = self.ram_size()
            free = total - (balloon.actual << PFN_SHIFT)
            values = (*_GUEST_STATS, free // 2, total, free * 3 // 4)
            balloon.stats = list(values)[:len(STAT_NAMES)]
            balloon.last_update = int(self.wall())
        self._stats_timer = self.host.vm_call_later(balloon.poll_interval, self._stats_poll)

    def _cancel_balloon_timers(self) -> None:
        for timer in (self._balloon_timer, self._stats_timer):
            if timer is not None:
                timer.cancel()
        self._balloon_timer = self._stats_timer = None

    # -- Subsystem hooks ------------------------------------------------------------

    def reset(self) -> None:
        """A system reset: the CPUs' reset state; the guest forgets what it was doing
        (its driver starts afresh, from the device's current config)."""
        self.cpus.reset()
        for timer in self._ost_timers:
            timer.cancel()
        self._ost_timers.clear()
        if self._balloon_timer is not None:
            self._balloon_timer.cancel()
            self._balloon_timer = None
        self._schedule_balloon()

    def vm_start(self) -> None:
        """The guest runs: an ACPI OS switches to the modern CPU hotplug interface."""
        if self._behaviour("cpu-hotplug") == "modern":
            self.cpus.switch_to_modern()


class MachineDeviceCommands:
    """The QMP commands of the CPUs, memory devices and the balloon."""

    def __init__(self, devices: MachineDevices,
                 new_cpu: Callable[[int], Vcpu] | None = None,
                 unattached_path: Callable[[], str] | None = None) -> None:
        """`new_cpu(apic_id)`: pc_new_cpu, the CPU object created and realized in the
        QOM tree; without one, the CPU takes its slot at `unattached_path()`."""
        self.devices = devices
        self.new_cpu = new_cpu
        self.unattached_path = unattached_path

    # -- CPUs -----------------------------------------------------------------------

    @qmp_command("query-cpus")
    def query_cpus(self) -> list[dict[str, Any]]:
        self.devices.tree()  # the CPUs' canonical paths
        return self.devices.cpus.query_cpus()

    @qmp_command("query-hotpluggable-cpus")
    def query_hotpluggable_cpus(self) -> list[dict[str, Any]]:
        self.devices.tree()
        return self.devices.cpus.query_hotpluggable_cpus()

    @qmp_command("cpu-add")
    def cpu_add(self, id: int) -> None:
        """qmp.c qmp_cpu_add -> pc.c pc_hot_add_cpu."""
        cpus = self.devices.cpus
        if self.new_cpu is not None:
            self.new_cpu(cpus.hot_add_apic_id(id))  # realized as a hot-plugged CPU
        else:
            assert self.unattached_path is not None
            self.devices.cpu_plugged(cpus.cpu_add(id, self.unattached_path))

    @qmp_command("cpu")
    def cpu(self, index: int) -> None:
        """qmp.c qmp_cpu: "Just do nothing"."""

    # -- memory ---------------------------------------------------------------------

    @qmp_command("query-memory-devices")
    def query_memory_devices(self) -> list[dict[str, Any]]:
        return self.devices.memory.query_memory_devices()

    @qmp_command("query-memdev")
    def query_memdev(self) -> list[dict[str, Any]]:
        return self.devices.memory.query_memdev()

    @qmp_command("query-memory-size-summary")
    def query_memory_size_summary(self) -> dict[str, Any]:
        return self.devices.memory.query_memory_size_summary()

    @qmp_command("query-acpi-ospm-status")
    def query_acpi_ospm_status(self) -> list[dict[str, Any]]:
        """qmp.c qmp_query_acpi_ospm_status."""
        return self.devices.ospm_status()

    # -- balloon --------------------------------------------------------------------

    @qmp_command("query-balloon")
    def query_balloon(self) -> dict[str, Any]:
        """balloon.c qmp_query_balloon."""
        balloon = have_balloon(self.devices.balloon)
        return {"actual": balloon.actual_bytes(self.devices.ram_size())}

    @qmp_command("balloon")
    def balloon(self, value: int) -> None:
        """balloon.c qmp_balloon."""
        self.devices.set_target(value)
