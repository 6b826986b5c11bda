"""Block jobs: the common job model of QEMU 2.11 (blockjob.c), driven by deadlines.

Pure model of the `blockdev` layer. A job is a `BlockJob` subclass (one per kind:
`blockdev.jobs.stream`, `.commit`, `.mirror`, `.backup`) whose `run()` is a
generator: QEMU's job coroutine. It moves its data synchronously through the data
path (`blockdev.io`) and gives the Machine's time back with the generator helpers
below, which are blockjob.c's:

    yield from job.sleep_ns(ns)    block_job_sleep_ns: a timer, then a pause point
    yield from job.yield_()        block_job_yield: wait for block_job_enter
    yield from job.pause_point()   block_job_pause_point
    yield from job.io(ns)          the time a request is in flight (busy stays true,
                                   block_job_enter does not interrupt it)

`Jobs` is the machine's registry (`block_jobs`, newest first) and scheduler: every
sleeping job is one entry of one deadline heap (`next_deadline()` / `run_due(now)`),
so a thousand jobs cost a heap, not a thousand tasks. When the coroutine ends, its
last act is `defer_to_main_loop(fn)` (block_job_defer_to_main_loop): `fn` runs as a
bottom half, after the command that woke the job has been answered, and calls
`completed(ret)`, which sends the job's last event.

The time of a request with no rate limit is the simulated disk's: `io_delay_ns(n)`
at the `block-job-bandwidth` setting (`blockdev.host.JOB_BANDWIDTH`) (bytes per second of the Machine's clock).
"""

from __future__ import annotations

import errno as errno_mod
import heapq
import itertools
import math
import os
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from blockdev.graph import PERM_ALL, Child, Node, Reason
from blockdev.host import JOB_BANDWIDTH
from blockdev.names import id_wellformed
from schema.errors import QERR_DEVICE_IN_USE, DeviceNotActive, GenericError
from schema.handlers import SubsystemHooks

if TYPE_CHECKING:
    from blockdev.graph import Backend
    from blockdev.layer import BlockLayer

SLICE_TIME = 100_000_000  # ns: the rate limit's slice of every 2.11 job
NS = 1_000_000_000

# A generator of the job coroutine: it yields only to give up the CPU.
Co = Generator[None, None, None]


@attrs.define(kw_only=True)
class RateLimit:
    """include/qemu/ratelimit.h: a quota of units per slice; what exceeds it moves
    the end of the slice, which is the delay of the next request."""

    slice_start: int = 0
    slice_end: int = 0
    slice_quota: int = 0
    slice_ns: int = 0
    dispatched: int = 0

    def set_speed(self, speed: int, slice_ns: int = SLICE_TIME) -> None:
        """ratelimit_set_speed."""
        self.slice_ns = slice_ns
        self.slice_quota = max(int(speed * slice_ns / NS), 1)

    def calculate_delay(self, n: int, now_ns: int) -> int:
        """ratelimit_calculate_delay: ns to wait before the next request."""
        if self.slice_end < now_ns:
            self.slice_start = now_ns
            self.slice_end = now_ns + self.slice_ns
            self.dispatched = 0
        self.dispatched += n
        if self.dispatched < self.slice_quota:
            return 0
        delay_slices = (self.dispatched + self.slice_quota - 1) // self.slice_quota
        self.slice_end = self.slice_start + delay_slices * self.slice_ns
        return self.slice_end - now_ns


def error_action(on_err: str, error: int) -> str:
    """block_job_error_action's table (block.md §4.3)."""
    if on_err in ("enospc", "auto"):
        return "stop" if error == errno_mod.ENOSPC else "report"
    if on_err == "stop":
        return "stop"
    if on_err == "ignore":
        return "ignore"
    return "report"


def strerror(ret: int) -> str:
    """strerror(-ret), the text of BLOCK_JOB_COMPLETED's `error`."""
    return os.strerror(-ret)


@attrs.define(kw_only=True, eq=False)
class JobTxn:
    """BlockJobTxn: jobs whose completion is grouped (a `grouped` transaction).
    `jobs` is newest first, as QLIST_INSERT_HEAD keeps it."""

    jobs: list[BlockJob] = attrs.Factory(list)
    aborting: bool = False

    def add(self, job: BlockJob) -> None:
        """block_job_txn_add_job."""
        assert job.txn is None
        job.txn = self
        self.jobs.insert(0, job)


@attrs.define(kw_only=True, eq=False)
class BlockJob:
    """BlockJob: what every kind shares. A kind sets `job_type`, writes `run()`, and
    overrides the driver callbacks it has (BlockJobDriver)."""

    job_type: ClassVar[str] = ""
    can_complete: ClassVar[bool] = False  # has driver->complete
    stay_at_node: ClassVar[bool] = True   # child_job: bdrv_replace_node leaves it

    registry: Jobs
    id: str | None = None
    blk: Backend | None = None
    nodes: list[Child] = attrs.Factory(list)
    blocker: Reason | None = None
    main_bs: Node | None = None  # the node whose bs->job this is
    len: int = 0
    offset: int = 0
    speed: int = 0
    busy: bool = False
    paused: bool = True
    pause_count: int = 1
    user_paused: bool = False
    cancelled: bool = False
    completed: bool = False
    ready: bool = False
    ret: int = 0
    iostatus: str = "ok"
    deferred: bool = False
    txn: JobTxn | None = None
    refcnt: int = 1
    limit: RateLimit = attrs.Factory(RateLimit)
    # The completion callback (job->cb): called with ret before the events.
    cb: Callable[[int], None] | None = None
    # scheduler state
    co: Co | None = None
    waiting_io: bool = False
    wake_at: float = math.inf
    token: int = 0

    # -- BlockJobDriver: a kind overrides these ----------------------------------------

    def run(self) -> Co:
        """driver->start: the job's coroutine. Its last act is `defer_to_main_loop`."""
        raise NotImplementedError
        yield

    def set_speed(self, speed: int) -> None:
        """driver->set_speed (every 2.11 job kind has one)."""
        if speed < 0:
            raise GenericError("Invalid parameter 'speed'")
        self.limit.set_speed(speed, SLICE_TIME)

    def complete(self) -> None:
        """driver->complete (mirror, active commit)."""

    def commit(self) -> None:
        """driver->commit: the job succeeded."""

    def abort(self) -> None:
        """driver->abort: the job failed or was cancelled."""

    def clean(self) -> None:
        """driver->clean: after either."""

    def driver_pause(self) -> None:
        """driver->pause."""

    def driver_resume(self) -> None:
        """driver->resume."""

    def drain(self) -> None:
        """driver->drain (backup: the target's requests)."""

    # -- what QMP shows ---------------------------------------------------------------

    @property
    def layer(self) -> BlockLayer:
        return self.registry.layer

    @property
    def bs(self) -> Node:
        """blk_bs(job->blk): the job's main node."""
        assert self.blk is not None and self.blk.bs is not None
        return self.blk.bs

    def started(self) -> bool:
        return self.co is not None

    def is_internal(self) -> bool:
        return self.id is None

    def parent_desc(self) -> str:
        """child_job_get_parent_desc."""
        return f"{self.job_type} job '{self.id}'"

    def info(self) -> dict[str, Any]:
        """block_job_query: BlockJobInfo."""
        if self.is_internal():
            raise GenericError("Cannot query QEMU internal jobs")
        return {"type": self.job_type, "device": self.id, "len": self.len,
                "offset": self.offset, "busy": self.busy, "paused": self.pause_count > 0,
                "speed": self.speed, "io-status": self.iostatus, "ready": self.ready}

    # -- the coroutine's helpers (generators) ------------------------------------------

    def now_ns(self) -> int:
        return self.registry.now_ns()

    def should_pause(self) -> bool:
        return self.pause_count > 0

    def _do_yield(self, deadline_ns: int | None) -> Co:
        """block_job_do_yield: not busy until entered (by the timer or anyone)."""
        self.registry.park(self, deadline_ns)
        self.busy = False
        yield
        assert self.busy

    def pause_point(self) -> Co:
        """block_job_pause_point."""
        if not self.should_pause() or self.cancelled:
            return
        self.driver_pause()
        if self.should_pause() and not self.cancelled:
            self.paused = True
            yield from self._do_yield(None)
            self.paused = False
        self.driver_resume()

    def sleep_ns(self, ns: int) -> Co:
        """block_job_sleep_ns."""
        assert self.busy
        if self.cancelled:
            return
        if not self.should_pause():
            yield from self._do_yield(self.now_ns() + ns)
        yield from self.pause_point()

    def yield_(self) -> Co:
        """block_job_yield."""
        assert self.busy
        if self.cancelled:
            return
        if not self.should_pause():
            yield from self._do_yield(None)
        yield from self.pause_point()

    def io(self, ns: int) -> Co:
        """A request in flight for `ns`: the coroutine waits, still busy; nobody can
        enter it (aio completion does). A drain completes it at once."""
        if ns <= 0:
            return
        self.waiting_io = True
        self.registry.park(self, self.now_ns() + ns)
        yield
        self.waiting_io = False

    def io_delay_ns(self, nbytes: int) -> int:
        """The simulated disk's time for `nbytes`."""
        return self.registry.io_delay_ns(nbytes)

    def rate_delay_ns(self, nbytes: int) -> int:
        """The rate limit's delay after `nbytes` (0 without a speed)."""
        if not self.speed:
            return 0
        return self.limit.calculate_delay(nbytes, self.now_ns())

    # -- errors and events ----------------------------------------------------------

    def error_action(self, on_err: str, is_read: bool, error: int) -> str:
        """block_job_error_action: BLOCK_JOB_ERROR for every action; `stop` pauses the
        job as a user pause and sets its io-status."""
        action = error_action(on_err, error)
        if not self.is_internal():
            self.registry.emit("BLOCK_JOB_ERROR", {
                "device": self.id, "operation": "read" if is_read else "write",
                "action": action})
        if action == "stop":
            self.registry.user_pause(self)
            if self.iostatus == "ok":
                self.iostatus = "nospace" if error == errno_mod.ENOSPC else "failed"
        return action

    def event_ready(self) -> None:
        """block_job_event_ready."""
        self.ready = True
        if self.is_internal():
            return
        self.registry.emit("BLOCK_JOB_READY", self._event_data())

    def _event_data(self) -> dict[str, Any]:
        return {"type": self.job_type, "device": self.id, "len": self.len,
                "offset": self.offset, "speed": self.speed}

    def defer_to_main_loop(self, fn: Callable[[], None]) -> None:
        """block_job_defer_to_main_loop."""
        self.deferred = True
        self.registry.bh(fn)


@attrs.define(kw_only=True, eq=False)
class Jobs(SubsystemHooks):
    """block_jobs, and the one deadline queue their timers share."""

    layer: BlockLayer
    jobs: list[BlockJob] = attrs.Factory(list)  # newest first
    _heap: list[tuple[float, int, int, BlockJob]] = attrs.Factory(list)
    _seq: Iterator[int] = attrs.Factory(itertools.count)
    _bhs: deque[Callable[[], None]] = attrs.Factory(deque)

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.layer.host.clock.now()

    def now_ns(self) -> int:
        return round(self.now() * NS)

    def io_delay_ns(self, nbytes: int) -> int:
        try:
            rate = int(self.layer.host.behaviours.get(JOB_BANDWIDTH.name))
        except KeyError:
            rate = int(JOB_BANDWIDTH.os)
        return nbytes * NS // rate

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.layer.host.emit(name, data)

    def park(self, job: BlockJob, deadline_ns: int | None) -> None:
        """The job waits: until `deadline_ns` (a timer), or until entered."""
        job.token += 1
        if deadline_ns is None:
            job.wake_at = math.inf
            return
        job.wake_at = deadline_ns / NS
        heapq.heappush(self._heap, (job.wake_at, next(self._seq), job.token, job))
        self.layer.host.kick()

    def bh(self, fn: Callable[[], None]) -> None:
        """aio_bh_schedule_oneshot in the main context: runs at the next run_due."""
        self._bhs.append(fn)
        self.layer.host.kick()

    # -- lookups ------------------------------------------------------------------------

    def get(self, job_id: str) -> BlockJob | None:
        """block_job_get."""
        for job in self.jobs:
            if job.id is not None and job.id == job_id:
                return job
        return None

    def find(self, job_id: str) -> BlockJob:
        """blockdev.c find_block_job."""
        job = self.get(job_id)
        if job is None:
            raise DeviceNotActive(f"Block job '{job_id}' not found")
        return job

    def query(self) -> list[dict[str, Any]]:
        """qmp_query_block_jobs."""
        return [job.info() for job in self.jobs if not job.is_internal()]

    # -- life -----------------------------------------------------------------------

    def create(self, job: BlockJob, job_id: str | None, bs: Node, perm: int, shared: int,
               speed: int, *, internal: bool = False,
               cb: Callable[[int], None] | None = None) -> BlockJob:
        """block_job_create: checks, the job's BlockBackend, its main node, and the
        speed. On error nothing is left."""
        if bs.job is not None:
            raise GenericError(QERR_DEVICE_IN_USE % bs.device_name())
        if job_id is None and not internal:
            job_id = bs.device_name()
            if not job_id:
                raise GenericError("An explicit job ID is required for this node")
        if job_id is not None:
            if internal:
                raise GenericError("Cannot specify job ID for internal block job")
            if not id_wellformed(job_id):
                raise GenericError(f"Invalid job ID '{job_id}'")
            if self.get(job_id) is not None:
                raise GenericError(f"Job ID '{job_id}' already in use")
        layer = self.layer
        blk = layer.blk_new_with_bs(bs, perm, shared)
        job.id = job_id
        job.blk = blk
        job.cb = cb
        job.busy = False
        job.paused = True
        job.pause_count = 1
        job.refcnt = 1
        job.blocker = Reason(f"block device is in use by block job: {job.job_type}")
        self.add_bdrv(job, "main node", bs, 0, PERM_ALL)
        bs.job = job
        job.main_bs = bs
        bs.op_unblock("dataplane", job.blocker)
        self.jobs.insert(0, job)
        if speed != 0:
            try:
                self.set_speed(job, speed)
            except GenericError:
                self.unref(job)
                raise
        return job

    def add_bdrv(self, job: BlockJob, name: str, bs: Node, perm: int, shared: int) -> None:
        """block_job_add_bdrv: an edge from the job (child_job), a reference, and the
        job's blocker on every operation of the node."""
        child = self.layer.root_attach_child(bs, name, "job", perm, shared, job)
        job.nodes.insert(0, child)
        bs.refcnt += 1
        assert job.blocker is not None
        bs.op_block_all(job.blocker)

    def remove_all_bdrv(self, job: BlockJob) -> None:
        """block_job_remove_all_bdrv."""
        nodes, job.nodes = job.nodes, []
        for child in nodes:
            if child.bs is not None and job.blocker is not None:
                child.bs.op_unblock_all(job.blocker)
            self.layer.root_unref_child(child)

    def unref(self, job: BlockJob) -> None:
        """block_job_unref (block_job_early_fail too)."""
        job.refcnt -= 1
        if job.refcnt:
            return
        if job in self.jobs:
            self.jobs.remove(job)
        blk = job.blk
        # bs->job = NULL on blk_bs(job->blk), which a kind that changed the graph has
        # pointed back at the job's node (mirror_exit); the node itself, whatever the
        # graph did, so that no node keeps a job that is gone
        for bs in (blk.bs if blk is not None else None, job.main_bs):
            if bs is not None and bs.job is job:
                bs.job = None
        self.remove_all_bdrv(job)
        if blk is not None:
            self.layer.blk_unref(blk)
        job.token += 1  # no timer of it fires any more

    early_fail = unref

    def start(self, job: BlockJob) -> None:
        """block_job_start: the coroutine runs now, up to its first wait."""
        assert not job.started() and job.paused
        job.co = self._entry(job)
        job.pause_count -= 1
        job.busy = True
        job.paused = False
        self._step(job)

    def _entry(self, job: BlockJob) -> Co:
        """block_job_co_entry."""
        yield from job.pause_point()
        yield from job.run()
        assert job.deferred, f"{job.job_type} job ended without deferring"

    def _step(self, job: BlockJob) -> None:
        assert job.co is not None
        try:
            next(job.co)
        except StopIteration:
            pass  # the coroutine is done (busy stays set); its bottom half completes it

    def enter(self, job: BlockJob) -> None:
        """block_job_enter: a waiting job runs again now (its timer is dropped)."""
        if not job.started() or job.deferred or job.busy or job.completed:
            return
        job.token += 1
        job.wake_at = math.inf
        job.busy = True
        self._step(job)

    def _io_done(self, job: BlockJob) -> None:
        """A request in flight completed: the coroutine goes on."""
        job.token += 1
        job.wake_at = math.inf
        self._step(job)

    def pause(self, job: BlockJob) -> None:
        """block_job_pause."""
        job.pause_count += 1

    def resume(self, job: BlockJob) -> None:
        """block_job_resume."""
        assert job.pause_count > 0
        job.pause_count -= 1
        if job.pause_count:
            return
        self.enter(job)

    def user_pause(self, job: BlockJob) -> None:
        """block_job_user_pause."""
        job.user_paused = True
        self.pause(job)

    def user_resume(self, job: BlockJob) -> None:
        """block_job_user_resume: also resets the io-status."""
        if job.user_paused and job.pause_count > 0:
            self.iostatus_reset(job)
            job.user_paused = False
            self.resume(job)

    def iostatus_reset(self, job: BlockJob) -> None:
        """block_job_iostatus_reset."""
        if job.iostatus == "ok":
            return
        job.iostatus = "ok"

    def set_speed(self, job: BlockJob, speed: int) -> None:
        """block_job_set_speed: the driver's limit; the job is not woken."""
        job.set_speed(speed)
        job.speed = speed

    def complete(self, job: BlockJob) -> None:
        """block_job_complete."""
        if job.pause_count or job.cancelled or not job.started() or not job.can_complete:
            raise GenericError(f"The active block job '{job.id}' cannot be completed")
        job.complete()

    def cancel_async(self, job: BlockJob) -> None:
        """block_job_cancel_async."""
        if job.iostatus != "ok":
            self.iostatus_reset(job)
        if job.user_paused:
            job.user_paused = False
            job.pause_count -= 1
        job.cancelled = True

    def cancel(self, job: BlockJob) -> None:
        """block_job_cancel."""
        if job.started():
            self.cancel_async(job)
            self.enter(job)
        else:
            self.completed(job, -errno_mod.ECANCELED)

    def _drain(self, job: BlockJob) -> None:
        """block_job_drain: kick the job to its next pause point; requests in flight
        complete."""
        if job.waiting_io:
            self._io_done(job)
        else:
            self.enter(job)
        job.drain()

    def finish_sync(self, job: BlockJob, finish: Callable[[BlockJob], None] | None) -> int:
        """block_job_finish_sync: run the job (and the main loop's bottom halves) until
        it completed."""
        job.refcnt += 1
        try:
            if finish is not None:
                finish(job)
            for _ in range(1 << 20):
                if job.deferred or job.completed:
                    break
                self._drain(job)
            while not job.completed and self._bhs:
                self._bhs.popleft()()
            assert job.completed, "a job did not finish"
            ret = -errno_mod.ECANCELED if job.cancelled and job.ret == 0 else job.ret
        finally:
            self.unref(job)
        return ret

    def cancel_sync(self, job: BlockJob) -> int:
        """block_job_cancel_sync."""
        return self.finish_sync(job, self.cancel)

    def complete_sync(self, job: BlockJob) -> int:
        """block_job_complete_sync."""
        return self.finish_sync(job, self.complete)

    def cancel_sync_all(self) -> None:
        """block_job_cancel_sync_all (bdrv_close_all's first step)."""
        while self.jobs:
            self.cancel_sync(self.jobs[0])

    def completed(self, job: BlockJob, ret: int) -> None:
        """block_job_completed."""
        assert not job.completed
        job.completed = True
        job.ret = ret
        if job.txn is None:
            self._completed_single(job)
        elif ret < 0 or job.cancelled:
            self._txn_abort(job)
        else:
            self._txn_success(job)

    def _completed_single(self, job: BlockJob) -> None:
        """block_job_completed_single: the driver's commit or abort, clean, the
        callback, the last event (only for a job that started), and the job is gone."""
        assert job.completed
        if not job.ret:
            job.commit()
        else:
            job.abort()
        job.clean()
        if job.cb is not None:
            job.cb(job.ret)
        if job.started():
            if job.cancelled:
                if not job.is_internal():
                    self.emit("BLOCK_JOB_CANCELLED", job._event_data())
            elif not job.is_internal():
                data = job._event_data()
                if job.ret < 0:
                    data["error"] = strerror(job.ret)
                self.emit("BLOCK_JOB_COMPLETED", data)
        if job.txn is not None:
            job.txn.jobs.remove(job)
        self.unref(job)

    def _txn_abort(self, job: BlockJob) -> None:
        """block_job_completed_txn_abort: the first failed job cancels the others,
        waits for them, and completes them all (newest first)."""
        txn = job.txn
        assert txn is not None
        if txn.aborting:
            return
        txn.aborting = True
        for other in txn.jobs:
            if other is not job:
                self.cancel_async(other)
        while txn.jobs:
            other = txn.jobs[0]
            if not other.completed:
                assert other.cancelled
                self.finish_sync(other, None)
            self._completed_single(other)

    def _txn_success(self, job: BlockJob) -> None:
        """block_job_completed_txn_success: the last job to finish completes all."""
        txn = job.txn
        assert txn is not None
        if any(not other.completed for other in txn.jobs):
            return
        for other in list(txn.jobs):
            assert other.ret == 0
            self._completed_single(other)

    # -- the Machine's hooks ------------------------------------------------------------

    def next_deadline(self) -> float:
        if self._bhs:
            return self.now()
        heap = self._heap
        while heap and heap[0][2] != heap[0][3].token:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def run_due(self, now: float) -> None:
        """The bottom halves queued so far, then the timers due at `now` (those a
        job sets while it runs here wait for the next call: a job sleeping 0 ns
        cannot starve the main loop)."""
        for _ in range(len(self._bhs)):
            self._bhs.popleft()()
        heap = self._heap
        due: list[tuple[int, BlockJob]] = []
        while heap and heap[0][0] <= now:
            _, _, token, job = heapq.heappop(heap)
            if token == job.token:
                due.append((token, job))
        for token, job in due:
            if token != job.token:
                continue  # entered meanwhile
            if job.waiting_io:
                self._io_done(job)
            else:
                self.enter(job)
        for _ in range(len(self._bhs)):
            self._bhs.popleft()()

    def close(self) -> None:
        """bdrv_close_all: every job is cancelled and waited for first."""
        self.cancel_sync_all()
