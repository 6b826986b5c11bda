"""VDI (VirtualBox): block/vdi.c's header checks, image creation and reads
(`VdiData`, the data engine).

2.11 supports only version 1.1 images with 1 MiB blocks and no parent; VDI images
block live migration.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import attrs

from blockdev.image.formats.base import (
    SECTOR_SIZE,
    DataContext,
    FileNode,
    FormatData,
    ImageError,
    OpenContext,
    open_fail,
    random_uuid,
    round_up,
)
from blockdev.image.formats.facts import ImageFacts
from blockdev.image.formats.mapped import DATA, UNALLOCATED, Extent, MappedData

if TYPE_CHECKING:
    import random

VDI_SIGNATURE = 0xBEDA107F
VDI_VERSION_1_1 = 0x00010001
VDI_TYPE_DYNAMIC = 1
VDI_TYPE_STATIC = 2
VDI_TEXT = b"<<< QEMU VM Virtual Disk Image >>>\n"
VDI_UNALLOCATED = 0xFFFFFFFF
VDI_DISCARDED = 0xFFFFFFFE
DEFAULT_CLUSTER_SIZE = 1024 * 1024
INT_MAX = (1 << 31) - 1
VDI_BLOCKS_IN_IMAGE_MAX = (INT_MAX + 1 - SECTOR_SIZE) // 4
VDI_DISK_SIZE_MAX = VDI_BLOCKS_IN_IMAGE_MAX * DEFAULT_CLUSTER_SIZE

# text[64], signature, version, header_size, image_type, image_flags,
# description[256], offset_bmap, offset_data, cylinders, heads, sectors,
# sector_size, unused1, disk_size, block_size, block_extra, blocks_in_image,
# blocks_allocated, uuid_image, uuid_last_snap, uuid_link, uuid_parent, unused2[7]
_HEADER = struct.Struct("<64sIIIII256sIIIIIIIQIIII16s16s16s16s56s")
assert _HEADER.size == 512


def probe(buf: bytes, filename: str) -> int:
    if len(buf) >= _HEADER.size and struct.unpack_from("<I", buf, 64)[0] == VDI_SIGNATURE:
        return 100
    return 0


def open_image(ctx: OpenContext) -> ImageFacts:
    """vdi_open: every check with its message, in order."""
    file = ctx.file
    try:
        raw = file.pread(0, SECTOR_SIZE)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    (
        _text,
        signature,
        version,
        _header_size,
        _image_type,
        _flags,
        _desc,
        offset_bmap,
        offset_data,
        _cyl,
        _heads,
        _secs,
        sector_size,
        _unused1,
        disk_size,
        block_size,
        _block_extra,
        blocks_in_image,
        _blocks_allocated,
        _uuid_image,
        _uuid_snap,
        uuid_link,
        uuid_parent,
        _unused2,
    ) = _HEADER.unpack(raw)
    if disk_size > VDI_DISK_SIZE_MAX:
        raise ImageError(
            f"Unsupported VDI image size (size is 0x{disk_size:x}, max supported is "
            f"0x{VDI_DISK_SIZE_MAX:x})"
        )
    # 'VBoxManage convertfromraw' can write odd sizes; 2.11 rounds them up.
    disk_size = round_up(disk_size, SECTOR_SIZE)
    if signature != VDI_SIGNATURE:
        raise ImageError(f"Image not in VDI format (bad signature {signature:08x})")
    if version != VDI_VERSION_1_1:
        raise ImageError(f"unsupported VDI image (version {version >> 16}.{version & 0xFFFF})")
    if offset_bmap % SECTOR_SIZE != 0:
        raise ImageError(f"unsupported VDI image (unaligned block map offset 0x{offset_bmap:x})")
    if offset_data % SECTOR_SIZE != 0:
        raise ImageError(f"unsupported VDI image (unaligned data offset 0x{offset_data:x})")
    if sector_size != SECTOR_SIZE:
        raise ImageError(f"unsupported VDI image (sector size {sector_size} is not {SECTOR_SIZE})")
    if block_size != DEFAULT_CLUSTER_SIZE:
        raise ImageError(
            f"unsupported VDI image (block size {block_size} is not {DEFAULT_CLUSTER_SIZE})"
        )
    if disk_size > blocks_in_image * block_size:
        raise ImageError(
            f"unsupported VDI image (disk size {disk_size}, image bitmap has room for "
            f"{blocks_in_image * block_size})"
        )
    if uuid_link != bytes(16):
        raise ImageError("unsupported VDI image (non-NULL link UUID)")
    if uuid_parent != bytes(16):
        raise ImageError("unsupported VDI image (non-NULL parent UUID)")
    if blocks_in_image > VDI_BLOCKS_IN_IMAGE_MAX:
        raise ImageError(
            f"unsupported VDI image (too many blocks {blocks_in_image}, max is "
            f"{VDI_BLOCKS_IN_IMAGE_MAX})"
        )
    bmap_sectors = (blocks_in_image * 4 + SECTOR_SIZE - 1) // SECTOR_SIZE
    try:
        file.pread(offset_bmap, bmap_sectors * SECTOR_SIZE)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    return ImageFacts(
        filename=ctx.filename,
        format="vdi",
        virtual_size=disk_size,
        actual_size=file.allocated_size(),
        dirty_flag=False,
        cluster_size=block_size,
        probed=ctx.probed,
        blocks_migration=True,
    )


@attrs.frozen
class CreatePlan:
    size: int
    static: bool


def plan_create(size: int, options: dict[str, str | int | bool]) -> CreatePlan:
    opts = dict(options)
    static = opts.pop("static", False)
    if isinstance(static, str):
        if static not in ("on", "off"):
            raise ImageError("Parameter 'static' expects 'on' or 'off'")
        static = static == "on"
    if opts:
        raise ImageError("Invalid options for file format 'vdi'")
    total = round_up(size, SECTOR_SIZE)
    if total > VDI_DISK_SIZE_MAX:
        raise ImageError(
            f"Unsupported VDI image size (size is 0x{total:x}, max supported is "
            f"0x{VDI_DISK_SIZE_MAX:x})"
        )
    return CreatePlan(size=total, static=bool(static))


def create(file: FileNode, plan: CreatePlan, *, rng: random.Random) -> None:
    """vdi_create: the 512-byte header (image and snapshot UUIDs from `rng`), the
    block map right after it, and for a static image the data area allocated by
    truncation."""
    blocks = (plan.size + DEFAULT_CLUSTER_SIZE - 1) // DEFAULT_CLUSTER_SIZE
    bmap_size = round_up(blocks * 4, SECTOR_SIZE)
    header = _HEADER.pack(
        VDI_TEXT,
        VDI_SIGNATURE,
        VDI_VERSION_1_1,
        0x180,
        VDI_TYPE_STATIC if plan.static else VDI_TYPE_DYNAMIC,
        0,
        b"",
        0x200,
        0x200 + bmap_size,
        0,
        0,
        0,
        SECTOR_SIZE,
        0,
        plan.size,
        DEFAULT_CLUSTER_SIZE,
        0,
        blocks,
        blocks if plan.static else 0,
        random_uuid(rng).bytes_le,
        random_uuid(rng).bytes_le,
        bytes(16),
        bytes(16),
        b"",
    )
    file.truncate(0)
    file.pwrite(0, header)
    if bmap_size:
        entries = [i if plan.static else VDI_UNALLOCATED for i in range(blocks)]
        bmap = struct.pack(f"<{blocks}I", *entries) + bytes(bmap_size - blocks * 4)
        file.pwrite(SECTOR_SIZE, bmap)
    if plan.static:
        file.truncate(SECTOR_SIZE + bmap_size + blocks * DEFAULT_CLUSTER_SIZE)


# --- Data engine ----------------------------------------------------------------------


class VdiData(MappedData):
    """block/vdi.c's reads: the block map (one little-endian u32 per 1 MiB block;
    VDI_UNALLOCATED and VDI_DISCARDED read as zeros) over the data area
    (vdi_co_preadv, vdi_co_get_block_status). Writes: see `mapped`."""

    def __init__(self, ctx: DataContext) -> None:
        self.file = ctx.file
        self.writable = ctx.writable
        self.backing = ctx.backing
        raw = ctx.file.pread(0, SECTOR_SIZE)
        fields = _HEADER.unpack(raw)
        self.offset_bmap, self.offset_data = fields[7], fields[8]
        self.block_size, blocks = fields[15], fields[17]
        self.size = ctx.facts.virtual_size
        bmap = ctx.file.pread(self.offset_bmap, blocks * 4)
        self.bmap = struct.unpack(f"<{blocks}I", bmap)

    @property
    def length(self) -> int:
        return self.size

    def _map(self, offset: int, length: int) -> Extent:
        index, in_block = divmod(offset, self.block_size)
        n = min(length, self.block_size - in_block)
        entry = self.bmap[index] if index < len(self.bmap) else VDI_UNALLOCATED
        if entry >= VDI_DISCARDED:
            return Extent(UNALLOCATED, n)
        return Extent(DATA, n, self.file, self.offset_data + entry * self.block_size + in_block)


def open_data(ctx: DataContext) -> FormatData:
    return VdiData(ctx)
