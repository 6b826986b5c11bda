"""The NBD protocol codec and the server's state, without sockets (blockdev.nbd).

Each test pins a behaviour of QEMU 2.11's server [nbd/server.c]: the function that
produces it is named in the docstring.
"""

from __future__ import annotations

import errno
import struct

import pytest

from blockdev.nbd import codec as c
from blockdev.nbd.server import NbdExport, NbdServer


class FakeDevice:
    """A bytearray export (the codec's ExportDevice)."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.flushes = 0
        self.fail: int | None = None

    def pread(self, offset: int, length: int) -> bytes:
        if self.fail:
            raise c.ExportIOError(self.fail)
        return bytes(self.data[offset:offset + length])

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        if self.fail:
            raise c.ExportIOError(self.fail)
        self.data[offset:offset + len(data)] = data

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool, fua: bool) -> None:
        self.data[offset:offset + length] = bytes(length)

    def pdiscard(self, offset: int, length: int) -> None:
        self.data[offset:offset + length] = bytes(length)

    def flush(self) -> None:
        self.flushes += 1


def make_server(size: int = 1 << 20, *, read_only: bool = False) -> tuple[NbdServer, FakeDevice]:
    server = NbdServer()
    dev = FakeDevice(size)
    server.add(NbdExport(name="disk", size=size, device=dev,
                         nbdflags=c.NBD_FLAG_READ_ONLY if read_only else 0))
    return server, dev


def out(session: c.ServerSession) -> bytes:
    return b"".join(bytes(x) for x in session.take_output())


def opt(option: int, payload: bytes = b"") -> bytes:
    return struct.pack(">QII", c.NBD_OPTS_MAGIC, option, len(payload)) + payload


def parse_reps(data: bytes) -> list[tuple[int, int, bytes]]:
    reps = []
    while data:
        magic, option, rep, length = struct.unpack_from(">QIII", data)
        assert magic == c.NBD_REP_MAGIC
        reps.append((option, rep, data[20:20 + length]))
        data = data[20 + length:]
    return reps


def go_payload(name: bytes, *infos: int) -> bytes:
    return struct.pack(">I", len(name)) + name + struct.pack(f">H{len(infos)}H", len(infos),
                                                             *infos)


def negotiated(server: NbdServer, *, structured: bool = False) -> c.ServerSession:
    s = server.new_session()
    assert out(s) == b"NBDMAGIC" + struct.pack(">QH", c.NBD_OPTS_MAGIC, 3)
    s.receive(struct.pack(">I", 3))
    if structured:
        s.receive(opt(c.NBD_OPT_STRUCTURED_REPLY))
    s.receive(opt(c.NBD_OPT_GO, go_payload(b"disk")))
    reps = parse_reps(out(s))
    assert reps[-1][1] == c.NBD_REP_ACK
    return s


def simple(data: bytes) -> tuple[int, int]:
    magic, err, handle = struct.unpack_from(">IIQ", data)
    assert magic == c.NBD_SIMPLE_REPLY_MAGIC
    return err, handle


def test_greeting_list_and_abort() -> None:
    """nbd_negotiate's greeting; NBD_OPT_LIST (one NBD_REP_SERVER per export, then
    ACK); NBD_OPT_ABORT acked, then the connection ends."""
    server, _ = make_server()
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 3) + opt(c.NBD_OPT_LIST))
    assert parse_reps(out(s)) == [(3, c.NBD_REP_SERVER, b"\0\0\0\4disk"), (3, c.NBD_REP_ACK, b"")]
    s.receive(opt(c.NBD_OPT_ABORT))
    assert parse_reps(out(s)) == [(2, c.NBD_REP_ACK, b"")]
    assert s.closed and s.reports == []


def test_go_info_replies() -> None:
    """nbd_negotiate_handle_info: NAME on request, BLOCK_SIZE (min 1 for GO without
    the request, 4096, 32M) and EXPORT always, then ACK."""
    server, _ = make_server()
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_GO, go_payload(b"disk", c.NBD_INFO_NAME)))
    reps = parse_reps(out(s))
    assert reps == [
        (7, c.NBD_REP_INFO, struct.pack(">H", 1) + b"disk"),
        (7, c.NBD_REP_INFO, struct.pack(">HIII", 3, 1, 4096, 32 << 20)),
        (7, c.NBD_REP_INFO, struct.pack(">HQH", 0, 1 << 20, c.SERVER_FLAGS)),
        (7, c.NBD_REP_ACK, b"")]
    assert s.negotiated and server.exports[0].clients == [s]


def test_info_errors() -> None:
    """nbd_negotiate_handle_info's texts: an unknown export, a bad length, and INFO
    without NBD_INFO_BLOCK_SIZE; the client may keep negotiating."""
    server, _ = make_server()
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_INFO, go_payload(b"nope")))
    assert parse_reps(out(s)) == [(6, c.NBD_REP_ERR_UNKNOWN, b"export 'nope' not present")]
    s.receive(opt(c.NBD_OPT_GO, b"\0\0"))
    assert parse_reps(out(s)) == [(7, c.NBD_REP_ERR_INVALID, b"overall request too short")]
    s.receive(opt(c.NBD_OPT_GO, struct.pack(">IH", 9, 0)))
    assert parse_reps(out(s)) == [(7, c.NBD_REP_ERR_INVALID, b"name length is incorrect")]
    s.receive(opt(c.NBD_OPT_INFO, go_payload(b"disk")))
    assert parse_reps(out(s))[-1] == (6, c.NBD_REP_ERR_BLOCK_SIZE_REQD,
                                      b"request NBD_INFO_BLOCK_SIZE to use this export")
    assert not s.closed


def test_starttls_without_creds_and_unknown_option() -> None:
    """nbd_negotiate_options: STARTTLS without tls-creds is NBD_REP_ERR_POLICY "TLS not
    configured"; an unknown option NBD_REP_ERR_UNSUP with its number and name."""
    server, _ = make_server()
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_STARTTLS) + opt(42, b"xy"))
    assert parse_reps(out(s)) == [(5, c.NBD_REP_ERR_POLICY, b"TLS not configured"),
                                  (42, c.NBD_REP_ERR_UNSUP, b"Unsupported option 0x2a (<unknown>)")]
    s.receive(opt(c.NBD_OPT_LIST, b"x"))
    assert parse_reps(out(s)) == [(3, c.NBD_REP_ERR_INVALID,
                                   b"option 'list' should have zero length")]


def test_tls_required_before_anything() -> None:
    """With tls-creds every option but STARTTLS gets NBD_REP_ERR_TLS_REQD (QEMU's text
    lacks a space); EXPORT_NAME ends the conversation."""
    server, _ = make_server()
    server.tls_creds = "tls0"
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_LIST))
    assert parse_reps(out(s)) == [(3, c.NBD_REP_ERR_TLS_REQD, b"Option 0x3not permitted before TLS")]
    s.receive(opt(c.NBD_OPT_EXPORT_NAME, b"disk"))
    assert s.closed
    assert s.reports == ["option negotiation failed: Option 0x1 not permitted before TLS"]


@pytest.mark.parametrize(("data", "report"), [
    (struct.pack(">I", 4), "option negotiation failed: Unknown client flags 0x4 received"),
    (struct.pack(">IQII", 1, 1234, 1, 0), "option negotiation failed: Bad magic received"),
    (struct.pack(">I", 1) + opt(c.NBD_OPT_EXPORT_NAME, b"x" * 257),
     "option negotiation failed: Bad length received"),
    (struct.pack(">I", 1) + opt(c.NBD_OPT_EXPORT_NAME, b"nope"),
     "option negotiation failed: export not found"),
    (struct.pack(">I", 0) + opt(c.NBD_OPT_LIST),
     "option negotiation failed: Unsupported option 0x3 (list)"),
])
def test_negotiation_failures(data: bytes, report: str) -> None:
    """nbd_negotiate_options / nbd_negotiate_handle_export_name: fatal errors drop the
    client with QEMU's message."""
    server, _ = make_server()
    s = server.new_session()
    out(s)
    s.receive(data)
    assert s.closed and s.reports == [report]


def test_export_name_reply() -> None:
    """nbd_negotiate_handle_export_name: size and flags, 124 zero bytes unless the
    client asked for NBD_FLAG_C_NO_ZEROES."""
    server, _ = make_server(read_only=True)
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_EXPORT_NAME, b"disk"))
    assert out(s) == struct.pack(">QH", 1 << 20, c.SERVER_FLAGS | c.NBD_FLAG_READ_ONLY) + bytes(124)


def test_read_write_flush_trim_zeroes() -> None:
    """nbd_trip: WRITE, READ, WRITE_ZEROES, TRIM and FLUSH reach the export; simple
    replies carry the handle; DISC ends without a reply."""
    server, dev = make_server()
    s = negotiated(server)
    s.receive(c.encode_request(c.NBD_CMD_WRITE, 7, 4096, 4) + b"abcd")
    assert simple(out(s)) == (0, 7)
    assert dev.data[4096:4100] == b"abcd"
    s.receive(c.encode_request(c.NBD_CMD_READ, 8, 4094, 8))
    reply = out(s)
    assert simple(reply) == (0, 8) and reply[16:] == b"\0\0abcd\0\0"
    s.receive(c.encode_request(c.NBD_CMD_WRITE_ZEROES, 9, 4096, 2)
              + c.encode_request(c.NBD_CMD_TRIM, 10, 4098, 1)
              + c.encode_request(c.NBD_CMD_FLUSH, 11, 0, 0))
    assert dev.data[4096:4100] == b"\0\0\0d" and dev.flushes == 1
    s.receive(c.encode_request(c.NBD_CMD_DISC, 12, 0, 0))
    assert len(out(s)) == 48 and s.closed


def test_request_split_across_receives() -> None:
    """A request and its payload may arrive in any pieces."""
    server, dev = make_server()
    s = negotiated(server)
    data = c.encode_request(c.NBD_CMD_WRITE, 1, 0, 3) + b"xyz"
    for i in range(len(data)):
        s.receive(data[i:i + 1])
    assert simple(out(s)) == (0, 1) and dev.data[:3] == b"xyz"


@pytest.mark.parametrize(("request_", "err", "report"), [
    (c.encode_request(c.NBD_CMD_READ, 1, (1 << 20) - 1, 2), c.NBD_EINVAL,
     "operation past EOF; From: 1048575, Len: 2, Size: 1048576"),
    (c.encode_request(c.NBD_CMD_WRITE, 1, 1 << 20, 1) + b"x", c.NBD_ENOSPC,
     "operation past EOF; From: 1048576, Len: 1, Size: 1048576"),
    (c.encode_request(c.NBD_CMD_WRITE_ZEROES, 1, 0, 1, flags=4), c.NBD_EINVAL,
     "unsupported flags for command write zeroes (got 0x4)"),
    (c.encode_request(9, 1, 0, 0), c.NBD_EINVAL, "invalid request type (9) received"),
])
def test_request_errors_keep_serving(request_: bytes, err: int, report: str) -> None:
    """nbd_co_receive_request's checks: the error goes back (system_errno_to_nbd_errno),
    QEMU reports it, and the client is served on."""
    server, _ = make_server()
    s = negotiated(server)
    s.receive(request_)
    assert simple(out(s)) == (err, 1)
    assert s.reports == [report] and not s.closed
    s.receive(c.encode_request(c.NBD_CMD_READ, 2, 0, 1))
    assert simple(out(s)) == (0, 2)


def test_write_to_read_only_export() -> None:
    """nbd_co_receive_request: the payload is read, then EPERM "Export is read-only"."""
    server, dev = make_server(read_only=True)
    s = negotiated(server)
    s.receive(c.encode_request(c.NBD_CMD_WRITE, 3, 0, 2) + b"hi"
              + c.encode_request(c.NBD_CMD_TRIM, 4, 0, 2))
    reply = out(s)
    assert simple(reply) == (c.NBD_EPERM, 3) and simple(reply[16:]) == (c.NBD_EPERM, 4)
    assert dev.data[:2] == b"\0\0" and not s.closed


def test_io_error_text() -> None:
    """nbd_trip: a failed read is "reading from file failed: <strerror>", EIO on the wire."""
    server, dev = make_server()
    s = negotiated(server)
    dev.fail = errno.EIO
    s.receive(c.encode_request(c.NBD_CMD_READ, 5, 0, 512))
    assert simple(out(s)) == (c.NBD_EIO, 5)
    assert s.reports == ["reading from file failed: Input/output error"]


def test_garbage_and_oversized_write() -> None:
    """A bad request magic drops the client without a reply; a WRITE longer than 32M
    is answered EINVAL, then the client is dropped (its payload was not read)."""
    server, _ = make_server()
    s = negotiated(server)
    s.receive(b"\xde\xad" * 14)
    assert out(s) == b"" and s.closed
    assert s.reports == ["Disconnect client, due to: invalid magic (got 0xdeaddead)"]
    s = negotiated(server)
    s.receive(c.encode_request(c.NBD_CMD_WRITE, 6, 0, (32 << 20) + 1))
    assert simple(out(s)) == (c.NBD_EINVAL, 6) and s.closed


def test_structured_replies() -> None:
    """2.11 negotiates NBD_OPT_STRUCTURED_REPLY (twice: "structured reply already
    negotiated"); then reads answer one OFFSET_DATA chunk, errors an ERROR chunk with
    the message, other commands a simple reply."""
    server, dev = make_server()
    s = server.new_session()
    out(s)
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_STRUCTURED_REPLY)
              + opt(c.NBD_OPT_STRUCTURED_REPLY))
    assert parse_reps(out(s)) == [(8, 1, b""), (8, c.NBD_REP_ERR_INVALID,
                                                b"structured reply already negotiated")]
    s.receive(opt(c.NBD_OPT_GO, go_payload(b"disk")))
    export_info = parse_reps(out(s))[1][2]
    assert struct.unpack(">HQH", export_info)[2] & c.NBD_FLAG_SEND_DF
    dev.data[0:2] = b"hi"
    s.receive(c.encode_request(c.NBD_CMD_READ, 1, 0, 2, flags=c.NBD_CMD_FLAG_DF))
    assert out(s) == c.chunk_header(1, 1, 1, 10) + struct.pack(">Q", 0) + b"hi"
    s.receive(c.encode_request(c.NBD_CMD_READ, 2, 1 << 20, 1))
    msg = b"operation past EOF; From: 1048576, Len: 1, Size: 1048576"
    assert out(s) == (c.chunk_header(1, c.NBD_REPLY_TYPE_ERROR, 2, 6 + len(msg))
                      + struct.pack(">IH", c.NBD_EINVAL, len(msg)) + msg)
    s.receive(c.encode_request(c.NBD_CMD_FLUSH, 3, 0, 0))
    assert simple(out(s)) == (0, 3)


def test_closing_an_export_ends_its_clients() -> None:
    """nbd_export_close: every client of the export is shut down; a client still
    negotiating is not (nbd-server-stop leaves it)."""
    server, _ = make_server()
    closed: list[str] = []
    s1 = server.new_session(on_close=lambda: closed.append("s1"))
    out(s1)
    s1.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_GO, go_payload(b"disk")))
    s2 = server.new_session(on_close=lambda: closed.append("s2"))
    server.stop()
    assert closed == ["s1"] and s1.closed and not s2.closed
    assert server.exports == [] and server.sessions == [s2]


def test_deferred_requests_wait_for_the_edge() -> None:
    """A deferred session (the edge's, for throttling) reads requests into its queue
    and runs them in order when told; nothing after a DISC is read."""
    server, dev = make_server()
    s = server.new_session(deferred=True)
    out(s)
    name = b"disk"
    s.receive(struct.pack(">I", 1) + opt(c.NBD_OPT_GO, go_payload(name)))
    out(s)
    s.receive(c.encode_request(c.NBD_CMD_WRITE, 1, 0, 2) + b"ab"
              + c.encode_request(c.NBD_CMD_READ, 2, 0, 2)
              + c.encode_request(c.NBD_CMD_DISC, 3, 0, 0)
              + c.encode_request(c.NBD_CMD_READ, 4, 0, 2))
    assert [r.handle for r in s.queue] == [1, 2, 3] and out(s) == b""
    assert [r.throttled_op for r in s.queue] == ["write", "read", None]
    s.run_next()
    assert dev.data[:2] == b"ab" and simple(out(s)) == (0, 1)
    s.run_next()
    assert out(s)[16:] == b"ab"
    s.run_next()
    assert s.closed


def test_client_hanging_up_is_reported() -> None:
    """A client that closes its socket without NBD_CMD_DISC: qio_channel_read_all's
    "Unexpected end-of-file before all bytes were read", as nbd_trip or
    nbd_negotiate_options report it."""
    server, _ = make_server()
    s = negotiated(server)
    s.eof()
    assert s.closed and s.reports == [
        "Disconnect client, due to: Unexpected end-of-file before all bytes were read"]
    s = server.new_session()
    s.eof()
    assert s.reports == ["option negotiation failed: read failed: Unexpected end-of-file "
                         "before all bytes were read"]
