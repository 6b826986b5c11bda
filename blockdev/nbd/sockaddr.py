"""Socket addresses as QEMU binds them, for listeners made in a command.

I/O module of `blockdev.nbd` (plain sockets, synchronous: a QMP command binds before
it answers) [util/qemu-sockets.c socket_listen, inet_listen_saddr, unix_listen_saddr].
It takes a flat SocketAddress; the parsing of address strings and the legacy shape's
flattening are `schema.opts.sockets`'. The socket is made non-blocking; an edge hands
it to trio.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import tempfile
from typing import Any

from schema.errors import GenericError
from schema.jsontypes import qemu_bytes
from schema.opts.sockets import inet_ai_family

# QEMU 2.11 listens with a backlog of 1; a burst of clients connecting at once (the
# NBD server's many clients) then waits for TCP's SYN retransmissions, seconds each.
# Nothing a client can observe depends on it but that wait, so the queue is longer.
BACKLOG = 128


def listen(addr: dict[str, Any]) -> socket.socket:
    """socket_listen on a flat SocketAddress: a bound, listening, non-blocking socket."""
    kind = addr["type"]
    if kind == "unix":
        sock = _unix_listen(addr.get("path", ""))
    elif kind == "inet":
        sock = _inet_listen(addr)
    elif kind == "vsock":
        raise GenericError("socket family AF_VSOCK unsupported")
    else:
        raise GenericError(f"socket type {kind} unsupported here")
    sock.setblocking(False)
    return sock


def _unix_listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(qemu_bytes(path)) > 108:
            raise GenericError(f"UNIX socket path '{path}' is too long")
        if "\0" in path:
            # a C string ends at its first NUL
            path = path.split("\0", 1)[0]
        if not path:
            # no path: a fresh name in $TMPDIR, as QEMU makes with mkstemp
            fd, path = tempfile.mkstemp(prefix="qemu-socket-",
                                        dir=os.environ.get("TMPDIR", "/tmp"))
            os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise GenericError(f"Failed to unlink socket {path}: {e.strerror}") from None
        try:
            sock.bind(path)
        except OSError as e:
            raise GenericError(f"Failed to bind socket to {path}: {e.strerror}") from None
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _inet_listen(addr: dict[str, Any]) -> socket.socket:
    """inet_listen_saddr: every address getaddrinfo gives, every port up to `to`; a port
    in use moves on, and when none is left: "Failed to find an available port"."""
    host = addr.get("host")
    family = inet_ai_family(host, addr.get("ipv4"), addr.get("ipv6"))
    if host is None:
        raise GenericError("host not specified")
    port = addr.get("port") or None
    try:
        infos = socket.getaddrinfo(host or None, port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise GenericError(f"address resolution failed for {host}:{port or ''}: "
                           f"{e.strerror}") from None
    except (UnicodeError, ValueError):
        # a name no resolver accepts (getaddrinfo's EAI_NONAME)
        raise GenericError(f"address resolution failed for {host}:{port or ''}: "
                           "Name or service not known") from None
    last = errno_mod.EADDRINUSE
    created = False
    for fam, kind, proto, _canon, sockaddr in infos:
        first = int(sockaddr[1])
        to = addr.get("to")
        for p in range(first, (to if to is not None else first) + 1):
            try:
                sock = socket.socket(fam, kind, proto)
            except OSError as e:
                last = e.errno or last
                continue
            created = True
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((str(sockaddr[0]), p, *sockaddr[2:]))
                sock.listen(BACKLOG)
                return sock
            except OSError as e:
                sock.close()
                last = e.errno or last
                if e.errno != errno_mod.EADDRINUSE:
                    raise GenericError(f"Failed to bind socket: {e.strerror}") from None
    what = "Failed to find an available port" if created else "Failed to create a socket"
    raise GenericError(f"{what}: {os.strerror(last)}")


def same_address(addr: dict[str, Any], bound: Any) -> bool:
    """Does connecting to `addr` (a flat SocketAddress) reach the socket bound at
    `bound` (its getsockname())?"""
    if addr.get("type") == "unix":
        if not isinstance(bound, str):
            return False
        path = str(addr.get("path", ""))
        return path == bound or os.path.realpath(path) == os.path.realpath(bound)
    if addr.get("type") != "inet" or not isinstance(bound, tuple):
        return False
    try:
        infos = socket.getaddrinfo(addr.get("host"), addr.get("port"), socket.AF_UNSPEC,
                                   socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return False
    host, port = bound[0], bound[1]
    for _fam, _kind, _proto, _canon, target in infos:
        if target[1] != port:
            continue
        if target[0] == host or host in ("0.0.0.0", "::"):
            return True
    return False
