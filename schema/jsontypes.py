"""The one alias for JSON data as it crosses the wire.

Integers are Python ints (their value says whether QEMU held them as int64 or uint64),
doubles are floats, objects are dicts whose insertion order is the order in which the
members were inserted (the serializer turns that into QEMU's hash order).
"""

from __future__ import annotations

from typing import TypeAlias

JSONValue: TypeAlias = (
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
)
JSONObject: TypeAlias = "dict[str, JSONValue]"
