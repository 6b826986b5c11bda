"""QED: block/qed.c's header checks and image creation.

Most of 2.11's QED open failures carry no message of their own and surface as
`Could not open '<file>': Invalid argument`. The backing format is recorded only as
the "treat as raw, do not probe" feature bit, so it reads back as `raw` or not at
all. `dirty-flag` is the "needs check" feature bit. Not reproduced: the consistency
check (and repair) 2.11 runs when a read-write open meets that bit, and the
rewriting of unknown autoclear bits on such an open.
"""

from __future__ import annotations

import errno
import struct

import attrs

from blockdev.image.formats.base import (
    SECTOR_SIZE,
    BlockIOError,
    DataContext,
    FileNode,
    FormatData,
    ImageError,
    OpenContext,
    c_string,
    open_fail,
    reported_full_backing,
    round_up,
)
from blockdev.image.formats.facts import ImageFacts
from blockdev.image.formats.mapped import DATA, UNALLOCATED, ZERO, Extent, MappedData
from schema.jsontypes import qemu_bytes

QED_MAGIC = 0x00444551  # "QED\0" little-endian
QED_F_BACKING_FILE = 0x01
QED_F_NEED_CHECK = 0x02
QED_F_BACKING_FORMAT_NO_PROBE = 0x04
QED_FEATURE_MASK = QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE
QED_MIN_CLUSTER_SIZE = 4 * 1024
QED_MAX_CLUSTER_SIZE = 64 * 1024 * 1024
QED_DEFAULT_CLUSTER_SIZE = 64 * 1024
QED_MIN_TABLE_SIZE = 1
QED_MAX_TABLE_SIZE = 16
QED_DEFAULT_TABLE_SIZE = 4
UINT32_MAX = (1 << 32) - 1
PATH_MAX = 4096  # sizeof(bs->backing_file)

# magic, cluster_size, table_size, header_size, features, compat_features,
# autoclear_features, l1_table_offset, image_size, backing_filename_offset,
# backing_filename_size
_HEADER = struct.Struct("<IIIIQQQQQII")


def probe(buf: bytes, filename: str) -> int:
    if len(buf) >= _HEADER.size and struct.unpack_from("<I", buf, 0)[0] == QED_MAGIC:
        return 100
    return 0


def _power_of_2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def cluster_size_valid(cluster_size: int) -> bool:
    return QED_MIN_CLUSTER_SIZE <= cluster_size <= QED_MAX_CLUSTER_SIZE and _power_of_2(
        cluster_size
    )


def table_size_valid(table_size: int) -> bool:
    return QED_MIN_TABLE_SIZE <= table_size <= QED_MAX_TABLE_SIZE and _power_of_2(table_size)


def max_image_size(cluster_size: int, table_size: int) -> int:
    entries = table_size * cluster_size // 8
    return entries * cluster_size * entries


def image_size_valid(image_size: int, cluster_size: int, table_size: int) -> bool:
    return image_size % SECTOR_SIZE == 0 and image_size <= max_image_size(cluster_size, table_size)


def open_image(ctx: OpenContext) -> ImageFacts:
    """bdrv_qed_do_open."""
    file = ctx.file
    try:
        raw = file.pread(0, _HEADER.size)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    (
        magic,
        cluster_size,
        table_size,
        header_size,
        features,
        _compat,
        _autoclear,
        l1_offset,
        image_size,
        backing_offset,
        backing_size,
    ) = _HEADER.unpack(raw)
    if magic != QED_MAGIC:
        raise ImageError("Image not in QED format")
    if features & ~QED_FEATURE_MASK:
        raise ImageError(f"Unsupported QED features: {features & ~QED_FEATURE_MASK:x}")
    if not cluster_size_valid(cluster_size):
        open_fail(ctx, errno.EINVAL)
    # The file size rounded down to a cluster bounds the table offsets.
    file_size = file.length & ~(cluster_size - 1)
    if not table_size_valid(table_size):
        open_fail(ctx, errno.EINVAL)
    if not image_size_valid(image_size, cluster_size, table_size):
        open_fail(ctx, errno.EINVAL)
    if not _table_offset_valid(l1_offset, cluster_size, table_size, header_size, file_size):
        open_fail(ctx, errno.EINVAL)
    if header_size > UINT32_MAX // cluster_size:
        open_fail(ctx, errno.EINVAL)
    backing: str | None = None
    backing_format: str | None = None
    if features & QED_F_BACKING_FILE:
        if backing_offset + backing_size > cluster_size * header_size:
            open_fail(ctx, errno.EINVAL)
        if backing_size >= PATH_MAX:
            open_fail(ctx, errno.EINVAL)
        try:
            backing = c_string(file.pread(backing_offset, backing_size))
        except OSError as e:
            open_fail(ctx, e.errno or 0)
        if features & QED_F_BACKING_FORMAT_NO_PROBE:
            backing_format = "raw"
    try:
        file.pread(l1_offset, cluster_size * table_size)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    full = reported_full_backing(ctx.filename, backing)
    return ImageFacts(
        filename=ctx.filename,
        format="qed",
        virtual_size=round_up(image_size, SECTOR_SIZE),
        actual_size=file.allocated_size(),
        dirty_flag=bool(features & QED_F_NEED_CHECK),
        cluster_size=cluster_size,
        backing_filename=backing or None,
        full_backing_filename=full,
        backing_filename_format=backing_format if backing else None,
        probed=ctx.probed,
        supports_backing=True,
    )


def _table_offset_valid(
    offset: int, cluster_size: int, table_size: int, header_size: int, file_size: int
) -> bool:
    """qed_check_table_offset. (A one-cluster table fails its overflow test, so 2.11
    cannot open images with table_size 1; reproduced.)"""
    end = offset + (table_size - 1) * cluster_size
    if end <= offset:
        return False

    def cluster_ok(pos: int) -> bool:
        if pos & (cluster_size - 1):
            return False
        return header_size * cluster_size <= pos < file_size

    return cluster_ok(offset) and cluster_ok(end)


@attrs.frozen
class CreatePlan:
    size: int
    cluster_size: int
    table_size: int
    backing_file: str | None
    backing_format: str | None


def plan_create(
    size: int,
    backing_file: str | None,
    backing_format: str | None,
    options: dict[str, str | int | bool],
) -> CreatePlan:
    """bdrv_qed_create's checks."""
    opts = dict(options)
    cluster_size = int(opts.pop("cluster_size", QED_DEFAULT_CLUSTER_SIZE))
    table_size = int(opts.pop("table_size", QED_DEFAULT_TABLE_SIZE))
    if opts:
        raise ImageError("Invalid options for file format 'qed'")
    image_size = round_up(size, SECTOR_SIZE)
    if not cluster_size_valid(cluster_size):
        raise ImageError(
            f"QED cluster size must be within range [{QED_MIN_CLUSTER_SIZE}, "
            f"{QED_MAX_CLUSTER_SIZE}] and power of 2"
        )
    if not table_size_valid(table_size):
        raise ImageError(
            f"QED table size must be within range [{QED_MIN_TABLE_SIZE}, "
            f"{QED_MAX_TABLE_SIZE}] and power of 2"
        )
    if not image_size_valid(image_size, cluster_size, table_size):
        raise ImageError(
            "QED image size must be a non-zero multiple of cluster size and less than "
            f"{max_image_size(cluster_size, table_size)} bytes"
        )
    return CreatePlan(
        size=image_size,
        cluster_size=cluster_size,
        table_size=table_size,
        backing_file=backing_file,
        backing_format=backing_format,
    )


def create(file: FileNode, plan: CreatePlan) -> None:
    """qed_create: one header cluster holding the header and the backing file name,
    then a zeroed L1 table of `table_size` clusters."""
    features = 0
    name = b""
    backing_offset = 0
    if plan.backing_file is not None:
        features |= QED_F_BACKING_FILE
        name = qemu_bytes(plan.backing_file)
        backing_offset = _HEADER.size
        if plan.backing_format == "raw":
            features |= QED_F_BACKING_FORMAT_NO_PROBE
    header = _HEADER.pack(
        QED_MAGIC,
        plan.cluster_size,
        plan.table_size,
        1,
        features,
        0,
        0,
        plan.cluster_size,
        plan.size,
        backing_offset,
        len(name),
    )
    file.truncate(0)
    file.pwrite(0, header)
    file.pwrite(_HEADER.size, name)
    file.pwrite(plan.cluster_size, bytes(plan.cluster_size * plan.table_size))


# --- Data engine ----------------------------------------------------------------------


class QedData(MappedData):
    """block/qed.c's reads: L1 and L2 tables of little-endian u64 offsets, 0 for
    unallocated (the backing file's bytes), 1 for a zero cluster, else a data
    cluster that must lie past the header and inside the file
    (qed-cluster.c qed_find_cluster, which fails with -EINVAL otherwise).
    Writes: see `mapped`."""

    def __init__(self, ctx: DataContext) -> None:
        self.file = ctx.file
        self.writable = ctx.writable
        self.backing = ctx.backing
        (_magic, self.cluster_size, table_size, header_size, _f, _c, _a,
         l1_offset, self.size, _bo, _bs) = _HEADER.unpack(ctx.file.pread(0, _HEADER.size))
        self.header_bytes = header_size * self.cluster_size
        self.table_bytes = table_size * self.cluster_size
        self.nelems = self.table_bytes // 8
        self.l1 = struct.unpack(f"<{self.nelems}Q", ctx.file.pread(l1_offset, self.table_bytes))
        self._l2: dict[int, tuple[int, ...]] = {}

    @property
    def length(self) -> int:
        return self.size

    def _cluster_ok(self, offset: int) -> bool:
        """qed_check_cluster_offset."""
        return (not offset % self.cluster_size and self.header_bytes <= offset
                < self.file.length)

    def _l2_table(self, offset: int) -> tuple[int, ...]:
        table = self._l2.get(offset)
        if table is None:
            if len(self._l2) >= 64:
                self._l2.clear()
            table = struct.unpack(f"<{self.nelems}Q", self.file.pread(offset, self.table_bytes))
            self._l2[offset] = table
        return table

    def _map(self, offset: int, length: int) -> Extent:
        cs = self.cluster_size
        span = cs * self.nelems
        length = min(length, span - offset % span)
        l2_offset = self.l1[offset // span]
        if l2_offset == 0:
            return Extent(UNALLOCATED, length)
        end = l2_offset + (self.table_bytes - cs)
        if not (self._cluster_ok(l2_offset) and self._cluster_ok(end)):
            raise BlockIOError(errno.EINVAL)
        table = self._l2_table(l2_offset)
        index = (offset // cs) % self.nelems
        n = min(-(-(offset % cs + length) // cs), self.nelems - index)
        first = table[index]
        i = 1
        while i < n:
            e = table[index + i]
            if first in (0, 1):
                if e != first:
                    break
            elif e != first + i * cs:
                break
            i += 1
        length = min(length, i * cs - offset % cs)
        if first == 0:
            return Extent(UNALLOCATED, length)
        if first == 1:
            return Extent(ZERO, length)
        if not self._cluster_ok(first):
            raise BlockIOError(errno.EINVAL)
        return Extent(DATA, length, self.file, first + offset % cs)


def open_data(ctx: DataContext) -> FormatData:
    return QedData(ctx)
