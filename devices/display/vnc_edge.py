"""The VNC edge: the real listening sockets and client connections of the VNC displays.

I/O edge of `devices.display` (trio) [ui/vnc.c vnc_display_listen_addr, vnc_listen_io,
vnc_client_io; util/qemu-sockets.c inet_listen_saddr, unix_listen_saddr]. Sockets are
bound synchronously, as QEMU binds them while it handles `-vnc` or `change vnc`, so
a failure is the command's error with QEMU's text. Accepting and serving run as trio
system tasks (a synchronous handler can start them; they end with the trio run or
when the display closes). Every byte a client sends goes to the model
(`devices.display.vnc.VncDisplays.received`), which answers through the RFB state
machine; a client that sends garbage or goes away is dropped without disturbing
anyone else. Outside a trio run (a test driving the dispatcher directly) the
sockets listen and the accepting starts with the first display opened inside one.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from devices.display.vnc import BasicInfo, SocketAddr, VncDisplay, VncDisplays
from schema.errors import GenericError
from schema.opts.sockets import inet_ai_family

RECV_SIZE = 65536


def _numeric(sockaddr: Any, family: int) -> BasicInfo:
    """qio_channel_socket_get_*_address + vnc_init_basic_info."""
    if family == socket.AF_UNIX:
        return BasicInfo("", sockaddr if isinstance(sockaddr, str) else "", "unix")
    host, service = socket.getnameinfo(sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    return BasicInfo(host, service, "ipv6" if family == socket.AF_INET6 else "ipv4")


def _strerror(code: int) -> str:
    return os.strerror(code)


def _listen_unix(path: str) -> socket.socket:
    """unix_listen_saddr: whatever is at the path goes first."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise GenericError(f"Failed to unlink socket {path}: {_strerror(err.errno or 0)}") \
                from None
        try:
            sock.bind(path)
        except OSError as err:
            raise GenericError(f"Failed to bind socket to {path}: "
                               f"{_strerror(err.errno or 0)}") from None
        sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_inet(addr: SocketAddr) -> list[socket.socket]:
    """qio_dns_resolver_lookup_sync, then inet_listen_saddr on every result (the
    first port of `to=` that is free); it fails only when none listens."""
    family = inet_ai_family(addr.host, addr.ipv4, addr.ipv6)
    try:
        results = socket.getaddrinfo(addr.host or None, addr.port, family,
                                     socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise GenericError(f"address resolution failed for {addr.host}:{addr.port}: "
                           f"{err.strerror}") from None
    socks: list[socket.socket] = []
    first_error: str | None = None
    last = addr.to if addr.to is not None else addr.port
    for fam, kind, proto, _name, sockaddr in results:
        error: str | None = None
        for port in range(addr.port, last + 1):
            sock = socket.socket(fam, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((sockaddr[0], port, *sockaddr[2:]))
                sock.listen(1)
            except OSError as err:
                sock.close()
                if err.errno != errno.EADDRINUSE:
                    error = f"Failed to bind socket: {_strerror(err.errno or 0)}"
                    break
                error = f"Failed to find an available port: {_strerror(errno.EADDRINUSE)}"
                continue
            socks.append(sock)
            error = None
            break
        if error is not None and first_error is None:
            first_error = error
    if not socks:
        raise GenericError(first_error or "Failed to create a socket")
    return socks


@attrs.define(kw_only=True, eq=False)
class _Served:
    """The sockets of one open display."""

    listeners: list[socket.socket]
    scopes: set[trio.CancelScope] = attrs.Factory(set)  # one per accept loop
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for scope in self.scopes:
            scope.cancel()
        for sock in self.listeners:
            sock.close()


class VncEdge:
    """The sockets of every VNC display of one machine (`devices.display.vnc.VncListen`)."""

    def __init__(self, displays: VncDisplays,
                 on_error: Callable[[str], None] = lambda text: None) -> None:
        self.displays = displays
        self.on_error = on_error  # a bug of ours at a connection's edge, for the log
        self.served: dict[int, _Served] = {}
        self.clients: set[trio.CancelScope] = set()  # one per client task
        self.pending: list[Callable[[], Awaitable[None]]] = []

    # -- VncListen ----------------------------------------------------------------------

    def listen(self, display: VncDisplay, addresses: Sequence[SocketAddr]) -> list[BasicInfo]:
        socks: list[socket.socket] = []
        try:
            for addr in addresses:
                if addr.type == "unix":
                    socks.append(_listen_unix(addr.path))
                else:
                    socks.extend(_listen_inet(addr))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        served = _Served(listeners=socks)
        self.served[id(display)] = served
        for sock in socks:
            sock.setblocking(False)
            self._spawn(functools.partial(self._accept_loop, display, served, sock))
        return [_numeric(sock.getsockname(), sock.family) for sock in socks]

    def close(self, display: VncDisplay) -> None:
        served = self.served.pop(id(display), None)
        if served is not None:
            served.close()

    def add_client(self, display: VncDisplay, fd: int, skipauth: bool) -> None:
        """vnc_display_add_client: the descriptor becomes a client of `display`."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        sock.setblocking(False)
        self._spawn(functools.partial(self._serve_client, display, sock, skipauth))

    def close_all(self) -> None:
        for served in self.served.values():
            served.close()
        self.served.clear()
        for scope in self.clients:
            scope.cancel()

    # -- tasks ------------------------------------------------------------------------

    def _spawn(self, start: Callable[[], Awaitable[None]]) -> None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            self.pending.append(start)  # not inside trio: wait for the next spawn there
            return
        pending, self.pending = self.pending, []
        for task in (*pending, start):
            trio.lowlevel.spawn_system_task(self._guarded, task)

    async def _guarded(self, start: Callable[[], Awaitable[None]]) -> None:
        try:
            await start()
        except Exception as exc:  # a bug of ours must not end the trio run
            self.on_error(f"VNC: {exc!r}")

    async def _accept_loop(self, display: VncDisplay, served: _Served,
                           sock: socket.socket) -> None:
        if served.closed:
            return
        listener = trio.socket.from_stdlib_socket(sock)
        with trio.CancelScope() as scope:
            served.scopes.add(scope)
            try:
                while True:
                    try:
                        conn, _addr = await listener.accept()
                    except OSError:
                        return  # closed under us
                    self._spawn(functools.partial(self._serve_client, display, conn, False))
            finally:
                served.scopes.discard(scope)

    async def _serve_client(self, display: VncDisplay, conn: Any, skipauth: bool) -> None:
        """vnc_connect .. vnc_disconnect_finish for one connection (it outlives the
        listener that accepted it, as in QEMU)."""
        if isinstance(conn, socket.socket):
            conn = trio.socket.from_stdlib_socket(conn)
        try:
            peer = _numeric(conn.getpeername(), conn.family)
        except OSError:
            conn.close()
            return
        model = self.displays
        client = model.connected(display, peer, skipauth)
        try:
            with trio.CancelScope() as scope:
                self.clients.add(scope)
                await _send_all(conn, client.rfb.start())
                while not client.rfb.closed:
                    data = await conn.recv(RECV_SIZE)
                    if not data:
                        break
                    await _send_all(conn, model.received(client, data))
        except OSError:
            pass
        finally:
            self.clients.discard(scope)
            conn.close()
            model.disconnected(client)


async def _send_all(conn: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await conn.send(view):]
