"""The `qmp-emulator` program started the way QEMU's own test harness starts QEMU.

QEMU 2.11's tests/libqtest.c (qtest_init_without_qmp_handshake) binds two unix
sockets itself, then runs `sh -c "exec QEMU -qtest unix:SOCK,nowait -qtest-log
/dev/null -qmp unix:QMP,nowait -machine accel=qtest -display none ARGS"` and accepts
the two connections QEMU makes (both chardevs are clients: no `server`). It asks the
target's endianness first, reads the QMP greeting and negotiates, and ends the
process with SIGTERM (qtest_quit: kill_qemu). These tests do exactly that with
plain sockets, as libqtest does, and pin: the qtest replies of qtest.c, the guest's
virtual clock moved only by the client, a guest action on a port seen on QMP, the
quiet SIGTERM of a qtest driver (vl.c qemu_kill_report), and the abort of a failed
qtest.c assertion.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_program import HANG_GUARD, program

LIBQTEST_ARGS = "-qtest unix:{sock},nowait -qtest-log /dev/null " \
                "-qmp unix:{qmp},nowait -machine accel=qtest -display none"


class LibQtest:
    """libqtest's QTestState: the child, its qtest socket and its QMP socket."""

    def __init__(self, tmp_path: Path, extra_args: str = "") -> None:
        sock_path = tmp_path / "qtest.sock"
        qmp_path = tmp_path / "qtest.qmp"
        listeners = []
        for path in (sock_path, qmp_path):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(1)
            listener.settimeout(HANG_GUARD)
            listeners.append(listener)
        binary = " ".join(program())
        command = f"exec {binary} " + LIBQTEST_ARGS.format(sock=sock_path, qmp=qmp_path) + \
            (f" {extra_args}" if extra_args else "")
        env = dict(os.environ, QEMU_AUDIO_DRV="none",
                   QMP_EMULATOR_CACHE_DIR=str(tmp_path / "cache"))
        self.proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        try:
            self.fd, _ = listeners[0].accept()
            self.qmp_fd, _ = listeners[1].accept()
        finally:
            for listener in listeners:
                listener.close()
        self.fd.settimeout(HANG_GUARD)
        self.qmp_fd.settimeout(HANG_GUARD)
        self.rx = b""
        self.qmp_rx = b""

    def _line(self, which: str) -> bytes:
        sock = self.fd if which == "qtest" else self.qmp_fd
        buf = self.rx if which == "qtest" else self.qmp_rx
        while b"\n" not in buf:
            chunk = sock.recv(1024)
            if not chunk:
                raise AssertionError("Broken pipe")
            buf += chunk
        line, _, rest = buf.partition(b"\n")
        if which == "qtest":
            self.rx = rest
        else:
            self.qmp_rx = rest
        return line

    def command(self, line: str) -> str:
        """qtest_sendf + qtest_rsp (no IRQ lines come: nothing raises interrupts)."""
        self.fd.sendall(line.encode() + b"\n")
        return self._line("qtest").decode()

    def qmp(self, request: dict[str, object] | None = None) -> dict[str, object]:
        if request is not None:
            self.qmp_fd.sendall(json.dumps(request).encode())
        return json.loads(self._line("qmp"))

    def quit(self) -> tuple[int, bytes]:
        """qtest_quit: SIGTERM, then waitpid."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> tuple[int, bytes]:
        code = self.proc.wait(timeout=HANG_GUARD)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=HANG_GUARD)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.fd.close()
        self.qmp_fd.close()


@pytest.fixture
def libqtest(tmp_path: Path) -> Iterator:
    started: list[LibQtest] = []

    def start(extra_args: str = "") -> LibQtest:
        s = LibQtest(tmp_path, extra_args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def test_libqtest_session(libqtest) -> None:
    """qtest_init, then what QEMU's tests do: ports, memory, the clock, a guest reset
    through port 0xcf9 seen as RESET {"guest": true} on QMP, and qtest_quit's SIGTERM:
    SHUTDOWN {"guest": false}, exit 0, and nothing on stderr."""
    s = libqtest()
    assert s.command("endianness") == "OK little"
    greeting = s.qmp()
    assert greeting["QMP"]["version"]["qemu"] == {"micro": 0, "minor": 11, "major": 2}
    assert s.qmp({"execute": "qmp_capabilities"}) == {"return": {}}
    assert s.command("clock_step 1000000") == "OK 1000000"
    assert s.command("clock_set 500") == "OK 1000000"
    assert s.command("inb 0x64") == "OK 0x0018"
    assert s.command("writel 0x100000 0xdeadbeef") == "OK"
    assert s.command("read 0x100000 4") == "OK 0xefbeadde"
    assert s.command("b64read 0x100000 4") == "OK 776t3g=="
    assert s.command("outb 0xcf9 0x6") == "OK"
    event = s.qmp()
    assert (event["event"], event["data"]) == ("RESET", {"guest": True})
    assert s.qmp({"execute": "query-status"})["return"] == {
        "status": "running", "singlestep": False, "running": True}
    assert s.command("readl 0x100000") == "OK 0x00000000deadbeef"  # RAM survives
    assert s.command("clock_step") == "OK 14000000"  # SeaBIOS's reset, 13 ms on
    event = s.qmp()
    assert (event["event"], event["data"]) == ("RESET", {"guest": True})
    code, stderr = s.quit()
    event = s.qmp()
    assert (event["event"], event["data"]) == ("SHUTDOWN", {"guest": False})
    assert (code, stderr) == (0, b"")


def test_guest_power_off_through_the_acpi_port(libqtest) -> None:
    """PM1a_CNT with SLP_EN and S5: the qtest reply, then SHUTDOWN {"guest": true}
    on QMP, and QEMU exits 0."""
    s = libqtest("-machine pc")
    assert s.command("endianness") == "OK little"
    s.qmp()
    s.qmp({"execute": "qmp_capabilities"})
    assert s.command("outw 0x604 0x2000") == "OK"
    event = s.qmp()
    assert (event["event"], event["data"]) == ("SHUTDOWN", {"guest": True})
    assert s.wait() == (0, b"")


def test_a_failed_assertion_kills_the_process(libqtest) -> None:
    """qtest.c g_assert(): GLib's message on stderr, then abort(): SIGABRT."""
    s = libqtest()
    s.fd.sendall(b"outb 0x80\n")
    code, stderr = s.wait()
    assert code == -signal.SIGABRT
    assert stderr == (b"**\nERROR:qtest.c:337:qtest_process_command: "
                      b"assertion failed: (words[1] && words[2])\n")


def test_an_unreachable_qtest_socket(tmp_path: Path) -> None:
    """qemu_chr_new fails (the client socket cannot connect): the reason, then
    qtest_init's message, exit 1."""
    missing = tmp_path / "nobody.sock"
    proc = subprocess.run([*program(), "-qtest", f"unix:{missing},nowait", "-machine",
                           "accel=qtest", "-display", "none"], capture_output=True,
                          timeout=HANG_GUARD, cwd=tmp_path,
                          env=dict(os.environ, QMP_EMULATOR_CACHE_DIR=str(tmp_path / "c")))
    name = Path(program()[0]).name if len(program()) == 1 else "qmp-emulator"
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"{name}: Failed to connect socket {missing}: No such file or directory\n"
        f'{name}: Failed to initialize device for qtest: "unix:{missing},nowait"\n')
