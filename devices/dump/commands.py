"""QMP's guest dump commands: dump-guest-memory, query-dump, query-dump-guest-memory-capability.

Handlers of `devices.dump` [dump.c qmp_dump_guest_memory, dump_init, dump_process,
dump_cleanup, qmp_query_dump, qmp_query_dump_guest_memory_capability]. The checks
run in QEMU's order with its texts (`devices.md` §10.2); the file is `file:PATH`
(qemu_open, so `/dev/fdset/N` too) or `fd:NAME` (a descriptor passed with getfd). A
running VM stops (STOP, run state save-vm) for the dump and runs again at its end
(RESUME), after DUMP_COMPLETED. The layouts are `devices.dump.elf` and
`devices.dump.kdump` (kdump-zlib), the progress `devices.dump.job`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from devices.dump.files import strerror
from schema.errors import GenericError
from schema.handlers import qmp_command
from schema.osdep import Opener

if TYPE_CHECKING:
    from devices.dump.job import DumpState

# The formats of the catalogue's build: zlib is always there; lzo and snappy were
# not compiled in (CONFIG_LZO, CONFIG_SNAPPY).
FORMATS = ("elf", "kdump-zlib")
IN_PROCESS = "There is a dump in process, please wait."


class RunStateLike(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def running(self) -> bool: ...


class DumpHost(Protocol):
    """The Machine as the dump commands see it."""

    @property
    def runstate(self) -> RunStateLike: ...

    def vm_stop(self, state: str) -> None: ...

    def vm_start(self) -> None: ...

    def emit(self, name: str, data: dict[str, Any] | None = None) -> object: ...

    def now(self) -> float: ...

    def kick(self) -> None: ...


class FdSink:
    """The dump's file: a descriptor written in full, closed through qemu_close."""

    def __init__(self, fd: int, close: Callable[[int], None]) -> None:
        self.fd = fd
        self._close = close

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        if self.fd >= 0:
            self._close(self.fd)
            self.fd = -1


class DumpCommands:
    """The dump commands of one machine."""

    def __init__(self, host: DumpHost, files: Opener, memory: Callable[[], Any],
                 blocks: Callable[[], list[Any]], nr_cpus: int,
                 plug: Callable[[Any], None]) -> None:
        self.host = host
        self._state: DumpState | None = None  # dump.c dump_state_global, on first use
        self.plug = plug  # the state joins the Machine's hooks (its deadlines)
        self.files = files
        self.memory = memory  # () -> the address spaces (built on first use)
        self.blocks = blocks  # () -> the guest's GuestBlocks
        self.nr_cpus = nr_cpus
        # monitor.c monitor_get_fd(cur_mon, ...): set by the composition root.
        self.get_fd: Callable[[str], int] = _no_fd
        self.resume = False

    @property
    def state(self) -> DumpState:
        if self._state is None:
            from devices.dump.job import DumpState

            self._state = DumpState(on_end=self._ended)
            self.plug(self._state)
        return self._state

    def in_progress(self) -> bool:
        """dump_in_progress (qmp_stop and qmp_cont ask)."""
        return self._state is not None and self._state.in_progress()

    @qmp_command("query-dump")
    def query_dump(self) -> dict[str, Any]:
        return self.state.query()

    @qmp_command("query-dump-guest-memory-capability")
    def query_dump_guest_memory_capability(self) -> dict[str, Any]:
        return {"formats": list(FORMATS)}

    @qmp_command("dump-guest-memory")
    def dump_guest_memory(self, paging: bool, protocol: str, detach: bool | None = None,
                          begin: int | None = None, length: int | None = None,
                          format: str | None = None) -> None:
        """qmp_dump_guest_memory."""
        from devices.dump.elf import ElfCore, Filter, elf_chunks, total_size
        from devices.dump.job import DumpJob

        if self.host.runstate.state == "inmigrate":
            raise GenericError("Dump not allowed during incoming migration.")
        if self.state.in_progress():
            raise GenericError(IN_PROCESS)
        kdump = format is not None and format != "elf"
        if kdump and (paging or begin is not None or length is not None):
            raise GenericError("kdump-compressed format doesn't support paging or filter")
        if begin is not None and length is None:
            raise GenericError("Parameter 'length' is missing")
        if begin is None and length is not None:
            raise GenericError("Parameter 'begin' is missing")
        if format in ("kdump-lzo", "kdump-snappy"):
            raise GenericError(f"{format} is not available now")
        fd = -1
        if protocol.startswith("fd:"):
            fd = self.get_fd(protocol[3:])
        if protocol.startswith("file:"):
            path = protocol[5:]
            try:
                fd = self.files.qemu_open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
            except OSError as err:
                raise GenericError(f"Could not open '{path}': {strerror(err)}") from None
        if fd == -1:
            raise GenericError("Invalid parameter 'protocol'")
        # dump_init
        state = self.state
        state.prepare(0)
        sink = FdSink(fd, self.files.qemu_close)
        self.resume = self.host.runstate.running
        if self.resume:
            self.host.vm_stop("save-vm")
        blocks = self.blocks()
        flt = Filter(begin, length) if begin is not None and length is not None else None
        state.total = total_size(blocks, flt)
        # (get_start_block's "Invalid parameter 'begin'" cannot follow: a range that
        # meets no block has nothing to dump.)
        error = "dump: no guest memory to dump" if not state.total else None
        if error is not None:
            state.status = "failed"
            sink.close()
            self._cleanup()
            raise GenericError(error)
        spaces = self.memory()
        if kdump:
            from devices.dump.kdump import kdump_chunks

            chunks = kdump_chunks(blocks, spaces.read, nr_cpus=self.nr_cpus)
        else:
            core = ElfCore.plan(blocks, nr_cpus=self.nr_cpus, paging=paging, flt=flt)
            chunks = elf_chunks(core, spaces.read)
        job = DumpJob(chunks=chunks, sink=sink)
        if detach:
            state.detach(job, self.host.now())
            self.host.kick()
            return
        error = state.run_sync(job)
        if error is not None:
            raise GenericError(error)

    def _ended(self, error: str | None) -> None:
        """dump_process's end: DUMP_COMPLETED (always), then dump_cleanup."""
        data: dict[str, Any] = {"result": self.state.query()}
        if error is not None:
            data["error"] = error
        self.host.emit("DUMP_COMPLETED", data)
        self._cleanup()

    def _cleanup(self) -> None:
        """dump_cleanup: a VM the dump stopped runs again."""
        if self.resume:
            self.resume = False
            self.host.vm_start()


def _no_fd(fdname: str) -> int:
    raise GenericError(f"File descriptor named '{fdname}' has not been found")
