"""QEMU's JSON parser: one message's tokens to a value, or QEMU's error.

Part of `schema.qobject` (QEMU's JSON dialect), above the streamer
(`schema.qobject.streamer`), which hands it the tokens of one message at a time.

QEMU's parser is recursive descent [qobject/json-parser.c json_parser_parse_err]; this
one keeps an explicit stack, so that the 1024 levels the streamer lets through cost no
Python recursion. Every enclosing level of a failure overwrites the error message with
its own, so the reported reason depends only on the outermost container and on which
of its parts failed. Values: integers as int64 if they fit, else uint64, else a double;
strings as the bytes QEMU holds, decoded with ``surrogateescape``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from schema.jsontypes import JSONValue
from schema.qobject.lexer import (
    COLON,
    COMMA,
    FLOAT,
    INTEGER,
    KEYWORD,
    LCURLY,
    LSQUARE,
    PERCENT,
    RCURLY,
    RSQUARE,
    STRING,
    Token,
)

# The desc of QERR_JSON_PARSING [include/qapi/qmp/qerror.h].
INVALID_JSON_SYNTAX: Final = "Invalid JSON syntax"

# The parser's reason is formatted into a 1024-byte buffer [json-parser.c parse_error].
_MAX_REASON: Final = 1023


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """A message that did not parse; `desc` is the GenericError text QEMU replies with.

    Either `Invalid JSON syntax` (lexical error, limit exceeded, or a parser failure that
    sets no message) or `JSON parse error, <reason>` [monitor.c handle_qmp_command].
    """

    desc: str


Parsed: TypeAlias = "JSONValue | ParseFailure"

INVALID: Final = ParseFailure(INVALID_JSON_SYNTAX)


class _Fail(Exception):
    """A parse failure; `reason` None means QEMU failed without setting a message."""

    def __init__(self, reason: str | None, own: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.own = own  # raised by the innermost open container itself, not by a value


_ARRAY, _KEY, _VALUE = range(3)  # what the open container is parsing

_KEYWORDS: Final[dict[bytes, JSONValue]] = {b"true": True, b"false": False, b"null": None}

# After a member or element: the message when no separator follows, and what comes
# after the separator.
_SEPARATOR_REASON: Final = {_VALUE: "expected separator in dict",
                            _ARRAY: "expected separator in list"}
_NEXT_PART: Final = {_VALUE: _KEY, _ARRAY: _ARRAY}

_CHILD_REASON: Final = {
    _ARRAY: "expecting value",
    _KEY: "key is not a string in object",
    _VALUE: "Missing value in dict",
}


def parse_message(tokens: list[Token]) -> Parsed:
    """Parse one message's tokens [json-parser.c json_parser_parse_err]: its value, or
    the failure QEMU reports."""
    if len(tokens) == 1:
        ttype, text = tokens[0]
        if ttype == STRING:
            return _string_value(text)
        if ttype == INTEGER:
            return _integer_value(text)
    # Open containers: [container, part, key]; part is _ARRAY, _KEY or _VALUE.
    stack: list[list[Any]] = []
    n = len(tokens)
    i = 0
    value: JSONValue
    try:
        while True:
            # Parse a value [parse_value].
            if i >= n:
                raise _Fail("premature EOI", False)
            ttype, text = tokens[i]
            if ttype == STRING:
                value = _string_value(text)
                i += 1
            elif ttype == LCURLY:
                i += 1
                if i < n and tokens[i][0] == RCURLY:
                    value = {}
                    i += 1
                else:
                    stack.append([{}, _KEY, None])
                    continue
            elif ttype == LSQUARE:
                i += 1
                if i < n and tokens[i][0] == RSQUARE:
                    value = []
                    i += 1
                else:
                    stack.append([[], _ARRAY, None])
                    continue
            elif ttype == INTEGER:
                value = _integer_value(text)
                i += 1
            elif ttype == FLOAT:
                value = float(text)
                i += 1
            elif ttype == KEYWORD:
                i += 1
                if text not in _KEYWORDS:
                    raise _Fail(f"invalid keyword '{text.decode('ascii')}'", False)
                value = _KEYWORDS[text]
            elif ttype == PERCENT:
                # QMP parses without arguments for the interpolation tokens: the parser
                # returns nothing and sets no error [parse_escape].
                raise _Fail(None, False)
            else:
                raise _Fail("expecting value", False)

            # Hand the value to the open containers, closing those that end here.
            while True:
                if not stack:
                    return value
                frame = stack[-1]
                part = frame[1]
                if part == _KEY and type(value) is not str:
                    raise _Fail("key is not a string in object", True)
                if i >= n:
                    raise _Fail("premature EOI", True)
                following = tokens[i][0]
                if part == _KEY:
                    if following != COLON:
                        raise _Fail("missing : in object pair", True)
                    i += 1
                    frame[1] = _VALUE
                    frame[2] = value
                    break
                if part == _VALUE:
                    frame[0][frame[2]] = value  # a repeated key keeps its first position
                    closer = RCURLY
                else:
                    frame[0].append(value)
                    closer = RSQUARE
                if following == closer:
                    i += 1
                    value = frame[0]
                    stack.pop()
                    continue
                if following != COMMA:
                    raise _Fail(_SEPARATOR_REASON[part], True)
                i += 1
                frame[1] = _NEXT_PART[part]
                break
    except _Fail as failure:
        reason = failure.reason
        if len(stack) > 1 or (stack and not failure.own):
            reason = _CHILD_REASON[stack[0][1]]
        if reason is None:
            return INVALID
        return ParseFailure("JSON parse error, " + reason[:_MAX_REASON])


_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1


def _integer_value(text: bytes) -> int | float:
    """int64 if it fits, else uint64 if non-negative and it fits, else a double
    [json-parser.c parse_literal]."""
    if len(text) <= 18:
        return int(text)
    if len(text) > 21:
        return float(text)  # far outside uint64; also avoids int()'s digit limit
    value = int(text)
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    return float(text)


_UNESCAPE: Final = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_SIMPLE_ESCAPES: Final = {
    b'"': b'"',
    b"'": b"'",
    b"\\": b"\\",
    b"/": b"/",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
}


def _unescape_one(m: re.Match[bytes]) -> bytes:
    hexdigits = m.group(1)
    if hexdigits is None:
        return _SIMPLE_ESCAPES[m.group(2)]
    # Each \uXXXX on its own becomes 1 to 3 UTF-8 bytes: surrogates are not paired and
    # become ED xx xx; \u0000 ends up as an empty C string, i.e. nothing
    # [json-parser.c qstring_from_escaped_str, wchar_to_utf8].
    code = int(hexdigits, 16)
    if code == 0:
        return b""
    return chr(code).encode("utf-8", "surrogatepass")


def _decode_string_token(token: bytes) -> str:
    body = token[1:-1]
    if b"\\" in body:
        body = _UNESCAPE.sub(_unescape_one, body)
    return body.decode("utf-8", "surrogateescape")


_decode_short_string = functools.lru_cache(maxsize=4096)(_decode_string_token)


def _string_value(token: bytes) -> str:
    if len(token) <= 64:
        return _decode_short_string(token)
    return _decode_string_token(token)


