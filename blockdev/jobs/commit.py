"""`block-commit`: the command for both cases, and the intermediate commit job of
QEMU 2.11 (blockdev.c qmp_block_commit, block/commit.c), on the common job model of
`blockdev.jobs.core`.

Pure model of the `blockdev` layer. The command checks its arguments in QEMU's order
(block.md §4.5). When `top` is the active layer, the job is the mirror-based active
commit of `blockdev.jobs.mirror.commit_active_start` (imported when first needed);
otherwise it is `CommitJob`:

* `commit_start` makes `base` writable, puts a `commit_top` filter
  (`blockdev.jobs.filters`) above `top` (so that nothing above needs consistent
  reads of the chain being changed), attaches the job to every node from `top` down
  to `base`, and gives the job a BlockBackend on `base` (to write) and on `top` (to
  read);
* the job copies every COMMIT_BUFFER_SIZE chunk allocated between `top` and `base`
  from `top`'s view into `base` through the data path (`blockdev.io`), in the
  simulated disk's time, with QEMU's rate limit (the delay is recomputed only after a
  chunk that copied while a speed is set, so it survives `speed 0`). Its error policy
  is always `report`, and its BLOCK_JOB_ERROR always says `write` (commit_run passes
  the policy and the direction to block_job_error_action the wrong way round);
* `commit_complete`: on success the overlay of `top` points at `base` with the new
  name in its image header (`bdrv_drop_intermediate`), so the nodes from the filter
  down to above `base` are dropped; cancelled or failed, the filter is taken out and
  the chain stays. `base` is made read-only again if it was.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import attrs

from blockdev import graph as g
from blockdev.graph import PERM_ALL, Backend, Node
from blockdev.image.lock import Perm
from blockdev.jobs.core import BlockJob, Co, Jobs
from blockdev.jobs.filters import COMMIT_TOP, drop_filter, new_filter_node
from blockdev.jobs.stream import find_backing_image
from schema.errors import QERR_BASE_NOT_FOUND, DeviceNotFound, GenericError
from schema.handlers import qmp_command

if TYPE_CHECKING:
    from blockdev.layer import BlockLayer

COMMIT_BUFFER_SIZE = 512 * 1024  # bytes per iteration [block/commit.c]

# blockdev.jobs.mirror.commit_active_start(jobs, job_id, bs, base, speed, on_error,
# filter_node_name): the active commit.
ActiveStart = Callable[[Jobs, "str | None", Node, Node, int, str, "str | None"], None]


@attrs.define(kw_only=True, eq=False)
class CommitJob(BlockJob):
    """CommitBlockJob."""

    job_type = "commit"

    commit_top_bs: Node | None = None
    top: Backend | None = None
    base: Backend | None = None
    on_error: str = "report"
    base_was_read_only: bool = False
    backing_file_str: str | None = None

    def run(self) -> Co:
        """commit_run."""
        ret = yield from self._commit()
        self.defer_to_main_loop(lambda: self._complete(ret))

    def _commit(self) -> Generator[None, None, int]:
        from blockdev import io
        from blockdev.commands import truncate

        assert self.top is not None and self.base is not None
        top, base = self.top, self.base
        try:
            self.len = io.blk_getlength(top)
            base_len = io.blk_getlength(base)
        except io.BlockIOError as e:
            return -e.errno
        if base_len < self.len:
            # blk_truncate: the image grows, then the model's size follows
            assert base.bs is not None
            try:
                io.bdrv_truncate(base.bs, self.len)
                truncate(self.layer, base.bs, self.len)
            except io.BlockIOError as e:
                return -e.errno
            except GenericError as e:
                return -_truncate_errno(e)
        offset = 0
        delay_ns = 0
        while offset < self.len:
            yield from self.sleep_ns(delay_ns)
            if self.cancelled:
                break
            copy = False
            n = 0
            try:
                assert top.bs is not None
                copy, n = io.bdrv_is_allocated_above(top.bs, base.bs, offset,
                                                     COMMIT_BUFFER_SIZE)
                if copy:
                    yield from self.io(self.io_delay_ns(n))
                    data = io.blk_pread(top, offset, n)
                    io.blk_pwrite(base, offset, data)
            except io.BlockIOError as e:
                # block_job_error_action(job, false, s->on_error, -ret): the policy
                # is always report, the operation always write
                self.error_action("report", False, e.errno)
                return -e.errno
            self.offset += n
            if copy and self.speed:
                delay_ns = self.rate_delay_ns(n)
            offset += n
        return 0

    def _complete(self, ret: int) -> None:
        """commit_complete."""
        layer = self.layer
        assert self.top is not None and self.base is not None
        top, base, commit_top = self.top.bs, self.base.bs, self.commit_top_bs
        assert top is not None and base is not None and commit_top is not None
        # commit_top and top stay until the filter has left the graph
        top.refcnt += 1
        commit_top.refcnt += 1
        # the base BlockBackend still takes write and resize: it goes first
        layer.blk_unref(self.base)
        self.base = None
        remove_filter = False
        if not self.cancelled and ret == 0:
            ret = drop_intermediate(layer, commit_top, base, self.backing_file_str)
        else:
            remove_filter = True
        if self.base_was_read_only and not base.read_only:
            try:
                layer.reopen_read_only(base, True)
            except GenericError:
                pass
        layer.blk_unref(self.top)
        self.top = None
        # the job's blockers go before it completes, so that the chain can change
        self.registry.remove_all_bdrv(self)
        self.registry.completed(self, ret)
        if remove_filter:
            drop_filter(layer, commit_top)
        layer.unref(commit_top)
        layer.unref(top)


def _truncate_errno(e: GenericError) -> int:
    """The errno of blk_truncate's failure, from the text bdrv_truncate gave."""
    if e.desc == "Image is read-only":
        return errno_mod.EACCES
    if e.desc == "Image format driver does not support resize":
        return errno_mod.ENOTSUP
    return errno_mod.EIO


def backing_update_filename(layer: BlockLayer, parent: Node, base: Node,
                            filename: str) -> None:
    """block.c bdrv_backing_update_filename: the overlay's image header names the new
    backing file (the overlay reopened read-write for it if need be)."""
    from blockdev import io

    was_read_only = parent.read_only
    if was_read_only:
        layer.reopen_read_only(parent, False)
    try:
        io.bdrv_change_backing_file(
            parent, filename, base.driver.format_name if base.driver is not None else "")
    except io.BlockIOError as e:
        raise GenericError(f"Could not update backing file link: {os.strerror(e.errno)}",
                           ) from None
    finally:
        if was_read_only:
            try:
                layer.reopen_read_only(parent, True)
            except GenericError:
                pass


def drop_intermediate(layer: BlockLayer, top: Node, base: Node,
                      backing_file_str: str | None) -> int:
    """block.c bdrv_drop_intermediate: every parent of `top` moves to `base`; a
    backing parent records `backing_file_str` (else base's filename) in its header
    first. Errors are reported (error_report) and returned as -errno."""
    top.refcnt += 1
    try:
        if top.driver is None or base.driver is None or not top.chain_contains(base):
            return -errno_mod.EIO
        name = backing_file_str if backing_file_str is not None else base.filename
        for c in list(top.parents):
            try:
                g.check_update_perm(base, c.perm, c.shared, [c])
            except GenericError as e:
                g.abort_perm_update(base)
                layer.host.error_report(e.desc)
                return -errno_mod.EPERM
            if c.role == "backing" and isinstance(c.parent, Node):
                try:
                    backing_update_filename(layer, c.parent, base, name)
                except GenericError as e:
                    g.abort_perm_update(base)
                    layer.host.error_report(e.desc)
                    return -errno_mod.EPERM
            base.refcnt += 1
            layer.replace_child(c, base)
            layer.unref(top)
        return 0
    finally:
        layer.unref(top)


def commit_start(jobs: Jobs, job_id: str | None, bs: Node, base: Node, top: Node, speed: int,
                 on_error: str, backing_file_str: str | None,
                 filter_node_name: str | None) -> CommitJob:
    """block/commit.c commit_start."""
    assert top is not bs
    if top is base:
        raise GenericError("Invalid files for merge: top and base are the same")
    layer = jobs.layer
    job = CommitJob(registry=jobs, on_error=on_error, backing_file_str=backing_file_str)
    jobs.create(job, job_id, bs, 0, PERM_ALL, speed)
    commit_top: Node | None = None
    try:
        job.base_was_read_only = base.read_only
        if base.read_only:
            layer.reopen_read_only(base, False)
        commit_top = new_filter_node(layer, COMMIT_TOP, filter_node_name, rdwr=False,
                                     total_sectors=top.total_sectors)
        try:
            layer.set_backing_hd(commit_top, top)
            layer.replace_node(top, commit_top)
        except GenericError:
            layer.unref(commit_top)
            commit_top = None
            raise
        job.commit_top_bs = commit_top
        layer.unref(commit_top)  # its parents hold it now
        node: Node | None = top
        while node is not None and node is not base:
            jobs.add_bdrv(job, "intermediate node", node, 0,
                          int(Perm.WRITE_UNCHANGED | Perm.WRITE))
            node = node.backing_bs
        jobs.add_bdrv(job, "base", base, 0, PERM_ALL)
        job.base = layer.blk_new_with_bs(
            base, int(Perm.CONSISTENT_READ | Perm.WRITE | Perm.RESIZE),
            int(Perm.CONSISTENT_READ | Perm.GRAPH_MOD | Perm.WRITE_UNCHANGED))
        job.top = layer.blk_new_with_bs(top, 0, PERM_ALL)
    except GenericError:
        if job.base is not None:
            layer.blk_unref(job.base)
        if job.top is not None:
            layer.blk_unref(job.top)
        if commit_top is not None:
            layer.replace_node(commit_top, top)
        jobs.early_fail(job)
        raise
    jobs.start(job)
    return job


def _commit_active_start() -> ActiveStart:
    """blockdev.jobs.mirror's commit_active_start, loaded on the first active commit
    (the mirror job is not needed by a machine that never commits its active layer)."""
    from blockdev.jobs.mirror import commit_active_start

    return commit_active_start


class CommitCommands:
    """The `block-commit` command."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    @qmp_command("block-commit")
    def block_commit(self, device: str, job_id: str | None = None, base: str | None = None,
                     top: str | None = None, backing_file: str | None = None,
                     speed: int | None = None, filter_node_name: str | None = None) -> None:
        """blockdev.c qmp_block_commit, its checks in QEMU's order (block.md §4.5). The
        device lookup comes first: libvirt tells DeviceNotFound from the rest."""
        layer = self.jobs.layer
        on_error = "report"
        try:
            bs = layer.get_root_bs(device)
        except GenericError as e:
            try:
                layer.lookup_bs(device, device)
            except GenericError:
                raise DeviceNotFound(f"Device '{device}' not found") from None
            raise e from None
        bs.check_op("commit-source")
        top_bs: Node | None = bs
        if top is not None and bs.filename != top:
            top_bs = find_backing_image(bs, top)
        if top_bs is None:
            raise GenericError(f"Top image file {top} not found")
        base_bs = find_backing_image(top_bs, base) if base is not None else top_bs.find_base()
        if base_bs is None:
            raise GenericError(QERR_BASE_NOT_FOUND % base)
        stop = base_bs.backing_bs
        node: Node | None = top_bs
        while node is not None and node is not stop:
            node.check_op("commit-target")
            node = node.backing_bs
        if top_bs is base_bs:
            raise GenericError("cannot commit an image into itself")
        if top_bs is bs:
            if backing_file is not None:
                raise GenericError("'backing-file' specified, but 'top' is the active layer")
            _commit_active_start()(self.jobs, job_id, bs, base_bs, speed or 0, on_error,
                                   filter_node_name)
            return
        overlay = bs.find_overlay(top_bs)
        assert overlay is not None
        overlay.check_op("commit-target")
        commit_start(self.jobs, job_id, bs, base_bs, top_bs, speed or 0, on_error,
                     backing_file, filter_node_name)
