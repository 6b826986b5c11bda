"""The device state of a migration: the stream sections of qdev and the balloon.

Part of the composition root (`vmm`): it joins the devices layer (`devices.qdev`,
`devices.machine_commands`) to the `migration.stream.Section` Protocol, which neither
of those packages may import. `Vm.build` adds the sections with
`Migration.add_section`.

QEMU gives every device with a vmstate description a savevm section named by its
`idstr`: the device's qdev path (for a PCI device `pcibus_get_dev_path`:
`DDDD:BB:SS.F`, one `:SS.F` per bridge on the way), a slash and the vmstate's name,
with instance 0 [migration/savevm.c vmstate_register_with_alias_id,
calculate_new_instance_id; hw/pci/pci.c pcibus_get_dev_path]. A virtio device's
section is its backend's (`virtio-net`), under its PCI proxy's path
[hw/virtio/virtio-bus.c virtio_bus_get_dev_path]; the proxy writes none of its own.
A device without a qdev path (ISA, the system bus) is named by the vmstate alone,
its instance counted per name. The destination looks each of the source's sections
up and fails on the first it lacks [migration/savevm.c
qemu_loadvm_section_start_full]: `Unknown savevm section or instance '<idstr>' <n>`,
then `load of migration failed: Invalid argument` [migration/migration.c
process_incoming_migration_co]. A destination with more devices than the source
loads (its extra devices keep their reset state), as in QEMU.
"""

from __future__ import annotations

from typing import Any

import attrs

from devices.machine_commands import MachineDevices
from devices.qdev import Device, Qdev
from migration.stream import LoadError
from schema.jsontypes import JSONValue

# The vmstate names of device types whose VMStateDescription is not named after the
# type [hw/net/virtio-net.c, hw/block/virtio-blk.c, hw/virtio/virtio-balloon.c,
# hw/char/virtio-serial-bus.c, hw/scsi/virtio-scsi.c, hw/virtio/virtio-rng.c,
# hw/input/virtio-input.c, hw/display/virtio-gpu.c, hw/net/pcnet-pci.c,
# hw/display/vga-pci.c, hw/acpi/piix4.c]; every other type's vmstate is taken to
# carry its type name (e1000, rtl8139, ne2000, I440FX, PIIX3, ...).
VMSD_NAMES = {
    "virtio-net-device": "virtio-net",
    "virtio-blk-device": "virtio-blk",
    "virtio-balloon-device": "virtio-balloon",
    "virtio-serial-device": "virtio-console",
    "virtio-scsi-device": "virtio-scsi",
    "virtio-rng-device": "virtio-rng",
    "virtio-keyboard-device": "virtio-input",
    "virtio-mouse-device": "virtio-input",
    "virtio-tablet-device": "virtio-input",
    "virtio-gpu-device": "virtio-gpu",
    "pcnet": "pcnet",
    "VGA": "vga",
    "PIIX4_PM": "piix4_pm",
}
PCI_BUSES = ("PCI", "PCIE")
INVALID = "load of migration failed: Invalid argument"


def _pci_path(dev: Device) -> str | None:
    """pcibus_get_dev_path: `0000:00` for the root bus, then `:SS.F` per device from
    the root down; None off PCI."""
    slots: list[str] = []
    while dev.bus is not None and dev.bus.type in PCI_BUSES:
        devfn = dev.props.get("addr")
        if not isinstance(devfn, int):
            return None
        slots.append(f":{devfn >> 3:02x}.{devfn & 7:x}")
        parent = dev.bus.parent
        if parent is None or parent.bus is None or parent.bus.type not in PCI_BUSES:
            break
        dev = parent
    if not slots:
        return None
    return "0000:00" + "".join(reversed(slots))


def _is_virtio_proxy(dev: Device) -> bool:
    return any(bus.type == "virtio-pci-bus" for bus in dev.buses)


def _dev_path(dev: Device) -> str | None:
    """qdev_get_dev_path: the bus's get_dev_path; a virtio bus asks its proxy."""
    if dev.bus is not None and dev.bus.type == "virtio-pci-bus" and dev.bus.parent:
        return _pci_path(dev.bus.parent)
    return _pci_path(dev)


def section_ids(qdev: Qdev) -> list[tuple[str, int, Device]]:
    """The savevm sections of the realized devices, in registration (realize) order:
    (idstr, instance id, device)."""
    qdev.root  # noqa: B018 -- the tree is built on first use
    out: list[tuple[str, int, Device]] = []
    seen: dict[str, int] = {}
    for dev in qdev.devices:
        if not dev.realized or _is_virtio_proxy(dev):
            continue
        name = VMSD_NAMES.get(dev.typename, dev.typename)
        path = _dev_path(dev)
        idstr = f"{path}/{name}" if path else name
        instance = seen.get(idstr, -1) + 1
        seen[idstr] = instance
        out.append((idstr, instance, dev))
    return out


@attrs.define(eq=False)
class DevicesSection:
    """The qdev devices: one entry per savevm section (idstr, instance) with the
    device's type, id, QOM path and qdev properties as the stream carries them."""

    qdev: Qdev
    name: str = "devices"

    def save(self) -> JSONValue:
        entries: list[JSONValue] = []
        for idstr, instance, dev in section_ids(self.qdev):
            entries.append({"idstr": idstr, "instance": instance, "type": dev.typename,
                            "id": dev.id, "qom-path": dev.path,
                            "props": {k: v for k, v in dev.props.items()
                                      if isinstance(v, (str, int, bool))}})
        return entries

    def load(self, value: JSONValue) -> None:
        """find_se for every section of the source, in its order."""
        if not isinstance(value, list):
            raise LoadError(INVALID)
        local = {(idstr, instance) for idstr, instance, _ in section_ids(self.qdev)}
        for entry in value:
            if not isinstance(entry, dict):
                raise LoadError(INVALID)
            idstr, instance = str(entry.get("idstr")), entry.get("instance")
            if (idstr, instance) not in local:
                raise LoadError(f"Unknown savevm section or instance '{idstr}' {instance}",
                                INVALID)


@attrs.define(eq=False)
class BalloonSection:
    """virtio-balloon's vmstate: the config space's `num_pages` (the target) and
    `actual` (what the guest gave up) [hw/virtio/virtio-balloon.c
    virtio_balloon_save_device, virtio_balloon_load_device]."""

    devices: MachineDevices
    name: str = "balloon"

    def save(self) -> JSONValue:
        balloon = self.devices.balloon
        if balloon is None:
            return None
        return {"num-pages": balloon.num_pages, "actual": balloon.actual}

    def load(self, value: JSONValue) -> None:
        balloon = self.devices.balloon
        if not isinstance(value, dict) or balloon is None:
            return  # without a balloon on either side the devices section said so
        num_pages: Any = value.get("num-pages")
        actual: Any = value.get("actual")
        if isinstance(num_pages, int) and isinstance(actual, int):
            balloon.num_pages, balloon.actual = num_pages, actual
