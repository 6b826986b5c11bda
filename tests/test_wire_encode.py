"""The QMP output format and QDict member order, as `encode` and `qdict_order`.

Each test pins one documented behaviour of qmp-protocol.md §1, §2, §4 or §13 (or of the
QEMU source file and function its docstring names).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from schema.jsontypes import JSONValue
from schema.qobject import qdict_bucket, qdict_hash, qdict_order
from vmm.qmp.wire import MessageDecoder, encode


def raw(data: bytes) -> str:
    """The str the decoder makes of a QEMU byte string."""
    return data.decode("utf-8", "surrogateescape")


def echo(data: bytes) -> bytes:
    """What QEMU sends back for a value it parsed from `data` (e.g. an echoed `id`)."""
    [value] = MessageDecoder().feed(data + b"\n")
    return encode(value)  # type: ignore[arg-type]


# --- §1 framing and separators --------------------------------------------------------


def test_message_ends_with_crlf() -> None:
    """§1: every message is one line followed by CR LF [monitor.c monitor_json_emitter,
    monitor_puts]. (verified)"""
    assert encode({"return": {}}) == b'{"return": {}}\r\n'


def test_separators() -> None:
    """§1: `", "` between members and elements, `": "` after keys, no inner padding;
    `{}` and `[]` when empty [qobject/qjson.c to_json]."""
    assert encode({"a": [1, 2, {}, []], "b": None}) == b'{"a": [1, 2, {}, []], "b": null}\r\n'


def test_scalars() -> None:
    """§1: true, false, null [qobject/qjson.c to_json]."""
    assert encode([True, False, None]) == b"[true, false, null]\r\n"


def test_greeting_byte_for_byte() -> None:
    """§2: the greeting, with the members inserted as QEMU does (QMP: version then
    capabilities; version: qemu then package; qemu: major, minor, micro). (verified)"""
    greeting: JSONValue = {
        "QMP": {
            "version": {"qemu": {"major": 2, "minor": 11, "micro": 0}, "package": ""},
            "capabilities": [],
        }
    }
    assert encode(greeting) == (
        b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 11, "major": 2}, '
        b'"package": ""}, "capabilities": []}}\r\n'
    )


def test_query_status_reply() -> None:
    """§12/§13: `query-status` (StatusInfo: running, singlestep, status) is written
    `{"status", "singlestep", "running"}`; `return` precedes `id`."""
    reply: JSONValue = {
        "return": {"running": True, "singlestep": False, "status": "running"},
        "id": 7,
    }
    assert encode(reply) == (
        b'{"return": {"status": "running", "singlestep": false, "running": true}, "id": 7}\r\n'
    )


def test_error_reply_puts_id_first() -> None:
    """§4: an error reply with an id is `{"id": I, "error": {"class": C, "desc": D}}`
    (hash order; QEMU inserts error first, then id). (verified)"""
    reply: JSONValue = {
        "error": {"class": "GenericError", "desc": "Invalid JSON syntax"},
        "id": "x",
    }
    assert encode(reply) == (
        b'{"id": "x", "error": {"class": "GenericError", "desc": "Invalid JSON syntax"}}\r\n'
    )


def test_event_member_order() -> None:
    """§7.1/§13: events are `timestamp`, `event`, `data`; inside the timestamp `seconds`,
    `microseconds`. (verified)"""
    event: JSONValue = {
        "event": "SHUTDOWN",
        "data": {"guest": False},
        "timestamp": {"seconds": 1510000000, "microseconds": 123456},
    }
    assert encode(event) == (
        b'{"timestamp": {"seconds": 1510000000, "microseconds": 123456}, '
        b'"event": "SHUTDOWN", "data": {"guest": false}}\r\n'
    )


# --- §1 pretty mode ---------------------------------------------------------------------


def test_pretty_empty_object() -> None:
    """§1: pretty mode writes an empty object as `{`, newline, `<indent>}`; all newlines
    are CR LF. (verified: `{\\r\\n    "return": {\\r\\n    }\\r\\n}\\r\\n`)"""
    assert encode({"return": {}}, pretty=True) == b'{\r\n    "return": {\r\n    }\r\n}\r\n'


def test_pretty_empty_array() -> None:
    """An empty array in pretty mode is written like an empty object: `[`, newline,
    `<indent>]` [qobject/qjson.c to_json, QTYPE_QLIST]."""
    assert encode({"return": []}, pretty=True) == b'{\r\n    "return": [\r\n    ]\r\n}\r\n'
    assert encode([], pretty=True) == b"[\r\n]\r\n"
    assert encode({}, pretty=True) == b"{\r\n}\r\n"


def test_pretty_nesting() -> None:
    """§1: one member per line, 4 spaces per depth, `,` at end of line, `": "` after keys,
    the closing bracket at the parent's indentation [qobject/qjson.c to_json]."""
    value: JSONValue = {"return": [{"name": "a"}, 1], "id": "x\ny"}
    assert encode(value, pretty=True) == (
        b"{\r\n"
        b'    "return": [\r\n'
        b"        {\r\n"
        b'            "name": "a"\r\n'
        b"        },\r\n"
        b"        1\r\n"
        b"    ],\r\n"
        b'    "id": "x\\ny"\r\n'
        b"}\r\n"
    )


def test_pretty_scalar() -> None:
    """§1: a scalar is the same in both modes."""
    assert encode("x", pretty=True) == b'"x"\r\n'


# --- §1.1 strings -----------------------------------------------------------------------


def test_string_verified_examples() -> None:
    """§1.1 (verified): `"é"` → `"\\u00E9"`, raw emoji bytes → `"\\uD83D\\uDE00"`, raw
    `EF BF BF` → `"\\uFFFD"`, raw `C3 28` → `"\\uFFFD("`, DEL → `"\\u007F"`."""
    assert echo('"é"'.encode()) == b'"\\u00E9"\r\n'
    assert echo(b'"\xf0\x9f\x98\x80"') == b'"\\uD83D\\uDE00"\r\n'
    assert echo(b'"\xef\xbf\xbf"') == b'"\\uFFFD"\r\n'
    assert echo(b'"\xc3("') == b'"\\uFFFD("\r\n'
    assert echo(b'"\x7f"') == b'"\\u007F"\r\n'


def test_string_short_escapes() -> None:
    """§1.1: `"` `\\` and U+0008, U+000C, U+000A, U+000D, U+0009 as two-character
    escapes; `/` is not escaped."""
    assert encode('"\\\b\f\n\r\t/') == b'"\\"\\\\\\b\\f\\n\\r\\t/"\r\n'


def test_string_other_controls() -> None:
    """§1.1: other U+0001..U+001F as `\\uXXXX` (4 upper-case hex digits)."""
    assert encode("\x01\x1f\x1b") == b'"\\u0001\\u001F\\u001B"\r\n'


def test_string_printable_ascii_verbatim() -> None:
    """§1.1: U+0020..U+007E other than `"` and `\\` are written as themselves."""
    text = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
    assert encode(text) == b'"' + text.encode() + b'"\r\n'


def test_string_bmp_and_astral() -> None:
    """§1.1: U+007F..U+FFFF as `\\uXXXX`, U+10000..U+10FFFF as an upper-case surrogate
    pair; the output is pure ASCII."""
    assert encode("\x80\u07ff\u0800\ufffd\U00010000\U0010fffd") == (
        b'"\\u0080\\u07FF\\u0800\\uFFFD\\uD800\\uDC00\\uDBFF\\uDFFD"\r\n'
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xc3", b"\\uFFFD"),  # missing continuation at the end
        (b"\xc3A", b"\\uFFFDA"),  # bad continuation byte: resume at it
        (b"\xe2\x82A", b"\\uFFFDA"),  # lead plus the one valid continuation consumed
        (b"\x80\xbf", b"\\uFFFD\\uFFFD"),  # continuation bytes without a lead
        (b"\xfe\xff", b"\\uFFFD\\uFFFD"),  # impossible bytes
        (b"\xc0\x80", b"\\u0000"),  # the one allowed overlong form: U+0000
        (b"\xc1\xbf", b"\\uFFFD"),  # overlong
        (b"\xe0\x80\x80", b"\\uFFFD"),  # overlong
        (b"\xf0\x80\x80\x80", b"\\uFFFD"),  # overlong
        (b"\xed\xa0\x80", b"\\uFFFD"),  # surrogate U+D800
        (b"\xed\xbf\xbf", b"\\uFFFD"),  # surrogate U+DFFF
        (b"\xef\xb7\x90", b"\\uFFFD"),  # noncharacter U+FDD0
        (b"\xef\xb7\xaf", b"\\uFFFD"),  # noncharacter U+FDEF
        (b"\xef\xb7\xb0", b"\\uFDF0"),  # just after the noncharacter block
        (b"\xef\xbf\xbe", b"\\uFFFD"),  # U+FFFE
        (b"\xf0\x9f\xbf\xbf", b"\\uFFFD"),  # U+1FFFF
        (b"\xf4\x8f\xbf\xbd", b"\\uDBFF\\uDFFD"),  # U+10FFFD
        (b"\xf4\x90\x80\x80", b"\\uFFFD"),  # > U+10FFFF
        (b"\xf8\x88\x80\x80\x80", b"\\uFFFD"),  # 5-byte form
        (b"\xfc\x84\x80\x80\x80\x80", b"\\uFFFD"),  # 6-byte form
        (b"\xfc\x84\x80A", b"\\uFFFDA"),  # truncated 6-byte form
    ],
)
def test_string_invalid_sequences(data: bytes, expected: bytes) -> None:
    """§1.1: an invalid sequence becomes `\\uFFFD`; decoding resumes after the lead byte
    plus the valid continuation bytes it consumed [util/unicode.c mod_utf8_codepoint]."""
    assert encode(raw(data)) == b'"' + expected + b'"\r\n'


def test_string_noncharacters_in_str() -> None:
    """§1.1: noncharacters are invalid even when they come as Python characters."""
    assert encode("\ufdd0\ufffe\uffff\U0001fffe\U0010ffff") == b'"' + b"\\uFFFD" * 5 + b'"\r\n'


def test_string_surrogate_pair_escapes_are_not_combined() -> None:
    """§6.1 (verified): `"\\ud83d\\ude00"` comes back as `"\\uFFFD\\uFFFD"`."""
    assert echo(rb'"\ud83d\ude00"') == b'"\\uFFFD\\uFFFD"\r\n'


def test_id_echo_is_reserialised() -> None:
    """§4 (verified): the echoed id is re-serialised: `1e5` → `100000`,
    `"\\u00e9"` → `"\\u00E9"`, `-0` → `0`."""
    assert echo(b"1e5") == b"100000\r\n"
    assert echo(rb'"\u00e9"') == b'"\\u00E9"\r\n'
    assert echo(b"-0") == b"0\r\n"


def test_lone_surrogates_in_str() -> None:
    """A str with a surrogate outside surrogateescape's range is written as the 3-byte
    sequence QEMU would hold, i.e. `\\uFFFD`."""
    assert encode("a\ud800b") == b'"a\\uFFFDb"\r\n'


def test_keys_are_escaped_like_strings() -> None:
    """Keys go through the same string writer [qobject/qjson.c to_json_dict_iter]."""
    assert encode({"é": 1}) == b'{"\\u00E9": 1}\r\n'


# --- §1.2 numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, b"1.5"),
        (2.0, b"2"),
        (0.1, b"0.1"),
        (1e-7, b"0"),
        (1.23456789e-3, b"0.001235"),
        (1e5, b"100000"),
        (-0.0, b"-0"),
        (1.2345678901234568e29, b"123456789012345677877719597056"),
        (math.inf, b"inf"),
        (-math.inf, b"-inf"),
        (math.nan, b"nan"),
    ],
)
def test_double_verified_examples(value: float, text: bytes) -> None:
    """§1.2 (verified): doubles are C `%f`, trailing `0`s then a trailing `.` removed
    [qobject/qnum.c qnum_to_string]."""
    assert encode(value) == text + b"\r\n"


def test_double_rounding_and_negative_nan() -> None:
    """§1.2: `%f` rounds to 6 decimals, ties to even on the exact binary value, as glibc
    does; glibc writes a NaN with its sign bit set as `-nan`."""
    assert encode(0.0078125) == b"0.007812\r\n"
    assert encode(-1e-7) == b"-0\r\n"
    negative_nan = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000000))[0]
    assert encode(negative_nan) == b"-nan\r\n"


def test_integers() -> None:
    """§1.2: signed and unsigned integers in plain decimal."""
    assert encode([-5, 0, 2**63 - 1, -(2**63), 2**64 - 1]) == (
        b"[-5, 0, 9223372036854775807, -9223372036854775808, 18446744073709551615]\r\n"
    )


def test_bool_is_not_an_integer() -> None:
    """Python's bool is an int subclass; it must still be written as true/false."""
    assert encode({"a": True}) == b'{"a": true}\r\n'


def test_unencodable_value_raises() -> None:
    """Only JSON values can be written."""
    with pytest.raises(TypeError):
        encode({"a": object()})  # type: ignore[dict-item]


def test_deep_nesting() -> None:
    """QEMU echoes an id nested as deep as the streamer allows (1024 levels with the
    request object, §6.2); the writer handles any depth, in both modes."""
    value: JSONValue = []
    for _ in range(1023):
        value = [value, {"a": 1}]
    compact = encode(value)
    assert compact.startswith(b"[" * 1023 + b"[], ") and compact.endswith(b', {"a": 1}]\r\n')
    # (Comparing the values themselves would exhaust the recursion limit.)
    [back] = MessageDecoder().feed(compact)
    assert encode(back) == compact  # type: ignore[arg-type]
    pretty = encode(value, pretty=True)
    assert pretty.count(b"\r\n") == pretty.count(b"\n")
    [back] = MessageDecoder().feed(pretty)
    assert encode(back) == compact  # type: ignore[arg-type]
    for _ in range(3000):
        value = {"a": value}
    assert encode(value).startswith(b'{"a": ' * 3000 + b"[[")


# --- §13 QDict order ----------------------------------------------------------------------


def test_qdict_hash_vectors() -> None:
    """§13: `qdict_hash(b"") = 12345`, `qdict_hash(b"a") = 155874025`,
    `qdict_hash(b"execute") = 1421325611` [qobject/qdict.c tdb_hash]."""
    assert qdict_hash(b"") == 12345
    assert qdict_hash(b"a") == 155874025
    assert qdict_hash(b"execute") == 1421325611


def test_qdict_buckets() -> None:
    """§13 and §5: the buckets the note lists."""
    buckets = {
        "return": 401,
        "id": 486,
        "error": 489,
        "class": 211,
        "desc": 377,
        "timestamp": 26,
        "event": 361,
        "data": 505,
        "seconds": 5,
        "microseconds": 374,
        "QMP": 99,
        "version": 184,
        "capabilities": 216,
        "qemu": 232,
        "package": 326,
        "major": 481,
        "minor": 225,
        "micro": 225,
        "execute": 299,
        "arguments": 447,
        "bb": 57,
    }
    assert {key: qdict_bucket(key) for key in buckets} == buckets


def test_qdict_order_same_bucket_latest_first() -> None:
    """§13: `micro` and `minor` share bucket 225; `micro` was inserted later, so it comes
    first [qobject/qdict.c qdict_put_obj inserts at the head of the bucket's list]."""
    assert qdict_order(["major", "minor", "micro"]) == ["micro", "minor", "major"]


def test_qdict_order_request_checks() -> None:
    """§5 (verified): `{"execute": 1, "arguments": []}` is examined execute first; an
    unknown key `bb` (bucket 57) comes before both."""
    assert qdict_order(["arguments", "execute"]) == ["execute", "arguments"]
    assert qdict_order(["execute", "arguments", "bb"]) == ["bb", "execute", "arguments"]


def test_qdict_order_repeated_key_keeps_first_position() -> None:
    """§13: a re-inserted key keeps its first slot (the value is replaced in place)."""
    assert qdict_order(["major", "micro", "minor", "micro"]) == ["minor", "micro", "major"]


def test_recorded_replies_are_in_bucket_order() -> None:
    """§0/§13: every object in the replies of the libvirt recording of a real QEMU 2.11.0
    lists its members in ascending bucket order."""
    path = Path(__file__).parent.parent / "schema" / "data" / "qemu-2.11.0-x86_64-probe.replies"
    text = path.read_text()
    decoder = json.JSONDecoder(object_pairs_hook=lambda pairs: pairs)
    checked = 0

    def check(value: Any) -> None:
        nonlocal checked
        if isinstance(value, list) and all(isinstance(p, tuple) for p in value) and value:
            keys = [k for k, _ in value]
            assert [qdict_bucket(k) for k in keys] == sorted(qdict_bucket(k) for k in keys), keys
            checked += 1
            for _, v in value:
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)

    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        message, pos = decoder.raw_decode(text, pos)
        if dict(message).keys() & {"return", "error", "event"}:
            check(message)
    assert checked > 3000


def test_decoder_reads_the_recording() -> None:
    """The decoder reads real QEMU 2.11.0 output (the libvirt recording, 370 kB of
    pretty-printed JSON) exactly as Python's json module does."""
    path = Path(__file__).parent.parent / "schema" / "data" / "qemu-2.11.0-x86_64-probe.replies"
    data = path.read_bytes()
    decoded = MessageDecoder().feed(data + b"\n")
    text = data.decode()
    expected = []
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        message, pos = decoder.raw_decode(text, pos)
        expected.append(message)
    assert decoded == expected
