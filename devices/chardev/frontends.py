"""Guest-side frontends of chardevs: a serial port with a simulated console, a
virtio-serial port (VSERPORT_CHANGE), and the guest agent behind one.

Pure model of `devices.chardev` (no I/O): a frontend holds a chardev
(`Chardevs.attach`, qemu_chr_fe_init) and writes to it with `Chardev.write`; what
the host side sends arrives in `receive`. Guest reactions are named behaviours
(`CONSOLE`, `GUEST_AGENT`, off by default): with the console on, the simulated guest
prints a short banner and a login prompt on its serial port when it first runs, and
echoes what is typed (`devices.chardev.ports` holds the behaviours and the ports of
a machine); with the agent on, a virtio-serial port named
`org.qemu.guest_agent.0` opens when the guest runs and answers the agent's
handshake (guest-sync, guest-sync-delimited, guest-ping, guest-info) as
qemu-ga 2.11 does [qga/commands.c qmp_guest_sync, qmp_guest_ping, qmp_guest_info;
hw/char/virtio-console.c; hw/char/virtio-serial-bus.c].
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from devices.chardev.model import Chardev, Chardevs, Ring

BANNER = (b"\r\nqmp-emulator simulated guest (QEMU 2.11.0 machine)\r\n"
          b"Kernel on an x86_64 (ttyS0)\r\n\r\nlocalhost login: ")
AGENT_NAME = "org.qemu.guest_agent.0"
AGENT_COMMANDS = ("guest-sync", "guest-sync-delimited", "guest-ping", "guest-info")


class EventSink(Protocol):
    def emit(self, name: str, data: dict[str, Any] | None = None) -> Any: ...


@attrs.define(kw_only=True, eq=False)
class SerialConsole:
    """A guest serial port (isa-serial) whose guest prints a console when
    `serial-console` is `login`."""

    mode: str = "off"
    chardev: Chardev | None = None
    printed: bool = False
    line: bytearray = attrs.Factory(bytearray)
    hotswap: bool = True  # serial_be_change [hw/char/serial.c]
    frontend_open: bool = True  # the UART has no open/close of its own

    def attach(self, chardevs: Chardevs, ident: str, owner: str = "") -> None:
        self.chardev = chardevs.attach(ident, self, owner=owner)

    def guest_runs(self) -> None:
        """The guest reached its console (the first VM start)."""
        if self.mode == "login" and not self.printed and self.chardev is not None:
            self.printed = True
            self.chardev.write(BANNER)

    def receive(self, data: bytes) -> None:
        if self.mode != "login" or self.chardev is None or not self.printed:
            return
        for byte in data:
            if byte in (0x0D, 0x0A):
                self.line.clear()
                self.chardev.write(b"\r\nlocalhost login: ")
            else:
                self.line.append(byte)
                self.chardev.write(bytes([byte]))

    def event(self, event: str) -> None:
        pass

    def backend_changed(self, chardev: Chardev) -> bool:
        self.chardev = chardev
        return True


@attrs.define(kw_only=True, eq=False)
class VirtioSerialPort:
    """A virtserialport: the guest opening or closing it sends VSERPORT_CHANGE for
    ports with an id [hw/char/virtio-console.c set_guest_connected]; the event bus
    throttles it per id. With the agent behaviour on and the agent's port name, the
    guest's qemu-ga answers what the host writes."""

    events: EventSink
    port_id: str | None
    name: str = ""
    # qdev sets the `name` property after `chardev` when the options come in that
    # order: the port reads its name from its device when it needs it
    name_source: Callable[[], str] | None = None
    agent: bool = False
    chardev: Chardev | None = None
    guest_open: bool = False
    pending: bytearray = attrs.Factory(bytearray)
    hotswap: bool = True  # virtconsole/virtserialport have chr_be_change

    @property
    def frontend_open(self) -> bool:
        return self.guest_open

    def attach(self, chardevs: Chardevs, ident: str, owner: str = "") -> None:
        self.chardev = chardevs.attach(ident, self, owner=owner)

    def set_guest_connected(self, connected: bool) -> None:
        if connected == self.guest_open:
            return
        self.guest_open = connected
        if self.port_id is not None:
            self.events.emit("VSERPORT_CHANGE", {"id": self.port_id, "open": connected})

    def port_name(self) -> str:
        return self.name_source() if self.name_source is not None else self.name

    def guest_runs(self) -> None:
        """The guest booted: its agent (when it has one here) opens the port."""
        if self.agent and self.port_name() == AGENT_NAME:
            self.set_guest_connected(True)

    def guest_stops(self) -> None:
        self.pending.clear()

    def receive(self, data: bytes) -> None:
        if not (self.agent and self.guest_open and self.port_name() == AGENT_NAME):
            return
        self.pending += data
        for reply in agent_replies(self.pending):
            if self.chardev is not None:
                self.chardev.write(reply)

    def event(self, event: str) -> None:
        pass

    def backend_changed(self, chardev: Chardev) -> bool:
        self.chardev = chardev
        return True


def agent_replies(buffer: bytearray) -> list[bytes]:
    """qemu-ga's reading of its channel: JSON objects one after another; a 0xFF byte
    resets the parser (what guest-sync-delimited relies on). Consumes what it reads
    from `buffer`; an incomplete object waits for more bytes."""
    out: list[bytes] = []
    decoder = json.JSONDecoder()
    while True:
        if 0xFF in buffer:
            del buffer[:buffer.rindex(0xFF) + 1]
        stripped = bytes(buffer).lstrip(b" \t\r\n")
        if not stripped:
            buffer.clear()
            return out
        text = stripped.decode("utf-8", "replace")
        try:
            request, end = decoder.raw_decode(text)
        except ValueError:
            return out
        del buffer[:len(buffer) - len(stripped) + len(text[:end].encode())]
        out.append(_agent_answer(request))


def _agent_answer(request: Any) -> bytes:
    if not isinstance(request, dict) or not isinstance(request.get("execute"), str):
        return _json({"error": {"class": "GenericError",
                                "desc": "Invalid JSON syntax"}})
    name = request["execute"]
    args = request.get("arguments") or {}
    reply: dict[str, Any]
    if name == "guest-sync":
        reply = {"return": args.get("id")}
    elif name == "guest-sync-delimited":
        return b"\xff" + _json({"return": args.get("id")})
    elif name == "guest-ping":
        reply = {"return": {}}
    elif name == "guest-info":
        reply = {"return": {"version": "2.11.0", "supported_commands": [
            {"name": cmd, "enabled": True, "success-response": True}
            for cmd in AGENT_COMMANDS]}}
    else:
        reply = {"error": {"class": "CommandNotFound",
                           "desc": f"The command {name} has not been found"}}
    if "id" in request:
        reply["id"] = request["id"]
    return _json(reply)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


@attrs.define(kw_only=True, eq=False)
class RingFrontend:
    """A guest port whose guest keeps what it receives in a ring buffer (as the
    ringbuf backend keeps what a guest writes) and can write back: the guest side
    of a chardev for tests and for devices without a model of their own."""

    ring: Ring = attrs.Factory(lambda: Ring(size=65536))
    chardev: Chardev | None = None
    events_seen: list[str] = attrs.Factory(list)
    hotswap: bool = True
    frontend_open: bool = True
    on_receive: Callable[[], None] = lambda: None

    def attach(self, chardevs: Chardevs, ident: str, owner: str = "") -> None:
        self.chardev = chardevs.attach(ident, self, owner=owner)

    def write(self, data: bytes) -> None:
        assert self.chardev is not None
        self.chardev.write(data)

    def receive(self, data: bytes) -> None:
        self.ring.write(data)
        self.on_receive()

    def event(self, event: str) -> None:
        self.events_seen.append(event)

    def backend_changed(self, chardev: Chardev) -> bool:
        self.chardev = chardev
        return True
