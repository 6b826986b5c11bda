"""QEMU 2.11's input visitor: a command's `arguments` checked and converted by the schema.

A reader of `schema.model`. It walks the argument type exactly as QEMU's generated
marshallers drive `qapi/qobject-input-visitor.c`: members in flattened order (base,
own, then the selected union branch), the first error ends the walk, and an object is
checked for keys nobody consumed right after its last member. Error texts and which
name each one prints (the full path or the bare member name) follow
`../shared/reference/qapi-introspection.md` §6.

The result is plain data with wire names: present members only, `uint64`/`size`
negatives wrapped modulo 2**64, integers given to `number` members turned into floats,
`any` values passed through untouched.
"""

from __future__ import annotations

import math
from typing import Any

from schema.errors import GenericError
from schema.jsontypes import JSONValue, json_kind
from schema.model import (
    AlternateType,
    ArrayType,
    BuiltinType,
    Command,
    EnumType,
    Event,
    ObjectType,
    Type,
)
from schema.qdict import first_unexpected, qdict_order

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
_SIGNED_RANGE = {"int8": 8, "int16": 16, "int32": 32}
_UNSIGNED_RANGE = {"uint8": 8, "uint16": 16, "uint32": 32}


def _full(path: str, name: str | None, index: int | None = None) -> str:
    if index is not None:
        return f"{path}[{index}]"
    assert name is not None
    return f"{path}.{name}" if path else name


class InputVisitor:
    """One walk over one arguments object. `new_glib` picks the GLib regime (§6.6)."""

    def __init__(self, *, new_glib: bool = False) -> None:
        self.new_glib = new_glib

    # -- entry points ---------------------------------------------------------------

    def visit_command(self, command: Command, arguments: dict[str, JSONValue]) -> dict[str, Any]:
        """Check `arguments` against the command's parameters; return the converted values."""
        arg_type = command.arg_type
        if arg_type is None:
            self._check_unexpected(arguments, [], "")
            return {}
        if isinstance(arg_type, AlternateType):  # pragma: no cover - not in 2.11's schema
            raise GenericError("boxed alternate arguments are not supported")
        return self.visit_object_members(arg_type, arguments, "")

    def visit(self, typ: Type, value: JSONValue, path: str, name: str | None) -> Any:
        """Visit one value of type `typ`; `path` is its full name, `name` its bare name."""
        if isinstance(typ, BuiltinType):
            return self._visit_builtin(typ.name, value, path, name)
        if isinstance(typ, EnumType):
            if not isinstance(value, str):
                raise GenericError(f"Invalid parameter type for '{path}', expected: string")
            if value not in typ.values:
                raise GenericError(f"Invalid parameter '{value}'")
            return value
        if isinstance(typ, ArrayType):
            if not isinstance(value, list):
                raise GenericError(f"Invalid parameter type for '{path}', expected: array")
            return [self.visit(typ.element, v, f"{path}[{i}]", None)
                    for i, v in enumerate(value)]
        if isinstance(typ, ObjectType):
            if not isinstance(value, dict):
                raise GenericError(f"Invalid parameter type for '{path}', expected: object")
            return self.visit_object_members(typ, value, path)
        if isinstance(typ, AlternateType):
            return self._visit_alternate(typ, value, path, name)
        raise AssertionError(typ)  # pragma: no cover

    # -- objects --------------------------------------------------------------------

    def visit_object_members(self, typ: ObjectType, obj: dict[str, JSONValue],
                             path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        consumed: list[str] = []
        assert typ.members is not None
        self._visit_members(typ.members, obj, path, out, consumed)
        if typ.variants is not None:
            tag = typ.variants.tag_member
            assert tag is not None
            branch = typ.variants.get(out[tag.name])
            if branch is not None:
                assert isinstance(branch.type, ObjectType) and branch.type.members is not None
                self._visit_members(branch.type.members, obj, path, out, consumed)
        self._check_unexpected(obj, consumed, path)
        return out

    def _visit_members(self, members: Any, obj: dict[str, JSONValue], path: str,
                       out: dict[str, Any], consumed: list[str]) -> None:
        for m in members:
            if m.name not in obj:
                if m.optional:
                    continue
                raise GenericError(f"Parameter '{_full(path, m.name)}' is missing")
            consumed.append(m.name)
            out[m.name] = self.visit(m.type, obj[m.name], _full(path, m.name), m.name)

    def _check_unexpected(self, obj: dict[str, JSONValue], consumed: list[str],
                          path: str) -> None:
        if len(consumed) == len(obj):
            return
        key = first_unexpected(qdict_order(obj), consumed, new_glib=self.new_glib)
        if key is not None:
            raise GenericError(f"Parameter '{_full(path, key)}' is unexpected")

    # -- scalars ----------------------------------------------------------------------

    def _visit_builtin(self, tname: str, value: JSONValue, path: str, name: str | None) -> Any:
        bare = name if name is not None else "null"
        if tname == "str":
            if not isinstance(value, str):
                raise GenericError(f"Invalid parameter type for '{path}', expected: string")
            return value
        if tname == "bool":
            if not isinstance(value, bool):
                raise GenericError(f"Invalid parameter type for '{path}', expected: boolean")
            return value
        if tname == "any":
            return value
        if tname == "null":
            if value is not None:
                raise GenericError(f"Invalid parameter type for '{path}', expected: null")
            return None
        if tname == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GenericError(f"Invalid parameter type for '{path}', expected: number")
            return _to_double(value)
        if tname in ("int", "int64") or tname in _SIGNED_RANGE:
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not INT64_MIN <= value <= INT64_MAX:
                raise GenericError(f"Invalid parameter type for '{path}', expected: integer")
            bits = _SIGNED_RANGE.get(tname)
            if bits is not None and not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
                raise GenericError(f"Parameter '{bare}' expects {tname}_t")
            return value
        # uint8 .. uint64, size: any int64 or uint64 is taken, negatives wrap around.
        if isinstance(value, bool) or not isinstance(value, int) or \
                not INT64_MIN <= value <= UINT64_MAX:
            raise GenericError(f"Parameter '{path}' expects uint64")
        value &= UINT64_MAX
        bits = _UNSIGNED_RANGE.get(tname)
        if bits is not None and value >= (1 << bits):
            raise GenericError(f"Parameter '{bare}' expects {tname}_t")
        return value

    # -- alternates ----------------------------------------------------------------

    def _visit_alternate(self, typ: AlternateType, value: JSONValue, path: str,
                         name: str | None) -> Any:
        want = json_kind(value)
        for v in typ.variants:
            if v.type.alternate_kind() == want:
                return self.visit(v.type, value, path, name)
        bare = name if name is not None else "null"
        raise GenericError(f"Invalid parameter type for '{bare}', expected: {typ.name}")


def _to_double(value: int | float) -> float:
    """An integer as the double QEMU would hold (beyond the double range: +-inf,
    as strtod gives for an integer literal too long for QEMU's int types)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def visit_arguments(command: Command, arguments: dict[str, JSONValue], *,
                    new_glib: bool = False) -> dict[str, Any]:
    """Check a command's arguments as QEMU 2.11's marshaller does (convenience wrapper)."""
    return InputVisitor(new_glib=new_glib).visit_command(command, arguments)


def visit_event_data(event: Event, data: dict[str, JSONValue]) -> dict[str, Any]:
    """Check event data with the input rules (used by tests that read recorded events)."""
    if event.arg_type is None:
        return {}
    assert isinstance(event.arg_type, ObjectType)
    return InputVisitor().visit_object_members(event.arg_type, data, "")
