"""The client side of NBD: what the `nbd` block driver connects with.

I/O module of `blockdev.nbd` (blocking sockets) [nbd/client.c nbd_receive_negotiate,
nbd_opt_go, nbd_receive_query_exports; block/nbd-client.c nbd_client_init,
nbd_co_request; block/nbd.c nbd_establish_connection]. `NbdClient.connect` opens
the connection as QEMU's driver does: the socket (QEMU's connect errors), the
fixed-newstyle negotiation asking for structured replies, NBD_OPT_GO with
NBD_INFO_BLOCK_SIZE (and the LIST / EXPORT_NAME fallback of servers without GO); its
requests are one at a time, each split at the server's maximum block size. Failures
of the negotiation raise GenericError with QEMU's text; failed requests raise
`codec.ExportIOError` with the system errno the server's NBD error maps to
(nbd_errno_to_system_errno).

The client is synchronous, as the block layer's requests are. A server in another
process is reached over a blocking socket (`SocketTransport`); the emulator's own
server, whose loop is the one the client runs on, through `LoopbackTransport`: the
same bytes, fed to a session of that server directly.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from typing import Any, Protocol

from blockdev.nbd import codec as c
from schema.errors import GenericError
from schema.jsontypes import qemu_bytes

CONNECT_TIMEOUT = 10.0


def _rep_lookup(rep: int) -> str:
    """nbd/common.c nbd_rep_lookup."""
    return {c.NBD_REP_ACK: "ack", c.NBD_REP_SERVER: "server", c.NBD_REP_INFO: "info",
            c.NBD_REP_ERR_UNSUP: "unsupported", c.NBD_REP_ERR_POLICY: "denied by policy",
            c.NBD_REP_ERR_INVALID: "invalid", c.NBD_REP_ERR_PLATFORM: "platform lacks support",
            c.NBD_REP_ERR_TLS_REQD: "TLS required", c.NBD_REP_ERR_UNKNOWN: "export unknown",
            c.NBD_REP_ERR_SHUTDOWN: "server shutting down",
            c.NBD_REP_ERR_BLOCK_SIZE_REQD: "block size required"}.get(rep, "<unknown>")


def connect_socket(server: dict[str, Any]) -> socket.socket:
    """socket_connect: inet_connect_saddr / unix_connect_saddr with their texts."""
    if server.get("type") == "unix":
        path = str(server.get("path", ""))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise GenericError(f"Failed to connect socket {path}: {e.strerror}") from None
        return sock
    host, port = server.get("host"), server.get("port")
    if host is None or port is None:
        raise GenericError("host and/or port not specified")
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise GenericError(f"address resolution failed for {host}:{port}: {e.strerror}") \
            from None
    last: OSError | None = None
    for fam, kind, proto, _canon, addr in infos:
        sock = socket.socket(fam, kind, proto)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(addr)
        except OSError as e:
            sock.close()
            last = e
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    strerror = last.strerror if last is not None and last.strerror else "Connection refused"
    raise GenericError(f"Failed to connect socket: {strerror}")


class Transport(Protocol):
    def sendall(self, data: bytes | memoryview) -> None: ...

    def recv(self, n: int) -> bytes:
        """Up to `n` bytes; b"" at the end of the stream."""
        ...

    def close(self) -> None: ...


class SocketTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendall(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def close(self) -> None:
        self.sock.close()


class LoopbackTransport:
    """A session of a server in this process: what the client sends is handled at
    once, and its replies wait in a buffer for the client to read."""

    def __init__(self, session: c.ServerSession, ended: Any) -> None:
        self.session = session
        self.ended = ended  # the server forgets the session (NbdServer.session_ended)
        self.pending = bytearray(b"".join(bytes(x) for x in session.take_output()))

    def sendall(self, data: bytes | memoryview) -> None:
        if self.session.closed:
            raise OSError(errno_mod.EPIPE, os.strerror(errno_mod.EPIPE))
        self.session.receive(data)
        for chunk in self.session.take_output():
            self.pending += chunk

    def recv(self, n: int) -> bytes:
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def close(self) -> None:
        self.session.eof()
        self.ended(self.session)


class NbdClient:
    """One negotiated connection to an export (NBDClientSession)."""

    def __init__(self, transport: Transport) -> None:
        self.sock = transport
        self.size = 0
        self.flags = 0
        self.structured_reply = False
        self.min_block = 1
        self.max_block = c.NBD_MAX_BUFFER_SIZE
        self._handle = 0

    @classmethod
    def connect(cls, server: dict[str, Any], export: str | None,
                transport: Transport | None = None) -> NbdClient:
        """nbd_establish_connection + nbd_client_init (`transport`: already connected)."""
        client = cls(transport if transport is not None else
                     SocketTransport(connect_socket(server)))
        try:
            client._negotiate(export)
        except GenericError:
            client.sock.close()
            raise
        return client

    # -- negotiation (nbd_receive_negotiate) ------------------------------------------------

    def _read(self, n: int, what: str) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError as e:
                raise GenericError(f"{what}: {e.strerror}") from None
            if not chunk:
                raise GenericError(f"{what}: Unexpected end-of-file before all bytes were read")
            buf += chunk
        return bytes(buf)

    def _option(self, opt: int, payload: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">QII", c.NBD_OPTS_MAGIC, opt, len(payload)) + payload)

    def _reply(self, opt: int) -> tuple[int, bytes]:
        """nbd_receive_option_reply + nbd_handle_reply_err's texts; (type, payload), or
        NBD_REP_ERR_UNSUP for the caller to fall back."""
        head = self._read(20, "failed to read option reply")
        magic, ropt, rep, length = struct.unpack(">QIII", head)
        if magic != c.NBD_REP_MAGIC:
            raise GenericError("Unexpected option reply magic")
        if ropt != opt:
            raise GenericError(f"Unexpected option type {ropt:x} expected {opt:x}")
        payload = self._read(length, "failed to read option reply payload") if length else b""
        if not rep & (1 << 31) or rep == c.NBD_REP_ERR_UNSUP:
            return rep, payload
        name = c.opt_lookup(opt)
        texts = {
            c.NBD_REP_ERR_POLICY: f"Denied by server for option {opt:x} ({name})",
            c.NBD_REP_ERR_INVALID: f"Invalid data length for option {opt:x} ({name})",
            c.NBD_REP_ERR_PLATFORM: f"Server lacks support for option {opt:x} ({name})",
            c.NBD_REP_ERR_TLS_REQD: f"TLS negotiation required before option {opt:x} ({name})",
            c.NBD_REP_ERR_UNKNOWN: "Requested export not available",
            c.NBD_REP_ERR_SHUTDOWN: f"Server shutting down before option {opt:x} ({name})",
            c.NBD_REP_ERR_BLOCK_SIZE_REQD:
                f"Server requires INFO_BLOCK_SIZE for option {opt:x} ({name})"}
        raise GenericError(texts.get(
            rep, f"Unknown error code when asking for option {opt:x} ({name})"))

    def _negotiate(self, export: str | None) -> None:
        head = self._read(8, "Failed to read data")
        if head != c.NBD_MAGIC:
            raise GenericError("Invalid magic received")
        (magic,) = struct.unpack(">Q", self._read(8, "Failed to read magic"))
        if magic == c.NBD_CLIENT_MAGIC:
            if export:
                raise GenericError("Server does not support export names")
            self.size, oldflags = struct.unpack(">QI", self._read(12, "Failed to read export length"))
            self.flags = oldflags & 0xFFFF
            self._read(124, "Failed to read reserved block")
            return
        if magic != c.NBD_OPTS_MAGIC:
            raise GenericError("Bad magic received")
        (gflags,) = struct.unpack(">H", self._read(2, "Failed to read server flags"))
        fixed = bool(gflags & c.NBD_FLAG_FIXED_NEWSTYLE)
        zeroes = not gflags & c.NBD_FLAG_NO_ZEROES
        cflags = (c.NBD_FLAG_C_FIXED_NEWSTYLE if fixed else 0) | \
                 (0 if zeroes else c.NBD_FLAG_C_NO_ZEROES)
        self.sock.sendall(struct.pack(">I", cflags))
        name = qemu_bytes(export or "")
        if fixed:
            self._option(c.NBD_OPT_STRUCTURED_REPLY)
            rep, _ = self._reply(c.NBD_OPT_STRUCTURED_REPLY)
            self.structured_reply = rep == c.NBD_REP_ACK
            if self._go(name):
                return
            self._query_exports(name)
        self._option(c.NBD_OPT_EXPORT_NAME, name)
        self.size, self.flags = struct.unpack(">QH", self._read(10, "Failed to read export length"))
        if zeroes:
            self._read(124, "Failed to read reserved block")

    def _go(self, name: bytes) -> bool:
        """nbd_opt_go: False if the server lacks NBD_OPT_GO."""
        self._option(c.NBD_OPT_GO, struct.pack(">I", len(name)) + name
                     + struct.pack(">HH", 1, c.NBD_INFO_BLOCK_SIZE))
        have_export = False
        while True:
            rep, payload = self._reply(c.NBD_OPT_GO)
            if rep == c.NBD_REP_ERR_UNSUP:
                return False
            if rep == c.NBD_REP_ACK:
                if not have_export:
                    raise GenericError("broken server omitted NBD_INFO_EXPORT")
                return True
            if rep != c.NBD_REP_INFO:
                raise GenericError(f"unexpected reply type {rep:x} ({_rep_lookup(rep)}), "
                                   f"expected {c.NBD_REP_INFO:x}")
            (kind,) = struct.unpack_from(">H", payload)
            if kind == c.NBD_INFO_EXPORT and len(payload) == 12:
                self.size, self.flags = struct.unpack_from(">QH", payload, 2)
                have_export = True
            elif kind == c.NBD_INFO_BLOCK_SIZE and len(payload) == 14:
                self.min_block, _pref, self.max_block = struct.unpack_from(">III", payload, 2)

    def _query_exports(self, name: bytes) -> None:
        """nbd_receive_query_exports: LIST, for a better message than EXPORT_NAME's."""
        self._option(c.NBD_OPT_LIST)
        found = False
        while True:
            rep, payload = self._reply(c.NBD_OPT_LIST)
            if rep == c.NBD_REP_ERR_UNSUP:
                return  # the server cannot list: try the name anyway
            if rep == c.NBD_REP_ACK:
                break
            (length,) = struct.unpack_from(">I", payload)
            found = found or payload[4:4 + length] == name
        if not found:
            self._option(c.NBD_OPT_ABORT)
            raise GenericError(f"No export with name '{name.decode()}' available")

    # -- transmission (nbd_co_request) ------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return bool(self.flags & c.NBD_FLAG_READ_ONLY)

    def _request(self, kind: int, offset: int, length: int, data: bytes | memoryview = b"",
                 flags: int = 0) -> bytes:
        self._handle += 1
        handle = self._handle
        try:
            self.sock.sendall(c.encode_request(kind, handle, offset, length, flags))
            if data:
                self.sock.sendall(data)
            return self._receive_reply(kind, handle, offset, length)
        except OSError as e:
            raise c.ExportIOError(e.errno or errno_mod.EIO) from None

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise c.ExportIOError(errno_mod.EIO)
            buf += chunk
        return bytes(buf)

    def _receive_reply(self, kind: int, handle: int, offset: int, length: int) -> bytes:
        """nbd_co_receive_reply: a simple reply, or the chunks of a structured one
        (OFFSET_DATA placed at its offset in the request, an error chunk raised)."""
        head = self._recv_exact(4)
        (magic,) = struct.unpack(">I", head)
        if magic == c.NBD_SIMPLE_REPLY_MAGIC:
            err, rhandle = struct.unpack(">IQ", self._recv_exact(12))
            if rhandle != handle:
                raise c.ExportIOError(errno_mod.EIO)
            if err:
                raise c.ExportIOError(c.nbd_errno_to_system_errno(err))
            return self._recv_exact(length) if kind == c.NBD_CMD_READ else b""
        if magic != c.NBD_STRUCTURED_REPLY_MAGIC:
            raise c.ExportIOError(errno_mod.EIO)
        out = bytearray(length) if kind == c.NBD_CMD_READ else bytearray()
        while True:
            flags, rtype, rhandle, clen = struct.unpack(">HHQI", self._recv_exact(16))
            payload = self._recv_exact(clen)
            if rhandle != handle:
                raise c.ExportIOError(errno_mod.EIO)
            if rtype == c.NBD_REPLY_TYPE_OFFSET_DATA:
                (off,) = struct.unpack_from(">Q", payload)
                pos = off - offset
                out[pos:pos + clen - 8] = payload[8:]
            elif rtype & (1 << 15):
                (err,) = struct.unpack_from(">I", payload)
                raise c.ExportIOError(c.nbd_errno_to_system_errno(err))
            if flags & c.NBD_REPLY_FLAG_DONE:
                return bytes(out)
            (magic,) = struct.unpack(">I", self._recv_exact(4))
            if magic != c.NBD_STRUCTURED_REPLY_MAGIC:
                raise c.ExportIOError(errno_mod.EIO)

    def pread(self, offset: int, length: int) -> bytes:
        parts = []
        end = offset + length
        while offset < end:
            n = min(self.max_block, end - offset)
            parts.append(self._request(c.NBD_CMD_READ, offset, n))
            offset += n
        return b"".join(parts)

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        view = memoryview(data)
        while view:
            n = min(self.max_block, len(view))
            self._request(c.NBD_CMD_WRITE, offset, n, view[:n],
                          c.NBD_CMD_FLAG_FUA if fua else 0)
            offset += n
            view = view[n:]

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        if not self.flags & c.NBD_FLAG_SEND_WRITE_ZEROES:
            raise c.ExportIOError(errno_mod.ENOTSUP)
        self._request(c.NBD_CMD_WRITE_ZEROES, offset, length, b"",
                      0 if may_unmap else c.NBD_CMD_FLAG_NO_HOLE)

    def pdiscard(self, offset: int, length: int) -> None:
        if self.flags & c.NBD_FLAG_SEND_TRIM:
            self._request(c.NBD_CMD_TRIM, offset, length)

    def flush(self) -> None:
        if self.flags & c.NBD_FLAG_SEND_FLUSH:
            self._request(c.NBD_CMD_FLUSH, 0, 0)

    def close(self) -> None:
        """nbd_client_close: NBD_CMD_DISC, then the socket."""
        try:
            self.sock.sendall(c.encode_request(c.NBD_CMD_DISC, 0, 0, 0))
        except OSError:
            pass
        self.sock.close()


def list_exports(server: dict[str, Any]) -> list[tuple[str, str]]:
    """NBD_OPT_LIST (what `qemu-nbd --list` starts with): (name, description) pairs."""
    client = NbdClient(SocketTransport(connect_socket(server)))
    try:
        client._read(18, "Failed to read data")
        client.sock.sendall(struct.pack(">I", c.NBD_FLAG_C_FIXED_NEWSTYLE | c.NBD_FLAG_C_NO_ZEROES))
        client._option(c.NBD_OPT_LIST)
        out = []
        while True:
            rep, payload = client._reply(c.NBD_OPT_LIST)
            if rep == c.NBD_REP_ACK:
                break
            (n,) = struct.unpack_from(">I", payload)
            out.append((payload[4:4 + n].decode(), payload[4 + n:].decode()))
        client._option(c.NBD_OPT_ABORT)
        return out
    finally:
        client.sock.close()


