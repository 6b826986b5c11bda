"""Two emulators in one trio run, migrating over real sockets (tcp, unix, fd, exec).

Each test checks the events of both sides against the sequences of
`../shared/reference/migration.md` §8 (QEMU 2.11 migration/migration.c
migration_thread, migration_completion, postcopy_start; savevm.c
loadvm_postcopy_handle_run_bh), in QEMU's order within each side. Everything runs
under trio's MockClock: the RAM model's passes take the Machine's (virtual) time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests import emulator
from tests.test_server import Client


class Side:
    """One emulator and a negotiated QMP client, with its events kept apart."""

    def __init__(self, built: emulator.Built, client: Client) -> None:
        self.built = built
        self.vm = built.vm
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.exit_code: list[int] = []

    async def cmd(self, name: str, **arguments: Any) -> dict[str, Any]:
        req: dict[str, Any] = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        await self.client.send(req)
        while True:
            msg = await self.client.line()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    async def event(self, name: str, status: str | None = None) -> dict[str, Any]:
        """Read until the event `name` (with `status`), keeping all in `events`."""
        for ev in self.events:
            if ev["event"] == name and (status is None or ev["data"]["status"] == status) \
                    and not ev.get("_seen"):
                ev["_seen"] = True
                return ev
        while True:
            msg = await self.client.line()
            assert "event" in msg, msg
            self.events.append(msg)
            if msg["event"] == name and (status is None or msg["data"]["status"] == status):
                msg["_seen"] = True
                return msg

    def names(self) -> list[str]:
        out = []
        for ev in self.events:
            if ev["event"] == "MIGRATION":
                out.append(ev["data"]["status"])
            elif ev["event"] == "MIGRATION_PASS":
                out.append(f"pass {ev['data']['pass']}")
            else:
                out.append(ev["event"])
        return out


async def start(nursery: trio.Nursery, tmp_path: Path, name: str, *argv: str) -> Side:
    built = emulator.build_from_argv(["--emu-strict", *argv], emulator.mock_clock())
    built.start()
    sock = tmp_path / f"{name}.qmp"
    side: Side
    codes: list[int] = []
    await emulator.serve(nursery, built.vm, [emulator.unix_monitor(sock)],
                         exited=codes.append)
    client = await Client.unix(str(sock))
    await client.negotiate()
    side = Side(built, client)
    side.exit_code = codes
    await side.cmd("migrate-set-capabilities",
                   capabilities=[{"capability": "events", "state": True}])
    return side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def pair(nursery: trio.Nursery, tmp_path: Path, uri: str,
               src_args: Sequence[str] = (), dst_args: Sequence[str] = ()) -> tuple[Side, Side]:
    dst = await start(nursery, tmp_path, "dst", "-incoming", uri, *dst_args)
    src = await start(nursery, tmp_path, "src", *src_args)
    return src, dst


async def test_precopy_of_a_running_source_over_tcp(tmp_path: Path, nursery: trio.Nursery,
                                                    mock_clock: trio.testing.MockClock) -> None:
    """§8.1: source setup (before the reply), pass 1, active, passes, STOP, the final
    pass, completed, runstate postmigrate; destination active, RESUME, completed,
    running."""
    mock_clock.autojump_threshold = 0
    uri = f"tcp:127.0.0.1:{free_port()}"
    src, dst = await pair(nursery, tmp_path, uri)
    assert (await dst.cmd("query-status"))["return"]["status"] == "inmigrate"
    await src.client.send({"execute": "migrate", "arguments": {"uri": uri}})
    assert (await src.client.line())["data"] == {"status": "setup"}
    assert await src.client.line() == {"return": {}}
    await src.event("MIGRATION", "completed")
    names = src.names()
    assert names[:2] == ["pass 1", "active"]
    stop = names.index("STOP")
    assert all(n.startswith("pass ") for n in names[2:stop])
    assert names[stop + 1:] == [f"pass {len(names[2:stop]) + 2}", "completed"]
    assert (await src.cmd("query-status"))["return"]["status"] == "postmigrate"
    info = (await src.cmd("query-migrate"))["return"]
    assert info["status"] == "completed" and info["ram"]["remaining"] == 0
    assert set(info) == {"status", "total-time", "downtime", "setup-time", "ram"}
    await dst.event("MIGRATION", "completed")
    assert dst.names() == ["active", "RESUME", "completed"]
    assert (await dst.cmd("query-status"))["return"]["status"] == "running"
    assert (await dst.cmd("query-migrate"))["return"] == {}


def after(names: list[str], first: str) -> list[str]:
    return names[names.index(first):]


async def migrate(src: Side, uri: str) -> None:
    """`migrate`, checking that MIGRATION setup precedes the reply (§6.1 step 5)."""
    await src.client.send({"execute": "migrate", "arguments": {"uri": uri}})
    setup = await src.client.line()
    assert setup["event"] == "MIGRATION" and setup["data"] == {"status": "setup"}
    src.events.append(setup)
    assert await src.client.line() == {"return": {}}


async def test_precopy_of_a_paused_source_over_unix(tmp_path: Path, nursery: trio.Nursery,
                                                    mock_clock: trio.testing.MockClock) -> None:
    """§8.6: a paused source sends no STOP/RESUME: setup, pass 1, active, pass 2,
    completed, runstate postmigrate; the destination ends `paused`, silently. (A
    firmware-only guest: its RAM fits in the first 100 ms period, as in the
    verified run.)"""
    mock_clock.autojump_threshold = 0
    uri = f"unix:{tmp_path / 'mig.sock'}"
    src, dst = await pair(nursery, tmp_path, uri, src_args=["--emu-guest=firmware"])
    await src.cmd("stop")
    await src.event("STOP")
    await migrate(src, uri)
    await src.event("MIGRATION", "completed")
    assert after(src.names(), "setup") == ["setup", "pass 1", "active", "pass 2",
                                           "completed"]
    assert (await src.cmd("query-status"))["return"]["status"] == "postmigrate"
    await dst.event("MIGRATION", "completed")
    assert dst.names() == ["active", "completed"]
    assert (await dst.cmd("query-status"))["return"] == {
        "running": False, "singlestep": False, "status": "paused"}


async def test_destination_with_dash_s_ends_paused(tmp_path: Path, nursery: trio.Nursery,
                                                   mock_clock: trio.testing.MockClock) -> None:
    """§7.3: a running source, a -S destination: `paused`, no RESUME."""
    mock_clock.autojump_threshold = 0
    uri = f"unix:{tmp_path / 'mig.sock'}"
    src, dst = await pair(nursery, tmp_path, uri, dst_args=["-S"])
    await migrate(src, uri)
    await dst.event("MIGRATION", "completed")
    assert dst.names() == ["active", "completed"]
    assert (await dst.cmd("query-status"))["return"]["status"] == "paused"


async def test_pause_before_switchover(tmp_path: Path, nursery: trio.Nursery,
                                       mock_clock: trio.testing.MockClock) -> None:
    """§8.2: STOP, pre-switchover (runstate finish-migrate, full stats); then
    migrate-continue: device, the final pass, completed."""
    mock_clock.autojump_threshold = 0
    uri = f"tcp:127.0.0.1:{free_port()}"
    src, dst = await pair(nursery, tmp_path, uri)
    await src.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "pause-before-switchover", "state": True}])
    await migrate(src, uri)
    await src.event("MIGRATION", "pre-switchover")
    names = src.names()
    assert names[-2:] == ["STOP", "pre-switchover"]
    assert (await src.cmd("query-status"))["return"]["status"] == "finish-migrate"
    info = (await src.cmd("query-migrate"))["return"]
    assert info["status"] == "pre-switchover"
    assert {"total-time", "expected-downtime", "setup-time", "ram"} <= set(info)
    assert await src.cmd("migrate-continue", state="pre-switchover") == {"return": {}}
    await src.event("MIGRATION", "completed")
    passes = [n for n in names if n.startswith("pass ")]
    assert after(src.names(), "pre-switchover") == [
        "pre-switchover", "device", f"pass {len(passes) + 1}", "completed"]
    await dst.event("MIGRATION", "completed")
    assert dst.names() == ["active", "RESUME", "completed"]


async def test_postcopy(tmp_path: Path, nursery: trio.Nursery,
                        mock_clock: trio.testing.MockClock) -> None:
    """§8.3: a guest that dirties faster than the link: migrate-start-postcopy
    switches: postcopy-active, STOP, the final pass, completed; the destination runs
    early (active, postcopy-active, RESUME, completed)."""
    mock_clock.autojump_threshold = 0
    uri = f"tcp:127.0.0.1:{free_port()}"
    src, dst = await pair(nursery, tmp_path, uri,
                          src_args=["--emu-behaviour=migration-dirty-rate=100000"])
    await src.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "postcopy-ram", "state": True}])
    await migrate(src, uri)
    await src.event("MIGRATION", "active")
    assert await src.cmd("migrate-start-postcopy") == {"return": {}}
    await src.event("MIGRATION", "completed")
    names = after(src.names(), "postcopy-active")
    assert names[:2] == ["postcopy-active", "STOP"]
    assert names[2].startswith("pass ") and names[3:] == ["completed"]
    assert (await src.cmd("query-status"))["return"]["status"] == "postmigrate"
    await dst.event("MIGRATION", "completed")
    assert dst.names() == ["active", "postcopy-active", "RESUME", "completed"]
    assert (await dst.cmd("query-status"))["return"]["status"] == "running"


async def test_cancel_during_active(tmp_path: Path, nursery: trio.Nursery,
                                    mock_clock: trio.testing.MockClock) -> None:
    """§8.4: cancelling before the reply, then cancelled; the source keeps running.
    The destination sees `failed` and exits with status 1 (§6.2)."""
    mock_clock.autojump_threshold = 0
    uri = f"tcp:127.0.0.1:{free_port()}"
    src, dst = await pair(nursery, tmp_path, uri,
                          src_args=["--emu-behaviour=migration-dirty-rate=100000"])
    await migrate(src, uri)
    await src.event("MIGRATION", "active")
    await src.client.send({"execute": "migrate_cancel"})
    ev = await src.client.line()
    assert ev["data"] == {"status": "cancelling"}
    src.events.append(ev)
    assert await src.client.line() == {"return": {}}
    await src.event("MIGRATION", "cancelled")
    assert "STOP" not in src.names() and "RESUME" not in src.names()
    assert (await src.cmd("query-migrate"))["return"] == {"status": "cancelled"}
    assert (await src.cmd("query-status"))["return"]["status"] == "running"
    await dst.event("MIGRATION", "failed")
    await trio.testing.wait_all_tasks_blocked()
    assert dst.exit_code == [1]


async def test_connection_refused(tmp_path: Path, nursery: trio.Nursery,
                                  mock_clock: trio.testing.MockClock) -> None:
    """§8.5/§6.1: setup, the reply, then failed; error-desc says why."""
    mock_clock.autojump_threshold = 0
    src = await start(nursery, tmp_path, "src")
    await migrate(src, f"tcp:127.0.0.1:{free_port()}")
    await src.event("MIGRATION", "failed")
    assert (await src.cmd("query-migrate"))["return"] == {
        "status": "failed", "error-desc": "Failed to connect socket: Connection refused"}


async def test_unix_socket_missing(tmp_path: Path, nursery: trio.Nursery,
                                   mock_clock: trio.testing.MockClock) -> None:
    """§6.1: unix: to a path nobody listens on."""
    mock_clock.autojump_threshold = 0
    src = await start(nursery, tmp_path, "src")
    path = tmp_path / "nobody.sock"
    await migrate(src, f"unix:{path}")
    await src.event("MIGRATION", "failed")
    assert (await src.cmd("query-migrate"))["return"] == {
        "status": "failed",
        "error-desc": f"Failed to connect socket {path}: No such file or directory"}


async def test_destination_gone_mid_stream(tmp_path: Path, nursery: trio.Nursery,
                                           mock_clock: trio.testing.MockClock) -> None:
    """§8.5: the destination goes away during transfer: the source says `failed`
    without error-desc and keeps running."""
    mock_clock.autojump_threshold = 0
    uri = f"tcp:127.0.0.1:{free_port()}"
    src, dst = await pair(nursery, tmp_path, uri,
                          src_args=["--emu-behaviour=migration-dirty-rate=100000"])
    await migrate(src, uri)
    await src.event("MIGRATION", "active")
    await dst.client.send({"execute": "quit"})
    await src.event("MIGRATION", "failed")
    assert (await src.cmd("query-migrate"))["return"] == {"status": "failed"}
    assert (await src.cmd("query-status"))["return"]["status"] == "running"


@pytest.mark.parametrize(("dst_args", "message"), [
    (["-M", "q35"], "Machine type received is 'pc-i440fx-2.11' and local is 'pc-q35-2.11'"),
    (["-m", "256"], "Length mismatch: pc.ram: 0x8000000 in != 0x10000000: Invalid argument"),
])
async def test_configuration_mismatch(tmp_path: Path, nursery: trio.Nursery,
                                      mock_clock: trio.testing.MockClock,
                                      capsys: pytest.CaptureFixture[str],
                                      dst_args: list[str], message: str) -> None:
    """savevm.c configuration_post_load / exec.c qemu_ram_resize: the destination
    reports, says `failed` and exits 1; the source sees `failed`."""
    mock_clock.autojump_threshold = 0
    uri = f"tcp:127.0.0.1:{free_port()}"
    src, dst = await pair(nursery, tmp_path, uri, dst_args=dst_args)
    await migrate(src, uri)
    await dst.event("MIGRATION", "failed")
    await src.event("MIGRATION", "failed")
    await trio.testing.wait_all_tasks_blocked()
    assert dst.exit_code == [1]
    err = capsys.readouterr().err
    assert f": {message}\n" in err
    assert ": load of migration failed: Invalid argument\n" in err


async def test_getfd_then_migrate_fd_to_a_file_and_restore(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    """libvirt's save: getfd with the file's descriptor over SCM_RIGHTS, `migrate
    fd:NAME` (the descriptor is consumed, §6.1), then restore from the descriptor
    number with -incoming defer and migrate-incoming fd:N (§7.1)."""
    mock_clock.autojump_threshold = 0
    src = await start(nursery, tmp_path, "src")
    await src.cmd("stop")
    path = tmp_path / "saved"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        await src.client.send({"execute": "getfd", "arguments": {"fdname": "mig"}}, fds=[fd])
        assert await src.client.line() == {"return": {}}
    finally:
        os.close(fd)
    await migrate(src, "fd:mig")
    await src.event("MIGRATION", "completed")
    assert await src.cmd("closefd", fdname="mig") == {"error": {
        "class": "GenericError", "desc": "File descriptor named 'mig' not found"}}
    assert path.read_bytes().startswith(b"QMPEMU-MIGRATE\r\n")
    rfd = os.open(path, os.O_RDONLY)
    # -incoming defer, so that the events capability is on before the load starts
    dst = await start(nursery, tmp_path, "dst", "-incoming", "defer")
    assert await dst.cmd("migrate-incoming", uri=f"fd:{rfd}") == {"return": {}}
    await dst.event("MIGRATION", "completed")
    assert (await dst.cmd("query-status"))["return"]["status"] == "paused"


async def test_exec_save_and_restore(tmp_path: Path, nursery: trio.Nursery,
                                     mock_clock: trio.testing.MockClock) -> None:
    """virsh save/restore with exec: (allowed by --emu-allow-exec-migration):
    `exec:cat > FILE`, then `-incoming "exec:cat FILE"`; the running source's guest
    runs again on the destination."""
    mock_clock.autojump_threshold = 0
    src = await start(nursery, tmp_path, "src", "--emu-allow-exec-migration")
    path = tmp_path / "saved"
    await migrate(src, f"exec:cat > {path}")
    await src.event("MIGRATION", "completed")
    assert path.stat().st_size > 0
    dst = await start(nursery, tmp_path, "dst", "--emu-allow-exec-migration",
                      "-incoming", "defer")
    assert await dst.cmd("migrate-incoming", uri=f"exec:cat {path}") == {"return": {}}
    await dst.event("MIGRATION", "completed")
    assert (await dst.cmd("query-status"))["return"]["status"] == "running"


async def test_incoming_listener_that_cannot_bind_exits(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    """vl.c: a failed -incoming is `-incoming URI: <error>` on stderr and exit 1
    (util/qemu-sockets.c inet_listen_saddr: a port in use is "Failed to find an available
    port")."""
    mock_clock.autojump_threshold = 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        built = emulator.build_from_argv(["--emu-strict", "-incoming",
                                          f"tcp:127.0.0.1:{port}"], emulator.mock_clock())
        built.start()
        codes: list[int] = []
        await emulator.serve(nursery, built.vm, [emulator.unix_monitor(tmp_path / "q")],
                             exited=codes.append)
        await trio.testing.wait_all_tasks_blocked()
    assert codes == [1]
    assert (f": -incoming tcp:127.0.0.1:{port}: Failed to find an available port: Address "
            "already in use\n") in capsys.readouterr().err
