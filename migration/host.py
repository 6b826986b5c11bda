"""What the migration model needs from the machine, and from the I/O edge.

Part of the pure `migration` layer. The model never imports `vmm` or trio. It sees
the Machine through `MigrationHost` (events, the run state and the cpus.c
primitives, the clock, behaviours, exit), which `vmm.machine.core.Machine`
satisfies structurally; and the real transport through `Edge` and `Channel`, which
`migration.transport` implements on trio; and the disks of a block migration
through `Disks` and `Disk`, which `blockdev.block_migration` implements on the block
layer's data path (`vmm.vm` wires it). Tests use `RecordingHost`, `RecordingEdge` and
`MemoryDisks`, plain in-memory fakes: the edge fake keeps what the model asked for
and lets a test play the other side (a connection made or refused, a destination
that answers).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from migration.uri import Uri


class RunStateLike(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def set(self, new: str) -> None: ...


class ClockLike(Protocol):
    def now(self) -> float: ...


class BehavioursLike(Protocol):
    def get(self, name: str) -> Any: ...


class OptionsLike(Protocol):
    @property
    def machine_type(self) -> str: ...

    @property
    def ram_bytes(self) -> int: ...


class MigrationHost(Protocol):
    """The Machine as the migration sees it."""

    @property
    def runstate(self) -> RunStateLike: ...

    @property
    def clock(self) -> ClockLike: ...

    @property
    def behaviours(self) -> BehavioursLike: ...

    @property
    def options(self) -> OptionsLike: ...

    autostart: bool
    exit_code: int | None

    def emit(self, name: str, data: dict[str, Any] | None = None) -> Any: ...

    def vm_stop(self, state: str) -> None: ...

    def vm_start(self) -> None: ...

    def vm_stop_force(self, state: str) -> None: ...

    def kick(self) -> None: ...

    def stdout(self, text: str) -> None:
        """The process's stdout (QEMU's printf outside a monitor)."""

    def stderr(self, text: str) -> None:
        """The process's stderr (QEMU's fprintf(stderr), without the program name)."""


class Channel(Protocol):
    """One open migration stream, as the model writes to it (outgoing) or answers
    on it (incoming)."""

    def write(self, data: bytes) -> None:
        """Queue bytes; the edge sends them in order."""

    def finish(self) -> None:
        """Outgoing: everything is queued; flush, then report the outcome through
        `OutgoingEnd.done`."""

    def answer(self, data: bytes) -> None:
        """Incoming: send the one-byte verdict to the source, then close."""

    def abort(self) -> None:
        """Shut the stream down now (cancel)."""


class OutgoingEnd(Protocol):
    """The model's side of an outgoing stream, called by the edge."""

    def connected(self, channel: Channel) -> None: ...

    def connect_failed(self, desc: str) -> None: ...

    def done(self, ok: bool) -> None: ...


class IncomingEnd(Protocol):
    """The model's side of an incoming stream, called by the edge."""

    def accepted(self, channel: Channel) -> None: ...

    def received(self, data: bytes) -> None: ...

    def closed(self) -> None: ...

    def listen_failed(self, desc: str) -> None: ...


class Disk(Protocol):
    """One block device as block migration sees it [migration/block.c]: the root
    node of a BlockBackend (or a monitor-owned node), reached through the block
    layer's data path. Failures raise OSError with the errno QEMU's call returns."""

    @property
    def name(self) -> str:
        """bdrv_get_device_name: the BlockBackend's name, "" for a node without one."""

    def length(self) -> int:
        """bdrv_nb_sectors in bytes."""

    def is_allocated(self, offset: int, length: int) -> tuple[bool, int]:
        """bdrv_is_allocated on this (top) node only: (allocated, bytes with the
        same answer)."""

    def pread(self, offset: int, length: int) -> bytes: ...

    # -- the source's dirty bitmap (bdrv_create_dirty_bitmap, anonymous) -----------

    def dirty_start(self, granularity: int) -> None: ...

    def dirty_get(self, offset: int) -> bool: ...

    def dirty_reset(self, offset: int, length: int) -> None: ...

    def dirty_count(self) -> int:
        """bdrv_get_dirty_count: dirty bytes."""

    def dirty_stop(self) -> None: ...

    def block_ops(self, reason: str) -> None:
        """bdrv_op_block_all: every operation on the node is refused with `reason`."""

    def unblock_ops(self) -> None: ...

    # -- the destination ---------------------------------------------------------

    def activate(self) -> None:
        """blk_invalidate_cache: the node (opened inactive for the incoming
        migration) is taken over now; a GenericError with the block layer's text
        when it cannot be."""

    def cluster_size(self) -> int:
        """bdrv_get_info's cluster size, 0 where the driver has none."""

    def pwrite(self, offset: int, data: bytes) -> None: ...

    def pwrite_zeroes(self, offset: int, length: int) -> None:
        """blk_pwrite_zeroes with BDRV_REQ_MAY_UNMAP."""


class Disks(Protocol):
    """The block layer as block migration sees it; `vmm.vm` wires
    `blockdev.block_migration`'s, which loads with the first block migration."""

    def migratable(self) -> Sequence[Disk]:
        """bdrv_first/bdrv_next, without the read-only nodes: the source's devices
        in QEMU's order."""

    def by_name(self, name: str) -> Disk | None:
        """blk_by_name on the destination."""


@attrs.define(kw_only=True, eq=False)
class MemoryDisk:
    """A Disk in memory (tests): `data` is the image, `allocated` the offsets of the
    4 KiB blocks its top layer holds."""

    name: str
    data: bytearray
    allocated: set[int] = attrs.Factory(set)
    read_only: bool = False
    dirty: set[int] | None = None
    granularity: int = 0
    blocked: str | None = None
    active: bool = False
    cluster: int = 65536
    zero_writes: list[tuple[int, int]] = attrs.Factory(list)

    def length(self) -> int:
        return len(self.data)

    def is_allocated(self, offset: int, length: int) -> tuple[bool, int]:
        first = offset in self.allocated or (offset // 4096 * 4096) in self.allocated
        end = min(offset + length, len(self.data))
        pos = offset // 4096 * 4096 + 4096
        while pos < end and ((pos in self.allocated) == first):
            pos += 4096
        return first, min(pos, end) - offset

    def pread(self, offset: int, length: int) -> bytes:
        if offset + length > len(self.data):
            raise OSError(5, "Input/output error")
        return bytes(self.data[offset:offset + length])

    def mark(self, offset: int, length: int) -> None:
        if self.dirty is not None:
            self.dirty.update(range(offset // self.granularity,
                                    (offset + length - 1) // self.granularity + 1))

    def write(self, offset: int, data: bytes) -> None:
        """A guest write: the data, its allocation, the dirty bitmap."""
        self.data[offset:offset + len(data)] = data
        self.allocated.update(range(offset // 4096 * 4096, offset + len(data), 4096))
        self.mark(offset, len(data))

    def dirty_start(self, granularity: int) -> None:
        self.dirty, self.granularity = set(), granularity

    def dirty_get(self, offset: int) -> bool:
        return self.dirty is not None and offset // self.granularity in self.dirty

    def dirty_reset(self, offset: int, length: int) -> None:
        if self.dirty is not None:
            self.dirty.difference_update(range(offset // self.granularity,
                                               (offset + length - 1) // self.granularity + 1))

    def dirty_count(self) -> int:
        return len(self.dirty or ()) * self.granularity

    def dirty_stop(self) -> None:
        self.dirty = None

    def block_ops(self, reason: str) -> None:
        self.blocked = reason

    def unblock_ops(self) -> None:
        self.blocked = None

    def activate(self) -> None:
        self.active = True

    def cluster_size(self) -> int:
        return self.cluster

    def pwrite(self, offset: int, data: bytes) -> None:
        if offset + len(data) > len(self.data):
            raise OSError(5, "Input/output error")
        self.data[offset:offset + len(data)] = data

    def pwrite_zeroes(self, offset: int, length: int) -> None:
        self.pwrite(offset, bytes(length))
        self.zero_writes.append((offset, length))


@attrs.define(kw_only=True)
class MemoryDisks:
    """Disks in memory (tests)."""

    disks: list[MemoryDisk] = attrs.Factory(list)

    def migratable(self) -> Sequence[Disk]:
        return [d for d in self.disks if not d.read_only]

    def by_name(self, name: str) -> Disk | None:
        for d in self.disks:
            if d.name == name:
                return d
        return None


class FileAccess(Protocol):
    """Whole files (xen-save-devices-state, xen-load-devices-state); a GenericError
    with QEMU's text when a file cannot be opened."""

    def write(self, path: str, data: bytes) -> None: ...

    def read(self, path: str) -> bytes: ...


@attrs.define(kw_only=True)
class MemoryFiles:
    """FileAccess in a dict (tests)."""

    files: dict[str, bytes] = attrs.Factory(dict)

    def write(self, path: str, data: bytes) -> None:
        self.files[path] = data

    def read(self, path: str) -> bytes:
        if path not in self.files:
            from schema.errors import GenericError

            raise GenericError(f"Unable to open {path}: No such file or directory")
        return self.files[path]


class Edge(Protocol):
    """The real transport. `connect` and `listen` may raise a GenericError at once
    (a spawn or bind failure, QEMU's synchronous errors); everything later arrives
    through the end's methods."""

    def connect(self, uri: Uri, fd: int | None, end: OutgoingEnd) -> None: ...

    def listen(self, uri: Uri, end: IncomingEnd) -> None: ...


@attrs.define(kw_only=True)
class FakeRunState:
    state: str = "running"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def set(self, new: str) -> None:
        self.state = new


@attrs.define(kw_only=True)
class FakeClock:
    value: float = 0.0

    def now(self) -> float:
        return self.value


@attrs.define(kw_only=True)
class FakeOptions:
    machine_type: str = "pc-i440fx-2.11"
    ram_bytes: int = 128 * 1024 * 1024


@attrs.define(kw_only=True)
class FakeBehaviours:
    values: dict[str, Any] = attrs.Factory(dict)

    def get(self, name: str) -> Any:
        return self.values[name]


@attrs.define(kw_only=True)
class RecordingHost:
    """A plain host: the run state is a string, events and stops are recorded."""

    runstate: FakeRunState = attrs.Factory(FakeRunState)
    clock: FakeClock = attrs.Factory(FakeClock)
    behaviours: FakeBehaviours = attrs.Factory(FakeBehaviours)
    options: FakeOptions = attrs.Factory(FakeOptions)
    autostart: bool = True
    exit_code: int | None = None
    events: list[tuple[str, dict[str, Any] | None]] = attrs.Factory(list)
    rng: random.Random = attrs.Factory(random.Random)
    printed: list[str] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)

    def stdout(self, text: str) -> None:
        self.printed.append(text)

    def stderr(self, text: str) -> None:
        self.errors.append(text)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((name, data))

    def vm_stop(self, state: str) -> None:
        if self.runstate.running:
            self.runstate.set(state)
            self.events.append(("STOP", None))

    def vm_start(self) -> None:
        if not self.runstate.running:
            self.runstate.set("running")
            self.events.append(("RESUME", None))

    def vm_stop_force(self, state: str) -> None:
        if self.runstate.running:
            self.vm_stop(state)
        else:
            self.runstate.set(state)

    def kick(self) -> None:
        pass


@attrs.define(kw_only=True)
class RecordingChannel:
    written: bytearray = attrs.Factory(bytearray)
    finished: bool = False
    aborted: bool = False
    answers: bytearray = attrs.Factory(bytearray)

    def write(self, data: bytes) -> None:
        self.written += data

    def finish(self) -> None:
        self.finished = True

    def answer(self, data: bytes) -> None:
        self.answers += data

    def abort(self) -> None:
        self.aborted = True


@attrs.define(kw_only=True)
class RecordingEdge:
    """Keeps each connect/listen request; a test completes them by hand."""

    outgoing: list[tuple[Uri, int | None, OutgoingEnd]] = attrs.Factory(list)
    incoming: list[tuple[Uri, IncomingEnd]] = attrs.Factory(list)
    on_connect: Callable[[Uri], None] | None = None

    def connect(self, uri: Uri, fd: int | None, end: OutgoingEnd) -> None:
        self.outgoing.append((uri, fd, end))
        if self.on_connect is not None:
            self.on_connect(uri)

    def listen(self, uri: Uri, end: IncomingEnd) -> None:
        self.incoming.append((uri, end))
