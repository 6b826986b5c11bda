"""Migration between two processes of the installed program, over real unix and tcp sockets.

The other migration tests run two emulators in one trio run on the MockClock; this
one is what a management tool does: two `qmp-emulator` processes, the destination
started with `-incoming unix:PATH`, each with its own QMP socket, the events of both
sides checked against ../shared/reference/migration.md §8.1 (QEMU 2.11
migration/migration.c migration_thread and process_incoming_migration_co).
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
