"""The QMP wire: a connection's bytes to requests, and messages to bytes, byte-exact
with QEMU 2.11.0.

The wire edge of `vmm.qmp`. The monitor (`vmm.qmp.monitor`) feeds each connection's
received bytes to its `MessageDecoder` and writes what `encode` returns. The JSON
itself, read and written, is QEMU's dialect from `schema.qobject`; this module adds
only what the monitor does around it:

* input: one `JSONMessageParser` per connection, reset when the client disconnects
  [monitor.c monitor_qmp_event]; each result is a request or a `ParseFailure`, whose
  `desc` the monitor answers with [monitor.c handle_qmp_command];
* output: `qobject_to_json` (or its pretty variant) as the monitor writes it: every LF
  as CR LF, then a final CR LF [monitor.c monitor_json_emitter, monitor_puts].

Strings: QEMU's strings are byte strings. Decoded strings are the bytes QEMU would hold,
turned into `str` with ``bytes.decode("utf-8", "surrogateescape")``; `encode` turns them
back into bytes the same way before escaping them, so invalid byte sequences survive a
round trip exactly as in QEMU.
"""

from __future__ import annotations

from schema.jsontypes import JSONValue
from schema.qobject import (
    INVALID_JSON_SYNTAX,
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MAX_TOKEN_BYTES,
    MAX_TOKEN_COUNT,
    JSONMessageParser,
    Parsed,
    ParseFailure,
    to_json,
)

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
]


class MessageDecoder(JSONMessageParser):
    """One monitor connection's JSON input: bytes in, one result per complete message.

    `reset` forgets any partial token and message, as QEMU does when a client
    disconnects [monitor.c monitor_qmp_event: CHR_EVENT_CLOSED destroys and re-creates
    the parser].
    """

    __slots__ = ()


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
