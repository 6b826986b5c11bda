"""The one alias for JSON data as it crosses the wire.

Integers are Python ints (their value says whether QEMU held them as int64 or uint64),
doubles are floats, objects are dicts whose insertion order is the order in which the
members were inserted (the serializer turns that into QEMU's hash order). Strings are
QEMU's byte strings: bytes that are not UTF-8 are carried in `str` as surrogate escapes
(``bytes.decode("utf-8", "surrogateescape")``), and `qemu_bytes` gives them back.
"""

from __future__ import annotations

from typing import TypeAlias

JSONValue: TypeAlias = (
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
)
JSONObject: TypeAlias = "dict[str, JSONValue]"


def json_kind(value: object) -> str | None:
    """The JSON kind of a value, as QEMU's QType sees it: "null", "boolean", "number",
    "string", "array" or "object"; None for what is not JSON data. (A Python bool is
    an int, but a QBool is no QNum, hence the order of the tests.)"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return None


def qemu_bytes(text: str) -> bytes:
    """The bytes QEMU holds for `text` (a string decoded with surrogateescape; a lone
    surrogate that did not come from there is written as its 3-byte form)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
