"""PCI: slots and functions of a PCI bus, and `query-pci`.

Pure model of the `devices` layer [hw/pci/pci.c do_pci_register_device (the
automatic slot and QEMU's "not available" texts), pci_init_multifunction,
qmp_query_pci, qmp_query_pci_device, qmp_query_pci_regions, get_class_desc;
hw/core/qdev-properties.c print_pci_devfn]. A PCI bus (`devices.qdev.Bus` of type
PCI or PCIE) keeps its devices by devfn in `Bus.extra["devfn"]`; `assign_devfn`
takes the given address or the first free slot from the bus's lowest devfn, as
QEMU does. Vendor, device and class ids come from each model's class_init (the
table below cites them); BARs are reported unmapped (the firmware that maps them
runs only in a real guest; QEMU with -S reports the same).
"""

from __future__ import annotations

from typing import Any

import attrs

from devices.qdev import Bus, Device
from schema.errors import GenericError


@attrs.frozen
class PciIds:
    """What class_init and realize give a PCI function: vendor, device, class, its
    BARs (bar, "io"/"memory", size, prefetch, 64-bit), whether it has an interrupt
    pin, whether it is a bridge, and whether it is multifunction by nature."""

    vendor: int
    device: int
    cls: int
    bars: tuple[tuple[int, str, int, bool, bool], ...] = ()
    irq_pin: bool = False


_VIRTIO_BARS = ((4, "memory", 0x4000, True, True), (1, "memory", 0x1000, False, False))

# [hw/pci-host/piix.c, hw/isa/piix4.c, hw/ide/piix.c, hw/acpi/piix4.c,
#  hw/display/vga-pci.c, hw/net/e1000.c, hw/net/e1000e.c, hw/net/rtl8139.c,
#  hw/usb/hcd-uhci.c, hw/usb/hcd-xhci.c, hw/usb/hcd-ehci-pci.c, hw/pci-host/q35.c,
#  hw/isa/lpc_ich9.c, hw/ide/ich.c, hw/i2c/smbus_ich9.c (pm_smbus.c's 64-byte BAR),
#  hw/virtio/virtio-pci.c
#  (legacy ids 0x1000 + type), hw/pci-bridge/pci_bridge_dev.c, hw/scsi/lsi53c895a.c]
PCI_IDS: dict[str, PciIds] = {
    "i440FX": PciIds(0x8086, 0x1237, 0x0600),
    "PIIX3": PciIds(0x8086, 0x7000, 0x0601),
    "piix3-ide": PciIds(0x8086, 0x7010, 0x0101, ((4, "io", 16, False, False),)),
    "PIIX4_PM": PciIds(0x8086, 0x7113, 0x0680, irq_pin=True),
    "VGA": PciIds(0x1234, 0x1111, 0x0300, ((0, "memory", 16 << 20, True, False),
                                           (2, "memory", 4096, False, False))),
    "secondary-vga": PciIds(0x1234, 0x1111, 0x0380, ((0, "memory", 16 << 20, True, False),
                                                     (2, "memory", 4096, False, False))),
    "e1000": PciIds(0x8086, 0x100E, 0x0200, ((0, "memory", 0x20000, False, False),
                                             (1, "io", 64, False, False)), irq_pin=True),
    "e1000e": PciIds(0x8086, 0x10D3, 0x0200, ((0, "memory", 0x20000, False, False),
                                              (1, "memory", 0x20000, False, False),
                                              (2, "io", 32, False, False),
                                              (3, "memory", 0x4000, False, False)),
                     irq_pin=True),
    "rtl8139": PciIds(0x10EC, 0x8139, 0x0200, ((0, "io", 256, False, False),
                                               (1, "memory", 256, False, False)),
                      irq_pin=True),
    "piix3-usb-uhci": PciIds(0x8086, 0x7020, 0x0C03, ((4, "io", 32, False, False),),
                             irq_pin=True),
    "ich9-usb-uhci1": PciIds(0x8086, 0x2934, 0x0C03, ((4, "io", 32, False, False),),
                             irq_pin=True),
    "usb-ehci": PciIds(0x8086, 0x24CD, 0x0C03, ((0, "memory", 4096, False, False),),
                       irq_pin=True),
    "nec-usb-xhci": PciIds(0x1033, 0x0194, 0x0C03, ((0, "memory", 0x4000, False, True),),
                           irq_pin=True),
    "qemu-xhci": PciIds(0x1B36, 0x000D, 0x0C03, ((0, "memory", 0x4000, False, True),),
                        irq_pin=True),
    "mch": PciIds(0x8086, 0x29C0, 0x0600),
    "ICH9-LPC": PciIds(0x8086, 0x2918, 0x0601),
    "ich9-ahci": PciIds(0x8086, 0x2922, 0x0106, ((4, "io", 32, False, False),
                                                 (5, "memory", 4096, False, False)),
                        irq_pin=True),
    "ICH9 SMB": PciIds(0x8086, 0x2930, 0x0C05, ((4, "io", 64, False, False),),
                       irq_pin=True),
    "virtio-net-pci": PciIds(0x1AF4, 0x1000, 0x0200,
                             ((0, "io", 32, False, False), *_VIRTIO_BARS), irq_pin=True),
    "virtio-blk-pci": PciIds(0x1AF4, 0x1001, 0x0100,
                             ((0, "io", 64, False, False), *_VIRTIO_BARS), irq_pin=True),
    "virtio-balloon-pci": PciIds(0x1AF4, 0x1002, 0x00FF,
                                 ((0, "io", 32, False, False), (4, "memory", 0x4000, True,
                                                                 True)), irq_pin=True),
    "virtio-serial-pci": PciIds(0x1AF4, 0x1003, 0x0780,
                                ((0, "io", 32, False, False), *_VIRTIO_BARS), irq_pin=True),
    "virtio-scsi-pci": PciIds(0x1AF4, 0x1004, 0x0100,
                              ((0, "io", 64, False, False), *_VIRTIO_BARS), irq_pin=True),
    "virtio-rng-pci": PciIds(0x1AF4, 0x1005, 0x00FF,
                             ((0, "io", 32, False, False), (4, "memory", 0x4000, True,
                                                             True)), irq_pin=True),
    "lsi53c895a": PciIds(0x1000, 0x0012, 0x0100, ((0, "io", 256, False, False),
                                                  (1, "memory", 0x400, False, False),
                                                  (2, "memory", 0x2000, False, False)),
                         irq_pin=True),
    "pci-bridge": PciIds(0x1B36, 0x0001, 0x0604, ((0, "memory", 256, False, True),),
                         irq_pin=True),
}

# pci.c pci_class_descriptions (the classes the table above uses, and their kin)
CLASS_DESC = {
    0x0100: "SCSI controller", 0x0101: "IDE controller", 0x0106: "SATA controller",
    0x0200: "Ethernet controller", 0x0280: "Network controller",
    0x0300: "VGA controller", 0x0380: "Display controller", 0x0401: "Audio controller",
    0x0403: "Audio controller", 0x0600: "Host bridge", 0x0601: "ISA bridge",
    0x0604: "PCI bridge", 0x0680: "Bridge", 0x0700: "Serial port",
    0x0C03: "USB controller", 0x0C05: "SMBus",
}

UNMAPPED = -1  # PCI_BAR_UNMAPPED as QAPI's int


def legacy_addr(devfn: int) -> str:
    """print_pci_devfn."""
    return "<unset>" if devfn < 0 else f"{devfn >> 3:02x}.{devfn & 7:x}"


def setup_root_bus(bus: Bus) -> None:
    """A PCI bus with no device yet (devfn_min 0)."""
    bus.extra.setdefault("devfn", {})
    bus.extra.setdefault("devfn_min", 0)


def assign_devfn(dev: Device, bus: Bus, devfn: int | None) -> int:
    """do_pci_register_device: the given devfn, or the first slot whose function 0
    is free; QEMU's texts when it cannot."""
    setup_root_bus(bus)
    taken: dict[int, Device] = bus.extra["devfn"]
    name = dev.typename
    if devfn is None or devfn < 0:
        for candidate in range(bus.extra["devfn_min"], 256, 8):
            if candidate not in taken:
                return candidate
        raise GenericError(f"PCI: no slot/function available for {name}, all in use or "
                           "reserved")
    if devfn in taken:
        raise GenericError(f"PCI: slot {devfn >> 3} function {devfn & 7} not available for "
                           f"{name}, in use by {taken[devfn].typename}")
    f0 = taken.get(devfn & ~7)
    if dev.hotplugged and devfn & 7 and f0 is not None:
        raise GenericError(f"PCI: slot {devfn >> 3} function 0 already ocuppied by "
                           f"{f0.typename}, new func {name} cannot be exposed to guest.")
    return devfn


def check_multifunction(dev: Device, bus: Bus, devfn: int, multifunction: bool) -> None:
    """pci_init_multifunction."""
    taken: dict[int, Device] = bus.extra["devfn"]
    slot, fn = devfn >> 3, devfn & 7
    if fn:
        f0 = taken.get(devfn & ~7)
        if f0 is not None and not f0.props.get("multifunction", False) and \
                f0.typename not in ("PIIX3", "ICH9-LPC"):
            raise GenericError(f"PCI: single function device can't be populated in "
                               f"function {slot:x}.{fn:x}")
        return
    if multifunction:
        return
    for func in range(1, 8):
        if (devfn | func) in taken:
            raise GenericError(f"PCI: {slot:x}.0 indicates single function, but "
                               f"{slot:x}.{func:x} is already populated.")


def plug_pci(dev: Device, bus: Bus, step_addr: int | None) -> None:
    """Put a board device at its address (or the first free slot)."""
    devfn = assign_devfn(dev, bus, step_addr)
    occupy(dev, bus, devfn)


def occupy(dev: Device, bus: Bus, devfn: int) -> None:
    """The device at `devfn`: its `addr` and `legacy-addr` say so."""
    setup_root_bus(bus)
    bus.extra["devfn"][devfn] = dev
    dev.props["addr"] = devfn
    node = dev.node
    if "addr" in node.props:
        node.props["addr"].get = lambda: devfn
    else:
        node.add_property("addr", "int32", get=lambda: devfn)
    if "legacy-addr" in node.props:
        node.props["legacy-addr"].get = lambda: legacy_addr(devfn)
    else:
        node.add_property("legacy-addr", "str", get=lambda: legacy_addr(devfn))


def vacate(dev: Device, bus: Bus) -> None:
    taken: dict[int, Device] = bus.extra.get("devfn", {})
    for devfn, other in list(taken.items()):
        if other is dev:
            del taken[devfn]


def query_pci(buses: list[Bus]) -> list[dict[str, Any]]:
    """qmp_query_pci: every root PCI bus (bus number 0 for the first), its devices
    in devfn order."""
    out = []
    for number, bus in enumerate(b for b in buses if b.type in ("PCI", "PCIE")
                                 and b.parent is not None and
                                 b.parent.typename in ("i440FX-pcihost", "q35-pcihost")):
        taken: dict[int, Device] = bus.extra.get("devfn", {})
        out.append({"bus": number,
                    "devices": [_device_info(taken[d], d, number) for d in sorted(taken)]})
    return out


def _device_info(dev: Device, devfn: int, bus_num: int) -> dict[str, Any]:
    ids = PCI_IDS.get(dev.typename, PciIds(0, 0, 0))
    class_info: dict[str, Any] = {"class": ids.cls}
    if ids.cls in CLASS_DESC:
        class_info["desc"] = CLASS_DESC[ids.cls]
    info: dict[str, Any] = {
        "bus": bus_num, "slot": devfn >> 3, "function": devfn & 7,
        "class_info": class_info, "id": {"device": ids.device, "vendor": ids.vendor},
        "qdev_id": dev.id or "",
        "regions": [_region(b) for b in sorted(ids.bars)],
    }
    if ids.irq_pin:
        info["irq"] = 0
    return info


def _region(bar: tuple[int, str, int, bool, bool]) -> dict[str, Any]:
    number, kind, size, prefetch, wide = bar
    region: dict[str, Any] = {"bar": number, "type": kind, "address": UNMAPPED,
                              "size": size}
    if kind == "memory":
        region["prefetch"] = prefetch
        region["mem_type_64"] = wide
    return region
