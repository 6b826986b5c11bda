"""The `chardev=` property of qdev devices: find the chardev, attach the device's
frontend, let go when the device goes.

Pure model of `devices.chardev`, the lookup API qdev calls (it satisfies
`devices.qdev.BackendResolver` structurally, so neither imports the other)
[hw/core/qdev-properties-system.c set_chr, release_chr; chardev/char-fe.c
qemu_chr_fe_init]. Serial ports (isa-serial, pci-serial) get a simulated console
(`devices.chardev.ports`), virtio-serial ports a `VirtioSerialPort` (VSERPORT_CHANGE,
the guest agent), any other device a plain frontend that keeps what it receives.
"""

from __future__ import annotations

from typing import Any

from devices.chardev.model import Chardevs
from devices.chardev.ports import GuestPorts
from schema.errors import GenericError

SERIAL_TYPES = ("isa-serial", "pci-serial", "pci-serial-2x", "pci-serial-4x")
VIRTIO_PORT_TYPES = ("virtserialport", "virtconsole")


class ChardevResolver:
    """qdev's resolver for `chardev=`."""

    def __init__(self, chardevs: Chardevs, ports: GuestPorts, events: Any) -> None:
        self.chardevs = chardevs
        self.ports = ports
        self.events = events

    def claim(self, qdev: Any, dev: Any, owner_type: str, prop: str, value: str) -> Any:
        """set_chr: "can't find value", then qemu_chr_fe_init's error behind "can't
        take value"."""
        if self.chardevs.find(value) is None:
            raise GenericError(f"Property '{owner_type}.{prop}' can't find value '{value}'")
        owner = dev.id or getattr(dev, "path", "")
        try:
            if dev.typename in SERIAL_TYPES:
                return self.ports.add_serial(self.chardevs, value)
            from devices.chardev.frontends import RingFrontend, VirtioSerialPort

            if dev.typename in VIRTIO_PORT_TYPES:
                port = VirtioSerialPort(events=self.events, port_id=dev.id,
                                        name_source=lambda: str(dev.props.get("name", "")))
                port.attach(self.chardevs, value, owner=owner)
                return self.ports.add_port(port)
            frontend = RingFrontend()
            frontend.attach(self.chardevs, value, owner=owner)
            return frontend
        except GenericError as err:
            raise GenericError(f"Property '{owner_type}.{prop}' can't take value "
                               f"'{value}': {err.desc}") from None

    def release(self, qdev: Any, dev: Any, prop: str, claimed: Any) -> None:
        """release_chr: qemu_chr_fe_deinit (the chardev stays)."""
        chardev = getattr(claimed, "chardev", None)
        if chardev is not None:
            self.chardevs.detach(chardev, claimed)
        if claimed in self.ports.serials:
            self.ports.serials.remove(claimed)
        if claimed in self.ports.ports:
            # unplugging a port tells the guest it went (remove_port), and no
            # VSERPORT_CHANGE follows [hw/char/virtio-serial-bus.c
            # virtser_port_device_unrealize]
            claimed.guest_open = False
            self.ports.ports.remove(claimed)
