"""The migration streams' real transport: tcp:, unix:, fd: and exec: on trio.

The I/O edge of the `migration` layer (the pure model never imports it): `TrioEdge`
implements `migration.host.Edge` inside the server's nursery. Outgoing, it connects
(or takes the `getfd` descriptor, or runs `/bin/sh -c CMD` with the stream on its
stdin), then writes what the model queues, in order, and reports the end; incoming,
it listens (the listener closes after the first connection, as QEMU's does), reads
the stream's bytes into the model and sends the destination's one-byte verdict back.
Synchronous failures (a listener that cannot bind) raise QEMU's GenericError at once;
the rest are reported through the model's end objects with QEMU's texts
[util/qemu-sockets.c inet_connect_saddr, unix_connect_saddr, inet_listen_saddr,
migration/socket.c, migration/exec.c, migration/fd.c].
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from migration.host import IncomingEnd, OutgoingEnd
from migration.stream import ACK_FAILED
from migration.uri import Exec, Fd, Tcp, Unix, Uri
from schema.errors import GenericError
from schema.opts.sockets import inet_ai_family


def _strerror(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


class _Stream:
    """One byte stream with the model's queue in front of it."""

    def __init__(self, edge: TrioEdge) -> None:
        self.edge = edge
        self.queue = bytearray()
        self.wake = trio.Event()
        self.finishing = False
        self.scope = trio.CancelScope()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.queue += data
        self.wake.set()

    def finish(self) -> None:
        self.finishing = True
        self.wake.set()

    def abort(self) -> None:
        self.closed = True
        self.scope.cancel()

    def answer(self, data: bytes) -> None:
        self.queue += data
        self.finishing = True
        self.wake.set()

    async def drain(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send the queue until `finish` and empty."""
        while True:
            if self.queue:
                chunk = bytes(self.queue)
                self.queue.clear()
                await send(chunk)
                continue
            if self.finishing:
                return
            self.wake = trio.Event()
            await self.wake.wait()


class TrioEdge:
    """`migration.host.Edge` on trio, in the nursery of the machine's server."""

    def __init__(self, nursery: trio.Nursery, kick: Callable[[], None]) -> None:
        self.nursery = nursery
        self.kick = kick

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)
        self.kick()

    # -- outgoing --------------------------------------------------------------------

    def connect(self, uri: Uri, fd: int | None, end: OutgoingEnd) -> None:
        self.nursery.start_soon(self._outgoing, uri, fd, end)

    async def _open(self, uri: Uri, fd: int | None,
                    end: OutgoingEnd) -> tuple[Any, trio.Process | None] | None:
        try:
            if isinstance(uri, Tcp):
                try:
                    infos = await trio.socket.getaddrinfo(
                        uri.host or None, uri.port, type=socket.SOCK_STREAM,
                        family=_family(uri))
                except socket.gaierror as err:
                    self._call(end.connect_failed, f"address resolution failed for "
                               f"{uri.host}:{uri.port}: {err.strerror}")
                    return None
                last: OSError | None = None
                for family, type_, proto, _, addr in infos:
                    sock = trio.socket.socket(family, type_, proto)
                    try:
                        await sock.connect(addr)
                    except OSError as err:
                        sock.close()
                        last = err
                        continue
                    return trio.SocketStream(sock), None
                assert last is not None
                self._call(end.connect_failed,
                           f"Failed to connect socket: {_strerror(last)}")
                return None
            if isinstance(uri, Unix):
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    await sock.connect(uri.path)
                except OSError as err:
                    sock.close()
                    self._call(end.connect_failed,
                               f"Failed to connect socket {uri.path}: {_strerror(err)}")
                    return None
                return trio.SocketStream(sock), None
            if isinstance(uri, Fd):
                assert fd is not None
                return _fd_stream(fd), None
            assert isinstance(uri, Exec)
            proc = await trio.lowlevel.open_process(["/bin/sh", "-c", uri.command],
                                                    stdin=-1)
            assert proc.stdin is not None
            return proc.stdin, proc
        except OSError as err:
            self._call(end.connect_failed, _strerror(err))
            return None

    async def _outgoing(self, uri: Uri, fd: int | None, end: OutgoingEnd) -> None:
        opened = await self._open(uri, fd, end)
        if opened is None:
            return
        stream, proc = opened
        channel = _Stream(self)
        ok = False
        verdict: list[bytes] = []
        with channel.scope:
            self._call(end.connected, channel)
            try:
                async with trio.open_nursery() as inner:
                    if isinstance(stream, trio.SocketStream):
                        inner.start_soon(self._watch_peer, stream, channel, verdict)
                    await channel.drain(stream.send_all)
                    if isinstance(stream, trio.SocketStream):
                        await stream.send_eof()
                        while not verdict:  # wait for the destination's verdict (or EOF)
                            await channel_wait(channel)
                    else:
                        await stream.aclose()
                        if proc is not None:
                            await proc.wait()
                    inner.cancel_scope.cancel()
                ok = not verdict or verdict[0] != ACK_FAILED
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                ok = False
        with trio.CancelScope(shield=True):
            await stream.aclose()
        if proc is not None and proc.returncode is None:
            proc.kill()
        if not channel.closed:
            self._call(end.done, ok)

    async def _watch_peer(self, stream: trio.SocketStream, channel: _Stream,
                          verdict: list[bytes]) -> None:
        """What the destination says (one byte), or its going away. Going away before
        the stream was finished breaks the migration."""
        try:
            data = await stream.receive_some(1)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data:
            verdict.append(data[:1])
        elif not channel.finishing:
            verdict.append(ACK_FAILED)
        else:
            verdict.append(b"")
        if verdict[0] == ACK_FAILED:
            channel.scope.cancel()
        channel.wake.set()

    # -- incoming --------------------------------------------------------------------

    def listen(self, uri: Uri, end: IncomingEnd) -> None:
        if isinstance(uri, Tcp | Unix):
            listener = _bind(uri)
            self.nursery.start_soon(self._accept, listener, end)
        elif isinstance(uri, Fd):
            self.nursery.start_soon(self._incoming, _fd_stream(int(uri.name)), end, None)
        else:
            self.nursery.start_soon(self._incoming_exec, uri, end)

    async def _accept(self, listener: socket.socket, end: IncomingEnd) -> None:
        sock = trio.socket.from_stdlib_socket(listener)
        try:
            conn, _ = await sock.accept()
        finally:
            sock.close()
        await self._incoming(trio.SocketStream(conn), end, None)

    async def _incoming_exec(self, uri: Exec, end: IncomingEnd) -> None:
        try:
            proc = await trio.lowlevel.open_process(["/bin/sh", "-c", uri.command],
                                                    stdout=-1)
        except OSError as err:
            self._call(end.listen_failed, _strerror(err))
            return
        assert proc.stdout is not None
        await self._incoming(proc.stdout, end, proc)

    async def _incoming(self, stream: Any, end: IncomingEnd, proc: trio.Process | None) -> None:
        channel = _Stream(self)
        self._call(end.accepted, channel)
        with channel.scope:
            try:
                while not channel.finishing:
                    data = await stream.receive_some(65536)
                    if not data:
                        self._call(end.closed)
                        break
                    self._call(end.received, data)
                if channel.queue and isinstance(stream, trio.SocketStream):
                    await stream.send_all(bytes(channel.queue))
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                self._call(end.closed)
        with trio.CancelScope(shield=True):
            await stream.aclose()
            if proc is not None:
                await proc.wait()


async def channel_wait(channel: _Stream) -> None:
    channel.wake = trio.Event()
    await channel.wake.wait()


def _fd_stream(fd: int) -> Any:
    """A descriptor of any kind (socket, pipe, file) as a trio stream."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return trio.lowlevel.FdStream(fd)
    if sock.type == socket.SOCK_STREAM:
        return trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    sock.detach()
    return trio.lowlevel.FdStream(fd)


def _family(uri: Tcp) -> socket.AddressFamily:
    """inet_ai_family_from_address (inet_parse sets a flag only on, never off)."""
    return inet_ai_family(uri.host, uri.ipv4 or None, uri.ipv6 or None)


def _bind(uri: Tcp | Unix) -> socket.socket:
    """inet_listen_saddr / unix_listen_saddr: bound and listening, or QEMU's error."""
    try:
        if isinstance(uri, Unix):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                os.unlink(uri.path)
            except OSError:
                pass
            try:
                sock.bind(uri.path)
            except OSError as err:
                sock.close()
                raise GenericError(f"Failed to bind socket to {uri.path}: "
                                   f"{_strerror(err)}") from None
        else:
            infos = socket.getaddrinfo(uri.host or None, uri.port, _family(uri),
                                       socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, type_, proto, _, addr = infos[0]
            sock = socket.socket(family, type_, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as err:
                sock.close()
                # inet_listen_saddr: a port in use is "no port available" in its range
                # [util/qemu-sockets.c]; other bind errors are "Failed to bind socket"
                what = "Failed to find an available port" if err.errno == errno.EADDRINUSE \
                    else "Failed to bind socket"
                raise GenericError(f"{what}: {_strerror(err)}") from None
        sock.listen(1)
        sock.setblocking(False)
        return sock
    except socket.gaierror as err:
        raise GenericError(f"address resolution failed for {getattr(uri, 'host', '')}:"
                           f"{getattr(uri, 'port', '')}: {err.strerror}") from None
    except OSError as err:
        raise GenericError(_strerror(err) or errno.errorcode.get(err.errno or 0, "")) from None
