"""Chardev backends as the command line configures them, their filenames, and the
chardevs of one machine.

Pure model of `devices.chardev` (no I/O, no trio; `devices.chardev.edge` opens what
a `ChardevSpec` describes for the monitors, `devices.chardev.hostio` the host side of
every other chardev, through the `HostOpener` the `Chardevs` registry is given). It reads a `-chardev` option group
the way QEMU 2.11's backend parsers do [chardev/char-socket.c qemu_chr_parse_socket,
chardev/char-stdio.c] and formats the `filename` QEMU gives a chardev, which
query-chardev reports and start-up messages print [chardev/char-socket.c
SocketAddress_to_str, sockaddr_to_str; chardev/char.c qemu_chardev_new].

The option group is any value with QemuOpts' accessors (`ChardevOpts`), so this
module does not depend on the command-line parser that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from schema.errors import GenericError
from schema.handlers import SubsystemHooks

# What Python's socket module reports as an address: a unix path, or an inet tuple
# ((host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6).
SockAddr = str | bytes | tuple[object, ...]


class ChardevOpts(Protocol):
    """One `-chardev` option group (QemuOpts): its id and qemu_opt_get*."""

    @property
    def id(self) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None: ...

    def get_bool(self, key: str, default: bool) -> bool: ...


@attrs.frozen
class ChardevSpec:
    """Where a chardev listens or talks: a socket (server or client) or stdio."""

    id: str
    backend: str  # "socket" | "stdio"
    path: str | None = None
    host: str | None = None
    port: str | None = None
    fd: str | None = None  # as written: socket_get_fd parses it when the chardev opens
    server: bool = True
    wait: bool = True
    telnet: bool = False
    ipv4: bool = False
    ipv6: bool = False

    def filename(self) -> str:
        """The filename of a chardev without a client: SocketAddress_to_str with the
        "disconnected:" prefix (update_disconnected_filename) for sockets, the
        backend's type name for the others (qemu_chardev_new)."""
        if self.backend != "socket":
            return self.backend
        addr: dict[str, Any]
        if self.path is not None:
            addr = {"type": "unix", "path": self.path}
        elif self.fd is not None:
            addr = {"type": "fd", "str": self.fd}
        else:
            addr = {"type": "inet", "host": self.host or "", "port": self.port}
        return socket_address_to_str("disconnected:", addr, self.server, self.telnet)

    def connected_filename(self, local: SockAddr, remote: SockAddr) -> str:
        """The filename while a client is connected (tcp_chr_connect)."""
        return sockaddr_to_str(local, remote, self.server, self.telnet)


def socket_address_to_str(prefix: str, addr: dict[str, Any], is_listen: bool,
                          is_telnet: bool) -> str:
    """char-socket.c SocketAddress_to_str: a socket chardev's address (a flat
    SocketAddress) in its filename; a vsock one never says ",server"."""
    suffix = ",server" if is_listen else ""
    kind = addr["type"]
    if kind == "inet":
        proto = "telnet" if is_telnet else "tcp"
        return f"{prefix}{proto}:{addr['host']}:{addr['port']}{suffix}"
    if kind == "unix":
        return f"{prefix}unix:{addr['path']}{suffix}"
    if kind == "fd":
        return f"{prefix}fd:{addr['str']}{suffix}"
    return f"{prefix}vsock:{addr['cid']}:{addr['port']}"


def sockaddr_to_str(local: SockAddr, remote: SockAddr, is_listen: bool,
                    is_telnet: bool) -> str:
    """char-socket.c sockaddr_to_str: the unix path of the local end, or both inet
    ends in numeric form, IPv6 hosts in brackets."""
    suffix = ",server" if is_listen else ""
    if isinstance(local, str | bytes):
        path = local.decode(errors="replace") if isinstance(local, bytes) else local
        return f"unix:{path}{suffix}"
    kind = "telnet" if is_telnet else "tcp"
    return f"{kind}:{_inet(local)}{suffix} <-> {_inet(remote)}"


def _inet(addr: SockAddr) -> str:
    assert isinstance(addr, tuple)
    host, port = addr[0], addr[1]
    if len(addr) == 4:  # AF_INET6
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def chardev_spec(opts: ChardevOpts) -> ChardevSpec | None:
    """The endpoint of a chardev a monitor can sit on [qemu_chr_parse_socket; the
    stdio backend]; None for backends without I/O here (vc, null, ...: a monitor
    nobody can reach)."""
    backend = opts.get("backend")
    ident = opts.id or ""
    if backend == "stdio":
        return ChardevSpec(id=ident, backend="stdio")
    if backend != "socket":
        return None
    server = opts.get_bool("server", False)
    return ChardevSpec(
        id=ident,
        backend="socket",
        path=opts.get("path"),
        host=opts.get("host"),
        port=opts.get("port"),
        fd=opts.get("fd"),
        server=server,
        wait=server and opts.get_bool("wait", True),
        telnet=opts.get_bool("telnet", False),
        ipv4=opts.get_bool("ipv4", False),
        ipv6=opts.get_bool("ipv6", False),
    )


# -- the chardevs of one machine ----------------------------------------------------------

# query-chardev-backends of the catalogue's build [chardev/char.c qmp_query_chardev_backends:
# every non-abstract, non-internal chardev-* class; devices.md §4.3 lists them, verified].
BACKEND_NAMES = ("tty", "parport", "vc", "stdio", "udp", "mux", "wctablet", "testdev", "pty",
                 "parallel", "pipe", "file", "ringbuf", "serial", "socket", "memory", "null",
                 "msmouse")
# ChardevBackendKind values this build has no class for (spicevmc/spiceport: SPICE builds
# with the char classes; braille: brlapi), and the classes marked internal: char_get_class
# says "'<type>' is not a valid char driver name" for both.
NOT_A_DRIVER = ("braille", "spicevmc", "spiceport", "console")

CHR_EVENT_OPENED = "opened"
CHR_EVENT_CLOSED = "closed"
CHR_EVENT_BREAK = "break"


class Frontend(Protocol):
    """What holds a chardev (qemu_chr_fe_init): a serial port, a virtio-serial port, a
    monitor, a mux. `hotswap` is whether it has chr_be_change (chardev-change)."""

    @property
    def hotswap(self) -> bool: ...

    @property
    def frontend_open(self) -> bool: ...

    def receive(self, data: bytes) -> None:
        """Bytes from the host side (qemu_chr_be_write)."""

    def event(self, event: str) -> None:
        """CHR_EVENT_OPENED/CLOSED/BREAK (qemu_chr_be_event)."""

    def backend_changed(self, chardev: Chardev) -> bool:
        """chr_be_change: the frontend now writes to `chardev`; False refuses."""


class HostIO(Protocol):
    """The host side of a chardev as the sync edge (`devices.chardev.hostio`) opened
    it: a file, a pipe, a pty, a socket. The model writes through it and learns what
    it read; the trio edge waits on `read_fds()` and calls `Chardev.readable`."""

    def filename(self) -> str: ...

    def connected(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def read_fds(self) -> tuple[int, ...]: ...

    def readable(self, fd: int) -> tuple[bytes | None, str | None]:
        """After `fd` polled readable: the bytes read (None: nothing for the
        frontend) and a change of connection (CHR_EVENT_OPENED/CLOSED or None)."""

    def retry(self) -> bool:
        """A reconnecting client's next attempt (True: connected)."""

    def close(self) -> None: ...


class HostOpener(Protocol):
    def __call__(self, ident: str, kind: str, data: dict[str, Any]) -> HostIO | None:
        """Open the host side of backend `kind` (the ChardevBackend's data, wire
        names); None for backends without one (null, ringbuf, ...). Raises
        GenericError with QEMU's message."""


@attrs.define(kw_only=True, eq=False)
class Ring:
    """chardev/char-ringbuf.c: `size` bytes (a power of two); a write past the
    capacity overwrites the oldest bytes."""

    size: int
    data: bytearray = attrs.Factory(bytearray)

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.size:
            del self.data[:len(self.data) - self.size]

    def read(self, count: int) -> bytes:
        out = bytes(self.data[:count])
        del self.data[:count]
        return out


@attrs.define(kw_only=True, eq=False)
class Chardev:
    """One chardev (a Chardev object under /chardevs): its backend and its holder."""

    id: str
    kind: str
    backend: dict[str, Any]  # the ChardevBackend as given ({"type", "data"})
    io: HostIO | None = None
    ring: Ring | None = None
    mux_of: Chardev | None = None  # a mux: the chardev it multiplexes
    frontend: Frontend | None = None
    frontend_name: str = ""
    mux_users: list[Frontend] = attrs.Factory(list)
    breaks: int = 0
    reconnect: float = 0.0  # seconds (a client socket's `reconnect`)
    retry_at: float = math.inf

    @property
    def filename(self) -> str:
        name = self.io.filename() if self.io is not None else ""
        return name or self.kind  # qemu_chardev_new: the type name by default

    @property
    def be_open(self) -> bool:
        return self.io.connected() if self.io is not None else True

    def busy(self) -> bool:
        """qemu_chr_is_busy: a frontend holds it (a mux: it has a user)."""
        if self.kind == "mux":
            return bool(self.mux_users)
        return self.frontend is not None

    def write(self, data: bytes) -> None:
        """qemu_chr_fe_write from the frontend: to the host side."""
        if self.ring is not None:
            self.ring.write(data)
        elif self.io is not None:
            self.io.write(data)
        elif self.mux_of is not None:
            self.mux_of.write(data)

    def deliver(self, data: bytes) -> None:
        """qemu_chr_be_write: host bytes to the frontend (nobody holds it: dropped)."""
        if self.kind == "mux":
            for user in self.mux_users[:1]:  # the focused user (mux_chr_read)
                user.receive(data)
        elif self.frontend is not None:
            self.frontend.receive(data)

    def notify(self, event: str) -> None:
        if self.kind == "mux":
            for user in self.mux_users:
                user.event(event)
        elif self.frontend is not None:
            self.frontend.event(event)

    def readable(self, fd: int) -> bool:
        """The trio edge saw `fd` readable; True when the descriptors to wait on
        changed (a client came or went)."""
        if self.io is None:
            return True
        data, change = self.io.readable(fd)
        if change == CHR_EVENT_CLOSED and self.reconnect:
            self.retry_at = -math.inf  # due at once: run_due schedules the next try
        if change is not None:
            self.notify(change)
        if data:
            self.deliver(data)
        return change is not None or fd not in self.io.read_fds()


class _MuxUser:
    """A mux's hold on the chardev under it: everything the mux's users do passes."""

    def __init__(self, mux: Chardev) -> None:
        self.mux = mux

    hotswap = False

    @property
    def frontend_open(self) -> bool:
        return any(u.frontend_open for u in self.mux.mux_users)

    def receive(self, data: bytes) -> None:
        self.mux.deliver(data)

    def event(self, event: str) -> None:
        self.mux.notify(event)

    def backend_changed(self, chardev: Chardev) -> bool:
        return False


def _ring_size(data: dict[str, Any]) -> int:
    size = data.get("size", 65536)
    if size & (size - 1) or size == 0:
        raise GenericError("size of ringbuf chardev must be power of two")
    return int(size)


class EventSink(Protocol):
    def emit(self, name: str, data: dict[str, Any] | None = None) -> Any: ...


@attrs.define(kw_only=True, eq=False)
class Chardevs(SubsystemHooks):
    """The chardevs of one machine (QEMU's /chardevs container), with the lookup API
    frontends use: `find`, `attach` (qemu_chr_fe_init's "is already in use" check),
    `detach`. A subsystem of the Machine (`vmm.machine.subsystem`): its deadlines are
    the reconnect attempts of client sockets."""

    opener: HostOpener
    now: Callable[[], float] = lambda: 0.0
    devices: dict[str, Chardev] = attrs.Factory(dict)
    on_change: Callable[[], None] = lambda: None  # the trio edge re-reads read_fds()
    before_close: Callable[[int], None] = lambda fd: None  # trio.lowlevel.notify_closing
    report: Callable[[str], None] = lambda text: None  # error_report (stderr)

    # -- lookup API for frontends (qdev's chardev= property, monitors) ---------------

    def find(self, ident: str) -> Chardev | None:
        return self.devices.get(ident)

    def attach(self, ident: str, frontend: Frontend, *, owner: str = "") -> Chardev:
        """qemu_chr_fe_init [chardev/char-fe.c]: a chardev with a frontend (a mux with
        MAX_MUX users) is QERR_DEVICE_IN_USE; the property's "can't find value" and
        the "can't take value" prefix are the caller's (`devices.chardev.resolver`)."""
        chardev = self.devices.get(ident)
        if chardev is None:
            raise GenericError(f"Chardev '{ident}' not found")
        if chardev.kind == "mux":
            if len(chardev.mux_users) >= 4:  # MAX_MUX
                raise GenericError(f"Device '{ident}' is in use")
            chardev.mux_users.append(frontend)
            return chardev
        if chardev.frontend is not None:
            raise GenericError(f"Device '{ident}' is in use")
        chardev.frontend = frontend
        chardev.frontend_name = owner
        if chardev.be_open:
            frontend.event(CHR_EVENT_OPENED)
        self.on_change()
        return chardev

    def detach(self, chardev: Chardev, frontend: Frontend) -> None:
        """qemu_chr_fe_deinit: the frontend lets go (the chardev stays)."""
        if frontend in chardev.mux_users:
            chardev.mux_users.remove(frontend)
        if chardev.frontend is frontend:
            chardev.frontend = None
            chardev.frontend_name = ""
        self.on_change()

    # -- the commands' model -----------------------------------------------------------

    def create(self, ident: str | None, backend: dict[str, Any]) -> Chardev:
        """qemu_chardev_new: open the backend, then add it under its id (a duplicate
        id fails only after the backend was opened, as in 2.11)."""
        kind = backend["type"]
        data = backend.get("data") or {}
        if kind in NOT_A_DRIVER:
            raise GenericError(f"'{kind}' is not a valid char driver name")
        chardev = Chardev(id=ident or "", kind=kind, backend=backend)
        if kind in ("ringbuf", "memory"):
            chardev.ring = Ring(size=_ring_size(data))
        elif kind == "mux":
            under = self.devices.get(data["chardev"])
            if under is None:
                raise GenericError(f"mux: base chardev {data['chardev']} not found")
            self.attach(under.id, _MuxUser(chardev), owner=ident or "")
            chardev.mux_of = under
        else:
            chardev.io = self.opener(ident or "", kind, data)
            if kind == "socket" and not data.get("server", True):
                chardev.reconnect = float(data.get("reconnect", 0))
                if chardev.io is not None and not chardev.io.connected() and chardev.reconnect:
                    chardev.retry_at = self.now() + chardev.reconnect
        if ident is not None and ident in self.devices:
            self._close(chardev)
            raise GenericError(f"attempt to add duplicate property '{ident}' to object "
                               "(type 'container')")
        if ident is not None:
            self.devices[ident] = chardev
        if kind == "pty":
            # char-pty.c char_pty_open
            self.report(f"char device redirected to {chardev.filename[4:]} (label {ident})")
        self.on_change()
        return chardev

    def adopt(self, ident: str, io: HostIO, frontend: Frontend) -> Chardev:
        """A chardev whose host side another edge runs (a monitor's socket in
        `vmm.server`), held by `frontend`."""
        chardev = Chardev(id=ident, kind="socket", backend={"type": "socket"}, io=io,
                          frontend=frontend, frontend_name=ident)
        self.devices[ident] = chardev
        return chardev

    def remove(self, ident: str) -> None:
        """qmp_chardev_remove."""
        chardev = self.devices.get(ident)
        if chardev is None:
            raise GenericError(f"Chardev '{ident}' not found")
        if chardev.busy():
            raise GenericError(f"Chardev '{ident}' is busy")
        del self.devices[ident]
        self._close(chardev)
        self.on_change()

    def change(self, ident: str, backend: dict[str, Any]) -> Chardev:
        """qmp_chardev_change [chardev/char.c]: an unused chardev is removed first and
        then added anew (so a failing add leaves no chardev at all, as in 2.11); a used
        one is swapped under its frontend."""
        chardev = self.devices.get(ident)
        if chardev is None:
            raise GenericError(f"Chardev '{ident}' does not exist")
        if chardev.kind == "mux":
            raise GenericError("Mux device hotswap not supported yet")
        frontend = chardev.frontend
        if frontend is None:
            del self.devices[ident]
            self._close(chardev)
            self.on_change()
            return self.create(ident, backend)
        if not frontend.hotswap:
            raise GenericError("Chardev user does not support chardev hotswap")
        new = self.create(None, backend)
        new.id = ident
        closed_sent = chardev.be_open and not new.be_open
        if closed_sent:
            frontend.event(CHR_EVENT_CLOSED)
        new.frontend, new.frontend_name = frontend, chardev.frontend_name
        chardev.frontend = None
        if not frontend.backend_changed(new):
            new.frontend = None
            chardev.frontend = frontend
            if closed_sent:
                frontend.event(CHR_EVENT_OPENED)
            self._close(new)
            raise GenericError(f"Chardev '{ident}' change failed")
        self.devices[ident] = new
        self._close(chardev)
        self.on_change()
        return new

    def send_break(self, ident: str) -> None:
        """qmp_chardev_send_break: CHR_EVENT_BREAK to the frontend."""
        chardev = self.devices.get(ident)
        if chardev is None:
            raise GenericError(f"Chardev '{ident}' not found")
        chardev.breaks += 1
        chardev.notify(CHR_EVENT_BREAK)

    def _close(self, chardev: Chardev) -> None:
        under = chardev.mux_of
        if under is not None and isinstance(under.frontend, _MuxUser):
            self.detach(under, under.frontend)
        if chardev.io is not None:
            for fd in chardev.io.read_fds():
                self.before_close(fd)
            chardev.io.close()
            chardev.io = None

    def fds(self) -> list[tuple[Chardev, int]]:
        """What the trio edge waits on."""
        return [(c, fd) for c in self.devices.values() if c.io is not None
                for fd in c.io.read_fds()]

    # -- Subsystem hooks ---------------------------------------------------------------

    def next_deadline(self) -> float:
        return min((c.retry_at for c in self.devices.values()), default=math.inf)

    def run_due(self, now: float) -> None:
        """A client socket with `reconnect` tries again every `reconnect` seconds
        (char-socket.c qemu_chr_socket_restart_timer)."""
        for chardev in list(self.devices.values()):
            if chardev.retry_at > now or chardev.io is None:
                continue
            was, chardev.retry_at = chardev.retry_at, math.inf
            if chardev.io.connected():
                continue
            if was != -math.inf and chardev.io.retry():
                chardev.notify(CHR_EVENT_OPENED)
                self.on_change()
            else:  # a lost connection waits `reconnect` seconds before the first try
                chardev.retry_at = now + chardev.reconnect

    def close(self) -> None:
        for chardev in list(self.devices.values()):
            self._close(chardev)
        self.devices.clear()


# chardev/char.c chardev_alias_table
_ALIASES = {"parport": "parallel", "tty": "serial"}


def _require(opts: ChardevOpts, key: str, message: str) -> str:
    value = opts.get(key)
    if value is None:
        raise GenericError(message)
    return value


def backend_from_opts(opts: ChardevOpts) -> dict[str, Any]:
    """qemu_chr_parse_opts: a `-chardev` option group (or HMP chardev-add's) as the
    ChardevBackend QMP's chardev-add takes, with each backend's parse errors
    [chardev/char-*.c qemu_chr_parse_*]."""
    name = opts.get("backend")
    if name is None:
        raise GenericError(f'chardev: "{opts.id}" missing backend')
    kind = _ALIASES.get(name, name)
    if kind in NOT_A_DRIVER or kind not in BACKEND_NAMES:
        raise GenericError(f"'{kind}' is not a valid char driver name")
    data: dict[str, Any] = {}
    if kind == "file":
        data["out"] = _require(opts, "path", "chardev: file: no filename given")
        if opts.get("append") is not None:
            data["append"] = opts.get_bool("append", False)
    elif kind in ("pipe", "serial", "parallel"):
        label = {"serial": "serial/tty"}.get(kind, kind)
        data["device"] = _require(opts, "path", f"chardev: {label}: no device path given")
    elif kind in ("ringbuf", "memory"):
        size = opts.get("size")
        if size is not None:
            from schema.opts.qemuopts import parse_size

            data["size"] = parse_size("size", size)
    elif kind == "udp":
        host = opts.get("host") or "localhost"
        port = _require(opts, "port", "chardev: udp: remote port not specified")
        data["remote"] = {"type": "inet", "data": {"host": host, "port": port,
                                                   **_inet_flags(opts)}}
        if opts.get("localaddr") is not None or opts.get("localport") is not None:
            data["local"] = {"type": "inet", "data": {"host": opts.get("localaddr") or "",
                                                      "port": opts.get("localport") or "0"}}
    elif kind == "socket":
        data = _socket_from_opts(opts)
    elif kind == "stdio" and opts.get("signal") is not None:
        data["signal"] = opts.get_bool("signal", True)
    return {"type": kind, "data": data}


def _socket_from_opts(opts: ChardevOpts) -> dict[str, Any]:
    """char-socket.c qemu_chr_parse_socket (server defaults to off here, wait to on)."""
    path = opts.get("path")
    host, port = opts.get("host"), opts.get("port")
    tls = opts.get("tls-creds")
    if path is None:
        if host is None:
            raise GenericError("chardev: socket: no host given")
        if port is None:
            raise GenericError("chardev: socket: no port given")
    elif tls is not None:
        raise GenericError("TLS can only be used over TCP socket")
    server = opts.get_bool("server", False)
    data: dict[str, Any] = {
        "server": server, "wait": server and opts.get_bool("wait", True),
        "telnet": opts.get_bool("telnet", False), "tn3270": opts.get_bool("tn3270", False),
        "nodelay": not opts.get_bool("delay", True)}
    reconnect = opts.get("reconnect")
    if reconnect is not None:
        from schema.opts.qemuopts import parse_number

        data["reconnect"] = parse_number("reconnect", reconnect)
    if tls is not None:
        data["tls-creds"] = tls
    if path is not None:
        data["addr"] = {"type": "unix", "data": {"path": path}}
    else:
        inet: dict[str, Any] = {"host": host, "port": port}
        to = opts.get("to")
        if to is not None:
            from schema.opts.qemuopts import parse_number

            inet["to"] = parse_number("to", to)
        data["addr"] = {"type": "inet", "data": {**inet, **_inet_flags(opts)}}
    return data


def _inet_flags(opts: ChardevOpts) -> dict[str, bool]:
    """The ipv4/ipv6 members qemu_chr_parse_socket and qemu_chr_parse_udp set when
    the option is given (has_ipv4 = qemu_opt_get)."""
    return {key: opts.get_bool(key, False) for key in ("ipv4", "ipv6")
            if opts.get(key) is not None}
