"""The `nbd` block driver as a client: it connects to a real NBD server (Debian's
qemu-nbd, or the emulator's own) when it opens, with QEMU's errors, and reads and
writes through the connection [block/nbd.c, block/nbd-client.c, nbd/client.c]."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blockdev import io
from tests.emulator import SyncVm

QEMU_NBD = shutil.which("qemu-nbd")
QEMU_IO = shutil.which("qemu-io")
needs_tools = pytest.mark.skipif(not (QEMU_NBD and QEMU_IO), reason="qemu-utils missing")


def qmp(vm: SyncVm, command: str, **args: Any) -> Any:
    reply = vm.execute({"execute": command, "arguments": args})
    assert reply is not None
    return reply


@pytest.fixture
def vm() -> Iterator[SyncVm]:
    vm = SyncVm(["-machine", "none", "-nodefaults", "--emu-strict"])
    yield vm
    qmp(vm, "nbd-server-stop")
    vm.close()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "4M"], check=True)
    subprocess.run([str(QEMU_IO), "-f", "raw", "-c", "write -q -P 0x42 1M 64k", str(path)],
                   check=True)
    return path


@pytest.fixture
def qemu_nbd(tmp_path: Path, image: Path) -> Iterator[Path]:
    """qemu-nbd serving `image` as export "exp" on a unix socket; --fork returns once it
    listens (no waiting loop)."""
    sock, pid = tmp_path / "qemu-nbd.sock", tmp_path / "qemu-nbd.pid"
    subprocess.run([str(QEMU_NBD), "--fork", "--persistent", "-k", str(sock), "-x", "exp",
                    "-f", "raw", "--pid-file", str(pid), str(image)], check=True)
    try:
        yield sock
    finally:
        os.kill(int(pid.read_text()), 15)


def test_connection_refused(vm: SyncVm, tmp_path: Path) -> None:
    """nbd_establish_connection: socket_connect's texts, "Failed to connect socket:
    Connection refused" (inet) and "Failed to connect socket PATH: <strerror>" (unix)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    reply = qmp(vm, "blockdev-add", driver="nbd", **{"node-name": "n0"},
                server={"type": "inet", "host": "127.0.0.1", "port": str(port)})
    assert reply["error"]["desc"] == "Failed to connect socket: Connection refused"
    reply = qmp(vm, "blockdev-add", driver="nbd", **{"node-name": "n0"},
                server={"type": "unix", "path": str(tmp_path / "none")})
    assert reply["error"]["desc"] == \
        f"Failed to connect socket {tmp_path}/none: No such file or directory"
    assert qmp(vm, "query-named-block-nodes") == {"return": []}


@needs_tools
def test_reads_and_writes_through_qemu_nbd(vm: SyncVm, qemu_nbd: Path, image: Path) -> None:
    """blockdev-add of an `nbd` node on qemu-nbd's export: its length is the export's,
    reads return the image's bytes and writes reach the image (block/nbd-client.c)."""
    server = {"type": "unix", "path": str(qemu_nbd)}
    reply = qmp(vm, "blockdev-add", driver="nbd", **{"node-name": "n0"}, server=server,
                export="exp")
    assert reply == {"return": {}}
    node = vm.block.find_node("n0")
    assert io.bdrv_getlength(node) == 4 << 20
    assert io.bdrv_pread(node, (1 << 20) - 2, 4) == b"\0\0BB"
    io.bdrv_pwrite(node, 8192, b"hello")
    io.bdrv_flush(node)
    assert image.read_bytes()[8192:8197] == b"hello"
    reply = qmp(vm, "query-named-block-nodes")["return"][0]
    assert reply["file"] == f"nbd+unix:///exp?socket={qemu_nbd}"
    assert qmp(vm, "blockdev-del", **{"node-name": "n0"}) == {"return": {}}


@needs_tools
def test_unknown_export(vm: SyncVm, qemu_nbd: Path) -> None:
    """nbd_handle_reply_err: NBD_REP_ERR_UNKNOWN is "Requested export not available"."""
    reply = qmp(vm, "blockdev-add", driver="nbd", **{"node-name": "n0"},
                server={"type": "unix", "path": str(qemu_nbd)}, export="nope")
    assert reply["error"]["desc"] == "Requested export not available"


@needs_tools
def test_drive_nbd_filename(qemu_nbd: Path) -> None:
    """nbd_parse_uri and nbd_refresh_filename: a -drive nbd+unix:// name opens the
    export and round-trips in query-block."""
    url = f"nbd+unix:///exp?socket={qemu_nbd}"
    vm = SyncVm(["-machine", "none", "-nodefaults", "--emu-strict",
                 "-drive", f"file={url},format=raw,if=none,id=d0"])
    try:
        [info] = qmp(vm, "query-block")["return"]
        assert info["inserted"]["file"] == url
        assert info["inserted"]["image"]["virtual-size"] == 4 << 20
    finally:
        vm.close()


def test_own_server(vm: SyncVm, tmp_path: Path) -> None:
    """An `nbd` node on the emulator's own export (what a migration of non-shared
    storage does between two QEMUs): the same bytes as the exported node, and writes
    land in it; QEMU serves its own client as any other."""
    disk = tmp_path / "own.raw"
    disk.write_bytes(bytes(1 << 20))
    assert qmp(vm, "blockdev-add", driver="raw", **{"node-name": "src"},
               file={"driver": "file", "filename": str(disk)}) == {"return": {}}
    sock = tmp_path / "own.sock"
    qmp(vm, "nbd-server-start", addr={"type": "unix", "data": {"path": str(sock)}})
    qmp(vm, "nbd-server-add", device="src", writable=True)
    reply = qmp(vm, "blockdev-add", driver="nbd", **{"node-name": "cli"},
                server={"type": "unix", "path": str(sock)}, export="src")
    assert reply == {"return": {}}
    cli = vm.block.find_node("cli")
    io.bdrv_pwrite(cli, 4096, b"through nbd")
    assert io.bdrv_pread(vm.block.find_node("src"), 4096, 11) == b"through nbd"
    assert disk.read_bytes()[4096:4107] == b"through nbd"
    assert len(vm.vm.nbd.server.exports[0].clients) == 1
    assert qmp(vm, "blockdev-del", **{"node-name": "cli"}) == {"return": {}}
    assert vm.vm.nbd.server.exports[0].clients == []


def test_two_emulators_share_a_disk(vm: SyncVm, tmp_path: Path) -> None:
    """Two emulators share a disk as QEMU's non-shared-storage migration does: one (a
    separate process, `python -m vmm`) exports its drive writable over NBD, the other
    opens an `nbd` node on that export and writes through it; the bytes land in the
    first one's image."""
    import json

    from tests.emulator import program_command, program_env
    from tests.test_program import listening_monitor

    disk = tmp_path / "shared.raw"
    disk.write_bytes(bytes(1 << 20))
    listener, client, mon = listening_monitor(tmp_path / "qmp.sock")
    proc = subprocess.Popen(
        [*program_command(), "-machine", "none", "-nodefaults", *mon,
         "-drive", f"file={disk},format=raw,if=none,id=drive0"],
        pass_fds=(listener.fileno(),), env=program_env(tmp_path / "cache"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()
    stream = client.makefile("rwb")

    def remote(command: str, **args: Any) -> Any:
        stream.write(json.dumps({"execute": command, "arguments": args}).encode() + b"\n")
        stream.flush()
        while True:
            reply = json.loads(stream.readline())
            if "event" not in reply:
                return reply

    try:
        assert "QMP" in json.loads(stream.readline())  # the greeting: it is ready
        remote("qmp_capabilities")
        sock = tmp_path / "nbd.sock"
        assert remote("nbd-server-start", addr={"type": "unix",
                                                "data": {"path": str(sock)}}) == {"return": {}}
        assert remote("nbd-server-add", device="drive0", writable=True) == {"return": {}}
        reply = qmp(vm, "blockdev-add", driver="nbd", **{"node-name": "peer"},
                    server={"type": "unix", "path": str(sock)}, export="drive0")
        assert reply == {"return": {}}, reply
        peer = vm.block.find_node("peer")
        io.bdrv_pwrite(peer, 65536, b"shared" * 100)
        io.bdrv_flush(peer)
        assert io.bdrv_pread(peer, 65536, 12) == b"sharedshared"
        assert qmp(vm, "blockdev-del", **{"node-name": "peer"}) == {"return": {}}
        remote("quit")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()
    assert disk.read_bytes()[65536:65536 + 600] == b"shared" * 100
