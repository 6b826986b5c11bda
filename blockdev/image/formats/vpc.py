"""VHD (vpc): block/vpc.c's footer/dynamic-header checks and image creation.

The disk size 2.11 reports is the CHS geometry's, except for images made by tools
known to use the footer's current_size (and for maximal geometries): that is why
`qemu-img create -f vpc img 64M` reports 67125248 bytes. The size-calculation
runtime option (`force_size_calc`) is not modelled. VHD images block live migration.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

import attrs

from blockdev.image.formats.base import (
    SECTOR_SIZE,
    BlockStatus,
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

HEADER_SIZE = 512
VHD_FIXED = 2
VHD_DYNAMIC = 3
VHD_TIMESTAMP_BASE = 946684800
VHD_CHS_MAX_C = 65535
VHD_CHS_MAX_H = 16
VHD_CHS_MAX_S = 255
VHD_MAX_SECTORS = 0xFF000000
VHD_MAX_GEOMETRY = VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S

# creator[8], features, version, data_offset, timestamp, creator_app[4], major,
# minor, creator_os[4], orig_size, current_size, cyls, heads, secs_per_cyl, type,
# checksum, uuid[16], in_saved_state
_FOOTER = struct.Struct(">8sIIQI4sHH4sQQHBBII16sB")
# magic[8], data_offset, table_offset, version, max_table_entries, block_size,
# checksum, parent_uuid[16], parent_timestamp, reserved, parent_name[512],
# parent_locator[8] (24 bytes each)
_DYNHEADER = struct.Struct(">8sQQIIII16sII512s192s")


def probe(buf: bytes, filename: str) -> int:
    if len(buf) >= 8 and buf[:8] == b"conectix":
        return 100
    return 0


def checksum(buf: bytes) -> int:
    """vpc_checksum: one's complement of the byte sum."""
    return ~sum(buf) & 0xFFFFFFFF


def open_image(ctx: OpenContext) -> ImageFacts:
    """vpc_open."""
    file = ctx.file
    try:
        footer_buf = file.pread(0, HEADER_SIZE)
    except OSError as e:
        raise ImageError("Unable to read VHD header", errno=e.errno) from None
    disk_type = VHD_DYNAMIC
    if footer_buf[:8] != b"conectix":
        length = file.length
        if length < HEADER_SIZE:
            raise ImageError("File too small for a VHD header", errno=errno.EINVAL)
        # A fixed disk has its footer only at the end.
        try:
            footer_buf = file.pread(length - HEADER_SIZE, HEADER_SIZE)
        except OSError as e:
            open_fail(ctx, e.errno or 0)
        if footer_buf[:8] != b"conectix":
            raise ImageError("invalid VPC image", errno=errno.EINVAL)
        disk_type = VHD_FIXED
    (
        _creator,
        _features,
        _version,
        data_offset,
        _timestamp,
        creator_app,
        _major,
        _minor,
        _creator_os,
        _orig_size,
        current_size,
        cyls,
        heads,
        secs_per_cyl,
        footer_type,
        _checksum,
        _uuid,
        _saved,
    ) = _FOOTER.unpack_from(footer_buf, 0)
    # (A wrong checksum is only reported on stderr.)
    total_sectors = cyls * heads * secs_per_cyl
    use_chs = creator_app not in (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")
    if not use_chs or total_sectors == VHD_MAX_GEOMETRY:
        total_sectors = current_size // SECTOR_SIZE
    if total_sectors > VHD_MAX_SECTORS:
        open_fail(ctx, errno.EFBIG)

    cluster_size: int | None = None
    if disk_type == VHD_DYNAMIC:
        try:
            dyn = file.pread(data_offset, HEADER_SIZE)
        except OSError as e:
            raise ImageError("Error reading dynamic VHD header", errno=e.errno) from None
        if dyn[:8] != b"cxsparse":
            raise ImageError("Invalid header magic", errno=errno.EINVAL)
        (
            _magic,
            _next,
            table_offset,
            _dversion,
            max_table_entries,
            block_size,
            *_rest,
        ) = _DYNHEADER.unpack_from(dyn + bytes(_DYNHEADER.size - len(dyn)), 0)
        if block_size & (block_size - 1) or block_size < SECTOR_SIZE:
            raise ImageError(f"Invalid block size {block_size}", errno=errno.EINVAL)
        bitmap_size = ((block_size // (8 * 512)) + 511) & ~511
        if (total_sectors * 512) // block_size > 0xFFFFFFFF:
            raise ImageError("Too many blocks", errno=errno.EINVAL)
        if max_table_entries * block_size < total_sectors * 512:
            raise ImageError("Page table too small", errno=errno.EINVAL)
        # max_table_entries is read as a signed int in 2.11.
        signed_entries = (
            max_table_entries - (1 << 32) if max_table_entries >= 1 << 31 else max_table_entries
        )
        if max_table_entries > (1 << 64) // 4 or signed_entries > ((1 << 31) - 1) // 4:
            raise ImageError(f"Max Table Entries too large ({signed_entries})", errno=errno.EINVAL)
        pagetable_size = max_table_entries * 4
        try:
            pagetable = file.pread(table_offset, pagetable_size)
        except OSError as e:
            raise ImageError("Error reading pagetable", errno=e.errno) from None
        free_offset = round_up(table_offset + pagetable_size, 512)
        for (entry,) in struct.iter_unpack(">I", pagetable):
            if entry != 0xFFFFFFFF:
                free_offset = max(free_offset, 512 * entry + bitmap_size + block_size)
        if free_offset > file.length:
            raise ImageError(
                "block-vpc: free_data_block_offset points after the end of file. "
                "The image has been truncated.",
                errno=errno.EINVAL,
            )
    if footer_type != VHD_FIXED:
        # vpc_get_info reports the block size unless the footer says "fixed" (the
        # fields of a fixed image's state are never set, hence 0 and no member).
        cluster_size = block_size if disk_type == VHD_DYNAMIC else None
    return ImageFacts(
        filename=ctx.filename,
        format="vpc",
        virtual_size=total_sectors * SECTOR_SIZE,
        actual_size=file.allocated_size(),
        dirty_flag=False,
        cluster_size=cluster_size or None,
        probed=ctx.probed,
        blocks_migration=True,
    )


def calculate_geometry(total_sectors: int) -> tuple[int, int, int]:
    """vpc.c calculate_geometry: (cylinders, heads, sectors per cylinder)."""
    total_sectors = min(total_sectors, VHD_MAX_GEOMETRY)
    if total_sectors >= 65535 * 16 * 63:
        secs, heads = 255, 16
        cth = total_sectors // secs
    else:
        secs = 17
        cth = total_sectors // secs
        heads = (cth + 1023) // 1024
        heads = max(heads, 4)
        if cth >= heads * 1024 or heads > 16:
            secs, heads = 31, 16
            cth = total_sectors // secs
        if cth >= heads * 1024:
            secs, heads = 63, 16
            cth = total_sectors // secs
    return cth // heads, heads, secs


@attrs.frozen
class CreatePlan:
    size: int
    fixed: bool
    force_size: bool


def plan_create(size: int, options: dict[str, str | int | bool]) -> CreatePlan:
    opts = dict(options)
    subformat = opts.pop("subformat", None)
    force = opts.pop("force_size", False)
    if isinstance(force, str):
        if force not in ("on", "off"):
            raise ImageError("Parameter 'force_size' expects 'on' or 'off'")
        force = force == "on"
    if opts:
        raise ImageError("Invalid options for file format 'vpc'")
    if subformat is None or subformat == "dynamic":
        fixed = False
    elif subformat == "fixed":
        fixed = True
    else:
        raise ImageError(f"Invalid disk type, {subformat}")
    return CreatePlan(size=round_up(size, SECTOR_SIZE), fixed=fixed, force_size=bool(force))


def create(file: FileNode, plan: CreatePlan, *, now: float, rng: random.Random) -> None:
    """vpc_create: the geometry search, then a dynamic disk (footer copy, dynamic
    header, BAT full of 0xFF, footer) or a fixed one (data then footer). The footer
    carries the creation time `now` (wall-clock seconds) and a UUID from `rng`."""
    total_size = plan.size
    if plan.force_size:
        cyls, heads, secs = VHD_CHS_MAX_C, VHD_CHS_MAX_H, VHD_CHS_MAX_S
    else:
        total_sectors = min(VHD_MAX_GEOMETRY, total_size // SECTOR_SIZE)
        cyls = heads = secs = 0
        i = 0
        while total_sectors > cyls * heads * secs:
            cyls, heads, secs = calculate_geometry(total_sectors + i)
            i += 1
    if cyls * heads * secs == VHD_MAX_GEOMETRY:
        total_sectors = total_size // SECTOR_SIZE
        if total_sectors > VHD_MAX_SECTORS:
            raise ImageError("Disk size is too large, max size is 2040 GiB", errno=errno.EFBIG)
    else:
        total_sectors = cyls * heads * secs
        total_size = total_sectors * SECTOR_SIZE
    footer = bytearray(
        _FOOTER.pack(
            b"conectix",
            0x02,
            0x00010000,
            0xFFFFFFFFFFFFFFFF if plan.fixed else HEADER_SIZE,
            (int(now) - VHD_TIMESTAMP_BASE) & 0xFFFFFFFF,
            b"qem2" if plan.force_size else b"qemu",
            5,
            3,
            b"Wi2k",
            total_size,
            total_size,
            cyls,
            heads,
            secs,
            VHD_FIXED if plan.fixed else VHD_DYNAMIC,
            0,
            random_uuid(rng).bytes,
            0,
        )
    )
    footer += bytes(HEADER_SIZE - len(footer))
    struct.pack_into(">I", footer, 64, checksum(bytes(footer)))
    file.truncate(0)
    if plan.fixed:
        file.truncate(total_size + HEADER_SIZE)
        file.pwrite(total_size, bytes(footer))
        return
    block_size = 0x200000
    entries = (total_sectors + block_size // 512) // (block_size // 512)
    file.pwrite(0, bytes(footer))
    file.pwrite(1536 + ((entries * 4 + 511) & ~511), bytes(footer))
    bat_sectors = (entries * 4 + 511) // 512
    file.pwrite(3 * 512, b"\xff" * (bat_sectors * 512))
    dyn = bytearray(
        _DYNHEADER.pack(
            b"cxsparse",
            0xFFFFFFFFFFFFFFFF,
            3 * 512,
            0x00010000,
            entries,
            block_size,
            0,
            bytes(16),
            0,
            0,
            b"",
            b"",
        )
    )
    dyn += bytes(1024 - len(dyn))
    struct.pack_into(">I", dyn, 36, checksum(bytes(dyn)))
    file.pwrite(512, bytes(dyn))


# --- Data engine ----------------------------------------------------------------------


class VpcData(MappedData):
    """block/vpc.c's reads. A footer that says "fixed" makes the file the disk
    (vpc_co_preadv passes the request on); a dynamic image maps each block through
    the big-endian block allocation table: 0xFFFFFFFF is unallocated (zeros), else
    the block's sector bitmap, then its data (get_image_offset; 2.11 does not
    consult the bitmap on reads). Writes: see `mapped`."""

    def __init__(self, ctx: DataContext) -> None:
        self.file = ctx.file
        self.writable = ctx.writable
        self.backing = ctx.backing
        self.size = ctx.facts.virtual_size
        footer = ctx.file.pread(0, HEADER_SIZE)
        if footer[:8] != b"conectix":
            footer = ctx.file.pread(ctx.file.length - HEADER_SIZE, HEADER_SIZE)
        fields = _FOOTER.unpack_from(footer, 0)
        data_offset, footer_type = fields[3], fields[14]
        self.fixed = footer_type == VHD_FIXED
        self.pagetable: tuple[int, ...] = ()
        self.block_size = 0
        self.bitmap_size = 0
        if not self.fixed:
            dyn = ctx.file.pread(data_offset, HEADER_SIZE)
            _m, _n, table_offset, _v, entries, self.block_size, *_r = _DYNHEADER.unpack_from(
                dyn + bytes(_DYNHEADER.size - len(dyn)), 0)
            self.bitmap_size = ((self.block_size // (8 * 512)) + 511) & ~511
            self.pagetable = struct.unpack(f">{entries}I",
                                           ctx.file.pread(table_offset, entries * 4))

    @property
    def length(self) -> int:
        return self.size

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """vpc_co_get_block_status: a fixed image is its file (BDRV_BLOCK_RAW)."""
        if self.fixed:
            return BlockStatus(pnum=length, data=True, offset=offset, raw=True)
        return super().block_status(offset, length)

    def _map(self, offset: int, length: int) -> Extent:
        if self.fixed:
            return Extent(DATA, length, self.file, offset)
        index, in_block = divmod(offset, self.block_size)
        n = min(length, self.block_size - in_block)
        if index >= len(self.pagetable) or self.pagetable[index] == 0xFFFFFFFF:
            return Extent(UNALLOCATED, n)
        host = 512 * self.pagetable[index] + self.bitmap_size + in_block
        return Extent(DATA, n, self.file, host)


def open_data(ctx: DataContext) -> FormatData:
    return VpcData(ctx)
