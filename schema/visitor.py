"""QEMU 2.11's input visitor: a command's `arguments` checked and converted by the schema.

A reader of `schema.model`. It walks the argument type exactly as QEMU's generated
marshallers drive `qapi/qobject-input-visitor.c`: members in flattened order (base,
own, then the selected union branch), the first error ends the walk, and an object is
checked for keys nobody consumed right after its last member. Error texts and which
name each one prints (the full path or the bare member name) follow
`../shared/reference/qapi-introspection.md` §6.

Two modes, as QEMU has two constructors:

* JSON (qobject_input_visitor_new), for QMP arguments and `-blockdev`/`-object` JSON:
  leaves must have their member's JSON type;
* keyval (qobject_input_visitor_new_keyval), for what `schema.opts.keyval` parsed from
  a `key=value,...` argument: every leaf is a string, converted by its member's type
  with QEMU's option conversions (`schema.opts.cutils`): integers by qemu_strtoi64 /
  qemu_strtou64 (base 0, the whole string), `size` by qemu_strtosz, `bool` from `on`
  or `off`, `number` by strtod; list elements are named `a.0` instead of `a[0]`.

The result is plain data with wire names: present members only, `uint64`/`size`
negatives wrapped modulo 2**64, integers given to `number` members turned into floats,
`any` values passed through untouched.

The walk keeps its own stack (`schema.walk`: each object or array being visited is a
generator that hands the walks of its parts to `run`), so a value nested as deep as
the JSON reader allows (1024 levels) costs no Python recursion.
"""

from __future__ import annotations

import math
from typing import Any

from schema.errors import (
    QERR_INVALID_PARAMETER_TYPE,
    QERR_INVALID_PARAMETER_VALUE,
    GenericError,
)
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
from schema.opts.cutils import Errno, qemu_strtoi64, qemu_strtosz, qemu_strtou64, strtod
from schema.qobject.qdict import first_unexpected, qdict_order
from schema.walk import Walk, is_walk, run

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
_SIGNED_RANGE = {"int8": 8, "int16": 16, "int32": 32}
_UNSIGNED_RANGE = {"uint8": 8, "uint16": 16, "uint32": 32}
_SIGNED = frozenset(("int", "int64", *_SIGNED_RANGE))

def _full(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class InputVisitor:
    """One walk at a time over arguments. `new_glib` picks the GLib regime (§6.6);
    `keyval` the keyval mode (every leaf a string, converted by type)."""

    def __init__(self, *, new_glib: bool = False, keyval: bool = False) -> None:
        self.new_glib = new_glib
        self.keyval = keyval

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

    def visit(self, typ: Type, value: Any, path: str, name: str | None) -> Any:
        """Visit one value of type `typ`; `path` is its full name, `name` its bare name."""
        return run(self._step(typ, value, path, name))

    def visit_object_members(self, typ: ObjectType, obj: dict[str, Any],
                             path: str) -> dict[str, Any]:
        """Visit the members of the object `obj` (already known to be one)."""
        result: dict[str, Any] = run(self._object(typ, obj, path))
        return result

    # -- one value: its converted value, or the walk of a container ------------------

    def _step(self, typ: Type, value: Any, path: str, name: str | None) -> Any:
        if isinstance(typ, BuiltinType):
            tname = typ.name
            # qobject_input_type_any and _null serve both modes (no keyval string is null).
            if tname == "any":
                return value
            if tname == "null":
                if value is not None:
                    raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "null"))
                return None
            if self.keyval:
                return self._keyval_builtin(tname, value, path, name)
            return self._builtin(tname, value, path, name)
        if isinstance(typ, EnumType):
            text = self._keyval_str(value, path) if self.keyval else value
            if not isinstance(text, str):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "string"))
            if text not in typ.values:
                raise GenericError(f"Invalid parameter '{text}'")
            return text
        if isinstance(typ, ObjectType):
            if not isinstance(value, dict):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "object"))
            return self._object(typ, value, path)
        if isinstance(typ, ArrayType):
            if not isinstance(value, list):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "array"))
            return self._array(typ, value, path)
        if isinstance(typ, AlternateType):
            want = json_kind(value)
            for v in typ.variants:
                if v.type.alternate_kind() == want:
                    return self._step(v.type, value, path, name)
            bare = name if name is not None else "null"
            raise GenericError(QERR_INVALID_PARAMETER_TYPE % (bare, typ.name))
        raise AssertionError(typ)  # pragma: no cover

    # -- containers -----------------------------------------------------------------

    def _array(self, typ: ArrayType, value: list[Any], path: str) -> Walk:
        out: list[Any] = []
        element = typ.element
        index = "{}.{}" if self.keyval else "{}[{}]"
        for i, v in enumerate(value):
            item = self._step(element, v, index.format(path, i), None)
            if is_walk(item):
                item = yield item
            out.append(item)
        return out

    def _object(self, typ: ObjectType, obj: dict[str, Any], path: str) -> Walk:
        out: dict[str, Any] = {}
        consumed: list[str] = []
        members = typ.members
        variants = typ.variants
        while True:
            assert members is not None
            for m in members:
                if m.name not in obj:
                    if m.optional:
                        continue
                    raise GenericError(f"Parameter '{_full(path, m.name)}' is missing")
                consumed.append(m.name)
                value = self._step(m.type, obj[m.name], _full(path, m.name), m.name)
                if is_walk(value):
                    value = yield value
                out[m.name] = value
            if variants is None:
                break
            # Then the members of the branch the tag selects (a union's base is walked).
            tag = variants.tag_member
            assert tag is not None
            branch = variants.get(out[tag.name])
            if branch is None:
                break
            assert isinstance(branch.type, ObjectType)
            members, variants = branch.type.members, None
        self._check_unexpected(obj, consumed, path)
        return out

    def _check_unexpected(self, obj: dict[str, Any], consumed: list[str],
                          path: str) -> None:
        if len(consumed) == len(obj):
            return
        key = first_unexpected(qdict_order(obj), consumed, new_glib=self.new_glib)
        if key is not None:
            raise GenericError(f"Parameter '{_full(path, key)}' is unexpected")

    # -- scalars, JSON mode -------------------------------------------------------------

    def _builtin(self, tname: str, value: Any, path: str, name: str | None) -> Any:
        if tname == "str":
            if not isinstance(value, str):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "string"))
            return value
        if tname == "bool":
            if not isinstance(value, bool):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "boolean"))
            return value
        if tname == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "number"))
            return _to_double(value)
        if tname in _SIGNED:
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not INT64_MIN <= value <= INT64_MAX:
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "integer"))
            return _check_signed_range(tname, value, name)
        # uint8 .. uint64, size: any int64 or uint64 is taken, negatives wrap around.
        if isinstance(value, bool) or not isinstance(value, int) or \
                not INT64_MIN <= value <= UINT64_MAX:
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % (path, "uint64"))
        return _check_unsigned_range(tname, value & UINT64_MAX, name)

    # -- scalars, keyval mode [qobject_input_type_*_keyval] ---------------------------------

    def _keyval_str(self, value: Any, path: str) -> str:
        """qobject_input_get_keyval: the string a scalar member must be."""
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            raise GenericError(f"Parameters '{path}.*' are unexpected")
        raise GenericError(f"Internal error: parameter {path} invalid")

    def _keyval_builtin(self, tname: str, value: Any, path: str, name: str | None) -> Any:
        text = self._keyval_str(value, path)
        if tname == "str":
            return text
        if tname == "bool":
            if text == "on":
                return True
            if text == "off":
                return False
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % (path, "'on' or 'off'"))
        if tname == "number":
            number, end, erange = strtod(text)
            if erange or end == 0 or end != len(text) or not math.isfinite(number):
                raise GenericError(QERR_INVALID_PARAMETER_TYPE % (path, "number"))
            return number
        if tname == "size":
            err, size = qemu_strtosz(text)
            if err is not Errno.OK:
                raise GenericError(QERR_INVALID_PARAMETER_VALUE % (path, "size"))
            return size
        if tname in _SIGNED:
            err, number, _ = qemu_strtoi64(text)
            if err is not Errno.OK:
                raise GenericError(QERR_INVALID_PARAMETER_VALUE % (path, "integer"))
            return _check_signed_range(tname, number, name)
        err, number, _ = qemu_strtou64(text)
        if err is not Errno.OK:
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % (path, "integer"))
        return _check_unsigned_range(tname, number, name)


def _check_signed_range(tname: str, value: int, name: str | None) -> int:
    """visit_type_intN: the bare name ("null" in a list) [qapi/qapi-visit-core.c]."""
    bits = _SIGNED_RANGE.get(tname)
    if bits is not None and not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name or "null", f"{tname}_t"))
    return value


def _check_unsigned_range(tname: str, value: int, name: str | None) -> int:
    """visit_type_uintN: the bare name ("null" in a list) [qapi/qapi-visit-core.c]."""
    bits = _UNSIGNED_RANGE.get(tname)
    if bits is not None and value >= (1 << bits):
        raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name or "null", f"{tname}_t"))
    return value


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
