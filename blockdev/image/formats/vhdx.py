"""VHDX: block/vhdx.c's header/region/metadata parsing, image creation, and reads
(`VhdxData`, the data engine).

2.11 opens dynamic and fixed VHDX files (differencing ones fail with ENOTSUP) and
reports the payload block size as the cluster size. Its open failures carry no
message except "No valid VHDX header found" and surface as
`Could not open '<file>': <strerror>`. The log is read only as far as the header
says whether one exists: replaying a log (2.11 does it on a read-write open, and
refuses a read-only one) is not reproduced -- an image with a log GUID and length
is treated as if its log were empty. VHDX images block live migration.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, cast

import attrs

from blockdev.image.formats.base import (
    SECTOR_SIZE,
    BlockIOError,
    BlockStatus,
    DataContext,
    FileNode,
    FormatData,
    ImageError,
    OpenContext,
    fail_errno,
    open_fail,
    random_uuid,
    round_up,
)
from blockdev.image.formats.facts import ImageFacts
from blockdev.image.formats.mapped import DATA, ZERO, Extent, MappedData

if TYPE_CHECKING:
    import random

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

HEADER_BLOCK_SIZE = 64 * KiB
HEADER1_OFFSET = HEADER_BLOCK_SIZE
HEADER2_OFFSET = 2 * HEADER_BLOCK_SIZE
REGION_TABLE_OFFSET = 3 * HEADER_BLOCK_SIZE
REGION_TABLE2_OFFSET = 4 * HEADER_BLOCK_SIZE
HEADER_SECTION_END = MiB
HEADER_CRC_SIZE = 4 * KiB
HEADER_SIGNATURE = 0x64616568  # "head"
REGION_SIGNATURE = 0x69676572  # "regi"
METADATA_SIGNATURE = 0x617461646174656D  # "metadata"
REGION_ENTRY_REQUIRED = 0x01
META_FLAGS_IS_USER = 0x01
META_FLAGS_IS_VIRTUAL_DISK = 0x02
META_FLAGS_IS_REQUIRED = 0x04
METADATA_ENTRY_SIZE = 32
METADATA_MAX_ENTRIES = 2047
METADATA_TABLE_MAX_SIZE = METADATA_ENTRY_SIZE * (METADATA_MAX_ENTRIES + 1)
PARAMS_LEAVE_BLOCKS_ALLOCED = 0x01
PARAMS_HAS_PARENT = 0x02
BLOCK_SIZE_MIN = MiB
BLOCK_SIZE_MAX = 256 * MiB
MAX_IMAGE_SIZE = 64 * TiB
MAX_SECTORS_PER_BLOCK = 1 << 23
LOG_MIN_SIZE = MiB
PAYLOAD_BLOCK_ZERO = 2
PAYLOAD_BLOCK_FULLY_PRESENT = 6
BAT_STATE_BIT_MASK = 0x07
BAT_FILE_OFF_MASK = 0xFFFFFFFFFFF00000


def _guid(data1: int, data2: int, data3: int, data4: bytes) -> bytes:
    """An MS GUID as stored on disk: the first three fields little-endian."""
    return struct.pack("<IHH", data1, data2, data3) + data4


BAT_GUID = _guid(
    0x2DC27766, 0xF623, 0x4200, bytes([0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08])
)
METADATA_GUID = _guid(
    0x8B7CA206, 0x4790, 0x4B9A, bytes([0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E])
)
FILE_PARAM_GUID = _guid(
    0xCAA16737, 0xFA36, 0x4D43, bytes([0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B])
)
VIRTUAL_SIZE_GUID = _guid(
    0x2FA54224, 0xCD1B, 0x4876, bytes([0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8])
)
PAGE83_GUID = _guid(
    0xBECA12AB, 0xB2E6, 0x4523, bytes([0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46])
)
PHYS_SECTOR_GUID = _guid(
    0xCDA348C7, 0x445D, 0x4471, bytes([0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56])
)
PARENT_LOCATOR_GUID = _guid(
    0xA8D35F2D, 0xB30B, 0x454D, bytes([0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C])
)
LOGICAL_SECTOR_GUID = _guid(
    0x8141BF1D, 0xA96F, 0x4709, bytes([0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F])
)

# signature, checksum, sequence_number, file_write_guid, data_write_guid,
# log_guid, log_version, version, log_length, log_offset
_HEADER = struct.Struct("<IIQ16s16s16sHHIQ")
_REGION_HEADER = struct.Struct("<IIII")
_REGION_ENTRY = struct.Struct("<16sQII")
_METADATA_HEADER = struct.Struct("<QHH20s")
_METADATA_ENTRY = struct.Struct("<16sIII4s")


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """util/crc32c.c crc32c(crc, data, len), final inversion included."""
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _with_checksum(buf: bytes, crc_offset: int) -> bytes:
    """vhdx_update_checksum: CRC-32C of `buf` with the checksum field zeroed."""
    zeroed = buf[:crc_offset] + bytes(4) + buf[crc_offset + 4 :]
    return zeroed[:crc_offset] + struct.pack("<I", crc32c(zeroed)) + zeroed[crc_offset + 4 :]


def _checksum_valid(buf: bytes, crc_offset: int) -> bool:
    stored = struct.unpack_from("<I", buf, crc_offset)[0]
    zeroed = buf[:crc_offset] + bytes(4) + buf[crc_offset + 4 :]
    return crc32c(zeroed) == stored


def probe(buf: bytes, filename: str) -> int:
    if len(buf) >= 8 and buf[:8] == b"vhdxfile":
        return 100
    return 0


@attrs.frozen
class _Region:
    start: int
    end: int


@attrs.frozen
class _Layout:
    """Where a VHDX image keeps its data: the BAT and the block geometry."""

    bat: tuple[int, ...]
    block_size: int
    chunk_ratio: int
    virtual_size: int


def open_image(ctx: OpenContext) -> ImageFacts:
    """vhdx_open up to the BAT check."""
    return _parse(ctx)[0]


def _parse(ctx: OpenContext) -> tuple[ImageFacts, _Layout]:
    file = ctx.file

    def read(offset: int, size: int) -> bytes:
        try:
            return file.pread(offset, size)
        except OSError as e:
            open_fail(ctx, e.errno or 0)

    if read(0, 8) != b"vhdxfile":
        open_fail(ctx, errno.EINVAL)

    # vhdx_parse_header
    headers = []
    for offset in (HEADER1_OFFSET, HEADER2_OFFSET):
        try:
            buf = file.pread(offset, HEADER_CRC_SIZE)
        except OSError as e:
            fail_errno("No valid VHDX header found", e.errno or 0)
        fields = _HEADER.unpack_from(buf, 0)
        valid = _checksum_valid(buf, 4) and fields[0] == HEADER_SIGNATURE and fields[7] == 1
        headers.append((valid, fields, buf[: _HEADER.size]))
    (v1, h1, raw1), (v2, h2, raw2) = headers
    if v1 and not v2:
        current = h1
    elif v2 and not v1:
        current = h2
    elif not v1 and not v2:
        # 2.11 passes the byte count of its last read as the errno.
        raise ImageError(f"No valid VHDX header found: Unknown error -{HEADER_CRC_SIZE}")
    elif h1[2] > h2[2]:
        current = h1
    elif h2[2] > h1[2]:
        current = h2
    elif raw1 == raw2:
        current = h1
    else:
        raise ImageError(f"No valid VHDX header found: Unknown error -{HEADER_CRC_SIZE}")
    log_guid, log_version, log_length, log_offset = current[5], current[6], current[8], current[9]
    regions = [_Region(log_offset, log_offset + log_length)]

    # vhdx_parse_log, as far as deciding whether a log is present
    if log_offset < LOG_MIN_SIZE or log_offset % LOG_MIN_SIZE:
        open_fail(ctx, errno.EINVAL)
    if log_version != 0:
        open_fail(ctx, errno.EINVAL)
    if log_guid != bytes(16) and log_length != 0 and log_length % LOG_MIN_SIZE:
        open_fail(ctx, errno.EINVAL)

    # vhdx_open_region_tables
    table = read(REGION_TABLE_OFFSET, HEADER_BLOCK_SIZE)
    if not _checksum_valid(table, 4):
        open_fail(ctx, errno.EINVAL)
    signature, _crc, entry_count, _reserved = _REGION_HEADER.unpack_from(table, 0)
    if signature != REGION_SIGNATURE or entry_count > 2047:
        open_fail(ctx, errno.EINVAL)
    bat: tuple[int, int] | None = None
    metadata: tuple[int, int] | None = None
    for i in range(entry_count):
        guid, offset, length, bits = _REGION_ENTRY.unpack_from(
            table, _REGION_HEADER.size + i * _REGION_ENTRY.size
        )
        if any(not (offset >= r.end or offset + length <= r.start) for r in regions):
            open_fail(ctx, errno.EINVAL)
        regions.append(_Region(offset, offset + length))
        if guid == BAT_GUID:
            if bat is not None:
                open_fail(ctx, errno.EINVAL)
            bat = (offset, length)
        elif guid == METADATA_GUID:
            if metadata is not None:
                open_fail(ctx, errno.EINVAL)
            metadata = (offset, length)
        elif bits & REGION_ENTRY_REQUIRED:
            open_fail(ctx, errno.ENOTSUP)
    if bat is None or metadata is None:
        open_fail(ctx, errno.EINVAL)

    # vhdx_parse_metadata
    md_offset = metadata[0]
    md = read(md_offset, METADATA_TABLE_MAX_SIZE)
    md_sig, _res, md_count, _res2 = _METADATA_HEADER.unpack_from(md, 0)
    if md_sig != METADATA_SIGNATURE:
        open_fail(ctx, errno.EINVAL)
    if md_count * METADATA_ENTRY_SIZE > METADATA_TABLE_MAX_SIZE - _METADATA_HEADER.size:
        open_fail(ctx, errno.EINVAL)
    known = {
        FILE_PARAM_GUID: "params",
        VIRTUAL_SIZE_GUID: "size",
        PAGE83_GUID: "page83",
        LOGICAL_SECTOR_GUID: "logical",
        PHYS_SECTOR_GUID: "physical",
        PARENT_LOCATOR_GUID: "parent",
    }
    entries: dict[str, int] = {}
    for i in range(md_count):
        guid, offset, _length, bits, _r = _METADATA_ENTRY.unpack_from(
            md, _METADATA_HEADER.size + i * METADATA_ENTRY_SIZE
        )
        name = known.get(guid)
        if name is not None:
            if name in entries:
                open_fail(ctx, errno.EINVAL)
            entries[name] = offset
        elif bits & META_FLAGS_IS_REQUIRED:
            open_fail(ctx, errno.ENOTSUP)
    # `present != META_ALL_PRESENT`: the five required items, and a parent
    # locator makes the set differ too.
    if entries.keys() != {"params", "size", "page83", "logical", "physical"}:
        open_fail(ctx, errno.ENOTSUP)
    block_size, data_bits = struct.unpack("<II", read(md_offset + entries["params"], 8))
    if data_bits & PARAMS_HAS_PARENT:
        open_fail(ctx, errno.ENOTSUP if "parent" in entries else errno.EINVAL)
    (virtual_size,) = struct.unpack("<Q", read(md_offset + entries["size"], 8))
    (logical,) = struct.unpack("<I", read(md_offset + entries["logical"], 4))
    read(md_offset + entries["physical"], 4)
    if block_size < BLOCK_SIZE_MIN or block_size > BLOCK_SIZE_MAX:
        open_fail(ctx, errno.EINVAL)
    if logical not in (512, 4096):
        open_fail(ctx, errno.EINVAL)
    sectors_per_block = block_size // logical
    chunk_ratio = MAX_SECTORS_PER_BLOCK * logical // block_size
    for value in (sectors_per_block, chunk_ratio, block_size):
        if value & (value - 1):
            open_fail(ctx, errno.EINVAL)

    total_sectors = virtual_size // logical
    bat_entries = _bat_entries(virtual_size, block_size, chunk_ratio)
    if bat_entries > bat[1] // 8:
        open_fail(ctx, errno.EINVAL)
    bat_raw = read(bat[0], bat[1])
    payblocks = chunk_ratio
    for i in range(bat_entries):
        (entry,) = struct.unpack_from("<Q", bat_raw, i * 8)
        if payblocks:
            payblocks -= 1
            if entry & BAT_STATE_BIT_MASK == PAYLOAD_BLOCK_FULLY_PRESENT:
                start = entry & BAT_FILE_OFF_MASK
                if any(not (start >= r.end or start + block_size <= r.start) for r in regions):
                    open_fail(ctx, errno.EINVAL)
        else:
            payblocks = chunk_ratio
    layout = _Layout(bat=struct.unpack(f"<{bat_entries}Q", bat_raw[:bat_entries * 8]),
                     block_size=block_size, chunk_ratio=chunk_ratio,
                     virtual_size=total_sectors * SECTOR_SIZE)
    return ImageFacts(
        filename=ctx.filename,
        format="vhdx",
        # bs->total_sectors is set in logical sectors but used as 512-byte ones.
        virtual_size=total_sectors * SECTOR_SIZE,
        actual_size=file.allocated_size(),
        dirty_flag=False,
        cluster_size=block_size,
        probed=ctx.probed,
        blocks_migration=True,
    ), layout


def _bat_entries(virtual_size: int, block_size: int, chunk_ratio: int) -> int:
    """vhdx_calc_bat_entries for an image without parent. (The unsigned arithmetic of
    2.11 makes an empty image need 2^32 - 1 >> chunk_ratio_bits entries.)"""
    data_blocks = (virtual_size + block_size - 1) // block_size
    chunk_bits = chunk_ratio.bit_length() - 1
    return (data_blocks + (((data_blocks - 1) & 0xFFFFFFFF) >> chunk_bits)) & 0xFFFFFFFF


@attrs.frozen
class CreatePlan:
    size: int
    log_size: int
    block_size: int
    fixed: bool
    use_zero_blocks: bool


def plan_create(size: int, options: dict[str, str | int | bool]) -> CreatePlan:
    """vhdx_create's checks and defaults."""
    opts = dict(options)
    log_size = int(opts.pop("log_size", MiB))
    block_size = int(opts.pop("block_size", 0))
    subformat = opts.pop("subformat", None)
    zero = opts.pop("block_state_zero", True)
    if isinstance(zero, str):
        if zero not in ("on", "off"):
            raise ImageError("Parameter 'block_state_zero' expects 'on' or 'off'")
        zero = zero == "on"
    if opts:
        raise ImageError("Invalid options for file format 'vhdx'")
    image_size = round_up(size, SECTOR_SIZE)
    if image_size > MAX_IMAGE_SIZE:
        fail_errno("Image size too large; max of 64TB", errno.EINVAL)
    if subformat is None or subformat == "dynamic":
        fixed = False
    elif subformat == "fixed":
        fixed = True
    elif subformat == "differencing":
        fail_errno("Differencing files not yet supported", errno.ENOTSUP)
    else:
        raise ImageError(f"Invalid subformat '{subformat}'")
    if block_size == 0:
        if image_size > 32 * TiB:
            block_size = 64 * MiB
        elif image_size > 100 * GiB:
            block_size = 32 * MiB
        elif image_size > GiB:
            block_size = 16 * MiB
        else:
            block_size = 8 * MiB
    log_size = round_up(log_size, MiB)
    block_size = min(round_up(block_size, MiB), BLOCK_SIZE_MAX)
    return CreatePlan(
        size=image_size,
        log_size=log_size,
        block_size=block_size,
        fixed=fixed,
        use_zero_blocks=bool(zero),
    )


def create(file: FileNode, plan: CreatePlan, *, rng: random.Random) -> None:
    """vhdx_create: file identifier, two headers, two region tables, the BAT and the
    metadata region, at the offsets 2.11 uses; sequence number and GUIDs from `rng`."""
    file.truncate(0)
    creator = "QEMU v2.11.0".encode("utf-16-le")
    file.pwrite(0, b"vhdxfile" + creator)

    # vhdx_create_new_headers
    seq = rng.getrandbits(32)
    file_guid, data_guid = random_uuid(rng).bytes, random_uuid(rng).bytes
    for index, offset in enumerate((HEADER1_OFFSET, HEADER2_OFFSET)):
        header = _HEADER.pack(
            HEADER_SIGNATURE,
            0,
            seq + index,
            file_guid,
            data_guid,
            bytes(16),
            0,
            1,
            plan.log_size,
            HEADER_SECTION_END,
        )
        block = _with_checksum(header + bytes(HEADER_CRC_SIZE - len(header)), 4)
        file.pwrite(offset, block[: _HEADER.size])

    # vhdx_create_new_region_table (+ vhdx_create_bat)
    sector_size = 512
    chunk_ratio = MAX_SECTORS_PER_BLOCK * sector_size // plan.block_size
    bat_entries = _bat_entries(plan.size, plan.block_size, chunk_ratio)
    bat_length = round_up(bat_entries * 8, MiB)
    bat_offset = round_up(HEADER_SECTION_END + plan.log_size, MiB)
    metadata_offset = round_up(bat_offset + bat_length, MiB)
    table = _REGION_HEADER.pack(REGION_SIGNATURE, 0, 2, 0)
    table += _REGION_ENTRY.pack(BAT_GUID, bat_offset, bat_length, 0)
    table += _REGION_ENTRY.pack(METADATA_GUID, metadata_offset, MiB, 0)
    table = _with_checksum(table + bytes(HEADER_BLOCK_SIZE - len(table)), 4)

    data_offset = bat_offset + bat_length + 5 * MiB
    if plan.fixed:
        file.truncate(data_offset + plan.size)
    else:
        file.truncate(data_offset)
    if plan.fixed or plan.use_zero_blocks:
        bat = bytearray(bat_length)
        state = PAYLOAD_BLOCK_FULLY_PRESENT if plan.fixed else 0
        if plan.use_zero_blocks:
            state = PAYLOAD_BLOCK_ZERO
        sectors_per_block = plan.block_size // sector_size
        chunk_bits = chunk_ratio.bit_length() - 1
        total_sectors = plan.size // sector_size
        sector = 0
        while sector < total_sectors:
            index = sector // sectors_per_block
            index += index >> chunk_bits
            if state == PAYLOAD_BLOCK_FULLY_PRESENT:
                entry = round_up(data_offset + sector * sector_size, MiB) | state
            else:
                entry = state
            struct.pack_into("<Q", bat, index * 8, entry)
            sector += sectors_per_block
        file.pwrite(bat_offset, bytes(bat))
    file.pwrite(REGION_TABLE_OFFSET, table)
    file.pwrite(REGION_TABLE2_OFFSET, table)

    # vhdx_create_new_metadata
    items = [
        (
            FILE_PARAM_GUID,
            struct.pack("<II", plan.block_size, PARAMS_LEAVE_BLOCKS_ALLOCED if plan.fixed else 0),
            META_FLAGS_IS_REQUIRED,
        ),
        (
            VIRTUAL_SIZE_GUID,
            struct.pack("<Q", plan.size),
            META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK,
        ),
        (PAGE83_GUID, random_uuid(rng).bytes, META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK),
        (
            LOGICAL_SECTOR_GUID,
            struct.pack("<I", sector_size),
            META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK,
        ),
        (
            PHYS_SECTOR_GUID,
            struct.pack("<I", sector_size),
            META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK,
        ),
    ]
    md_table = bytearray(_METADATA_HEADER.pack(METADATA_SIGNATURE, 0, len(items), b""))
    payload = b""
    offset = 64 * KiB
    for guid, data, bits in items:
        md_table += _METADATA_ENTRY.pack(guid, offset, len(data), bits, b"")
        payload += data
        offset += len(data)
    md_table += bytes(HEADER_BLOCK_SIZE - len(md_table))
    file.pwrite(metadata_offset, bytes(md_table))
    file.pwrite(metadata_offset + 64 * KiB, payload)


# --- Data engine ----------------------------------------------------------------------

PAYLOAD_BLOCK_ZERO = 2
PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7


class VhdxData(MappedData):
    """block/vhdx.c's reads (vhdx_co_readv): each payload block through the BAT,
    whose every chunk_ratio-th+1 entry is a sector bitmap entry that is skipped
    (vhdx_block_translate); fully present blocks are read from the file, absent,
    unmapped and zero blocks read as zeros, partially present ones (differencing
    images) fail with EIO. 2.11's vhdx has no get_block_status: block/io.c then
    says data for every range, without an offset. Writes: see `mapped`."""

    def __init__(self, ctx: DataContext) -> None:
        self.file = ctx.file
        self.writable = ctx.writable
        self.backing = ctx.backing
        octx = OpenContext(file=cast(FileNode, ctx.file), filename=ctx.facts.filename,
                           read_only=not ctx.writable)
        self.layout = _parse(octx)[1]
        self.ratio_bits = self.layout.chunk_ratio.bit_length() - 1

    @property
    def length(self) -> int:
        return self.layout.virtual_size

    def block_status(self, offset: int, length: int) -> BlockStatus:
        return BlockStatus(pnum=length, data=True)

    def _map(self, offset: int, length: int) -> Extent:
        bs = self.layout.block_size
        index, in_block = divmod(offset, bs)
        n = min(length, bs - in_block)
        index += index >> self.ratio_bits
        entry = self.layout.bat[index] if index < len(self.layout.bat) else 0
        state = entry & BAT_STATE_BIT_MASK
        if state == PAYLOAD_BLOCK_FULLY_PRESENT:
            return Extent(DATA, n, self.file, (entry & BAT_FILE_OFF_MASK) + in_block)
        if state in (0, 1, PAYLOAD_BLOCK_ZERO, 3, 5):
            return Extent(ZERO, n)
        raise BlockIOError(errno.EIO)


def open_data(ctx: DataContext) -> FormatData:
    return VhdxData(ctx)
