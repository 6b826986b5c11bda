"""The chardev QMP commands of one machine [chardev/char.c, chardev/char-ringbuf.c].

Part of the pure `devices` layer: handlers registered by schema name over
`devices.chardev.model.Chardevs` (whose host side `devices.chardev.hostio` opens).
The schema visitor has checked the arguments; the ChardevBackend arrives as the
wire-named union value.
"""

from __future__ import annotations

import base64
from typing import Any

from devices.chardev.model import BACKEND_NAMES, Chardev, Chardevs
from schema.errors import GenericError
from schema.handlers import qmp_command

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALID = set(_B64 + "=\n")


def qbase64_decode(text: str) -> bytes:
    """util/base64.c qbase64_decode with in_len -1 (the string up to its first NUL),
    then glib's g_base64_decode: '=' counts as a zero digit, a trailing partial group
    is dropped, and each of up to two trailing '=' drops one output byte."""
    text = text.split("\0", 1)[0]
    if any(ch not in _B64_VALID for ch in text):
        raise GenericError("Base64 data contains invalid characters")
    out = bytearray()
    value = count = 0
    for ch in text:
        if ch == "\n":
            continue
        value = (value << 6) | (0 if ch == "=" else _B64.index(ch))
        count += 1
        if count == 4:
            out += value.to_bytes(3, "big")
            value = count = 0
    trailing = 2
    for ch in reversed(text):
        if not trailing:
            break
        if ch == "\n":
            continue
        if ch == "=" and out:
            out.pop()
        trailing -= 1
    return bytes(out)


def _ringbuf(chardevs: Chardevs, device: str) -> Chardev:
    chardev = chardevs.find(device)
    if chardev is None:
        raise GenericError(f"Device '{device}' not found")
    if chardev.ring is None:
        raise GenericError(f"{device} is not a ringbuf device")
    return chardev


def _chardev_return(chardev: Chardev) -> dict[str, Any]:
    """ChardevReturn: a pty's path (the filename after "pty:")."""
    if chardev.kind == "pty":
        return {"pty": chardev.filename[4:]}
    return {}


class ChardevCommands:
    """QMP's chardev commands over one machine's chardevs."""

    def __init__(self, chardevs: Chardevs) -> None:
        self.chardevs = chardevs

    @qmp_command("chardev-add")
    def chardev_add(self, id: str, backend: dict[str, Any]) -> dict[str, Any]:
        """qmp_chardev_add: char_get_class, then qemu_chardev_new."""
        return _chardev_return(self.chardevs.create(id, backend))

    @qmp_command("chardev-remove")
    def chardev_remove(self, id: str) -> None:
        self.chardevs.remove(id)

    @qmp_command("chardev-change")
    def chardev_change(self, id: str, backend: dict[str, Any]) -> dict[str, Any]:
        return _chardev_return(self.chardevs.change(id, backend))

    @qmp_command("chardev-send-break")
    def chardev_send_break(self, id: str) -> None:
        self.chardevs.send_break(id)

    @qmp_command("ringbuf-write")
    def ringbuf_write(self, device: str, data: str, format: str | None = None) -> None:
        """qmp_ringbuf_write: utf8 writes the string's bytes up to its first NUL
        (strlen); base64 decodes first."""
        chardev = _ringbuf(self.chardevs, device)
        if format == "base64":
            raw = qbase64_decode(data)
        else:
            raw = data.encode("utf-8", "surrogateescape").split(b"\0", 1)[0]
        assert chardev.ring is not None
        chardev.ring.write(raw)

    @qmp_command("ringbuf-read")
    def ringbuf_read(self, device: str, size: int, format: str | None = None) -> str:
        """qmp_ringbuf_read: up to `size` bytes, consumed; utf8 hands the raw bytes
        over as a C string (the first NUL ends it; invalid UTF-8 reaches the JSON
        writer, which writes U+FFFD)."""
        chardev = _ringbuf(self.chardevs, device)
        if size <= 0:
            raise GenericError("size must be greater than zero")
        assert chardev.ring is not None
        raw = chardev.ring.read(size)
        if format == "base64":
            return base64.b64encode(raw).decode("ascii")
        return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    @qmp_command("query-chardev")
    def query_chardev(self) -> list[dict[str, Any]]:
        """qmp_query_chardev: every chardev with its filename and whether its
        frontend has it open."""
        return [{"label": c.id, "filename": c.filename,
                 "frontend-open": c.frontend is not None and c.frontend.frontend_open}
                for c in self.chardevs.devices.values()]

    @qmp_command("query-chardev-backends")
    def query_chardev_backends(self) -> list[dict[str, Any]]:
        return [{"name": name} for name in BACKEND_NAMES]
