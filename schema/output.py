"""The output side of the schema: check a reply or event against its declared type.

A reader of `schema.model`, playing the part of QEMU's output visitor: it walks a
command's return value (or an event's data) by the declared type, reports the path
of the first mismatch, and rebuilds every object with its members inserted in schema
order (base members, own members, then the active branch's), absent optional members
left out. That insertion order is what the wire serializer turns into QEMU's hash
order (`qmp-protocol.md` §13), so handlers may build their dicts in any order. The walk
keeps its own stack (`schema.walk`): a reply nests as deep as a backing chain is long.
"""

from __future__ import annotations

from typing import Any

from schema.jsontypes import JSONValue, json_kind
from schema.model import (
    AlternateType,
    ArrayType,
    BuiltinType,
    Command,
    EnumType,
    Event,
    Member,
    ObjectType,
    Type,
)
from schema.walk import Walk, is_walk, run

_INT_RANGES = {
    "int": (-(2**63), 2**63 - 1), "int64": (-(2**63), 2**63 - 1),
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1), "size": (0, 2**64 - 1),
}


class OutputMismatch(Exception):
    """A reply or event does not conform to the schema. `path` locates the culprit."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"{path}: {msg}")
        self.path = path
        self.msg = msg


def _json_kind(value: object) -> str:
    return json_kind(value) or type(value).__name__


def check_value(typ: Type, value: Any, path: str) -> JSONValue:
    """Check `value` against `typ`; return it with objects in schema member order."""
    result: JSONValue = run(_step(typ, value, path))
    return result


def check_object(typ: ObjectType, value: dict[str, Any], path: str) -> dict[str, JSONValue]:
    """Check the members of the object `value` (already known to be one)."""
    result: dict[str, JSONValue] = run(_object(typ, value, path))
    return result


def _step(typ: Type, value: Any, path: str) -> Any:
    """The checked value, or the walk of a container (`schema.walk`)."""
    if isinstance(typ, BuiltinType):
        return _check_builtin(typ.name, value, path)
    if isinstance(typ, EnumType):
        if not isinstance(value, str) or value not in typ.values:
            raise OutputMismatch(path, f"{value!r} is not a value of enum {typ.name}")
        return value
    if isinstance(typ, ArrayType):
        if not isinstance(value, (list, tuple)):
            raise OutputMismatch(path, f"expected an array, got {_json_kind(value)}")
        return _array(typ, value, path)
    if isinstance(typ, ObjectType):
        if not isinstance(value, dict):
            raise OutputMismatch(path, f"expected an object ({typ.name}), "
                                       f"got {_json_kind(value)}")
        return _object(typ, value, path)
    if isinstance(typ, AlternateType):
        kind = _json_kind(value)
        for v in typ.variants:
            if v.type.alternate_kind() == kind:
                return _step(v.type, value, path)
        raise OutputMismatch(path, f"{kind} matches no branch of alternate {typ.name}")
    raise AssertionError(typ)  # pragma: no cover


def _array(typ: ArrayType, value: list[Any] | tuple[Any, ...], path: str) -> Walk:
    out: list[JSONValue] = []
    for i, v in enumerate(value):
        item = _step(typ.element, v, f"{path}[{i}]")
        if is_walk(item):
            item = yield item
        out.append(item)
    return out


def _object(typ: ObjectType, value: dict[str, Any], path: str) -> Walk:
    out: dict[str, JSONValue] = {}
    assert typ.members is not None
    members: list[Member] = list(typ.members)
    if typ.variants is not None:
        tag = typ.variants.tag_member
        assert tag is not None
        case = value.get(tag.name)
        branch = typ.variants.get(case) if isinstance(case, str) else None
        if branch is not None:
            assert isinstance(branch.type, ObjectType) and branch.type.members is not None
            members.extend(branch.type.members)
    for m in members:
        mpath = f"{path}.{m.name}"
        if m.name not in value:
            if m.optional:
                continue
            raise OutputMismatch(mpath, f"required member of {typ.name} is missing")
        item = _step(m.type, value[m.name], mpath)
        if is_walk(item):
            item = yield item
        out[m.name] = item
    for key in value:
        if key not in out and not any(m.name == key for m in members):
            raise OutputMismatch(f"{path}.{key}", f"{typ.name} has no member {key!r}")
    return out


def _check_builtin(name: str, value: Any, path: str) -> Any:
    if name == "any":
        if isinstance(value, (list, tuple, dict)):
            return _any(value, path)
        _check_json_scalar(value, path)
        return value
    if name == "str":
        if not isinstance(value, str):
            raise OutputMismatch(path, f"expected a string, got {_json_kind(value)}")
        return value
    if name == "bool":
        if not isinstance(value, bool):
            raise OutputMismatch(path, f"expected a boolean, got {_json_kind(value)}")
        return value
    if name == "null":
        if value is not None:
            raise OutputMismatch(path, f"expected null, got {_json_kind(value)}")
        return None
    if name == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OutputMismatch(path, f"expected a number, got {_json_kind(value)}")
        return float(value)
    lo, hi = _INT_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise OutputMismatch(path, f"expected an integer ({name}), got {_json_kind(value)}")
    if not lo <= value <= hi:
        raise OutputMismatch(path, f"{value} is out of range for {name}")
    return value


def _check_json_scalar(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    raise OutputMismatch(path, f"{type(value).__name__} is not JSON data")


def _any(value: list[Any] | tuple[Any, ...] | dict[Any, Any], path: str) -> Walk:
    """An `any` container: JSON data all the way down; the value itself is the result."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise OutputMismatch(path, f"object key {k!r} is not a string")
            if isinstance(v, (list, tuple, dict)):
                yield _any(v, f"{path}.{k}")
            else:
                _check_json_scalar(v, f"{path}.{k}")
    else:
        for i, v in enumerate(value):
            if isinstance(v, (list, tuple, dict)):
                yield _any(v, f"{path}[{i}]")
            else:
                _check_json_scalar(v, f"{path}[{i}]")
    return value


def check_return(command: Command, value: Any) -> JSONValue:
    """Check a command's return value; `{}` when the command declares none."""
    if command.ret_type is None:
        if value not in (None, {}):
            raise OutputMismatch("return", f"{command.name} returns nothing, got {value!r}")
        return {}
    return check_value(command.ret_type, value, "return")


def check_event(event: Event, data: Any) -> dict[str, JSONValue] | None:
    """Check an event's data; None for events that carry no `data` member."""
    if event.arg_type is None:
        if data not in (None, {}):
            raise OutputMismatch("data", f"{event.name} carries no data, got {data!r}")
        return None
    assert isinstance(event.arg_type, ObjectType)
    if not isinstance(data, dict):
        raise OutputMismatch("data", f"expected an object, got {_json_kind(data)}")
    return check_object(event.arg_type, data, "data")
