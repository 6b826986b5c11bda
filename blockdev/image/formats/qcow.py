"""qcow (version 1): block/qcow.c's header reading and image creation.

qcow has a backing file but no backing *format* option, so 2.11 refuses to create
a qcow overlay when a backing format is given (`blockdev-snapshot-sync` always gives
one): `Backing file format not supported for file format 'qcow'`. qcow images block
live migration [qcow_open migrate_add_blocker].
"""

from __future__ import annotations

import errno
import struct
import zlib

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
from blockdev.image.formats.mapped import COMPRESSED, DATA, UNALLOCATED, Extent, MappedData
from schema.jsontypes import qemu_bytes

QCOW_MAGIC = 0x514649FB
QCOW_VERSION = 1
QCOW_CRYPT_NONE = 0
QCOW_CRYPT_AES = 1
INT_MAX = (1 << 31) - 1
UINT64_MAX = (1 << 64) - 1

# magic, version, backing_file_offset, backing_file_size, mtime, size,
# cluster_bits, l2_bits, padding, crypt_method, l1_table_offset
_HEADER = struct.Struct(">IIQIIQBBHIQ")


def probe(buf: bytes, filename: str) -> int:
    if len(buf) >= _HEADER.size:
        magic, version = struct.unpack_from(">II", buf, 0)
        if magic == QCOW_MAGIC and version == QCOW_VERSION:
            return 100
    return 0


def open_image(ctx: OpenContext) -> ImageFacts:
    """qcow_open. Its reads fail with a bare errno (`Could not open '<file>': ...`)."""
    file = ctx.file
    try:
        raw = file.pread(0, _HEADER.size)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    (
        magic,
        version,
        backing_offset,
        backing_size,
        _mtime,
        size,
        cluster_bits,
        l2_bits,
        _pad,
        crypt_method,
        l1_offset,
    ) = _HEADER.unpack(raw)
    if magic != QCOW_MAGIC:
        raise ImageError("Image not in qcow format")
    if version != QCOW_VERSION:
        raise ImageError(f"Unsupported qcow version {version}")
    if size <= 1:
        raise ImageError("Image size is too small (must be at least 2 bytes)")
    if cluster_bits < 9 or cluster_bits > 16:
        raise ImageError("Cluster size must be between 512 and 64k")
    if l2_bits < 9 - 3 or l2_bits > 16 - 3:
        raise ImageError("L2 table size must be between 512 and 64k")
    if crypt_method:
        if ctx.system_emulator and crypt_method == QCOW_CRYPT_AES:
            raise ImageError(
                "Use of AES-CBC encrypted qcow images is no longer supported in system emulators"
            )
        if crypt_method != QCOW_CRYPT_AES:
            raise ImageError("invalid encryption method in qcow header")
        if ctx.key_secret is None:
            raise ImageError("Parameter 'encrypt.key-secret' is required for cipher")
    shift = cluster_bits + l2_bits
    if size > UINT64_MAX - (1 << shift):
        raise ImageError("Image too large")
    l1_size = (size + (1 << shift) - 1) >> shift
    if l1_size > INT_MAX // 8:
        raise ImageError("Image too large")
    try:
        file.pread(l1_offset, l1_size * 8)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    backing: str | None = None
    if backing_offset != 0:
        if backing_size > 1023:
            raise ImageError("Backing file name too long")
        try:
            backing = c_string(file.pread(backing_offset, backing_size))
        except OSError as e:
            open_fail(ctx, e.errno or 0)
    full = reported_full_backing(ctx.filename, backing)
    return ImageFacts(
        filename=ctx.filename,
        format="qcow",
        virtual_size=size // SECTOR_SIZE * SECTOR_SIZE,
        actual_size=file.allocated_size(),
        dirty_flag=False,
        cluster_size=1 << cluster_bits,
        encrypted=crypt_method != QCOW_CRYPT_NONE,
        backing_filename=backing or None,
        full_backing_filename=full,
        probed=ctx.probed,
        supports_backing=True,
        blocks_migration=True,
    )


@attrs.frozen
class CreatePlan:
    size: int
    backing_file: str | None


def plan_create(
    size: int, backing_file: str | None, options: dict[str, str | int | bool]
) -> CreatePlan:
    """qcow_create's checks before it creates the file."""
    opts = dict(options)
    encrypt = opts.pop("encryption", None)
    encrypt_format = opts.pop("encrypt.format", None)
    if opts:
        raise ImageError("Invalid options for file format 'qcow'")
    total = round_up(size, SECTOR_SIZE)
    if total == 0:
        raise ImageError("Image size is too small, cannot be zero length")
    if encrypt_format is not None and encrypt is not None:
        raise ImageError("Options encryption and encrypt.format are mutually exclusive")
    if encrypt not in (None, False, "off") or encrypt_format is not None:
        raise ImageError("qcow encryption is not supported by the emulator's image writer")
    return CreatePlan(size=total, backing_file=backing_file)


def create(file: FileNode, plan: CreatePlan) -> None:
    """qcow_create: 4 KiB clusters (512-byte ones with a backing file, to avoid
    copying unmodified sectors), then the header, the backing file name and a zeroed
    L1 table written in whole sectors. "fat:" as backing file (vvfat) records none."""
    backing_file = plan.backing_file
    header_size = _HEADER.size
    backing_offset = 0
    name = b""
    if backing_file is not None and backing_file != "fat:":
        name = qemu_bytes(backing_file)
        backing_offset = header_size
        header_size += len(name)
    if backing_file is not None:
        cluster_bits, l2_bits = 9, 12
    else:
        cluster_bits, l2_bits = 12, 9
    header_size = round_up(header_size, 8)
    shift = cluster_bits + l2_bits
    l1_size = (plan.size + (1 << shift) - 1) >> shift
    header = _HEADER.pack(
        QCOW_MAGIC,
        QCOW_VERSION,
        backing_offset,
        len(name),
        0,
        plan.size,
        cluster_bits,
        l2_bits,
        0,
        QCOW_CRYPT_NONE,
        header_size,
    )
    file.truncate(0)
    file.pwrite(0, header)
    if name:
        file.pwrite(_HEADER.size, name)
    sectors = (l1_size * 8 + SECTOR_SIZE - 1) // SECTOR_SIZE
    if sectors:
        file.pwrite(header_size, bytes(sectors * SECTOR_SIZE))


# --- Data engine ----------------------------------------------------------------------

QCOW_OFLAG_COMPRESSED = 1 << 63


class QcowData(MappedData):
    """block/qcow.c's reads: big-endian L1 and L2 tables (get_cluster_offset with
    allocate=0), compressed clusters inflated as decompress_cluster does (raw
    deflate, 4 KiB window, the compressed size in the entry's top bits);
    unallocated clusters are the backing file's bytes. Encrypted images fail
    their reads with EIO (not implemented). Writes: see `mapped`."""

    def __init__(self, ctx: DataContext) -> None:
        self.file = ctx.file
        self.writable = ctx.writable
        self.backing = ctx.backing
        (_magic, _version, _bfo, _bfs, _mtime, self.size, self.cluster_bits, self.l2_bits,
         _pad, self.crypt_method, l1_offset) = _HEADER.unpack(ctx.file.pread(0, _HEADER.size))
        self.cluster_size = 1 << self.cluster_bits
        self.l2_size = 1 << self.l2_bits
        shift = self.cluster_bits + self.l2_bits
        l1_size = (self.size + (1 << shift) - 1) >> shift
        self.l1 = struct.unpack(f">{l1_size}Q", ctx.file.pread(l1_offset, l1_size * 8))
        self.offset_mask = (1 << (63 - self.cluster_bits)) - 1
        self.offset_valid = not self.crypt_method
        self._l2: dict[int, tuple[int, ...]] = {}
        self._cluster_cache: tuple[int, bytes] | None = None

    @property
    def length(self) -> int:
        return self.size

    def _decompress(self, entry: int) -> bytes:
        coffset = entry & self.offset_mask
        if self._cluster_cache and self._cluster_cache[0] == coffset:
            return self._cluster_cache[1]
        csize = (entry >> (63 - self.cluster_bits)) & (self.cluster_size - 1)
        try:
            out = zlib.decompressobj(-12).decompress(self.file.pread(coffset, csize),
                                                     self.cluster_size)
        except zlib.error:
            raise BlockIOError(errno.EIO) from None
        if len(out) != self.cluster_size:
            raise BlockIOError(errno.EIO)
        self._cluster_cache = (coffset, out)
        return out

    def _map(self, offset: int, length: int) -> Extent:
        cs = self.cluster_size
        in_cluster = offset % cs
        n = min(length, cs - in_cluster)
        l2_offset = self.l1[offset >> (self.cluster_bits + self.l2_bits)]
        if not l2_offset:
            return Extent(UNALLOCATED, n)
        table = self._l2.get(l2_offset)
        if table is None:
            if len(self._l2) >= 16:
                self._l2.clear()
            table = struct.unpack(f">{self.l2_size}Q",
                                  self.file.pread(l2_offset, self.l2_size * 8))
            self._l2[l2_offset] = table
        entry = table[(offset >> self.cluster_bits) & (self.l2_size - 1)]
        if not entry:
            return Extent(UNALLOCATED, n)
        if entry & QCOW_OFLAG_COMPRESSED:
            data = self._decompress(entry)
            return Extent(COMPRESSED, n, payload=data[in_cluster:in_cluster + n])
        if self.crypt_method:
            raise BlockIOError(errno.EIO)
        return Extent(DATA, n, self.file, entry + in_cluster)


def open_data(ctx: DataContext) -> FormatData:
    return QcowData(ctx)
