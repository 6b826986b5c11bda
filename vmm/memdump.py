"""QMP's dumps of guest memory to a file: memsave (virtual) and pmemsave (physical).

An edge module of the `vmm` layer: it writes the file the command names (and no
other; fopen, so no `/dev/fdset/N` forms), reading the guest's physical address
space (`devices.address_space`) as cpus.c qmp_pmemsave does with
cpu_physical_memory_read. `memsave` goes through a vCPU (cpu_memory_rw_debug): every
vCPU is as reset left it, with paging off, so a virtual address is the physical one
(x86_cpu_get_phys_page_attrs_debug: `addr & a20_mask`, the A20 gate open) and no page
is unmapped. HMP's `memsave` and `pmemsave` call these.
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

    def __init__(self, memory: Callable[[], AddressSpaces], nr_cpus: int = 1) -> None:
        self.memory = memory  # built on first use (vmm.vm.GuestMemory)
        self.nr_cpus = nr_cpus

    @qmp_command("memsave")
    def memsave(self, val: int, size: int, filename: str, cpu_index: int | None = None) -> None:
        """cpus.c qmp_memsave: the vCPU (default 0) first, then the file."""
        index = 0 if cpu_index is None else cpu_index
        if not 0 <= index < self.nr_cpus:  # qemu_get_cpu
            raise GenericError("Parameter 'cpu-index' expects a CPU number")
        self.pmemsave(val, size, filename)

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
