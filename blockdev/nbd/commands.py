"""The NBD server's QMP commands: nbd-server-start, nbd-server-add, nbd-server-stop.

Handlers of `blockdev.nbd` [blockdev-nbd.c], registered by schema name; also the NBD
subsystem the Machine owns (`Nbd`: its hooks close the server at exit). The state is
`blockdev.nbd.server.NbdServer`; the listener is bound here, synchronously, so the
command answers with the socket's error (`blockdev.nbd.sockaddr`), and is then served
by `blockdev.nbd.edge` on the machine's nursery. An export gets a BlockBackend of its
own on the node (nbd_export_new: CONSISTENT_READ, plus WRITE when writable, sharing
everything but RESIZE), so the node is "in use" while exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blockdev.graph import Backend
from blockdev.image.lock import Perm
from blockdev.layer import BlockLayer
from schema.errors import GenericError
from schema.handlers import SubsystemHooks, qmp_command

if TYPE_CHECKING:
    from blockdev.nbd.server import NbdServer

# nbd_export_new's BlockBackend: what it takes and what it lets others do.
EXPORT_SHARED = int(Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.WRITE
                    | Perm.GRAPH_MOD)


def _export_error(errno: int) -> Exception:
    from blockdev.nbd.codec import ExportIOError

    return ExportIOError(errno)


class BackendDevice:
    """An export's BlockBackend as the codec's ExportDevice: requests go through the
    block layer's data path (`blockdev.io`, blk_* functions)."""

    def __init__(self, blk: Backend) -> None:
        self.blk = blk

    def pread(self, offset: int, length: int) -> bytes:
        from blockdev import io

        try:
            return io.blk_pread(self.blk, offset, length)
        except io.BlockIOError as err:
            raise _export_error(err.errno) from None

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        from blockdev import io

        try:
            io.blk_pwrite(self.blk, offset, data if isinstance(data, bytes) else bytes(data),
                          fua=fua)
        except io.BlockIOError as err:
            raise _export_error(err.errno) from None

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool, fua: bool) -> None:
        from blockdev import io

        try:
            io.blk_pwrite_zeroes(self.blk, offset, length, may_unmap=may_unmap)
            if fua:
                io.blk_flush(self.blk)
        except io.BlockIOError as err:
            raise _export_error(err.errno) from None

    def pdiscard(self, offset: int, length: int) -> None:
        from blockdev import io

        try:
            io.blk_pdiscard(self.blk, offset, length)
        except io.BlockIOError as err:
            raise _export_error(err.errno) from None

    def flush(self) -> None:
        from blockdev import io

        try:
            io.blk_flush(self.blk)
        except io.BlockIOError as err:
            raise _export_error(err.errno) from None


class Nbd(SubsystemHooks):
    """The NBD server of one machine: its state and its commands."""

    def __init__(self, layer: BlockLayer) -> None:
        self.layer = layer
        self._server: NbdServer | None = None  # the protocol loads with the first use
        layer.medium_listeners.append(self._medium_removed)
        layer.nbd_local = self._loopback

    @property
    def server(self) -> NbdServer:
        if self._server is None:
            from blockdev.nbd.server import NbdServer

            self._server = NbdServer(report=self.layer.host.error_report)
        return self._server

    def _loopback(self, address: dict[str, Any]) -> Any:
        """An `nbd` node of this machine whose server is this machine's: a session of
        our server, talked to directly (the client and the server share one loop)."""
        server = self._server
        if server is None or server.listener is None:
            return None
        from blockdev.nbd.client import LoopbackTransport
        from blockdev.nbd.sockaddr import same_address

        if not same_address(address, server.listener.address()):
            return None
        return LoopbackTransport(server.new_session(), server.session_ended)

    def _medium_removed(self, blk: Backend) -> None:
        if self._server is not None:
            self._server.medium_removed(blk)

    # -- Subsystem hooks --------------------------------------------------------------------

    def close(self) -> None:
        """At exit the exports close before the block layer closes its nodes."""
        if self._server is not None:
            self._server.stop()

    # -- commands ---------------------------------------------------------------------------

    @qmp_command("nbd-server-start")
    def nbd_server_start(self, addr: dict[str, Any], tls_creds: str | None = None) -> None:
        """qmp_nbd_server_start -> nbd_server_start (the legacy address flattened)."""
        from schema.opts.sockets import socket_address_flatten

        self.start(socket_address_flatten(addr), tls_creds)

    def start(self, addr: dict[str, Any], tls_creds: str | None) -> None:
        """nbd_server_start: listen, then check the TLS credentials."""
        from blockdev.nbd import edge, sockaddr

        if self.server.running:
            raise GenericError("NBD server already running")
        sock = sockaddr.listen(addr)
        try:
            if tls_creds is not None:
                if not self.layer.has_tls_creds(tls_creds):
                    raise GenericError(f"No TLS credentials with id '{tls_creds}'")
                if addr["type"] != "inet":
                    raise GenericError("TLS is only supported with IPv4/IPv6")
        except GenericError:
            sock.close()
            raise
        self.server.tls_creds = tls_creds
        self.server.listener = edge.start(self.layer.host, self.server, sock)

    @qmp_command("nbd-server-add")
    def nbd_server_add(self, device: str, writable: bool | None = None) -> None:
        """qmp_nbd_server_add."""
        from blockdev.nbd.codec import NBD_FLAG_READ_ONLY
        from blockdev.nbd.server import NbdExport, export_size

        server = self.server
        if not server.running:
            raise GenericError("NBD server not running")
        if server.find(device) is not None:
            raise GenericError(f"NBD server already exporting device '{device}'")
        layer = self.layer
        on_eject_blk = layer.blk_by_name(device)
        bs = layer.lookup_bs(device, device)
        if bs.read_only:
            writable = False
        perm = int(Perm.CONSISTENT_READ) | (int(Perm.WRITE) if writable else 0)
        blk = layer.blk_new_with_bs(bs, perm, EXPORT_SHARED)
        server.add(NbdExport(
            name=device, size=export_size(bs.length()),
            nbdflags=0 if writable else NBD_FLAG_READ_ONLY, device=BackendDevice(blk),
            blk=blk, eject_blk=on_eject_blk, on_close=lambda exp: layer.blk_unref(exp.blk)))

    @qmp_command("nbd-server-stop")
    def nbd_server_stop(self) -> None:
        """qmp_nbd_server_stop: always succeeds."""
        if self._server is not None:
            self._server.stop()
