"""QMP protocol behaviour of a monitor, byte for byte.

Everything here is from ../shared/reference/qmp-protocol.md (QEMU 2.11.0, monitor.c
handle_qmp_command, qapi/qmp-dispatch.c, qobject/json-*.c); the section is named in
each test. The monitor is driven without sockets: bytes in, bytes out.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import VmHarness


def err(desc: str, cls: str = "GenericError", id_: str | None = None) -> str:
    body = json.dumps({"class": cls, "desc": desc}, separators=(", ", ": "))
    return f'{{"id": {id_}, "error": {body}}}' if id_ is not None else f'{{"error": {body}}}'


@pytest.fixture
def vm(vm_factory) -> VmHarness:
    return vm_factory(package="")


# -- §2 greeting, §3 negotiation ---------------------------------------------------------

def test_greeting_is_qemus_exact_bytes(vm: VmHarness) -> None:
    """§2: the greeting, member order by QDict hash, CR LF framed."""
    talk = vm.talk(negotiate=False)
    assert talk.greeting == (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 11, '
                             b'"major": 2}, "package": ""}, "capabilities": []}}\r\n')


def test_greeting_carries_the_package_string(vm_factory) -> None:
    """§2: `package` is what query-version says (libvirt's recording: " (v2.11.0)")."""
    talk = vm_factory().talk(negotiate=False)
    assert b'"package": " (v2.11.0)"' in talk.greeting


def test_negotiation_mode_refuses_every_other_command(vm: VmHarness) -> None:
    """§3: any command but qmp_capabilities, existing or not, gets the replaced text."""
    talk = vm.talk(negotiate=False)
    expected = err("Expecting capabilities negotiation with 'qmp_capabilities'",
                   "CommandNotFound")
    assert talk.lines('{"execute": "query-status"}') == [expected]
    assert talk.lines('{"execute": "nosuch"}') == [expected]
    assert talk.lines('{"execute": "query-status", "id": 7}') == [
        err("Expecting capabilities negotiation with 'qmp_capabilities'",
            "CommandNotFound", "7")]


def test_negotiation_still_validates_the_request_object_first(vm: VmHarness) -> None:
    """§3: malformed requests get the normal GenericErrors in negotiation mode."""
    talk = vm.talk(negotiate=False)
    assert talk.lines("[1]") == [err("QMP input must be a JSON object")]
    assert talk.lines('{"execute": 1}') == [err("QMP input member 'execute' must be a string")]


def test_qmp_capabilities_takes_no_arguments_and_stays_negotiating(vm: VmHarness) -> None:
    """§3: `{"x": 1}` -> Parameter 'x' is unexpected, still in negotiation mode."""
    talk = vm.talk(negotiate=False)
    assert talk.lines('{"execute": "qmp_capabilities", "arguments": {"x": 1}}') == [
        err("Parameter 'x' is unexpected")]
    assert talk.lines('{"execute": "query-name"}') == [
        err("Expecting capabilities negotiation with 'qmp_capabilities'", "CommandNotFound")]
    assert talk.lines('{"execute": "qmp_capabilities"}') == ['{"return": {}}']
    assert talk.lines('{"execute": "query-name"}') == ['{"return": {}}']


def test_qmp_capabilities_again_is_refused(vm: VmHarness) -> None:
    """§3: in command mode qmp_capabilities is a CommandNotFound with its own text."""
    talk = vm.talk()
    assert talk.lines('{"execute": "qmp_capabilities", "id": "a"}') == [
        err("Capabilities negotiation is already complete, command ignored",
            "CommandNotFound", '"a"')]


def test_reconnection_renegotiates(vm: VmHarness) -> None:
    """§9: a new client gets a new greeting and starts in negotiation mode."""
    talk = vm.talk()
    talk.monitor.disconnect()
    talk.monitor.connect()
    assert talk.monitor.take_output().startswith(b'{"QMP": ')
    assert talk.lines('{"execute": "query-name"}') == [
        err("Expecting capabilities negotiation with 'qmp_capabilities'", "CommandNotFound")]


# -- §4 replies and id ---------------------------------------------------------------------

@pytest.mark.parametrize(("sent", "echoed"), [
    ("1", "1"), ('"x"', '"x"'), ("null", "null"), ("[1, {\"b\": 2}]", '[1, {"b": 2}]'),
    ("{\"k\": true}", '{"k": true}'), ("1e5", "100000"), ('"\\u00e9"', '"\\u00E9"'),
    ("-0", "0"), ("1.5", "1.5"),
])
def test_id_is_echoed_whatever_its_type(vm: VmHarness, sent: str, echoed: str) -> None:
    """§4: any JSON value, re-serialised by QEMU's serializer; after `return`."""
    talk = vm.talk()
    assert talk.lines(f'{{"execute": "query-name", "id": {sent}}}') == [
        f'{{"return": {{}}, "id": {echoed}}}']


def test_error_reply_puts_id_first(vm: VmHarness) -> None:
    """§4: {"id": I, "error": {...}} (hash order: id 486 < error 489)."""
    talk = vm.talk()
    assert talk.lines('{"execute": "nosuch", "id": 3}') == [
        err("The command nosuch has not been found", "CommandNotFound", "3")]


def test_no_id_for_non_objects_or_unparseable_input(vm: VmHarness) -> None:
    """§4: no id is echoed unless the input parsed as an object."""
    talk = vm.talk()
    assert talk.lines('[{"id": 1}]') == [err("QMP input must be a JSON object")]
    assert talk.lines('"x"') == [err("QMP input must be a JSON object")]


def test_id_can_never_be_unexpected(vm: VmHarness) -> None:
    """§4: the id member is removed before the request object is checked."""
    talk = vm.talk()
    assert talk.lines('{"id": 5}') == [err("QMP input lacks member 'execute'", id_="5")]


# -- §5 order of checks ------------------------------------------------------------------

@pytest.mark.parametrize(("request_text", "desc"), [
    ("3\n", "QMP input must be a JSON object"),
    ('{"execute": 1}', "QMP input member 'execute' must be a string"),
    ('{"execute": "query-name", "arguments": []}',
     "QMP input member 'arguments' must be an object"),
    ('{"execute": "query-name", "arguments": null}',
     "QMP input member 'arguments' must be an object"),
    ('{"execute": "query-name", "foo": 1}', "QMP input member 'foo' is unexpected"),
    ("{}", "QMP input lacks member 'execute'"),
    ('{"arguments": {}}', "QMP input lacks member 'execute'"),
    # bucket order: execute (299) before arguments (447); bb (57) before both
    ('{"execute": 1, "arguments": []}', "QMP input member 'execute' must be a string"),
    ('{"arguments": [], "execute": 1}', "QMP input member 'execute' must be a string"),
    ('{"execute": 1, "arguments": [], "bb": 0}', "QMP input member 'bb' is unexpected"),
])
def test_request_object_checks_in_qdict_order(vm: VmHarness, request_text: str,
                                               desc: str) -> None:
    """§5 step 3: qmp_dispatch_check_obj walks the members in QDict order."""
    assert vm.talk().lines(request_text) == [err(desc)]


def test_unknown_command_names_it_verbatim(vm: VmHarness) -> None:
    """§5 step 4: `The command NAME has not been found`, even for an empty name."""
    talk = vm.talk()
    assert talk.lines('{"execute": ""}') == [err("The command  has not been found",
                                                 "CommandNotFound")]


def test_commands_of_other_targets_are_not_registered(vm: VmHarness) -> None:
    """§12: x86_64 without s390/ARM: dump-skeys etc. are in the schema but not found."""
    talk = vm.talk()
    for name in ("dump-skeys", "query-gic-capabilities", "query-cpu-model-baseline",
                 "query-cpu-model-comparison"):
        assert talk.lines({"execute": name}) == [
            err(f"The command {name} has not been found", "CommandNotFound")]


def test_commands_without_parameters_reject_any_argument(vm: VmHarness) -> None:
    """§5 step 6: `Parameter 'x' is unexpected` for a command without data."""
    assert vm.talk().lines('{"execute": "query-status", "arguments": {"x": 1}}') == [
        err("Parameter 'x' is unexpected")]


def test_query_qmp_schema_ignores_its_arguments(vm: VmHarness) -> None:
    """§5 step 6: the hand-written handler accepts anything."""
    out = vm.talk().send('{"execute": "query-qmp-schema", "arguments": {"anything": 1}}')
    assert out.startswith(b'{"return": [{"name": "ACPI_DEVICE_OST"')


def test_duplicate_keys_later_value_wins(vm: VmHarness) -> None:
    """§5: `{"execute":"query-name","execute":"query-kvm"}` runs query-kvm."""
    assert vm.talk().lines('{"execute":"query-name","execute":"query-kvm"}') == [
        '{"return": {"enabled": false, "present": true}}']


# -- §6 JSON dialect through a monitor ---------------------------------------------------

@pytest.mark.parametrize(("sent", "replies"), [
    (b'{"execute": @}', [err("Invalid JSON syntax"), err("JSON parse error, expecting value")]),
    (b'{"execute":"query-name"} }', ['{"return": {}}', err("JSON parse error, expecting value")]),
    (b'\xff{"execute":"query-name"}', [err("Invalid JSON syntax"), '{"return": {}}']),
    (b'{"execute":"query-name","id":True}', [
        err("Invalid JSON syntax"), err("JSON parse error, invalid keyword 'rue'"),
        err("JSON parse error, expecting value")]),
    (b'{"execute":"query-name","id":-}', [err("Invalid JSON syntax")]),
    (b'{"execute":"query-name","id":.5}', [
        err("Invalid JSON syntax"), err("QMP input must be a JSON object"),
        err("JSON parse error, expecting value")]),
    (b'{"execute":"query-name","id":"unterminated}\n', []),
    (b"{'execute': 'query-name'}", ['{"return": {}}']),
    (b'{"execute": }', [err("JSON parse error, Missing value in dict")]),
])
def test_recovery_after_garbage(vm: VmHarness, sent: bytes, replies: list[str]) -> None:
    """§6.3: QEMU's replies to broken input, each on a fresh connection."""
    assert vm.talk().lines(sent) == replies


def test_requests_in_one_write_are_answered_in_order(vm: VmHarness) -> None:
    """§6.2: several requests in one write are processed one after another."""
    talk = vm.talk()
    assert talk.lines(b'{"execute":"query-name","id":1}\n\n{"execute":"query-kvm","id":2}') == [
        '{"return": {}, "id": 1}', '{"return": {"enabled": false, "present": true}, "id": 2}']


def test_message_split_across_writes(vm: VmHarness) -> None:
    """§6.2: an unbalanced prefix waits for more input."""
    talk = vm.talk()
    assert talk.lines(b'{"execute":') == []
    assert talk.lines(b'"query-name"}') == ['{"return": {}}']


# -- §1 pretty output ------------------------------------------------------------------------

def test_pretty_output(vm: VmHarness) -> None:
    """§1: pretty=on: 4-space indents, CR LF, empty object as `{` newline `}`."""
    talk = vm.talk(pretty=True, negotiate=False)
    assert talk.send('{"execute": "qmp_capabilities"}') == b"{\r\n    \"return\": {\r\n    }\r\n}\r\n"
    assert talk.send('{"execute": "query-kvm"}') == (
        b'{\r\n    "return": {\r\n        "enabled": false,\r\n        "present": true\r\n'
        b"    }\r\n}\r\n")


# -- §7 events, §9 several monitors -----------------------------------------------------------

def test_event_shape_and_stamp(vm: VmHarness) -> None:
    """§7.1: timestamp, event, data; the timestamp is the wall clock at creation."""
    talk = vm.talk()
    assert talk.lines('{"execute": "stop"}', mask=False) == [
        '{"timestamp": {"seconds": 1510000000, "microseconds": 250000}, "event": "STOP"}',
        '{"return": {}}']


def test_events_reach_every_negotiated_monitor_but_not_negotiating_ones(vm: VmHarness) -> None:
    """§7.2: every QMP monitor in command mode; nothing for one still negotiating."""
    a, b, c = vm.talk(), vm.talk(), vm.talk(negotiate=False)
    assert a.lines('{"execute": "stop"}') == ['{"timestamp": T, "event": "STOP"}',
                                              '{"return": {}}']
    assert b.pending() == ['{"timestamp": T, "event": "STOP"}']
    assert c.pending() == []


def test_a_disconnected_monitor_gets_nothing(vm: VmHarness) -> None:
    """§7.2: events written to a monitor without client are discarded."""
    a, b = vm.talk(), vm.talk()
    b.monitor.disconnect()
    a.send('{"execute": "stop"}')
    b.monitor.connect()
    assert b.monitor.take_output().startswith(b'{"QMP"')


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


# -- §10 quit, §11 HMP, §12 query commands ------------------------------------------------------

def test_quit_replies_then_shutdown_then_exit(vm: VmHarness) -> None:
    """§10: reply, SHUTDOWN {"guest": false}, exit status 0; no STOP."""
    talk = vm.talk()
    assert talk.lines('{"execute": "quit", "id": 1}') == [
        '{"return": {}, "id": 1}', '{"timestamp": T, "event": "SHUTDOWN", "data": {"guest": false}}']
    assert vm.machine.exit_code == 0


def test_quit_ignores_no_shutdown(vm_factory) -> None:
    """§10: -no-shutdown does not keep QEMU alive after quit."""
    vm = vm_factory(no_shutdown=True)
    vm.talk().send('{"execute": "quit"}')
    assert vm.machine.exit_code == 0


@pytest.mark.parametrize(("line", "text"), [
    ("info status", "VM status: running\r\n"),
    ("info version", "2.11.0\r\n"),
    ("nosuchcmd arg", "unknown command: 'nosuchcmd'\r\n"),
    ("", ""),
    ("info nosuch", "unknown command: 'info nosuch'\r\n"),
    ("stop now", "stop: extraneous characters at the end of line\r\n"
                 'Try "help stop" for more information\r\n'),
    ("help stop", "stop  -- stop emulation\r\n"),
    ("info kvm", "kvm support: disabled\r\n"),
    ("info uuid", "00000000-0000-0000-0000-000000000000\r\n"),
    ("info name", ""),
])
def test_human_monitor_command_output(vm: VmHarness, line: str, text: str) -> None:
    """§11: HMP output (errors included) is the returned string, \\n as \\r\\n."""
    assert vm.talk().execute("human-monitor-command", {"command-line": line}) == {"return": text}


def test_human_monitor_command_events_precede_the_reply(vm: VmHarness) -> None:
    """§11: `stop` via HMP -> STOP, then {"return": ""}."""
    assert vm.talk().lines({"execute": "human-monitor-command",
                            "arguments": {"command-line": "stop"}}) == [
        '{"timestamp": T, "event": "STOP"}', '{"return": ""}']


def test_human_monitor_command_status_texts(vm_factory) -> None:
    """§11: `VM status: paused (prelaunch)` when not running and not paused."""
    vm = vm_factory(start_paused=True)
    talk = vm.talk()
    assert talk.execute("human-monitor-command", {"command-line": "info status"}) == {
        "return": "VM status: paused (prelaunch)\r\n"}
    talk.send('{"execute": "cont"}')
    talk.send('{"execute": "stop"}')
    assert talk.execute("human-monitor-command", {"command-line": "info status"}) == {
        "return": "VM status: paused\r\n"}


def test_human_monitor_command_cpu_index(vm: VmHarness) -> None:
    """§11: an unknown cpu-index -> Parameter 'cpu-index' expects a CPU number."""
    assert vm.talk().execute("human-monitor-command",
                             {"command-line": "info status", "cpu-index": 3}) == {
        "error": {"class": "GenericError", "desc": "Parameter 'cpu-index' expects a CPU number"}}


def test_query_commands_matches_the_recorded_x86_64_list(vm_factory, schema_2110, catalog) -> None:
    """§12: reverse registration order, the recording's exact list (2.11.0 persona)."""
    vm = vm_factory(schema_value=schema_2110)
    assert vm.talk().execute("query-commands")["return"] == [
        {"name": n} for n in catalog.command_names()]


def test_query_events_reverse_sorted(vm: VmHarness, catalog) -> None:
    """§12: every event of the schema in reverse sorted order (= the recording)."""
    assert vm.talk().execute("query-events")["return"] == [
        {"name": n} for n in catalog.event_names()]


@pytest.mark.parametrize(("options", "command", "reply"), [
    ({}, "query-version", '{"return": {"qemu": {"micro": 0, "minor": 11, "major": 2}, "package": ""}}'),
    ({}, "query-name", '{"return": {}}'),
    ({"name": "vm1"}, "query-name", '{"return": {"name": "vm1"}}'),
    ({}, "query-kvm", '{"return": {"enabled": false, "present": true}}'),
    ({"accel": "kvm"}, "query-kvm", '{"return": {"enabled": true, "present": true}}'),
    ({}, "query-uuid", '{"return": {"UUID": "00000000-0000-0000-0000-000000000000"}}'),
    ({"uuid": "0C4F8E5A-6F5D-4B49-8F7E-3D2B1A0C9E8D"}, "query-uuid",
     '{"return": {"UUID": "0c4f8e5a-6f5d-4b49-8f7e-3d2b1a0c9e8d"}}'),
    ({}, "query-status", '{"return": {"status": "running", "singlestep": false, "running": true}}'),
    ({}, "query-target", '{"return": {"arch": "x86_64"}}'),
])
def test_identity_queries(vm_factory, options, command, reply) -> None:
    """§12: the exact replies of the identity queries."""
    options.setdefault("package", "")
    assert vm_factory(**options).talk().lines({"execute": command}) == [reply]


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
