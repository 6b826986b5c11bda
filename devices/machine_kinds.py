"""The qdev models (`devices.qdev.DeviceKind`) of CPUs, pc-dimm/nvdimm and
virtio-balloon: what `-device`/`device_add` and `device_del` of those types do.

`devices` layer. Each kind turns a qdev `Device` (its type, id, QOM node and parsed
properties) into the models of `devices.machine_commands.MachineDevices`
[hw/i386/pc.c pc_machine_device_pre_plug_cb, pc_machine_device_plug_cb,
pc_machine_device_unplug_request_cb; hw/mem/pc-dimm.c; hw/virtio/virtio-balloon.c
and virtio-pci.c virtio_balloon_pci_instance_init, which aliases the balloon's
guest-stats properties on the PCI proxy]. `register_kinds` registers them on a
machine's Qdev.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from devices.cpus import Vcpu
from devices.machine_commands import MachineDevices
from devices.memory import MemoryBackend
from devices.misc import GuestMisc, I6300esb
from devices.qdev import (
    Device,
    Qdev,
    UnplugStyle,
    complete_unplug,
    discard,
    new_device,
    realize,
    type_info,
)
from schema.errors import QERR_INVALID_PARAMETER_TYPE, GenericError


def _int_prop(dev: Device, name: str, default: int) -> int:
    return int(dev.props.get(name, default))


def _complete_unplug(qdev: Qdev, dev: Device) -> bool:
    """qdev's end of a DEFERRED unplug (the guest ejected the device): the device
    leaves the tree with its DEVICE_DELETED."""
    complete_unplug(qdev, dev)
    return True


@attrs.define(eq=False)
class CpuKind:
    """A CPU type's device (pc.c pc_cpu_pre_plug, pc_cpu_plug, unplug request)."""

    devices: MachineDevices

    def realize(self, qdev: Qdev, dev: Device) -> None:
        cpus = self.devices.cpus
        props: dict[str, int] = {k: _int_prop(dev, k, -1)
                                 for k in ("socket-id", "core-id", "thread-id", "apic-id")
                                 if k in dev.props}
        node = dev.node
        if not dev.hotplugged and "apic-id" in props:
            board = cpus.board_cpu(props["apic-id"])
            if board is not None:  # a CPU of -smp, now in the board's tree
                board.node_path = node.path
                dev.state = board
                return
        index, apic_id = cpus.pre_plug(dev.typename, props)
        dev.state = cpus.plug(index, apic_id, qom_path=dev.path, ident=dev.id,
                              node_path=node.path)
        if dev.hotplugged:
            self.devices.cpu_plugged(dev.state)

    def unrealize(self, qdev: Qdev, dev: Device) -> None:
        if dev.state is not None and dev.state in self.devices.cpus.present():
            self.devices.cpus.unplug(dev.state)

    def unplug_request(self, qdev: Qdev, dev: Device) -> UnplugStyle:
        """pc_cpu_unplug_request_cb: the boot CPU stays, the legacy interface refuses;
        another goes when the guest ejects it through ACPI."""
        self.devices.unplug_request_cpu(dev.state, lambda: _complete_unplug(qdev, dev))
        return UnplugStyle.DEFERRED


@attrs.define(eq=False)
class DimmKind:
    """pc-dimm and nvdimm (pc-dimm.c pc_dimm_realize, pc.c pc_dimm_plug; unplug is
    the guest's: its _OST answers and the eject come from MachineDevices)."""

    devices: MachineDevices
    nvdimm_enabled: bool = False  # -machine nvdimm=on

    def realize(self, qdev: Qdev, dev: Device) -> None:
        memdev = dev.props.get("memdev")
        dimm = self.devices.plug_dimm(
            ident=dev.id, qom_path=dev.path,
            memdev=None if memdev is None else str(memdev).rsplit("/", 1)[-1],
            addr=_int_prop(dev, "addr", 0), slot=_int_prop(dev, "slot", -1),
            node=_int_prop(dev, "node", 0), nvdimm=dev.typename == "nvdimm",
            nvdimm_enabled=self.nvdimm_enabled, hotplugged=dev.hotplugged)
        dimm.ejected = lambda: _complete_unplug(qdev, dev)
        dev.state = dimm

    def unrealize(self, qdev: Qdev, dev: Device) -> None:
        if dev.state is not None:
            self.devices.unplug_dimm(dev.state)

    def unplug_request(self, qdev: Qdev, dev: Device) -> UnplugStyle:
        self.devices.unplug_request_dimm(dev.state)
        return UnplugStyle.DEFERRED


@attrs.define(eq=False)
class BalloonKind:
    """virtio-balloon-pci (and its virtio-balloon-device): one balloon per machine,
    its guest-stats properties on the device (aliased on the proxy)."""

    devices: MachineDevices

    def realize(self, qdev: Qdev, dev: Device) -> None:
        backend = dev.node.child("virtio-backend")
        path = backend.path() if backend is not None else dev.path
        balloon = self.devices.add_balloon(qom_path=path, ident=dev.id)
        dev.state = balloon
        for node in (dev.node, backend):
            if node is None:
                continue
            # the balloon's own getters and setter replace the recorded values
            for name in ("guest-stats", "guest-stats-polling-interval"):
                if name in node.props:
                    node.remove(name)
            node.add_property("guest-stats", "guest statistics",
                              get=balloon.guest_stats)
            node.add_property("guest-stats-polling-interval", "int",
                              get=lambda: balloon.poll_interval, set=self._set_interval)

    def _set_interval(self, value: Any) -> None:
        """balloon_stats_set_poll_interval through visit_type_int."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenericError(QERR_INVALID_PARAMETER_TYPE %
                               ("guest-stats-polling-interval", "integer"))
        self.devices.set_stats_interval(value)

    def unrealize(self, qdev: Qdev, dev: Device) -> None:
        """virtio_balloon_device_unrealize -> qemu_remove_balloon_handler."""
        if self.devices.balloon is dev.state:
            self.devices.remove_balloon()

    def unplug_request(self, qdev: Qdev, dev: Device) -> UnplugStyle:
        return UnplugStyle.GUEST  # a PCI device: ACPI/PCIe hotplug, the guest ejects


@attrs.define(eq=False)
class I6300esbKind:
    """The i6300esb PCI watchdog: its model joins the guest's watchdog devices."""

    misc: GuestMisc

    def realize(self, qdev: Qdev, dev: Device) -> None:
        device = I6300esb(host=self.misc.host)
        self.misc.add_watchdog(device)
        dev.state = device

    def unrealize(self, qdev: Qdev, dev: Device) -> None:
        if dev.state in self.misc.watchdogs:
            dev.state.reset()
            self.misc.watchdogs.remove(dev.state)

    def unplug_request(self, qdev: Qdev, dev: Device) -> UnplugStyle:
        return UnplugStyle.GUEST


def new_cpu(qdev: Qdev, typename: str, apic_id: int) -> Vcpu:
    """pc.c pc_new_cpu: object_new of the machine's CPU type, its apic-id, realized
    (pc_cpu_pre_plug's checks; /machine/unattached/device[N])."""
    info = type_info(qdev.catalog, typename)
    assert info is not None, typename
    qdev.container("/machine/unattached")  # the board and its CPUs first
    dev = new_device(qdev, info, ident=None, bus=None)
    dev.props["apic-id"] = apic_id
    try:
        realize(qdev, dev)
    except GenericError:
        discard(qdev, dev)
        raise
    state: Vcpu = dev.state
    return state


DIMM_TYPES = ("pc-dimm", "nvdimm")
BALLOON_TYPES = ("virtio-balloon-pci", "virtio-balloon-device")


def memory_backends(qdev: Qdev) -> tuple[list[str], dict[str, MemoryBackend]]:
    """The ids of /objects and its memory backends as query-memdev and pc-dimm see
    them (hostmem.c properties)."""
    store = qdev.objects
    backends = {}
    for ident in store.objects:
        obj = store.get(ident, "memory-backend")
        if obj is not None:
            v = obj.values
            backends[ident] = MemoryBackend(
                id=ident, size=int(v["size"]), merge=bool(v["merge"]), dump=bool(v["dump"]),
                prealloc=bool(v["prealloc"]), policy=str(v["policy"]),
                host_nodes=tuple(v["host-nodes"] or ()))
    return list(store.objects), backends


def connect_objects(qdev: Qdev, devices: MachineDevices) -> None:
    """The DIMMs' backends are qdev's user-creatable objects."""
    devices.memory.objects = lambda: memory_backends(qdev)
    devices.tree = lambda: qdev.root
    devices.backend_used = qdev.objects.use
    devices.backend_released = qdev.objects.release


def register_kinds(qdev: Qdev, devices: MachineDevices, misc: GuestMisc,
                   cpu_types: Iterable[str], *, nvdimm_enabled: bool = False) -> None:
    """Make `device_add` of the CPU types, DIMMs, the balloon and the i6300esb reach
    their models."""
    qdev.register("i6300esb", I6300esbKind(misc))
    if qdev.catalog is not None:
        connect_objects(qdev, devices)
    cpu = CpuKind(devices)
    for typename in cpu_types:
        qdev.register(typename, cpu)
    dimm = DimmKind(devices, nvdimm_enabled=nvdimm_enabled)
    for typename in DIMM_TYPES:
        qdev.register(typename, dimm)
    balloon = BalloonKind(devices)
    for typename in BALLOON_TYPES:
        qdev.register(typename, balloon)
