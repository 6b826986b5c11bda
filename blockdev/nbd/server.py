"""The NBD server's state: its exports and their clients, without I/O.

Pure part of `blockdev.nbd` [nbd/server.c, blockdev-nbd.c]. `NbdServer` holds the
named exports (QEMU's global `exports` list: they outlive a stop of the listener
only in that clients still negotiating keep looking them up), the listener while
the server runs (an opaque `Listener` the edge made), and every connected client
(`codec.ServerSession`). The QMP commands (`blockdev.nbd.commands`) add and close
exports; the edge (`blockdev.nbd.edge`) creates sessions for accepted connections.
Closing an export ends its clients (nbd_export_close -> client_close); what QEMU
prints with error_report reaches `report`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from blockdev.nbd.codec import (
    BDRV_SECTOR_SIZE,
    NBD_MAX_BUFFER_SIZE,
    ExportDevice,
    ServerSession,
)


class Listener(Protocol):
    """The listening socket of a running server (made by the edge)."""

    def address(self) -> Any:
        """getsockname(): a unix path, or (host, port, ...)."""

    def close(self) -> None: ...


@attrs.define(kw_only=True, eq=False)
class NbdExport:
    """NBDExport: a name, the BlockBackend it serves through, and its clients."""

    name: str
    size: int
    nbdflags: int
    device: ExportDevice
    description: str | None = None
    max_transfer: int = NBD_MAX_BUFFER_SIZE
    blk: Any = None          # the export's own BlockBackend (nbd_export_new's blk_new)
    eject_blk: Any = None    # the named BlockBackend whose medium removal closes it
    clients: list[ServerSession] = attrs.Factory(list)
    on_close: Callable[[NbdExport], None] = lambda exp: None  # releases `blk`


def export_size(length: int) -> int:
    """nbd_export_new: the export's size is the node's length in whole sectors."""
    return length - length % BDRV_SECTOR_SIZE


@attrs.define(kw_only=True, eq=False)
class NbdServer:
    exports: list[NbdExport] = attrs.Factory(list)
    sessions: list[ServerSession] = attrs.Factory(list)
    listener: Listener | None = None
    tls_creds: str | None = None
    report: Callable[[str], None] = lambda text: None

    @property
    def running(self) -> bool:
        return self.listener is not None

    # -- codec.Exports -----------------------------------------------------------------------

    def find(self, name: str) -> NbdExport | None:
        """nbd_export_find."""
        for exp in self.exports:
            if exp.name == name:
                return exp
        return None

    def listed(self) -> list[NbdExport]:
        return list(self.exports)

    def attach(self, session: ServerSession, export: Any) -> None:
        exp: NbdExport = export
        exp.clients.append(session)

    # -- clients -----------------------------------------------------------------------------

    def new_session(self, on_close: Callable[[], None] = lambda: None, *,
                    deferred: bool = False) -> ServerSession:
        """nbd_accept -> nbd_client_new: a client starts negotiating (no export yet)."""
        session = ServerSession(self, tls=self.tls_creds is not None, on_close=on_close,
                                deferred=deferred)
        self.sessions.append(session)
        return session

    def flush_reports(self, session: ServerSession) -> None:
        for text in session.reports:
            self.report(text)
        session.reports.clear()

    def session_ended(self, session: ServerSession) -> None:
        """nbd_client_put's last reference: the client leaves its export."""
        session.close()
        self.flush_reports(session)
        if session in self.sessions:
            self.sessions.remove(session)
        exp = session.export
        if isinstance(exp, NbdExport) and session in exp.clients:
            exp.clients.remove(session)

    # -- exports -----------------------------------------------------------------------------

    def add(self, export: NbdExport) -> None:
        """nbd_export_set_name: the export joins the list under its name."""
        self.exports.append(export)

    def close_export(self, export: NbdExport) -> None:
        """nbd_export_close: every client is shut down, the name is dropped and the
        BlockBackend released."""
        for session in list(export.clients):
            session.close()
            self.session_ended(session)
        if export in self.exports:
            self.exports.remove(export)
            export.on_close(export)

    def close_all(self) -> None:
        """nbd_export_close_all."""
        for export in list(self.exports):
            self.close_export(export)

    def stop(self) -> None:
        """qmp_nbd_server_stop: the exports close, then the listener (nbd_server_free);
        clients still negotiating keep their connection."""
        self.close_all()
        if self.listener is not None:
            self.listener.close()
        self.listener = None
        self.tls_creds = None

    def medium_removed(self, blk: object) -> None:
        """nbd_eject_notifier: exports added by a BlockBackend's name close with it."""
        for export in list(self.exports):
            if export.eject_blk is blk:
                self.close_export(export)
