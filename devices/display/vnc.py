"""The VNC displays of a machine, as `-vnc` / `-display vnc=` / `change vnc` configure them.

Pure model of `devices.display` [ui/vnc.c vnc_display_open, vnc_display_get_address,
vnc_connect, vnc_disconnect_finish, vnc_qmp_event, qmp_query_vnc,
qmp_query_vnc_servers, vnc_display_password, vnc_display_pw_expire; qmp.c
qmp_change_vnc_password]. A display has an id (`default`, `vnc2`, ... or `-vnc
...,id=`), its `-vnc` options, its authentication (none, or VNC password
authentication with `password=on`), the password and its expiry, the addresses it
listens on and its clients. Each client runs the RFB protocol (`devices.display.rfb`);
the model sends VNC_CONNECTED, VNC_INITIALIZED and VNC_DISCONNECTED for it.

The sockets are opened by an edge (`VncListen`, implemented by
`devices.display.vnc_edge`), which reports back through `connected`, `received`
and `disconnected`. Without a display (QEMU started without `-vnc`) a password
cannot be set and a display cannot be reopened, with QEMU's errors.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from devices.display import AUTH_NONE, AUTH_VNC
from devices.display.console import Console
from schema.errors import DeviceNotFound, GenericError
from schema.handlers import SubsystemHooks

if TYPE_CHECKING:
    from devices.display.rfb import RfbServer

# include/qapi/qmp/qerror.h
QERR_SET_PASSWD_FAILED = "Could not set password"
# vnc_display_password's note on the monitor (error_printf_unless_qmp: HMP only).
PASSWORD_HINT = ("If you want use passwords please enable password auth using "
                 "'-vnc ${dpy},password'.\n")


@attrs.frozen
class SocketAddr:
    """A listen address as vnc_display_get_address builds it: `unix` with a path, or
    `inet` with host, port (the first to try), the last port of a `to=` range, and the
    ipv4/ipv6 flags (None: not given)."""

    type: str
    path: str = ""
    host: str = ""
    port: int = 0
    to: int | None = None
    ipv4: bool | None = None
    ipv6: bool | None = None


@attrs.frozen
class BasicInfo:
    """ui/vnc.c vnc_init_basic_info: a socket's numeric address."""

    host: str
    service: str
    family: str  # ipv4, ipv6, unix

    def as_dict(self, websocket: bool = False) -> dict[str, Any]:
        return {"host": self.host, "service": self.service, "family": self.family,
                "websocket": websocket}


class VncListen(Protocol):
    """What the model asks of the edge that owns the sockets."""

    def listen(self, display: VncDisplay, addresses: Sequence[SocketAddr]) -> list[BasicInfo]:
        """Open listeners (vnc_display_listen): their local addresses, or a
        GenericError with QEMU's text."""

    def close(self, display: VncDisplay) -> None:
        """Close the listeners (vnc_display_close); the clients stay connected."""

    def add_client(self, display: VncDisplay, fd: int, skipauth: bool) -> None:
        """Serve a connected socket as a client (vnc_display_add_client)."""

    def close_all(self) -> None:
        """Every listener and client (the process exits)."""


@attrs.define(kw_only=True, eq=False)
class VncClient:
    """ui/vnc.c VncState: one connection."""

    display: VncDisplay
    info: BasicInfo  # the peer (vnc_client_cache_addr)
    rfb: RfbServer  # devices.display.rfb, loaded with the first client
    websocket: bool = False

    def as_dict(self) -> dict[str, Any]:
        return self.info.as_dict(self.websocket)


@attrs.define(kw_only=True, eq=False)
class VncDisplay:
    """One VNC display (ui/vnc.c VncDisplay)."""

    id: str
    options: Mapping[str, str] = attrs.Factory(dict)  # the -vnc options, last value of each
    password: str | None = None
    expires: float = math.inf  # TIME_MAX until expire_password
    auth: int = AUTH_NONE
    listening: list[BasicInfo] = attrs.Factory(list)
    clients: list[VncClient] = attrs.Factory(list)

    @property
    def password_auth(self) -> bool:
        return self.auth == AUTH_VNC

    @property
    def auth_name(self) -> str:
        """vnc_auth_name (the primary auths a build without TLS or SASL can have)."""
        return "vnc" if self.auth == AUTH_VNC else "none"

    def server_info(self) -> dict[str, Any] | None:
        """vnc_server_info_get: the first listener with the auth, None without one."""
        if not self.listening:
            return None
        return {**self.listening[0].as_dict(), "auth": self.auth_name}


def _opt_bool(options: Mapping[str, str], name: str) -> bool | None:
    value = options.get(name)
    if value is None:
        return None
    return value == "on"


def parse_address(addr: str, to: int | None, ipv4: bool | None,
                  ipv6: bool | None) -> SocketAddr:
    """vnc_display_get_address for a plain (not websocket, not reverse) address:
    `unix:PATH`, or `HOST:DISPLAY` with the port 5900 + DISPLAY."""
    if addr.startswith("unix:"):
        if to:
            raise GenericError("Port range not support with UNIX socket")
        return SocketAddr("unix", path=addr[5:])
    sep = addr.rfind(":")
    if sep < 0:
        raise GenericError("no vnc port specified")
    port = addr[sep + 1:]
    if not port:
        raise GenericError("vnc port cannot be empty")
    host = addr[:sep]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit():  # parse_uint_full, base 10
        raise GenericError(f"can't convert to a number: {port}")
    base = int(port)
    if base > 65535 or base + 5900 > 65535:
        raise GenericError(f"port {port} out of range")
    return SocketAddr("inet", host=host, port=base + 5900,
                      to=to + 5900 if to else None, ipv4=ipv4, ipv6=ipv6)


@attrs.define(kw_only=True)
class VncDisplays(SubsystemHooks):
    """The displays of one machine, in creation order (ui/vnc.c vnc_displays)."""

    displays: list[VncDisplay] = attrs.Factory(list)
    emit: Callable[[str, dict[str, Any]], object] = lambda name, data: None
    wall: Callable[[], float] = lambda: 0.0  # time(NULL): the password's expiry
    # The edge, built the first time a display listens (it loads trio's sockets).
    edge_factory: Callable[[VncDisplays], VncListen] | None = None
    edge: VncListen | None = None
    name: str | None = None  # -name: the desktop name is "QEMU (<name>)"
    # The first console, what the clients see (None: the board has none, and the
    # clients see a black one of the default size).
    console: Callable[[], Console | None] = lambda: None
    rng: random.Random = attrs.Factory(random.Random)  # the VNC challenges
    on_input: Callable[[str], object] = lambda kind: None  # the clients' keys and pointer
    printed: list[str] = attrs.Factory(list)  # error_printf_unless_qmp (`to=`: the port)

    def ensure_edge(self) -> VncListen:
        if self.edge is None:
            if self.edge_factory is None:
                raise GenericError("No listener socket available")
            self.edge = self.edge_factory(self)
        return self.edge

    def find(self, ident: str | None) -> VncDisplay | None:
        """vnc_display_find: the first display without an id, else by id."""
        if ident is None:
            return self.displays[0] if self.displays else None
        return next((d for d in self.displays if d.id == ident), None)

    # -- configuration ----------------------------------------------------------------

    def init(self, ident: str, options: Mapping[str, str]) -> VncDisplay:
        """vnc_display_init (a -vnc option): the display, not yet open."""
        display = VncDisplay(id=ident, options=dict(options))
        self.displays.append(display)
        return display

    def open(self, display: VncDisplay) -> None:
        """vnc_display_open: close, then check the options in QEMU's order and listen.
        A failure leaves the display closed."""
        self.close_display(display)
        options = display.options
        try:
            addresses = self._addresses(options)
            password = options.get("password") == "on"
            if options.get("sasl") == "on":
                raise GenericError("VNC SASL auth requires cyrus-sasl support")
            creds = options.get("tls-creds")
            if creds is not None:
                if any(k in options for k in ("tls", "x509", "x509verify")):
                    raise GenericError("'tls-creds' parameter is mutually exclusive with "
                                       "'tls', 'x509' and 'x509verify' parameters")
                raise GenericError(f"No TLS credentials with id '{creds}'")
            share = options.get("share")
            if share is not None and share not in ("ignore", "allow-exclusive",
                                                   "force-shared"):
                raise GenericError("unknown vnc share= option")
            device = options.get("display")
            if device is not None:
                raise DeviceNotFound(f"Device '{device}' not found")
            display.auth = AUTH_VNC if password else AUTH_NONE
            if addresses:
                if options.get("reverse") == "on":
                    raise GenericError("reverse VNC connections are not supported")
                display.listening = self.ensure_edge().listen(display, addresses)
        except GenericError:
            self.close_display(display)
            raise
        if "to" in options and display.listening and display.listening[0].family != "unix":
            first = display.listening[0]
            self.printed.append(f"VNC server running on {first.host}:{first.service}\n")

    def _addresses(self, options: Mapping[str, str]) -> list[SocketAddr]:
        """vnc_display_get_addresses: none for `vnc=none` or no address."""
        addr = options.get("vnc")
        if addr is None or addr == "none":
            return []
        if options.get("websocket") is not None:
            raise GenericError("websockets are not supported by qmp-emulator")
        to = int(options["to"]) if options.get("to") else None
        return [parse_address(addr, to, _opt_bool(options, "ipv4"),
                              _opt_bool(options, "ipv6"))]

    def close_display(self, display: VncDisplay) -> None:
        """vnc_display_close: the listeners go; connected clients stay (and their
        later events name the display's next listener)."""
        if self.edge is not None and display.listening:
            self.edge.close(display)
        display.listening = []
        display.auth = AUTH_NONE

    def reopen(self, ident: str, options: Mapping[str, str]) -> None:
        """qmp_change_vnc_listen: the display takes the new options and opens again."""
        display = self.find(ident)
        if display is None:
            raise GenericError("VNC display not active")
        display.options = dict(options)
        self.open(display)

    def set_password(self, password: str, ident: str | None = None) -> None:
        """qmp_change_vnc_password / vnc_display_password: no display, or one
        without password authentication, cannot take a password."""
        display = self.find(ident)
        if display is None:
            raise GenericError(QERR_SET_PASSWD_FAILED)
        if not display.password_auth:
            self.printed[:] = [PASSWORD_HINT]  # for a human monitor (HMP prints it)
            raise GenericError(QERR_SET_PASSWD_FAILED)
        display.password = password

    def expire_password(self, when: float, ident: str | None = None) -> None:
        """vnc_display_pw_expire: any display takes an expiry."""
        display = self.find(ident)
        if display is None:
            raise GenericError(QERR_SET_PASSWD_FAILED)
        display.expires = when

    # -- clients ----------------------------------------------------------------------

    def connected(self, display: VncDisplay, peer: BasicInfo, skipauth: bool = False) -> VncClient:
        """vnc_connect: a new client, VNC_CONNECTED; the caller sends `client.rfb.start()`."""
        from devices.display.rfb import CHALLENGE_SIZE, RfbServer  # with the first client

        desktop = "QEMU" if self.name is None else f"QEMU ({self.name})"

        def password() -> str | None:
            # protocol_client_auth_vnc: no password, or one past its expiry, fails.
            if display.password is None:
                return None
            if display.expires < self.wall():
                return None
            return display.password

        rfb = RfbServer(console=self.console() or Console(),
                        auth=AUTH_NONE if skipauth else display.auth, name=desktop,
                        challenge=self.rng.randbytes(CHALLENGE_SIZE), password=password,
                        on_input=self.on_input)
        client = VncClient(display=display, info=peer, rfb=rfb)
        display.clients.append(client)
        self._event("VNC_CONNECTED", client)
        return client

    def received(self, client: VncClient, data: bytes) -> bytes:
        """Bytes from the client: the answer; VNC_INITIALIZED after ClientInit."""
        was = client.rfb.initialized
        out = client.rfb.feed(data)
        if client.rfb.initialized and not was:
            self._event("VNC_INITIALIZED", client)
        return out

    def disconnected(self, client: VncClient) -> None:
        """vnc_disconnect_finish: VNC_DISCONNECTED, and the client is gone."""
        display = client.display
        if client not in display.clients:
            return
        self._event("VNC_DISCONNECTED", client)
        display.clients.remove(client)

    def _event(self, name: str, client: VncClient) -> None:
        """vnc_qmp_event: only while the display listens (vnc_server_info_get)."""
        server = client.display.server_info()
        if server is not None:
            self.emit(name, {"server": server, "client": client.as_dict()})

    # -- queries ----------------------------------------------------------------------

    def query_vnc(self) -> dict[str, Any]:
        """qmp_query_vnc: the first display; clients newest first."""
        display = self.find(None)
        if display is None or not display.listening:
            return {"enabled": False}
        first = display.listening[0]
        return {"enabled": True, "host": first.host, "service": first.service,
                "family": first.family, "auth": display.auth_name,
                "clients": [c.as_dict() for c in reversed(display.clients)]}

    def query_vnc_servers(self) -> list[dict[str, Any]]:
        """qmp_query_vnc_servers: displays and their listeners in reverse order."""
        out: list[dict[str, Any]] = []
        for display in self.displays:
            out.insert(0, {
                "id": display.id,
                "clients": [c.as_dict() for c in reversed(display.clients)],
                "auth": display.auth_name,
                "server": [{**info.as_dict(), "auth": display.auth_name}
                           for info in reversed(display.listening)],
            })
        return out

    # -- the Machine's hooks (vmm.machine.subsystem) ---------------------------------

    def close(self) -> None:
        """At exit: the listeners and clients close (no events: QEMU exits)."""
        if self.edge is not None:
            self.edge.close_all()
