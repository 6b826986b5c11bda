"""QMP protocol behaviour of a monitor that a transcript cannot show.

Everything here is from ../shared/reference/qmp-protocol.md (QEMU 2.11.0, monitor.c
handle_qmp_command, qapi/qmp-dispatch.c, qobject/json-*.c); the section is named in
each test. The monitor is driven without sockets: bytes in, bytes out. The
conversations (greeting, negotiation, ids, request checks, JSON recovery, pretty
output, event delivery, quit, human-monitor-command, identity queries) are golden
transcripts in tests/golden/; what stays here needs the machine's inside (guest and
watchdog actions, exact timestamps), a catalogue to compare with, or a reply too big
to keep in a file.
"""

from __future__ import annotations

import pytest

from tests.conftest import VmHarness


@pytest.fixture
def vm(vm_factory) -> VmHarness:
    return vm_factory(package="")


# -- §5 order of checks ------------------------------------------------------------------

def test_query_qmp_schema_ignores_its_arguments(vm: VmHarness) -> None:
    """§5 step 6: the hand-written handler accepts anything."""
    out = vm.talk().send('{"execute": "query-qmp-schema", "arguments": {"anything": 1}}')
    assert out.startswith(b'{"return": [{"name": "ACPI_DEVICE_OST"')


# -- §7 events -----------------------------------------------------------------------------

def test_event_shape_and_stamp(vm: VmHarness) -> None:
    """§7.1: timestamp, event, data; the timestamp is the wall clock at creation."""
    talk = vm.talk()
    assert talk.lines('{"execute": "stop"}', mask=False) == [
        '{"timestamp": {"seconds": 1510000000, "microseconds": 250000}, "event": "STOP"}',
        '{"return": {}}']


# -- §8 throttling -------------------------------------------------------------------------

def test_throttled_event_sends_first_and_last_per_second(vm: VmHarness) -> None:
    """§8: first WATCHDOG at once, later ones held; only the last is sent a second on,
    with its own creation timestamp; then the key's state expires."""
    talk = vm.talk()
    vm.machine.watchdog_action = "none"
    vm.machine.watchdog_expired()
    assert talk.pending() == ['{"timestamp": T, "event": "WATCHDOG", "data": {"action": "none"}}']
    for action in ("debug", "inject-nmi"):
        vm.tick(0.05)
        vm.machine.watchdog_action = action
        vm.machine.watchdog_expired()
    assert talk.pending() == []
    vm.tick(0.9)
    out = talk.monitor.take_output().decode().split("\r\n")[:-1]
    assert out == ['{"timestamp": {"seconds": 1510000000, "microseconds": 350000}, '
                   '"event": "WATCHDOG", "data": {"action": "inject-nmi"}}']
    vm.tick(1.0)   # the timer fires with nothing pending: state is dropped
    vm.machine.watchdog_expired()
    assert len(talk.pending()) == 1


def test_throttled_event_reaches_a_monitor_that_negotiated_meanwhile(vm: VmHarness) -> None:
    """§8 step 5: delivered to whoever is in command mode when the timer fires."""
    first = vm.talk()
    vm.machine.watchdog_action = "none"
    vm.machine.watchdog_expired()
    vm.machine.watchdog_expired()
    late = vm.talk()
    vm.tick(1.0)
    assert len(first.pending()) == 2
    assert late.pending() == ['{"timestamp": T, "event": "WATCHDOG", "data": {"action": "none"}}']


# -- §12 query commands ------------------------------------------------------

def test_query_commands_matches_the_recorded_x86_64_list(vm_factory, schema_2110, catalog) -> None:
    """§12: reverse registration order, the recording's exact list (2.11.0 persona)."""
    vm = vm_factory(schema_value=schema_2110)
    assert vm.talk().execute("query-commands")["return"] == [
        {"name": n} for n in catalog.command_names()]


def test_query_events_reverse_sorted(vm: VmHarness, catalog) -> None:
    """§12: every event of the schema in reverse sorted order (= the recording)."""
    assert vm.talk().execute("query-events")["return"] == [
        {"name": n} for n in catalog.event_names()]


def test_throttle_keys_include_the_member_qemu_hashes(vm: VmHarness) -> None:
    """§8: VSERPORT_CHANGE is throttled per `id` and QUORUM_REPORT_BAD per `node-name`
    (monitor.c qapi_event_throttle_hash); different keys do not hold each other back."""
    talk = vm.talk()
    m = vm.machine
    m.emit("VSERPORT_CHANGE", {"id": "a", "open": True})
    m.emit("VSERPORT_CHANGE", {"id": "b", "open": True})
    m.emit("VSERPORT_CHANGE", {"id": "a", "open": False})
    for node in ("n1", "n2", "n1"):
        m.emit("QUORUM_REPORT_BAD", {"type": "read", "node-name": node, "sector-num": 0,
                                     "sectors-count": 8})
    assert talk.pending() == [
        '{"timestamp": T, "event": "VSERPORT_CHANGE", "data": {"open": true, "id": "a"}}',
        '{"timestamp": T, "event": "VSERPORT_CHANGE", "data": {"open": true, "id": "b"}}',
        '{"timestamp": T, "event": "QUORUM_REPORT_BAD", "data": {"node-name": "n1", '
        '"sectors-count": 8, "sector-num": 0, "type": "read"}}',
        '{"timestamp": T, "event": "QUORUM_REPORT_BAD", "data": {"node-name": "n2", '
        '"sectors-count": 8, "sector-num": 0, "type": "read"}}',
    ]
    vm.tick(1.0)
    assert talk.pending() == [
        '{"timestamp": T, "event": "VSERPORT_CHANGE", "data": {"open": false, "id": "a"}}',
        '{"timestamp": T, "event": "QUORUM_REPORT_BAD", "data": {"node-name": "n1", '
        '"sectors-count": 8, "sector-num": 0, "type": "read"}}',
    ]


def test_stdio_monitor_greets_at_start(schema, catalog, tmp_path) -> None:
    """§2: a chardev that is open from the start (stdio) is greeted once at start-up;
    -qmp stdio talks QMP on the process's stdin/stdout."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vmm", "-nodefaults", "-qmp", "stdio"],
        input=b'{"execute":"qmp_capabilities"}{"execute":"query-name"}{"execute":"quit"}',
        capture_output=True, timeout=60,
        env=dict(os.environ, QMP_EMULATOR_CACHE_DIR=str(tmp_path / "cache")))
    lines = proc.stdout.split(b"\r\n")
    assert lines[0].startswith(b'{"QMP": {"version"')
    assert lines[1:4] == [b'{"return": {}}', b'{"return": {}}', b'{"return": {}}']
    assert b'"event": "SHUTDOWN"' in lines[4]
    assert proc.returncode == 0
