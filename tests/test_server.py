"""The trio server over real sockets, on trio's MockClock.

Pins ../shared/reference/qmp-protocol.md §9 (one client per chardev at a time, a
second one greeted when the first leaves, a new greeting and negotiation after a
reconnect), §7.2 (events to every monitor), §10 (quit flushes, then EOF), and
devices.md §11 (descriptors passed with SCM_RIGHTS for getfd/add-fd).
"""

from __future__ import annotations

import array
import json
import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from devices.chardev.model import ChardevSpec
from vmm.config import MonitorSpec
from vmm.machine.core import Clock, MachineOptions
from vmm.server import Server
from vmm.vm import Vm


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

    async def line(self) -> dict:
        while b"\r\n" not in self.buf:
            data = await self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return json.loads(line)

    async def send(self, obj: dict | bytes, fds: list[int] | None = None) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        if fds:
            await self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              array.array("i", fds))])
        else:
            await self.sock.send(data)

    async def cmd(self, name: str, **arguments: object) -> dict:
        req: dict = {"execute": name}
        if arguments:
            req["arguments"] = {k.replace("_", "-"): v for k, v in arguments.items()}
        await self.send(req)
        return await self.line()

    async def negotiate(self) -> dict:
        greeting = await self.line()
        assert (await self.cmd("qmp_capabilities")) == {"return": {}}
        return greeting

    async def eof(self) -> bool:
        return (await self.sock.recv(1)) == b""

    def close(self) -> None:
        self.sock.close()


def make_vm(schema, catalog, **options) -> Vm:
    options.setdefault("strict", True)
    clock = Clock.anchored(trio.current_time, 1_500_000_000.0)
    vm = Vm.build(options=MachineOptions(**options), schema=schema, catalog=catalog,
                  clock=clock)
    vm.machine.start()
    return vm


def unix_spec(path: Path, ident: str = "mon0", **kw: object) -> MonitorSpec:
    return MonitorSpec(ChardevSpec(id=ident, backend="socket", path=str(path), wait=False,
                                   **kw))


async def test_unix_and_tcp_monitors_share_events(schema, catalog, tmp_path, nursery) -> None:
    """§7.2: a STOP caused on one monitor reaches the other, over unix and tcp."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock"),
                         MonitorSpec(ChardevSpec(id="mon1", backend="socket", host="127.0.0.1",
                                                 port="0", wait=False))])
    addresses = await nursery.start(server.serve)
    a = await Client.unix(str(tmp_path / "qmp.sock"))
    b = await Client.tcp(addresses[1].address)
    await a.negotiate()
    await b.negotiate()
    await a.send({"execute": "stop"})
    assert (await a.line())["event"] == "STOP"
    assert await a.line() == {"return": {}}
    assert (await b.line())["event"] == "STOP"
    assert (await b.cmd("query-status"))["return"]["status"] == "paused"


async def test_one_client_at_a_time_per_chardev(schema, catalog, tmp_path, nursery) -> None:
    """§9: a second client is accepted by the kernel but greeted only when the first
    leaves; what it sent meanwhile is processed then."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock")])
    await nursery.start(server.serve)
    first = await Client.unix(str(tmp_path / "qmp.sock"))
    await first.negotiate()
    second = await Client.unix(str(tmp_path / "qmp.sock"))
    await second.send(b'{"execute":"qmp_capabilities","id":1}')
    with trio.move_on_after(1):
        await second.line()
        pytest.fail("the second client was served while the first was connected")
    first.close()
    assert "QMP" in await second.line()
    assert await second.line() == {"return": {}, "id": 1}


async def test_reconnect_gets_a_new_greeting(schema, catalog, tmp_path, nursery) -> None:
    """§9: disconnect resets the parser (a partial message is lost) and negotiation."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock")])
    await nursery.start(server.serve)
    c = await Client.unix(str(tmp_path / "qmp.sock"))
    await c.negotiate()
    await c.send(b'{"execute":"sto')
    c.close()
    c = await Client.unix(str(tmp_path / "qmp.sock"))
    await c.line()
    await c.send(b'p"}')  # the rest of the old message is not a message any more
    assert await c.line() == {"error": {"class": "GenericError",
                                         "desc": "JSON parse error, invalid keyword 'p'"}}


async def test_quit_flushes_then_closes_every_client(schema, catalog, tmp_path) -> None:
    """§10: reply, SHUTDOWN to every monitor in command mode, then EOF; exit 0."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "a.sock", "a"), unix_spec(tmp_path / "b.sock", "b")])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        a = await Client.unix(str(tmp_path / "a.sock"))
        b = await Client.unix(str(tmp_path / "b.sock"))
        await a.negotiate()
        await b.negotiate()
        await a.send({"execute": "quit", "id": "q"})
        assert await a.line() == {"return": {}, "id": "q"}
        shutdown = await a.line()
        assert (shutdown["event"], shutdown["data"]) == ("SHUTDOWN", {"guest": False})
        assert (await b.line())["event"] == "SHUTDOWN"
        assert await a.eof()
        assert await b.eof()
    assert vm.machine.exit_code == 0


async def test_guest_power_off_on_virtual_time(schema, catalog, tmp_path,
                                               autojump_clock) -> None:
    """The simulated guest powers off 0.5 s (virtual) after the button; the server
    runs that deadline on trio's clock and exits."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock")])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        c = await Client.unix(str(tmp_path / "qmp.sock"))
        await c.negotiate()
        start = trio.current_time()
        assert await c.cmd("system_powerdown") == {"return": {}}
        assert (await c.line())["event"] == "POWERDOWN"
        shutdown = await c.line()
        assert shutdown["event"] == "SHUTDOWN" and shutdown["data"] == {"guest": True}
        assert trio.current_time() - start == pytest.approx(0.5)
        assert await c.eof()


async def test_getfd_and_add_fd_take_descriptors_passed_with_scm_rights(
        schema, catalog, tmp_path, nursery) -> None:
    """devices.md §11: getfd/add-fd take the descriptor sent with the command; the
    numbers reported are this process's; query-fdsets lists them; errors as QEMU's."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock")])
    await nursery.start(server.serve)
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


async def test_remove_fd_keeps_the_set_while_not_running(schema, catalog, tmp_path,
                                                         nursery) -> None:
    """devices.md §11: with -S the set is still listed after remove-fd."""
    vm = make_vm(schema, catalog, start_paused=True)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock")])
    await nursery.start(server.serve)
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


async def test_server_wait_accepts_before_serving(schema, catalog, tmp_path) -> None:
    """`server,wait` (QEMU's default): start-up blocks until a client connects."""
    vm = make_vm(schema, catalog)
    path = tmp_path / "qmp.sock"
    server = Server(vm, [MonitorSpec(ChardevSpec(id="m", backend="socket", path=str(path),
                                                 wait=True))])
    started = trio.Event()

    async def run_server() -> None:
        await server.serve(task_status=_Started(started))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_server)
        with trio.move_on_after(0.5):
            await started.wait()
        assert not started.is_set()
        while not path.exists():
            await trio.sleep(0.01)
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


async def test_slow_reader_gets_backpressure_not_loss(schema, catalog, tmp_path,
                                                      nursery) -> None:
    """Outbox policy (vmm/monitor.py): a client that stops reading is not served past
    the high-water mark, and every request it sent is still answered later."""
    vm = make_vm(schema, catalog)
    server = Server(vm, [unix_spec(tmp_path / "qmp.sock")])
    await nursery.start(server.serve)
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
    await trio.sleep(1)
    seen = 0
    while seen < n:
        reply = await c.line()
        assert reply["id"] == seen
        seen += 1


def typed(text: str) -> bytes:
    """util/readline.c readline_update's echo of `text` typed one byte at a time."""
    out = b""
    for i in range(1, len(text) + 1):
        out += b"\x1b[D" * (i - 1) + text[:i].encode() + b"\x1b[K"
    return out


async def test_hmp_monitor_over_a_socket(schema, catalog, tmp_path, nursery) -> None:
    """monitor.c monitor_event + util/readline.c: banner and prompt on connect; typing
    echoed with readline's redraw escapes; CR and LF each submit a line (so CR LF
    runs an empty command too); output in CR LF; `quit` ends without a prompt.
    (The same bytes as a real QEMU's human monitor, seen with QEMU 7.2 here.)"""
    vm = make_vm(schema, catalog)
    server = Server(vm, [MonitorSpec(ChardevSpec(id="hmp", backend="socket",
                                                 path=str(tmp_path / "hmp.sock"), wait=False),
                                     mode="readline")])
    await nursery.start(server.serve)
    c = await Client.unix(str(tmp_path / "hmp.sock"))

    async def read_until(marker: bytes) -> bytes:
        while marker not in c.buf:
            c.buf += await c.sock.recv(65536)
        data, c.buf = c.buf, b""
        return data

    assert await read_until(b"(qemu) ") == (
        b"QEMU 2.11.0 monitor - type 'help' for more information\r\n(qemu) ")
    await c.send(b"info status\n")
    assert await read_until(b"(qemu) ") == (
        typed("info status") + b"\r\nVM status: running\r\n(qemu) ")
    await c.send(b"foo\r\n")
    expected = typed("foo") + b"\r\nunknown command: 'foo'\r\n(qemu) \r\n(qemu) "
    got = b""
    while got != expected:
        got += await c.sock.recv(65536)
        assert expected.startswith(got)
    await c.send(b"quit\n")
    assert await read_until(b"\r\n") == typed("quit") + b"\r\n"
    assert await c.eof()
