"""The migration model on its own: a `RecordingHost` and `RecordingEdge` instead of a
Machine and sockets; the stream codec; the state tables.

Sources: ../shared/reference/migration.md §2 (migrate_set_state's compare-and-swap),
§7.1 (vl.c: a failed -incoming is reported and exits 1), and the emulator's own
stream format (migration/stream.py), whose load errors are qemu_loadvm_state's texts
[migration/savevm.c qemu_loadvm_state].
"""

from __future__ import annotations

import pytest

from migration.commands import EXEC_DISABLED, Migration
from migration.host import RecordingChannel, RecordingEdge, RecordingHost
from migration.ram import DIRTY_RATE, RAM_USED
from migration.states import OUTGOING, StateVar
from migration.stream import (
    HEADER,
    RAM,
    LoadError,
    StreamReader,
    json_record,
    ram_record,
)


def host() -> RecordingHost:
    made = RecordingHost()
    made.behaviours.values.update({DIRTY_RATE.name: 0.0, RAM_USED.name: 0.01})
    return made


def test_state_changes_are_compare_and_swap() -> None:
    """§2: a change from an old state the variable is no longer in does nothing (how
    `cancelling` refuses a late `failed`)."""
    var = StateVar(table=OUTGOING, state="cancelling")
    assert not var.set("setup", "failed")
    assert var.state == "cancelling"
    assert var.set("cancelling", "cancelled")
    with pytest.raises(ValueError):
        var.set("cancelled", "active")


def test_incoming_exec_without_opt_in_exits_with_the_hint() -> None:
    """vl.c: `-incoming URI: <error>` then exit(1); exec: needs the opt-in."""
    h = host()
    lines: list[str] = []
    m = Migration(host=h, edge=RecordingEdge(), report=lines.append)
    m.start_incoming("exec:cat saved")
    assert lines == [f"-incoming exec:cat saved: {EXEC_DISABLED}"]
    assert h.exit_code == 1
    assert h.events == [("MIGRATION", {"status": "setup"})]


def test_a_paused_recording_host_migrates_in_two_passes() -> None:
    """§8.6 on the fakes: a paused source sends everything in the first period."""
    h = host()
    h.runstate.set("paused")
    edge = RecordingEdge()
    m = Migration(host=h, edge=edge)
    m.settings.capabilities["events"] = True
    m.migrate("unix:/x")
    channel = RecordingChannel()
    edge.outgoing[0][2].connected(channel)
    while not channel.finished:
        h.clock.value = max(h.clock.value, m.next_deadline())
        m.run_due(h.clock.value)
    edge.outgoing[0][2].done(True)
    assert h.events == [("MIGRATION", {"status": "setup"}), ("MIGRATION_PASS", {"pass": 1}),
                        ("MIGRATION", {"status": "active"}), ("MIGRATION_PASS", {"pass": 2}),
                        ("MIGRATION", {"status": "completed"})]
    assert h.runstate.state == "postmigrate"
    assert bytes(channel.written).startswith(HEADER)


def test_stream_reader_takes_records_across_reads() -> None:
    data = HEADER + json_record(b"C", {"a": 1}) + ram_record(3 * 4096)
    reader = StreamReader()
    records = [r for i in range(len(data)) for r in reader.feed(data[i:i + 1])]
    assert [r.tag for r in records] == [b"C", RAM]
    assert records[0].json() == {"a": 1} and len(records[1].payload) == 3


def test_not_a_migration_stream() -> None:
    """qemu_loadvm_state: the magic is checked first."""
    with pytest.raises(LoadError) as err:
        list(StreamReader().feed(b"QEVM\0\0\0\3" + b"x" * 20))
    assert err.value.lines == ("Not a migration stream",
                               "load of migration failed: Invalid argument")
