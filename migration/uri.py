"""Migration URIs: what `migrate`, `migrate-incoming` and `-incoming` accept.

Pure part of the `migration` layer: the parsing and its synchronous errors
[migration/migration.c qmp_migrate, qemu_start_incoming_migration;
util/qemu-sockets.c inet_parse], `../shared/reference/migration.md` §6.1 and §7.1.
The edge (`migration.transport`) opens what a parsed URI names.
"""

from __future__ import annotations

import attrs

from schema.errors import GenericError


@attrs.frozen
class Tcp:
    host: str
    port: str
    ipv4: bool = False
    ipv6: bool = False


@attrs.frozen
class Unix:
    path: str


@attrs.frozen
class Exec:
    command: str


@attrs.frozen
class Fd:
    name: str  # outgoing: a monitor's fd name; incoming: a descriptor number


Uri = Tcp | Unix | Exec | Fd


class UnknownProtocol(Exception):
    """A URI of no known scheme (each side words it differently)."""


def inet_parse(text: str) -> Tcp:
    """util/qemu-sockets.c inet_parse: HOST:PORT, [IPV6]:PORT or :PORT, then options
    (`to=`, `ipv4`, `ipv6`)."""
    head, _, opts = text.partition(",")
    if head.startswith(":"):
        host, port = "", head[1:]
        if not port:
            raise GenericError(f"error parsing port in address '{text}'")
    elif head.startswith("["):
        inner, sep, rest = head[1:].partition("]")
        if not sep or not rest.startswith(":") or not inner or len(rest) < 2:
            raise GenericError(f"error parsing IPv6 address '{text}'")
        host, port = inner, rest[1:]
    else:
        host, sep, port = head.partition(":")
        if not sep or not host or not port:
            raise GenericError(f"error parsing address '{text}'")
    flags = opts.split(",") if opts else []
    return Tcp(host=host, port=port, ipv4="ipv4" in flags, ipv6="ipv6" in flags)


def parse(uri: str) -> Uri:
    """The scheme by prefix, as migration.c's strstart tests; raises UnknownProtocol
    for any other, GenericError for an address that does not parse."""
    if uri.startswith("tcp:"):
        return inet_parse(uri[4:])
    if uri.startswith("unix:"):
        return Unix(uri[5:])
    if uri.startswith("exec:"):
        return Exec(uri[5:])
    if uri.startswith("fd:"):
        return Fd(uri[3:])
    raise UnknownProtocol(uri)
