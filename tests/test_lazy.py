"""The parts the composition root loads on first use (`vmm.lazy`, `schema.handlers.LazyOwner`).

A plain start-up does not import them (`tests/test_layering.py` pins that); these
tests pin that loading them late changes nothing a client sees: the commands are
the same table entries, the subsystem's hooks keep their place among the others',
and a name list that lags its class still reaches every command.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from blockdev.jobs.backup import BackupCommands
from blockdev.jobs.commands import BlockJobCommands
from blockdev.jobs.commit import CommitCommands
from blockdev.jobs.mirror import MirrorCommands
from blockdev.jobs.stream import StreamCommands
from blockdev.transaction import Transactions
from migration.commands import Migration, MigrationCommands
from schema.catalog import Catalog
from schema.handlers import LazyOwner, collect_handlers, command_names, qmp_command
from vmm.lazy import (
    BACKUP_COMMANDS,
    BLOCK_JOB_COMMANDS,
    COMMIT_COMMANDS,
    MIGRATION_COMMANDS,
    MIRROR_COMMANDS,
    STREAM_COMMANDS,
    TRANSACTION_COMMANDS,
    LazySubsystem,
)
from vmm.qmp.dispatch import Dispatcher, MonitorSession
from vmm.vmstate import BalloonSection, DevicesSection


class Owner:
    built = 0

    def __init__(self) -> None:
        Owner.built += 1

    @qmp_command("query-name")
    def query_name(self) -> dict[str, Any]:
        return {"name": "lazy"}

    @qmp_command("query-uuid")
    def query_uuid(self) -> dict[str, Any]:
        return {"UUID": "00000000-0000-0000-0000-000000000000"}


def test_the_migration_names_are_its_class_marks() -> None:
    """vmm.lazy's list is what MigrationCommands marks (a command added to the class
    is added to the list, or it costs the start-up the migration subsystem)."""
    assert len(set(MIGRATION_COMMANDS)) == len(MIGRATION_COMMANDS)
    assert set(MIGRATION_COMMANDS) == set(command_names(MigrationCommands))


@pytest.mark.parametrize(("names", "cls"), [
    (BLOCK_JOB_COMMANDS, BlockJobCommands),
    (STREAM_COMMANDS, StreamCommands), (COMMIT_COMMANDS, CommitCommands),
    (MIRROR_COMMANDS, MirrorCommands), (BACKUP_COMMANDS, BackupCommands),
    (TRANSACTION_COMMANDS, Transactions)])
def test_the_block_job_names_are_their_class_marks(names: tuple[str, ...], cls: type) -> None:
    """vmm.lazy's lists of the commands that start block jobs (and transaction) are
    what their owners' classes mark."""
    assert len(set(names)) == len(names)
    assert set(names) == set(command_names(cls))


def test_block_job_commands_answer_through_their_lazy_owners(vm_factory) -> None:
    """A plain machine builds its block jobs with the first job command; its first
    block-stream, drive-mirror, block-commit, drive-backup and transaction build
    their owners and answer as QEMU does (blockdev.c
    qmp_block_stream, qmp_drive_mirror, qmp_block_commit, qmp_drive_backup,
    qmp_transaction: an unknown device is 'Cannot find device=... nor
    node_name=...', block-commit's own DeviceNotFound, and an empty transaction
    succeeds)."""
    vm = vm_factory()
    lazy = vm.vm.lazy_jobs
    place = vm.vm.machine.subsystems.index(lazy)
    talk = vm.talk()
    assert talk.execute("query-block") == {"return": []}
    assert not lazy.built
    missing = "Cannot find device=nope nor node_name=nope"
    for command, args in [
            ("block-stream", {"device": "nope"}),
            ("drive-mirror", {"device": "nope", "target": "/nonexistent", "sync": "full"}),
            ("drive-backup", {"device": "nope", "target": "/nonexistent", "sync": "full"})]:
        reply = talk.execute(command, args)
        assert reply["error"]["desc"] == missing, (command, reply)
    assert talk.execute("block-commit", {"device": "nope"})["error"] == {
        "class": "DeviceNotFound", "desc": "Device 'nope' not found"}
    assert talk.execute("transaction", {"actions": []}) == {"return": {}}
    assert lazy.built and vm.vm.machine.subsystems.index(lazy) == place
    assert talk.execute("query-block-jobs") == {"return": []}
    assert talk.execute("block-job-cancel", {"device": "nope"})["error"] == {
        "class": "DeviceNotActive", "desc": "Block job 'nope' not found"}


def test_a_lazy_owner_is_built_with_its_first_command() -> None:
    Owner.built = 0
    owner = LazyOwner(("query-name", "query-uuid"), Owner)
    table = collect_handlers(owner)
    assert set(table) == {"query-name", "query-uuid"}
    assert Owner.built == 0 and not owner.built
    assert table["query-name"]() == {"name": "lazy"}
    assert table["query-uuid"]()["UUID"].startswith("0000")
    assert Owner.built == 1 and owner.built


def test_a_name_the_class_no_longer_marks_is_a_programming_error() -> None:
    table = collect_handlers(LazyOwner(("query-status",), Owner))
    with pytest.raises(ValueError, match="no longer marks it"):
        table["query-status"]()


def test_a_lazy_name_claimed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="two handlers"):
        collect_handlers(Owner(), LazyOwner(("query-name",), Owner))


def test_a_lagging_name_list_still_reaches_every_command(vm_factory) -> None:
    """A command the owner's class marks beyond its registered names is found once
    the owner is built: the table's miss builds the lazy owners before the
    dispatcher answers 'not implemented'."""
    vm = vm_factory()
    machine = vm.vm.machine
    dispatcher = Dispatcher(machine, LazyOwner(("query-name",), Owner))
    assert "query-uuid" not in dispatcher.table
    assert dispatcher.call(MonitorSession(), "query-uuid") == {
        "UUID": "00000000-0000-0000-0000-000000000000"}
    assert "query-uuid" in dispatcher.table
    assert "query-uuid" not in dispatcher.unimplemented()


def test_migration_is_built_with_its_first_command(vm_factory) -> None:
    """A machine builds its migration subsystem when a migration command first runs;
    the stand-in holds its place among the Machine's subsystems, and the commands'
    answers are those of a machine that built it at once."""
    vm = vm_factory()
    lazy = vm.vm.lazy_migration
    assert not lazy.built
    place = vm.vm.machine.subsystems.index(lazy)
    talk = vm.talk()
    assert talk.execute("query-status")["return"]["status"] == "running"
    assert not lazy.built
    assert talk.execute("query-migrate") == {"return": {}}
    assert lazy.built
    assert vm.vm.machine.subsystems.index(lazy) == place
    assert isinstance(vm.vm.migration, Migration)
    assert [type(s) for s in vm.vm.migration.sections] == [DevicesSection, BalloonSection]


def test_an_incoming_machine_builds_migration_at_once(vm_factory) -> None:
    """-incoming defer: the subsystem is there from the start (vl.c
    qemu_start_incoming_migration runs while the machine is built)."""
    vm = vm_factory(incoming="defer")
    assert vm.vm.lazy_migration.built
    assert vm.vm.migration.incoming_uri == "defer"


def test_a_stand_in_forwards_the_hooks_once_built() -> None:
    calls: list[str] = []

    class Sub:
        def reset(self) -> None:
            calls.append("reset")

        def before_cont(self) -> None:
            calls.append("before_cont")

        def vm_start(self) -> None:
            calls.append("vm_start")

        def vm_stop(self) -> None:
            calls.append("vm_stop")

        def next_deadline(self) -> float:
            return 5.0

        def run_due(self, now: float) -> None:
            calls.append(f"run_due {now}")

        def close(self) -> None:
            calls.append("close")

    lazy = LazySubsystem(Sub)
    seen: list[Sub] = []
    lazy.when_built(seen.append)
    for hook in (lazy.reset, lazy.before_cont, lazy.vm_start, lazy.vm_stop, lazy.close):
        hook()
    lazy.run_due(1.0)
    assert lazy.next_deadline() == math.inf
    assert calls == [] and seen == []
    sub = lazy()
    assert seen == [sub] and lazy() is sub
    for hook in (lazy.reset, lazy.before_cont, lazy.vm_start, lazy.vm_stop, lazy.close):
        hook()
    lazy.run_due(2.0)
    assert lazy.next_deadline() == 5.0
    assert calls == ["reset", "before_cont", "vm_start", "vm_stop", "close", "run_due 2.0"]
    later: list[Sub] = []
    lazy.when_built(later.append)
    assert later == [sub]


def test_the_catalogue_parses_a_recorded_reply_when_first_read() -> None:
    """Catalog.load reads the recording's commands; a reply is parsed when a lookup
    first reads it (query-qmp-schema's, half of the file, a machine never reads)."""
    catalog = Catalog.load()
    schema_reply = next(ex for ex in catalog.exchanges if ex.execute == "query-qmp-schema")
    version = next(ex for ex in catalog.exchanges if ex.execute == "query-version")
    assert not any(ex.parsed for ex in catalog.exchanges)
    assert catalog.version()["qemu"] == {"major": 2, "minor": 11, "micro": 0}
    assert version.parsed and not schema_reply.parsed
    assert isinstance(schema_reply.reply["return"], list) and schema_reply.parsed
