"""A Hypothesis state machine over a migration source, the destination simulated.

Rules issue the source's commands (migrate-set-capabilities, migrate-set-parameters,
migrate (with blk/inc: a block migration of a null-co disk), migrate_cancel,
migrate-continue, migrate-start-postcopy, stop, cont) through `Dispatcher.execute`
on a strict machine (`--emu-strict`: every reply and event conforms to the schema or
the step fails), and play the other side through
`migration.host.RecordingEdge`: the connection is made or refused, the destination
accepts the stream or breaks it, and time passes. Rules in the wrong state assert
QEMU 2.11's error [migration/migration.c qmp_migrate, qmp_migrate_set_capabilities,
qmp_migrate_continue, qmp_migrate_start_postcopy; ../shared/reference/migration.md
§4–§6].

Invariants after every step: each migration (a MIGRATION `setup`) ends in at most
one terminal status (completed, failed, cancelled), and query-migrate agrees with the
last MIGRATION event; the run state agrees with the status (finish-migrate while the
source is stopped for the switch-over, §9) and with the last STOP/RESUME sent.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from migration.host import RecordingChannel
from migration.states import SETUP_OR_ACTIVE
from tests.test_migration_commands import Vm

TERMINAL = {"completed", "failed", "cancelled"}
CAPS = st.sampled_from(["xbzrle", "auto-converge", "compress", "postcopy-ram",
                        "pause-before-switchover", "block", "return-path"])
URIS = st.sampled_from(["tcp:127.0.0.1:4444", "tcp:127.0.0.1:4444", "unix:/nonexistent",
                        "tcp:127.0.0.1", "ftp:x", "fd:none"])


class MigrationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A 3 MiB writable null-co disk: a block migration has a device to copy.
        self.source = Vm("-M", "pc", "-m", "16", "--emu-behaviour=migration-dirty-rate=3000",
                         "-drive", "driver=null-co,size=3145728,if=none,id=d0")
        self.vm = self.source.sync
        self.edge = self.source.edge
        self.run = self.source.run
        self.ok = self.source.ok
        self.channels: list[RecordingChannel] = []
        self.source.caps(events=True)

    def teardown(self) -> None:
        self.vm.close()

    # -- helpers -------------------------------------------------------------------

    def status(self) -> str:
        return str(self.ok("query-migrate").get("status", "none"))

    def end(self) -> Any:
        return self.edge.outgoing[-1][2] if self.edge.outgoing else None

    # -- rules ---------------------------------------------------------------------

    @rule(cap=CAPS, state=st.booleans())
    def set_capability(self, cap: str, state: bool) -> None:
        before = self.status()
        reply = self.run("migrate-set-capabilities",
                         capabilities=[{"capability": cap, "state": state}])
        if before in SETUP_OR_ACTIVE:
            assert reply["error"]["desc"] == "There's a migration process in progress"

    @rule(bandwidth=st.sampled_from([0, 1 << 20, 1 << 25, 1 << 30]),
          downtime=st.sampled_from([0, 1, 300, 2000001]))
    def set_parameters(self, bandwidth: int, downtime: int) -> None:
        reply = self.run("migrate-set-parameters",
                         **{"max-bandwidth": bandwidth, "downtime-limit": downtime})
        assert ("error" in reply) == (downtime > 2000000)

    @rule(uri=URIS)
    def migrate(self, uri: str) -> None:
        before = self.status()
        runstate = self.ok("query-status")["status"]
        reply = self.run("migrate", uri=uri)
        if before in SETUP_OR_ACTIVE | {"cancelling"}:
            assert reply["error"]["desc"] == "There's a migration process in progress"
        elif uri in ("tcp:127.0.0.1:4444", "unix:/nonexistent"):
            assert reply == {"return": {}}, (reply, runstate)
        else:
            assert "error" in reply and self.status() == "failed"

    @rule(inc=st.booleans())
    def migrate_blk(self, inc: bool) -> None:
        """migrate blk/inc: refused while the `block` capability or
        block-incremental is on already [qmp_migrate]."""
        before = self.status()
        caps = {c["capability"]: c["state"] for c in self.ok("query-migrate-capabilities")}
        incremental = self.ok("query-migrate-parameters")["block-incremental"]
        reply = self.run("migrate", uri="tcp:127.0.0.1:4444", blk=True, inc=inc)
        if before in SETUP_OR_ACTIVE | {"cancelling"}:
            assert reply["error"]["desc"] == "There's a migration process in progress"
        elif caps["block"] or incremental:
            assert reply["error"]["desc"] == \
                "Command options are incompatible with current migration capabilities"
        else:
            assert reply == {"return": {}}

    @rule()
    def migrate_and_connect(self) -> None:
        """The common case in one step: a migration whose connection is made."""
        if self.status() in SETUP_OR_ACTIVE | {"cancelling"}:
            return
        self.migrate("tcp:127.0.0.1:4444")
        self.connect(False)

    @rule(refused=st.sampled_from([False, False, True]))
    def connect(self, refused: bool) -> None:
        end = self.end()
        if end is None or self.status() not in ("setup", "cancelling"):
            return
        if refused:
            end.connect_failed("Failed to connect socket: Connection refused")
        else:
            channel = RecordingChannel()
            self.channels.append(channel)
            end.connected(channel)

    @rule(seconds=st.sampled_from([0.05, 0.3, 2.0, 5.0]), accept=st.booleans())
    def tick(self, seconds: float, accept: bool) -> None:
        """Time passes; a destination that got the whole stream may accept it."""
        self.vm.tick(seconds)
        end = self.end()
        if accept and end is not None and self.channels and self.channels[-1].finished:
            end.done(True)

    @rule(ok=st.booleans())
    def destination_answers(self, ok: bool) -> None:
        """The stream was finished (then accepted or refused), or it breaks."""
        end = self.end()
        if end is None or not self.channels:
            return
        if ok and not self.channels[-1].finished:
            return
        end.done(ok)

    @rule()
    def cancel(self) -> None:
        assert self.ok("migrate_cancel") == {}

    @rule(state=st.sampled_from(["pre-switchover", "active", "device"]))
    def continue_(self, state: str) -> None:
        current = self.status()
        reply = self.run("migrate-continue", state=state)
        if current != state:
            assert reply["error"]["desc"] == f"Migration not in expected state: {current}"

    @rule()
    def start_postcopy(self) -> None:
        caps = {c["capability"]: c["state"] for c in self.ok("query-migrate-capabilities")}
        current = self.status()
        reply = self.run("migrate-start-postcopy")
        if not caps["postcopy-ram"]:
            assert reply["error"]["desc"].startswith("Enable postcopy")
        elif current == "none":
            assert reply["error"]["desc"] == \
                "Postcopy must be started after migration has been started"
        else:
            assert reply == {"return": {}}

    @rule()
    def stop(self) -> None:
        self.ok("stop")

    @rule()
    def cont(self) -> None:
        """Not during the switch-over: QEMU 2.11 would restart the VM and abort at
        completion ('running' -> 'postmigrate' is not in vl.c's table)."""
        if self.ok("query-status")["status"] != "finish-migrate":
            self.run("cont")

    # -- invariants ----------------------------------------------------------------

    def _migration_events(self) -> list[str]:
        return [str(e.data["status"]) for e in self.vm.events
                if e.name == "MIGRATION" and e.data is not None]

    @invariant()
    def one_terminal_status_per_migration(self) -> None:
        runs: list[list[str]] = []
        for status in self._migration_events():
            if status == "setup":
                runs.append([])
            elif runs:
                runs[-1].append(status)
        for run in runs:
            assert sum(s in TERMINAL for s in run) <= 1, run
            if any(s in TERMINAL for s in run):
                assert run[-1] in TERMINAL, run
        statuses = self._migration_events()
        if statuses:
            assert self.status() == statuses[-1]

    @invariant()
    def disk_counters_only_while_block_migration_runs(self) -> None:
        """populate_disk_info: `disk` only in the running states, its counters
        adding up to the 3 MiB disk."""
        info = self.ok("query-migrate")
        if "disk" in info:
            assert info["status"] in SETUP_OR_ACTIVE | {"cancelling"}
            disk = info["disk"]
            assert disk["total"] == 3 << 20
            assert disk["transferred"] + disk["remaining"] == disk["total"]

    @invariant()
    def run_state_agrees_with_the_status(self) -> None:
        runstate = self.ok("query-status")
        status = self.status()
        if status in ("pre-switchover", "device", "postcopy-active"):
            assert runstate["status"] == "finish-migrate"
        if status in ("setup", "cancelled", "none"):
            assert runstate["status"] in ("running", "paused", "postmigrate")
        stops = [e.name for e in self.vm.events if e.name in ("STOP", "RESUME")]
        if stops:
            assert runstate["running"] == (stops[-1] == "RESUME")


TestMigration = MigrationMachine.TestCase
TestMigration.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow])
