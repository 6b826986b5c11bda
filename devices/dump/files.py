"""How the dump and display commands open the files they name.

Part of the pure `devices.dump` package: a Protocol for util/osdep.c qemu_open /
qemu_close, which the Machine's fd sets satisfy (`/dev/fdset/N` names a descriptor
passed with `add-fd`), and `PlainFiles`, the same without fd sets, for tests.
"""

from __future__ import annotations

import os
from typing import Protocol


class FileOpener(Protocol):
    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """A descriptor for `name`, or OSError with errno set."""

    def qemu_close(self, fd: int) -> None: ...


class PlainFiles:
    """qemu_open without fd sets: open(2) with O_CLOEXEC."""

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        return os.open(name, flags | os.O_CLOEXEC, mode)

    def qemu_close(self, fd: int) -> None:
        os.close(fd)


def strerror(err: OSError) -> str:
    """The text strerror(3) gives for the error's errno."""
    return os.strerror(err.errno or 0)
