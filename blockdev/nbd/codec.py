"""The NBD protocol as QEMU 2.11's server speaks it, without I/O.

Pure part of `blockdev.nbd`. `ServerSession` is one client's conversation: the edge
(`blockdev.nbd.edge`) feeds it the bytes the client sent (`receive`) and sends what
it produced (`take_output`); it calls the export it negotiated through the
`ExportDevice` Protocol, synchronously. It reproduces [nbd/server.c]:

* the fixed-newstyle greeting with NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES
  (nbd_negotiate); client flags other than FIXED_NEWSTYLE and NO_ZEROES end the
  conversation;
* the options of nbd_negotiate_options: EXPORT_NAME, LIST, ABORT, INFO, GO,
  STRUCTURED_REPLY, STARTTLS refused without tls-creds ("TLS not configured"), and
  NBD_REP_ERR_UNSUP for the rest, with QEMU's texts in the error replies;
* transmission (nbd_co_receive_request, nbd_trip): READ, WRITE, WRITE_ZEROES, TRIM,
  FLUSH and DISC, QEMU's checks (read-only export, past the end, flags, maximum
  length) and errno mapping (system_errno_to_nbd_errno), simple replies, and the
  structured replies 2.11 sends once STRUCTURED_REPLY was negotiated (OFFSET_DATA for
  reads, ERROR for failures, NONE for nothing).

What QEMU prints with error_report goes to `reports` (without the program name); the
edge hands it on. `closed` says the server ends the connection (QEMU's client_close).
A session made `deferred` queues the requests it read (`queue`) until the edge runs
them one by one (`run_next`), after waiting for the export's throttling.
"""

from __future__ import annotations

import errno as errno_mod
import os
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import attrs

from schema.jsontypes import qemu_bytes

T = TypeVar("T")

# include/block/nbd.h and nbd/nbd-internal.h
NBD_MAGIC = b"NBDMAGIC"
NBD_OPTS_MAGIC = 0x49484156454F5054
NBD_CLIENT_MAGIC = 0x0000420281861253
NBD_REP_MAGIC = 0x0003E889045565A9
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_STRUCTURED_REPLY_MAGIC = 0x668E33EF

NBD_FLAG_HAS_FLAGS = 1 << 0
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_FLUSH = 1 << 2
NBD_FLAG_SEND_FUA = 1 << 3
NBD_FLAG_SEND_TRIM = 1 << 5
NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
NBD_FLAG_SEND_DF = 1 << 7

NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_NO_ZEROES = 1 << 1
NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_C_NO_ZEROES = 1 << 1

NBD_OPT_EXPORT_NAME = 1
NBD_OPT_ABORT = 2
NBD_OPT_LIST = 3
NBD_OPT_STARTTLS = 5
NBD_OPT_INFO = 6
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8

NBD_REP_ACK = 1
NBD_REP_SERVER = 2
NBD_REP_INFO = 3
NBD_REP_ERR_UNSUP = (1 << 31) | 1
NBD_REP_ERR_POLICY = (1 << 31) | 2
NBD_REP_ERR_INVALID = (1 << 31) | 3
NBD_REP_ERR_PLATFORM = (1 << 31) | 4
NBD_REP_ERR_TLS_REQD = (1 << 31) | 5
NBD_REP_ERR_UNKNOWN = (1 << 31) | 6
NBD_REP_ERR_SHUTDOWN = (1 << 31) | 7
NBD_REP_ERR_BLOCK_SIZE_REQD = (1 << 31) | 8

NBD_INFO_EXPORT = 0
NBD_INFO_NAME = 1
NBD_INFO_DESCRIPTION = 2
NBD_INFO_BLOCK_SIZE = 3

NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_FLUSH = 3
NBD_CMD_TRIM = 4
NBD_CMD_WRITE_ZEROES = 6

NBD_CMD_FLAG_FUA = 1 << 0
NBD_CMD_FLAG_NO_HOLE = 1 << 1
NBD_CMD_FLAG_DF = 1 << 2

NBD_REPLY_FLAG_DONE = 1 << 0
NBD_REPLY_TYPE_NONE = 0
NBD_REPLY_TYPE_OFFSET_DATA = 1
NBD_REPLY_TYPE_OFFSET_HOLE = 2
NBD_REPLY_TYPE_ERROR = (1 << 15) | 1
NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

NBD_SUCCESS = 0
NBD_EPERM = 1
NBD_EIO = 5
NBD_ENOMEM = 12
NBD_EINVAL = 22
NBD_ENOSPC = 28
NBD_EOVERFLOW = 75
NBD_ESHUTDOWN = 108

NBD_DEFAULT_PORT = 10809
NBD_MAX_BUFFER_SIZE = 32 * 1024 * 1024
NBD_MAX_NAME_SIZE = 256
NBD_REQUEST_SIZE = 28
NBD_REPLY_SIZE = 16
NBD_REPLY_EXPORT_NAME_SIZE = 8 + 2 + 124
BDRV_SECTOR_SIZE = 512
PREFERRED_BLOCK = 4096  # nbd_negotiate_handle_info: hard-coded in 2.11

# nbd_negotiate: what every 2.11 export offers besides its read-only bit.
SERVER_FLAGS = (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_FLUSH
                | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES)

_OPT_NAMES = {NBD_OPT_EXPORT_NAME: "export name", NBD_OPT_ABORT: "abort",
              NBD_OPT_LIST: "list", NBD_OPT_STARTTLS: "starttls", NBD_OPT_INFO: "info",
              NBD_OPT_GO: "go", NBD_OPT_STRUCTURED_REPLY: "structured reply"}
_CMD_NAMES = {NBD_CMD_READ: "read", NBD_CMD_WRITE: "write", NBD_CMD_DISC: "disconnect",
              NBD_CMD_FLUSH: "flush", NBD_CMD_TRIM: "trim",
              NBD_CMD_WRITE_ZEROES: "write zeroes"}


def opt_lookup(opt: int) -> str:
    """nbd/common.c nbd_opt_lookup."""
    return _OPT_NAMES.get(opt, "<unknown>")


def cmd_lookup(cmd: int) -> str:
    """nbd/common.c nbd_cmd_lookup."""
    return _CMD_NAMES.get(cmd, "<unknown>")


def system_errno_to_nbd_errno(err: int) -> int:
    """nbd/server.c system_errno_to_nbd_errno."""
    if err == 0:
        return NBD_SUCCESS
    if err in (errno_mod.EPERM, errno_mod.EROFS):
        return NBD_EPERM
    if err == errno_mod.EIO:
        return NBD_EIO
    if err == errno_mod.ENOMEM:
        return NBD_ENOMEM
    if err in (errno_mod.EDQUOT, errno_mod.EFBIG, errno_mod.ENOSPC):
        return NBD_ENOSPC
    if err == errno_mod.EOVERFLOW:
        return NBD_EOVERFLOW
    if err == errno_mod.ESHUTDOWN:
        return NBD_ESHUTDOWN
    return NBD_EINVAL


def nbd_errno_to_system_errno(err: int) -> int:
    """nbd/common.c nbd_errno_to_system_errno (the client side)."""
    return {NBD_SUCCESS: 0, NBD_EPERM: errno_mod.EPERM, NBD_EIO: errno_mod.EIO,
            NBD_ENOMEM: errno_mod.ENOMEM, NBD_ENOSPC: errno_mod.ENOSPC,
            NBD_ESHUTDOWN: errno_mod.ESHUTDOWN,
            NBD_EINVAL: errno_mod.EINVAL}.get(err, errno_mod.EINVAL)


class ExportIOError(Exception):
    """A request on an export failed with `errno` (a negative return in QEMU)."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


class ExportDevice(Protocol):
    """The BlockBackend of an export (nbd_export_new's blk), as requests see it.
    Failures raise ExportIOError."""

    def pread(self, offset: int, length: int) -> bytes: ...

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None: ...

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool,
                      fua: bool) -> None: ...

    def pdiscard(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...


class Export(Protocol):
    """What a session needs of an export: its name, description, size (a multiple of
    512), flags (NBD_FLAG_READ_ONLY or 0), maximum transfer and device."""

    name: str
    description: str | None
    size: int
    nbdflags: int
    max_transfer: int
    device: ExportDevice


class Exports(Protocol):
    """The server's named exports, in the order they were added (nbd_export_find, LIST)."""

    def find(self, name: str) -> Export | None: ...

    def listed(self) -> Sequence[Export]: ...

    def attach(self, session: ServerSession, export: Export) -> None:
        """The client entered transmission on `export` (QTAILQ_INSERT_TAIL clients)."""


def greeting() -> bytes:
    """nbd_negotiate: the newstyle greeting (18 bytes)."""
    return NBD_MAGIC + struct.pack(">QH", NBD_OPTS_MAGIC,
                                   NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)


def option_reply(opt: int, rep: int, payload: bytes = b"") -> bytes:
    """nbd_negotiate_send_rep_len and its payload."""
    return struct.pack(">QIII", NBD_REP_MAGIC, opt, rep, len(payload)) + payload


def simple_reply(handle: int, error: int) -> bytes:
    """set_be_simple_reply: the header of a simple reply (`error` a system errno)."""
    return struct.pack(">IIQ", NBD_SIMPLE_REPLY_MAGIC, system_errno_to_nbd_errno(error),
                       handle)


def chunk_header(flags: int, kind: int, handle: int, length: int) -> bytes:
    """set_be_chunk: a structured reply chunk's header."""
    return struct.pack(">IHHQI", NBD_STRUCTURED_REPLY_MAGIC, flags, kind, handle, length)


def structured_error(handle: int, error: int, msg: str) -> bytes:
    """nbd_co_send_structured_error."""
    text = qemu_bytes(msg)
    return (chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, 6 + len(text))
            + struct.pack(">IH", system_errno_to_nbd_errno(error), len(text)) + text)


def encode_request(kind: int, handle: int, offset: int, length: int, flags: int = 0) -> bytes:
    """nbd/client.c nbd_send_request: a request header (the client side)."""
    return struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, flags, kind, handle, offset, length)


@attrs.frozen
class Request:
    """NBDRequest, with a write's payload; `fatal` for a stream QEMU stops reading."""

    kind: int
    flags: int
    handle: int
    offset: int
    length: int
    payload: bytes | None
    fatal: str | None = None

    @property
    def throttled_op(self) -> str | None:
        """The kind of I/O a throttle bucket counts for this request (blk_co_wait's op)."""
        return {NBD_CMD_READ: "read", NBD_CMD_WRITE: "write",
                NBD_CMD_WRITE_ZEROES: "zero"}.get(self.kind)


class _Fatal(Exception):
    """The conversation ends (QEMU's -errno from negotiation or a dropped client)."""


Output = bytes | memoryview


class ServerSession:
    """One client of the NBD server, from the greeting to the end (nbd/server.c)."""

    def __init__(self, exports: Exports, *, tls: bool = False,
                 on_close: Callable[[], None] = lambda: None, deferred: bool = False) -> None:
        self.exports = exports
        # deferred: requests wait in `queue` until the edge calls run_next (throttling)
        self.deferred = deferred
        self.queue: deque[Request] = deque()
        self._stalled = False
        self.tls = tls  # the server has tls-creds: only STARTTLS is accepted first
        self.on_close = on_close
        self.export: Export | None = None
        self.structured_reply = False
        self.closed = False
        self.negotiated = False
        self.reports: list[str] = []
        self._out: list[Output] = [greeting()]
        self._buf = bytearray()
        self._stage = "flags"
        self._myflags = SERVER_FLAGS
        self._no_zeroes = False
        self._fixed = False

    # --- the edge's side ------------------------------------------------------------------

    def take_output(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def receive(self, data: bytes | memoryview) -> None:
        """Bytes from the client; everything complete in the buffer is handled."""
        if self.closed:
            return
        self._buf += data
        try:
            while not self.closed and self._step():
                pass
        except _Fatal as err:
            if str(err):
                self.reports.append(str(err))
            self.close()

    def eof(self) -> None:
        """The client went away: nbd_read's qio_channel_read_all fails with "Unexpected
        end-of-file before all bytes were read", which QEMU reports."""
        if self.closed:
            return
        text = "Unexpected end-of-file before all bytes were read"
        if self._stage == "transmission":
            self.reports.append(f"Disconnect client, due to: {text}")
        else:
            self.reports.append(f"option negotiation failed: read failed: {text}")
        self.close()

    def close(self) -> None:
        """client_close: the connection is shut down both ways."""
        if not self.closed:
            self.closed = True
            self.on_close()

    # --- the stages -------------------------------------------------------------------------

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _step(self) -> bool:
        if self._stage == "flags":
            return self._client_flags()
        if self._stage == "options":
            return self._option()
        return self._request()

    def _client_flags(self) -> bool:
        raw = self._take(4)
        if raw is None:
            return False
        (flags,) = struct.unpack(">I", raw)
        if flags & NBD_FLAG_C_FIXED_NEWSTYLE:
            self._fixed = True
            flags &= ~NBD_FLAG_C_FIXED_NEWSTYLE
        if flags & NBD_FLAG_C_NO_ZEROES:
            self._no_zeroes = True
            flags &= ~NBD_FLAG_C_NO_ZEROES
        if flags:
            raise _Fatal(f"option negotiation failed: Unknown client flags 0x{flags:x} "
                         "received")
        self._stage = "options"
        return True

    def _option(self) -> bool:
        if len(self._buf) < 16:
            return False
        magic, opt, length = struct.unpack_from(">QII", self._buf)
        if magic != NBD_OPTS_MAGIC:
            raise _Fatal("option negotiation failed: Bad magic received")
        if length > NBD_MAX_BUFFER_SIZE:
            raise _Fatal(f"option negotiation failed: len ({length} ) is larger than max "
                         f"len ({NBD_MAX_BUFFER_SIZE})")
        if opt == NBD_OPT_EXPORT_NAME and not self.tls and length > NBD_MAX_NAME_SIZE:
            # nbd_negotiate_handle_export_name checks the length before reading the name
            raise _Fatal("option negotiation failed: Bad length received")
        if len(self._buf) < 16 + length:
            return False
        del self._buf[:16]
        payload = bytes(self._buf[:length])
        del self._buf[:length]
        self._handle_option(opt, payload)
        return True

    def _rep(self, opt: int, rep: int, payload: bytes = b"") -> None:
        self._out.append(option_reply(opt, rep, payload))

    def _rep_err(self, opt: int, rep: int, msg: str) -> None:
        """nbd_negotiate_send_rep_err."""
        self._rep(opt, rep, qemu_bytes(msg))

    def _reject_length(self, opt: int, *, fatal: bool) -> None:
        """nbd_reject_length."""
        msg = f"option '{opt_lookup(opt)}' should have zero length"
        self._rep_err(opt, NBD_REP_ERR_INVALID, msg)
        if fatal:
            raise _Fatal(f"option negotiation failed: {msg}")

    def _handle_option(self, opt: int, payload: bytes) -> None:
        length = len(payload)
        if self.tls:
            # tls-creds given: everything but STARTTLS is refused until TLS is up. The
            # emulator has no TLS channel, so a STARTTLS itself cannot go on either.
            if not self._fixed:
                raise _Fatal(f"option negotiation failed: Unsupported option 0x{opt:x}")
            if opt == NBD_OPT_STARTTLS:
                if length:
                    self._reject_length(opt, fatal=True)
                self._rep(opt, NBD_REP_ACK)
                raise _Fatal("option negotiation failed: TLS handshake failed")
            if opt == NBD_OPT_EXPORT_NAME:
                raise _Fatal(f"option negotiation failed: Option 0x{opt:x} not permitted "
                             "before TLS")
            # the missing space is QEMU's
            self._rep_err(opt, NBD_REP_ERR_TLS_REQD,
                          f"Option 0x{opt:x}not permitted before TLS")
            if opt == NBD_OPT_ABORT:
                raise _Fatal("")
            return
        if not self._fixed:
            if opt == NBD_OPT_EXPORT_NAME:
                self._export_name(payload)
                return
            raise _Fatal(f"option negotiation failed: Unsupported option 0x{opt:x} "
                         f"({opt_lookup(opt)})")
        if opt == NBD_OPT_LIST:
            if length:
                self._reject_length(opt, fatal=False)
                return
            for export in self.exports.listed():
                name = qemu_bytes(export.name)
                desc = qemu_bytes(export.description or "")
                self._rep(opt, NBD_REP_SERVER, struct.pack(">I", len(name)) + name + desc)
            self._rep(opt, NBD_REP_ACK)
        elif opt == NBD_OPT_ABORT:
            self._rep(opt, NBD_REP_ACK)
            raise _Fatal("")
        elif opt == NBD_OPT_EXPORT_NAME:
            self._export_name(payload)
        elif opt in (NBD_OPT_INFO, NBD_OPT_GO):
            self._info(opt, payload)
        elif opt == NBD_OPT_STARTTLS:
            if length:
                self._reject_length(opt, fatal=False)
            else:
                self._rep_err(opt, NBD_REP_ERR_POLICY, "TLS not configured")
        elif opt == NBD_OPT_STRUCTURED_REPLY:
            if length:
                self._reject_length(opt, fatal=False)
            elif self.structured_reply:
                self._rep_err(opt, NBD_REP_ERR_INVALID, "structured reply already negotiated")
            else:
                self._rep(opt, NBD_REP_ACK)
                self.structured_reply = True
                self._myflags |= NBD_FLAG_SEND_DF
        else:
            self._rep_err(opt, NBD_REP_ERR_UNSUP,
                          f"Unsupported option 0x{opt:x} ({opt_lookup(opt)})")

    def _export_name(self, payload: bytes) -> None:
        """nbd_negotiate_handle_export_name: no error reply exists, so a missing
        export ends the conversation."""
        export = self.exports.find(payload.decode("utf-8", "surrogateescape"))
        if export is None:
            raise _Fatal("option negotiation failed: export not found")
        reply = struct.pack(">QH", export.size, export.nbdflags | self._myflags)
        if not self._no_zeroes:
            reply += bytes(NBD_REPLY_EXPORT_NAME_SIZE - 10)
        self._out.append(reply)
        self._enter(export)

    def _info(self, opt: int, payload: bytes) -> None:
        """nbd_negotiate_handle_info (NBD_OPT_INFO and NBD_OPT_GO)."""
        length = len(payload)
        msg = None
        if length < 6:
            msg = "overall request too short"
        else:
            (namelen,) = struct.unpack_from(">I", payload)
            rest = length - 4
            if namelen > rest - 2 or (rest - namelen) % 2:
                msg = "name length is incorrect"
            elif namelen >= NBD_MAX_NAME_SIZE + 1:
                msg = "name too long for qemu"
            else:
                name = payload[4:4 + namelen]
                (requests,) = struct.unpack_from(">H", payload, 4 + namelen)
                rest -= namelen + 2
                if requests != rest // 2:
                    msg = "incorrect number of  requests for overall length"  # sic
        if msg is not None:
            self._rep_err(opt, NBD_REP_ERR_INVALID, msg)
            return
        wanted = struct.unpack_from(f">{requests}H", payload, 6 + namelen)
        sendname = NBD_INFO_NAME in wanted
        blocksize = NBD_INFO_BLOCK_SIZE in wanted
        text = name.decode("utf-8", "surrogateescape")
        export = self.exports.find(text)
        if export is None:
            self._rep_err(opt, NBD_REP_ERR_UNKNOWN, f"export '{text}' not present")
            return
        if sendname:
            self._rep(opt, NBD_REP_INFO, struct.pack(">H", NBD_INFO_NAME) + name)
        if export.description:
            self._rep(opt, NBD_REP_INFO,
                      struct.pack(">H", NBD_INFO_DESCRIPTION) + qemu_bytes(export.description))
        minimum = BDRV_SECTOR_SIZE if opt == NBD_OPT_INFO or blocksize else 1
        maximum = min(export.max_transfer, NBD_MAX_BUFFER_SIZE)
        self._rep(opt, NBD_REP_INFO, struct.pack(">HIII", NBD_INFO_BLOCK_SIZE, minimum,
                                                 PREFERRED_BLOCK, maximum))
        self._rep(opt, NBD_REP_INFO, struct.pack(">HQH", NBD_INFO_EXPORT, export.size,
                                                 export.nbdflags | self._myflags))
        if opt == NBD_OPT_INFO and not blocksize:
            self._rep_err(opt, NBD_REP_ERR_BLOCK_SIZE_REQD,
                          "request NBD_INFO_BLOCK_SIZE to use this export")
            return
        self._rep(opt, NBD_REP_ACK)
        if opt == NBD_OPT_GO:
            self._enter(export)

    def _enter(self, export: Export) -> None:
        self.export = export
        self.negotiated = True
        self._stage = "transmission"
        self.exports.attach(self, export)

    # --- transmission -----------------------------------------------------------------------

    def _request(self) -> bool:
        """nbd_co_receive_request: one request (and a write's payload) off the stream."""
        buf = self._buf
        if self._stalled or len(buf) < NBD_REQUEST_SIZE:
            return False
        magic, flags, kind, handle, offset, length = struct.unpack_from(">IHHQQI", buf)
        if magic != NBD_REQUEST_MAGIC:
            self.queue.append(Request(kind=-1, flags=0, handle=0, offset=0, length=0,
                                      payload=None, fatal=f"Disconnect client, due to: "
                                      f"invalid magic (got 0x{magic:x})"))
            self._stalled = True
            return self._run_now()
        payload: bytes | None = None
        if kind == NBD_CMD_WRITE and length <= NBD_MAX_BUFFER_SIZE:
            if len(buf) < NBD_REQUEST_SIZE + length:
                return False
            with memoryview(buf) as whole:
                payload = whole[NBD_REQUEST_SIZE:NBD_REQUEST_SIZE + length].tobytes()
            del buf[:NBD_REQUEST_SIZE + length]
        else:
            del buf[:NBD_REQUEST_SIZE]
        request = Request(kind=kind, flags=flags, handle=handle, offset=offset,
                          length=length, payload=payload)
        self.queue.append(request)
        if kind == NBD_CMD_DISC or (kind == NBD_CMD_WRITE and payload is None):
            self._stalled = True  # nothing after this is read
        return self._run_now()

    def _run_now(self) -> bool:
        if not self.deferred:
            while self.queue and not self.closed:
                self.run_next()
        return not self._stalled

    def run_next(self) -> None:
        """nbd_trip for the oldest request read (the edge calls it when a deferred
        request may go: after its throttling wait)."""
        try:
            self._run(self.queue.popleft())
        except _Fatal as err:
            if str(err):
                self.reports.append(str(err))
            self.close()

    def _run(self, request: Request) -> None:
        kind, flags, handle = request.kind, request.flags, request.handle
        offset, length, payload = request.offset, request.length, request.payload
        if request.fatal is not None:
            raise _Fatal(request.fatal)
        if kind == NBD_CMD_DISC:
            raise _Fatal("")  # no reply, whatever the other fields say
        export = self.export
        assert export is not None
        try:
            self._check(export, kind, flags, offset, length)
            data = self._execute(export.device, kind, flags, offset, length, payload)
        except _Failed as failure:
            self.reports.append(failure.msg)
            if self.structured_reply:
                self._out.append(structured_error(handle, failure.errno, failure.msg))
            else:
                self._out.append(simple_reply(handle, failure.errno))
            if kind == NBD_CMD_WRITE and payload is None:
                # the payload was never read: the stream cannot be followed any more
                raise _Fatal("Disconnect client, due to: Request handling failed in "
                             "intermediate state") from None
            return
        if self.structured_reply and kind == NBD_CMD_READ:
            if data:
                self._out.append(chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                                              handle, 8 + len(data))
                                 + struct.pack(">Q", offset))
                self._out.append(data)
            else:
                self._out.append(chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
                                              handle, 0))
        else:
            self._out.append(simple_reply(handle, 0))
            if data:
                self._out.append(data)

    def _check(self, export: Export, kind: int, flags: int, offset: int,
               length: int) -> None:
        """The sanity checks of nbd_co_receive_request, in QEMU's order."""
        if kind in (NBD_CMD_READ, NBD_CMD_WRITE) and length > NBD_MAX_BUFFER_SIZE:
            raise _Failed(errno_mod.EINVAL, f"len ({length} ) is larger than max len "
                          f"({NBD_MAX_BUFFER_SIZE})")
        if export.nbdflags & NBD_FLAG_READ_ONLY and kind in (
                NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_CMD_TRIM):
            raise _Failed(errno_mod.EROFS, "Export is read-only")
        if offset > export.size or offset + length > export.size:
            raise _Failed(errno_mod.ENOSPC if kind in (NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES)
                          else errno_mod.EINVAL,
                          f"operation past EOF; From: {offset}, Len: {length}, "
                          f"Size: {export.size}")
        valid = NBD_CMD_FLAG_FUA
        if kind == NBD_CMD_READ and self.structured_reply:
            valid |= NBD_CMD_FLAG_DF
        elif kind == NBD_CMD_WRITE_ZEROES:
            valid |= NBD_CMD_FLAG_NO_HOLE
        if flags & ~valid:
            raise _Failed(errno_mod.EINVAL, f"unsupported flags for command "
                          f"{cmd_lookup(kind)} (got 0x{flags:x})")

    @staticmethod
    def _execute(device: ExportDevice, kind: int, flags: int, offset: int, length: int,
                 payload: bytes | None) -> bytes | None:
        """nbd_trip's switch: the request on the export's BlockBackend."""
        fua = bool(flags & NBD_CMD_FLAG_FUA)
        if kind == NBD_CMD_READ:
            if fua:
                _attempt(device.flush, "flush failed")
            return _attempt(lambda: device.pread(offset, length), "reading from file failed")
        if kind == NBD_CMD_WRITE:
            assert payload is not None
            _attempt(lambda: device.pwrite(offset, payload, fua=fua), "writing to file failed")
        elif kind == NBD_CMD_WRITE_ZEROES:
            may_unmap = not flags & NBD_CMD_FLAG_NO_HOLE
            _attempt(lambda: device.pwrite_zeroes(offset, length, may_unmap=may_unmap, fua=fua),
                     "writing to file failed")
        elif kind == NBD_CMD_FLUSH:
            _attempt(device.flush, "flush failed")
        elif kind == NBD_CMD_TRIM:
            _attempt(lambda: device.pdiscard(offset, length), "discard failed")
        else:
            raise _Failed(errno_mod.EINVAL, f"invalid request type ({kind}) received")
        return None


class _Failed(Exception):
    """A request answered with an error (a negative ret with local_err in nbd_trip)."""

    def __init__(self, errno: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = errno
        self.msg = msg


def _attempt(fn: Callable[[], T], what: str) -> T:
    """error_setg_errno(&local_err, -ret, what): the message carries strerror."""
    try:
        return fn()
    except ExportIOError as err:
        raise _Failed(err.errno, f"{what}: {os.strerror(err.errno)}") from None
