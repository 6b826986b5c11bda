"""The trio server over real sockets, on trio's MockClock.

Every test here runs under `trio.testing.MockClock` (the `mock_clock` fixture: time
moves only when a test moves it) and waits for the server with
`emulator.settle` (every task blocked), never with a real sleep or a timeout. The
conversations over a unix socket (one client at a time, reconnecting, quit closing
every client, the guest's power-off on virtual time, the human monitor) are golden
transcripts in tests/golden/, replayed on this same server; what stays here needs
what a transcript cannot say: a TCP client, descriptors passed with SCM_RIGHTS, a
`server,wait` chardev, a client that stops reading.

Pins ../shared/reference/qmp-protocol.md §7.2 (events to every monitor, over unix
and TCP), devices.md §11 (descriptors passed with SCM_RIGHTS for getfd/add-fd), and
the outbox policy of vmm/qmp/monitor.py.
"""

from __future__ import annotations

import array
import inspect
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import trio
import trio.testing

from tests import emulator
from tests.emulator import ChardevSpec, MonitorSpec


class Client:
    """A line-oriented QMP client on a trio socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    async def unix(cls, path: str) -> Client:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.connect(path)
        return cls(sock)

    @classmethod
    async def tcp(cls, address: tuple[str, int]) -> Client:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect(address)
        return cls(sock)

    async def line(self) -> dict[str, Any]:
        while b"\r\n" not in self.buf:
            data = await self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result

    async def send(self, obj: dict[str, Any] | bytes, fds: list[int] | None = None) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        if fds:
            await self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              array.array("i", fds))])
        else:
            await self.sock.send(data)

    async def cmd(self, name: str, **arguments: object) -> dict[str, Any]:
        req: dict[str, Any] = {"execute": name}
        if arguments:
            req["arguments"] = {k.replace("_", "-"): v for k, v in arguments.items()}
        await self.send(req)
        return await self.line()

    async def negotiate(self) -> dict[str, Any]:
        greeting = await self.line()
        assert (await self.cmd("qmp_capabilities")) == {"return": {}}
        return greeting

    def close(self) -> None:
        self.sock.close()


def make_vm(schema, catalog, **options: Any) -> emulator.Vm:
    vm = emulator.build_vm(schema, catalog, emulator.mock_clock(), **options)
    vm.machine.start()
    return vm


def test_every_server_test_runs_on_the_mock_clock() -> None:
    """House style: a server test takes trio's MockClock (pytest-trio's `mock_clock`),
    so nothing in it can depend on real time."""
    module = sys.modules[__name__]
    for name, fn in vars(module).items():
        if name.startswith("test_") and inspect.iscoroutinefunction(fn):
            assert "mock_clock" in inspect.signature(fn).parameters, name


async def test_unix_and_tcp_monitors_share_events(schema, catalog, tmp_path: Path,
                                                  nursery: trio.Nursery,
                                                  mock_clock: trio.testing.MockClock) -> None:
    """§7.2: a STOP caused on one monitor reaches the other, over unix and TCP."""
    vm = make_vm(schema, catalog)
    _, addresses = await emulator.serve(nursery, vm, [
        emulator.unix_monitor(tmp_path / "qmp.sock"), emulator.tcp_monitor("mon1")])
    a = await Client.unix(str(tmp_path / "qmp.sock"))
    b = await Client.tcp(addresses[1].address)
    await a.negotiate()
    await b.negotiate()
    await a.send({"execute": "stop"})
    assert (await a.line())["event"] == "STOP"
    assert await a.line() == {"return": {}}
    assert (await b.line())["event"] == "STOP"
    assert (await b.cmd("query-status"))["return"]["status"] == "paused"


async def test_getfd_and_add_fd_take_descriptors_passed_with_scm_rights(
        schema, catalog, tmp_path: Path, nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock) -> None:
    """devices.md §11: getfd/add-fd take the descriptor sent with the command; the
    numbers reported are this process's; query-fdsets lists them; errors as QEMU's."""
    vm = make_vm(schema, catalog)
    await emulator.serve(nursery, vm, [emulator.unix_monitor(tmp_path / "qmp.sock")])
    c = await Client.unix(str(tmp_path / "qmp.sock"))
    await c.negotiate()
    assert await c.cmd("getfd", fdname="f") == {"error": {
        "class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"}}
    r, w = os.pipe()
    try:
        await c.send({"execute": "getfd", "arguments": {"fdname": "mine"}}, fds=[r])
        assert await c.line() == {"return": {}}
        await c.send({"execute": "add-fd", "arguments": {"opaque": "rdonly"}}, fds=[w])
        reply = await c.line()
        assert reply["return"]["fdset-id"] == 0
        held = reply["return"]["fd"]
        os.write(held, b"x")  # the emulator's descriptor is a duplicate of our write end
        assert os.read(r, 1) == b"x"
        fdsets = await c.cmd("query-fdsets")
        assert fdsets == {"return": [{"fdset-id": 0, "fds": [{"fd": held, "opaque": "rdonly"}]}]}
        await c.send({"execute": "getfd", "arguments": {"fdname": "9bad"}}, fds=[r])
        assert await c.line() == {"error": {"class": "GenericError", "desc":
            "Parameter 'fdname' expects a name not starting with a digit"}}
        assert await c.cmd("closefd", fdname="mine") == {"return": {}}
        assert await c.cmd("closefd", fdname="mine") == {"error": {
            "class": "GenericError", "desc": "File descriptor named 'mine' not found"}}
        assert await c.cmd("remove-fd", fdset_id=3) == {"error": {
            "class": "GenericError", "desc": "File descriptor named 'fdset-id:3' not found"}}
        assert await c.cmd("remove-fd", fdset_id=0, fd=999) == {"error": {
            "class": "GenericError",
            "desc": "File descriptor named 'fdset-id:0, fd:999' not found"}}
        assert await c.cmd("remove-fd", fdset_id=0) == {"return": {}}
        assert (await c.cmd("query-fdsets"))["return"] == []  # running: closed at once
    finally:
        os.close(r)
        os.close(w)


async def test_remove_fd_keeps_the_set_while_not_running(
        schema, catalog, tmp_path: Path, nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock) -> None:
    """devices.md §11: with -S the set is still listed after remove-fd."""
    vm = make_vm(schema, catalog, start_paused=True)
    await emulator.serve(nursery, vm, [emulator.unix_monitor(tmp_path / "qmp.sock")])
    c = await Client.unix(str(tmp_path / "qmp.sock"))
    await c.negotiate()
    r, w = os.pipe()
    try:
        await c.send({"execute": "add-fd", "arguments": {"fdset-id": 2}}, fds=[r])
        fd = (await c.line())["return"]["fd"]
        assert await c.cmd("remove-fd", fdset_id=2) == {"return": {}}
        assert (await c.cmd("query-fdsets"))["return"] == [{"fdset-id": 2, "fds": [{"fd": fd}]}]
    finally:
        os.close(r)
        os.close(w)


async def test_server_wait_accepts_before_serving(schema, catalog, tmp_path: Path,
                                                  mock_clock: trio.testing.MockClock) -> None:
    """`server,wait` (QEMU's default): start-up blocks until a client connects
    (chardev/char-socket.c tcp_chr_wait_connected)."""
    vm = make_vm(schema, catalog)
    path = tmp_path / "qmp.sock"
    started = trio.Event()

    async def run_server(server: emulator.Server) -> None:
        await server.serve(task_status=_Started(started))

    server = emulator.Server(vm, [MonitorSpec(ChardevSpec(id="m", backend="socket",
                                                          path=str(path), wait=True))])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_server, server)
        await emulator.settle()
        assert path.exists()  # bound and listening ...
        assert not started.is_set()  # ... but not serving: waiting for its first client
        c = await Client.unix(str(path))
        await started.wait()
        await c.negotiate()
        await c.send({"execute": "quit"})
        await c.line()
        await c.line()


class _Started:
    def __init__(self, event: trio.Event) -> None:
        self.event = event

    def started(self, value: object = None) -> None:
        self.event.set()


async def test_slow_reader_gets_backpressure_not_loss(
        schema, catalog, tmp_path: Path, nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock) -> None:
    """Outbox policy (vmm/qmp/monitor.py): a client that stops reading is not served
    past the high-water mark, and every request it sent is still answered later."""
    vm = make_vm(schema, catalog)
    await emulator.serve(nursery, vm, [emulator.unix_monitor(tmp_path / "qmp.sock")])
    c = await Client.unix(str(tmp_path / "qmp.sock"))
    await c.negotiate()
    n = 40  # 40 x 100 kB of replies, well past the 1 MiB high-water mark
    burst = b"".join(b'{"execute":"query-qmp-schema","id":%d}' % i for i in range(n))

    async def sender() -> None:
        view = memoryview(burst)
        while view:
            sent = await c.sock.send(view)
            view = view[sent:]

    nursery.start_soon(sender)
    await emulator.settle()  # the server is stuck on our full socket
    seen = 0
    while seen < n:
        reply = await c.line()
        assert reply["id"] == seen
        seen += 1
