"""Migration between two processes of the installed program, over real unix and tcp sockets.

The other migration tests run two emulators in one trio run on the MockClock; these
are what a management tool does: two `qmp-emulator` processes, the destination
started with `-incoming unix:PATH` or `tcp:HOST:PORT`, each with its own QMP socket,
the events of both sides checked against every sequence of
../shared/reference/migration.md §8 in QEMU's order (QEMU 2.11 migration/migration.c
migration_thread, migration_completion, postcopy_start, migrate_fd_cancel,
process_incoming_migration_co): precopy of a running and of a paused source,
pause-before-switchover, postcopy, cancel, failure at connect, the destination
killed mid-stream, a configuration mismatch, and block migration. Nothing sleeps:
each test reads events until the one it waits for; the sockets' HANG_GUARD timeout
is only a safety net.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_program import HANG_GUARD, wait_for_socket


class Qmp:
    """A blocking QMP client that keeps the events it reads."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(HANG_GUARD)
        self.sock.connect(str(path))
        self.buf = b""
        self.events: list[dict[str, Any]] = []
        self.line()
        assert self.cmd("qmp_capabilities") == {"return": {}}

    def line(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            assert data, "the emulator closed the connection"
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def cmd(self, name: str, **arguments: Any) -> dict[str, Any]:
        req: dict[str, Any] = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode())
        while "event" in (msg := self.line()):
            self.events.append(msg)
        return msg

    def until(self, event: str, status: str) -> None:
        while not any(e["event"] == event and e.get("data", {}).get("status") == status
                      for e in self.events):
            msg = self.line()
            if "event" in msg:
                self.events.append(msg)

    def names(self) -> list[str]:
        return [e["data"]["status"] if e["event"] == "MIGRATION" else
                f"pass {e['data']['pass']}" if e["event"] == "MIGRATION_PASS" else e["event"]
                for e in self.events]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_precopy_between_two_processes(spawn, tmp_path: Path, transport: str) -> None:
    """§8.1 across processes: the source's setup (before the `migrate` reply), active,
    passes, STOP, completed and postmigrate; the destination's active, RESUME,
    completed and running; both processes then quit with status 0."""
    src_q, dst_q = tmp_path / "src.sock", tmp_path / "dst.sock"
    uri = f"unix:{tmp_path / 'mig.sock'}" if transport == "unix" else \
        f"tcp:127.0.0.1:{_free_port()}"
    common = ("-machine", "pc", "-m", "64", "-nodefaults", "-display", "none")
    dst_proc = spawn(*common, "-qmp", f"unix:{dst_q},server,nowait", "-incoming", uri)
    src_proc = spawn(*common, "-qmp", f"unix:{src_q},server,nowait")
    wait_for_socket(dst_q, dst_proc)
    wait_for_socket(src_q, src_proc)
    dst, src = Qmp(dst_q), Qmp(src_q)
    for side in (src, dst):
        assert side.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "events", "state": True}]) == {"return": {}}
    assert src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40}) == {"return": {}}
    assert dst.cmd("query-status")["return"]["status"] == "inmigrate"
    assert src.cmd("migrate", uri=uri) == {"return": {}}
    assert src.names()[0] == "setup"  # the event comes before the reply
    src.until("MIGRATION", "completed")
    names = src.names()
    assert names[1:3] == ["pass 1", "active"] and names[-1] == "completed"
    assert "STOP" in names and names.index("STOP") < names.index("completed")
    dst.until("MIGRATION", "completed")
    assert dst.names() == ["active", "RESUME", "completed"]
    assert src.cmd("query-status")["return"]["status"] == "postmigrate"
    assert dst.cmd("query-status")["return"]["status"] == "running"
    assert src.cmd("query-migrate")["return"]["status"] == "completed"
    for side, proc in ((src, src_proc), (dst, dst_proc)):
        side.sock.sendall(b'{"execute":"quit"}')
        assert proc.wait(timeout=HANG_GUARD) == 0


def test_shared_image_is_handed_over(spawn, tmp_path: Path) -> None:
    """Shared storage: the destination, started while the source runs on the same
    qcow2 image, opens it inactive and takes no lock (vl.c sets inmigrate while it
    reads -incoming; block/file-posix.c raw_handle_perm_lock skips inactive nodes).
    At the switch-over the source releases the image (bdrv_inactivate_all in
    migration_completion) and the destination takes it (bdrv_invalidate_cache_all in
    process_incoming_migration_bh): then another writer is refused by the
    destination's lock."""
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    src_q, dst_q = tmp_path / "src.sock", tmp_path / "dst.sock"
    uri = f"unix:{tmp_path / 'mig.sock'}"
    common = ("-machine", "pc", "-m", "64", "-nodefaults", "-display", "none",
              "-drive", f"file={image},format=qcow2,if=none,id=d0",
              "-device", "virtio-blk-pci,drive=d0,id=vd0")
    src_proc = spawn(*common, "-qmp", f"unix:{src_q},server,nowait")
    wait_for_socket(src_q, src_proc)
    dst_proc = spawn(*common, "-qmp", f"unix:{dst_q},server,nowait", "-incoming", uri)
    wait_for_socket(dst_q, dst_proc)
    src, dst = Qmp(src_q), Qmp(dst_q)
    for side in (src, dst):
        assert side.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "events", "state": True}]) == {"return": {}}
    assert src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40}) == {"return": {}}
    assert src.cmd("migrate", uri=uri) == {"return": {}}
    src.until("MIGRATION", "completed")
    dst.until("MIGRATION", "completed")
    assert dst.cmd("query-status")["return"]["status"] == "running"
    [blk] = dst.cmd("query-block")["return"]
    assert blk["device"] == "d0" and blk["inserted"]["file"] == str(image)
    busy = subprocess.run(["qemu-io", "-c", "write 0 4k", str(image)], capture_output=True,
                          text=True)
    assert busy.returncode != 0 and 'Failed to get "write" lock' in busy.stderr
    for side, proc in ((src, src_proc), (dst, dst_proc)):
        side.sock.sendall(b'{"execute":"quit"}')
        assert proc.wait(timeout=HANG_GUARD) == 0


COMMON = ("-machine", "pc", "-m", "64", "-nodefaults", "-display", "none")


class Pair:
    """A source and an `-incoming` destination process, events on on both sides."""

    def __init__(self, spawn: Any, tmp_path: Path, *, src_args: tuple[str, ...] = (),
                 dst_args: tuple[str, ...] = (), bandwidth: int = 1 << 40,
                 transport: str = "unix") -> None:
        self.uri = f"unix:{tmp_path / 'mig.sock'}" if transport == "unix" else \
            f"tcp:127.0.0.1:{_free_port()}"
        src_q, dst_q = tmp_path / "src.sock", tmp_path / "dst.sock"
        self.dst_proc = spawn(*COMMON, "-qmp", f"unix:{dst_q},server,nowait",
                              "-incoming", self.uri, *dst_args)
        self.src_proc = spawn(*COMMON, "-qmp", f"unix:{src_q},server,nowait", *src_args)
        wait_for_socket(dst_q, self.dst_proc)
        wait_for_socket(src_q, self.src_proc)
        self.dst, self.src = Qmp(dst_q), Qmp(src_q)
        for side in (self.src, self.dst):
            assert side.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "events", "state": True}]) == {"return": {}}
        assert self.src.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth}) == \
            {"return": {}}

    def migrate(self) -> None:
        """`migrate`: MIGRATION setup comes before the reply (§6.1)."""
        before = len(self.src.events)
        assert self.src.cmd("migrate", uri=self.uri) == {"return": {}}
        assert self.src.names()[before:] == ["setup"]

    def status(self, side: Qmp) -> str:
        status: str = side.cmd("query-status")["return"]["status"]
        return status

    def quit(self) -> None:
        for side, proc in ((self.src, self.src_proc), (self.dst, self.dst_proc)):
            if proc.poll() is None:
                side.sock.sendall(b'{"execute":"quit"}')
                assert proc.wait(timeout=HANG_GUARD) == 0


def after(names: list[str], first: str) -> list[str]:
    return names[names.index(first):]


def test_paused_source_between_two_processes(spawn, tmp_path: Path) -> None:
    """§8.6: a paused source sends no STOP/RESUME: setup, pass 1, active, pass 2,
    completed, runstate postmigrate; the destination ends `paused` without RESUME
    (migration/migration.c process_incoming_migration_bh keeps the source's
    global state)."""
    p = Pair(spawn, tmp_path, src_args=("--emu-guest=firmware",))
    assert p.src.cmd("stop") == {"return": {}}
    while "STOP" not in p.src.names():
        p.src.events.append(p.src.line())
    p.migrate()
    p.src.until("MIGRATION", "completed")
    assert after(p.src.names(), "setup") == ["setup", "pass 1", "active", "pass 2",
                                             "completed"]
    p.dst.until("MIGRATION", "completed")
    assert p.dst.names() == ["active", "completed"]
    assert p.status(p.src) == "postmigrate"
    assert p.status(p.dst) == "paused"
    p.quit()


def test_pause_before_switchover_between_two_processes(spawn, tmp_path: Path) -> None:
    """§8.2: STOP then pre-switchover (runstate finish-migrate); migrate-continue:
    device, the final pass, completed; the destination's sequence is unchanged."""
    p = Pair(spawn, tmp_path, transport="tcp")
    assert p.src.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "pause-before-switchover", "state": True}]) == {"return": {}}
    p.migrate()
    p.src.until("MIGRATION", "pre-switchover")
    assert p.src.names()[-2:] == ["STOP", "pre-switchover"]
    assert p.status(p.src) == "finish-migrate"
    assert p.src.cmd("query-migrate")["return"]["status"] == "pre-switchover"
    passes = len([n for n in p.src.names() if n.startswith("pass ")])
    assert p.src.cmd("migrate-continue", state="pre-switchover") == {"return": {}}
    p.src.until("MIGRATION", "completed")
    assert after(p.src.names(), "pre-switchover") == [
        "pre-switchover", "device", f"pass {passes + 1}", "completed"]
    p.dst.until("MIGRATION", "completed")
    assert p.dst.names() == ["active", "RESUME", "completed"]
    assert p.status(p.src) == "postmigrate" and p.status(p.dst) == "running"
    p.quit()


def test_postcopy_between_two_processes(spawn, tmp_path: Path) -> None:
    """§8.3: a guest that dirties faster than the link never converges;
    migrate-start-postcopy: postcopy-active, STOP, the final pass, completed; the
    destination runs before the pages are all there (active, postcopy-active,
    RESUME, completed) [migration/migration.c postcopy_start, savevm.c
    loadvm_postcopy_handle_run_bh]."""
    p = Pair(spawn, tmp_path, src_args=("--emu-behaviour=migration-dirty-rate=10000000",),
             bandwidth=256 << 20)
    for side in (p.src, p.dst):
        assert side.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "postcopy-ram", "state": True}]) == {"return": {}}
    p.migrate()
    p.src.until("MIGRATION", "active")
    assert p.src.cmd("migrate-start-postcopy") == {"return": {}}
    p.src.until("MIGRATION", "completed")
    names = after(p.src.names(), "postcopy-active")
    assert names[:2] == ["postcopy-active", "STOP"]
    assert names[2].startswith("pass ") and names[3:] == ["completed"]
    p.dst.until("MIGRATION", "completed")
    assert p.dst.names() == ["active", "postcopy-active", "RESUME", "completed"]
    assert p.status(p.src) == "postmigrate" and p.status(p.dst) == "running"
    p.quit()


def test_cancel_during_active_between_two_processes(spawn, tmp_path: Path) -> None:
    """§8.4: `cancelling` before migrate_cancel's reply, then `cancelled`; the
    source keeps running (no STOP/RESUME). The destination says `failed` and exits
    with status 1 [migration/migration.c migrate_fd_cancel,
    process_incoming_migration_co]."""
    p = Pair(spawn, tmp_path, src_args=("--emu-behaviour=migration-dirty-rate=100000",),
             bandwidth=8 << 20, transport="tcp")
    p.migrate()
    p.src.until("MIGRATION", "active")
    before = len(p.src.events)
    assert p.src.cmd("migrate_cancel") == {"return": {}}
    assert p.src.names()[before:] == ["cancelling"]
    p.src.until("MIGRATION", "cancelled")
    assert after(p.src.names(), "cancelling") == ["cancelling", "cancelled"]
    assert "STOP" not in p.src.names() and "RESUME" not in p.src.names()
    assert p.src.cmd("query-migrate")["return"] == {"status": "cancelled"}
    assert p.status(p.src) == "running"
    p.dst.until("MIGRATION", "failed")
    assert p.dst.names() == ["active", "failed"]
    assert p.dst_proc.wait(timeout=HANG_GUARD) == 1
    assert p.dst_proc.stderr is not None
    assert p.dst_proc.stderr.read().decode().endswith(
        "load of migration failed: Input/output error\n")
    p.quit()


def test_failure_at_connect(spawn, tmp_path: Path) -> None:
    """§8.5 / §6.1: nobody listens: setup before the reply, then `failed` with the
    connect error as error-desc; the source keeps running."""
    src_q = tmp_path / "src.sock"
    proc = spawn(*COMMON, "-qmp", f"unix:{src_q},server,nowait")
    wait_for_socket(src_q, proc)
    src = Qmp(src_q)
    assert src.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "events", "state": True}]) == {"return": {}}
    assert src.cmd("migrate", uri=f"tcp:127.0.0.1:{_free_port()}") == {"return": {}}
    src.until("MIGRATION", "failed")
    assert src.names() == ["setup", "failed"]
    assert src.cmd("query-migrate")["return"] == {
        "status": "failed", "error-desc": "Failed to connect socket: Connection refused"}
    assert src.cmd("query-status")["return"]["status"] == "running"
    src.sock.sendall(b'{"execute":"quit"}')
    assert proc.wait(timeout=HANG_GUARD) == 0


def test_destination_killed_mid_stream(spawn, tmp_path: Path) -> None:
    """§8.5: the destination process is killed while the stream runs (a slow
    max-bandwidth keeps it `active`): the source says `failed` without error-desc
    and keeps running, with no STOP."""
    p = Pair(spawn, tmp_path, bandwidth=1 << 20)
    p.migrate()
    p.src.until("MIGRATION", "active")
    p.dst.until("MIGRATION", "active")
    p.dst_proc.kill()
    assert p.dst_proc.wait(timeout=HANG_GUARD) != 0
    p.src.until("MIGRATION", "failed")
    names = after(p.src.names(), "active")
    assert names[-1] == "failed" and "STOP" not in names
    assert all(n.startswith("pass ") for n in names[1:-1])
    assert p.src.cmd("query-migrate")["return"] == {"status": "failed"}
    assert p.status(p.src) == "running"
    p.src.sock.sendall(b'{"execute":"quit"}')
    assert p.src_proc.wait(timeout=HANG_GUARD) == 0


def test_configuration_mismatch_between_two_processes(spawn, tmp_path: Path) -> None:
    """§8.5: a destination with another RAM size fails on the source's
    configuration (exec.c qemu_ram_resize's text as ram_load reports it), prints
    `load of migration failed`, says `failed` and exits 1; the source, still
    iterating on a slow link, sees `failed` and keeps running."""
    p = Pair(spawn, tmp_path, dst_args=("-m", "128"), bandwidth=1 << 20, transport="tcp")
    p.migrate()
    p.dst.until("MIGRATION", "failed")
    assert p.dst.names() == ["active", "failed"]
    assert p.dst_proc.wait(timeout=HANG_GUARD) == 1
    assert p.dst_proc.stderr is not None
    err = p.dst_proc.stderr.read().decode()
    assert ": Length mismatch: pc.ram: 0x4000000 in != 0x8000000: Invalid argument\n" in err
    assert err.endswith(": load of migration failed: Invalid argument\n")
    p.src.until("MIGRATION", "failed")
    names = after(p.src.names(), "setup")
    assert names[:3] == ["setup", "pass 1", "active"] and names[-1] == "failed"
    assert "STOP" not in names
    assert p.status(p.src) == "running"
    p.src.sock.sendall(b'{"execute":"quit"}')
    assert p.src_proc.wait(timeout=HANG_GUARD) == 0


def test_block_migration_between_two_processes(spawn, tmp_path: Path) -> None:
    """migrate blk across processes (migration/block.c): the destination's empty
    image ends equal to the source's, written by qemu-io with patterns; the
    destination prints block_load's progress on stdout."""
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "4M"],
                       check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 512k", "-c",
                    "write -P 0x62 3M 4k", str(src_image)], check=True, capture_output=True)

    def drive(image: Path) -> tuple[str, ...]:
        return ("-drive", f"file={image},format=qcow2,if=none,id=d0",
                "-device", "virtio-blk-pci,drive=d0,id=vd0")

    p = Pair(spawn, tmp_path, src_args=drive(src_image), dst_args=drive(dst_image))
    before = len(p.src.events)
    assert p.src.cmd("migrate", uri=p.uri, blk=True) == {"return": {}}
    assert p.src.names()[before:] == ["setup"]
    p.src.until("MIGRATION", "completed")
    p.dst.until("MIGRATION", "completed")
    assert p.dst.names() == ["active", "RESUME", "completed"]
    p.quit()
    assert p.dst_proc.stdout is not None
    out = p.dst_proc.stdout.read().decode()
    assert out.startswith("Receiving block device images\n") and out.endswith(
        "Completed 100 %\n")
    cmp = subprocess.run(["qemu-img", "compare", str(src_image), str(dst_image)],
                         capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
