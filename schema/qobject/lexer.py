"""QEMU's JSON lexer: the byte-level automaton of qobject/json-lexer.c, as tables.

Part of `schema.qobject` (QEMU's JSON dialect), below the streamer
(`schema.qobject.streamer`), which drives it and counts the brackets of the tokens it
emits. The dialect: JSON plus single-quoted strings, QEMU's `%d`-style interpolation
tokens, raw bytes inside strings accepted unvalidated (except NUL and bytes that never
occur in UTF-8).

A deterministic automaton over bytes. Each state maps every byte to a next state, to a
token type (the token is complete), or to the error state. A state may have a default
token type for bytes 0x00..0x7F that cannot continue it: reaching the token that way
means the byte was only looked at, not consumed, and is lexed again from the start
state. Bytes 0x80..0xFF never have such a default, so a number, keyword or whitespace
run followed by one of them is a lexical error, not a token
[qobject/json-lexer.c json_lexer, json_lexer_feed_char, json_lexer_flush].

Two accelerations keep the monitor's hot path cheap without changing a result: `FAST`
matches whole ordinary tokens from the start state with one regular expression, and
`RUNS` takes runs of self-looping bytes (string bodies, digits, blanks) in one step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

# The lexer cuts a token longer than this [json-lexer.c MAX_TOKEN_SIZE].
MAX_TOKEN_BYTES: Final = 64 << 20

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
    _IN_KEYWORD,
    _PCT,
    _PCT_L,
    _PCT_LL,
    _PCT_I,
    _PCT_I6,
    _PCT_I64,
    WHITESPACE,
    START,
) = range(30)

# Token types; all are >= TOKEN_BASE so a table entry tells tokens from states.
TOKEN_BASE: Final = 100
(
    LCURLY,
    RCURLY,
    LSQUARE,
    RSQUARE,
    COLON,
    COMMA,
    INTEGER,
    FLOAT,
    KEYWORD,
    STRING,
    PERCENT,  # QEMU's "%d"-style interpolation token
    SKIP,  # whitespace; never reaches the streamer
    ERROR_TOKEN,  # lexical error
    OVERSIZE,  # a token cut at MAX_TOKEN_BYTES; QEMU passes its lexer state as the type
) = range(TOKEN_BASE, TOKEN_BASE + 14)


def _build_table() -> tuple[bytes, ...]:
    rows = [bytearray(256) for _ in range(START + 1)]  # everything defaults to _ERROR

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
        put(body, quote, STRING)

    default(_ZERO, INTEGER)
    put(_ZERO, digits, _ERROR)
    put(_ZERO, b".", _MANTISSA)
    default(_DIGITS, FLOAT)
    put(_DIGITS, digits, _DIGITS)
    put(_DIGIT, digits, _DIGITS)
    put(_EXP_E, b"+-", _DIGIT)
    put(_EXP_E, digits, _DIGITS)
    default(_MANTISSA_DIGITS, FLOAT)
    put(_MANTISSA_DIGITS, digits, _MANTISSA_DIGITS)
    put(_MANTISSA_DIGITS, b"eE", _EXP_E)
    put(_MANTISSA, digits, _MANTISSA_DIGITS)
    default(_NONZERO, INTEGER)
    put(_NONZERO, digits, _NONZERO)
    put(_NONZERO, b"eE", _EXP_E)
    put(_NONZERO, b".", _MANTISSA)
    put(_NEG, b"0", _ZERO)
    put(_NEG, b"123456789", _NONZERO)
    default(_IN_KEYWORD, KEYWORD)
    put(_IN_KEYWORD, range(ord("a"), ord("z") + 1), _IN_KEYWORD)
    default(WHITESPACE, SKIP)
    put(WHITESPACE, b" \t\r\n", WHITESPACE)
    # %d %i %p %s %u %f, %ld %lu %lld %llu, %I64d %I64u
    put(_PCT, b"dipsuf", PERCENT)
    put(_PCT, b"l", _PCT_L)
    put(_PCT, b"I", _PCT_I)
    put(_PCT_L, b"du", PERCENT)
    put(_PCT_L, b"l", _PCT_LL)
    put(_PCT_LL, b"du", PERCENT)
    put(_PCT_I, b"6", _PCT_I6)
    put(_PCT_I6, b"4", _PCT_I64)
    put(_PCT_I64, b"du", PERCENT)

    put(START, b'"', _DQ)
    put(START, b"'", _SQ)
    put(START, b"0", _ZERO)
    put(START, b"123456789", _NONZERO)
    put(START, b"-", _NEG)
    put(START, b"{", LCURLY)
    put(START, b"}", RCURLY)
    put(START, b"[", LSQUARE)
    put(START, b"]", RSQUARE)
    put(START, b",", COMMA)
    put(START, b":", COLON)
    put(START, range(ord("a"), ord("z") + 1), _IN_KEYWORD)
    put(START, b"%", _PCT)
    put(START, b" \t\r\n", WHITESPACE)
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
    _IN_KEYWORD: re.compile(rb"[a-z]*+"),
    WHITESPACE: re.compile(rb"[ \t\r\n]*+"),
}

# Fast path: whole tokens that the automaton would produce identically, matched from the
# start state, each with the whitespace before it. Numbers and keywords need a following
# byte that certainly ends them (a byte <= 0x7F that cannot extend them); anything else
# goes through the automaton.
_ESCAPE_SEQ: Final = rb"""\\(?:["'\\/bfnrt]|u[0-9a-fA-F]{4})"""
_ENDS_NUMBER: Final = rb"(?=[\x00-\x2a\x2c\x2f\x3a-\x44\x46-\x64\x66-\x7f])"  # not 0-9 . e E + -
_ENDS_KEYWORD: Final = rb"(?=[\x00-\x60\x7b-\x7f])"
FAST: Final = re.compile(
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
SPACE: Final = re.compile(rb"[ \t\r\n]++")
G_PUNCT, G_STRING, G_FLOAT, G_INTEGER, G_KEYWORD = range(1, 6)
GROUP_TYPE: Final = {
    G_STRING: STRING,
    G_FLOAT: FLOAT,
    G_INTEGER: INTEGER,
    G_KEYWORD: KEYWORD,
}
_PUNCT_TYPE: Final = {
    ord("{"): LCURLY,
    ord("}"): RCURLY,
    ord("["): LSQUARE,
    ord("]"): RSQUARE,
    ord(","): COMMA,
    ord(":"): COLON,
}
PUNCT_TOKEN: Final = {c: (t, bytes([c])) for c, t in _PUNCT_TYPE.items()}


Token: TypeAlias = tuple[int, bytes]
Emit: TypeAlias = Callable[[int, bytes], None]


def feed_automaton(state: int, token: bytearray, buf: bytes, pos: int,
                   emit: Emit) -> tuple[int, int]:
    """Run the automaton byte by byte from `state` (taking runs of self-looping bytes at
    once) until it is back in the start state or `buf` is used up; return the new state
    and position. `token` holds the bytes of the pending token and is updated in place;
    each completed token (type, text) goes to `emit`, whitespace excepted.

    A lexical error emits `ERROR_TOKEN` and drops the offending byte with the token; a
    token growing beyond `MAX_TOKEN_BYTES` is cut and emitted as `OVERSIZE`, and lexing
    restarts in the middle of it [json-lexer.c json_lexer_feed_char].
    """
    n = len(buf)
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
                emit(OVERSIZE, bytes(token))
                del token[:]
                return START, pos
        c = buf[pos]
        pos += 1
        while True:
            row = table[state]
            new = row[c]
            consumed = row[0] != new  # else the byte was lookahead for a token
            if consumed:
                token.append(c)
            if new >= TOKEN_BASE:
                if new != SKIP:
                    emit(new, bytes(token))
                del token[:]
                new = START
            elif new == _ERROR:
                # The offending byte is dropped with the token.
                emit(ERROR_TOKEN, b"")
                del token[:]
                new = START
                consumed = True
            state = new
            if consumed:
                break
        if len(token) > MAX_TOKEN_BYTES:
            # The cut: pass on what we have as a bogus token and restart lexing in the
            # middle of the token.
            emit(OVERSIZE, bytes(token))
            del token[:]
            state = START
        if state == START:
            break
    return state, pos


def flush_automaton(state: int, token: bytearray, emit: Emit) -> None:
    """End of input: the pending token, if any, ends as if a NUL byte followed it
    without being consumed; a token that cannot end there is a lexical error
    [json-lexer.c json_lexer_flush]."""
    if state == START:
        return
    new = _TABLE[state][0]
    if new >= TOKEN_BASE:
        if new != SKIP:
            emit(new, bytes(token))
    else:
        emit(ERROR_TOKEN, b"")
    del token[:]
