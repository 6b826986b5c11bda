"""What a fuzzing campaign found (issue 13), each defect kept fixed by its reproducer.

The server tests here run on trio's MockClock like tests/test_server.py; the program
tests start the installed program as tests/test_program.py does. Each test names the
defect it reproduces and the behaviour it expects (QEMU's, where QEMU has one).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import vmm.qmp.monitor
from tests import emulator
from tests.test_program import HANG_GUARD, wait_for_socket
from tests.test_server import Client, make_vm


async def test_silent_client_is_dropped_at_the_event_limit_while_its_send_blocks(
        schema, catalog, tmp_path: Path, nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: a client that negotiates and never reads, while events flood. The
    outbox policy (vmm/qmp/monitor.py, EVENT_LIMIT) must hold while the send to it is
    blocked: its outbox never grows past the limit, it is disconnected, and the other
    client goes on being served. (The limit is lowered here to keep the test small.)"""
    limit = 1 << 20
    monkeypatch.setattr(vmm.qmp.monitor, "EVENT_LIMIT", limit)
    vm = make_vm(schema, catalog)
    await emulator.serve(nursery, vm, [emulator.unix_monitor(tmp_path / "a.sock"),
                                       emulator.unix_monitor(tmp_path / "b.sock")])
    silent = await Client.unix(str(tmp_path / "a.sock"))
    await silent.negotiate()
    other = await Client.unix(str(tmp_path / "b.sock"))
    await other.negotiate()
    monitors = [m for m in vm.hub.monitors if isinstance(m, vmm.qmp.monitor.QmpMonitor)]
    events_seen = 0

    async def reader() -> None:  # the other client reads everything
        nonlocal events_seen
        while True:
            if "event" in await other.line():
                events_seen += 1

    async with trio.open_nursery() as readers:
        readers.start_soon(reader)
        peak = 0
        big = "x" * 4000
        flood = 3000  # ~12 MB of events, far past the limit and the socket buffers
        for _ in range(flood):
            vm.machine.emit("BLOCK_IMAGE_CORRUPTED",
                            {"device": big, "msg": "m", "fatal": False})
            peak = max(peak, *(len(m.outbox) for m in monitors))
            await emulator.settle()
        readers.cancel_scope.cancel()
    assert peak <= limit + 8192
    assert events_seen == flood
    # the silent client was disconnected: after what the kernel had buffered, EOF
    with pytest.raises(EOFError):
        while True:
            await silent.line()
    assert (await other.cmd("query-status"))["return"]["status"] == "running"


def _negotiated(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    sock.sendall(b'{"execute":"qmp_capabilities"}')
    seen = b""
    while b'"return"' not in seen:
        seen += sock.recv(65536)
    return sock


@pytest.mark.parametrize("how", ["quit", "sigterm", "sigint", "powerdown"])
def test_unix_socket_file_is_removed_at_exit(spawn, tmp_path: Path, how: str) -> None:
    """Defect 6: QEMU 2.11 removes the file of a unix socket it listened on when the
    chardev goes at exit (vl.c main -> qemu_chr_cleanup; io/channel-socket.c
    qio_channel_socket_finalize -> util/qemu-sockets.c socket_listen_cleanup), however
    the machine ended: quit, a signal, the guest's power-off."""
    path = tmp_path / "qmp.sock"
    proc = spawn("-nodefaults", "-display", "none", "-qmp", f"unix:{path},server,nowait")
    wait_for_socket(path, proc)
    sock = _negotiated(path)
    if how == "quit":
        sock.sendall(b'{"execute":"quit"}')
    elif how == "powerdown":
        sock.sendall(b'{"execute":"system_powerdown"}')
    else:
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    while sock.recv(65536):
        pass
    assert proc.wait(timeout=HANG_GUARD) == 0
    assert not path.exists()


def test_unix_socket_file_is_removed_at_exit_of_a_daemon(spawn, tmp_path: Path) -> None:
    """Defect 6, with -daemonize: the daemon removes its socket file when it exits."""
    path = tmp_path / "d.sock"
    pidfile = tmp_path / "emu.pid"
    parent = spawn("-nodefaults", "-daemonize", "-pidfile", str(pidfile),
                   "-qmp", f"unix:{path},server,nowait")
    assert parent.wait(timeout=HANG_GUARD) == 0
    pid = int(pidfile.read_text().strip())
    exited = os.pidfd_open(pid)
    try:
        sock = _negotiated(path)
        sock.sendall(b'{"execute":"quit"}')
        while sock.recv(65536):
            pass
        assert select.select([exited], [], [], HANG_GUARD)[0]
    finally:
        os.close(exited)
    assert not path.exists()


async def test_exit_does_not_wait_for_a_client_that_does_not_read(
        schema, catalog, tmp_path: Path, nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock) -> None:
    """Defect 9: QEMU exits at once when asked to, handing each client only what its
    socket takes then (monitor.c monitor_flush writes what the chardev accepts and
    keeps the rest; vl.c main does not wait for it). The server's last flush is as
    short: a client with megabytes of unread replies does not hold the exit up for
    more than FLUSH_TIMEOUT (virtual) seconds."""
    from vmm.server import FLUSH_TIMEOUT

    vm = make_vm(schema, catalog)
    codes: list[int] = []
    await emulator.serve(nursery, vm, [emulator.unix_monitor(tmp_path / "a.sock"),
                                       emulator.unix_monitor(tmp_path / "b.sock")],
                         exited=codes.append)
    reader = await Client.unix(str(tmp_path / "a.sock"))
    await reader.negotiate()
    quitter = await Client.unix(str(tmp_path / "b.sock"))
    await quitter.negotiate()
    burst = b"".join(b'{"execute":"query-qmp-schema","id":%d}' % i for i in range(20))
    await reader.sock.send(burst)
    await emulator.settle()  # the server is blocked on the reader's full socket
    start = trio.current_time()
    await quitter.send({"execute": "quit"})
    while not codes:
        await emulator.settle()
        mock_clock.jump(0.001)
    assert codes == [0]
    assert trio.current_time() - start <= FLUSH_TIMEOUT + 0.002  # one jump past it
    assert FLUSH_TIMEOUT <= 0.1


def _file_chain(depth: int, name: str) -> dict[str, Any]:
    inner: dict[str, Any] = {"driver": "null-co"}
    for _ in range(depth):
        inner = {"driver": "raw", "file": inner}
    inner["node-name"] = name
    return inner


def test_deep_file_chain_is_added(schema, catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 2: `blockdev-add` with a `file` chain 197 deep (and deeper) is added, as
    a real QEMU adds one 300 deep (block.c bdrv_open_inherit recurses per level). The
    JSON reader bounds the nesting at 1024 levels (qobject/json-streamer.c), so the
    emulator's recursion is bounded too: building a machine raises the interpreter's
    limit to what that bound needs (vmm.vm.RECURSION_FLOOR), whatever it was."""
    import vmm.vm

    monkeypatch.setattr(sys, "getrecursionlimit", lambda: 300)  # a low starting limit
    raised: list[int] = []
    monkeypatch.setattr(sys, "setrecursionlimit", raised.append)
    emulator.build_vm(schema, catalog, emulator.mock_clock(lambda: 0.0))
    assert raised == [vmm.vm.RECURSION_FLOOR] and vmm.vm.RECURSION_FLOOR >= 3 * 1024
    monkeypatch.undo()
    vm = emulator.build_vm(schema, catalog, emulator.mock_clock(lambda: 0.0))
    vm.machine.start()
    talk = vm.qmp_monitor()
    talk.connect()
    talk.feed(b'{"execute":"qmp_capabilities"}')
    talk.take_output()
    talk.feed(json.dumps({"execute": "blockdev-add", "arguments": _file_chain(197, "d")}).encode())
    assert json.loads(talk.take_output()) == {"return": {}}
    talk.feed(b'{"execute":"query-named-block-nodes"}')
    nodes = json.loads(talk.take_output())["return"]
    assert len(nodes) == 198 and nodes[0]["node-name"] == "d"
    talk.feed(b'{"execute":"blockdev-del","arguments":{"node-name":"d"}}')
    assert json.loads(talk.take_output()) == {"return": {}}


def test_signal_during_start_up_exits_cleanly(tmp_path: Path) -> None:
    """Defect 8: SIGINT in the first moments of start-up printed a KeyboardInterrupt
    traceback. QEMU puts its termination handler in place at the start of main
    (os-posix.c os_setup_signal_handling) and acts on the signal once the main loop
    runs (vl.c main_loop_should_exit: "terminating on signal 2", SHUTDOWN, exit 0).
    The console script's entry (vmm.launch) does the same before it loads anything
    of the emulator: here the signal arrives right after that, while trio, the
    schema and the catalogue are still to be loaded."""
    path = tmp_path / "qmp.sock"
    code = ("import os, signal, sys\n"
            "from vmm.launch import EarlySignals\n"
            "early = EarlySignals.install()\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "from vmm.program import main\n"
            f"sys.exit(main(['-nodefaults', '-display', 'none', '-qmp', "
            f"'unix:{path},server,nowait'], early_signals=early))\n")
    env = dict(os.environ, QMP_EMULATOR_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=HANG_GUARD)
    assert done.returncode == 0
    assert done.stderr.decode().endswith(": terminating on signal 2\n")
    assert b"Traceback" not in done.stderr
    assert not path.exists()


def test_null_size_of_2_63_follows_qemus_int64_arithmetic(vm_factory) -> None:
    """Defect 3: a null-co size just under 2^63 went out of the schema's int range in
    query-block. QEMU reads the size through qemu_opt_get_size, whose strtod rounds
    9223372036854775296 up to 2^63 (util/cutils.c do_strtosz); null_file_open stores
    it in an int64_t, where it wraps to -2^63; refresh_total_sectors returns that as an
    `int`, i.e. 0, so the open succeeds and the node keeps its 0 sectors (block/null.c,
    block.c). The replies conform to the schema (the VM runs strict)."""
    talk = vm_factory().talk()
    assert talk.execute("blockdev-add", {"driver": "null-co", "node-name": "n",
                                         "size": 9223372036854775296}) == {"return": {}}
    [node] = talk.execute("query-named-block-nodes")["return"]
    assert node["image"]["virtual-size"] == 0
    assert talk.execute("query-block") == {"return": []}


def test_qcow2_grow_beyond_the_l1_limit_fails_as_qemu(vm_factory, tmp_path: Path) -> None:
    """Defect 3: block_resize of a qcow2 to 2^55 or 2^63-512 fails in QEMU 2.11 with
    "Failed to grow the L1 table: File too large": qcow2_grow_l1_table refuses an L1
    of more than QCOW_MAX_L1_SIZE bytes with -EFBIG (block/qcow2.c qcow2_truncate,
    block/qcow2-cluster.c qcow2_grow_l1_table)."""
    image = tmp_path / "a.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    before = image.read_bytes()
    talk = vm_factory().talk()
    assert talk.execute("blockdev-add", {"driver": "qcow2", "node-name": "q", "file": {
        "driver": "file", "filename": str(image)}}) == {"return": {}}
    for size in (2**55, 2**63 - 512):
        assert talk.execute("block_resize", {"node-name": "q", "size": size}) == {
            "error": {"class": "GenericError",
                      "desc": "Failed to grow the L1 table: File too large"}}
    [node] = [n for n in talk.execute("query-named-block-nodes")["return"]
              if n["node-name"] == "q"]
    assert node["image"]["virtual-size"] == 1 << 20
    assert image.read_bytes() == before


def test_request_nested_990_deep_is_answered_and_the_next_one_too(vm_factory) -> None:
    """Defect 1: an array nested 990 deep (QEMU accepts 1 024 levels) got no reply,
    and a request sent in the same write was lost with it. QEMU answers "QMP input
    must be a JSON object" (monitor.c handle_qmp_command) and goes on."""
    talk = vm_factory().talk()
    out = talk.send(b"[" * 990 + b"]" * 990 + b'\n{"execute":"query-status","id":1}\n')
    lines = out.split(b"\r\n")
    assert lines[0] == (b'{"error": {"class": "GenericError", '
                        b'"desc": "QMP input must be a JSON object"}}')
    if len(lines) < 3:  # the second reply may come in its own read
        lines = [lines[0], *talk.send(b"").split(b"\r\n")]
    assert json.loads(lines[1])["id"] == 1


def test_client_strings_are_bytes_as_qemu_holds_them(vm_factory, tmp_path: Path) -> None:
    """What the long fuzzing run found in the NBD server: a string QEMU's JSON reader
    hands over may hold any bytes (here a lone 0xFF, kept as a surrogate escape), and
    QEMU measures and uses the bytes (util/qemu-sockets.c unix_listen_saddr's path
    length check). The emulator did the same through `str.encode()` and crashed; it
    now answers as QEMU does."""
    talk = vm_factory().talk()
    path = str(tmp_path) + "/x\udcff.sock"
    reply = talk.execute("nbd-server-start", {"addr": {"type": "unix",
                                                       "data": {"path": path}}})
    assert reply == {"return": {}}
    long = str(tmp_path) + "/" + "\udcff" * 120
    talk.execute("nbd-server-stop")
    reply = talk.execute("nbd-server-start", {"addr": {"type": "unix",
                                                       "data": {"path": long}}})
    desc = reply["error"]["desc"]
    assert desc.startswith(f"UNIX socket path '{tmp_path}/") and desc.endswith("' is too long")


def test_monitor_on_a_port_in_use(spawn) -> None:
    """A `-qmp tcp:` monitor on a port someone else listens on: QEMU's listener tries
    its port range and, every port being taken, answers "Failed to find an available
    port: Address already in use" (util/qemu-sockets.c inet_listen_saddr); the
    program exits 1."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        proc = spawn("-nodefaults", "-display", "none", "-qmp",
                     f"tcp:127.0.0.1:{port},server,nowait")
        assert proc.wait(timeout=HANG_GUARD) == 1
        assert proc.stderr is not None
        assert "Failed to find an available port: Address already in use" in \
            proc.stderr.read().decode()
    finally:
        busy.close()
