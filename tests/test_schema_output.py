"""The output checker: replies and events checked against their declared types.

qapi-introspection.md §7 (qapi/qobject-output-visitor.c): objects are built by
inserting members in flattened schema order (base, own, then the active branch),
absent optional members left out; `number` is a double; a command without a
return type replies `{}`. The checker rebuilds values in that insertion order (the
wire serializer then applies the QDict rule) and names the path of the first
mismatch.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from schema import Schema, load_schema
from schema.output import OutputMismatch, check_event, check_return, check_value


@cache
def qemu() -> Schema:
    return load_schema("2.11.50", cache_dir=False)


def ret(command: str, value: Any) -> Any:
    return check_return(qemu().commands[command], value)


def mismatch(command: str, value: Any) -> str:
    with pytest.raises(OutputMismatch) as info:
        ret(command, value)
    return str(info.value)


CPU = {"arch": "x86", "pc": 4096, "thread_id": 7, "qom_path": "/machine/unattached/device[0]",
       "halted": False, "current": True, "CPU": 0}


def test_objects_come_back_in_schema_order() -> None:
    """§7: `query-status` is built running, singlestep, status (whatever order the
    handler used); nested objects likewise."""
    value = ret("query-status", {"status": "running", "singlestep": False, "running": True})
    assert list(value) == ["running", "singlestep", "status"]
    version = ret("query-version", {"package": "", "qemu": {"micro": 0, "minor": 11,
                                                            "major": 2}})
    assert list(version) == ["qemu", "package"]
    assert list(version["qemu"]) == ["major", "minor", "micro"]


def test_union_branch_members_follow_the_base() -> None:
    """§7: a flat union's base members, then the active branch's; lists stay lists."""
    (cpu,) = ret("query-cpus", [CPU])
    assert list(cpu) == ["CPU", "current", "halted", "qom_path", "thread_id", "arch", "pc"]
    assert ret("query-cpus", []) == []


def test_absent_optional_members_stay_absent() -> None:
    group = ret("query-rocker-of-dpa-groups", [{"type": 1, "id": 2}])
    assert group == [{"id": 2, "type": 1}]


def test_scalars() -> None:
    """§7: `number` is written as a double; `any` passes through; builtin returns
    of whitelisted commands."""
    assert ret("query-migrate-cache-size", 67108864) == 67108864
    assert ret("qom-get", {"b": [1, None], "a": "x"}) == {"b": [1, None], "a": "x"}
    balloon = ret("query-balloon", {"actual": 1 << 30})
    assert balloon == {"actual": 1 << 30}


def test_command_without_return_type() -> None:
    """§5: a command without `returns` replies `{}`."""
    assert ret("stop", None) == {}
    assert ret("stop", {}) == {}
    assert mismatch("stop", {"x": 1}) == "return: stop returns nothing, got {'x': 1}"


def test_events() -> None:
    """Event data is checked like a return value under the path `data`; events
    without data carry none."""
    shutdown = qemu().events["SHUTDOWN"]
    assert check_event(shutdown, {"guest": True}) == {"guest": True}
    with pytest.raises(OutputMismatch) as info:
        check_event(shutdown, {})
    assert str(info.value) == "data.guest: required member of q_obj_SHUTDOWN-arg is missing"
    stop = qemu().events["STOP"]
    assert check_event(stop, None) is None
    with pytest.raises(OutputMismatch) as info:
        check_event(stop, {"x": 1})
    assert str(info.value) == "data: STOP carries no data, got {'x': 1}"
    with pytest.raises(OutputMismatch) as info:
        check_event(shutdown, [True])
    assert info.value.path == "data"


@pytest.mark.parametrize(("command", "value", "message"), [
    ("query-status", {"running": True, "singlestep": False},
     "return.status: required member of StatusInfo is missing"),
    ("query-status", {"running": True, "singlestep": False, "status": "running", "x": 1},
     "return.x: StatusInfo has no member 'x'"),
    ("query-status", {"running": 1, "singlestep": False, "status": "running"},
     "return.running: expected a boolean, got number"),
    ("query-status", {"running": True, "singlestep": False, "status": "jogging"},
     "return.status: 'jogging' is not a value of enum RunState"),
    ("query-status", [], "return: expected an object (StatusInfo), got array"),
    ("query-version", {"qemu": {"major": 2, "minor": 11, "micro": "0"}, "package": ""},
     "return.qemu.micro: expected an integer (int), got string"),
    ("query-version", {"qemu": {"major": 2, "minor": 11, "micro": 0}, "package": None},
     "return.package: expected a string, got null"),
    ("query-cpus", {}, "return: expected an array, got object"),
    ("query-cpus", [CPU, {**CPU, "thread_id": 1.5}],
     "return[1].thread_id: expected an integer (int), got number"),
    ("query-cpus", [{**CPU, "pc": None}], "return[0].pc: expected an integer (int), got null"),
    ("query-rocker-of-dpa-groups", [{"id": 1, "type": 256}],
     "return[0].type: 256 is out of range for uint8"),
    ("query-rocker-of-dpa-groups", [{"id": -1, "type": 0}],
     "return[0].id: -1 is out of range for uint32"),
    ("query-rocker-of-dpa-groups", [{"id": 1, "type": 0, "group-ids": [1, "2"]}],
     "return[0].group-ids[1]: expected an integer (uint32), got string"),
    ("qom-get", {"a": {1, 2}}, "return.a: set is not JSON data"),
])
def test_mismatches_name_their_path(command: str, value: Any, message: str) -> None:
    """Every kind of mismatch, reported at the path of the offending value."""
    assert mismatch(command, value) == message


def test_alternate_outputs() -> None:
    """An alternate value takes the branch its JSON kind selects."""
    alt = qemu().lookup_type("StrOrNull")
    assert check_value(alt, None, "x") is None
    assert check_value(alt, "s", "x") == "s"
    with pytest.raises(OutputMismatch) as info:
        check_value(alt, 1, "x")
    assert str(info.value) == "x: number matches no branch of alternate StrOrNull"


def test_number_output() -> None:
    """§7: a `number` is a double on output."""
    info = qemu().lookup_type("MigrationParameters")
    value = check_value(info, {"cpu-throttle-initial": 20}, "return")
    assert value == {"cpu-throttle-initial": 20}
    downtime = qemu().lookup_type("number")
    result = check_value(downtime, 3, "return")
    assert result == 3.0 and isinstance(result, float)


def test_deep_replies_are_checked_without_recursion() -> None:
    """A reply nests as deep as the models make it: a backing chain of 1000 images is
    a `backing-image` nested 1000 levels (QEMU's output visitor recurses in C); the
    checker walks it with its own stack and still puts members in schema order."""
    image: dict[str, Any] = {"virtual-size": 512, "format": "raw", "filename": "base"}
    for i in range(1000):
        image = {"backing-image": image, "virtual-size": 512, "format": "qcow2",
                 "filename": f"img{i}"}
    checked = check_value(qemu().lookup_type("ImageInfo"), image, "return")
    depth = 0
    while "backing-image" in checked:
        assert list(checked) == ["filename", "format", "virtual-size", "backing-image"]
        checked = checked["backing-image"]
        depth += 1
    assert depth == 1000 and checked["filename"] == "base"


def test_deep_any_values_are_checked() -> None:
    """`any` data is checked to be JSON all the way down, however deep; a value that is
    not JSON is named by its path."""
    value: Any = [1]
    for _ in range(1000):
        value = {"a": [value]}
    assert ret("qom-get", value) is value
    inner: Any = value
    for _ in range(999):
        inner = inner["a"][0]
    inner["a"][0] = {1: 2}
    assert mismatch("qom-get", value) == \
        "return" + ".a[0]" * 1000 + ": object key 1 is not a string"
