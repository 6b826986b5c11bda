"""`schema.qobject.from_json`: one text read as QEMU's qobject_from_json reads it.

The wire's stream of messages is pinned by tests/test_wire*.py; this is the other way
QEMU reads JSON (qobject/qjson.c qobject_from_jsonv): feed the whole text, flush the
lexer, keep the last message's value and the first parser error.
"""

from __future__ import annotations

from schema.qobject import JSONText, from_json


def test_one_value() -> None:
    """A single value; a number at the very end is completed by the lexer's flush
    (json_lexer_flush)."""
    assert from_json('{"a": [1, 2.5, null]}') == JSONText({"a": [1, 2.5, None]}, True, None)
    assert from_json("42") == JSONText(42, True, None)
    assert from_json("null") == JSONText(None, True, None)


def test_last_value_wins_first_error_sticks() -> None:
    """parse_json overwrites the result with every message; error_propagate keeps the
    first error."""
    assert from_json("1 2") == JSONText(2, True, None)
    assert from_json("] 3") == JSONText(3, True, "JSON parse error, expecting value")
    assert from_json("] tru") == JSONText(
        None, False, "JSON parse error, expecting value")


def test_no_value_no_message() -> None:
    """Input that ends inside a value, a lexical error, an interpolation token and a
    message past the nesting limit give no value and set no error."""
    for text in ("{", '{"a": 1', "\x01", "%d", "[" * 1025):
        assert from_json(text) == JSONText(None, False, None), text


def test_surrogate_escaped_text_is_read_as_bytes() -> None:
    """A str carries QEMU's bytes with surrogateescape; a stray continuation byte
    inside a string survives, as QEMU's lexer passes raw bytes through unvalidated."""
    text = b'"\x80\xc3\xa9"'.decode("utf-8", "surrogateescape")
    assert from_json(text) == JSONText(b"\x80\xc3\xa9".decode("utf-8", "surrogateescape"),
                                       True, None)
