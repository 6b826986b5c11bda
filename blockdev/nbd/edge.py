"""The NBD server's sockets: the listener and one task per client (trio).

I/O edge of `blockdev.nbd` [blockdev-nbd.c nbd_accept, nbd/server.c]. The listening
socket is bound by the command (`blockdev.nbd.sockaddr`), so nbd-server-start answers
with QEMU's errors at once; `TrioListener` then accepts on the machine's nursery
(`BlockHost.spawn`) and starts a task per client, which pumps bytes between the
socket and the client's `codec.ServerSession`. The requests run synchronously inside
the session, on the machine's loop, between two awaits: the monitor is never blocked
for longer than one request. A request that the throttling on the export's path
(a throttle filter node, `blockdev.io_edge.blk_co_wait`) holds back waits on the
Machine's clock before it runs, its predecessors' replies sent. A session that the model closes (nbd-server-stop, the
export deleted) cancels its task, which closes the socket as client_close's
shutdown does; clients still negotiating outlive the listener, as in QEMU.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable

import trio

from blockdev.host import BlockHost
from blockdev.io import blk_throttle_deadline
from blockdev.io_edge import blk_co_wait
from blockdev.nbd.codec import ServerSession
from blockdev.nbd.server import NbdServer

RECV_SIZE = 256 * 1024
SEND_BUFFER = 1 << 20
_log = logging.getLogger("blockdev.nbd")


class TrioListener:
    """A running server's listening socket; `close` ends the accept loop (which
    closes the socket), or closes it at once if the loop never ran (no server yet)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.scope = trio.CancelScope()
        self.running = False
        self.closed = False

    def address(self) -> object:
        return self.sock.getsockname()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.scope.cancel()
        if not self.running:
            self.sock.close()

    async def accept_loop(self, host: BlockHost, server: NbdServer) -> None:
        """nbd_accept: every connection becomes a client task on the machine's nursery."""
        if self.closed:
            return
        self.running = True
        lsock = trio.socket.from_stdlib_socket(self.sock)
        try:
            with self.scope:
                while True:
                    conn, _ = await lsock.accept()
                    host.spawn(functools.partial(serve_client, server, conn, host.clock.now))
        finally:
            lsock.close()


def start(host: BlockHost, server: NbdServer, sock: socket.socket) -> TrioListener:
    """Hand a bound socket to the machine's nursery (nbd_server_start's watch)."""
    listener = TrioListener(sock)
    host.spawn(functools.partial(listener.accept_loop, host, server))
    return listener


async def serve_client(server: NbdServer, conn: trio.socket.SocketType,
                       now: Callable[[], float]) -> None:
    """nbd_client_new and nbd_co_client_start/nbd_trip for one connection; `now` reads
    the Machine's clock (a throttled request waits on it)."""
    if conn.family != socket.AF_UNIX:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # room for a few large replies: fewer waits for the client to drain the socket
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    scope = trio.CancelScope()
    busy = False

    def closed_by_model() -> None:
        # While the session runs a request it closes itself and its last replies are
        # still to be sent; otherwise (an export closed by a command) stop at once.
        if not busy:
            scope.cancel()

    session: ServerSession = server.new_session(on_close=closed_by_model, deferred=True)
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    try:
        with scope:
            await _send(conn, session)
            while not session.closed:
                try:
                    n = await conn.recv_into(buf)
                except OSError:
                    n = 0
                if not n:
                    session.eof()
                    break
                busy = True
                try:
                    session.receive(view[:n])
                finally:
                    busy = False
                while session.queue and not session.closed:
                    request = session.queue[0]
                    blk = getattr(session.export, "blk", None)
                    op = request.throttled_op
                    if blk is not None and op is not None and \
                            blk_throttle_deadline(blk, op, request.length, now()) > now():
                        # the replies so far go out before this request waits its turn
                        server.flush_reports(session)
                        await _send(conn, session)
                        await blk_co_wait(blk, op, request.length, now)
                    busy = True
                    try:
                        session.run_next()
                    finally:
                        busy = False
                server.flush_reports(session)
                await _send(conn, session)
    except OSError:
        pass
    except Exception:
        # A bug of ours ends this client only, never the machine: logged at the edge.
        _log.exception("NBD client failed")
    finally:
        server.session_ended(session)
        conn.close()


async def _send(conn: trio.socket.SocketType, session: ServerSession) -> None:
    """Everything the session produced, gathered into as few system calls as the
    kernel takes (a read's reply header and its data go together)."""
    chunks = [memoryview(c).cast("B") for c in session.take_output()]
    while chunks:
        sent = await conn.sendmsg(chunks[:64])
        while sent:
            if sent >= len(chunks[0]):
                sent -= len(chunks[0])
                chunks.pop(0)
            else:
                chunks[0] = chunks[0][sent:]
                sent = 0
