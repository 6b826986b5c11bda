"""QMP's dump of guest-physical memory to a file: pmemsave.

An edge module of the `vmm` layer: it writes the file the command names (and no
other), reading the guest's physical address space (`devices.address_space`) as
cpus.c qmp_pmemsave does with cpu_physical_memory_read. HMP's `pmemsave` calls it.
(`memsave` reads through the CPU's page tables, which are not modelled, so it has no
handler: it answers "not implemented".)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from schema.errors import GenericError
from schema.handlers import qmp_command

if TYPE_CHECKING:
    from devices.address_space import AddressSpaces

QERR_IO_ERROR = "An IO error has occurred"
_CHUNK = 1 << 20


class MemoryDumpCommands:
    """The guest memory dump command of one machine."""

    def __init__(self, memory: Callable[[], AddressSpaces]) -> None:
        self.memory = memory  # built on first use (vmm.vm.GuestMemory)

    @qmp_command("pmemsave")
    def pmemsave(self, val: int, size: int, filename: str) -> None:
        """cpus.c qmp_pmemsave: `size` bytes from guest-physical `val` (unassigned
        memory reads as zeros), the file created or truncated."""
        try:
            out = open(filename, "wb")
        except OSError as err:
            raise GenericError(f"Could not open '{filename}': "
                               f"{os.strerror(err.errno or 0)}") from None
        with out:
            addr = val
            while size > 0:
                n = min(_CHUNK, size)
                try:
                    out.write(self.memory().read(addr, n))
                except OSError:
                    raise GenericError(QERR_IO_ERROR) from None
                addr += n
                size -= n
