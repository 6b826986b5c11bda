"""The 2.11 format drivers the emulator recognises but does not read: bochs, cloop,
dmg and parallels. Their probes are reproduced, so that probing picks the same
driver QEMU would (a `.dmg` file name alone wins over raw, for instance); opening
one then fails the way a QEMU built without that driver in its whitelist fails
[block.c bdrv_open_common]: `Driver '<name>' is not whitelisted`.
"""

from __future__ import annotations

import struct

from blockdev.image.formats.base import ImageError


def _cstr_eq(field: bytes, text: bytes) -> bool:
    """strcmp on a fixed-size char array."""
    nul = field.find(b"\0")
    return nul >= 0 and field[:nul] == text


def probe_bochs(buf: bytes, filename: str) -> int:
    if len(buf) < 512:
        return 0
    version = struct.unpack_from("<I", buf, 64)[0]
    if (
        _cstr_eq(buf[0:32], b"Bochs Virtual HD Image")
        and _cstr_eq(buf[32:48], b"Redolog")
        and _cstr_eq(buf[48:64], b"Growing")
        and version in (0x00020000, 0x00010000)
    ):
        return 100
    return 0


_CLOOP_MAGIC = (
    b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
)


def probe_cloop(buf: bytes, filename: str) -> int:
    length = min(len(_CLOOP_MAGIC), len(buf))
    return 2 if buf[:length] == _CLOOP_MAGIC[:length] else 0


def probe_dmg(buf: bytes, filename: str) -> int:
    return 2 if len(filename) > 4 and filename.endswith(".dmg") else 0


def probe_parallels(buf: bytes, filename: str) -> int:
    if len(buf) < 64:
        return 0
    magic = buf[:16]
    version = struct.unpack_from("<I", buf, 16)[0]
    if magic in (b"WithoutFreeSpace", b"WithouFreSpacExt") and version == 2:
        return 100
    return 0


def refuse(name: str) -> ImageError:
    return ImageError(f"Driver '{name}' is not whitelisted")
