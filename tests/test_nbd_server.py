"""The NBD server over real sockets, with Debian's own NBD clients (qemu-io, qemu-img,
qemu-nbd) and a raw socket, while the emulator runs in the same trio run.

These tests run on the real clock (the tools are real processes); they never sleep
and assert nothing about time. QEMU behaviours pinned: nbd/server.c (negotiation,
requests, errors) and blockdev-nbd.c (the commands), block.md §3.11.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from blockdev.nbd import codec as c
from blockdev.nbd.server import NbdServer
from tests.emulator import build_from_argv, mock_clock, qmp_session
from vmm.vm import Vm

QEMU_IO = shutil.which("qemu-io")
QEMU_NBD = shutil.which("qemu-nbd")
QEMU_IMG = shutil.which("qemu-img")
needs_tools = pytest.mark.skipif(not (QEMU_IO and QEMU_NBD and QEMU_IMG),
                                 reason="qemu-utils missing")

class Emu:
    """A running emulator: QMP commands by name, and its NBD server's state."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.dispatcher, self.session = qmp_session(vm)

    def __call__(self, command: str, **args: Any) -> Any:
        return self.dispatcher.execute(self.session, {"execute": command, "arguments": args})

    @property
    def server(self) -> NbdServer:
        return self.vm.nbd.server


@asynccontextmanager
async def emulator(argv: list[str]) -> AsyncIterator[Emu]:
    """An emulator built from `argv`, its background tasks on this test's nursery."""
    built = build_from_argv(["-machine", "none", "-nodefaults", "--emu-strict", *argv],
                            mock_clock())
    emu = Emu(built.vm)
    built.start()
    try:
        async with trio.open_nursery() as nursery:
            built.vm.machine.tasks.attach(nursery.start_soon)
            yield emu
            emu("nbd-server-stop")
            nursery.cancel_scope.cancel()
    finally:
        built.vm.close()


async def run(*argv: str, check: bool = True) -> str:
    result = await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True,
                                    check=False)
    text = (result.stdout + result.stderr).decode()
    if check:
        assert result.returncode == 0, text
    return text


def unix_start(qmp: Emu, sock: Path) -> None:
    reply = qmp("nbd-server-start", addr={"type": "unix", "data": {"path": str(sock)}})
    assert reply == {"return": {}}, reply


N_CLIENTS = 20
NULL_DRIVES = ["-drive", "driver=null-co,size=4M,if=none,id=drive0",
               "-drive", "driver=null-co,size=1M,if=none,id=ro0,read-only=on"]


@needs_tools
async def test_qemu_nbd_lists_exports(tmp_path: Path) -> None:
    """`qemu-nbd --list` sees every export with its size and read-only flag
    (NBD_OPT_LIST then NBD_OPT_INFO/GO: nbd_negotiate_handle_list/_info)."""
    sock = tmp_path / "nbd.sock"
    async with emulator(NULL_DRIVES) as qmp:
        unix_start(qmp, sock)
        assert qmp("nbd-server-add", device="drive0", writable=True) == {"return": {}}
        assert qmp("nbd-server-add", device="ro0") == {"return": {}}
        text = await run(str(QEMU_NBD), "-L", "-k", str(sock))
    # 2.11's export flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM,
    # SEND_WRITE_ZEROES, and SEND_DF once structured replies are negotiated.
    assert text == (
        "exports available: 2\n"
        " export: 'drive0'\n  size:  4194304\n"
        "  flags: 0xed ( flush fua trim zeroes df )\n"
        "  min block: 512\n  opt block: 4096\n  max block: 33554432\n"
        " export: 'ro0'\n  size:  1048576\n"
        "  flags: 0xef ( readonly flush fua trim zeroes df )\n"
        "  min block: 512\n  opt block: 4096\n  max block: 33554432\n")


@needs_tools
async def test_reads_writes_and_read_only(tmp_path: Path) -> None:
    """qemu-io over nbd+unix: reads of a null-co export give zeros, writes, zero writes,
    discards and flushes go through a writable export; a read-only one is advertised
    read-only (NBD_FLAG_READ_ONLY) and still serves reads."""
    sock = tmp_path / "nbd.sock"
    async with emulator(NULL_DRIVES) as qmp:
        unix_start(qmp, sock)
        qmp("nbd-server-add", device="drive0", writable=True)
        qmp("nbd-server-add", device="ro0")
        url = f"nbd+unix:///drive0?socket={sock}"
        text = await run(str(QEMU_IO), "-f", "raw", "-c", "read -P 0 1M 64k",
                         "-c", "write -P 0x5a 0 4k", "-c", "flush",
                         "-c", "write -z 8k 4k", "-c", "discard 64k 64k", url)
        assert "read 65536/65536 bytes at offset 1048576" in text
        assert "wrote 4096/4096 bytes at offset 0" in text
        assert "discard 65536/65536 bytes at offset 65536" in text
        ro = f"nbd+unix:///ro0?socket={sock}"
        # qemu-io itself refuses to open a read-only export for writing (the server's
        # own answer to a write is in test_garbage_and_past_the_end)
        text = await run(str(QEMU_IO), "-f", "raw", "-c", "write -P 1 0 512", ro,
                         check=False)
        assert "Could not open image: Permission denied" in text, text
        text = await run(str(QEMU_IO), "-r", "-f", "raw", "-c", "read 0 512", ro)
        assert "read 512/512 bytes at offset 0" in text


@needs_tools
async def test_unknown_export_and_tcp(tmp_path: Path) -> None:
    """Over TCP on 127.0.0.1: an unknown export name is NBD_REP_ERR_UNKNOWN ("export
    '%s' not present"), which QEMU's client reports as "Requested export not
    available"; the server then serves the next client."""
    async with emulator(NULL_DRIVES) as qmp:
        reply = qmp("nbd-server-start", addr={"type": "inet",
                                              "data": {"host": "127.0.0.1", "port": "0"}})
        assert reply == {"return": {}}
        qmp("nbd-server-add", device="drive0")
        server = qmp.server
        port = server.listener.address()[1]
        text = await run(str(QEMU_IO), "-r", "-f", "raw", "-c", "read 0 512",
                         f"nbd://127.0.0.1:{port}/nope", check=False)
        assert "Requested export not available" in text, text
        text = await run(str(QEMU_IO), "-r", "-f", "raw", "-c", "read 0 512",
                         f"nbd://127.0.0.1:{port}/drive0")
        assert "read 512/512 bytes" in text


async def _connect(sock: Path) -> trio.SocketStream:
    return await trio.open_unix_socket(str(sock))


async def _read_exactly(stream: trio.SocketStream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


async def _negotiate(stream: trio.SocketStream, name: bytes) -> None:
    assert len(await _read_exactly(stream, 18)) == 18
    payload = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    await stream.send_all(struct.pack(">IQII", 1, c.NBD_OPTS_MAGIC, c.NBD_OPT_GO,
                                      len(payload)) + payload)
    while True:
        _magic, _opt, rep, length = struct.unpack(">QIII", await _read_exactly(stream, 20))
        await _read_exactly(stream, length)
        if rep == c.NBD_REP_ACK:
            return


async def test_garbage_and_past_the_end(tmp_path: Path) -> None:
    """A client sending garbage is dropped (nbd_negotiate_options: "Bad magic
    received"; in transmission "invalid magic"), a read past the end is EINVAL, a
    write past it ENOSPC and a write to a read-only export EPERM ("Export is
    read-only") (nbd_co_receive_request); the clients are served on."""
    sock = tmp_path / "nbd.sock"
    async with emulator(NULL_DRIVES) as qmp:
        unix_start(qmp, sock)
        qmp("nbd-server-add", device="drive0", writable=True)
        server = qmp.server
        bad = await _connect(sock)
        await _read_exactly(bad, 18)
        await bad.send_all(b"\x00\x00\x00\x01" + b"garbage!" * 4)
        assert await _read_exactly(bad, 1) == b""  # the server hung up
        good = await _connect(sock)
        await _negotiate(good, b"drive0")
        await good.send_all(c.encode_request(c.NBD_CMD_READ, 1, 4 << 20, 512))
        reply = await _read_exactly(good, 16)
        assert struct.unpack(">IIQ", reply) == (c.NBD_SIMPLE_REPLY_MAGIC, c.NBD_EINVAL, 1)
        await good.send_all(c.encode_request(c.NBD_CMD_WRITE, 2, (4 << 20) - 1, 2) + b"xy")
        reply = await _read_exactly(good, 16)
        assert struct.unpack(">IIQ", reply) == (c.NBD_SIMPLE_REPLY_MAGIC, c.NBD_ENOSPC, 2)
        await good.send_all(c.encode_request(c.NBD_CMD_READ, 3, 0, 512))
        reply = await _read_exactly(good, 16 + 512)
        assert reply[:16] == struct.pack(">IIQ", c.NBD_SIMPLE_REPLY_MAGIC, 0, 3)
        qmp("nbd-server-add", device="ro0")
        ro = await _connect(sock)
        await _negotiate(ro, b"ro0")
        await ro.send_all(c.encode_request(c.NBD_CMD_WRITE, 4, 0, 2) + b"xy"
                          + c.encode_request(c.NBD_CMD_READ, 5, 0, 2))
        reply = await _read_exactly(ro, 16 + 16 + 2)
        assert struct.unpack(">IIQ", reply[:16]) == (c.NBD_SIMPLE_REPLY_MAGIC, c.NBD_EPERM, 4)
        assert reply[16:] == struct.pack(">IIQ", c.NBD_SIMPLE_REPLY_MAGIC, 0, 5) + b"\0\0"
        await good.send_all(b"\xff" * 28)
        assert await _read_exactly(good, 1) == b""
        await ro.aclose()
        assert await _read_exactly(bad, 1) == b""
        await trio.testing.wait_all_tasks_blocked()
        assert server.sessions == []


async def test_stop_and_export_removal_end_clients(tmp_path: Path) -> None:
    """nbd-server-stop closes every export's clients (nbd_export_close: the socket is
    shut down); ejecting the medium of an exported device closes its export."""
    sock = tmp_path / "nbd.sock"
    async with emulator(NULL_DRIVES) as qmp:
        unix_start(qmp, sock)
        qmp("nbd-server-add", device="drive0")
        clients = []
        for _ in range(3):
            stream = await _connect(sock)
            await _negotiate(stream, b"drive0")
            clients.append(stream)
        assert qmp("eject", device="drive0", force=True) == {"return": {}}
        for stream in clients:
            assert await _read_exactly(stream, 1) == b""
        qmp("nbd-server-add", device="ro0")
        stream = await _connect(sock)
        await _negotiate(stream, b"ro0")
        assert qmp("nbd-server-stop") == {"return": {}}
        assert await _read_exactly(stream, 1) == b""
        with pytest.raises(OSError):
            await _connect(sock)


async def qemu_io(*args: str) -> str:
    return await run(str(QEMU_IO), *args)


async def make_chain(tmp_path: Path) -> Path:
    """A 3-deep qcow2 chain (base <- mid <- top), each written with its own patterns by
    qemu-io, some overlapping, one zeroed range."""
    base, mid, top = tmp_path / "base.qcow2", tmp_path / "mid.qcow2", tmp_path / "top.qcow2"
    await run(str(QEMU_IMG), "create", "-q", "-f", "qcow2", str(base), "8M")
    await qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x12 5M 64k",
                  str(base))
    await run(str(QEMU_IMG), "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
              str(mid))
    await qemu_io("-f", "qcow2", "-c", "write -P 0x21 1M 1M", "-c", "write -z 2M 64k",
                  str(mid))
    await run(str(QEMU_IMG), "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(mid),
              str(top))
    await qemu_io("-f", "qcow2", "-c", "write -P 0x31 1536k 4k", "-c", "write -P 0x32 7M 1M",
                  str(top))
    return top


@needs_tools
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
async def test_compare_export_with_its_image(tmp_path: Path, fmt: str) -> None:
    """`qemu-img compare` between the export (nbd:// over TCP and nbd+unix://) and the
    image it serves says identical: raw, and a 3-deep qcow2 chain read through the
    backing files (issue 8's first "done when")."""
    if fmt == "raw":
        image = tmp_path / "disk.raw"
        await run(str(QEMU_IMG), "create", "-q", "-f", "raw", str(image), "8M")
        await qemu_io("-f", "raw", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x77 5M 4k",
                      str(image))
    else:
        image = await make_chain(tmp_path)
    sock = tmp_path / "nbd.sock"
    drive = f"file={image},format={fmt},if=none,id=drive0,read-only=on"
    async with emulator(["-drive", drive]) as qmp:
        unix_start(qmp, sock)
        assert qmp("nbd-server-add", device="drive0") == {"return": {}}
        text = await run(str(QEMU_IMG), "compare", "-f", "raw", "-F", fmt,
                         f"nbd+unix:///drive0?socket={sock}", str(image))
        assert text == "Images are identical.\n"
        qmp("nbd-server-stop")
        reply = qmp("nbd-server-start", addr={"type": "inet",
                                              "data": {"host": "127.0.0.1", "port": "0"}})
        assert reply == {"return": {}}
        qmp("nbd-server-add", device="drive0")
        port = qmp.server.listener.address()[1]
        text = await run(str(QEMU_IMG), "compare", "-f", "raw", "-F", fmt,
                         f"nbd://127.0.0.1:{port}/drive0", str(image))
        assert text == "Images are identical.\n"


@needs_tools
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
async def test_write_through_a_writable_export(tmp_path: Path, fmt: str) -> None:
    """`qemu-io -c 'write -P 0x5a 1M 64k'` over a writable export changes exactly those
    bytes: after the emulator closes, the image equals a twin that qemu-io wrote
    directly, reads back the pattern, and `qemu-img check` is clean."""
    image, twin = tmp_path / f"disk.{fmt}", tmp_path / f"twin.{fmt}"
    for path in (image, twin):
        await run(str(QEMU_IMG), "create", "-q", "-f", fmt, str(path), "4M")
        await qemu_io("-f", fmt, "-c", "write -P 0x11 960k 128k", str(path))
    sock = tmp_path / "nbd.sock"
    async with emulator(["-drive", f"file={image},format={fmt},if=none,id=drive0"]) as qmp:
        unix_start(qmp, sock)
        qmp("nbd-server-add", device="drive0", writable=True)
        text = await qemu_io("-f", "raw", "-c", "write -P 0x5a 1M 64k",
                             f"nbd+unix:///drive0?socket={sock}")
        assert "wrote 65536/65536 bytes at offset 1048576" in text
    await qemu_io("-f", fmt, "-c", "write -P 0x5a 1M 64k", str(twin))
    text = await run(str(QEMU_IMG), "compare", "-f", fmt, "-F", fmt, str(image), str(twin))
    assert text == "Images are identical.\n"
    text = await qemu_io("-f", fmt, "-c", "read -P 0x5a 1M 64k", "-c", "read -P 0x11 960k 64k",
                         "-c", "read -P 0 1088k 64k", str(image))
    assert "Pattern verification failed" not in text
    if fmt == "qcow2":
        text = await run(str(QEMU_IMG), "check", str(image))
        assert "No errors were found on the image." in text


async def test_many_clients_at_once(tmp_path: Path) -> None:
    """Several clients at once over TCP: each negotiates, reads and disconnects while
    the others are connected (nbd_accept makes a client per connection)."""
    async with emulator(NULL_DRIVES) as qmp:
        qmp("nbd-server-start", addr={"type": "inet",
                                      "data": {"host": "127.0.0.1", "port": "0"}})
        qmp("nbd-server-add", device="drive0")
        port = qmp.server.listener.address()[1]
        streams: list[trio.SocketStream] = []

        async def client(i: int) -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            streams.append(stream)
            await _negotiate(stream, b"drive0")
            await stream.send_all(c.encode_request(c.NBD_CMD_READ, i, i * 4096, 4096))
            reply = await _read_exactly(stream, 16 + 4096)
            assert reply[:16] == struct.pack(">IIQ", c.NBD_SIMPLE_REPLY_MAGIC, 0, i)

        async with trio.open_nursery() as nursery:
            for i in range(N_CLIENTS):
                nursery.start_soon(client, i)
        assert len(qmp.server.exports[0].clients) == N_CLIENTS
        for stream in streams:
            await stream.send_all(c.encode_request(c.NBD_CMD_DISC, 0, 0, 0))
            assert await _read_exactly(stream, 1) == b""
        assert qmp.server.exports[0].clients == []
