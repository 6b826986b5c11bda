"""The input limits of QEMU 2.11's JSON streamer and lexer, as `MessageDecoder` applies them.

[qobject/json-streamer.c json_message_process_token: MAX_TOKEN_SIZE, MAX_TOKEN_COUNT,
MAX_NESTING; qobject/json-lexer.c json_lexer_feed_char: MAX_TOKEN_SIZE]. These tests build
inputs of 64 MiB and 2 million tokens, so each takes a second or two.
"""

from __future__ import annotations

from vmm.qmp.wire import (
    INVALID_JSON_SYNTAX,
    MAX_MESSAGE_BYTES,
    MAX_TOKEN_BYTES,
    MAX_TOKEN_COUNT,
    MessageDecoder,
    Parsed,
    ParseFailure,
)

INVALID = ParseFailure(INVALID_JSON_SYNTAX)
EXPECTING_VALUE = ParseFailure("JSON parse error, expecting value")
MiB = 1 << 20


def feed(data: bytes) -> list[Parsed]:
    return MessageDecoder().feed(data)


def feed_chunked(data: bytes, size: int) -> list[Parsed]:
    decoder = MessageDecoder()
    out: list[Parsed] = []
    for i in range(0, len(data), size):
        out += decoder.feed(data[i : i + size])
    return out


def test_limit_values() -> None:
    """§6.2: 64 MiB of message bytes, 2097152 tokens, 64 MiB per token."""
    assert MAX_MESSAGE_BYTES == MAX_TOKEN_BYTES == 67108864
    assert MAX_TOKEN_COUNT == 2097152


def test_message_of_64_mib_accepted() -> None:
    """§6.2: a message whose tokens total exactly 64 MiB is accepted (the limit is
    "more than"); whitespace is not counted."""
    string = b'"' + b"a" * (MAX_MESSAGE_BYTES - 3) + b'"'
    [value] = feed(b"[ " + string + b"  ]")
    assert isinstance(value, list) and len(value[0]) == MAX_MESSAGE_BYTES - 3  # type: ignore[arg-type]


def test_message_over_64_mib_rejected() -> None:
    """§6.2: once the tokens of an unfinished message total more than 64 MiB, the message
    is dropped with `Invalid JSON syntax`; what follows is new input."""
    first = b'"' + b"a" * (40 * MiB) + b'"'
    second = b'"' + b"b" * (30 * MiB) + b'"'
    assert feed(b"[" + first + b", " + second + b"] 5 ") == [INVALID, EXPECTING_VALUE, 5]
    string = b'"' + b"a" * (MAX_MESSAGE_BYTES - 3) + b'"'
    assert feed(b"[" + string + b",1]") == [INVALID, 1, EXPECTING_VALUE]


def test_a_complete_message_is_never_over_a_limit() -> None:
    """§6.2: the limits are checked only while a container is unfinished: the token that
    completes a message hands it over first."""
    data = b"[" + b"0," * (MAX_TOKEN_COUNT // 2 - 1) + b"0]"  # 2097153 tokens in all
    [value] = feed(data)
    assert isinstance(value, list) and len(value) == MAX_TOKEN_COUNT // 2


def test_token_count_over_limit_rejected() -> None:
    """§6.2: more than 2097152 tokens in an unfinished message → `Invalid JSON syntax`."""
    data = b"[" + b"0," * (MAX_TOKEN_COUNT // 2) + b"0]"
    assert feed(data) == [INVALID, 0, EXPECTING_VALUE]


def test_oversized_string_token_at_top_level() -> None:
    """§6.2: the lexer cuts a token at 64 MiB + 1 bytes and passes it on as a bogus token
    (alone at top level: `expecting value`), then lexes the rest of the token afresh."""
    data = b'"' + b"a" * MAX_TOKEN_BYTES + b"bc 1 "
    assert feed(data) == [
        EXPECTING_VALUE,
        ParseFailure("JSON parse error, invalid keyword 'bc'"),
        1,
    ]
    assert feed_chunked(data, 3 * MiB + 7) == feed(data)


def test_string_token_of_64_mib_accepted() -> None:
    """§6.2: a token of exactly 64 MiB (quotes included) is not cut."""
    [value] = feed(b'"' + b"a" * (MAX_TOKEN_BYTES - 2) + b'"')
    assert value == "a" * (MAX_TOKEN_BYTES - 2)


def test_oversized_token_in_container() -> None:
    """§6.2: inside a container the cut token trips the 64 MiB message limit; the rest of
    the token is then lexed as new input (here its closing quote opens a string)."""
    data = b'["' + b"a" * MAX_TOKEN_BYTES + b'"] 1 '
    decoder = MessageDecoder()
    assert decoder.feed(data) == [INVALID]
    assert decoder.feed(b'"2 ') == ["] 1 ", 2]


def test_oversized_number_and_whitespace_tokens() -> None:
    """The cut applies to every token the lexer accumulates, whitespace included: a run
    of more than 64 MiB of spaces or digits becomes a bogus token [json-lexer.c
    json_lexer_feed_char], so whitespace does count towards the limit in that case."""
    assert feed(b" " * MAX_TOKEN_BYTES + b"1 ") == [1]
    assert feed(b" " * (MAX_TOKEN_BYTES + 1) + b"1 ") == [EXPECTING_VALUE, 1]
    assert feed(b"[" + b" " * (MAX_TOKEN_BYTES + 1) + b"1]") == [INVALID, 1, EXPECTING_VALUE]
    digits = b"1" * (MAX_TOKEN_BYTES + 1)
    assert feed(digits + b"23 ") == [EXPECTING_VALUE, 23]
    assert feed_chunked(digits + b"23 ", 5 * MiB) == [EXPECTING_VALUE, 23]


def _deep_id_request(depth: int) -> bytes:
    return b'{"execute":"query-status","id":' + b"[" * depth + b"]" * depth + b"}"


def test_reply_echoes_an_id_nested_1000_deep(vm_factory) -> None:
    """§6.2: nesting up to 1024 open braces and brackets is within the streamer's limit,
    so a request whose `id` is an array nested 1000 (or 1023, the most the request's own
    brace leaves) levels deep is executed and its reply carries the `id` back, written
    by the same writer [json-streamer.c MAX_NESTING; monitor.c handle_qmp_command puts
    the request's id into the reply]."""
    talk = vm_factory().talk()
    for depth in (1000, 1023):
        reply = talk.send(_deep_id_request(depth))
        expected_id = b"[" * depth + b"]" * depth
        assert reply == (b'{"return": {"status": "running", "singlestep": false, '
                         b'"running": true}, "id": ' + expected_id + b"}\r\n")


def test_traced_deep_request_is_written_as_json(vm_factory, capsys) -> None:
    """With the handle_qmp_command trace event enabled, QEMU traces the parsed request
    as JSON without its id (qobject_to_json) before running it [monitor.c
    handle_qmp_command]; a deep request is traced and answered like any other."""
    talk = vm_factory().talk()
    enable = talk.execute("trace-event-set-state",
                          {"name": "handle_qmp_command", "enable": True})
    assert enable == {"return": {}}
    capsys.readouterr()
    request = (b'{"execute":"query-status","arguments":{},"id":'
               + b"[" * 1000 + b"]" * 1000 + b"}")
    reply = talk.send(request)
    assert reply.endswith(b"]}\r\n") and reply.startswith(b'{"return": {"status": ')
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("handle_qmp_command mon 0x")
    assert line.endswith(' req: {"execute": "query-status", "arguments": {}}')
