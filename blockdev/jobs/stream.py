"""`block-stream`: the stream job of QEMU 2.11 (block/stream.c, blockdev.c
qmp_block_stream), on the common job model of `blockdev.jobs.core`.

Pure model of the `blockdev` layer. The job pulls the data of the images between
its node and `base` into the node, through the data path (`blockdev.io`, loaded
when the job first runs): a chunk of STREAM_BUFFER_SIZE that the node does not
allocate but an image above `base` does is read with copy-on-read, which writes the
whole clusters into the node. The chunk takes the simulated disk's time
(`io_delay_ns`), and with a speed the rate limit's delay follows; the delay is
recomputed only after a chunk that copied something while a speed is set, so after
`block-job-set-speed 0` the job keeps its last delay (block.md §4.4, the 2.11 quirk).

When it ends (in the main loop, `stream_complete`): on success the node's image
header names `backing-file`, `base`'s name or base-node's file name (or nothing),
the node's backing becomes `base` and the nodes between are dropped; a cancelled or
failed job, or one that ignored an error, leaves the chain as it was. A node that
was read-only is made read-only again. `find_backing_image` (bdrv_find_backing_image)
is shared with `blockdev.jobs.commit`.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Generator

import attrs

from blockdev.graph import PERM_ALL, Node
from blockdev.image.formats.base import path_combine, path_has_protocol
from blockdev.image.lock import Perm
from blockdev.jobs.core import BlockJob, Co, Jobs
from schema.errors import QERR_BASE_NOT_FOUND, GenericError
from schema.handlers import qmp_command

STREAM_BUFFER_SIZE = 512 * 1024  # bytes per iteration [block/stream.c]


def _realpath(path: str) -> str | None:
    """realpath(3): None when a component does not exist."""
    try:
        return os.path.realpath(path, strict=True)
    except OSError:
        return None


def find_backing_image(bs: Node, backing_file: str) -> Node | None:
    """block.c bdrv_find_backing_image: the node below `bs` whose overlay records
    `backing_file` as its backing file. With a protocol on either side the names are
    compared as they are (also against the overlay's full backing name); otherwise
    both are made relative to the overlay's file name and compared as real paths
    (the one lookup in the file system, as QEMU's realpath)."""
    from blockdev.open import full_backing_filename

    if bs.driver is None:
        return None
    is_protocol = path_has_protocol(backing_file)
    curr: Node = bs
    while curr.backing is not None and curr.backing.bs is not None:
        below = curr.backing.bs
        if is_protocol or path_has_protocol(curr.backing_file):
            if backing_file == curr.backing_file:
                return below
            try:
                if backing_file == full_backing_filename(curr, curr.backing_file):
                    return below
            except GenericError:
                pass
        else:
            wanted = _realpath(path_combine(curr.filename, backing_file))
            recorded = _realpath(path_combine(curr.filename, curr.backing_file))
            if wanted is not None and recorded is not None and wanted == recorded:
                return below
        curr = below
    return None


@attrs.define(kw_only=True, eq=False)
class StreamJob(BlockJob):
    """StreamBlockJob."""

    job_type = "stream"

    base: Node | None = None
    on_error: str = "report"
    backing_file_str: str | None = None
    was_read_only: bool = False  # s->bs_flags without BDRV_O_RDWR

    def run(self) -> Co:
        """stream_run."""
        from blockdev import io

        bs = self.bs
        ret = 0
        if bs.backing is not None:
            try:
                self.len = io.bdrv_getlength(bs)
            except io.BlockIOError as e:
                ret = -e.errno
            else:
                ret = yield from self._stream(bs)
        self.defer_to_main_loop(lambda: self._complete(ret))

    def _stream(self, bs: Node) -> Generator[None, None, int]:
        """stream_run's loop; returns the error to end with (0, or one that was
        ignored: the backing file stays then)."""
        from blockdev import io

        base = self.base
        # bdrv_enable_copy_on_read: guest reads help when the whole chain goes (copy
        # on read does not know about a base).
        cor_before = bs.open_flags.copy_on_read
        if base is None:
            bs.open_flags.copy_on_read = True
        offset = 0
        delay_ns = 0
        error = 0
        n = 0
        while offset < self.len:
            yield from self.sleep_ns(delay_ns)
            if self.cancelled:
                break
            copy = False
            err = 0
            try:
                allocated, n = io.bdrv_is_allocated(bs, offset, STREAM_BUFFER_SIZE)
                if not allocated:
                    backing = bs.backing_bs
                    assert backing is not None
                    # only what lies above base (the end of the backing file ends it)
                    copy, n = io.bdrv_is_allocated_above(backing, base, offset, n)
                    if not copy and n == 0:
                        n = self.len - offset
                if copy:
                    yield from self.io(self.io_delay_ns(n))
                    io.bdrv_pread(bs, offset, n, copy_on_read=True)
            except io.BlockIOError as e:
                err = e.errno
            if err:
                action = self.error_action(self.on_error, True, err)
                if action == "stop":
                    n = 0
                    continue
                if error == 0:
                    error = -err
                if action == "report":
                    break
                n = n or min(STREAM_BUFFER_SIZE, self.len - offset)
            self.offset += n
            if copy and self.speed:
                delay_ns = self.rate_delay_ns(n)
            offset += n
        if base is None:
            bs.open_flags.copy_on_read = cor_before
        # an error that was ignored keeps the backing file
        return error

    def _complete(self, ret: int) -> None:
        """stream_complete: the new backing file (header, then graph), the node's
        read-only state back, and the job's end."""
        from blockdev import io

        layer = self.layer
        bs = self.bs
        base = self.base
        if not self.cancelled and bs.backing is not None and ret == 0:
            base_id = base_fmt = None
            if base is not None:
                base_id = self.backing_file_str
                if base.driver is not None:
                    base_fmt = base.driver.format_name
            try:
                io.bdrv_change_backing_file(bs, base_id, base_fmt)
            except io.BlockIOError as e:
                ret = -e.errno
            try:
                layer.set_backing_hd(bs, base)
            except GenericError as e:
                layer.host.error_report(e.desc)
                ret = -errno_mod.EPERM
        if self.was_read_only and not bs.read_only:
            # give up write permission before the node becomes read-only again
            assert self.blk is not None
            layer.blk_set_perm(self.blk, 0, PERM_ALL)
            try:
                layer.reopen_read_only(bs, True)
            except GenericError:
                pass
        self.registry.completed(self, ret)


def stream_start(jobs: Jobs, job_id: str | None, bs: Node, base: Node | None,
                 backing_file_str: str | None, speed: int, on_error: str) -> StreamJob:
    """block/stream.c stream_start: the node read-write for the job, the job on it
    and on every node down to (not including) base, then started."""
    layer = jobs.layer
    was_read_only = bs.read_only
    if was_read_only:
        layer.reopen_read_only(bs, False)
    job = StreamJob(registry=jobs, base=base, on_error=on_error,
                    backing_file_str=backing_file_str, was_read_only=was_read_only)
    try:
        jobs.create(job, job_id, bs,
                    int(Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD),
                    int(Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.WRITE), speed)
    except GenericError:
        if was_read_only and not bs.read_only:
            layer.reopen_read_only(bs, True)
        raise
    node = bs.backing_bs
    while node is not None and node is not base:
        jobs.add_bdrv(job, "intermediate node", node, 0,
                      int(Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED))
        node = node.backing_bs
    jobs.start(job)
    return job


class StreamCommands:
    """The `block-stream` command."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    @qmp_command("block-stream")
    def block_stream(self, device: str, job_id: str | None = None, base: str | None = None,
                     base_node: str | None = None, backing_file: str | None = None,
                     speed: int | None = None, on_error: str | None = None) -> None:
        """blockdev.c qmp_block_stream, its checks in QEMU's order (block.md §4.4)."""
        layer = self.jobs.layer
        bs = layer.lookup_bs(device, device)
        if base is not None and base_node is not None:
            raise GenericError("'base' and 'base-node' cannot be specified at the same time")
        base_bs: Node | None = None
        base_name: str | None = None
        if base is not None:
            base_bs = find_backing_image(bs, base)
            if base_bs is None:
                raise GenericError(QERR_BASE_NOT_FOUND % base)
            base_name = base
        if base_node is not None:
            base_bs = layer.lookup_bs(None, base_node)
            if base_bs is bs or not bs.chain_contains(base_bs):
                raise GenericError(f"Node '{base_node}' is not a backing image of '{device}'")
            base_name = base_bs.filename
        node: Node | None = bs
        while node is not None and node is not base_bs:
            node.check_op("stream")
            node = node.backing_bs
        if base_bs is None and backing_file is not None:
            raise GenericError("backing file specified, but streaming the entire chain")
        if backing_file is not None:
            base_name = backing_file
        stream_start(self.jobs, job_id, bs, base_bs, base_name, speed or 0,
                     on_error or "report")
