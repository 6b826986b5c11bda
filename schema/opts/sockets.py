"""Socket addresses written as strings, and QAPI's two shapes of a socket address.

Part of `schema.opts` (pure: no sockets, no I/O), beside `cutils` whose sscanf
conversions it reads with [util/qemu-sockets.c inet_parse, vsock_parse,
socket_parse, socket_address_flatten]. An address is QAPI's wire form, as the
schema visitor hands it to a handler:

* a flat `SocketAddress`: ``{"type": "inet", "host": ..., "port": ...}``, ``unix``
  with ``path``, ``vsock`` with ``cid`` and ``port``, ``fd`` with ``str``;
* a `SocketAddressLegacy` (nbd-server-start's, chardev-add's): the same members
  under ``"data"``.

Its users: HMP's nbd_server_start (`socket_parse`), the NBD server and the socket
chardev (`socket_address_flatten`), migration's ``tcp:`` URIs (`inet_parse`). What a
caller adds around the parse (a default host, a port offset, its own checks) stays
with that caller, as it does in QEMU; so does opening the socket (the subsystems' edges),
which ask `inet_ai_family` which address family the flags allow.
"""

from __future__ import annotations

import socket
from typing import Any

from schema.errors import GenericError
from schema.opts.cutils import scan_int, scan_set

# The sscanf widths of inet_parse's and vsock_parse's buffers (char host[65], port[33]).
HOST_WIDTH = 64
PORT_WIDTH = 32


def scan_host_port(text: str, pos: int, host_width: int, host_stop: str, between: str,
                   port_stop: str = ",") -> tuple[str, str, int] | None:
    """sscanf `%<host_width>[^<host_stop>]<between>%32[^<port_stop>]%n` at `pos`: the
    host, the port and the position after it; None unless both were read (inet_parse's
    and vsock_parse's formats, and char.c qemu_chr_parse_compat's)."""
    host, end = scan_set(text, pos, host_width, host_stop, negate=True)
    if host is None or not text.startswith(between, end):
        return None
    port, after = scan_set(text, end + len(between), PORT_WIDTH, port_stop, negate=True)
    if port is None:
        return None
    return host, port, after


def inet_parse(text: str) -> dict[str, Any]:
    """inet_parse: `HOST:PORT`, `[IPV6]:PORT` or `:PORT`, then the options `,to=N`,
    `,ipv4`, `,ipv6` searched anywhere after the port (strstr: `,ipv4=off` sets
    ipv4 too). The members of an InetSocketAddress; `to`, `ipv4` and `ipv6` only
    when given. A host is read up to 64 bytes and a port up to 32 (sscanf's widths):
    a longer host fails, a longer port is cut and the rest is searched for options."""
    if text.startswith(":"):
        port, pos = scan_set(text, 1, PORT_WIDTH, ",", negate=True)
        if port is None:
            raise GenericError(f"error parsing port in address '{text}'")
        host = ""
    else:
        ipv6 = text.startswith("[")
        found = (scan_host_port(text, 1, HOST_WIDTH, "]", "]:") if ipv6
                 else scan_host_port(text, 0, HOST_WIDTH, ":", ":"))
        if found is None:
            what = "IPv6 address" if ipv6 else "address"
            raise GenericError(f"error parsing {what} '{text}'")
        host, port, pos = found
    addr: dict[str, Any] = {"host": host, "port": port}
    options = text[pos:]
    at = options.find(",to=")
    if at >= 0:
        to, end = scan_int(options, at + 4)
        if to is None or (end < len(options) and options[end] != ","):
            raise GenericError("error parsing to= argument")
        addr["to"] = to
    if ",ipv4" in options:
        addr["ipv4"] = True
    if ",ipv6" in options:
        addr["ipv6"] = True
    return addr


def vsock_parse(text: str) -> dict[str, Any]:
    """vsock_parse (CONFIG_AF_VSOCK, as on Linux): `CID:PORT` and nothing after it;
    the members of a VsockSocketAddress, both strings as written."""
    found = scan_host_port(text, 0, PORT_WIDTH, ":", ":")
    if found is None:
        raise GenericError(f"error parsing address '{text}'")
    cid, port, pos = found
    if pos < len(text):
        raise GenericError(f"trailing characters in address '{text}'")
    return {"cid": cid, "port": port}


def socket_parse(text: str) -> dict[str, Any]:
    """socket_parse: `unix:PATH`, `fd:NAME`, `vsock:CID:PORT`, else inet_parse's
    `HOST:PORT[,...]`; a flat SocketAddress."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise GenericError("invalid Unix socket address")
        return {"type": "unix", "path": text[5:]}
    if text.startswith("fd:"):
        if not text[3:]:
            raise GenericError("invalid file descriptor address")
        return {"type": "fd", "str": text[3:]}
    if text.startswith("vsock:"):
        return {"type": "vsock", **vsock_parse(text[6:])}
    return {"type": "inet", **inet_parse(text)}


def inet_ai_family(host: str | None, ipv4: bool | None,
                   ipv6: bool | None) -> socket.AddressFamily:
    """inet_ai_family_from_address: the getaddrinfo family of an InetSocketAddress's
    ipv4/ipv6 flags (None: not given). Both on: IPv6 for an empty host (one socket
    for both), else either; a flag set off means the other family; both off fail."""
    if ipv4 is False and ipv6 is False:
        raise GenericError("Cannot disable IPv4 and IPv6 at same time")
    if ipv4 and ipv6:
        return socket.AF_INET6 if not host else socket.AF_UNSPEC
    if ipv6 or ipv4 is False:
        return socket.AF_INET6
    if ipv4 or ipv6 is False:
        return socket.AF_INET
    return socket.AF_UNSPEC


def socket_address_flatten(legacy: dict[str, Any]) -> dict[str, Any]:
    """socket_address_flatten: a SocketAddressLegacy (`{"type": T, "data": {...}}`)
    as the flat SocketAddress (`{"type": T, ...}`)."""
    return {"type": legacy["type"], **legacy.get("data", {})}


def socket_address_legacy(addr: dict[str, Any]) -> dict[str, Any]:
    """The other way: a flat SocketAddress as the SocketAddressLegacy a command of
    the legacy shape takes (HMP's nbd_server_start hands socket_parse's address to
    nbd-server-start)."""
    return {"type": addr["type"], "data": {k: v for k, v in addr.items() if k != "type"}}
