"""screendump's file: a binary PPM of the console [ui/console.c ppm_save].

Pure encoder plus the one write QEMU does, with its messages. Neighbours: the console
(`devices.display.console`) and the handler (`devices.display.commands`).
"""

from __future__ import annotations

import os

from devices.display.console import Console
from devices.dump.files import strerror
from schema.errors import GenericError
from schema.osdep import PLAIN_OPENER, Opener


def ppm_header(width: int, height: int) -> bytes:
    """ppm_save's header: `P6`, the size, the maximum value 255."""
    return f"P6\n{width} {height}\n255\n".encode()


def ppm_bytes(console: Console) -> bytes:
    return ppm_header(console.width, console.height) + console.rgb()


def save_ppm(filename: str, console: Console, files: Opener | None = None) -> None:
    """ppm_save: the file opened with qemu_open (so `/dev/fdset/N` too), created or
    truncated with mode 0666; a failed write removes it."""
    files = PLAIN_OPENER if files is None else files
    try:
        fd = files.qemu_open(filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except OSError as err:
        raise GenericError(f"failed to open file '{filename}': {strerror(err)}") from None
    try:
        data = memoryview(ppm_bytes(console))
        while data:
            data = data[os.write(fd, data):]
    except OSError as err:
        files.qemu_close(fd)
        try:
            os.unlink(filename)
        except OSError:
            pass
        raise GenericError(f"failed to write to file '{filename}': {strerror(err)}") from None
    files.qemu_close(fd)
