"""Backup jobs: `drive-backup`, `blockdev-backup`, and their transaction actions.

A job kind of the `blockdev` layer [block/backup.c; blockdev.c do_drive_backup,
do_blockdev_backup, drive_backup_prepare/commit/abort/clean,
blockdev_backup_prepare/commit/abort/clean; block.md §4.7, §5]. Its neighbours:
`blockdev.jobs.core` (the job model it subclasses), `blockdev.io` (the data path it
copies through, and the before-write notifier it hooks), `blockdev.bitmaps` (the
frozen bitmap of an incremental backup and its successor), `blockdev.snapshot`
(`create_new_image`, which makes drive-backup's target and prints its `Formatting`
line) and `blockdev.action` (the transaction contract).

The job copies the source as it was when the job started: every write to the source
node first passes the job's before-write notifier, which copies the old contents of
the clusters it touches to the target (backup_do_cow) unless the job already did.
Sync modes: `full` copies every cluster, `top` only those the source's top image
allocates, `incremental` those dirty in the (frozen) bitmap, `none` only what guest
writes would overwrite (it runs until cancelled). On success the bitmap's successor
replaces it; on failure or cancel the successor merges back.

Time: each cluster the job copies takes the simulated disk's time
(`io_delay_ns`); the rate limit sleeps between clusters as yield_and_check does.
Copies made by the notifier take no Machine time (the guest request waits for them
within its own call).

`compress` is accepted where QEMU accepts it (a target driver with compressed
writes: qcow, qcow2, vmdk); each cluster with data then goes through
`blk_pwrite_compressed` (a qcow2 target stores deflated clusters, as
qcow2_co_pwritev_compressed; qcow and vmdk targets store them plain here).

Where the emulator differs from QEMU: an aborted transaction deletes the target file
its drive-backup action created (issue 9: no file of an aborted transaction is left;
QEMU leaves it), as the snapshot actions do.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from blockdev.action import Action, TransactionProperties
from blockdev.bitmaps import DirtyBitmap, abdicate, create_successor, reclaim
from blockdev.graph import PERM_ALL, Node
from blockdev.image.lock import Perm
from blockdev.iotypes import BlockIOError
from blockdev.jobs.core import BlockJob, Co, Jobs, JobTxn
from blockdev.query import get_info
from blockdev.snapshot import create_new_image
from schema.errors import GenericError
from schema.handlers import qmp_command

if TYPE_CHECKING:
    from types import ModuleType

    from blockdev.graph import Backend
    from blockdev.layer import BlockLayer

BACKUP_CLUSTER_SIZE_DEFAULT = 1 << 16
# Drivers with bdrv_co_pwritev_compressed in 2.11 (block/qcow.c, qcow2.c, vmdk.c).
COMPRESSED_WRITERS = frozenset({"qcow", "qcow2", "vmdk"})



def _io() -> ModuleType:
    """The data path loads with the first request, never at start-up."""
    from blockdev import io

    return io


# The coroutine's result: (ret, error_is_read) of one backup_do_cow.
Cow = tuple[int, bool]


@attrs.define(kw_only=True, eq=False)
class BackupJob(BlockJob):
    """BackupBlockJob."""

    job_type: ClassVar[str] = "backup"

    target: Backend | None = None
    sync_mode: str = "full"
    sync_bitmap: DirtyBitmap | None = None
    on_source_error: str = "report"
    on_target_error: str = "report"
    compress: bool = False
    cluster_size: int = BACKUP_CLUSTER_SIZE_DEFAULT
    bytes_read: int = 0
    done: set[int] = attrs.Factory(set)  # done_bitmap: clusters already copied
    notifier_node: Node | None = None

    # -- the copy ---------------------------------------------------------------------

    def do_cow(self, offset: int, nbytes: int) -> Cow:
        """backup_do_cow: every cluster of [offset, offset+nbytes) not yet copied is
        read from the source and written to the target (zeros as a zero write that
        may unmap); progress counts the bytes copied."""
        assert self.blk is not None and self.target is not None
        io = _io()
        cs = self.cluster_size
        start = offset - offset % cs
        end = -(-(offset + nbytes) // cs) * cs
        zero = bytes(cs)
        for pos in range(start, end, cs):
            cluster = pos // cs
            if cluster in self.done:
                continue
            n = min(cs, self.len - pos)
            if n <= 0:
                break
            try:
                data = io.blk_pread(self.blk, pos, n)
            except BlockIOError as e:
                return -e.errno, True
            try:
                if data == zero[:n]:
                    io.blk_pwrite_zeroes(self.target, pos, n, may_unmap=True)
                elif self.compress:
                    io.blk_pwrite_compressed(self.target, pos, data)
                else:
                    io.blk_pwrite(self.target, pos, data)
            except BlockIOError as e:
                return -e.errno, False
            self.done.add(cluster)
            self.bytes_read += n
            self.offset += n
        return 0, False

    def _before_write(self, bs: Node, offset: int, nbytes: int) -> None:
        """backup_before_write_notify: the old data goes to the target first; a
        failed copy fails the guest's write with its errno."""
        ret, _is_read = self.do_cow(offset, nbytes)
        if ret < 0:
            raise BlockIOError(-ret)

    def _cow_with_time(self, offset: int) -> Generator[None, None, Cow]:
        """One cluster copied by the coroutine: the disk's time, then the copy
        (a cluster the notifier already copied costs nothing)."""
        cluster = offset // self.cluster_size
        if cluster not in self.done:
            yield from self.io(self.io_delay_ns(
                max(0, min(self.cluster_size, self.len - offset))))
        return self.do_cow(offset, self.cluster_size)

    def _yield_and_check(self) -> Generator[None, None, bool]:
        """yield_and_check: give the main loop a turn (after the rate limit's delay
        for what was copied since the last turn); true when cancelled."""
        if self.cancelled:
            return True
        delay = 0
        if self.speed:
            delay = self.rate_delay_ns(self.bytes_read)
            self.bytes_read = 0
        yield from self.sleep_ns(delay)
        return self.cancelled

    def _error_action(self, is_read: bool, error: int) -> str:
        """backup_error_action."""
        if is_read:
            return self.error_action(self.on_source_error, True, error)
        return self.error_action(self.on_target_error, False, error)

    # -- the coroutine ----------------------------------------------------------------

    def run(self) -> Co:
        """backup_run."""
        bs = self.bs
        io = _io()
        self.done = set()
        self.notifier_node = bs
        io.add_before_write_notifier(bs, self._before_write)
        ret = 0
        if self.sync_mode == "none":
            while not self.cancelled:
                yield from self.yield_()
        elif self.sync_mode == "incremental":
            ret = yield from self._run_incremental()
        else:
            ret = yield from self._run_full_or_top(bs)
        io.remove_before_write_notifier(bs, self._before_write)
        self.notifier_node = None
        self.defer_to_main_loop(lambda: self.registry.completed(self, ret))

    def _run_full_or_top(self, bs: Node) -> Generator[None, None, int]:
        ret = 0
        cs = self.cluster_size
        offset = 0
        while offset < self.len:
            if (yield from self._yield_and_check()):
                break
            if self.sync_mode == "top" and not self._allocated_in_top(bs, offset):
                offset += cs
                continue
            ret, is_read = yield from self._cow_with_time(offset)
            if ret < 0:
                if self._error_action(is_read, -ret) == "report":
                    break
                continue  # the same cluster again
            offset += cs
        return ret

    def _allocated_in_top(self, bs: Node, offset: int) -> bool:
        """backup_run's sync=top test: is any part of the cluster allocated in the
        top image (bdrv_is_allocated, piece by piece)."""
        cs = self.cluster_size
        i = 0
        while i < cs:
            alloced, n = _io().bdrv_is_allocated(bs, offset + i, cs - i)
            i += n
            if alloced or n == 0:
                return alloced
        return False

    def _run_incremental(self) -> Generator[None, None, int]:
        """backup_run_incremental: the dirty granules of the frozen bitmap, in
        order; skipped clusters count as progress."""
        bitmap = self.sync_bitmap
        assert bitmap is not None
        cs = self.cluster_size
        granularity = bitmap.granularity
        per_iter = max(granularity // cs, 1)
        last_cluster = -1
        ret = 0
        resume_at = 0  # bdrv_set_dirty_iter
        for dirty in sorted(g * granularity for g in bitmap.dirty):
            if dirty < resume_at:
                continue
            cluster = dirty // cs
            if cluster != last_cluster + 1:
                self.offset += (cluster - last_cluster - 1) * cs
            end = cluster + per_iter
            while cluster < end:
                while True:
                    if (yield from self._yield_and_check()):
                        return ret
                    ret, is_read = yield from self._cow_with_time(cluster * cs)
                    if ret >= 0:
                        break
                    if self._error_action(is_read, -ret) == "report":
                        return ret
                cluster += 1
            if granularity < cs:
                resume_at = cluster * cs
            last_cluster = cluster - 1
        end = -(-self.len // cs)
        if last_cluster + 1 < end:
            self.offset += (end - last_cluster - 1) * cs
        return ret

    # -- BlockJobDriver ---------------------------------------------------------------

    def _cleanup_sync_bitmap(self, ret: int) -> None:
        """backup_cleanup_sync_bitmap: failure or cancel merges the successor back;
        success makes the successor the bitmap."""
        bitmap = self.sync_bitmap
        if bitmap is None:
            return
        bitmaps = self.bs.bitmaps
        if ret < 0 or self.cancelled:
            reclaim(bitmaps, bitmap)
        else:
            abdicate(bitmaps, bitmap)

    def commit(self) -> None:
        """backup_commit."""
        self._cleanup_sync_bitmap(0)

    def abort(self) -> None:
        """backup_abort."""
        self._cleanup_sync_bitmap(-1)

    def clean(self) -> None:
        """backup_clean: the job's BlockBackend on the target goes."""
        if self.notifier_node is not None:  # cancelled before the coroutine ended
            _io().remove_before_write_notifier(self.notifier_node, self._before_write)
            self.notifier_node = None
        if self.target is not None:
            target, self.target = self.target, None
            self.layer.blk_unref(target)


def backup_job_create(jobs: Jobs, job_id: str | None, bs: Node, target: Node, speed: int,
                      sync: str, bitmap: DirtyBitmap | None, compress: bool,
                      on_source_error: str, on_target_error: str,
                      txn: JobTxn | None) -> BackupJob:
    """backup_job_create: the checks in QEMU's order, the job (not started), its
    BlockBackend on the target, the target's cluster size."""
    layer = jobs.layer
    if bs is target:
        raise GenericError("Source and target cannot be the same")
    if not bs.is_inserted():
        raise GenericError(f"Device is not inserted: {bs.device_name()}")
    if not target.is_inserted():
        raise GenericError(f"Device is not inserted: {target.device_name()}")
    if compress and (target.driver is None
                     or target.driver.format_name not in COMPRESSED_WRITERS):
        raise GenericError(f"Compression is not supported for this drive "
                           f"{target.device_name()}")
    bs.check_op("backup-source")
    target.check_op("backup-target")
    if sync == "incremental":
        if bitmap is None:
            raise GenericError('must provide a valid bitmap name for "incremental" sync mode')
        create_successor(bs.bitmaps, bitmap)
    elif bitmap is not None:
        raise GenericError("a sync_bitmap was provided to backup_run, but received an "
                           f"incompatible sync_mode ({sync})")
    job: BackupJob | None = None
    try:
        length = bs.length()
        job = BackupJob(registry=jobs)
        perm_read = int(Perm.CONSISTENT_READ)
        shared = int(Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED
                     | Perm.GRAPH_MOD)
        try:
            jobs.create(job, job_id, bs, perm_read, shared, speed)
        except GenericError:
            job = None
            raise
        job.target = layer.blk_new_with_bs(target, int(Perm.WRITE), shared)
        job.on_source_error = on_source_error
        job.on_target_error = on_target_error
        job.sync_mode = sync
        job.sync_bitmap = bitmap if sync == "incremental" else None
        job.compress = compress
        info = get_info(layer, target)
        if info is None and target.backing is None:
            layer.host.error_report(
                "warning: The target block device doesn't provide information about the "
                "block size and it doesn't have a backing file. The default block size "
                f"of {BACKUP_CLUSTER_SIZE_DEFAULT} bytes is used. If the actual block "
                "size of the target exceeds this default, the backup may be unusable")
            job.cluster_size = BACKUP_CLUSTER_SIZE_DEFAULT
        elif info is None:
            job.cluster_size = BACKUP_CLUSTER_SIZE_DEFAULT
        else:
            job.cluster_size = max(BACKUP_CLUSTER_SIZE_DEFAULT, int(info["cluster_size"]))
        jobs.add_bdrv(job, "target", target, 0, PERM_ALL)
        job.len = length
        if txn is not None:
            txn.add(job)
        return job
    except GenericError:
        if bitmap is not None and bitmap.successor is not None:
            reclaim(bs.bitmaps, bitmap)
        if job is not None:
            job.clean()
            jobs.early_fail(job)
        raise


def do_drive_backup(jobs: Jobs, args: dict[str, Any], txn: JobTxn | None,
                    created: Callable[[str], None] | None = None) -> BackupJob:
    """blockdev.c do_drive_backup: `args` are DriveBackup's wire members. The
    target image is created (and its `Formatting` line printed) before the later
    checks, so a later error leaves it behind, as in QEMU; `created` hears of it."""
    layer = jobs.layer
    device = args["device"]
    target_name = args["target"]
    sync = args["sync"]
    mode = args.get("mode") or "absolute-paths"
    bs = layer.get_root_bs(device)
    fmt = args.get("format")
    if fmt is None and mode != "existing":
        fmt = bs.driver.format_name if bs.driver is not None else None
    bs.check_op("backup-source")
    flags = bs.open_flags.copy()
    flags.rdwr = True
    flags.snapshot = flags.temporary = False
    flags.protocol = False
    source: Node | None = None
    set_backing_hd = False
    if sync == "top":
        source = bs.backing_bs
        if source is None:
            sync = "full"
    if sync == "none":
        source = bs
        flags.no_backing = True
        set_backing_hd = True
    size = bs.length()
    if mode != "existing":
        assert fmt is not None
        if source is not None:
            create_new_image(layer, target_name, fmt, size, backing_file=source.filename,
                             backing_format=source.driver.format_name
                             if source.driver is not None else None)
        else:
            create_new_image(layer, target_name, fmt, size, backing_file=None,
                             backing_format=None)
        if created is not None:
            created(target_name)
    options: dict[str, Any] | None = None
    if fmt is not None:
        options = {"driver": fmt}
    target = layer.open(target_name, None, options, flags)
    try:
        if set_backing_hd:
            layer.set_backing_hd(target, source)
        bitmap: DirtyBitmap | None = None
        name = args.get("bitmap")
        if name is not None:
            bitmap = layer.find_dirty_bitmap(bs, name)
            if bitmap is None:
                raise GenericError(f"Bitmap '{name}' could not be found")
        return backup_job_create(jobs, args.get("job-id"), bs, target,
                                 args.get("speed") or 0, sync, bitmap,
                                 bool(args.get("compress")),
                                 args.get("on-source-error") or "report",
                                 args.get("on-target-error") or "report", txn)
    finally:
        layer.unref(target)


def do_blockdev_backup(jobs: Jobs, args: dict[str, Any], txn: JobTxn | None) -> BackupJob:
    """blockdev.c do_blockdev_backup: `args` are BlockdevBackup's wire members; the
    target is an existing node (device or node name)."""
    layer = jobs.layer
    bs = layer.get_root_bs(args["device"])
    target = layer.lookup_bs(args["target"], args["target"])
    return backup_job_create(jobs, args.get("job-id"), bs, target, args.get("speed") or 0,
                             args["sync"], None, bool(args.get("compress")),
                             args.get("on-source-error") or "report",
                             args.get("on-target-error") or "report", txn)


class BackupCommands:
    """`drive-backup` and `blockdev-backup` (both boxed: the handler gets the
    DriveBackup / BlockdevBackup struct, wire names): the job starts at once
    (qmp_drive_backup, qmp_blockdev_backup; not a transaction in 2.11)."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    @qmp_command("drive-backup")
    def drive_backup(self, backup: dict[str, Any]) -> None:
        """qmp_drive_backup."""
        self.jobs.start(do_drive_backup(self.jobs, backup, None))

    @qmp_command("blockdev-backup")
    def blockdev_backup(self, backup: dict[str, Any]) -> None:
        """qmp_blockdev_backup."""
        self.jobs.start(do_blockdev_backup(self.jobs, backup, None))


def _job_txn(props: TransactionProperties) -> JobTxn | None:
    """The transaction's job group (block_job_txn_new when grouped), made by the
    first backup action that needs it."""
    if not props.grouped:
        return None
    if props.job_txn is None:
        props.job_txn = JobTxn()
    txn: JobTxn = props.job_txn
    return txn


@attrs.define(kw_only=True, eq=False)
class BackupAction(Action):
    """drive_backup_* / blockdev_backup_*: prepare creates the job (in the
    transaction's group when grouped), commit starts it, abort cancels it
    synchronously (a job that never started sends no event) and deletes a target
    file this action created; clean has nothing to release (no requests wait for
    the drain QEMU ends there)."""

    jobs: Jobs
    kind: str
    data: dict[str, Any]
    job: BackupJob | None = None
    created_file: str | None = None

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        txn = _job_txn(props)
        if self.kind == "drive-backup":
            self.job = do_drive_backup(self.jobs, self.data, txn, self._created)
        else:
            self.job = do_blockdev_backup(self.jobs, self.data, txn)

    def _created(self, path: str) -> None:
        self.created_file = path

    def commit(self, layer: BlockLayer) -> None:
        assert self.job is not None
        self.jobs.start(self.job)

    def abort(self, layer: BlockLayer) -> None:
        job = self.job
        if job is not None:
            # A job that never started leaves its group first: 2.11's
            # block_job_completed_txn_abort would wait (block_job_finish_sync) for the
            # group's other never-started jobs, which cannot run; each aborted action
            # drops its own job instead, silently (block.md §5).
            if job.txn is not None and not job.started():
                job.txn.jobs.remove(job)
                job.txn = None
            self.jobs.cancel_sync(job)
            self.job = None
        if self.created_file is not None:
            layer.io.remove_temporary(self.created_file)
            self.created_file = None


def backup_actions(jobs: Jobs) -> dict[str, Callable[[BlockLayer, dict[str, Any]], Action]]:
    """The `drive-backup` and `blockdev-backup` entries of the transaction's action
    table (blockdev.c actions[]) for the jobs of one machine."""
    return {
        "drive-backup": lambda layer, data: BackupAction(jobs=jobs, kind="drive-backup",
                                                         data=data),
        "blockdev-backup": lambda layer, data: BackupAction(jobs=jobs, kind="blockdev-backup",
                                                            data=data),
    }
