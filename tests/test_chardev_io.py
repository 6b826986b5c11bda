"""Chardevs talking to real clients over real sockets and a real pty, on the trio
server under MockClock (devices.md §4; QEMU 2.11 chardev/char-socket.c tcp_chr_accept,
tcp_chr_read, tcp_chr_write, tcp_chr_disconnect; chardev/char-pty.c)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio
import trio.testing

from devices.chardev.frontends import BANNER, RingFrontend
from tests import emulator
from tests.test_server import Client


def make_vm(schema: Any, catalog: Any, **options: Any) -> emulator.Vm:
    vm = emulator.build_vm(schema, catalog, emulator.mock_clock(), **options)
    vm.machine.start()
    return vm


def unix_backend(path: Path) -> dict[str, Any]:
    return {"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": str(path)}}}}


async def start(schema: Any, catalog: Any, tmp_path: Path,
                nursery: trio.Nursery) -> tuple[emulator.Vm, Client]:
    vm = make_vm(schema, catalog)
    await emulator.serve(nursery, vm, [emulator.unix_monitor(tmp_path / "qmp.sock")])
    qmp = await Client.unix(str(tmp_path / "qmp.sock"))
    await qmp.negotiate()
    return vm, qmp


async def chardevs(qmp: Client) -> dict[str, dict[str, Any]]:
    reply = await qmp.cmd("query-chardev")
    return {c["label"]: c for c in reply["return"]}


async def test_unix_socket_both_directions(schema, catalog, tmp_path: Path,
                                           nursery: trio.Nursery,
                                           mock_clock: trio.testing.MockClock) -> None:
    """A chardev-add'ed unix server socket: a client's bytes reach the frontend's ring,
    the frontend's bytes reach the client; query-chardev shows the connection
    (tcp_chr_connect's filename) and the monitor's own chardev, held and open."""
    vm, qmp = await start(schema, catalog, tmp_path, nursery)
    path = tmp_path / "c0.sock"
    assert await qmp.cmd("chardev-add", id="c0", backend=unix_backend(path)) == {"return": {}}
    frontend = RingFrontend()
    frontend.attach(vm.chardevs, "c0")
    peer = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await peer.connect(str(path))
    await emulator.settle()
    found = await chardevs(qmp)
    assert found["c0"] == {"label": "c0", "filename": f"unix:{path},server",
                           "frontend-open": True}
    assert found["mon0"]["frontend-open"] is True
    assert frontend.events_seen == ["opened"]
    await peer.send(b"ping from host")
    await emulator.settle()
    assert frontend.ring.read(100) == b"ping from host"
    frontend.write(b"pong from guest")
    assert await peer.recv(100) == b"pong from guest"
    assert await qmp.cmd("chardev-remove", id="c0") == {"error": {
        "class": "GenericError", "desc": "Chardev 'c0' is busy"}}
    peer.close()
    await emulator.settle()
    assert frontend.events_seen == ["opened", "closed"]
    assert (await chardevs(qmp))["c0"]["filename"] == f"disconnected:unix:{path},server"


async def test_tcp_socket_with_socat(schema, catalog, tmp_path: Path, nursery: trio.Nursery,
                                     mock_clock: trio.testing.MockClock) -> None:
    """A tcp server chardev on a port the kernel picks, talked to by socat both ways."""
    vm, qmp = await start(schema, catalog, tmp_path, nursery)
    reply = await qmp.cmd("chardev-add", id="t0", backend={"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}}}})
    assert reply == {"return": {}}
    arrived = trio.Event()
    frontend = RingFrontend(on_receive=arrived.set)
    frontend.attach(vm.chardevs, "t0")
    name = (await chardevs(qmp))["t0"]["filename"]
    assert name.startswith("disconnected:tcp:127.0.0.1:") and name.endswith(",server")
    port = int(name.split(":")[3].split(",")[0])
    proc = await trio.lowlevel.open_process(["socat", "-", f"TCP:127.0.0.1:{port}"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    await proc.stdin.send_all(b"hello over tcp\n")
    while frontend.ring.data != bytearray(b"hello over tcp\n"):
        await arrived.wait()
        arrived = trio.Event()
        frontend.on_receive = arrived.set
    filename = (await chardevs(qmp))["t0"]["filename"]
    assert filename.startswith(f"tcp:127.0.0.1:{port},server <-> 127.0.0.1:")
    frontend.write(b"answer\n")
    got = b""
    while got != b"answer\n":
        got += await proc.stdout.receive_some(100)
    await proc.stdin.aclose()
    proc.kill()
    await proc.wait()


async def test_pty_shows_the_simulated_console(schema, catalog, tmp_path: Path,
                                               nursery: trio.Nursery,
                                               mock_clock: trio.testing.MockClock) -> None:
    """-serial pty with the serial-console behaviour: the path query-chardev gives
    opens, reads the banner and login prompt, and echoes what is typed."""
    built = emulator.build_from_argv(
        ["-machine", "pc", "-nodefaults", "-serial", "pty",
         "-qmp", f"unix:{tmp_path / 'qmp.sock'},server,nowait",
         "--emu-behaviour=serial-console=login"], emulator.mock_clock())
    await emulator.serve(nursery, built.vm, built.monitors)
    built.start()
    qmp = await Client.unix(str(tmp_path / "qmp.sock"))
    await qmp.negotiate()
    found = await chardevs(qmp)
    assert found["serial0"]["filename"].startswith("pty:/dev/pts/")
    path = found["serial0"]["filename"][4:]
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty = trio.lowlevel.FdStream(fd)
    async with tty:
        got = b""
        while not got.endswith(b"login: "):
            got += await tty.receive_some(1000)
        assert got == BANNER
        await tty.send_all(b"root")
        echoed = b""
        while echoed != b"root":
            echoed += await tty.receive_some(100)


def test_no_sleeps_outside_mock_clock() -> None:
    """House style: every async test here takes the mock clock."""
    import inspect

    for name, fn in vars(sys.modules[__name__]).items():
        if name.startswith("test_") and inspect.iscoroutinefunction(fn):
            assert "mock_clock" in inspect.signature(fn).parameters, name


async def test_flooding_and_stalled_peers_keep_the_server_serving(
        schema, catalog, tmp_path: Path, nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock) -> None:
    """A peer that floods a chardev and one that never reads what the guest writes:
    the monitor keeps answering (a chardev's output nobody takes is dropped, as
    QEMU's socket chardev drops it without a frontend that waits)."""
    vm, qmp = await start(schema, catalog, tmp_path, nursery)
    path = tmp_path / "f.sock"
    assert await qmp.cmd("chardev-add", id="f0", backend=unix_backend(path)) == {"return": {}}
    frontend = RingFrontend()
    frontend.attach(vm.chardevs, "f0")
    peer = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await peer.connect(str(path))
    await emulator.settle()
    chunk = b"x" * 65536
    for _ in range(64):  # 4 MiB
        await peer.send(chunk)
    for _ in range(64):
        frontend.write(chunk)  # the peer reads none of it
    assert (await qmp.cmd("query-status"))["return"]["status"] == "running"
    await emulator.settle()
    assert len(frontend.ring.data) == 65536  # the ring kept the newest bytes
    assert (await chardevs(qmp))["f0"]["frontend-open"] is True
    peer.close()
