"""Hypothesis properties of the wire codec: round trips, chunking invariance, robustness.

The documented examples live in test_wire.py and test_wire_encode.py; these properties
check that the codec holds together on inputs nobody wrote down.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from schema.jsontypes import JSONValue
from schema.qobject import ParseFailure, lexer, qdict_order
from schema.qobject import writer as qjson
from schema.qobject.parser import parse_message
from vmm.qmp.wire import MessageDecoder, Parsed, encode

INT_RANGE = st.integers(min_value=-(2**63), max_value=2**64 - 1)

# ASCII without NUL (QEMU's strings cannot hold U+0000: `\u0000` decodes to nothing).
ASCII_TEXT = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=12)
UNICODE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
# Any byte string without NUL, as the decoder represents QEMU's byte strings.
BYTES_TEXT = st.binary(max_size=16).map(
    lambda b: b.replace(b"\0", b"").decode("utf-8", "surrogateescape")
)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[JSONValue]:
    scalars = st.none() | st.booleans() | INT_RANGE | text
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=20,
    )


def is_noncharacter(cp: int) -> bool:
    return 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE


def qemu_normalised_char(c: str) -> str:
    cp = ord(c)
    if is_noncharacter(cp):
        return "\ufffd"
    if cp > 0xFFFF:
        # Written as a surrogate-pair escape, read back as two separate halves, each the
        # 3-byte sequence ED xx xx (§6.1).
        high, low = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
        data = (chr(high) + chr(low)).encode("utf-8", "surrogatepass")
        return data.decode("utf-8", "surrogateescape")
    return c


def qemu_normalised(value: JSONValue) -> JSONValue:
    """What a valid Unicode value becomes after QEMU writes it and reads it back."""
    if isinstance(value, str):
        return "".join(qemu_normalised_char(c) for c in value)
    if isinstance(value, list):
        return [qemu_normalised(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            out[qemu_normalised(k)] = qemu_normalised(v)  # type: ignore[index]
        return out
    return value


def decode_one(data: bytes) -> Parsed:
    results = MessageDecoder().feed(data)
    assert len(results) == 1, results
    return results[0]


# --- encode → decode ----------------------------------------------------------------------


@given(json_values(ASCII_TEXT), st.booleans())
def test_round_trip_ascii(value: JSONValue, pretty: bool) -> None:
    """Values with ASCII strings and int64/uint64 integers survive encode → decode."""
    assert decode_one(encode(value, pretty=pretty)) == value


@given(json_values(UNICODE_TEXT))
def test_round_trip_unicode(value: JSONValue) -> None:
    """Any BMP text survives, except noncharacters, which QEMU writes as U+FFFD (§1.1);
    astral characters go out as a surrogate-pair escape (§1.1) that QEMU reads back as
    two separate invalid halves (§6.1), just as QEMU would."""
    assert decode_one(encode(value)) == qemu_normalised(value)


@given(st.lists(BYTES_TEXT, max_size=6))
def test_byte_strings_stabilise(strings: list[str]) -> None:
    """Arbitrary byte strings are written per §1.1 (invalid sequences as U+FFFD). What QEMU
    writes, read back and written again, stays the same, except that an astral character
    takes one more trip: its surrogate-pair escape is read back as two invalid halves
    (§6.1), which are then written as U+FFFD U+FFFD; and so do the bytes C0 80 (which
    QEMU's lexer never lets into a string), written `\\u0000` and read back as nothing."""
    first = encode(strings)  # type: ignore[arg-type]
    second = encode(decode_one(first))  # type: ignore[arg-type]
    third = encode(decode_one(second))  # type: ignore[arg-type]
    assert third == second
    astral = any(ord(c) > 0xFFFF for s in strings for c in s)
    if not astral and not any("\udcc0\udc80" in s for s in strings):
        assert second == first


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_round_trip_doubles(x: float) -> None:
    """Doubles go out as `%f` with zeros stripped (§1.2) and come back as that decimal."""
    assert decode_one(encode([x])) == [float(f"{x:f}")]


@given(json_values(BYTES_TEXT | st.floats().map(str)) | st.floats())
def test_output_is_ascii_with_one_line_end(value: JSONValue) -> None:
    """§1: compact output is pure ASCII, one line, ending in CR LF."""
    data = encode(value)
    assert data.isascii()
    assert data.endswith(b"\r\n") and data.count(b"\n") == 1 and data.count(b"\r") == 1


@given(json_values(UNICODE_TEXT | BYTES_TEXT) | st.floats(allow_nan=False, allow_infinity=False))
def test_iterative_writer_matches_recursive(value: JSONValue) -> None:
    """The explicit-stack writer (used for deep values and pretty mode) writes what the
    recursive one writes, and pretty mode only adds line breaks and indentation."""
    compact = qjson._compact(value, 0)
    assert qjson._serialize_iterative(value, False) == compact
    pretty_text = qjson._serialize_iterative(value, True)
    assert decode_one(pretty_text.encode() + b"\n") == decode_one(compact.encode() + b"\n")


# --- QDict order -----------------------------------------------------------------------------


def note_qdict_hash(key: bytes) -> int:
    """The hash exactly as qmp-protocol.md §13 restates it."""
    v = (0x238F13AF * len(key)) % 2**32
    for i, b in enumerate(key):
        v = (v + (b << ((i * 5) % 24))) % 2**32
    return (1103515243 * v + 12345) % 2**32


def note_wire_order(keys_in_insertion_order: list[str]) -> list[str]:
    """The order exactly as qmp-protocol.md §13 restates it."""
    buckets: dict[int, list[str]] = {}
    for k in keys_in_insertion_order:
        buckets.setdefault(note_qdict_hash(k.encode()) % 512, []).insert(0, k)
    return [k for b in sorted(buckets) for k in buckets[b]]


@given(st.lists(UNICODE_TEXT, unique=True))
def test_qdict_order_matches_the_note(keys: list[str]) -> None:
    """§13: `qdict_order` is the note's `wire_order`."""
    assert qdict_order(keys) == note_wire_order(keys)


@given(st.lists(st.sampled_from(["a", "b", "c", "micro", "minor", "major", "id"])))
def test_qdict_order_of_repeated_keys(keys: list[str]) -> None:
    """§13: repeated keys keep their first position; the result has each key once."""
    assert qdict_order(keys) == note_wire_order(list(dict.fromkeys(keys)))


@given(st.dictionaries(UNICODE_TEXT, st.integers(0, 9), max_size=8))
def test_encode_uses_qdict_order(value: dict[str, int]) -> None:
    """§13: every object's members are written in QDict order of the dict's insertion
    order."""
    expected = ", ".join(encode(k).decode()[:-2] + ": " + str(value[k]) for k in qdict_order(value))
    assert encode(value) == ("{" + expected + "}\r\n").encode()  # type: ignore[arg-type]


# --- the decoder on arbitrary input -------------------------------------------------------

JSONISH = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b'"',
            b"'",
            b"\\",
            b"u",
            b"00e9",
            b"d83d",
            b"1",
            b"0",
            b"9",
            b"-",
            b".",
            b"e",
            b"E",
            b"+",
            b"true",
            b"nul",
            b"%",
            b"d",
            b"l",
            b"I64",
            b" ",
            b"\n",
            b"\t",
            b"\x00",
            b"\x01",
            b"\xc0",
            b"\x80",
            b"\xff",
            b"\xe9",
            b"\xf4",
            b"a",
            b"T",
            b'"execute"',
            b'"id"',
            b"12345678901234567890",
        ]
    ),
    max_size=60,
).map(b"".join)

ANY_INPUT = st.binary(max_size=200) | JSONISH


def feed_in_chunks(data: bytes, cuts: list[int]) -> list[Parsed]:
    decoder = MessageDecoder()
    out: list[Parsed] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += decoder.feed(data[start:cut])
        start = cut
    out += decoder.feed(data[start:])
    return out


@given(ANY_INPUT, st.lists(st.integers(min_value=0), max_size=10))
def test_chunking_does_not_matter(data: bytes, cuts: list[int]) -> None:
    """Results do not depend on how the input is split into `feed` calls (QEMU itself
    reads one byte at a time), and feeding never raises."""
    assert feed_in_chunks(data, cuts) == MessageDecoder().feed(data)


@given(ANY_INPUT)
def test_bytewise_feeding_does_not_matter(data: bytes) -> None:
    """Byte-at-a-time feeding (the automaton path) agrees with whole-buffer feeding (the
    regex fast path)."""
    decoder = MessageDecoder()
    out: list[Parsed] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == MessageDecoder().feed(data)


@settings(max_examples=300)
@given(ANY_INPUT, ANY_INPUT)
def test_decoder_survives_anything(garbage: bytes, tail: bytes) -> None:
    """Arbitrary bytes never crash or hang the decoder, and a reset always brings it back
    in step for the next client (§9). The parser never runs out of tokens: QEMU would
    fail an assertion there [json-parser.c parser_context_peek_token], and §6.4 says
    `premature EOI` is unreachable."""
    decoder = MessageDecoder()
    for item in decoder.feed(garbage) + decoder.feed(tail):
        assert item != ParseFailure("JSON parse error, premature EOI")
        assert isinstance(item, (ParseFailure, dict, list, str, int, float, bool, type(None)))
        if isinstance(item, float):
            assert not math.isnan(item)
    decoder.reset()
    assert decoder.feed(b'{"execute": "query-status"}') == [{"execute": "query-status"}]


# --- the parser against a direct transcription of json-parser.c ---------------------------

_NO_VALUE = object()  # QEMU's NULL QObject (None is JSON null here)


def reference_parse(tokens: list[tuple[int, bytes]]) -> object:
    """json-parser.c's recursive descent, written out as directly as possible: every level
    that fails sets its own message, overwriting what the level below set."""
    queue = list(tokens)
    error: list[str | None] = [None]

    def fail(reason: str) -> object:
        error[0] = reason
        return _NO_VALUE

    def parse_value() -> object:
        if not queue:
            return fail("premature EOI")
        ttype, text = queue[0]
        if ttype == lexer.LCURLY:
            return parse_object()
        if ttype == lexer.LSQUARE:
            return parse_array()
        if ttype == lexer.PERCENT:
            return _NO_VALUE  # no arguments to interpolate: nothing, and no message
        if ttype in (lexer.STRING, lexer.INTEGER, lexer.FLOAT):
            queue.pop(0)
            [value] = MessageDecoder().feed(text + b" ")
            return value
        if ttype == lexer.KEYWORD:
            queue.pop(0)
            keywords: dict[bytes, object] = {b"true": True, b"false": False, b"null": None}
            if text in keywords:
                return keywords[text]
            return fail(f"invalid keyword '{text.decode()}'")
        return fail("expecting value")

    def parse_pair(d: dict[object, object]) -> bool:
        if not queue:
            fail("premature EOI")
            return False
        key = parse_value()
        if key is _NO_VALUE or not isinstance(key, str):
            fail("key is not a string in object")
            return False
        if not queue:
            fail("premature EOI")
            return False
        if queue.pop(0)[0] != lexer.COLON:
            fail("missing : in object pair")
            return False
        value = parse_value()
        if value is _NO_VALUE:
            fail("Missing value in dict")
            return False
        d[key] = value
        return True

    def parse_object() -> object:
        queue.pop(0)
        d: dict[object, object] = {}
        if not queue:
            return fail("premature EOI")
        if queue[0][0] == lexer.RCURLY:
            queue.pop(0)
            return d
        if not parse_pair(d):
            return _NO_VALUE
        while True:
            if not queue:
                return fail("premature EOI")
            ttype = queue.pop(0)[0]
            if ttype == lexer.RCURLY:
                return d
            if ttype != lexer.COMMA:
                return fail("expected separator in dict")
            if not parse_pair(d):
                return _NO_VALUE

    def parse_array() -> object:
        queue.pop(0)
        items: list[object] = []
        if not queue:
            return fail("premature EOI")
        if queue[0][0] == lexer.RSQUARE:
            queue.pop(0)
            return items
        while True:
            value = parse_value()
            if value is _NO_VALUE:
                return fail("expecting value")
            items.append(value)
            if not queue:
                return fail("premature EOI")
            ttype = queue.pop(0)[0]
            if ttype == lexer.RSQUARE:
                return items
            if ttype != lexer.COMMA:
                return fail("expected separator in list")

    result = parse_value()
    if result is _NO_VALUE:
        if error[0] is None:
            return ParseFailure("Invalid JSON syntax")
        return ParseFailure("JSON parse error, " + error[0])
    return result


TOKEN_CHOICES = [
    (lexer.LCURLY, b"{"),
    (lexer.RCURLY, b"}"),
    (lexer.LSQUARE, b"["),
    (lexer.RSQUARE, b"]"),
    (lexer.COLON, b":"),
    (lexer.COMMA, b","),
    (lexer.STRING, b'"a"'),
    (lexer.STRING, b"'b'"),
    (lexer.INTEGER, b"1"),
    (lexer.FLOAT, b"2.5"),
    (lexer.KEYWORD, b"true"),
    (lexer.KEYWORD, b"nul"),
    (lexer.PERCENT, b"%d"),
    (lexer.OVERSIZE, b"?"),
]


def streamer_messages(tokens: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    """Cut a token stream into messages by json-streamer.c's counting rule."""
    messages = []
    current: list[tuple[int, bytes]] = []
    braces = brackets = 0
    for token in tokens:
        braces += {lexer.LCURLY: 1, lexer.RCURLY: -1}.get(token[0], 0)
        brackets += {lexer.LSQUARE: 1, lexer.RSQUARE: -1}.get(token[0], 0)
        current.append(token)
        if braces < 0 or brackets < 0 or (braces == 0 and brackets == 0):
            messages.append(current)
            current = []
            braces = brackets = 0
    return messages


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKEN_CHOICES), max_size=40))
def test_parser_matches_recursive_transcription(tokens: list[tuple[int, bytes]]) -> None:
    """§6.4: the explicit-stack parser reports exactly what json-parser.c's recursive
    descent reports, for every message the streamer can hand over (and QEMU's parser
    never runs out of tokens on them)."""
    for message in streamer_messages(tokens):
        expected = reference_parse(message)
        assert expected != ParseFailure("JSON parse error, premature EOI")
        assert parse_message(message) == expected
