"""QEMU's JSON writer: qobject_to_json and qobject_to_json_pretty, as text.

Part of `schema.qobject` (QEMU's JSON dialect): the monitor's wire codec
(`vmm.qmp.wire`) frames this text for the socket, and the block layer writes
`json:{...}` node file names with it. Objects come out in QDict hash order
(`schema.qobject.qdict`), strings escaped as QEMU's
modified-UTF-8 walk does (pure ASCII out; invalid byte sequences, carried in `str`
as surrogate escapes, become U+FFFD), numbers as QEMU prints them
(`../shared/reference/qmp-protocol.md` §1.1, §1.2, §13) [qobject/qjson.c to_json;
qobject/qnum.c qnum_to_string; util/unicode.c mod_utf8_codepoint].
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import Final

from schema.jsontypes import JSONValue, qemu_bytes
from schema.qobject.qdict import qdict_order_tuple


def format_qnum_double(x: float) -> str:
    # C "%f", then trailing zeros and a trailing dot removed [qnum.c qnum_to_string].
    # Python's "%f" agrees with glibc's for finite values, infinities and positive NaN;
    # glibc prints a NaN with the sign bit set as "-nan".
    if x != x and math.copysign(1.0, x) < 0:
        return "-nan"
    text = f"{x:f}"
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text = text[:-1]
    return text


_SHORT_ESCAPES: Final = {
    0x22: '\\"',
    0x5C: "\\\\",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


def _escape_code_point(cp: int) -> str:
    """How `to_json` writes one decoded code point; -1 means an invalid sequence."""
    short = _SHORT_ESCAPES.get(cp)
    if short is not None:
        return short
    if cp < 0:
        cp = 0xFFFD
    if cp > 0xFFFF:
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04X}\\u{0xDC00 + (cp & 0x3FF):04X}"
    if cp < 0x20 or cp >= 0x7F:
        return f"\\u{cp:04X}"
    return chr(cp)


def _is_valid_code_point(cp: int) -> bool:
    """Whether mod_utf8_codepoint accepts a well-formed sequence for `cp`
    [util/unicode.c mod_utf8_codepoint]: no surrogates, no noncharacters, in range."""
    return (
        cp <= 0x10FFFF
        and not 0xFDD0 <= cp <= 0xFDEF
        and (cp & 0xFFFE) != 0xFFFE
        and not 0xD800 <= cp <= 0xDFFF
    )


@functools.lru_cache(maxsize=4096)
def _escape_char(ch: str) -> str:
    cp = ord(ch)
    return _escape_code_point(cp if _is_valid_code_point(cp) else -1)


_MIN_CODE_POINT: Final = (0x80, 0x800, 0x10000, 0x200000, 0x4000000)


def _escape_utf8_bytes(data: bytes) -> str:
    """Escape a byte string the way `to_json` does, decoding modified UTF-8 sequence by
    sequence; an invalid sequence becomes U+FFFD and decoding resumes after its lead
    byte and the continuation bytes it did have [util/unicode.c mod_utf8_codepoint]."""
    parts: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        byte = data[i]
        i += 1
        if byte < 0x80:
            cp = byte  # NUL cannot occur in a QEMU string; written as \u0000
        elif byte >= 0xFE or not byte & 0x40:
            cp = -1  # impossible byte, or a continuation byte without a lead
        else:
            length = 2
            while byte & (0x80 >> length):
                length += 1
            cp = byte & ((0x80 >> length) - 1)
            for _ in range(length - 1):
                if i < n and data[i] & 0xC0 == 0x80:
                    cp = (cp << 6) | (data[i] & 0x3F)
                    i += 1
                else:
                    cp = -1  # continuation byte missing
                    break
            else:
                if not _is_valid_code_point(cp):
                    cp = -1
                elif cp < _MIN_CODE_POINT[length - 2] and not (cp == 0 and length == 2):
                    cp = -1  # overlong, except C0 80 for U+0000
        parts.append(_escape_code_point(cp))
    return "".join(parts)


_NEEDS_ESCAPE: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


def _escape_str(s: str) -> str:
    if _SURROGATE.search(s):
        # Raw bytes smuggled in by surrogateescape: work on the bytes QEMU would hold.
        return _escape_utf8_bytes(qemu_bytes(s))
    return _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group()), s)


def _encode_str_uncached(s: str) -> str:
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    return '"' + _escape_str(s) + '"'


_encode_short_str = functools.lru_cache(maxsize=8192)(_encode_str_uncached)


def _encode_str(s: str) -> str:
    if len(s) <= 64:
        return _encode_short_str(s)
    return _encode_str_uncached(s)


_RECURSION_BUDGET: Final = 200  # nesting handled recursively before the iterative encoder


class _TooDeep(Exception):
    pass


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format_qnum_double(float(value))
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _compact(value: object, depth: int) -> str:
    t = type(value)
    if t is str:
        return _encode_str(value)  # type: ignore[arg-type]
    if t is dict:
        if not value:
            return "{}"
        if depth > _RECURSION_BUDGET:
            raise _TooDeep
        depth += 1
        d: dict[str, object] = value  # type: ignore[assignment]
        return (
            "{"
            + ", ".join(
                [_encode_str(k) + ": " + _compact(d[k], depth) for k in qdict_order_tuple(tuple(d))]
            )
            + "}"
        )
    if t is list or t is tuple:
        if not value:
            return "[]"
        if depth > _RECURSION_BUDGET:
            raise _TooDeep
        depth += 1
        return "[" + ", ".join([_compact(v, depth) for v in value]) + "]"  # type: ignore[attr-defined]
    if t is int:
        return str(value)
    if t is float:
        return format_qnum_double(value)  # type: ignore[arg-type]
    if isinstance(value, dict):
        return _compact(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _compact(list(value), depth)
    return _scalar(value)


def _serialize_iterative(value: object, pretty: bool) -> str:
    """`to_json` with an explicit stack: any depth, compact or pretty [qjson.c to_json].

    Pretty: each member on its own line indented by 4 spaces per level, "," at the end
    of a line, the closing bracket on its own line at the parent's indentation; an empty
    object or array is still written open, newline, close.
    """
    parts: list[str] = []
    emit = parts.append
    # Open containers: (their remaining (key, value) members, is a dict, nesting level).
    stack: list[tuple[Iterator[tuple[str, object]], bool, int]] = []
    counts: list[int] = []
    child: object = value
    have_child = True
    level = 0
    while True:
        if have_child:
            have_child = False
            if isinstance(child, dict):
                emit("{")
                d: dict[str, object] = child
                members = [(k, d[k]) for k in qdict_order_tuple(tuple(d))]
                stack.append((iter(members), True, level))
                counts.append(0)
            elif isinstance(child, (list, tuple)):
                emit("[")
                stack.append((iter([("", v) for v in child]), False, level))
                counts.append(0)
            else:
                emit(_scalar(child))
        if not stack:
            break
        iterator, is_dict, level = stack[-1]
        member = next(iterator, None)
        if member is None:
            stack.pop()
            counts.pop()
            if pretty:
                emit("\n" + "    " * level)
            emit("}" if is_dict else "]")
            continue
        if counts[-1]:
            emit("," if pretty else ", ")
        counts[-1] += 1
        level += 1
        if pretty:
            emit("\n" + "    " * level)
        key, child = member
        if is_dict:
            emit(_encode_str(key) + ": ")
        have_child = True
    return "".join(parts)


def to_json(value: JSONValue, *, pretty: bool = False) -> str:
    """The JSON text QEMU writes for `value` (LF line ends in pretty mode)."""
    if pretty:
        return _serialize_iterative(value, True)
    try:
        return _compact(value, 0)
    except _TooDeep:
        return _serialize_iterative(value, False)
