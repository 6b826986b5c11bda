"""util/osdep.c qemu_open and qemu_close, as the parts that open files see them.

`schema` layer: the one declaration of QEMU's file-open utility, used by the block
layer (image files) and the devices (dumps, screendumps). A name of the form
`/dev/fdset/N` is a descriptor of a monitor fd set, which only the Machine has
(`vmm.machine.fds.FdSets` satisfies `Opener`); `PLAIN_OPENER` is open(2) without fd
sets, for tools and tests.
"""

from __future__ import annotations

import os
from typing import Protocol


class Opener(Protocol):
    """qemu_open/qemu_close: `qemu_open` raises OSError with errno set."""

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int: ...

    def qemu_close(self, fd: int) -> None: ...


class PlainOpener:
    """qemu_open without fd sets: open(2) with O_CLOEXEC."""

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        return os.open(name, flags | os.O_CLOEXEC, mode)

    def qemu_close(self, fd: int) -> None:
        os.close(fd)


PLAIN_OPENER = PlainOpener()
