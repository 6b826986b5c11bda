"""The guest's character ports of one machine, and the guest behaviours behind them.

Pure model of `devices.chardev`, kept light for start-up: the frontends themselves
(`devices.chardev.frontends`) load when the first port is created. With
`serial-console=login` the simulated guest prints a banner and login prompt on its
serial ports when it first runs; with `guest-agent=on` a virtio-serial port named
org.qemu.guest_agent.0 opens when the guest runs and answers the agent's handshake.
Both are off by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schema.handlers import Behaviour, SubsystemHooks, choice

if TYPE_CHECKING:
    from devices.chardev.frontends import SerialConsole, VirtioSerialPort
    from devices.chardev.model import Chardevs

CONSOLE = Behaviour(
    "serial-console", "what the simulated guest prints on its serial ports",
    choice("off", "login"), os="off", firmware="off")
GUEST_AGENT = Behaviour(
    "guest-agent", "whether a guest agent answers on virtio-serial port "
    "org.qemu.guest_agent.0", choice("off", "on"), os="off", firmware="off")
CHARDEV_BEHAVIOURS = (CONSOLE, GUEST_AGENT)


class GuestPorts(SubsystemHooks):
    """Serial consoles and virtio-serial ports: a subsystem of the Machine whose guest
    starts using them when the VM runs. `behaviour` reads a named guest behaviour's
    current value (the Machine's registry)."""

    def __init__(self, behaviour: Callable[[str], Any]) -> None:
        self.behaviour = behaviour
        self.serials: list[SerialConsole] = []
        self.ports: list[VirtioSerialPort] = []
        self.running = False

    def add_serial(self, chardevs: Chardevs, ident: str) -> SerialConsole:
        """A serial port (isa-serial) on chardev `ident` (-serial, or qdev's
        `chardev=`)."""
        from devices.chardev.frontends import SerialConsole

        console = SerialConsole(mode=self.behaviour(CONSOLE.name))
        console.attach(chardevs, ident, owner="serial")
        self.serials.append(console)
        return console

    def add_port(self, port: VirtioSerialPort) -> VirtioSerialPort:
        """A virtserialport qdev created (attached to its chardev by the caller)."""
        port.agent = self.behaviour(GUEST_AGENT.name) == "on"
        self.ports.append(port)
        return port

    def reset(self) -> None:
        """The virtio reset closes every port [hw/char/virtio-serial-bus.c
        guest_reset]; a guest that keeps running boots again, and its agent reopens
        its port (at once in this model)."""
        for port in self.ports:
            port.set_guest_connected(False)
        if self.running:
            for port in self.ports:
                port.guest_runs()

    def vm_start(self) -> None:
        self.running = True
        for console in self.serials:
            console.mode = self.behaviour(CONSOLE.name)
            console.guest_runs()
        for port in self.ports:
            port.agent = self.behaviour(GUEST_AGENT.name) == "on"
            port.guest_runs()

    def vm_stop(self) -> None:
        self.running = False
