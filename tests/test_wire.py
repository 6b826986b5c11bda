"""The QMP input dialect: QEMU 2.11's JSON lexer, streamer and parser, as `MessageDecoder`.

Each test pins one documented behaviour of qmp-protocol.md §6 (or of the QEMU source file
and function its docstring names). Unless a test says otherwise, input is fed in one piece
to a fresh decoder, like the "(verified)" observations, each made on a fresh connection.
"""

from __future__ import annotations

import math

import pytest

from vmm.qmp.wire import INVALID_JSON_SYNTAX, MessageDecoder, Parsed, ParseFailure

INVALID = ParseFailure(INVALID_JSON_SYNTAX)


def parse_error(reason: str) -> ParseFailure:
    return ParseFailure("JSON parse error, " + reason)


def feed(data: bytes) -> list[Parsed]:
    return MessageDecoder().feed(data)


def feed_bytewise(data: bytes) -> list[Parsed]:
    decoder = MessageDecoder()
    out: list[Parsed] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out


# --- §6.3 recovery examples (every row is verified in the note) ------------------------


def test_recovery_bad_byte_in_value() -> None:
    """§6.3 row 1: `{"execute": @}` → Invalid JSON syntax (at `@`), then the `}` alone is
    a message → `expecting value`."""
    assert feed(b'{"execute": @}') == [INVALID, parse_error("expecting value")]


def test_recovery_stray_closing_brace() -> None:
    """§6.3 row 2: a request, then a stray `}` → the request, then `expecting value`."""
    assert feed(b'{"execute":"query-name"} }') == [
        {"execute": "query-name"},
        parse_error("expecting value"),
    ]


def test_recovery_0xff_then_request() -> None:
    """§6.3 row 3: a 0xFF byte (as QEMU's guest agent sends to resync) is one lexical
    error; the following request is processed normally."""
    assert feed(b'\xff{"execute":"query-name"}') == [INVALID, {"execute": "query-name"}]


def test_recovery_capitalised_keyword() -> None:
    """§6.3 row 4: `True` → Invalid JSON syntax at `T`; `rue` is then a keyword message of
    its own; the closing `}` a stray one."""
    assert feed(b'{"execute":"query-name","id":True}') == [
        INVALID,
        parse_error("invalid keyword 'rue'"),
        parse_error("expecting value"),
    ]


def test_recovery_lone_minus_swallows_brace() -> None:
    """§6.3 row 5: `-}` → the `}` is the byte that cannot continue the number; it is the
    offending byte and is dropped, so there is a single reply."""
    assert feed(b'{"execute":"query-name","id":-}') == [INVALID]


def test_recovery_leading_dot() -> None:
    """§6.3 row 6: `.5` → Invalid JSON syntax at `.`; `5` is a top-level scalar message
    (the monitor says `QMP input must be a JSON object`); `}` is stray."""
    assert feed(b'{"execute":"query-name","id":.5}') == [
        INVALID,
        5,
        parse_error("expecting value"),
    ]


def test_recovery_nul_in_string_desynchronises() -> None:
    """§6.3 row 7: NUL inside a string is a lexical error; `b` is then a keyword message,
    and the closing quote opens a new string that swallows the rest."""
    decoder = MessageDecoder()
    assert decoder.feed(b'{"execute":"query-name","id":"a\x00b"}') == [
        INVALID,
        parse_error("invalid keyword 'b'"),
    ]
    # The next request is misread: its quotes now close strings instead of opening them.
    assert decoder.feed(b'{"execute":"query-name"}\n') == [
        "}{",
        parse_error("invalid keyword 'execute'"),
        ":",
        parse_error("invalid keyword 'query'"),
        INVALID,  # `-n`
        parse_error("invalid keyword 'ame'"),
    ]
    assert decoder.feed(b'" 7 ') == ["}\n", 7]  # a stray quote brings it back in step


def test_recovery_c0_80_in_string_desynchronises() -> None:
    """§6.3 row 8: `\\xc0\\x80` in a string: 0xC0 is an error inside the string, 0x80 an
    error in the initial state; the closing quote opens a string (desync)."""
    decoder = MessageDecoder()
    assert decoder.feed(b'{"execute":"query-name","id":"\xc0\x80"}') == [INVALID, INVALID]
    assert decoder.feed(b'{"execute":"query-name"}\n')[0] == "}{"


def test_recovery_nesting_too_deep() -> None:
    """§6.3 row 9: `{"execute":"query-name","id":` + 1025×`[` + 1025×`]` + `}`.

    The object counts as one level, so the 1024th `[` makes depth 1025 > 1024 and the
    message is dropped [json-streamer.c json_message_process_token]. The 1025th `[` then
    starts a new message that the first `]` completes: `[]`, a value (the monitor replies
    `QMP input must be a JSON object`). Each of the other 1024 `]` and the `}` are stray.
    The note's row omits the `[]` message; this follows the source's arithmetic.
    """
    data = b'{"execute":"query-name","id":' + b"[" * 1025 + b"]" * 1025 + b"}"
    assert feed(data) == [INVALID, [], *[parse_error("expecting value")] * 1025]


def test_recovery_unterminated_string_waits() -> None:
    """§6.3 row 10: an unterminated string swallows the LF; nothing is replied."""
    assert feed(b'{"execute":"query-name","id":"unterminated}\n') == []


def test_reset_recovers_from_desync() -> None:
    """§9: on client disconnect QEMU destroys and re-creates the parser
    [monitor.c monitor_qmp_event]; `reset()` forgets the partial string."""
    decoder = MessageDecoder()
    assert decoder.feed(b'{"execute":"query-name","id":"unterminated}\n') == []
    decoder.reset()
    assert decoder.feed(b'{"execute":"query-name"}') == [{"execute": "query-name"}]


def test_reset_drops_partial_message_and_pending_number() -> None:
    """§9: a partial message and a number waiting for its end are lost on reset."""
    decoder = MessageDecoder()
    assert decoder.feed(b'{"a": [1, 2') == []
    decoder.reset()
    assert decoder.feed(b"12") == []
    decoder.reset()
    assert decoder.feed(b'{"b": 3}') == [{"b": 3}]


# --- §6.4 parser messages --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b'{"execute": }', b'{"a":[1,]}', b'{"a":nul}', b'{ "execute": }', b'{"a": {"b" 1}}'],
)
def test_missing_value_in_dict(data: bytes) -> None:
    """§6.4: anything wrong in a member's value, however deep, is reported by the
    outermost object as `Missing value in dict` [json-parser.c parse_pair]. Includes the
    example of QEMU's own qmp-spec.txt, which wrongly claims `Invalid JSON syntax`."""
    assert feed(data) == [parse_error("Missing value in dict")]


@pytest.mark.parametrize("data", [b"{1:2}", b'{"a":1,}', b'{{"a":1}:2}', b"{]"])
def test_key_is_not_a_string(data: bytes) -> None:
    """§6.4: a key that is not a string, or fails to parse → `key is not a string in
    object` [json-parser.c parse_pair]."""
    assert feed(data) == [parse_error("key is not a string in object")]


def test_missing_colon() -> None:
    """§6.4: `{"a" 1}` → `missing : in object pair` [json-parser.c parse_pair]."""
    assert feed(b'{"a" 1}') == [parse_error("missing : in object pair")]


@pytest.mark.parametrize("data", [b'{"a":1 "b":2}', b'{"id":0e5}'])
def test_expected_separator_in_dict(data: bytes) -> None:
    """§6.4: a member followed by something other than `,` or `}`; `0e5` lexes as `0`,
    keyword `e`, `5` [json-parser.c parse_object]."""
    assert feed(data) == [parse_error("expected separator in dict")]


@pytest.mark.parametrize("data", [b"[1,]", b"}", b"]", b"[}", b"[1, [2 3]]", b"[:]"])
def test_expecting_value(data: bytes) -> None:
    """§6.4: a bad element of a top-level array (however deep the fault), or a lone `}`
    or `]` → `expecting value` [json-parser.c parse_array, parse_value]."""
    assert feed(data) == [parse_error("expecting value")]


def test_expected_separator_in_list() -> None:
    """§6.4: `[1 2]` → `expected separator in list` [json-parser.c parse_array]."""
    assert feed(b"[1 2]") == [parse_error("expected separator in list")]


def test_invalid_keyword() -> None:
    """§6.4: a top-level keyword other than true/false/null [json-parser.c
    parse_keyword]."""
    assert feed(b"foo\n") == [parse_error("invalid keyword 'foo'")]


def test_outermost_construct_wins() -> None:
    """§6.4: each enclosing level overwrites the reason; an array inside an object
    inside an array reports the outermost array's reason."""
    assert feed(b'[{"a": [1 2]}]') == [parse_error("expecting value")]
    assert feed(b'{"a": [{"b": nul}]}') == [parse_error("Missing value in dict")]
    assert feed(b'{"k": 1, [1 2]: 3}') == [parse_error("key is not a string in object")]


def test_reason_truncated_to_1023_bytes() -> None:
    """§6.4: the reason is formatted into a 1024-byte buffer [json-parser.c
    parse_error], so a long keyword is cut to 1023 bytes of reason."""
    reason = ("invalid keyword '" + "a" * 2000 + "'")[:1023]
    assert feed(b"a" * 2000 + b" ") == [parse_error(reason)]


# --- §6.1 lexer --------------------------------------------------------------------------


def test_whitespace_is_skipped() -> None:
    """§6.1: space, TAB, CR, LF separate tokens and never reach the parser."""
    assert feed(b' \t\r\n{ \t"a"\r\n:\n[ 1 ,\t2 ] }') == [{"a": [1, 2]}]


def test_other_whitespace_is_an_error() -> None:
    """§6.1: anything not listed is a lexical error, e.g. a form feed or a vertical tab."""
    assert feed(b"\x0c\x0b") == [INVALID, INVALID]


def test_single_quoted_strings() -> None:
    """§6.1: `'…'` strings are an extension; a `"` inside needs no escape, nor a `'`
    inside a double-quoted string."""
    assert feed(b"{'execute': 'a\"b', \"x\": \"c'd\"}") == [{"execute": 'a"b', "x": "c'd"}]


def test_raw_control_bytes_accepted_in_strings() -> None:
    """§6.1: bytes 0x01..0x1F (TAB, 0x01, LF, ...) are accepted raw inside strings."""
    assert feed(b'"a\tb\x01c\nd\x7f"') == ["a\tb\x01c\nd\x7f"]


def test_raw_utf8_bytes_unvalidated() -> None:
    """§6.1: bytes 0x80..0xBF and 0xC2..0xF4 are accepted raw, unvalidated; the string
    holds them as bytes (here a lone continuation byte and a truncated sequence)."""
    assert feed('"é"'.encode()) == ["é"]
    assert feed(b'"\x80\xe2\x82"') == ["\udc80\udce2\udc82"]


@pytest.mark.parametrize("bad", [b"\x00", b"\xc0", b"\xc1", b"\xf5", b"\xfe", b"\xff"])
def test_forbidden_bytes_in_strings(bad: bytes) -> None:
    """§6.1: 0x00, 0xC0, 0xC1, 0xF5..0xFF inside a string are lexical errors; the rest of
    the string is then lexed afresh (`b` is a keyword) [json-lexer.c IN_DQ_STRING]."""
    assert feed(b'"a' + bad + b"b ") == [INVALID, parse_error("invalid keyword 'b'")]


def test_escapes_in_both_kinds_of_string() -> None:
    """§6.1: `\\b \\f \\n \\r \\t \\/ \\\\ \\' \\"` and `\\uXXXX` (hex any case) in both
    kinds of string [json-parser.c qstring_from_escaped_str]."""
    escapes = rb"""\b\f\n\r\t\/\\\'\"\u0041\u00e9\u00E9"""
    expected = "\b\f\n\r\t/\\'\"Aéé"
    assert feed(b'"' + escapes + b'"') == [expected]
    assert feed(b"'" + escapes + b"'") == [expected]


@pytest.mark.parametrize("bad", [rb"\x", rb"\a", rb"\U0041", rb"\u12g4", rb"\u"])
def test_invalid_escapes_are_lexical_errors(bad: bytes) -> None:
    """§6.1: any other escape, or `\\u` with fewer than 4 hex digits, is a lexical error
    at the offending byte (which is dropped)."""
    assert feed(b'"' + bad + b" ")[:1] == [INVALID]


def test_unicode_escape_converted_on_its_own() -> None:
    """§6.1: each `\\uXXXX` becomes 1–3 UTF-8 bytes on its own: a surrogate pair is not
    combined, each half is the 3-byte sequence ED xx xx [json-parser.c wchar_to_utf8]."""
    assert feed(rb'"\ud83d\ude00"') == [
        b"\xed\xa0\xbd\xed\xb8\x80".decode("utf-8", "surrogateescape")
    ]
    assert feed(rb'"\u007f\u0080\u07ff\u0800\uffff"') == ["\x7f\x80\u07ff\u0800\uffff"]


def test_unicode_escape_nul_produces_nothing() -> None:
    """§6.1: `\\u0000` is silently dropped (it ends an empty C string)."""
    assert feed(rb'"a\u0000b"') == ["ab"]


@pytest.mark.parametrize("bad", [b"01", b"1.", b".5", b"+1", b"1e", b"-", b"-a", b"1.e5", b"1e+"])
def test_malformed_numbers_are_lexical_errors(bad: bytes) -> None:
    """§6.1: `01`, `1.`, `.5`, `+1`, `1e`, `-` are lexical errors [json-lexer.c]."""
    assert feed(b"[" + bad + b" ")[0] == INVALID


def test_number_ends_at_first_byte_that_cannot_continue_it() -> None:
    """§6.1: `0e5` is the number 0, the keyword `e` and the number 5; `1-2` is 1 then -2."""
    assert feed(b"0e5 ") == [0, parse_error("invalid keyword 'e'"), 5]
    assert feed(b"1-2 ") == [1, -2]
    assert feed(b"2.5.") == [2.5, INVALID]


def test_number_at_end_of_input_waits() -> None:
    """§6.1: a number or keyword at the very end of the input is incomplete until the
    next byte arrives (`123` waits, `123\\n` is processed)."""
    decoder = MessageDecoder()
    assert decoder.feed(b"123") == []
    assert decoder.feed(b"\n") == [123]
    assert decoder.feed(b"true") == []
    assert decoder.feed(b"]") == [True, parse_error("expecting value")]


def test_number_or_keyword_followed_by_high_byte_is_an_error() -> None:
    """A number, keyword or whitespace run followed by a byte >= 0x80 is one lexical
    error, the token included: the automaton's default "token complete" transition covers
    only bytes 0x00..0x7F [json-lexer.c TERMINAL]."""
    assert feed(b"123\x80 7 ") == [INVALID, 7]
    assert feed(b"true\xff 7 ") == [INVALID, 7]
    assert feed(b"[1, \xe9]") == [INVALID, parse_error("expecting value")]


def test_integer_values() -> None:
    """§6.1: an integer token that fits int64 is a signed integer, else if it has no `-`
    and fits uint64 an unsigned one, else a double via strtod [json-parser.c
    parse_literal]. `-0` is the integer 0."""
    data = (
        b"[9223372036854775807, -9223372036854775808, 9223372036854775808,"
        b" 18446744073709551615, 18446744073709551616, -9223372036854775809, -0]"
    )
    [value] = feed(data)
    assert value == [
        2**63 - 1,
        -(2**63),
        2**63,
        2**64 - 1,
        1.8446744073709552e19,
        -9.223372036854776e18,
        0,
    ]
    assert [type(v) for v in value] == [int, int, int, int, float, float, int]


def test_float_values() -> None:
    """§6.1: tokens with `.` or an exponent are doubles: `1.0` is a double, `1e400` is
    infinity (strtod overflow), `1e-400` underflows to 0."""
    [value] = feed(b"[1.0, 1e400, -1e400, 1e-400, 2.5E+3, 1.5e-1]")
    assert value == [1.0, math.inf, -math.inf, 0.0, 2500.0, 0.15]
    assert all(type(v) is float for v in value)


def test_huge_integer_token_is_a_double() -> None:
    """§6.1: an integer beyond uint64 is a double, however many digits (strtod)."""
    assert feed(b"1" + b"0" * 400 + b" ") == [math.inf]
    assert feed(b"-1" + b"0" * 30 + b" ") == [-1e30]


def test_keywords() -> None:
    """§6.1: keywords are `[a-z]+`; only true, false and null are values."""
    assert feed(b"[true, false, null]") == [[True, False, None]]


@pytest.mark.parametrize("data", [b"True ", b"NULL "])
def test_upper_case_keyword_is_lexical_error(data: bytes) -> None:
    """§6.1: `True`, `NULL` are lexical errors at the first upper-case letter; the rest
    lexes afresh."""
    results = feed(data)
    assert results[0] == INVALID
    assert results[1:] in ([parse_error("invalid keyword 'rue'")], [INVALID, INVALID, INVALID])


@pytest.mark.parametrize(
    "token",
    [
        b"%d",
        b"%i",
        b"%p",
        b"%s",
        b"%u",
        b"%f",
        b"%ld",
        b"%lu",
        b"%lld",
        b"%llu",
        b"%I64d",
        b"%I64u",
    ],
)
def test_interpolation_tokens(token: bytes) -> None:
    """§6.1: `%` tokens never produce a value: at top level → Invalid JSON syntax (the
    parser fails without a message [monitor.c handle_qmp_command]); as a member value →
    `Missing value in dict`; as an array element → `expecting value`."""
    assert feed(token) == [INVALID]
    assert feed(b'{"a": ' + token + b"}") == [parse_error("Missing value in dict")]
    assert feed(b"[" + token + b"]") == [parse_error("expecting value")]
    assert feed(b"{" + token + b": 1}") == [parse_error("key is not a string in object")]


@pytest.mark.parametrize("data", [b"%x", b"%l", b"%lx", b"%I6d", b"%I64x"])
def test_unknown_interpolation_is_lexical_error(data: bytes) -> None:
    """§6.1: an unknown `%` token (`%x`) is a lexical error."""
    assert feed(data + b" ")[0] == INVALID


# --- §6.2 streamer -----------------------------------------------------------------------


def test_top_level_scalars_are_messages() -> None:
    """§6.2: a top-level scalar is a complete message by itself (a string at once, a
    number or keyword when the next byte arrives)."""
    assert feed(b'"abc"') == ["abc"]
    assert feed(b"42\n") == [42]
    assert feed(b"true\n") == [True]


def test_several_requests_in_one_write() -> None:
    """§6.2: requests are processed one after another; whitespace between them is
    irrelevant. (verified)"""
    assert feed(b'{"execute":"a"}{"execute":"b"}\r\n\n {"execute":"c"}') == [
        {"execute": "a"},
        {"execute": "b"},
        {"execute": "c"},
    ]


def test_unbalanced_prefix_waits() -> None:
    """§6.2: `{"a":[1,2}` keeps both counts positive, so nothing is parsed yet; the
    message completes only when both counts return to 0."""
    decoder = MessageDecoder()
    assert decoder.feed(b'{"a":[1,2}') == []
    assert decoder.feed(b"]") == [parse_error("Missing value in dict")]


def test_negative_count_ends_message() -> None:
    """§6.2: a message is also handed over when either count goes negative."""
    assert feed(b'{"a": 1]') == [parse_error("expected separator in dict")]
    assert feed(b"[1}") == [parse_error("expected separator in list")]


def test_depth_1024_accepted() -> None:
    """§6.2: `{`-depth + `[`-depth of 1024 is accepted. (verified)"""
    [value] = feed(b"[" * 1024 + b"]" * 1024)
    for _ in range(1023):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []
    [obj] = feed(b'{"a":' * 1023 + b"[]" + b"}" * 1023)
    assert isinstance(obj, dict)


def test_depth_1025_rejected() -> None:
    """§6.2: depth 1025 is rejected at the token that reaches it; the rest is lexed as
    new input. (verified)"""
    results = feed(b"[" * 1025 + b"]" * 1025)
    assert results == [INVALID, *[parse_error("expecting value")] * 1025]
    results = feed(b"{" * 1025)
    assert results == [INVALID]


def test_lexical_error_resets_counters() -> None:
    """§6.2: on a lexical error all collected tokens are discarded and both counters reset
    to 0, so what follows is lexed and counted as new messages."""
    expecting_value = parse_error("expecting value")
    assert feed(b'{"a": [-{"b": 1}]}') == [
        INVALID,
        "b",
        expecting_value,  # the `:`
        1,
        expecting_value,
        expecting_value,
        expecting_value,
    ]


def test_offending_byte_is_dropped_even_if_it_could_start_a_token() -> None:
    """§6.2: the byte that caused a lexical error is consumed and dropped, even when it
    would be a valid start of a new token, and the counters are reset: after `[-{` the
    `{` is gone, so `"b"` is a message of its own and `]` is stray."""
    assert feed(b'[-{"b"]') == [INVALID, "b", parse_error("expecting value")]


def test_duplicate_keys_later_value_first_position() -> None:
    """§5: a later duplicate key's value wins; the key keeps its first position.
    (verified: `{"execute":"query-name","execute":"query-kvm"}` runs query-kvm)"""
    [value] = feed(b'{"execute":"query-name","execute":"query-kvm"}')
    assert value == {"execute": "query-kvm"}
    [value] = feed(b'{"b": 1, "a": 2, "b": 3}')
    assert isinstance(value, dict)
    assert list(value.items()) == [("b", 3), ("a", 2)]


def test_members_keep_text_order() -> None:
    """§13: values from the client keep the order in which the text listed the keys (the
    encoder applies QDict order on the way out)."""
    [value] = feed(b'{"z": 1, "execute": 2, "a": 3}')
    assert isinstance(value, dict)
    assert list(value) == ["z", "execute", "a"]


def test_feed_accepts_bytes_like() -> None:
    """The protocol layer may hand over bytearray or memoryview chunks."""
    decoder = MessageDecoder()
    assert decoder.feed(bytearray(b'{"a"')) == []
    assert decoder.feed(memoryview(b": 1}")) == [{"a": 1}]


def test_bytewise_feeding_matches() -> None:
    """QEMU reads QMP input one byte per main-loop iteration [monitor.c
    monitor_can_read]; feeding byte by byte gives the same results."""
    data = b'{"execute": @}{"execute":"query-name","id":True} 12 "\\u00e9" %d 0e5 \xff[1 2]'
    assert feed_bytewise(data) == feed(data)
