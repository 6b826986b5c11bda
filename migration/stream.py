"""The emulator's migration stream: a versioned header, then tagged records.

Pure codec of the `migration` layer (bytes in, records out; no I/O). QEMU's own
stream (QEMU_VM_FILE_MAGIC, sections of vmstate) is not reproduced: two emulators
talk to each other, and a saved file is restored by an emulator. What QMP can observe
travels: the source's machine configuration (checked by the destination as QEMU's
`configuration` section and RAM block lengths are [migration/savevm.c
configuration_post_load, migration/ram.c ram_load]), the guest RAM as the model sent
it, the disks' contents of a block migration, the postcopy switch, and at the end
the device state: the run state (QEMU's "global state") and one section per
subsystem, each written and read through the
`Section` Protocol (schema/qobject JSON); `vmm.vmstate` supplies the devices' (their
savevm section ids, checked by the destination) and the balloon's.

Layout: `MAGIC` (16 bytes) and the version (4 bytes, big-endian), then records, each
one tag byte, a 4-byte big-endian length and the payload:

- `C` configuration: JSON `{"machine-type", "ram-bytes", "page-size"}`;
- `R` RAM: opaque bytes, one for every 4 KiB of modelled transfer (`RAM_SCALE`), so
  the stream's size follows the RAM model without carrying a guest's zeroes;
- `B` block migration: one record of migration/block.c's section (a device block or
  a progress mark, `migration.block` makes and loads them);
- `L` postcopy listen: JSON `{}` (the destination enters postcopy-active);
- `G` postcopy run: JSON `{"runstate": ...}` (the destination starts the guest);
- `S` device state: JSON `{"runstate": ..., "sections": {name: value}}`;
- `E` end of stream.

A destination answers on the same connection with one byte when it is done: `D`
(loaded) or `F` (failed), so the source of a socket migration learns the outcome.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Protocol

import attrs

from schema.jsontypes import JSONValue
from schema.qobject import from_json, to_json

MAGIC = b"QMPEMU-MIGRATE\r\n"
VERSION = 1
HEADER = MAGIC + struct.pack(">I", VERSION)
RAM_SCALE = 4096  # modelled bytes per stream byte

CONFIG, RAM, BLOCK, LISTEN, RUN, STATE, END = b"C", b"R", b"B", b"L", b"G", b"S", b"E"
TAGS = frozenset({CONFIG, RAM, BLOCK, LISTEN, RUN, STATE, END})
MAX_RECORD = 64 * 1024 * 1024

ACK_DONE = b"D"
ACK_FAILED = b"F"


class Section(Protocol):
    """A subsystem's part of the device state (devices, chardevs, netdevs, balloon):
    `save` its observable state as JSON; `load` it on the destination, raising
    `LoadError` with QEMU's message when the destination cannot take it."""

    name: str

    def save(self) -> JSONValue: ...

    def load(self, value: JSONValue) -> None: ...


class LoadError(Exception):
    """The destination cannot load the stream; `lines` are what QEMU prints (without
    the program name), the last being `load of migration failed: <strerror>`."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def record(tag: bytes, payload: bytes = b"") -> bytes:
    return tag + struct.pack(">I", len(payload)) + payload


def json_record(tag: bytes, value: JSONValue) -> bytes:
    return record(tag, to_json(value).encode())


def ram_record(modelled_bytes: int) -> bytes:
    """The RAM record standing for `modelled_bytes` of page data."""
    return record(RAM, b"\0" * -(-modelled_bytes // RAM_SCALE))


@attrs.frozen
class Record:
    tag: bytes
    payload: bytes

    def json(self) -> Any:
        parsed = from_json(self.payload)
        if not parsed.ok or not isinstance(parsed.value, dict):
            raise LoadError("load of migration failed: Invalid argument")
        return parsed.value


@attrs.define(kw_only=True)
class StreamReader:
    """Incremental decoder: feed bytes, take complete records."""

    buffer: bytearray = attrs.Factory(bytearray)
    header_seen: bool = False
    ended: bool = False

    def feed(self, data: bytes) -> Iterator[Record]:
        """Records completed by `data`; raises LoadError on a stream that is not ours
        (qemu_loadvm_state's texts)."""
        self.buffer += data
        if not self.header_seen:
            if len(self.buffer) < len(HEADER):
                if not MAGIC.startswith(bytes(self.buffer[:len(MAGIC)])):
                    raise LoadError("Not a migration stream",
                                    "load of migration failed: Invalid argument")
                return
            if bytes(self.buffer[:len(MAGIC)]) != MAGIC:
                raise LoadError("Not a migration stream",
                                "load of migration failed: Invalid argument")
            (version,) = struct.unpack(">I", self.buffer[len(MAGIC):len(HEADER)])
            if version != VERSION:
                raise LoadError("Unsupported migration stream version",
                                "load of migration failed: Invalid argument")
            del self.buffer[:len(HEADER)]
            self.header_seen = True
        buf, pos = self.buffer, 0
        try:
            while len(buf) - pos >= 5 and not self.ended:
                tag = bytes(buf[pos:pos + 1])
                (length,) = struct.unpack_from(">I", buf, pos + 1)
                if tag not in TAGS or length > MAX_RECORD:
                    raise LoadError(f"Unknown savevm section type {buf[pos]}",
                                    "load of migration failed: Invalid argument")
                if len(buf) - pos < 5 + length:
                    return
                payload = bytes(buf[pos + 5:pos + 5 + length])
                pos += 5 + length
                if tag == END:
                    self.ended = True
                yield Record(tag, payload)
        finally:
            del buf[:pos]  # once per call: the records taken leave the buffer
