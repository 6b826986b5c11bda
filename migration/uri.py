"""Migration URIs: what `migrate`, `migrate-incoming` and `-incoming` accept.

Pure part of the `migration` layer: the parsing and its synchronous errors
[migration/migration.c qmp_migrate, qemu_start_incoming_migration; migration/socket.c
tcp_build_address], `../shared/reference/migration.md` §6.1 and §7.1; a `tcp:`
address is `schema.opts.sockets.inet_parse`'s.
The edge (`migration.transport`) opens what a parsed URI names.
"""

from __future__ import annotations

import attrs

from schema.opts.sockets import inet_parse


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


def tcp(text: str) -> Tcp:
    """migration/socket.c tcp_build_address: inet_parse's address (`to=` is parsed
    but unused: the transport connects to, or listens on, the one port)."""
    addr = inet_parse(text)
    return Tcp(host=addr["host"], port=addr["port"], ipv4=addr.get("ipv4", False),
               ipv6=addr.get("ipv6", False))


def parse(uri: str) -> Uri:
    """The scheme by prefix, as migration.c's strstart tests; raises UnknownProtocol
    for any other, GenericError for an address that does not parse."""
    if uri.startswith("tcp:"):
        return tcp(uri[4:])
    if uri.startswith("unix:"):
        return Unix(uri[5:])
    if uri.startswith("exec:"):
        return Exec(uri[5:])
    if uri.startswith("fd:"):
        return Fd(uri[3:])
    raise UnknownProtocol(uri)
