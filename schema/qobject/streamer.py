"""QEMU's JSON streamer: bytes in, one parsed result per complete message.

Part of `schema.qobject` (QEMU's JSON dialect). It drives the lexer
(`schema.qobject.lexer`), counts the brackets of the tokens, applies QEMU's limits and
hands each complete message to the parser (`schema.qobject.parser`)
[qobject/json-streamer.c json_message_process_token]. Readers: the QMP wire
(`vmm.qmp.wire` frames a connection's bytes with `JSONMessageParser`), and everything
that reads one JSON text the way `qobject_from_json` does (`from_json`): `-blockdev`
and `-object` JSON, `json:` file names.

A message ends when the brace and bracket counts are both back at zero, or when either
goes negative. Recovery: a lexical error or a limit violation yields `Invalid JSON
syntax` for the message being collected, drops the byte that caused it and all tokens
collected so far, and lexing resumes in the initial state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schema.jsontypes import JSONValue, qemu_bytes
from schema.qobject.lexer import (
    ERROR_TOKEN,
    FAST,
    G_PUNCT,
    GROUP_TYPE,
    LCURLY,
    LSQUARE,
    MAX_TOKEN_BYTES,
    PUNCT_TOKEN,
    RCURLY,
    RSQUARE,
    SPACE,
    START,
    WHITESPACE,
    Token,
    feed_automaton,
    flush_automaton,
)
from schema.qobject.parser import INVALID, Parsed, ParseFailure, parse_message

# Limits [qobject/json-streamer.c MAX_TOKEN_SIZE, MAX_TOKEN_COUNT, MAX_NESTING]: the
# bytes of one message's tokens (whitespace not counted), its number of tokens, and
# the open braces plus brackets.
MAX_MESSAGE_BYTES: Final = 64 << 20
MAX_TOKEN_COUNT: Final = 2 << 20
MAX_NESTING: Final = 1 << 10

# The bytes that end a run of blanks as a skipped token, to be lexed again from the
# start state: ASCII that is not a blank (a byte >= 0x80 there is a lexical error).
_ENDS_WHITESPACE: Final = frozenset(range(0x80)) - frozenset(b" \t\r\n")


class JSONMessageParser:
    """A stream of JSON messages: bytes in, one result per complete message.

    QEMU 2.11's lexer, streamer and parser, including their error recovery
    [qobject/json-lexer.c json_lexer_feed_char, json-streamer.c
    json_message_process_token, json-parser.c]. Feeding never raises; how the input is
    split into `feed` calls does not change the results.
    """

    __slots__ = ("_braces", "_brackets", "_size", "_state", "_token", "_tokens")

    def __init__(self) -> None:
        self._state = START
        self._token = bytearray()
        self._tokens: list[Token] = []
        self._braces = 0
        self._brackets = 0
        self._size = 0

    def reset(self) -> None:
        """Forget any partial token and message (json_message_parser_destroy + init)."""
        self._state = START
        self._token = bytearray()
        self._tokens = []
        self._braces = 0
        self._brackets = 0
        self._size = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Parsed]:
        """Consume `data`; return the results of the messages it completed, in order.

        A number or keyword at the very end of `data` stays pending until the next byte
        shows where it ends (or `flush` ends the input), as in QEMU.
        """
        buf = bytes(data)
        out: list[Parsed] = []
        pos = 0
        n = len(buf)
        while pos < n:
            state = self._state
            if state == WHITESPACE and buf[pos] in _ENDS_WHITESPACE:
                # The common case between requests ("...}\n" then "{..."): the pending
                # blanks end and are skipped; the byte is lexed afresh from the start.
                self._state = state = START
                del self._token[:]
            if state == START:
                pos = self._lex_fast(buf, pos, out)
                if pos >= n:
                    break
            self._state, pos = feed_automaton(
                self._state, self._token, buf, pos, lambda t, x: self._push(t, x, out))
        return out

    def flush(self) -> list[Parsed]:
        """End of input: complete a pending token [json_message_parser_flush]. Tokens of
        an unfinished message stay collected, as in QEMU (which never parses them)."""
        out: list[Parsed] = []
        flush_automaton(self._state, self._token, lambda t, x: self._push(t, x, out))
        self._state = START
        return out

    def _lex_fast(self, buf: bytes, pos: int, out: list[Parsed]) -> int:
        """Lex whole tokens from the start state while the lexer's `FAST` expression can;
        return the position where the automaton must take over. The streamer's counting
        (`_push`) is inlined here: this loop is the monitor's hot path."""
        match = FAST.match
        n = len(buf)
        tokens = self._tokens
        braces = self._braces
        brackets = self._brackets
        size = self._size
        while pos < n:
            m = match(buf, pos)
            if m is None:
                m = SPACE.match(buf, pos)
                if m is None or m.end() - pos > MAX_TOKEN_BYTES:
                    break
                if m.end() == n:
                    # Whitespace is a token too, if a skipped one: it counts towards
                    # the lexer's token cut.
                    self._state = WHITESPACE
                    self._token = bytearray(buf[pos:n])
                pos = m.end()
                continue
            end = m.end()
            if end - pos > MAX_TOKEN_BYTES:
                break  # maybe an oversized token: the automaton cuts those
            group = m.lastindex
            if group == G_PUNCT:
                c = buf[end - 1]
                token = PUNCT_TOKEN[c]
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
                token = (GROUP_TYPE[group], text)
                size += len(text)
            pos = end
            tokens.append(token)
            if braces < 0 or brackets < 0 or (braces == 0 and brackets == 0):
                out.append(parse_message(tokens))
                tokens = []
                braces = brackets = size = 0
            elif (
                size > MAX_MESSAGE_BYTES
                or len(tokens) > MAX_TOKEN_COUNT
                or braces + brackets > MAX_NESTING
            ):
                out.append(INVALID)
                tokens = []
                braces = brackets = size = 0
        self._tokens = tokens
        self._braces = braces
        self._brackets = brackets
        self._size = size
        return pos

    def _push(self, ttype: int, text: bytes, out: list[Parsed]) -> None:
        """One token from the lexer [json-streamer.c json_message_process_token]."""
        if ttype == LCURLY:
            self._braces += 1
        elif ttype == RCURLY:
            self._braces -= 1
        elif ttype == LSQUARE:
            self._brackets += 1
        elif ttype == RSQUARE:
            self._brackets -= 1
        self._size += len(text)
        self._tokens.append((ttype, text))
        braces = self._braces
        brackets = self._brackets
        if ttype == ERROR_TOKEN:
            out.append(INVALID)
        elif braces < 0 or brackets < 0 or (braces == 0 and brackets == 0):
            out.append(parse_message(self._tokens))
        elif (
            self._size > MAX_MESSAGE_BYTES
            or len(self._tokens) > MAX_TOKEN_COUNT
            or braces + brackets > MAX_NESTING
        ):
            out.append(INVALID)
        else:
            return
        self._tokens = []
        self._braces = self._brackets = self._size = 0


@dataclass(frozen=True, slots=True)
class JSONText:
    """What `qobject_from_json` makes of one text: the value of the last message (`ok`
    False if there was none or it failed), and the first parser error, which stays
    set even when a later message parses [qobject/qjson.c qobject_from_jsonv,
    parse_json; util/error.c error_propagate keeps the first error]."""

    value: JSONValue
    ok: bool
    error: str | None


def from_json(text: str | bytes) -> JSONText:
    """Read `text` as qobject_from_json does: every message in it is parsed in turn,
    the last one's value counts, the first error sticks. A `str` is taken as the bytes
    QEMU would see (encoded back with ``surrogateescape``)."""
    data = text if isinstance(text, bytes) else qemu_bytes(text)
    parser = JSONMessageParser()
    results = parser.feed(data)
    results += parser.flush()
    error: str | None = None
    for result in results:
        if error is None and isinstance(result, ParseFailure) and result != INVALID:
            error = result.desc
    if not results or isinstance(results[-1], ParseFailure):
        return JSONText(None, False, error)
    return JSONText(results[-1], True, error)

