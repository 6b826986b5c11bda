"""A guest memory dump in progress, driven by the Machine's time.

Pure model of `devices.dump` [dump.c dump_state_prepare, dump_process, dump_thread,
dump_cleanup, qmp_query_dump, dump_in_progress]. A dump writes the ELF core's head
(`devices.dump.elf`) and then the guest's memory, block after block; `written_size`
counts the memory written, `total_size` what there is to write. A synchronous dump
runs to its end inside the command; a detached one (QEMU's dump thread) writes a
chunk of `CHUNK` bytes each time its deadline comes (`next_deadline()` /
`run_due(now)`), at `RATE` bytes per second of the Machine's clock, so that
`query-dump` sees it `active` with a growing `completed`. The pieces come from the
format's layout (`devices.dump.elf.elf_chunks`, `devices.dump.kdump.kdump_chunks`) and
go to a `Sink`, the file the command opened.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import attrs

from schema.handlers import SubsystemHooks

CHUNK = 16 << 20  # bytes a detached dump writes per step
RATE = 1 << 30    # bytes per second of the Machine's clock

class Sink(Protocol):
    def write(self, data: bytes) -> None:
        """Write all of `data`; OSError on failure."""

    def close(self) -> None: ...


# One piece of a dump's file: the bytes, how much guest memory they account for
# (written_size), and QEMU's message should writing them fail.
Chunk = tuple[bytes, int, str]


@attrs.define(kw_only=True)
class DumpJob:
    """One dump: the pieces of its file, and where they go."""

    chunks: Iterator[Chunk]
    sink: Sink
    written: int = 0
    done: bool = False

    def step(self, budget: float) -> None:
        """Write pieces until `budget` bytes of memory are accounted for, or the end."""
        while budget > 0 and not self.done:
            piece = next(self.chunks, None)
            if piece is None:
                self.done = True
                return
            data, counted, failure = piece
            try:
                self.sink.write(data)
            except OSError:
                raise DumpError(failure) from None
            self.written += counted
            budget -= counted
        if not self.done:
            # A dump ends when nothing is left: look ahead so the last step finishes.
            piece = next(self.chunks, None)
            if piece is None:
                self.done = True
            else:
                self.chunks = itertools.chain((piece,), self.chunks)


class DumpError(Exception):
    """A dump failed; the message is QEMU's."""


@attrs.define(kw_only=True)
class DumpState(SubsystemHooks):
    """dump.c dump_state_global: the last dump's status and progress."""

    status: str = "none"  # DumpStatus: none, active, completed, failed
    completed: int = 0
    total: int = 0
    job: DumpJob | None = None
    next_at: float = math.inf
    # What happens when a dump ends: (error or None) -> None; set by the commands.
    on_end: Callable[[str | None], None] = lambda error: None

    def query(self) -> dict[str, object]:
        """qmp_query_dump."""
        return {"status": self.status, "completed": self.completed, "total": self.total}

    def in_progress(self) -> bool:
        """dump_in_progress."""
        return self.status == "active"

    def prepare(self, total: int) -> None:
        """dump_state_prepare + dump_init's total."""
        self.status = "active"
        self.completed = 0
        self.total = total

    def run_sync(self, job: DumpJob) -> str | None:
        """dump_process in the monitor: all at once; the error message, if any."""
        self.job = job
        try:
            job.step(math.inf)
        except DumpError as err:
            return self._finish(str(err))
        return self._finish(None)

    def detach(self, job: DumpJob, now: float) -> None:
        """The dump thread: a step now-ish, then one per CHUNK at RATE."""
        self.job = job
        self.next_at = now

    def _finish(self, error: str | None) -> str | None:
        job = self.job
        assert job is not None
        self.completed = job.written
        self.status = "failed" if error is not None else "completed"
        self.job = None
        self.next_at = math.inf
        job.sink.close()
        self.on_end(error)
        return error

    # -- the Machine's hooks ---------------------------------------------------------

    def next_deadline(self) -> float:
        return self.next_at

    def run_due(self, now: float) -> None:
        job = self.job
        if job is None or now < self.next_at:
            return
        try:
            job.step(CHUNK)
        except DumpError as err:
            self._finish(str(err))
            return
        self.completed = job.written
        if job.done:
            self._finish(None)
        else:
            self.next_at = now + CHUNK / RATE

    def close(self) -> None:
        if self.job is not None:
            self.job.sink.close()
            self.job = None

