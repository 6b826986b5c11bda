"""Mirror jobs: `drive-mirror`, `blockdev-mirror`, and the active `block-commit`.

A kind of the `blockdev.jobs` model [block/mirror.c mirror_start_job, mirror_run,
mirror_iteration, mirror_dirty_init, mirror_complete, mirror_exit, commit_active_start;
blockdev.c qmp_drive_mirror, qmp_blockdev_mirror, blockdev_mirror_common;
block.c check_to_replace_node]. block.md §4.5, §4.6.

The job puts a `mirror_top` filter (`blockdev.jobs.filters`) above the source, hangs
an anonymous dirty bitmap on the source, and copies what the bitmap says is dirty to
the target through its own BlockBackend. Every write that reaches the source while the
job runs (the guest workload, HMP qemu-io, an NBD client: they all go through the
filter to the source's data path, `blockdev.io`) dirties the bitmap, so it is copied
again. When nothing is dirty the target is in sync: BLOCK_JOB_READY, once per
synchronisation (an error breaks it). `block-job-complete` makes the job pivot: the
target (or the `replaces` node) takes the source's place in the graph; a
cancel after READY ends with BLOCK_JOB_COMPLETED and no pivot.

Time: the copy of a request is a request in flight (`BlockJob.io`) at the simulated
disk's bandwidth; one request is in flight at a time (QEMU keeps up to 16, which
changes nothing the Machine can observe but the granularity of `offset`), and the
rate limit (`speed`) delays the next iteration as mirror_iteration does. While READY
and idle, the job looks at the bitmap every SLICE_TIME, as QEMU's loop does.

The active commit is the same job with type `commit`: the target is the base of the
active node's chain, nothing is created, and the graph's backing chain is left alone
(MIRROR_LEAVE_BACKING_CHAIN). `commit_active_start` is what `blockdev.jobs.commit`'s
`block-commit` calls for the active layer.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Generator
from typing import Any, ClassVar

import attrs

from blockdev import open as bdrv
from blockdev.bitmaps import DirtyBitmap, default_granularity
from blockdev.graph import PERM_ALL, Backend, Node, Reason, child_try_set_perm
from blockdev.image.lock import Perm
from blockdev.iotypes import BlockIOError
from blockdev.jobs.core import SLICE_TIME, BlockJob, Co, Jobs
from blockdev.jobs.filters import MIRROR_TOP, new_filter_node
from blockdev.layer import BlockLayer, _recurse_first_non_filter
from blockdev.query import get_info
from blockdev.snapshot import create_new_image
from schema.errors import QERR_INVALID_PARAMETER, QERR_INVALID_PARAMETER_VALUE, GenericError
from schema.handlers import qmp_command

__all__ = ["MirrorCommands", "MirrorJob", "commit_active_start", "mirror_start_job"]

MAX_IN_FLIGHT = 16
MAX_IO_BYTES = 1 << 20
DEFAULT_MIRROR_BUF_SIZE = MAX_IN_FLIGHT * MAX_IO_BYTES
IOV_MAX = 1024
INT_MAX = 2**31 - 1
SECTOR = 512

# BlockMirrorBackingMode
SOURCE_BACKING_CHAIN = "source"  # drive-mirror absolute-paths: the target gets the source's
OPEN_BACKING_CHAIN = "open"      # drive-mirror existing: the target opens its own at complete
LEAVE_BACKING_CHAIN = "leave"    # blockdev-mirror, active commit

CoInt = Generator[None, None, int]

# Drivers whose new images read as zeros (their bdrv_has_zero_init); raw asks its file.
_ZERO_INIT = frozenset({"file", "qcow2", "qcow", "qed", "vdi", "vhdx", "vmdk", "vpc",
                        "parallels"})


def has_zero_init(bs: Node) -> bool:
    """bdrv_has_zero_init: a node with a backing node does not; else its driver says."""
    if bs.backing is not None or bs.driver is None:
        return False
    name = bs.driver.format_name
    if name == "raw":
        return bs.file_bs is not None and has_zero_init(bs.file_bs)
    return name in _ZERO_INIT


def cluster_size(layer: BlockLayer, bs: Node) -> int:
    """bdrv_get_info's cluster_size (0 when the driver has none)."""
    info = get_info(layer, bs)
    return int(info["cluster_size"]) if info is not None else 0


def can_write_zeroes_with_unmap(layer: BlockLayer, bs: Node) -> bool:
    """bdrv_can_write_zeroes_with_unmap: BDRV_O_UNMAP and a driver that says so
    (qcow2 v3, qed)."""
    if not bs.open_flags.unmap or bs.driver is None:
        return False
    name = bs.driver.format_name
    if name == "qed":
        return True
    if name == "qcow2":
        facts = getattr(bs.state, "facts", None)
        return getattr(facts, "version", 3) >= 3
    return False


def round_to_clusters(layer: BlockLayer, bs: Node, offset: int, nbytes: int) -> tuple[int, int]:
    """bdrv_round_to_clusters."""
    c = cluster_size(layer, bs)
    if c == 0:
        return offset, nbytes
    start = offset - offset % c
    end = -(-(offset + nbytes) // c) * c
    return start, end - start


@attrs.define(kw_only=True, eq=False)
class MirrorJob(BlockJob):
    """MirrorBlockJob."""

    job_type: ClassVar[str] = "mirror"
    can_complete: ClassVar[bool] = True

    source: Node | None = None
    mirror_top: Node | None = None
    target: Backend | None = None
    base: Node | None = None
    replaces: str | None = None
    to_replace: Node | None = None
    replace_blocker: Reason | None = None
    is_none_mode: bool = False
    backing_mode: str = LEAVE_BACKING_CHAIN
    on_source_error: str = "report"
    on_target_error: str = "report"
    synced: bool = False
    should_complete: bool = False
    granularity: int = 65536
    buf_size: int = DEFAULT_MIRROR_BUF_SIZE
    bdev_length: int = 0
    cow_bitmap: set[int] | None = None
    dirty_bitmap: DirtyBitmap | None = None
    dbi_pos: int = 0  # the dirty iterator's position (a granule index)
    last_pause_ns: int = 0
    bytes_in_flight: int = 0
    mret: int = 0  # s->ret: the first reported error
    unmap: bool = True
    target_cluster_size: int = SECTOR
    initial_zeroing_ongoing: bool = False
    unflushed: bool = False  # the target was written since its last flush

    # -- the driver ------------------------------------------------------------------

    def complete(self) -> None:
        """mirror_complete."""
        layer = self.layer
        assert self.target is not None and self.target.bs is not None
        target = self.target.bs
        if not self.synced:
            raise GenericError(f"The active block job '{self.id}' cannot be completed")
        if self.backing_mode == OPEN_BACKING_CHAIN:
            assert target.backing is None
            bdrv.open_backing_file(layer, target, {}, "backing")
        if self.replaces is not None:
            to_replace = layer.find_node(self.replaces)
            if to_replace is None:
                raise GenericError(f"Node name '{self.replaces}' not found")
            self.to_replace = to_replace
            self.replace_blocker = Reason("block device is in use by block-job-complete")
            to_replace.op_block_all(self.replace_blocker)
            to_replace.refcnt += 1
        self.should_complete = True
        self.registry.enter(self)

    # -- the coroutine -----------------------------------------------------------------

    def run(self) -> Co:
        """mirror_run."""
        ret = yield from self._run()
        self.defer_to_main_loop(lambda: self._exit(ret))

    def _run(self) -> CoInt:
        layer = self.layer
        bs = self.source
        assert bs is not None and self.target is not None and self.target.bs is not None
        target_bs = self.target.bs
        if self.cancelled:
            return 0
        self.bdev_length = bs.length()
        if self.base is target_bs:
            # active commit: a base smaller than the active layer grows
            base_length = target_bs.length()
            if self.bdev_length > base_length:
                from blockdev.commands import truncate

                try:
                    truncate(layer, target_bs, self.bdev_length)
                except GenericError:
                    return -errno_mod.EPERM
        if self.bdev_length == 0:
            self.event_ready()
            self.synced = True
            while not self.cancelled and not self.should_complete:
                yield from self.yield_()
            self.cancelled = False
            return 0
        tcs = cluster_size(layer, target_bs)
        self.target_cluster_size = tcs or SECTOR
        if target_bs.backing_file and target_bs.backing is None \
                and self.granularity < self.target_cluster_size:
            self.buf_size = max(self.buf_size, self.target_cluster_size)
            self.cow_bitmap = set()
        self.last_pause_ns = self.now_ns()
        if not self.is_none_mode:
            ret = yield from self._dirty_init()
            if ret < 0 or self.cancelled:
                return ret
        bitmap = self.dirty_bitmap
        assert bitmap is not None
        while True:
            if self.mret < 0:
                return self.mret
            yield from self.pause_point()
            cnt = bitmap.count
            self.len = self.offset + self.bytes_in_flight + cnt
            delay_ns = 0
            delta = self.now_ns() - self.last_pause_ns
            if delta < SLICE_TIME and self.iostatus == "ok" and cnt != 0:
                delay_ns = yield from self._iteration()
            should_complete = False
            if cnt == 0:
                if not self.synced:
                    if (yield from self._flush()) < 0:
                        continue
                    # Out of the streaming phase: a cancel from now on completes.
                    self.event_ready()
                    self.synced = True
                should_complete = self.should_complete or self.cancelled
                cnt = bitmap.count
            if cnt == 0 and should_complete:
                # QEMU drains the source around this last flush: a write that came
                # in while it was in flight is copied first.
                if (yield from self._flush()) < 0 or bitmap.count > 0:
                    continue
                self.cancelled = False
                return 0
            if not self.synced:
                yield from self.sleep_ns(delay_ns)
                if self.cancelled:
                    return 0
            elif not should_complete:
                yield from self.sleep_ns(SLICE_TIME if cnt == 0 else 0)
            self.last_pause_ns = self.now_ns()

    def _throttle(self) -> Co:
        """mirror_throttle."""
        now = self.now_ns()
        if now - self.last_pause_ns > SLICE_TIME:
            self.last_pause_ns = now
            yield from self.sleep_ns(0)
        else:
            yield from self.pause_point()

    def _dirty_init(self) -> CoInt:
        """mirror_dirty_init: a target that does not read as zeros is zeroed first (or
        everything is dirty), then what the source allocates above base is dirty."""
        from blockdev import io  # the data path loads with the first job

        layer = self.layer
        bs = self.source
        assert bs is not None and self.target is not None and self.target.bs is not None
        bitmap = self.dirty_bitmap
        assert bitmap is not None
        target_bs = self.target.bs
        step = INT_MAX - INT_MAX % self.granularity
        if self.base is None and not has_zero_init(target_bs):
            if not can_write_zeroes_with_unmap(layer, target_bs):
                bitmap.mark(0, self.bdev_length)
                return 0
            self.initial_zeroing_ongoing = True
            offset = 0
            while offset < self.bdev_length:
                nbytes = min(self.bdev_length - offset, step)
                yield from self._throttle()
                if self.cancelled:
                    self.initial_zeroing_ongoing = False
                    return 0
                yield from self._zero_or_discard(offset, nbytes, False)
                offset += nbytes
            self.initial_zeroing_ongoing = False
        offset = 0
        while offset < self.bdev_length:
            nbytes = min(self.bdev_length - offset, step)
            yield from self._throttle()
            if self.cancelled:
                return 0
            try:
                allocated, count = io.bdrv_is_allocated_above(bs, self.base, offset, nbytes)
            except BlockIOError as e:
                return -e.errno
            count = count or nbytes
            if allocated:
                bitmap.mark(offset, count)
            offset += count
        return 0

    def _next_dirty(self) -> int:
        """bdrv_dirty_iter_next, restarting from 0 at the end: a granule index."""
        bitmap = self.dirty_bitmap
        assert bitmap is not None and bitmap.dirty
        later = [g for g in bitmap.dirty if g >= self.dbi_pos]
        return min(later) if later else min(bitmap.dirty)

    def _iteration(self) -> CoInt:
        """mirror_iteration: the run of dirty chunks from the iterator's position (up to
        buf_size), its dirty bits cleared first, copied, zeroed or discarded according
        to the source's block status. Returns the rate limit's delay."""
        from blockdev import io  # the data path loads with the first job

        layer = self.layer
        bitmap = self.dirty_bitmap
        source = self.source
        assert bitmap is not None and source is not None
        assert self.target is not None and self.target.bs is not None
        gran = self.granularity
        write_zeroes_ok = can_write_zeroes_with_unmap(layer, self.target.bs)
        max_io_bytes = max(self.buf_size // MAX_IN_FLIGHT, MAX_IO_BYTES)
        first = self._next_dirty()
        yield from self.pause_point()
        offset = first * gran
        nb_chunks = 1
        while nb_chunks * gran < self.buf_size:
            next_offset = offset + nb_chunks * gran
            if next_offset >= self.bdev_length or first + nb_chunks not in bitmap.dirty:
                break
            nb_chunks += 1
        self.dbi_pos = first + nb_chunks
        bitmap.dirty.difference_update(range(first, first + nb_chunks))
        delay_ns = 0
        while nb_chunks > 0 and offset < self.bdev_length:
            method = "copy"
            try:
                st = io.bdrv_block_status_above(source, None, offset, nb_chunks * gran)
            except BlockIOError:
                io_bytes = min(nb_chunks * gran, max_io_bytes)
                status_ok = False
            else:
                status_ok = True
                io_bytes = min(st.pnum, max_io_bytes) if st.data else st.pnum
            io_bytes -= io_bytes % gran
            if io_bytes < gran:
                io_bytes = gran
            elif status_ok and not st.data:
                start, length = round_to_clusters(layer, self.target.bs, offset, io_bytes)
                if start == offset and length == io_bytes:
                    method = "zero" if st.zero else "discard"
            if self.mret < 0:
                return 0
            io_bytes = min(io_bytes, self.bdev_length - offset)
            if method == "copy":
                io_bytes = yield from self._do_read(offset, io_bytes)
                acct = io_bytes
            else:
                yield from self._zero_or_discard(offset, io_bytes, method == "discard")
                acct = 0 if write_zeroes_ok else io_bytes
            offset += io_bytes
            nb_chunks -= -(-io_bytes // gran)
            if self.speed:
                delay_ns = self.limit.calculate_delay(acct, self.now_ns())
        return delay_ns

    def _cow_align(self, offset: int, nbytes: int) -> tuple[int, int, int]:
        """mirror_cow_align: a target without its backing file gets whole clusters."""
        assert self.cow_bitmap is not None and self.target is not None
        assert self.target.bs is not None
        gran = self.granularity
        need_cow = offset // gran not in self.cow_bitmap
        need_cow |= (offset + nbytes - 1) // gran not in self.cow_bitmap
        start, length = offset, nbytes
        if need_cow:
            start, length = round_to_clusters(self.layer, self.target.bs, offset, nbytes)
        max_bytes = gran * IOV_MAX
        if length > max_bytes:
            length = max_bytes
            if need_cow:
                length -= length % self.target_cluster_size
        length = min(length, self.bdev_length - start)
        extra = start + length - (offset + nbytes)
        return start, length, extra

    def _do_read(self, offset: int, nbytes: int) -> CoInt:
        """mirror_do_read + the read and write completions: the bytes copied from
        `offset` on (more with COW alignment)."""
        from blockdev import io  # the data path loads with the first job

        nbytes = min(self.buf_size, self.granularity * IOV_MAX, nbytes)
        ret = nbytes
        if self.cow_bitmap is not None:
            offset, nbytes, extra = self._cow_align(offset, nbytes)
            ret += extra
        self.bytes_in_flight += nbytes
        yield from self.io(self._io_ns(nbytes))
        assert self.blk is not None and self.target is not None
        try:
            data = io.blk_pread(self.blk, offset, nbytes)
        except BlockIOError as e:
            self._failed(offset, nbytes, True, e.errno)
            return ret
        try:
            io.blk_pwrite(self.target, offset, data)
        except BlockIOError as e:
            self._failed(offset, nbytes, False, e.errno)
            return ret
        self._done(offset, nbytes)
        return ret

    def _zero_or_discard(self, offset: int, nbytes: int, discard: bool) -> Co:
        """mirror_do_zero_or_discard (a zero write or discard takes a sector's time)."""
        from blockdev import io  # the data path loads with the first job

        self.bytes_in_flight += nbytes
        yield from self.io(self._io_ns(SECTOR))
        assert self.target is not None
        try:
            if discard:
                io.blk_pdiscard(self.target, offset, nbytes)
            else:
                io.blk_pwrite_zeroes(self.target, offset, nbytes, may_unmap=self.unmap)
        except BlockIOError as e:
            self._failed(offset, nbytes, False, e.errno)
            return
        self._done(offset, nbytes)

    def _io_ns(self, nbytes: int) -> int:
        """The simulated disk's time for a request: never 0, so that a job whose
        requests keep failing (policy ignore) still gives the main loop its turn."""
        return max(1, self.io_delay_ns(nbytes))

    def _failed(self, offset: int, nbytes: int, is_read: bool, err: int) -> None:
        """mirror_read_complete / mirror_write_complete with an error: dirty again, the
        error policy, and the first reported error ends the job."""
        assert self.dirty_bitmap is not None
        self.dirty_bitmap.mark(offset, nbytes)
        self.synced = False
        on_err = self.on_source_error if is_read else self.on_target_error
        action = self.error_action(on_err, is_read, err)
        if action == "report" and self.mret >= 0:
            self.mret = -err
        self.bytes_in_flight -= nbytes

    def _done(self, offset: int, nbytes: int) -> None:
        """mirror_iteration_done after success."""
        self.unflushed = True
        self.bytes_in_flight -= nbytes
        gran = self.granularity
        if self.cow_bitmap is not None:
            first = offset // gran
            self.cow_bitmap.update(range(first, first + -(-nbytes // gran)))
        if not self.initial_zeroing_ongoing:
            self.offset += nbytes

    def _flush(self) -> CoInt:
        """mirror_flush: the target's flush, a request in flight (a sector's time)
        when something was written since the last one (bdrv_co_flush returns at once
        when write_gen == flushed_gen) or the last one failed; its error goes through
        on-target-error."""
        from blockdev import io  # the data path loads with the first job

        if self.unflushed:
            yield from self.io(self._io_ns(SECTOR))
        assert self.target is not None
        try:
            io.blk_flush(self.target)
        except BlockIOError as e:
            self.unflushed = True
            self.synced = False
            if self.error_action(self.on_target_error, False, e.errno) == "report":
                self.mret = -e.errno
            return -e.errno
        self.unflushed = False
        return 0

    # -- the end, in the main loop -------------------------------------------------------

    def _exit(self, ret: int) -> None:
        """mirror_exit: the backing chain of the target (absolute-paths), the pivot
        (completed, no error), the filter out of the graph, then the last event."""
        layer = self.layer
        src, top, target_blk = self.source, self.mirror_top, self.target
        assert src is not None and top is not None and target_blk is not None
        target_bs = target_blk.bs
        assert target_bs is not None and self.dirty_bitmap is not None
        if self.dirty_bitmap in src.bitmaps:
            src.bitmaps.remove(self.dirty_bitmap)
        src.refcnt += 1
        top.refcnt += 1
        target_bs.refcnt += 1
        layer.blk_set_perm(target_blk, 0, PERM_ALL)
        layer.blk_unref(target_blk)
        self.target = None
        assert top.backing is not None
        child_try_set_perm(top.backing, 0, PERM_ALL)
        if self.backing_mode == SOURCE_BACKING_CHAIN:
            backing = src if self.is_none_mode else self.base
            if target_bs.backing_bs is not backing:
                try:
                    layer.set_backing_hd(target_bs, backing)
                except GenericError as e:
                    layer.host.error_report(e.desc)
                    ret = -errno_mod.EPERM
        if self.should_complete and ret == 0:
            to_replace = self.to_replace or src
            if target_bs.read_only != to_replace.read_only:
                try:
                    layer.reopen_read_only(target_bs, to_replace.read_only)
                except GenericError:
                    pass
            try:
                layer.replace_node(to_replace, target_bs)
            except GenericError as e:
                layer.host.error_report(e.desc)
                ret = -errno_mod.EPERM
        if self.to_replace is not None:
            assert self.replace_blocker is not None
            self.to_replace.op_unblock_all(self.replace_blocker)
            layer.unref(self.to_replace)
        layer.unref(target_bs)
        self.registry.remove_all_bdrv(self)
        assert top.backing is not None and top.backing.bs is not None
        child_try_set_perm(top.backing, 0, PERM_ALL)
        layer.replace_node(top, top.backing.bs)
        # The job's BlockBackend moved with the filter's parents: back onto the filter.
        assert self.blk is not None
        layer.blk_remove_bs(self.blk)
        layer.blk_set_perm(self.blk, 0, PERM_ALL)
        layer.blk_insert_bs(self.blk, top)
        self.registry.completed(self, ret)
        layer.unref(top)
        layer.unref(src)


@attrs.define(kw_only=True, eq=False)
class CommitActiveJob(MirrorJob):
    """commit_active_job_driver: the mirror job with the commit type."""

    job_type: ClassVar[str] = "commit"


def mirror_start_job(jobs: Jobs, job: MirrorJob, job_id: str | None, bs: Node,
                     target: Node, *, replaces: str | None, speed: int, granularity: int,
                     buf_size: int, backing_mode: str, on_source_error: str,
                     on_target_error: str, unmap: bool, is_none_mode: bool,
                     base: Node | None, filter_node_name: str | None) -> MirrorJob:
    """mirror_start_job: the filter above `bs`, the job on the filter, the target's
    BlockBackend, the dirty bitmap, the blockers; then the job starts. On error the
    graph is as it was."""
    layer = jobs.layer
    if granularity == 0:
        granularity = default_granularity(cluster_size(layer, target))
    assert granularity & (granularity - 1) == 0
    if buf_size < 0:
        raise GenericError(QERR_INVALID_PARAMETER % "buf-size")
    if buf_size == 0:
        buf_size = DEFAULT_MIRROR_BUF_SIZE
    top = new_filter_node(layer, MIRROR_TOP, filter_node_name, rdwr=True,
                          total_sectors=bs.total_sectors)
    top.refcnt += 1  # kept until block_job_create succeeds even if bs has no parent
    try:
        layer.append(top, bs)
    except GenericError:
        layer.unref(top)
        raise
    created = False
    try:
        jobs.create(job, job_id, top, int(Perm.CONSISTENT_READ),
                    int(Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.WRITE
                        | Perm.GRAPH_MOD), speed)
        created = True
        layer.unref(top)  # the job holds it now
        job.source = bs
        job.mirror_top = top
        target_is_backing = bs.chain_contains(target)
        graph_mod = backing_mode != LEAVE_BACKING_CHAIN
        perm = Perm.WRITE | Perm.RESIZE | (Perm.GRAPH_MOD if graph_mod else Perm.NONE)
        shared = Perm.WRITE_UNCHANGED
        if target_is_backing:
            shared |= Perm.CONSISTENT_READ | Perm.WRITE | Perm.GRAPH_MOD
        job.target = layer.blk_new_with_bs(target, int(perm), int(shared))
        job.replaces = replaces
        job.on_source_error = on_source_error
        job.on_target_error = on_target_error
        job.is_none_mode = is_none_mode
        job.backing_mode = backing_mode
        job.base = base
        job.granularity = granularity
        job.buf_size = -(-buf_size // granularity) * granularity
        job.unmap = unmap
        bitmap = DirtyBitmap(name=None, granularity=granularity, size=bs.length())
        bs.bitmaps.insert(0, bitmap)
        job.dirty_bitmap = bitmap
        jobs.add_bdrv(job, "target", target, 0, PERM_ALL)
        if target_is_backing:
            it = bs.backing_bs
            while it is not None and it is not target:
                jobs.add_bdrv(job, "intermediate node", it, 0,
                              int(Perm.WRITE_UNCHANGED | Perm.WRITE))
                it = it.backing_bs
    except GenericError:
        # mirror_start_job's fail: (the dirty bitmap stays, as in 2.11)
        if created:
            top.refcnt += 1
            if job.target is not None:
                layer.blk_unref(job.target)
                job.target = None
            jobs.early_fail(job)
        assert top.backing is not None and top.backing.bs is not None
        child_try_set_perm(top.backing, 0, PERM_ALL)
        layer.replace_node(top, top.backing.bs)
        layer.unref(top)
        raise
    jobs.start(job)
    return job


def _mirror_common(jobs: Jobs, job_id: str | None, bs: Node, target: Node, *,
                   replaces: str | None, sync: str, backing_mode: str, speed: int | None,
                   granularity: int | None, buf_size: int | None,
                   on_source_error: str | None, on_target_error: str | None,
                   unmap: bool | None, filter_node_name: str | None) -> None:
    """blockdev_mirror_common + mirror_start."""
    gran = granularity or 0
    if gran != 0 and (gran < 512 or gran > 1048576 * 64):
        raise GenericError(QERR_INVALID_PARAMETER_VALUE
                           % ("granularity", "a value in range [512B, 64MB]"))
    if gran & (gran - 1):
        raise GenericError(QERR_INVALID_PARAMETER_VALUE % ("granularity", "power of 2"))
    bs.check_op("mirror-source")
    target.check_op("mirror-target")
    if bs.backing is None and sync == "top":
        sync = "full"
    if sync == "incremental":
        raise GenericError("Sync mode 'incremental' not supported")
    mirror_start_job(jobs, MirrorJob(registry=jobs), job_id, bs, target, replaces=replaces,
                     speed=speed or 0, granularity=gran, buf_size=buf_size or 0,
                     backing_mode=backing_mode,
                     on_source_error=on_source_error or "report",
                     on_target_error=on_target_error or "report",
                     unmap=True if unmap is None else unmap,
                     is_none_mode=sync == "none",
                     base=bs.backing_bs if sync == "top" else None,
                     filter_node_name=filter_node_name)


def check_to_replace_node(layer: BlockLayer, parent_bs: Node, node_name: str) -> Node:
    """block.c check_to_replace_node."""
    to_replace = layer.find_node(node_name)
    if to_replace is None:
        raise GenericError(f"Node name '{node_name}' not found")
    to_replace.check_op("replace")
    if not _recurse_first_non_filter(parent_bs, to_replace):
        raise GenericError("Only top most non filter can be replaced")
    return to_replace


def commit_active_start(jobs: Jobs, job_id: str | None, bs: Node, base: Node, speed: int,
                        on_error: str, filter_node_name: str | None) -> None:
    """block/mirror.c commit_active_start: base is reopened with the active node's
    read-write mode, then a mirror job of type `commit` copies everything above base
    into it and stays READY until completed (base replaces the active node) or
    cancelled. On error base gets its old mode back."""
    layer = jobs.layer
    orig_read_only = base.read_only
    layer.reopen_read_only(base, bs.read_only)
    try:
        mirror_start_job(jobs, CommitActiveJob(registry=jobs), job_id, bs, base,
                         replaces=None, speed=speed, granularity=0, buf_size=0,
                         backing_mode=LEAVE_BACKING_CHAIN, on_source_error=on_error,
                         on_target_error=on_error, unmap=True, is_none_mode=False,
                         base=base, filter_node_name=filter_node_name)
    except GenericError:
        try:
            layer.reopen_read_only(base, orig_read_only)
        except GenericError:
            pass
        raise


class MirrorCommands:
    """drive-mirror and blockdev-mirror."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    @qmp_command("drive-mirror")
    def drive_mirror(self, arg: dict[str, Any]) -> None:
        """blockdev.c qmp_drive_mirror: the target image is created before the common
        checks (a later error leaves the file behind, as in 2.11)."""
        layer = self.jobs.layer
        bs = layer.get_root_bs(arg["device"])
        assert bs.driver is not None
        mode = arg.get("mode", "absolute-paths")
        fmt: str | None = arg.get("format")
        if fmt is None and mode != "existing":
            fmt = bs.driver.format_name
        flags = bs.open_flags.copy()
        flags.rdwr = True
        sync = arg["sync"]
        source = bs.backing_bs
        if source is None and sync == "top":
            sync = "full"
        if sync == "none":
            source = bs
        size = bs.length()
        replaces = arg.get("replaces")
        if replaces is not None:
            if arg.get("node-name") is None:
                raise GenericError("a node-name must be provided when replacing a named "
                                   "node of the graph")
            to_replace = check_to_replace_node(layer, bs, replaces)
            if size != to_replace.length():
                raise GenericError("cannot replace image with a mirror image of different "
                                   "size")
        backing_mode = SOURCE_BACKING_CHAIN if mode == "absolute-paths" else OPEN_BACKING_CHAIN
        flags.no_backing = True
        target = arg["target"]
        if (sync == "full" or source is None) and mode != "existing":
            assert fmt is not None
            create_new_image(layer, target, fmt, size, backing_file=None, backing_format=None)
        elif mode == "absolute-paths":
            assert fmt is not None and source is not None and source.driver is not None
            create_new_image(layer, target, fmt, size, backing_file=source.filename,
                             backing_format=source.driver.format_name)
        options: dict[str, Any] = {}
        if arg.get("node-name") is not None:
            options["node-name"] = arg["node-name"]
        if fmt is not None:
            options["driver"] = fmt
        flags.protocol = False
        target_bs = layer.open(target, None, options, flags)
        try:
            _mirror_common(self.jobs, arg.get("job-id"), bs, target_bs, replaces=replaces,
                           sync=sync, backing_mode=backing_mode, speed=arg.get("speed"),
                           granularity=arg.get("granularity"), buf_size=arg.get("buf-size"),
                           on_source_error=arg.get("on-source-error"),
                           on_target_error=arg.get("on-target-error"),
                           unmap=arg.get("unmap"), filter_node_name=None)
        finally:
            layer.unref(target_bs)

    @qmp_command("blockdev-mirror")
    def blockdev_mirror(self, device: str, target: str, sync: str,
                        job_id: str | None = None, replaces: str | None = None,
                        speed: int | None = None, granularity: int | None = None,
                        buf_size: int | None = None, on_source_error: str | None = None,
                        on_target_error: str | None = None,
                        filter_node_name: str | None = None) -> None:
        """blockdev.c qmp_blockdev_mirror: the target is an existing node; its backing
        chain is left as configured."""
        layer = self.jobs.layer
        bs = layer.get_root_bs(device)
        target_bs = layer.lookup_bs(target, target)
        _mirror_common(self.jobs, job_id, bs, target_bs, replaces=replaces, sync=sync,
                       backing_mode=LEAVE_BACKING_CHAIN, speed=speed,
                       granularity=granularity, buf_size=buf_size,
                       on_source_error=on_source_error, on_target_error=on_target_error,
                       unmap=True, filter_node_name=filter_node_name)
