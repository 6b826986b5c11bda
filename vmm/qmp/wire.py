"""The QMP wire codec: bytes in, JSON values out, and back, byte-exact with QEMU 2.11.0.

This is the wire edge of the `vmm` layer. Its neighbours are the QMP protocol module,
which feeds each connection's received bytes to a `MessageDecoder` and writes what
`encode` returns, and the argument visitor, which needs `qdict_order` to examine request
members in the order QEMU does. It depends on nothing but the standard library (and the
`JSONValue` alias and the QDict hash order of the `schema` package).

Input reproduces QEMU's three stages [qobject/json-lexer.c, json-streamer.c,
json-parser.c]: a byte-level lexer with QEMU's extensions and quirks, a streamer that
cuts the token stream into messages by counting brackets, and a recursive-descent parser
whose error messages come from the outermost construct that fails. Output reproduces
`qobject_to_json` [qobject/qjson.c to_json] as written by the monitor [monitor.c
monitor_json_emitter, monitor_puts]: QEMU's separators, its string escaping (pure ASCII
out), `%f`-style doubles, CR LF line ends and the hash order of object members
[qobject/qdict.c].

Strings: QEMU's strings are byte strings. Decoded strings are the bytes QEMU would hold,
turned into `str` with ``bytes.decode("utf-8", "surrogateescape")``; `encode` turns them
back into bytes the same way before escaping them, so invalid byte sequences survive a
round trip exactly as in QEMU.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from schema.jsontypes import JSONValue
from schema.qdict import qdict_bucket, qdict_hash, qdict_order
from schema.qjson import to_json

__all__ = [
    "INVALID_JSON_SYNTAX",
    "MAX_MESSAGE_BYTES",
    "MAX_NESTING",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_COUNT",
    "MessageDecoder",
    "ParseFailure",
    "Parsed",
    "encode",
    "qdict_bucket",
    "qdict_hash",
    "qdict_order",
]

# Limits [qobject/json-lexer.c MAX_TOKEN_SIZE; qobject/json-streamer.c MAX_TOKEN_SIZE,
# MAX_TOKEN_COUNT, MAX_NESTING].
MAX_TOKEN_BYTES: Final = 64 << 20
MAX_MESSAGE_BYTES: Final = 64 << 20
MAX_TOKEN_COUNT: Final = 2 << 20
MAX_NESTING: Final = 1 << 10

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

_INVALID: Final = ParseFailure(INVALID_JSON_SYNTAX)


# ---------------------------------------------------------------------------------------
# Lexer [qobject/json-lexer.c]
#
# A deterministic automaton over bytes. Each state maps every byte to a next state, to a
# token type (the token is complete), or to the error state. A state may have a default
# token type for bytes 0x00..0x7F that cannot continue it: reaching the token that way
# means the byte was only looked at, not consumed, and is lexed again from the start
# state. Bytes 0x80..0xFF never have such a default, so a number, keyword or whitespace
# run followed by one of them is a lexical error, not a token.

# Lexer states.
(
    _ERROR,
    _DQ_U3,
    _DQ_U2,
    _DQ_U1,
    _DQ_U0,
    _DQ_ESC,
    _DQ,
    _SQ_U3,
    _SQ_U2,
    _SQ_U1,
    _SQ_U0,
    _SQ_ESC,
    _SQ,
    _ZERO,
    _DIGITS,
    _DIGIT,
    _EXP_E,
    _MANTISSA,
    _MANTISSA_DIGITS,
    _NONZERO,
    _NEG,
    _KEYWORD,
    _PCT,
    _PCT_L,
    _PCT_LL,
    _PCT_I,
    _PCT_I6,
    _PCT_I64,
    _WHITESPACE,
    _START,
) = range(30)

# Token types; all are >= _TOKEN_BASE so a table entry tells tokens from states.
_TOKEN_BASE: Final = 100
(
    _LCURLY,
    _RCURLY,
    _LSQUARE,
    _RSQUARE,
    _COLON,
    _COMMA,
    _INTEGER,
    _FLOAT,
    _KEYWORD_T,
    _STRING,
    _PERCENT,  # QEMU's "%d"-style interpolation token
    _SKIP,  # whitespace; never reaches the streamer
    _ERROR_T,  # lexical error
    _OVERSIZE,  # a token cut at MAX_TOKEN_BYTES; QEMU passes its lexer state as the type
) = range(_TOKEN_BASE, _TOKEN_BASE + 14)


def _build_table() -> tuple[bytes, ...]:
    rows = [bytearray(256) for _ in range(_START + 1)]  # everything defaults to _ERROR

    def put(state: int, chars: Iterable[int] | bytes | str, target: int) -> None:
        if isinstance(chars, str):
            chars = chars.encode("ascii")
        for c in chars:
            rows[state][c] = target

    def default(state: int, token: int) -> None:
        put(state, range(0x80), token)

    hexdigits = b"0123456789abcdefABCDEF"
    digits = b"0123456789"
    for u3, u2, u1, u0, esc, body, quote in (
        (_DQ_U3, _DQ_U2, _DQ_U1, _DQ_U0, _DQ_ESC, _DQ, b'"'),
        (_SQ_U3, _SQ_U2, _SQ_U1, _SQ_U0, _SQ_ESC, _SQ, b"'"),
    ):
        put(u0, hexdigits, u1)
        put(u1, hexdigits, u2)
        put(u2, hexdigits, u3)
        put(u3, hexdigits, body)
        put(esc, b"bfnrt/\\'\"", body)
        put(esc, b"u", u0)
        # Raw bytes are accepted unvalidated, except NUL and bytes that can never start
        # or continue UTF-8 (0xC0, 0xC1, 0xF5..0xFF).
        put(body, range(0x01, 0xC0), body)
        put(body, range(0xC2, 0xF5), body)
        put(body, b"\\", esc)
        put(body, quote, _STRING)

    default(_ZERO, _INTEGER)
    put(_ZERO, digits, _ERROR)
    put(_ZERO, b".", _MANTISSA)
    default(_DIGITS, _FLOAT)
    put(_DIGITS, digits, _DIGITS)
    put(_DIGIT, digits, _DIGITS)
    put(_EXP_E, b"+-", _DIGIT)
    put(_EXP_E, digits, _DIGITS)
    default(_MANTISSA_DIGITS, _FLOAT)
    put(_MANTISSA_DIGITS, digits, _MANTISSA_DIGITS)
    put(_MANTISSA_DIGITS, b"eE", _EXP_E)
    put(_MANTISSA, digits, _MANTISSA_DIGITS)
    default(_NONZERO, _INTEGER)
    put(_NONZERO, digits, _NONZERO)
    put(_NONZERO, b"eE", _EXP_E)
    put(_NONZERO, b".", _MANTISSA)
    put(_NEG, b"0", _ZERO)
    put(_NEG, b"123456789", _NONZERO)
    default(_KEYWORD, _KEYWORD_T)
    put(_KEYWORD, range(ord("a"), ord("z") + 1), _KEYWORD)
    default(_WHITESPACE, _SKIP)
    put(_WHITESPACE, b" \t\r\n", _WHITESPACE)
    # %d %i %p %s %u %f, %ld %lu %lld %llu, %I64d %I64u
    put(_PCT, b"dipsuf", _PERCENT)
    put(_PCT, b"l", _PCT_L)
    put(_PCT, b"I", _PCT_I)
    put(_PCT_L, b"du", _PERCENT)
    put(_PCT_L, b"l", _PCT_LL)
    put(_PCT_LL, b"du", _PERCENT)
    put(_PCT_I, b"6", _PCT_I6)
    put(_PCT_I6, b"4", _PCT_I64)
    put(_PCT_I64, b"du", _PERCENT)

    put(_START, b'"', _DQ)
    put(_START, b"'", _SQ)
    put(_START, b"0", _ZERO)
    put(_START, b"123456789", _NONZERO)
    put(_START, b"-", _NEG)
    put(_START, b"{", _LCURLY)
    put(_START, b"}", _RCURLY)
    put(_START, b"[", _LSQUARE)
    put(_START, b"]", _RSQUARE)
    put(_START, b",", _COMMA)
    put(_START, b":", _COLON)
    put(_START, range(ord("a"), ord("z") + 1), _KEYWORD)
    put(_START, b"%", _PCT)
    put(_START, b" \t\r\n", _WHITESPACE)
    return tuple(bytes(row) for row in rows)


_TABLE: Final = _build_table()

# States that loop on a class of bytes; the slow path takes such runs in one step.
_STRING_BODY_DQ: Final = rb'[^"\\\x00\xc0\xc1\xf5-\xff]'
_STRING_BODY_SQ: Final = rb"[^'\\\x00\xc0\xc1\xf5-\xff]"
_RUNS: Final[dict[int, re.Pattern[bytes]]] = {
    _DQ: re.compile(_STRING_BODY_DQ + rb"*+"),
    _SQ: re.compile(_STRING_BODY_SQ + rb"*+"),
    _DIGITS: re.compile(rb"[0-9]*+"),
    _MANTISSA_DIGITS: re.compile(rb"[0-9]*+"),
    _NONZERO: re.compile(rb"[0-9]*+"),
    _KEYWORD: re.compile(rb"[a-z]*+"),
    _WHITESPACE: re.compile(rb"[ \t\r\n]*+"),
}

# Fast path: whole tokens that the automaton would produce identically, matched from the
# start state, each with the whitespace before it. Numbers and keywords need a following
# byte that certainly ends them (a byte <= 0x7F that cannot extend them); anything else
# goes through the automaton.
_ESCAPE_SEQ: Final = rb"""\\(?:["'\\/bfnrt]|u[0-9a-fA-F]{4})"""
_ENDS_NUMBER: Final = rb"(?=[\x00-\x2a\x2c\x2f\x3a-\x44\x46-\x64\x66-\x7f])"  # not 0-9 . e E + -
_ENDS_KEYWORD: Final = rb"(?=[\x00-\x60\x7b-\x7f])"
_FAST: Final = re.compile(
    rb"[ \t\r\n]*+(?:"
    rb"([{}\[\],:])"
    rb'|("' + _STRING_BODY_DQ + rb"*+(?:" + _ESCAPE_SEQ + _STRING_BODY_DQ + rb'*+)*+"'
    rb"|'" + _STRING_BODY_SQ + rb"*+(?:" + _ESCAPE_SEQ + _STRING_BODY_SQ + rb"*+)*+')"
    rb"|(-?(?:(?:0|[1-9][0-9]*+)\.[0-9]++(?:[eE][-+]?[0-9]++)?+|[1-9][0-9]*+[eE][-+]?[0-9]++))"
    + _ENDS_NUMBER
    + rb"|(-?(?:0|[1-9][0-9]*+))"
    + _ENDS_NUMBER
    + rb"|([a-z]++)"
    + _ENDS_KEYWORD
    + rb")"
)
_SPACE: Final = re.compile(rb"[ \t\r\n]++")
_G_PUNCT, _G_STRING, _G_FLOAT, _G_INTEGER, _G_KEYWORD = range(1, 6)
_GROUP_TYPE: Final = {
    _G_STRING: _STRING,
    _G_FLOAT: _FLOAT,
    _G_INTEGER: _INTEGER,
    _G_KEYWORD: _KEYWORD_T,
}
_PUNCT_TYPE: Final = {
    ord("{"): _LCURLY,
    ord("}"): _RCURLY,
    ord("["): _LSQUARE,
    ord("]"): _RSQUARE,
    ord(","): _COMMA,
    ord(":"): _COLON,
}
_PUNCT_TOKEN: Final = {c: (t, bytes([c])) for c, t in _PUNCT_TYPE.items()}

_Token: TypeAlias = tuple[int, bytes]


class MessageDecoder:
    """One monitor connection's JSON input: bytes in, one result per complete message.

    Reproduces QEMU 2.11's lexer, streamer and parser, including error recovery:
    a lexical error or a limit violation yields `Invalid JSON syntax`, drops the byte
    that caused it and everything collected for the current message, and lexing resumes
    in the initial state [qobject/json-lexer.c json_lexer_feed_char,
    qobject/json-streamer.c json_message_process_token]. Feeding never raises; how the
    input is split into `feed` calls does not change the results.
    """

    __slots__ = ("_braces", "_brackets", "_size", "_state", "_token", "_tokens")

    def __init__(self) -> None:
        self._state = _START
        self._token = bytearray()
        self._tokens: list[_Token] = []
        self._braces = 0
        self._brackets = 0
        self._size = 0

    def reset(self) -> None:
        """Forget any partial token and message, as QEMU does when a client disconnects.

        [monitor.c monitor_qmp_event: CHR_EVENT_CLOSED destroys and re-creates the
        parser]
        """
        self._state = _START
        self._token = bytearray()
        self._tokens = []
        self._braces = 0
        self._brackets = 0
        self._size = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Parsed]:
        """Consume `data`; return the results of the messages it completed, in order.

        A number or keyword at the very end of `data` stays pending until the next byte
        shows where it ends, as in QEMU.
        """
        buf = bytes(data)
        out: list[Parsed] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if self._state == _START:
                pos = self._lex_fast(buf, pos, out)
                if pos >= n:
                    break
            pos = self._lex_slow(buf, pos, out)
        return out

    # -- lexer ---------------------------------------------------------------------

    def _lex_fast(self, buf: bytes, pos: int, out: list[Parsed]) -> int:
        """Lex whole tokens from the start state while the regex can; return the position
        where the automaton must take over. The streamer is inlined here."""
        match = _FAST.match
        n = len(buf)
        tokens = self._tokens
        braces = self._braces
        brackets = self._brackets
        size = self._size
        while pos < n:
            m = match(buf, pos)
            if m is None:
                m = _SPACE.match(buf, pos)
                if m is None or m.end() - pos > MAX_TOKEN_BYTES:
                    break
                if m.end() == n:
                    # Whitespace is a token too, if a skipped one: it counts towards
                    # the lexer's token cut.
                    self._state = _WHITESPACE
                    self._token = bytearray(buf[pos:n])
                pos = m.end()
                continue
            end = m.end()
            if end - pos > MAX_TOKEN_BYTES:
                break  # maybe an oversized token: the automaton cuts those
            group = m.lastindex
            if group == _G_PUNCT:
                c = buf[end - 1]
                token = _PUNCT_TOKEN[c]
                if c == 0x7B:
                    braces += 1
                elif c == 0x7D:
                    braces -= 1
                elif c == 0x5B:
                    brackets += 1
                elif c == 0x5D:
                    brackets -= 1
                size += 1
            else:
                assert group is not None
                text = m.group(group)
                token = (_GROUP_TYPE[group], text)
                size += len(text)
            pos = end
            tokens.append(token)
            if braces < 0 or brackets < 0 or (braces == 0 and brackets == 0):
                out.append(_parse(tokens))
                tokens = []
                braces = brackets = size = 0
            elif (
                size > MAX_MESSAGE_BYTES
                or len(tokens) > MAX_TOKEN_COUNT
                or braces + brackets > MAX_NESTING
            ):
                out.append(_INVALID)
                tokens = []
                braces = brackets = size = 0
        self._tokens = tokens
        self._braces = braces
        self._brackets = brackets
        self._size = size
        return pos

    def _lex_slow(self, buf: bytes, pos: int, out: list[Parsed]) -> int:
        """Run the automaton byte by byte (taking runs of self-looping bytes at once)
        until it is back in the start state; return the new position.

        [qobject/json-lexer.c json_lexer_feed_char]
        """
        n = len(buf)
        state = self._state
        token = self._token
        table = _TABLE
        while pos < n:
            run = _RUNS.get(state)
            if run is not None:
                m = run.match(buf, pos)
                assert m is not None
                k = m.end() - pos
                if k:
                    room = MAX_TOKEN_BYTES + 1 - len(token)
                    if k < room:
                        token += buf[pos : pos + k]
                        pos += k
                        continue
                    token += buf[pos : pos + room]
                    pos += room
                    self._push(_OVERSIZE, bytes(token), out)
                    token = bytearray()
                    state = _START
                    break
            c = buf[pos]
            pos += 1
            while True:
                row = table[state]
                new = row[c]
                consumed = row[0] != new  # else the byte was lookahead for a token
                if consumed:
                    token.append(c)
                if new >= _TOKEN_BASE:
                    if new != _SKIP:
                        self._push(new, bytes(token), out)
                    token = bytearray()
                    new = _START
                elif new == _ERROR:
                    # The offending byte is dropped with the token.
                    self._push(_ERROR_T, b"", out)
                    token = bytearray()
                    new = _START
                    consumed = True
                state = new
                if consumed:
                    break
            if len(token) > MAX_TOKEN_BYTES:
                # The cut: pass on what we have as a bogus token and restart lexing
                # in the middle of the token.
                self._push(_OVERSIZE, bytes(token), out)
                token = bytearray()
                state = _START
            if state == _START:
                break
        self._state = state
        self._token = token
        return pos

    # -- streamer [qobject/json-streamer.c json_message_process_token] -----------------

    def _push(self, ttype: int, text: bytes, out: list[Parsed]) -> None:
        if ttype == _LCURLY:
            self._braces += 1
        elif ttype == _RCURLY:
            self._braces -= 1
        elif ttype == _LSQUARE:
            self._brackets += 1
        elif ttype == _RSQUARE:
            self._brackets -= 1
        self._size += len(text)
        self._tokens.append((ttype, text))
        braces = self._braces
        brackets = self._brackets
        if ttype == _ERROR_T:
            out.append(_INVALID)
        elif braces < 0 or brackets < 0 or (braces == 0 and brackets == 0):
            out.append(_parse(self._tokens))
        elif (
            self._size > MAX_MESSAGE_BYTES
            or len(self._tokens) > MAX_TOKEN_COUNT
            or braces + brackets > MAX_NESTING
        ):
            out.append(_INVALID)
        else:
            return
        self._tokens = []
        self._braces = self._brackets = self._size = 0


# ---------------------------------------------------------------------------------------
# Parser [qobject/json-parser.c]
#
# QEMU's parser is recursive; this one keeps an explicit stack so that the 1024 levels the
# streamer lets through do not exhaust Python's recursion limit. Every enclosing level of
# a failure overwrites the error message with its own, so the reported reason depends only
# on the outermost container and on which of its parts failed.


class _Fail(Exception):
    """A parse failure; `reason` None means QEMU failed without setting a message."""

    def __init__(self, reason: str | None, own: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.own = own  # raised by the innermost open container itself, not by a value


_ARRAY, _KEY, _VALUE = range(3)  # what the open container is parsing

_KEYWORDS: Final[dict[bytes, JSONValue]] = {b"true": True, b"false": False, b"null": None}

_CHILD_REASON: Final = {
    _ARRAY: "expecting value",
    _KEY: "key is not a string in object",
    _VALUE: "Missing value in dict",
}


def _parse(tokens: list[_Token]) -> Parsed:
    """Parse one message's tokens [json-parser.c json_parser_parse_err]."""
    if len(tokens) == 1:
        ttype, text = tokens[0]
        if ttype == _STRING:
            return _string_value(text)
        if ttype == _INTEGER:
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
            if ttype == _STRING:
                value = _string_value(text)
                i += 1
            elif ttype == _LCURLY:
                i += 1
                if i < n and tokens[i][0] == _RCURLY:
                    value = {}
                    i += 1
                else:
                    stack.append([{}, _KEY, None])
                    continue
            elif ttype == _LSQUARE:
                i += 1
                if i < n and tokens[i][0] == _RSQUARE:
                    value = []
                    i += 1
                else:
                    stack.append([[], _ARRAY, None])
                    continue
            elif ttype == _INTEGER:
                value = _integer_value(text)
                i += 1
            elif ttype == _FLOAT:
                value = float(text)
                i += 1
            elif ttype == _KEYWORD_T:
                i += 1
                if text not in _KEYWORDS:
                    raise _Fail(f"invalid keyword '{text.decode('ascii')}'", False)
                value = _KEYWORDS[text]
            elif ttype == _PERCENT:
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
                    if following != _COLON:
                        raise _Fail("missing : in object pair", True)
                    i += 1
                    frame[1] = _VALUE
                    frame[2] = value
                    break
                if part == _VALUE:
                    frame[0][frame[2]] = value  # a repeated key keeps its first position
                    if following == _RCURLY:
                        i += 1
                        value = frame[0]
                        stack.pop()
                        continue
                    if following != _COMMA:
                        raise _Fail("expected separator in dict", True)
                    i += 1
                    frame[1] = _KEY
                    break
                frame[0].append(value)
                if following == _RSQUARE:
                    i += 1
                    value = frame[0]
                    stack.pop()
                    continue
                if following != _COMMA:
                    raise _Fail("expected separator in list", True)
                i += 1
                break
    except _Fail as failure:
        reason = failure.reason
        if len(stack) > 1 or (stack and not failure.own):
            reason = _CHILD_REASON[stack[0][1]]
        if reason is None:
            return _INVALID
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


# ---------------------------------------------------------------------------------------
# Object member order [qobject/qdict.c tdb_hash, qdict_put_obj, qdict_iter]


def encode(value: JSONValue, *, pretty: bool = False) -> bytes:
    """One QMP message as QEMU writes it: JSON text, every LF as CR LF, a final CR LF.

    Objects are written in QDict order (`qdict_order` of the dict's insertion order);
    strings per qmp-protocol.md §1.1, numbers per §1.2 [qobject/qjson.c to_json,
    monitor.c monitor_json_emitter, monitor_puts]. The result is pure ASCII.
    """
    text = to_json(value, pretty=pretty)
    if pretty:
        text = text.replace("\n", "\r\n")
    return (text + "\r\n").encode("ascii")
