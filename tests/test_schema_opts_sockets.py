"""util/qemu-sockets.c's address strings, the one parser (`schema.opts.sockets`):
inet_parse (sscanf `%64[^:]:%32[^,]`, `[%64[^]]]:%32[^,]`, `:%32[^,]`, then strstr for
`,to=`, `,ipv4`, `,ipv6`), vsock_parse (`%32[^:]:%32[^,]`, nothing after it),
socket_parse (`unix:`, `fd:`, `vsock:`, else inet), socket_address_flatten
(SocketAddressLegacy -> SocketAddress) and inet_ai_family_from_address (the family
the ipv4/ipv6 flags allow). Every message is QEMU 2.11's error_setg text
in those functions."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from schema.errors import GenericError
from schema.opts.sockets import (
    inet_ai_family,
    inet_parse,
    socket_address_flatten,
    socket_address_legacy,
    socket_parse,
    vsock_parse,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("localhost:4444", {"host": "localhost", "port": "4444"}),
    ("127.0.0.1:0", {"host": "127.0.0.1", "port": "0"}),
    (":4444", {"host": "", "port": "4444"}),                  # no host given
    ("[::1]:4444", {"host": "::1", "port": "4444"}),
    ("[fe80::1%eth0]:http", {"host": "fe80::1%eth0", "port": "http"}),
    # %32[^,] reads colons too: the port is what follows the first colon
    ("a:b:c", {"host": "a", "port": "b:c"}),
    ("h:1,to=9", {"host": "h", "port": "1", "to": 9}),
    ("h:1,to=9,ipv4", {"host": "h", "port": "1", "to": 9, "ipv4": True}),
    ("h:1,ipv6", {"host": "h", "port": "1", "ipv6": True}),
    ("h:1,ipv4,ipv6", {"host": "h", "port": "1", "ipv4": True, "ipv6": True}),
    # strstr: the words are searched, not parsed as options
    ("h:1,ipv4=off", {"host": "h", "port": "1", "ipv4": True}),
    ("h:1,ipv6xyz", {"host": "h", "port": "1", "ipv6": True}),
    ("h:1,nodelay", {"host": "h", "port": "1"}),
    ("h:1,ipv4,to=5", {"host": "h", "port": "1", "to": 5, "ipv4": True}),
    ("h:1,to= 7", {"host": "h", "port": "1", "to": 7}),      # %d skips white space
    ("h:1,to=-3", {"host": "h", "port": "1", "to": -3}),
    ("h:1,to=4294967297", {"host": "h", "port": "1", "to": 1}),  # %d stores an int
    ("h:1,", {"host": "h", "port": "1"}),
])
def test_inet_parse(text: str, expected: dict[str, Any]) -> None:
    """inet_parse: the InetSocketAddress members, `to`/`ipv4`/`ipv6` only when given."""
    assert inet_parse(text) == expected


def test_inet_parse_widths() -> None:
    """inet_parse's buffers: host[65] (a longer host fails), port[33] (a longer port is
    cut; the options are searched in what follows it)."""
    assert inet_parse("h" * 64 + ":1") == {"host": "h" * 64, "port": "1"}
    port = "9" * 40
    assert inet_parse(f"h:{port},ipv4") == {"host": "h", "port": "9" * 32, "ipv4": True}
    assert inet_parse(f"[{'1' * 64}]:1")["host"] == "1" * 64
    with pytest.raises(GenericError, match="error parsing address"):
        inet_parse("h" * 65 + ":1")
    with pytest.raises(GenericError, match="error parsing IPv6 address"):
        inet_parse(f"[{'1' * 65}]:1")


@pytest.mark.parametrize(("text", "message"), [
    (":", "error parsing port in address ':'"),
    (":,to=1", "error parsing port in address ':,to=1'"),
    ("[::1", "error parsing IPv6 address '[::1'"),
    ("[::1]", "error parsing IPv6 address '[::1]'"),
    ("[::1]:", "error parsing IPv6 address '[::1]:'"),
    ("[]:1", "error parsing IPv6 address '[]:1'"),
    ("[::1]4444", "error parsing IPv6 address '[::1]4444'"),
    ("localhost", "error parsing address 'localhost'"),
    ("localhost:", "error parsing address 'localhost:'"),
    ("", "error parsing address ''"),
    ("h:1,to=", "error parsing to= argument"),
    ("h:1,to=x", "error parsing to= argument"),
    ("h:1,to=5x", "error parsing to= argument"),
    ("h:1,to=5 ", "error parsing to= argument"),
])
def test_inet_parse_errors(text: str, message: str) -> None:
    """inet_parse's three address messages and the to= one, exactly."""
    with pytest.raises(GenericError) as err:
        inet_parse(text)
    assert err.value.desc == message


def test_vsock_parse() -> None:
    """vsock_parse (CONFIG_AF_VSOCK): CID:PORT as strings; nothing may follow."""
    assert vsock_parse("3:1024") == {"cid": "3", "port": "1024"}
    assert vsock_parse("x:y") == {"cid": "x", "port": "y"}  # checked when it is used
    for text in ("3", "3:", ":1024", ""):
        with pytest.raises(GenericError) as err:
            vsock_parse(text)
        assert err.value.desc == f"error parsing address '{text}'"
    with pytest.raises(GenericError) as err:
        vsock_parse("3:1024,x")
    assert err.value.desc == "trailing characters in address '3:1024,x'"


@pytest.mark.parametrize(("text", "expected"), [
    ("unix:/tmp/s", {"type": "unix", "path": "/tmp/s"}),
    ("unix:/tmp/s,server", {"type": "unix", "path": "/tmp/s,server"}),  # all of it
    ("fd:3", {"type": "fd", "str": "3"}),
    ("fd:monfd", {"type": "fd", "str": "monfd"}),
    ("vsock:2:5000", {"type": "vsock", "cid": "2", "port": "5000"}),
    ("localhost:10809", {"type": "inet", "host": "localhost", "port": "10809"}),
    ("tcp:1", {"type": "inet", "host": "tcp", "port": "1"}),  # no tcp: prefix here
    (":10809,ipv6", {"type": "inet", "host": "", "port": "10809", "ipv6": True}),
])
def test_socket_parse(text: str, expected: dict[str, Any]) -> None:
    """socket_parse: a flat SocketAddress by prefix, else inet_parse's."""
    assert socket_parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("unix:", "invalid Unix socket address"),
    ("fd:", "invalid file descriptor address"),
    ("vsock:2", "error parsing address '2'"),               # vsock_parse's own text
    ("vsock:2:5,x", "trailing characters in address '2:5,x'"),
    ("localhost", "error parsing address 'localhost'"),     # the whole string
    ("[::1", "error parsing IPv6 address '[::1'"),
])
def test_socket_parse_errors(text: str, message: str) -> None:
    """socket_parse's messages, and its parsers' (with the text they were given)."""
    with pytest.raises(GenericError) as err:
        socket_parse(text)
    assert err.value.desc == message


@pytest.mark.parametrize("legacy", [
    {"type": "inet", "data": {"host": "h", "port": "1", "to": 3, "ipv4": True}},
    {"type": "unix", "data": {"path": "/s"}},
    {"type": "vsock", "data": {"cid": "2", "port": "9"}},
    {"type": "fd", "data": {"str": "fd0"}},
])
def test_flatten_and_back(legacy: dict[str, Any]) -> None:
    """socket_address_flatten: the members of `data` beside `type`; and the reverse
    (what HMP's nbd_server_start sends to nbd-server-start)."""
    flat = socket_address_flatten(legacy)
    assert flat == {"type": legacy["type"], **legacy["data"]}
    assert socket_address_legacy(flat) == legacy


@pytest.mark.parametrize(("host", "ipv4", "ipv6", "family"), [
    ("h", None, None, socket.AF_UNSPEC),
    ("h", True, None, socket.AF_INET),
    ("h", None, True, socket.AF_INET6),
    ("h", False, None, socket.AF_INET6),    # IPv4 off: IPv6
    ("h", None, False, socket.AF_INET),     # IPv6 off: IPv4
    ("h", True, False, socket.AF_INET),
    ("h", False, True, socket.AF_INET6),
    ("h", True, True, socket.AF_UNSPEC),    # both on, a named host: getaddrinfo's pick
    ("", True, True, socket.AF_INET6),      # both on, no host: one socket for both
    (None, True, True, socket.AF_INET6),
])
def test_inet_ai_family(host: str | None, ipv4: bool | None, ipv6: bool | None,
                        family: socket.AddressFamily) -> None:
    """inet_ai_family_from_address's table (None: the flag is not given)."""
    assert inet_ai_family(host, ipv4, ipv6) == family


def test_inet_ai_family_both_off() -> None:
    """inet_ai_family_from_address: "Cannot disable IPv4 and IPv6 at same time"."""
    with pytest.raises(GenericError) as err:
        inet_ai_family("h", False, False)
    assert err.value.desc == "Cannot disable IPv4 and IPv6 at same time"
