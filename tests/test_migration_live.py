"""Two emulators in one trio run, migrating over real sockets (tcp, unix, fd, exec).

Each test checks the events of both sides against the sequences of
`../shared/reference/migration.md` §8 (QEMU 2.11 migration/migration.c
migration_thread, migration_completion, postcopy_start; savevm.c
loadvm_postcopy_handle_run_bh), in QEMU's order within each side. Everything runs
under trio's MockClock: the RAM model's passes take the Machine's (virtual) time.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
