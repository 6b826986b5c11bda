"""The input visitor: a command's arguments checked with QEMU 2.11's exact errors.

One test per row of qapi-introspection.md §6.3-§6.8; the expected texts are the
note's (its **(verified)** examples were produced by a QEMU 2.11.0 binary) and the
format strings of include/qapi/qmp/qerror.h. Which name a message prints follows
qapi/qobject-input-visitor.c (full_name_nth: the full path) and
qapi/qapi-visit-core.c (visit_type_intN / visit_type_uintN: the bare name) and the
generated alternate visitor (scripts/qapi-visit.py gen_visit_alternate: bare name,
"null" in a list).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from schema import GenericError, Schema, load_schema
from schema.model import ObjectType
from schema.model import Schema as ModelSchema
from schema.parser import parse_text
from schema.qobject import GHashTable, first_unexpected, g_str_hash, qdict_bucket, qdict_order
from schema.visitor import InputVisitor, visit_arguments


@cache
def qemu() -> Schema:
    return load_schema("2.11.50", cache_dir=False)


def accept(command: str, arguments: dict[str, Any], *, new_glib: bool = False) -> Any:
    return visit_arguments(qemu().commands[command], arguments, new_glib=new_glib)


def reject(command: str, arguments: dict[str, Any], *, new_glib: bool = False) -> str:
    with pytest.raises(GenericError) as info:
        accept(command, arguments, new_glib=new_glib)
    assert info.value.error_class == "GenericError"
    return info.value.desc


@cache
def small() -> ModelSchema:
    """Types 2.11.50's commands do not reach with the message under test."""
    return ModelSchema.from_parsed(parse_text(
        "{ 'enum': 'E', 'data': [ 'one', 'two' ] }\n"
        "{ 'alternate': 'IntOrEnum', 'data': { 'i': 'int', 'e': 'E' } }\n"
        "{ 'struct': 'S', 'data': { 'n': 'null', 'b8': 'int8', 'b16': 'int16', "
        "'u16': 'uint16', 'alt': 'IntOrEnum' } }\n"
        "{ 'command': 'c', 'data': 'S' }\n", "small.json"))


def reject_small(arguments: dict[str, Any]) -> str:
    with pytest.raises(GenericError) as info:
        visit_arguments(small().commands["c"], arguments)
    return info.value.desc


SMALL_OK = {"n": None, "b8": -128, "b16": 32767, "u16": 65535, "alt": 1}


# --------------------------------------------------------------------------------------
# §6.3 per-type rules


def test_missing_required_member() -> None:
    """§6.3 (any required member): `Parameter 'F' is missing` (QERR_MISSING_PARAMETER,
    qobject_input_get_object)."""
    assert reject("human-monitor-command", {}) == "Parameter 'command-line' is missing"


def test_str() -> None:
    """§6.3 str (verified): `Invalid parameter type for 'F', expected: string`."""
    assert reject("human-monitor-command", {"command-line": 1}) == \
        "Invalid parameter type for 'command-line', expected: string"
    assert accept("human-monitor-command", {"command-line": "info"}) == \
        {"command-line": "info"}


def test_bool() -> None:
    """§6.3 bool: `expected: boolean`; 1 is not a boolean."""
    assert reject("migrate", {"uri": "x", "blk": 1}) == \
        "Invalid parameter type for 'blk', expected: boolean"
    assert accept("migrate", {"uri": "x", "blk": False}) == {"uri": "x", "blk": False}


@pytest.mark.parametrize("value", [1.5, 1.0, 1e3, 2**63, -(2**63) - 1, "1", True])
def test_int_rejects(value: Any) -> None:
    """§6.3 int (verified `1.5`): integers only, and only in int64 range; a number
    written with `.` or an exponent is a double (qnum_get_try_int)."""
    assert reject("human-monitor-command", {"command-line": "x", "cpu-index": value}) == \
        "Invalid parameter type for 'cpu-index', expected: integer"


@pytest.mark.parametrize("value", [0, -(2**63), 2**63 - 1])
def test_int_accepts(value: int) -> None:
    assert accept("human-monitor-command", {"command-line": "x", "cpu-index": value}) == \
        {"command-line": "x", "cpu-index": value}


def test_int32_range_bare_name() -> None:
    """§6.3 int32 (verified): out of range → `Parameter 'N' expects int32_t` with the
    bare name, but a double first fails the int64 visit with the full name."""
    def add(value: Any) -> str:
        return reject("blockdev-add", {"driver": "qcow2", "file": {
            "driver": "blkdebug", "image": "x", "max-transfer": value}})
    assert add(9999999999) == "Parameter 'max-transfer' expects int32_t"
    assert add(-(2**31) - 1) == "Parameter 'max-transfer' expects int32_t"
    assert add(1e20) == "Invalid parameter type for 'file.max-transfer', expected: integer"


def test_int8_int16_range() -> None:
    """§6.3 int8, int16: `expects int8_t` / `int16_t` (visit_type_int8/int16)."""
    assert reject_small({**SMALL_OK, "b8": 128}) == "Parameter 'b8' expects int8_t"
    assert reject_small({**SMALL_OK, "b8": -129}) == "Parameter 'b8' expects int8_t"
    assert reject_small({**SMALL_OK, "b16": 32768}) == "Parameter 'b16' expects int16_t"


def test_uint8_range() -> None:
    """§6.3 uint8 (verified): 256 and -1 → `expects uint8_t`; a string or a double
    → the uint64 error first."""
    def groups(value: Any) -> str:
        return reject("query-rocker-of-dpa-groups", {"name": "x", "type": value})
    assert groups(256) == "Parameter 'type' expects uint8_t"
    assert groups(-1) == "Parameter 'type' expects uint8_t"
    assert groups("a") == "Parameter 'type' expects uint64"
    assert groups(1.5) == "Parameter 'type' expects uint64"
    assert accept("query-rocker-of-dpa-groups", {"name": "x", "type": 255}) == \
        {"name": "x", "type": 255}


def test_uint16_range_in_a_simple_union() -> None:
    """§6.3 uint16, inside a simple union's `data` (bare name)."""
    assert reject("nbd-server-start", {"addr": {"type": "inet", "data": {
        "host": "h", "port": "1", "to": 65536}}}) == "Parameter 'to' expects uint16_t"
    assert reject_small({**SMALL_OK, "u16": -1}) == "Parameter 'u16' expects uint16_t"


def test_uint32_range() -> None:
    """§6.3 uint32 (verified)."""
    assert reject("query-rocker-of-dpa-flows", {"name": "x", "tbl-id": 4294967296}) == \
        "Parameter 'tbl-id' expects uint32_t"


def test_size_and_uint64() -> None:
    """§6.3 uint64/size (verified for `size`): `Parameter 'F' expects uint64` for
    non-integers and integers outside int64 ∪ uint64; negative integers are taken
    and wrap modulo 2**64 (qobject_input_type_uint64: "Need to accept negative
    values for backward compatibility")."""
    assert reject("migrate-set-parameters", {"xbzrle-cache-size": "x"}) == \
        "Parameter 'xbzrle-cache-size' expects uint64"
    assert reject("migrate-set-parameters", {"xbzrle-cache-size": 2**64}) == \
        "Parameter 'xbzrle-cache-size' expects uint64"
    assert reject("migrate-set-parameters", {"xbzrle-cache-size": 1.0}) == \
        "Parameter 'xbzrle-cache-size' expects uint64"
    assert accept("migrate-set-parameters", {"xbzrle-cache-size": -1}) == \
        {"xbzrle-cache-size": 2**64 - 1}
    assert accept("migrate-set-parameters", {"xbzrle-cache-size": 2**64 - 1}) == \
        {"xbzrle-cache-size": 2**64 - 1}


def test_number() -> None:
    """§6.3 number (verified `1` accepted): any JSON number, integers become doubles."""
    result = accept("migrate_set_downtime", {"value": 1})
    assert result == {"value": 1.0} and isinstance(result["value"], float)
    assert reject("migrate_set_downtime", {"value": "1"}) == \
        "Invalid parameter type for 'value', expected: number"
    assert reject("migrate_set_downtime", {"value": True}) == \
        "Invalid parameter type for 'value', expected: number"


def test_number_from_an_integer_too_big_for_a_double() -> None:
    """QEMU's JSON parser reads an integer beyond uint64 as a double (strtod, so
    10**400 is inf), which a `number` member takes.

    (Fixed: the visitor used to crash with OverflowError converting it.)
    """
    assert accept("migrate_set_downtime", {"value": 10**400}) == {"value": float("inf")}
    assert accept("migrate_set_downtime", {"value": -(10**400)}) == {"value": float("-inf")}


def test_any() -> None:
    """§6.3 any: any JSON value passes through unchanged."""
    value = {"z": [1, None, {"a": "b"}], "a": 1.5}
    result = accept("qom-set", {"path": "/", "property": "p", "value": value})
    assert result["value"] == value and list(result["value"]) == ["z", "a"]
    assert accept("qom-set", {"path": "/", "property": "p", "value": None})["value"] is None


def test_null() -> None:
    """§6.3 null: only `null` (qobject_input_type_null)."""
    assert reject_small({**SMALL_OK, "n": 0}) == "Invalid parameter type for 'n', expected: null"
    assert visit_arguments(small().commands["c"], SMALL_OK) == SMALL_OK


def test_enum() -> None:
    """§6.3 enum (verified): an unknown value names the *value*; a non-string is
    the string type error (input_type_enum)."""
    assert reject("watchdog-set-action", {"action": "foo"}) == "Invalid parameter 'foo'"
    assert reject("watchdog-set-action", {"action": "Reset"}) == "Invalid parameter 'Reset'"
    assert reject("watchdog-set-action", {"action": 1}) == \
        "Invalid parameter type for 'action', expected: string"
    assert accept("watchdog-set-action", {"action": "reset"}) == {"action": "reset"}


def test_struct_member() -> None:
    """§6.3 struct/union as a member: `expected: object` (qobject_input_start_struct)."""
    assert reject("blockdev-add", {"driver": "nbd", "server": "x"}) == \
        "Invalid parameter type for 'server', expected: object"


def test_list() -> None:
    """§6.3 / §6.8 (verified): `expected: array`."""
    assert reject("input-send-event", {"events": {}}) == \
        "Invalid parameter type for 'events', expected: array"


def test_alternate_kind_mismatch() -> None:
    """§6.3 / §6.7 alternate (verified): `expected: <Alternate>` with the bare name."""
    assert reject("blockdev-add", {"driver": "qcow2", "file": 1}) == \
        "Invalid parameter type for 'file', expected: BlockdevRef"


def test_command_without_arguments() -> None:
    """§6.1: a command without arguments takes none; any key is unexpected."""
    assert accept("query-status", {}) == {}
    assert reject("query-status", {"x": 1}) == "Parameter 'x' is unexpected"


# --------------------------------------------------------------------------------------
# §6.4 optional members and null


def test_optional_present_with_null_is_checked() -> None:
    """§6.4 (verified): present means the key exists, whatever its value."""
    assert reject("human-monitor-command", {"command-line": "x", "cpu-index": None}) == \
        "Invalid parameter type for 'cpu-index', expected: integer"


def test_null_through_an_alternate_branch() -> None:
    """§6.4 (verified): StrOrNull takes `null`."""
    assert accept("migrate-set-parameters", {"tls-creds": None}) == {"tls-creds": None}
    assert accept("migrate-set-parameters", {"tls-creds": "tls0"}) == {"tls-creds": "tls0"}


def test_absent_optional_members_are_skipped() -> None:
    """§6.4: the result holds the members present, nothing else."""
    assert accept("human-monitor-command", {"command-line": "x"}) == {"command-line": "x"}


# --------------------------------------------------------------------------------------
# §6.5 structs, flat unions, simple unions


def test_flat_union_discriminator() -> None:
    """§6.5 (verified): the discriminator is a base member visited as an enum."""
    assert reject("blockdev-add", {}) == "Parameter 'driver' is missing"
    assert reject("blockdev-add", {"driver": "nosuch"}) == "Invalid parameter 'nosuch'"
    assert reject("blockdev-add", {"driver": 1}) == \
        "Invalid parameter type for 'driver', expected: string"


def test_flat_union_branch_members() -> None:
    """§6.5 (verified): then the selected branch's members, then unexpected keys."""
    assert reject("blockdev-add", {"driver": "qcow2"}) == "Parameter 'file' is missing"
    assert reject("blockdev-add", {"driver": "null-co", "bogus": 1}) == \
        "Parameter 'bogus' is unexpected"
    assert accept("blockdev-add", {"driver": "null-co", "node-name": "n", "size": 4096}) == \
        {"driver": "null-co", "node-name": "n", "size": 4096}


def test_simple_union() -> None:
    """§6.5 (verified): `type` is the implicit enum, `data` the branch type, both
    checked with full names."""
    assert reject("input-send-event", {"events": [{"type": "key"}]}) == \
        "Parameter 'events[0].data' is missing"
    assert reject("input-send-event", {"events": [{"type": "foo", "data": {}}]}) == \
        "Invalid parameter 'foo'"
    key = {"type": "qcode", "data": "a"}
    assert reject("input-send-event", {"events": [
        {"type": "key", "data": {"down": True, "key": key, "zz": 1}}]}) == \
        "Parameter 'events[0].data.zz' is unexpected"
    assert accept("input-send-event", {"events": [
        {"type": "key", "data": {"down": True, "key": key}}]}) == {"events": [
            {"type": "key", "data": {"key": key, "down": True}}]}


def test_first_error_wins() -> None:
    """§6.1: members are visited in flattened order and the first error ends it."""
    assert reject("blockdev-add", {"driver": "qcow2", "file": 1, "cache-size": "x"}) == \
        "Invalid parameter type for 'file', expected: BlockdevRef"
    assert reject("blockdev-add", {"driver": "qcow2", "file": "f", "node-name": 1,
                                   "zz": 1}) == \
        "Invalid parameter type for 'node-name', expected: string"


# --------------------------------------------------------------------------------------
# §6.6 which unexpected key is named (GLib's GHashTable iteration order)

GLIB_VECTORS = [
    # (command, keys as sent, consumed, GLib <= 2.58, GLib >= 2.60)
    ("query-status", ["b", "a"], "a", "b"),
    ("query-status", ["x", "y", "z"], "z", "z"),
    ("query-status", ["foo", "bar", "baz", "qux"], "baz", "baz"),
    ("query-status", ["zzz", "a", "b", "c", "d", "e"], "e", "e"),
    ("query-status", ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"],
     "beta", "epsilon"),
    ("human-monitor-command", ["command-line", "zz", "aa"], "aa", "aa"),
]


@pytest.mark.parametrize(("command", "keys", "old", "new"), GLIB_VECTORS)
def test_which_unexpected_key_is_named(command: str, keys: list[str], old: str,
                                       new: str) -> None:
    """§6.6 test vectors, both GLib regimes (qobject_input_push fills a GHashTable
    in QDict order, qobject_input_check_struct names its first key)."""
    arguments: dict[str, Any] = {k: "x" for k in keys}
    assert reject(command, arguments, new_glib=False) == f"Parameter '{old}' is unexpected"
    assert reject(command, arguments, new_glib=True) == f"Parameter '{new}' is unexpected"


def test_hash_functions() -> None:
    """qmp-protocol.md §13 vectors for tdb_hash; g_str_hash is djb2 over signed
    chars (qapi-introspection.md §6.6)."""
    assert qdict_bucket("return") == 401 and qdict_bucket("id") == 486
    assert qdict_order(["major", "minor", "micro"]) == ["micro", "minor", "major"]
    assert qdict_order(["return", "id"]) == ["return", "id"]
    assert qdict_order(["error", "id"]) == ["id", "error"]
    assert g_str_hash("") == 5381
    assert g_str_hash("a") == 5381 * 33 + 97
    assert g_str_hash("\u00e9") == ((5381 * 33 + (0xC3 - 256)) * 33 + (0xA9 - 256)) % 2**32


def test_ghashtable_resizes_and_tombstones() -> None:
    """Many inserts grow the table, many removals shrink it; iteration still finds
    the one key left (both regimes)."""
    for new in (False, True):
        table = GHashTable(new)
        keys = [f"key{i}" for i in range(200)]
        for k in keys:
            table.insert(k)
        assert table.size >= 256
        for k in keys[:-1]:
            table.remove(k)
        assert table.first() == "key199"
        assert table.size == 8
        table.remove("key199")
        assert table.first() is None
    assert first_unexpected(["a", "b"], ["a", "b"]) is None


# --------------------------------------------------------------------------------------
# §6.7 alternates


def test_alternate_nested_uses_bare_name() -> None:
    """§6.7 (verified): not `file.image` but `image`."""
    assert reject("blockdev-add", {"driver": "qcow2", "file": {
        "driver": "blkdebug", "image": 5}}) == \
        "Invalid parameter type for 'image', expected: BlockdevRef"


def test_alternate_in_a_list_is_null() -> None:
    """§6.7 (verified): a list element has no name; the message says 'null'."""
    assert reject("blockdev-add", {"driver": "quorum", "children": [5],
                                   "vote-threshold": 1}) == \
        "Invalid parameter type for 'null', expected: BlockdevRef"


def test_alternate_dispatch_by_kind_not_by_python_class() -> None:
    """§6.7: the branch follows the JSON kind; a dict subclass is still an object.

    (Fixed: the visitor looked the exact Python class up, so an OrderedDict
    matched no branch.)
    """
    from collections import OrderedDict

    file = OrderedDict([("driver", "null-co")])
    assert accept("blockdev-add", {"driver": "qcow2", "file": file})["file"] == \
        {"driver": "null-co"}


def test_alternate_str_or_null() -> None:
    """§6.7 (verified): StrOrNull has no number branch."""
    assert reject("migrate-set-parameters", {"tls-creds": 1}) == \
        "Invalid parameter type for 'tls-creds', expected: StrOrNull"


def test_alternate_branch_rules_apply() -> None:
    """§6.7: the chosen branch's own rules and messages: an enum branch given an
    unknown string, an int branch given a double, an object branch's members."""
    assert reject("blockdev-add", {"driver": "qcow2", "file": "f",
                                   "overlap-check": "x"}) == "Invalid parameter 'x'"
    assert reject_small({**SMALL_OK, "alt": 1.5}) == \
        "Invalid parameter type for 'alt', expected: integer"
    assert reject_small({**SMALL_OK, "alt": True}) == \
        "Invalid parameter type for 'alt', expected: IntOrEnum"
    assert reject("blockdev-add", {"driver": "qcow2", "file": {"driver": "null-co",
                                                               "x": 1}}) == \
        "Parameter 'file.x' is unexpected"
    assert accept("blockdev-add", {"driver": "qcow2", "file": {"driver": "null-co"},
                                   "overlap-check": {"template": "all"}}) == {
        "driver": "qcow2", "file": {"driver": "null-co"}, "overlap-check": {"template": "all"}}


# --------------------------------------------------------------------------------------
# §6.8 lists


def test_list_elements() -> None:
    """§6.8 (verified): elements are checked in order with names `F[i]`; an object
    element must be an object; an error in element i stops the walk."""
    assert reject("input-send-event", {"events": [1]}) == \
        "Invalid parameter type for 'events[0]', expected: object"
    assert reject("blockdev-add", {"driver": "qcow2", "file": {
        "driver": "blkdebug", "image": "x",
        "inject-error": [{"event": "l1_update"}, {}]}}) == \
        "Parameter 'file.inject-error[1].event' is missing"
    assert accept("input-send-event", {"events": []}) == {"events": []}


def test_visitor_objects_are_reusable() -> None:
    """An InputVisitor holds only its GLib regime; one can check many commands."""
    visitor = InputVisitor(new_glib=True)
    schema = qemu()
    assert visitor.visit_command(schema.commands["query-status"], {}) == {}
    assert visitor.visit_command(schema.commands["human-monitor-command"],
                                 {"command-line": "x"}) == {"command-line": "x"}


# --------------------------------------------------------------------------------------
# Nesting: the walk costs no Python recursion


def test_blockdev_options_nested_to_the_json_limit() -> None:
    """A value may nest as deep as the JSON reader lets through (1024 open brackets,
    json-streamer.c MAX_NESTING); QEMU's visitor walks it recursively in C, this one
    with its own stack: `file` nested 700 levels deep is visited, and an error at the
    bottom names the full path."""
    options: dict[str, Any] = {"driver": "null-co"}
    for _ in range(700):
        options = {"driver": "raw", "file": options}
    visited = accept("blockdev-add", options)
    depth = 0
    while "file" in visited:
        visited = visited["file"]
        depth += 1
    assert depth == 700 and visited == {"driver": "null-co"}
    inner = options
    while "file" in inner["file"]:
        inner = inner["file"]
    inner["file"] = {"driver": "null-co", "size": "x"}
    assert reject("blockdev-add", options) == \
        "Invalid parameter type for '" + "file." * 700 + "size', expected: integer"


# --------------------------------------------------------------------------------------
# keyval mode [qapi/qobject-input-visitor.c qobject_input_visitor_new_keyval]


@cache
def kv_schema() -> ModelSchema:
    return ModelSchema.from_parsed(parse_text(
        "{ 'enum': 'E', 'data': [ 'one', 'two' ] }\n"
        "{ 'struct': 'Inner', 'data': { 'n': 'int' } }\n"
        "{ 'struct': 'S', 'data': { '*i': 'int', '*i8': 'int8', '*u': 'uint64', "
        "'*u16': 'uint16', '*sz': 'size', '*b': 'bool', '*num': 'number', '*s': 'str', "
        "'*e': 'E', '*nul': 'null', '*a': 'any', '*l': ['Inner'], '*o': 'Inner' } }\n"
        "{ 'command': 'c', 'data': 'S' }\n", "kv.json"))


def keyval(arguments: dict[str, Any]) -> Any:
    command = kv_schema().commands["c"]
    assert isinstance(command.arg_type, ObjectType)
    return InputVisitor(keyval=True).visit_object_members(command.arg_type, arguments, "")


def keyval_reject(arguments: dict[str, Any]) -> str:
    with pytest.raises(GenericError) as info:
        keyval(arguments)
    return info.value.desc


def test_keyval_converts_strings_by_type() -> None:
    """qobject_input_type_*_keyval: integers by qemu_strtoi64/qemu_strtou64 (base 0,
    `-1` wraps for unsigned), size by qemu_strtosz, bool from on/off, number by strtod;
    str, enum and any stay strings; lists and objects are walked."""
    assert keyval({"i": "-0x10", "i8": "010", "u": "-1", "u16": "65535", "sz": "1.5k",
                   "b": "on", "num": "0x1p3", "s": "x", "e": "two", "a": "on",
                   "l": [{"n": "1"}], "o": {"n": "2"}}) == {
        "i": -16, "i8": 8, "u": 2**64 - 1, "u16": 65535, "sz": 1536, "b": True,
        "num": 8.0, "s": "x", "e": "two", "a": "on", "l": [{"n": 1}], "o": {"n": 2}}


@pytest.mark.parametrize("text", ["1_000", "0o17", "inf", "", "1x", "9223372036854775808"])
def test_keyval_int(text: str) -> None:
    """qobject_input_type_int64_keyval: `Parameter 'F' expects integer` for anything
    qemu_strtoi64 does not take whole (Python's `1_000` and `0o17` included)."""
    assert keyval_reject({"i": text}) == "Parameter 'i' expects integer"


def test_keyval_uint() -> None:
    """qobject_input_type_uint64_keyval: the same text for unsigned integers; the
    uintN range check names the bare member [visit_type_uintN]."""
    assert keyval_reject({"u": "18446744073709551616"}) == "Parameter 'u' expects integer"
    assert keyval_reject({"u16": "65536"}) == "Parameter 'u16' expects uint16_t"
    assert keyval_reject({"i8": "128"}) == "Parameter 'i8' expects int8_t"


@pytest.mark.parametrize("text", ["inf", "1.5", "-1", "16E", "1_000", "x"])
def test_keyval_size(text: str) -> None:
    """qobject_input_type_size_keyval: `Parameter 'F' expects size` whenever
    qemu_strtosz fails, out of range (`inf`, `16E`, negative) or not a size."""
    assert keyval_reject({"sz": text}) == "Parameter 'sz' expects size"


def test_keyval_bool() -> None:
    """qobject_input_type_bool_keyval: only `on` and `off` (2.11 has no
    qapi_bool_parse: `yes` and `true` are refused)."""
    assert keyval({"b": "off"}) == {"b": False}
    assert keyval_reject({"b": "yes"}) == "Parameter 'b' expects 'on' or 'off'"


@pytest.mark.parametrize("text", ["inf", "nan", "1e999", "", "1,5"])
def test_keyval_number(text: str) -> None:
    """qobject_input_type_number_keyval: strtod over the whole string, finite, no
    ERANGE, else `Invalid parameter type for 'F', expected: number`."""
    assert keyval_reject({"num": text}) == "Invalid parameter type for 'num', expected: number"


def test_keyval_null() -> None:
    """qobject_input_type_null in keyval mode: a string is never null."""
    assert keyval_reject({"nul": ""}) == "Invalid parameter type for 'nul', expected: null"


def test_keyval_scalar_given_an_object() -> None:
    """qobject_input_get_keyval: `Parameters 'F.*' are unexpected` where a scalar
    member got dotted keys."""
    assert keyval_reject({"s": {"x": "1"}}) == "Parameters 's.*' are unexpected"
    assert keyval_reject({"e": ["one"]}) == "Parameters 'e.*' are unexpected"


def test_keyval_list_element_names() -> None:
    """full_name_nth in keyval mode: list elements are `F.i`, not `F[i]`."""
    assert keyval_reject({"l": [{"n": "1"}, {"n": "x"}]}) == "Parameter 'l.1.n' expects integer"
    assert keyval_reject({"l": [{"n": "1"}, "x"]}) == \
        "Invalid parameter type for 'l.1', expected: object"


def test_keyval_non_string_scalar() -> None:
    """qobject_input_get_keyval: a non-string scalar cannot come from keyval_parse;
    QEMU still names it: `Internal error: parameter F invalid`."""
    assert keyval_reject({"s": 1}) == "Internal error: parameter s invalid"
