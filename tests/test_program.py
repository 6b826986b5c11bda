"""The `qmp-emulator` program as a management tool starts it, with real clients.

These tests run the console script in a subprocess and talk to it with the
`qemu.qmp` client library from PyPI (written by QEMU's developers, not here) and
with plain sockets. They pin: README's start command works as written; negotiation,
query-status, stop, cont, system_reset and system_powerdown with their events in
QEMU's order over unix and tcp sockets (../shared/reference/runstate.md §3.7, with
SeaBIOS's RESET after a reset on a pc: runstate.md, top);
-daemonize/-pidfile (os-posix.c os_daemonize, util/oslib-posix.c
qemu_create_pidfile); termination by signal (vl.c termsig_handler); a refused
command line's exit status.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "qmp-emulator"


def program() -> list[str]:
    """The installed console script (README installs it), else `python -m vmm`."""
    return [str(BIN)] if BIN.exists() else [sys.executable, "-m", "vmm"]


def readme_start_command() -> list[str]:
    """The qmp-emulator invocation of README's first set-up command."""
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)\n```", text, re.S)
    assert first is not None
    words = shlex.split(first.group(1))
    start = next(i for i, w in enumerate(words) if w.endswith("qmp-emulator"))
    return words[start + 1:]


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes] | None = None,
                    timeout: float = 20.0) -> None:
    """Wait until the monitor on `path` greets a client: as in QEMU, the chardev
    listens before the rest of the machine is built (vl.c), so the greeting, not the
    socket, says the machine is ready. This is the one place a test waits on real time
    (README's command, `-qmp tcp:`), since the program gives no readiness signal for a
    `server,nowait` socket it binds itself; tests that need no path pass a listening
    socket instead (`listening_monitor`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.settimeout(timeout)
                probe.connect(str(path))
                greeted = probe.recv(1) != b""
                probe.close()
                if greeted:
                    return
            except OSError:
                probe.close()
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"emulator exited with {proc.returncode}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.01)
    raise AssertionError(f"{path} never accepted a connection")


HANG_GUARD = 30.0  # seconds before a test gives up on a stuck program (not a timing check)


def listening_monitor(path: Path) -> tuple[socket.socket, socket.socket, list[str]]:
    """A unix socket already listening, to hand to the program as its QMP chardev
    (`fd=N`), and a client already connected to it: nothing to wait for, the kernel
    queues the connection until the program accepts it. Close the listener once the
    program has started (it has its own copy)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(path))
    return listener, client, ["-chardev", f"socket,id=mon,fd={listener.fileno()},server,nowait",
                              "-mon", "chardev=mon,mode=control"]


async def conversation(address: str | tuple[str, int]) -> tuple[object, list[object], list[str]]:
    """Drive the run-state commands with qemu.qmp; return greeting, replies, events."""
    qmp = QMPClient("emulator-under-test")
    await qmp.connect(address)
    greeting = qmp.greeting
    assert greeting is not None
    replies: list[object] = []
    events: list[str] = []
    with qmp.listener() as listener:
        for command in ("query-status", "stop", "query-status", "cont", "system_reset",
                        "system_powerdown"):
            replies.append(await qmp.execute(command))
        while len(events) < 5:
            events.append((await asyncio.wait_for(listener.get(), 10))["event"])
    await qmp.disconnect()
    return greeting._raw["QMP"]["version"]["qemu"], replies, events


def check_conversation(result: tuple[object, list[object], list[str]]) -> None:
    """runstate.md §3.7: the replies and the events the run-state commands cause (their
    order relative to the replies is pinned on the wire by the golden transcripts); the
    second RESET is SeaBIOS's, 13 ms of run time after QEMU's (runstate.md, top), so
    whether it comes before POWERDOWN depends on how fast the client sends
    system_powerdown, as with a real QEMU."""
    version, replies, events = result
    assert version == {"micro": 0, "minor": 11, "major": 2}
    assert replies == [
        {"status": "running", "singlestep": False, "running": True}, {},
        {"status": "paused", "singlestep": False, "running": False}, {}, {}, {}]
    assert events[:3] == ["STOP", "RESUME", "RESET"]
    assert sorted(events[3:]) == ["POWERDOWN", "RESET"]


def test_readme_start_command_serves_qmp(spawn, tmp_path: Path) -> None:
    """README's first command, socket path moved into the test's directory."""
    args = [a.replace("/tmp/qmp.sock", str(tmp_path / "qmp.sock")) for a in readme_start_command()]
    assert any("qmp.sock" in a for a in args)
    proc = spawn(*args, "--emu-guest-powerdown=ignore")
    wait_for_socket(tmp_path / "qmp.sock", proc)
    check_conversation(asyncio.run(conversation(str(tmp_path / "qmp.sock"))))


def test_qemu_qmp_over_unix_and_tcp(spawn, tmp_path: Path) -> None:
    """The same conversation over a unix socket and a tcp port of one emulator."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = spawn("-machine", "pc", "-nodefaults", "-display", "none",
                 "-qmp", f"unix:{tmp_path / 'u.sock'},server,nowait",
                 "-qmp", f"tcp:127.0.0.1:{port},server,nowait",
                 "--emu-guest-powerdown=ignore")
    wait_for_socket(tmp_path / "u.sock", proc)
    check_conversation(asyncio.run(conversation(str(tmp_path / "u.sock"))))
    version, replies, _ = asyncio.run(conversation(("127.0.0.1", port)))
    assert version == {"micro": 0, "minor": 11, "major": 2}
    assert replies[0] == {"status": "running", "singlestep": False, "running": True}


def test_listening_socket_passed_in_by_fd(spawn, tmp_path: Path) -> None:
    """-chardev socket,id=X,fd=N,server,nowait: the parent's listening socket."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "passed.sock"))
    listener.listen(1)
    fd = listener.fileno()
    proc = spawn("-nodefaults", "-chardev", f"socket,id=mon,fd={fd},server,nowait",
                 "-mon", "chardev=mon,mode=control", pass_fds=(fd,))
    listener.close()
    wait_for_socket(tmp_path / "passed.sock", proc)

    async def query() -> object:
        qmp = QMPClient("fd")
        await qmp.connect(str(tmp_path / "passed.sock"))
        reply = await qmp.execute("query-name")
        await qmp.execute("quit")
        try:
            await qmp.disconnect()  # collects the EOF that followed quit
        except EOFError:
            pass
        return reply

    assert asyncio.run(query()) == {}
    assert proc.wait(timeout=10) == 0


def test_sigterm_sends_shutdown_and_exits_zero(spawn, tmp_path: Path) -> None:
    """runstate.md §4.8/qmp-protocol.md §10: SIGTERM -> SHUTDOWN {"guest": false},
    exit 0 even with -no-shutdown, and `terminating on signal 15` on stderr."""
    listener, sock, args = listening_monitor(tmp_path / "s.sock")
    proc = spawn("-nodefaults", "-no-shutdown", *args, pass_fds=(listener.fileno(),))
    listener.close()
    sock.sendall(b'{"execute":"qmp_capabilities"}')
    seen = b""
    while b'"return"' not in seen:
        seen += sock.recv(65536)
    proc.send_signal(signal.SIGTERM)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert json.loads(data.split(b"\r\n")[0])["data"] == {"guest": False}
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    assert b"terminating on signal 15" in proc.stderr.read()


def test_bad_option_exits_one_with_qemus_message(spawn) -> None:
    """vl.c: an unknown option -> `-foo: invalid option`, status 1."""
    proc = spawn("-foo")
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    assert proc.stderr.read().decode().endswith(": -foo: invalid option\n")


def test_daemonize_and_pidfile(spawn, tmp_path: Path) -> None:
    """os_daemonize: the parent returns (0) once the monitors listen; the daemon's pid
    is in the pid file, which it keeps locked; it lives on until quit."""
    pidfile = tmp_path / "emu.pid"
    sock_path = tmp_path / "d.sock"
    parent = spawn("-nodefaults", "-daemonize", "-pidfile", str(pidfile),
                   "-qmp", f"unix:{sock_path},server,nowait")
    assert parent.wait(timeout=20) == 0
    assert sock_path.exists()  # listening before the parent returned
    pid = int(pidfile.read_text().strip())
    assert pid != parent.pid
    os.kill(pid, 0)
    with open(pidfile, "rb+") as f:  # the daemon holds the lockf lock
        with pytest.raises(OSError):
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    second = spawn("-nodefaults", "-pidfile", str(pidfile))
    assert second.wait(timeout=20) == 1
    assert second.stderr is not None
    assert second.stderr.read().decode().endswith(
        ": could not acquire pid file: Resource temporarily unavailable\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(sock_path))
    exited = os.pidfd_open(pid)  # readable once the daemon (not our child) has exited
    try:
        sock.sendall(b'{"execute":"qmp_capabilities"}{"execute":"quit"}')
        while sock.recv(65536):
            pass
        if not select.select([exited], [], [], HANG_GUARD)[0]:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the daemon did not exit after quit")
    finally:
        os.close(exited)


def test_daemonize_refuses_stdio(spawn) -> None:
    """chardev/char-stdio.c: `cannot use stdio with -daemonize`, status 1."""
    proc = spawn("-nodefaults", "-daemonize", "-qmp", "stdio")
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    assert proc.stderr.read().decode().endswith(": cannot use stdio with -daemonize\n")


def test_chardevs_come_before_block_devices(spawn, tmp_path: Path) -> None:
    """vl.c main(): chardev_init_func runs before configure_blockdev, so a `server,wait`
    monitor waits for its client before a bad -drive is reported (status 1, EOF)."""
    sock_path = tmp_path / "w.sock"
    proc = spawn("-nodefaults", "-drive", "file=/nonexistent.qcow2",
                 "-qmp", f"unix:{sock_path},server")
    deadline = time.monotonic() + 20
    while not sock_path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None  # waiting for a client, the drive not opened yet
    sock = socket.socket(socket.AF_UNIX)
    while True:
        try:
            sock.connect(str(sock_path))
            break
        except ConnectionRefusedError:  # the file is bound, listen() not called yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert proc.wait(timeout=20) == 1
    assert sock.recv(65536) == b""
    sock.close()
    assert proc.stderr is not None
    assert proc.stderr.read().decode().splitlines()[-1].endswith(
        ": -drive file=/nonexistent.qcow2: Could not open '/nonexistent.qcow2': "
        "No such file or directory")
