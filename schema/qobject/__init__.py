"""QEMU's JSON dialect, one copy for every reader and writer of JSON in the emulator.

Part of the `schema` package (which depends on nothing else of ours). QEMU 2.11 reads
JSON in three stages and writes it in one [qobject/json-lexer.c, json-streamer.c,
json-parser.c, qjson.c], and orders an object's members by its QDict's hash:

* `lexer`: the byte-level automaton, with QEMU's extensions (single-quoted strings,
  `%d`-style interpolation tokens) and its token size cut;
* `streamer`: cuts the tokens into messages by counting brackets, applies the size,
  token-count and nesting limits, recovers from errors (`JSONMessageParser`, a
  stream; `from_json`, one text as qobject_from_json reads it);
* `parser`: one message's tokens to a value or QEMU's error text, without recursion;
* `writer`: `to_json`, qobject_to_json and its pretty variant, without recursion
  beyond a fixed budget;
* `qdict`: the QDict member order and GLib's hash table order the visitor exposes.

The QMP wire (`vmm.qmp.wire`), `-blockdev`/`-object` JSON (`schema.opts`) and `json:`
file names (`blockdev`) all read and write through here.
"""

from schema.qobject.lexer import MAX_TOKEN_BYTES
from schema.qobject.parser import INVALID, INVALID_JSON_SYNTAX, Parsed, ParseFailure
from schema.qobject.qdict import (
    GHashTable,
    first_unexpected,
    g_str_hash,
    qdict_bucket,
    qdict_hash,
    qdict_order,
)
from schema.qobject.streamer import (
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MAX_TOKEN_COUNT,
    JSONMessageParser,
    JSONText,
    from_json,
)
from schema.qobject.writer import format_qnum_double, to_json

__all__ = [
    "INVALID",
    "INVALID_JSON_SYNTAX",
    "MAX_MESSAGE_BYTES",
    "MAX_NESTING",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_COUNT",
    "GHashTable",
    "JSONMessageParser",
    "JSONText",
    "ParseFailure",
    "Parsed",
    "first_unexpected",
    "format_qnum_double",
    "from_json",
    "g_str_hash",
    "qdict_bucket",
    "qdict_hash",
    "qdict_order",
    "to_json",
]
