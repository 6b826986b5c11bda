"""Chardev backends as the command line configures them, and their filenames.

Pure model of `devices.chardev` (no I/O, no trio; `devices.chardev.socket` is the
edge that opens what a `ChardevSpec` describes). It reads a `-chardev` option group
the way QEMU 2.11's backend parsers do [chardev/char-socket.c qemu_chr_parse_socket,
chardev/char-stdio.c] and formats the `filename` QEMU gives a chardev, which
query-chardev reports and start-up messages print [chardev/char-socket.c
SocketAddress_to_str, sockaddr_to_str; chardev/char.c qemu_chardev_new].

The option group is any value with QemuOpts' accessors (`ChardevOpts`), so this
module does not depend on the command-line parser that produced it.
"""

from __future__ import annotations

from typing import Protocol

import attrs

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
        suffix = ",server" if self.server else ""
        if self.path is not None:
            return f"disconnected:unix:{self.path}{suffix}"
        if self.fd is not None:
            return f"disconnected:fd:{self.fd}{suffix}"
        kind = "telnet" if self.telnet else "tcp"
        return f"disconnected:{kind}:{self.host or ''}:{self.port}{suffix}"

    def connected_filename(self, local: SockAddr, remote: SockAddr) -> str:
        """The filename while a client is connected (tcp_chr_connect's
        sockaddr_to_str): the unix path of the local end, or both inet ends in
        numeric form, IPv6 hosts in brackets."""
        suffix = ",server" if self.server else ""
        if isinstance(local, str | bytes):
            path = local.decode(errors="replace") if isinstance(local, bytes) else local
            return f"unix:{path}{suffix}"
        kind = "telnet" if self.telnet else "tcp"
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
