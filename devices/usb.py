"""USB: the ports of a USB bus and how a device claims one.

Pure model of the `devices` layer [hw/usb/bus.c usb_claim_port, usb_release_port,
usb_register_port; hw/usb/hcd-uhci.c (two root ports), hcd-ohci.c (three),
hcd-ehci.c (six), hcd-xhci.c (four USB 2 + four USB 3); hw/usb/dev-hub.c (eight
downstream ports)]. A USB bus (`devices.qdev.Bus` of type usb-bus) keeps its free
ports in `Bus.extra["free"]` (in QEMU's order) and the used ones in
`Bus.extra["used"]`. As in QEMU, a device that would take a bus's last free port
gets a usb-hub created in front of it (usb_claim_port's "Create a new hub and chain
it on"): that hub stays when the device goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schema.errors import GenericError

if TYPE_CHECKING:
    from devices.qdev import Bus, Device, Qdev

ROOT_PORTS = {"piix3-usb-uhci": 2, "piix4-usb-uhci": 2, "vt82c686b-usb-uhci": 2,
              "ich9-usb-uhci1": 2, "ich9-usb-uhci2": 2, "ich9-usb-uhci3": 2,
              "ich9-usb-uhci4": 2, "ich9-usb-uhci5": 2, "ich9-usb-uhci6": 2,
              "pci-ohci": 3, "usb-ehci": 6, "ich9-usb-ehci1": 6, "ich9-usb-ehci2": 6,
              "nec-usb-xhci": 8, "qemu-xhci": 8}
HUB_PORTS = 8

# product_desc of the devices usb_claim_port names [hw/usb/dev-*.c]
PRODUCT = {"usb-tablet": "QEMU USB Tablet", "usb-mouse": "QEMU USB Mouse",
           "usb-kbd": "QEMU USB Keyboard", "usb-hub": "QEMU USB Hub",
           "usb-storage": "QEMU USB MSD", "usb-serial": "QEMU USB SERIAL",
           "usb-audio": "QEMU USB Audio", "usb-net": "QEMU USB Network Interface",
           "usb-wacom-tablet": "QEMU PenPartner Tablet"}


def setup_usb_bus(bus: Bus, controller: str) -> None:
    bus.extra["free"] = [str(n) for n in range(1, ROOT_PORTS.get(controller, 2) + 1)]
    bus.extra["used"] = {}


def claim_port(qdev: Qdev, dev: Device, bus: Bus) -> None:
    """usb_claim_port: the port of `port=`, or the first free one (a hub first when
    only one is left)."""
    free: list[str] = bus.extra.setdefault("free", ["1", "2"])
    used: dict[str, Device] = bus.extra.setdefault("used", {})
    wanted = dev.props.get("port")
    if isinstance(wanted, str) and wanted:
        if wanted not in free:
            raise GenericError(f"usb port {wanted} (bus {bus.name}) not found (in use?)")
        port = wanted
    else:
        if len(free) == 1 and dev.typename != "usb-hub":
            _create_hub(qdev, bus)
        if not free:
            raise GenericError(f"tried to attach usb device "
                               f"{PRODUCT.get(dev.typename, dev.typename)} to a bus with "
                               "no free ports")
        port = free[0]
    free.remove(port)
    used[port] = dev
    # the port taken; the `port` property stays what the user gave (usb_claim_port
    # never writes port_path: qom-get and info qtree print "" for a chosen port)
    dev.props["usb-port"] = port
    if dev.typename == "usb-hub":
        free.extend(f"{port}.{n}" for n in range(1, HUB_PORTS + 1))


def release_port(dev: Device, bus: Bus) -> None:
    """usb_release_port (a hub's own ports go with it)."""
    used: dict[str, Device] = bus.extra.get("used", {})
    free: list[str] = bus.extra.get("free", [])
    for port, other in list(used.items()):
        if other is dev:
            del used[port]
            free.append(port)
            if dev.typename == "usb-hub":
                for sub in [p for p in free if p.startswith(port + ".")]:
                    free.remove(sub)


def _create_hub(qdev: Qdev, bus: Bus) -> None:
    """usb_try_create_simple(bus, "usb-hub"): an unattached hub on the bus."""
    from devices.qdev import new_device, realize, type_info

    info = type_info(qdev.catalog, "usb-hub")
    if info is None:
        return
    hub = new_device(qdev, info, ident=None, bus=bus)
    claim_port(qdev, hub, bus)
    realize(qdev, hub)
