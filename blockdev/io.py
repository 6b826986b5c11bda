"""The generic request path through the block graph: QEMU's block/io.c and the I/O
half of block/block-backend.c.

Pure part of the `blockdev` layer (no trio: `blockdev.io_edge` is the one place that
waits on the Machine's clock). Its neighbours: `blockdev.graph` (the nodes and
backends it walks), `blockdev.iotypes` (its error and the driver interfaces),
`blockdev.drivers.dataio` (each driver's I/O callbacks; this module hands itself to
them as a `GenericIO`), `blockdev.accounting` and `blockdev.throttle` (the leaky
buckets that say how long a request must wait). All of it loads with the first
request, never at start-up.

Node level (bdrv_*): a request on a node is checked (bdrv_check_byte_request: the
medium, a negative offset, the size limit; a write on a read-only node, or one with
a read-only bitmap, is EPERM as in bdrv_co_pwritev), passes the node's before-write
notifiers (the write threshold, BLOCK_WRITE_THRESHOLD [block/write-threshold.c
before_write_notify]), goes to the driver's callback, and on success dirties the
node's enabled bitmaps and moves its `wr_highest_offset` [bdrv_aligned_pwritev]. A
format driver's callbacks reach their `file` child through these same functions, so
every node on the way sees the request; format nodes fall through to their backing
node for what they do not allocate [bdrv_co_block_status / the read path of the
format drivers]; a node opened with copy-on-read=on copies what it reads from its
backing chain into itself [bdrv_co_do_copy_on_readv]; a discard does nothing without
discard=unmap [bdrv_co_pdiscard].

    bdrv_pread(bs, offset, length, *, copy_on_read=False) -> bytes
    bdrv_pwrite(bs, offset, data, *, fua=False) -> None
    bdrv_pwrite_zeroes(bs, offset, length, *, may_unmap=False) -> None
    bdrv_pwrite_compressed(bs, offset, data) -> None   (qcow2: one whole cluster)
    bdrv_pdiscard(bs, offset, length) -> None
    bdrv_flush(bs) -> None
    bdrv_block_status(bs, offset, length) -> BlockStatus        (this node only)
    bdrv_block_status_above(bs, base, offset, length) -> BlockStatus
    bdrv_is_allocated(bs, offset, length) -> tuple[bool, int]
    bdrv_is_allocated_above(top, base, offset, length) -> tuple[bool, int]
    bdrv_getlength(bs) -> int
    add_before_write_notifier(bs, notify) / remove_before_write_notifier(bs, notify)
    bdrv_truncate(bs, size) -> None           (a format engine resizing its file)
    bdrv_make_empty(bs) -> None               (the image allocates nothing afterwards)
    bdrv_snapshot_create(bs, ...) -> bool     (an internal snapshot written into the image)
    bdrv_snapshot_delete(bs, id, name) -> bool
    bdrv_close(bs) -> None                    (the data engine's close; the layer calls it)
    bdrv_change_backing_file(bs, backing_file, backing_fmt) -> None  (the image header)

Every failure raises `BlockIOError` with a positive `errno` (its `strerror` is the
text QEMU prints).

BlockBackend level (blk_*): what frontends use (guest devices, an NBD export, HMP
qemu-io, the guest workload). They add blk_check_byte_request (the medium, the end of
the device), EPERM for a write on a read-only medium, write-cache FUA
(cache.writeback=off), the charge of the request to its throttle buckets and, when `account=True`, the
BlockAcctStats of `query-blockstats` [block/accounting.c]:

    blk_pread(blk, offset, length, *, account=False) -> bytes
    blk_pwrite(blk, offset, data, *, fua=False, account=False) -> None
    blk_pwrite_zeroes(blk, offset, length, *, may_unmap=False, account=False) -> None
    blk_pwrite_compressed(blk, offset, data) -> None
    blk_pdiscard(blk, offset, length) -> None
    blk_flush(blk, *, account=False) -> None
    blk_getlength(blk) -> int

Throttling is a deadline: `blk_throttle_deadline(blk, op, nbytes, now)` is the
Machine-clock time at which the request may be submitted (`now` if at once), counting
the BlockBackend's throttle group and every throttle filter node on its path
[util/throttle.c throttle_schedule_timer]. A synchronous caller that cannot wait
submits at once (the request is charged either way, as QEMU charges it when it goes);
an async edge awaits `blockdev.io_edge.blk_co_wait(blk, op, nbytes, now)` (`now`
reads the Machine's clock) and then calls `blk_*` with no await in between.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from blockdev import accounting
from blockdev.graph import Backend, Node
from blockdev.iotypes import BlockIOError, BlockStatus

if TYPE_CHECKING:
    from blockdev.iotypes import DataOps

__all__ = [
    "BlockIOError", "BlockStatus", "add_before_write_notifier", "bdrv_block_status",
    "bdrv_block_status_above", "bdrv_change_backing_file", "bdrv_flush", "bdrv_getlength",
    "bdrv_is_allocated", "bdrv_is_allocated_above", "bdrv_make_empty", "bdrv_pdiscard",
    "bdrv_pread", "bdrv_pwrite", "bdrv_pwrite_compressed", "bdrv_pwrite_zeroes",
    "bdrv_snapshot_create", "bdrv_snapshot_delete", "bdrv_truncate",
    "blk_flush", "blk_getlength", "blk_pdiscard", "blk_pread", "blk_pwrite",
    "blk_pwrite_compressed", "blk_pwrite_zeroes", "blk_throttle_deadline",
    "remove_before_write_notifier",
]

# BDRV_REQUEST_MAX_SECTORS << BDRV_SECTOR_BITS [include/block/block_int.h]
BDRV_REQUEST_MAX_BYTES = min(2**31 - 1, (2**63 - 1) // 512) & ~511
INT_MAX = 2**31 - 1


# --- node level ------------------------------------------------------------------------------


def _ops(bs: Node) -> DataOps:
    from blockdev.drivers.dataio import ops_for

    return ops_for(bs)


def _fault(bs: Node, op: str) -> None:
    """The emulator's fault-injection hook (`blockdev.guest_io.set_fault`): the node
    fails `op` with the injected errno."""
    if bs.faults:
        err = bs.faults.get(op)
        if err is not None:
            raise BlockIOError(err)


def _check_request(bs: Node, offset: int, length: int) -> None:
    """bdrv_check_byte_request."""
    if length > BDRV_REQUEST_MAX_BYTES:
        raise BlockIOError(errno_mod.EIO)
    if bs.driver is None or not bs.is_inserted():
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if offset < 0 or length < 0:
        raise BlockIOError(errno_mod.EIO)


def _check_write(bs: Node, offset: int, length: int) -> None:
    """bdrv_co_pwritev's checks, then bdrv_check_byte_request."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if bs.read_only:
        raise BlockIOError(errno_mod.EPERM)
    _check_request(bs, offset, length)


def bdrv_getlength(bs: Node) -> int:
    """bdrv_getlength: whole sectors; ENOMEDIUM without a driver."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    return bs.length()


def bdrv_pread(bs: Node, offset: int, length: int, *, copy_on_read: bool = False) -> bytes:
    """bdrv_co_preadv / bdrv_aligned_preadv: what the node reads at [offset,
    offset+length); past the node's end it reads zeros, as the aligned read does.
    `copy_on_read` is BDRV_REQ_COPY_ON_READ (a stream job's reads): this request
    copies as a node opened with copy-on-read=on does for all of them."""
    _check_request(bs, offset, length)
    _fault(bs, "read")
    if length == 0:
        return b""
    if (copy_on_read or bs.open_flags.copy_on_read) and bs.backing_bs is not None \
            and not bs.read_only:
        _copy_on_read(bs, offset, length)
    return _ops(bs).pread(_IO, bs, offset, length)


def _copy_on_read(bs: Node, offset: int, length: int) -> None:
    """bdrv_co_do_copy_on_readv: the whole clusters the read touches that the node
    does not allocate are read (through the backing chain) and written into the
    node by its driver, zeros as zero writes; no dirty bitmap or write threshold
    sees these writes (they bypass bdrv_aligned_pwritev)."""
    image = bs.state
    cluster = getattr(getattr(image, "facts", None), "cluster_size", None) or 512
    size = bs.length()
    pos = offset - offset % cluster
    end = min(size, -(-(offset + length) // cluster) * cluster)
    ops = _ops(bs)
    while pos < end:
        st = bdrv_block_status(bs, pos, end - pos)
        n = st.pnum or end - pos
        if not st.allocated:
            data = ops.pread(_IO, bs, pos, n)
            if any(data):
                ops.pwrite(_IO, bs, pos, data)
            else:
                ops.pwrite_zeroes(_IO, bs, pos, n, False)
        pos += n


def add_before_write_notifier(bs: Node, notify: Callable[[Node, int, int], None]) -> None:
    """bdrv_add_before_write_notifier: `notify(bs, offset, bytes)` runs before every
    write and discard of `bs` reaches its driver (newest first, as
    notifier_with_return_list_add inserts at the head); a BlockIOError it raises
    fails the request with that errno (a backup job's copy-before-write)."""
    bs.before_write.insert(0, notify)


def remove_before_write_notifier(bs: Node, notify: Callable[[Node, int, int], None]) -> None:
    """notifier_with_return_remove."""
    bs.before_write.remove(notify)


def _before_write(bs: Node, offset: int, length: int) -> None:
    """bdrv_aligned_pwritev: a node with a read-only bitmap refuses (EPERM,
    bdrv_has_readonly_bitmaps), then the before-write notifiers: those added with
    `add_before_write_notifier`, then the write threshold."""
    if any(bm.readonly for bm in bs.bitmaps):
        raise BlockIOError(errno_mod.EPERM)
    for notify in list(bs.before_write):
        notify(bs, offset, length)
    threshold = bs.write_threshold
    if threshold <= 0:
        return
    if offset > threshold:
        amount = offset - threshold + length
    elif offset + length > threshold:
        amount = offset + length - threshold
    else:
        return
    bs.write_threshold = 0
    host = getattr(bs, "host", None)
    if host is not None:
        host.emit("BLOCK_WRITE_THRESHOLD", {"node-name": bs.node_name,
                                            "amount-exceeded": amount,
                                            "write-threshold": threshold})


def _after_write(bs: Node, offset: int, length: int) -> None:
    """bdrv_aligned_pwritev after a successful write: bdrv_set_dirty on every
    enabled bitmap (a frozen one is not: its successor, itself on the node's list,
    records the write), wr_highest_offset, and the node's size when the write went
    past its end."""
    _set_dirty(bs, offset, length)
    end = offset + length
    if end > bs.wr_highest_offset:
        bs.wr_highest_offset = end
    sectors = (end + 511) // 512
    if sectors > bs.total_sectors and not (bs.driver and bs.driver.has_variable_length):
        bs.total_sectors = sectors


def _set_dirty(bs: Node, offset: int, length: int) -> None:
    """bdrv_set_dirty: every enabled bitmap (bdrv_dirty_bitmap_enabled: neither
    disabled nor frozen)."""
    for bm in bs.bitmaps:
        if not bm.frozen:
            bm.mark(offset, length)


def _write_starts(bs: Node, offset: int, length: int) -> bool:
    """What every write passes before its driver: the checks, an injected fault,
    and (unless it is empty: False) the before-write notifiers."""
    _check_write(bs, offset, length)
    _fault(bs, "write")
    if length == 0:
        return False
    _before_write(bs, offset, length)
    return True


def bdrv_pwrite(bs: Node, offset: int, data: bytes, *, fua: bool = False) -> None:
    """bdrv_co_pwritev: `data` at `offset` (BDRV_REQ_FUA flushes after)."""
    length = len(data)
    if not _write_starts(bs, offset, length):
        return
    ops = _ops(bs)
    if bs.detect_zeroes != "off" and not any(data):
        # bdrv_aligned_pwritev: detect-zeroes turns an all-zero write into a zero write
        ops.pwrite_zeroes(_IO, bs, offset, length, bs.detect_zeroes == "unmap"
                          and bs.open_flags.unmap)
    else:
        ops.pwrite(_IO, bs, offset, data)
    if fua:
        ops.flush(_IO, bs)
    _after_write(bs, offset, length)


def bdrv_pwrite_compressed(bs: Node, offset: int, data: bytes) -> None:
    """bdrv_co_pwritev with BDRV_REQ_WRITE_COMPRESSED: the generic write path, with
    the driver's compressed write (bdrv_driver_pwritev_compressed); ENOTSUP for a
    driver without one (all but qcow, qcow2, vmdk). qcow2's data engine stores a
    compressed cluster; qcow's and vmdk's store it uncompressed (same bytes)."""
    length = len(data)
    if not _write_starts(bs, offset, length):
        return
    fmt = bs.driver.format_name if bs.driver is not None else ""
    if fmt not in ("qcow", "qcow2", "vmdk") or getattr(bs.state, "facts", None) is None:
        raise BlockIOError(errno_mod.ENOTSUP)
    from blockdev.drivers.blkdebug_io import blkdbg_event
    from blockdev.drivers.format_io import engine

    eng = engine(_IO, bs)
    blkdbg_event(bs.file_bs, "write_compressed")
    write = getattr(eng, "write_compressed", None)
    if write is not None:
        write(offset, data)
    else:
        eng.write(offset, data)  # qcow and vmdk compress in QEMU; stored plain here
    _after_write(bs, offset, length)


def bdrv_pwrite_zeroes(bs: Node, offset: int, length: int, *, may_unmap: bool = False) -> None:
    """bdrv_co_pwrite_zeroes (BDRV_REQ_ZERO_WRITE, BDRV_REQ_MAY_UNMAP)."""
    if not _write_starts(bs, offset, length):
        return
    _ops(bs).pwrite_zeroes(_IO, bs, offset, length, may_unmap and bs.open_flags.unmap)
    _after_write(bs, offset, length)


def bdrv_pdiscard(bs: Node, offset: int, length: int) -> None:
    """bdrv_co_pdiscard: a read-only bitmap or node refuses (EPERM); nothing
    happens unless the node was opened with discard=unmap (BDRV_O_UNMAP) and
    its driver can discard; then the before-write notifiers, the driver, and the
    range is dirtied in the bitmaps."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if any(bm.readonly for bm in bs.bitmaps):
        raise BlockIOError(errno_mod.EPERM)
    _check_request(bs, offset, length)
    if bs.read_only:
        raise BlockIOError(errno_mod.EPERM)
    if not bs.open_flags.unmap or length == 0:
        return
    _before_write(bs, offset, length)
    _ops(bs).pdiscard(_IO, bs, offset, length)
    _set_dirty(bs, offset, length)


def bdrv_flush(bs: Node) -> None:
    """bdrv_co_flush: the driver's own flush, then its `file` child's (flush_parent);
    the backing node is not flushed. Nothing to do without a medium."""
    if bs.driver is None or not bs.is_inserted():
        return
    _fault(bs, "flush")
    ops = _ops(bs)
    ops.flush(_IO, bs)
    child = bs.file_bs
    if child is not None and not getattr(ops, "flushes_file", False):
        bdrv_flush(child)


def bdrv_truncate(bs: Node, size: int) -> None:
    """bdrv_truncate's data part, as a format engine grows or shrinks its file:
    file-posix truncates the real file; filters and raw pass it down; a format node
    with a data engine and a resizing driver has its engine resize the image (a
    commit job growing its base); EACCES on a read-only node ("Image is
    read-only"), ENOTSUP elsewhere."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if bs.read_only:
        raise BlockIOError(errno_mod.EACCES)
    fd = getattr(getattr(bs.state, "file", None), "fd", None)
    if fd is not None and bs.driver.protocol:
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            raise BlockIOError(e.errno or errno_mod.EIO) from None
        return
    child = bs.file_bs
    if child is not None and (bs.driver.is_filter or bs.driver.format_name == "raw"):
        shift = 0
        if bs.driver.format_name == "raw" and bs.state is not None:
            shift = int(bs.state.raw_options.get("offset", 0))
        bdrv_truncate(child, size + shift)
        return
    if getattr(bs.state, "facts", None) is not None and bs.driver.truncate is not None:
        # a format with a data engine resizes its image (qcow2_truncate)
        from blockdev.drivers.format_io import engine

        engine(_IO, bs).truncate(size)
        return
    raise BlockIOError(errno_mod.ENOTSUP)


def bdrv_make_empty(bs: Node) -> None:
    """drv->bdrv_make_empty (block/commit.c bdrv_commit's last step): the image
    drops everything it allocates, so that it reads as its backing file again.
    ENOTSUP where the node's data engine has no make_empty (the caller knows
    which drivers have one in QEMU)."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if bs.read_only:
        raise BlockIOError(errno_mod.EPERM)
    if getattr(bs.state, "facts", None) is None:
        raise BlockIOError(errno_mod.ENOTSUP)
    from blockdev.drivers.format_io import engine

    make_empty = getattr(engine(_IO, bs), "make_empty", None)
    if make_empty is None:
        raise BlockIOError(errno_mod.ENOTSUP)
    make_empty()


def _snapshot_engine(bs: Node) -> Any:
    """The data engine of an image that keeps internal snapshots in its file (qcow2),
    else None."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if getattr(bs.state, "facts", None) is None:
        return None
    from blockdev.drivers.format_io import engine
    from blockdev.image.formats.qcow2_data import Qcow2Data

    eng = engine(_IO, bs)
    return eng if isinstance(eng, Qcow2Data) else None


def bdrv_snapshot_create(bs: Node, *, id_str: str, name: str, date_sec: int,
                         date_nsec: int, vm_clock_nsec: int, vm_state_size: int = 0) -> bool:
    """The driver's bdrv_snapshot_create on the node that keeps the snapshots: the
    image's data engine writes the snapshot into the file (qcow2). False when the
    node's image keeps none in its file (the caller's model holds it alone)."""
    eng = _snapshot_engine(bs)
    if eng is None:
        return False
    from blockdev.image.formats import qcow2_snapshot

    qcow2_snapshot.create(eng, id_str=id_str, name=name, date_sec=date_sec,
                          date_nsec=date_nsec, vm_clock_nsec=vm_clock_nsec,
                          vm_state_size=vm_state_size)
    return True


def bdrv_snapshot_delete(bs: Node, snapshot_id: str | None, name: str | None) -> bool:
    """The driver's bdrv_snapshot_delete, as bdrv_snapshot_create; False when the
    image keeps no snapshots in its file."""
    eng = _snapshot_engine(bs)
    if eng is None:
        return False
    from blockdev.image.formats import qcow2_snapshot

    qcow2_snapshot.delete(eng, snapshot_id, name)
    return True


def bdrv_close(bs: Node) -> None:
    """bdrv_close's data part: a format engine writes back what it caches and
    marks its image clean (qcow2_close); errors are not reported, as in QEMU."""
    image = bs.state
    engine = getattr(image, "data", None)
    if engine is None:
        return
    try:
        engine.close()
    except (BlockIOError, OSError):
        pass
    image.data = None


def bdrv_change_backing_file(bs: Node, backing_file: str | None,
                             backing_fmt: str | None) -> None:
    """bdrv_change_backing_file: the driver rewrites the backing file name and format
    recorded in the image (qcow2_change_backing_file -> qcow2_update_header), then
    the node's strings follow. ENOMEDIUM without a driver, EINVAL for a format
    without a file, ENOTSUP where the driver (or its data engine) cannot."""
    drv = bs.driver
    if drv is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if backing_fmt is not None and backing_file is None:
        raise BlockIOError(errno_mod.EINVAL)
    if not drv.change_backing_file:
        raise BlockIOError(errno_mod.ENOTSUP)
    from blockdev.drivers.format_io import engine

    change = getattr(engine(_IO, bs), "change_backing_file", None)
    if change is None:
        raise BlockIOError(errno_mod.ENOTSUP)
    change(backing_file, backing_fmt)
    bs.backing_file = backing_file or ""
    bs.backing_format = backing_fmt or ""


def bdrv_block_status(bs: Node, offset: int, length: int) -> BlockStatus:
    """bdrv_co_block_status of this node alone (want_zero); `pnum` >= 1 unless
    `offset` is at or past the end."""
    if bs.driver is None:
        raise BlockIOError(errno_mod.ENOMEDIUM)
    total = bs.length()
    if offset < 0:
        raise BlockIOError(errno_mod.EIO)
    if offset >= total or length <= 0:
        return BlockStatus(pnum=0)
    length = min(length, total - offset)
    return _ops(bs).block_status(_IO, bs, offset, length)


def bdrv_block_status_above(bs: Node, base: Node | None, offset: int,
                            length: int) -> BlockStatus:
    """bdrv_co_block_status_above: the first node of the chain (from `bs` down to,
    not including, `base`) that allocates the start of the range decides; past a
    backing node's end reads as zero [bdrv_co_block_status's backing check]."""
    first: BlockStatus | None = None
    node: Node | None = bs
    while node is not None and node is not base:
        st = bdrv_block_status(node, offset, length)
        if first is None:
            first = st
        if st.pnum == 0:
            # past this node's end: reads as zeros from the top's point of view
            if node is not bs:
                return BlockStatus(pnum=length, zero=True, allocated=True)
            return st
        if st.allocated:
            return attrs.evolve(st, pnum=min(st.pnum, length))
        length = min(length, st.pnum)
        node = node.backing_bs
    assert first is not None or bs is base
    return BlockStatus(pnum=length) if first is None else attrs.evolve(
        first, pnum=length, allocated=False)


def bdrv_is_allocated(bs: Node, offset: int, length: int) -> tuple[bool, int]:
    """bdrv_is_allocated: does this node allocate the start, and for how long."""
    st = bdrv_block_status(bs, offset, length)
    return st.allocated, st.pnum


def bdrv_is_allocated_above(top: Node, base: Node | None, offset: int,
                            length: int) -> tuple[bool, int]:
    """bdrv_is_allocated_above: allocated anywhere from `top` down to `base`
    (excluded); `pnum` is the longest run with the same answer."""
    st = bdrv_block_status_above(top, base, offset, length)
    return st.allocated, st.pnum


# --- BlockBackend level ----------------------------------------------------------------------


def blk_getlength(blk: Backend) -> int:
    """blk_getlength: ENOMEDIUM without an available medium."""
    bs = blk.bs
    if bs is None or not blk.is_available():
        raise BlockIOError(errno_mod.ENOMEDIUM)
    return bdrv_getlength(bs)


def _blk_check(blk: Backend, offset: int, length: int) -> Node:
    """blk_check_byte_request."""
    if length > INT_MAX:
        raise BlockIOError(errno_mod.EIO)
    bs = blk.bs
    if bs is None or not blk.is_available():
        raise BlockIOError(errno_mod.ENOMEDIUM)
    if offset < 0:
        raise BlockIOError(errno_mod.EIO)
    size = bdrv_getlength(bs)
    if offset > size or size - offset < length:
        raise BlockIOError(errno_mod.EIO)
    return bs


def _now_ns(blk: Backend) -> int:
    bs = blk.bs
    host = getattr(bs, "host", None) if bs is not None else None
    if host is None:
        return 0
    return int(host.clock.now() * 1e9)


def _account(blk: Backend, op: str, nbytes: int, err: int | None) -> None:
    """block_acct_start/done/failed/invalid as a device does around one request
    [block/accounting.c]; the request takes no modelled time."""
    accounting.done(blk, op, nbytes, err, _now_ns(blk))


def _charge(blk: Backend, op: str, nbytes: int) -> None:
    bs = blk.bs
    host = getattr(bs, "host", None) if bs is not None else None
    now = host.clock.now() if host is not None else 0.0
    from blockdev.throttle import charge_path

    charge_path(blk, op, nbytes, now)


def blk_throttle_deadline(blk: Backend, op: str, nbytes: int, now: float) -> float:
    """When (Machine clock seconds) a request of `op` ("read" or "write") and
    `nbytes` may go: the latest of what the BlockBackend's throttle group and each
    throttle filter node on its path allow [throttle_schedule_timer]."""
    from blockdev.throttle import path_deadline

    return path_deadline(blk, op, nbytes, now)


def _guard(blk: Backend, op: str, nbytes: int, account: bool, fn: Any) -> Any:
    try:
        result = fn()
    except BlockIOError as e:
        if account:
            _account(blk, op, nbytes, e.errno)
        raise
    if account:
        _account(blk, op, nbytes, None)
    return result


def _invalid(blk: Backend, op: str, account: bool, fn: Any) -> Any:
    try:
        return fn()
    except BlockIOError:
        if account:
            accounting.invalid(blk, op, _now_ns(blk))
        raise


def blk_pread(blk: Backend, offset: int, length: int, *, account: bool = False) -> bytes:
    """blk_co_preadv."""
    bs = _invalid(blk, "read", account, lambda: _blk_check(blk, offset, length))
    _charge(blk, "read", length)
    return bytes(_guard(blk, "read", length, account, lambda: bdrv_pread(bs, offset, length)))


def _blk_check_write(blk: Backend, offset: int, length: int) -> Node:
    bs = _blk_check(blk, offset, length)
    if blk.is_read_only():
        raise BlockIOError(errno_mod.EPERM)
    return bs


def blk_pwrite(blk: Backend, offset: int, data: bytes, *, fua: bool = False,
               account: bool = False) -> None:
    """blk_co_pwritev: without a write cache every write is FUA."""
    length = len(data)
    bs = _invalid(blk, "write", account, lambda: _blk_check_write(blk, offset, length))
    _charge(blk, "write", length)
    fua = fua or not blk.enable_write_cache
    _guard(blk, "write", length, account, lambda: bdrv_pwrite(bs, offset, data, fua=fua))


def blk_pwrite_compressed(blk: Backend, offset: int, data: bytes) -> None:
    """blk_co_pwritev with BDRV_REQ_WRITE_COMPRESSED (a backup's compressed copy)."""
    length = len(data)
    bs = _blk_check_write(blk, offset, length)
    _charge(blk, "write", length)
    bdrv_pwrite_compressed(bs, offset, data)


def blk_pwrite_zeroes(blk: Backend, offset: int, length: int, *, may_unmap: bool = False,
                      account: bool = False) -> None:
    """blk_co_pwrite_zeroes."""
    bs = _invalid(blk, "write", account, lambda: _blk_check_write(blk, offset, length))
    _charge(blk, "write", length)
    _guard(blk, "write", length, account,
           lambda: bdrv_pwrite_zeroes(bs, offset, length, may_unmap=may_unmap))


def blk_pdiscard(blk: Backend, offset: int, length: int) -> None:
    """blk_co_pdiscard."""
    bs = _blk_check(blk, offset, length)
    bdrv_pdiscard(bs, offset, length)


def blk_flush(blk: Backend, *, account: bool = False) -> None:
    """blk_co_flush: nothing to do without a medium (blk_co_flush checks
    blk_is_available only through bdrv_co_flush's own !bs test)."""
    bs = blk.bs
    if bs is None or not blk.is_available():
        if account:
            _account(blk, "flush", 0, errno_mod.ENOMEDIUM)
        raise BlockIOError(errno_mod.ENOMEDIUM)
    _guard(blk, "flush", 0, account, lambda: bdrv_flush(bs))


class _Generic:
    """The generic path as drivers see it (`blockdev.iotypes.GenericIO`)."""

    bdrv_pread = staticmethod(bdrv_pread)
    bdrv_pwrite = staticmethod(bdrv_pwrite)
    bdrv_pwrite_zeroes = staticmethod(bdrv_pwrite_zeroes)
    bdrv_pdiscard = staticmethod(bdrv_pdiscard)
    bdrv_flush = staticmethod(bdrv_flush)
    bdrv_truncate = staticmethod(bdrv_truncate)
    bdrv_getlength = staticmethod(bdrv_getlength)
    bdrv_block_status = staticmethod(bdrv_block_status)


_IO = _Generic()
