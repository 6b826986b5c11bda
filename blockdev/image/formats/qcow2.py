"""qcow2 (versions 2 and 3): reading the header the way block/qcow2.c
qcow2_do_open does, and writing a new empty image the way qcow2_create2 leaves one.

Reading reproduces 2.11's checks and messages in their order, the header
extensions (backing format, feature name table, bitmaps, LUKS crypto header,
unknown ones), the snapshot table [block/qcow2-snapshot.c qcow2_read_snapshots] and
the bitmap directory [block/qcow2-bitmap.c bitmap_list_load]. The repair 2.11 runs
when a *dirty* image is opened read-write (qcow2_check with fix) is the data
engine's (`qcow2_data`, when the node gets one). Not reproduced (documented gaps):
the IN_USE marking of autoloaded bitmaps on a read-write open, and loading bitmap
contents.

Writing follows block.md §9 (verified against qemu-img): header and extensions in
cluster 0, the refcount table in cluster 1, one refcount block in cluster 2 and the
L1 table from cluster 3, with only the L1 entries' bytes written, exactly what
qcow2_create2 + qcow2_truncate + qcow2_grow_l1_table produce. Images whose metadata
outgrows one refcount block get more refcount-table and refcount-block clusters
placed before the L1 table (2.11 would grow and move them instead; `qemu-img check`
accepts either).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import attrs

from blockdev.image.formats import luks
from blockdev.image.formats.base import (
    SECTOR_SIZE,
    FileNode,
    ImageError,
    OpenContext,
    c_string,
    fail_errno,
    read_or_fail,
    reported_full_backing,
    round_up,
)
from blockdev.image.formats.facts import (
    ImageFacts,
    PersistentBitmap,
    Qcow2Encryption,
    Qcow2Specific,
    SnapshotInfo,
)
from schema.jsontypes import qemu_bytes

QCOW_MAGIC = 0x514649FB
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
DEFAULT_CLUSTER_SIZE = 65536
QCOW_MAX_CRYPT_CLUSTERS = 32
QCOW_MAX_SNAPSHOTS = 65536
QCOW_MAX_REFTABLE_SIZE = 0x800000
QCOW_MAX_L1_SIZE = 0x2000000
QCOW_MAX_SNAPSHOTS_SIZE = 1024 * QCOW_MAX_SNAPSHOTS
QCOW2_MAX_BITMAPS = 65535
QCOW2_MAX_BITMAP_DIRECTORY_SIZE = 1024 * QCOW2_MAX_BITMAPS
INT64_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1

QCOW_CRYPT_NONE = 0
QCOW_CRYPT_AES = 1
QCOW_CRYPT_LUKS = 2

EXT_END = 0
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_CRYPTO_HEADER = 0x0537BE77
EXT_BITMAPS = 0x23852875

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_MASK = INCOMPAT_DIRTY | INCOMPAT_CORRUPT
COMPAT_LAZY_REFCOUNTS = 1 << 0
AUTOCLEAR_BITMAPS = 1 << 0
AUTOCLEAR_MASK = AUTOCLEAR_BITMAPS

FEAT_TYPE_INCOMPATIBLE = 0
FEAT_TYPE_COMPATIBLE = 1

BME_FLAG_IN_USE = 1 << 0
BME_FLAG_AUTO = 1 << 1
BME_RESERVED_FLAGS = 0xFFFFFFFC
BME_MAX_TABLE_SIZE = 0x8000000
BME_MAX_PHYS_SIZE = 0x20000000
BME_MAX_GRANULARITY_BITS = 31
BME_MIN_GRANULARITY_BITS = 9
BME_MAX_NAME_SIZE = 1023

# QCowHeader: the version 2 part is 72 bytes, version 3 adds 32.
_HEADER_V2 = struct.Struct(">IIQIIQIIQQIIQ")
_HEADER_V3_TAIL = struct.Struct(">QQQII")
HEADER_V2_SIZE = _HEADER_V2.size
HEADER_SIZE = HEADER_V2_SIZE + _HEADER_V3_TAIL.size
_EXT = struct.Struct(">II")
_SNAPSHOT = struct.Struct(">QIHHIIQII")
_BITMAP_DIR_ENTRY = struct.Struct(">QIIBBHI")

# qcow2_update_header's feature name table.
FEATURE_TABLE: tuple[tuple[int, int, str], ...] = (
    (FEAT_TYPE_INCOMPATIBLE, 0, "dirty bit"),
    (FEAT_TYPE_INCOMPATIBLE, 1, "corrupt bit"),
    (FEAT_TYPE_COMPATIBLE, 0, "lazy refcounts"),
)


def probe(buf: bytes, filename: str) -> int:
    """qcow2_probe: the magic and a version of at least 2 in a full header."""
    if len(buf) >= HEADER_SIZE:
        magic, version = struct.unpack_from(">II", buf, 0)
        if magic == QCOW_MAGIC and version >= 2:
            return 100
    return 0


@attrs.define(kw_only=True)
class Qcow2Header:
    """A qcow2 header with its extensions, as qcow2_update_header writes it."""

    version: int = 3
    backing_file_offset: int = 0
    backing_file_size: int = 0
    cluster_bits: int = 16
    size: int = 0
    crypt_method: int = QCOW_CRYPT_NONE
    l1_size: int = 0
    l1_table_offset: int = 0
    refcount_table_offset: int = 0
    refcount_table_clusters: int = 0
    nb_snapshots: int = 0
    snapshots_offset: int = 0
    incompatible_features: int = 0
    compatible_features: int = 0
    autoclear_features: int = 0
    refcount_order: int = 4
    header_length: int = HEADER_SIZE
    unknown_header_fields: bytes = b""
    # Extensions and the backing file name.
    backing_format: str | None = None
    backing_file: str | None = None
    crypto_header: tuple[int, int] | None = None
    nb_bitmaps: int = 0
    bitmap_directory_size: int = 0
    bitmap_directory_offset: int = 0
    unknown_extensions: list[tuple[int, bytes]] = attrs.Factory(list)

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    def pack(self) -> bytes:
        """Cluster 0 as qcow2_update_header fills it. Raises OSError(ENOSPC) when
        the extensions and backing file name do not fit, as QEMU fails then."""
        cluster = self.cluster_size
        header_length = HEADER_SIZE + len(self.unknown_header_fields)
        out = bytearray(
            _HEADER_V2.pack(
                QCOW_MAGIC,
                self.version,
                0,
                0,
                self.cluster_bits,
                self.size,
                self.crypt_method,
                self.l1_size,
                self.l1_table_offset,
                self.refcount_table_offset,
                self.refcount_table_clusters,
                self.nb_snapshots,
                self.snapshots_offset,
            )
        )
        if self.version >= 3:
            out += _HEADER_V3_TAIL.pack(
                self.incompatible_features,
                self.compatible_features,
                self.autoclear_features,
                self.refcount_order,
                header_length,
            )
            out += self.unknown_header_fields
        exts: list[tuple[int, bytes]] = []
        if self.backing_format is not None:
            exts.append((EXT_BACKING_FORMAT, qemu_bytes(self.backing_format)))
        if self.crypto_header is not None and self.crypto_header[0] != 0:
            exts.append((EXT_CRYPTO_HEADER, struct.pack(">QQ", *self.crypto_header)))
        if self.version >= 3:
            table = b"".join(
                struct.pack(">BB46s", kind, bit, name.encode()) for kind, bit, name in FEATURE_TABLE
            )
            exts.append((EXT_FEATURE_TABLE, table))
        if self.nb_bitmaps > 0:
            exts.append(
                (
                    EXT_BITMAPS,
                    struct.pack(
                        ">IIQQ",
                        self.nb_bitmaps,
                        0,
                        self.bitmap_directory_size,
                        self.bitmap_directory_offset,
                    ),
                )
            )
        exts.extend(self.unknown_extensions)
        exts.append((EXT_END, b""))
        for magic, data in exts:
            padded = round_up(len(data), 8)
            out += _EXT.pack(magic, len(data)) + data + bytes(padded - len(data))
        if len(out) > cluster:
            raise OSError(28, "No space left on device")
        if self.backing_file is not None:
            name = qemu_bytes(self.backing_file)
            if cluster - len(out) < len(name):
                raise OSError(28, "No space left on device")
            struct.pack_into(">QI", out, 8, len(out), len(name))
            out += name
        return bytes(out) + bytes(cluster - len(out))


def _validate_table_offset(offset: int, entries: int, entry_len: int, cluster_size: int) -> bool:
    """block/qcow2.c validate_table_offset."""
    if entries > INT64_MAX // entry_len:
        return False
    size = entries * entry_len
    if INT64_MAX - size < offset:
        return False
    return offset % cluster_size == 0


def _size_to_l1(size: int, cluster_bits: int) -> int:
    shift = cluster_bits + (cluster_bits - 3)
    return (size + (1 << shift) - 1) >> shift


def _iter_extensions(file: FileNode, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Walk the header extensions as qcow2_read_extensions does, yielding (magic,
    data offset, length) and stopping at the end marker; the framing errors are
    QEMU's."""
    offset = start
    while offset < end:
        try:
            raw = file.pread(offset, _EXT.size)
        except OSError as e:
            fail_errno(
                f"qcow2_read_extension: ERROR: pread fail from offset {offset}", e.errno or 0
            )
        magic, length = _EXT.unpack(raw)
        offset += _EXT.size
        if offset > end or length > end - offset:
            raise ImageError("Header extension too large")
        if magic == EXT_END:
            return
        yield magic, offset, length
        offset += round_up(length, 8)


def _feature_table(file: FileNode, start: int, end: int) -> list[tuple[int, int, str]]:
    """The feature name table, read the lenient way the unsupported-feature report
    does (errors end the walk silently)."""
    table: list[tuple[int, int, str]] = []
    try:
        for magic, offset, length in _iter_extensions(file, start, end):
            if magic == EXT_FEATURE_TABLE:
                raw = file.pread(offset, length) + bytes(96)
                table = []
                for pos in range(0, len(raw) - 47, 48):
                    kind, bit, name = struct.unpack_from(">BB46s", raw, pos)
                    if name[0] == 0:
                        break
                    table.append((kind, bit, c_string(name)))
    except (ImageError, OSError):
        pass
    return table


def _unsupported_features(table: list[tuple[int, int, str]], mask: int) -> str:
    """report_unsupported_feature."""
    names = []
    for kind, bit, name in table:
        if kind == FEAT_TYPE_INCOMPATIBLE and mask & (1 << bit):
            names.append(name)
            mask &= ~(1 << bit)
    if mask:
        names.append(f"Unknown incompatible feature: {mask:x}")
    return "Unsupported qcow2 feature(s): " + ", ".join(names)


@attrs.frozen
class _Parsed:
    header: Qcow2Header
    snapshots: tuple[SnapshotInfo, ...]
    bitmaps: tuple[PersistentBitmap, ...]
    encrypt: Qcow2Encryption | None
    stale_bitmaps_ext: bool


def read_header(ctx: OpenContext) -> _Parsed:
    """qcow2_do_open up to the point where the image is usable; raises QEMU's errors."""
    file = ctx.file
    raw = read_or_fail(file, 0, HEADER_SIZE, "Could not read qcow2 header")
    (
        magic,
        version,
        backing_file_offset,
        backing_file_size,
        cluster_bits,
        size,
        crypt_method,
        l1_size,
        l1_table_offset,
        refcount_table_offset,
        refcount_table_clusters,
        nb_snapshots,
        snapshots_offset,
    ) = _HEADER_V2.unpack_from(raw, 0)
    if magic != QCOW_MAGIC:
        raise ImageError("Image is not in qcow2 format")
    if version < 2 or version > 3:
        raise ImageError(f"Unsupported qcow2 version {version}")
    if cluster_bits < MIN_CLUSTER_BITS or cluster_bits > MAX_CLUSTER_BITS:
        raise ImageError(f"Unsupported cluster size: 2^{cluster_bits}")
    cluster_size = 1 << cluster_bits

    if version == 2:
        incompatible = compatible = autoclear = 0
        refcount_order = 4
        header_length = HEADER_V2_SIZE
    else:
        incompatible, compatible, autoclear, refcount_order, header_length = (
            _HEADER_V3_TAIL.unpack_from(raw, HEADER_V2_SIZE)
        )
        if header_length < HEADER_SIZE:
            raise ImageError("qcow2 header too short")
    if header_length > cluster_size:
        raise ImageError("qcow2 header exceeds cluster size")
    unknown_fields = b""
    if header_length > HEADER_SIZE:
        unknown_fields = read_or_fail(
            file,
            HEADER_SIZE,
            header_length - HEADER_SIZE,
            "Could not read unknown qcow2 header fields",
        )
    if backing_file_offset > cluster_size:
        raise ImageError("Invalid backing file offset")
    ext_end = backing_file_offset if backing_file_offset else cluster_size

    if incompatible & ~INCOMPAT_MASK:
        table = _feature_table(file, header_length, ext_end)
        raise ImageError(_unsupported_features(table, incompatible & ~INCOMPAT_MASK))
    if incompatible & INCOMPAT_CORRUPT and not ctx.read_only:
        raise ImageError("qcow2: Image is corrupt; cannot be opened read/write")
    if refcount_order > 6:
        raise ImageError("Reference count entry width too large; may not exceed 64 bits")

    if crypt_method and ctx.system_emulator and crypt_method == QCOW_CRYPT_AES:
        raise ImageError(
            "Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators"
        )

    refcount_table_size = refcount_table_clusters << (cluster_bits - 3)
    if refcount_table_clusters > QCOW_MAX_REFTABLE_SIZE >> cluster_bits:
        raise ImageError("Reference count table too large")
    if refcount_table_clusters == 0:
        raise ImageError("Image does not contain a reference count table")
    if not _validate_table_offset(refcount_table_offset, refcount_table_size, 8, cluster_size):
        raise ImageError("Invalid reference count table offset")
    if nb_snapshots > QCOW_MAX_SNAPSHOTS:
        raise ImageError("Too many snapshots")
    if not _validate_table_offset(snapshots_offset, nb_snapshots, _SNAPSHOT.size, cluster_size):
        raise ImageError("Invalid snapshot table offset")
    if l1_size > QCOW_MAX_L1_SIZE // 8:
        raise ImageError("Active L1 table too large")
    l1_vm_state_index = _size_to_l1(size, cluster_bits)
    if l1_vm_state_index > INT_MAX:
        raise ImageError("Image is too big")
    if l1_size < l1_vm_state_index:
        raise ImageError("L1 table is too small")
    if not _validate_table_offset(l1_table_offset, l1_size, 8, cluster_size):
        raise ImageError("Invalid L1 table offset")
    if l1_size > 0:
        read_or_fail(file, l1_table_offset, l1_size * 8, "Could not read L1 table")

    # qcow2_update_options: the encryption method must be one QEMU knows.
    if crypt_method not in (QCOW_CRYPT_NONE, QCOW_CRYPT_AES, QCOW_CRYPT_LUKS):
        raise ImageError(f"Unsupported encryption method {crypt_method}")

    # qcow2_refcount_init
    read_or_fail(
        file,
        refcount_table_offset,
        refcount_table_size * 8,
        "Could not initialize refcount handling",
    )

    header = Qcow2Header(
        version=version,
        backing_file_offset=backing_file_offset,
        backing_file_size=backing_file_size,
        cluster_bits=cluster_bits,
        size=size,
        crypt_method=crypt_method,
        l1_size=l1_size,
        l1_table_offset=l1_table_offset,
        refcount_table_offset=refcount_table_offset,
        refcount_table_clusters=refcount_table_clusters,
        nb_snapshots=nb_snapshots,
        snapshots_offset=snapshots_offset,
        incompatible_features=incompatible,
        compatible_features=compatible,
        autoclear_features=autoclear,
        refcount_order=refcount_order,
        header_length=header_length,
        unknown_header_fields=unknown_fields,
    )
    encrypt, stale_bitmaps_ext = _read_extensions(ctx, header, ext_end)

    if crypt_method and encrypt is None:
        if crypt_method == QCOW_CRYPT_AES:
            if ctx.key_secret is None:
                raise ImageError("Parameter 'encrypt.key-secret' is required for cipher")
            encrypt = Qcow2Encryption(format="aes")
        else:
            raise ImageError(f"Missing CRYPTO header for crypt method {crypt_method}")

    if backing_file_offset != 0:
        length = backing_file_size
        if length > min(1023, cluster_size - backing_file_offset) or length >= 1024:
            raise ImageError("Backing file name too long")
        name = read_or_fail(file, backing_file_offset, length, "Could not read backing file name")
        header.backing_file = c_string(name)

    snapshots = _read_snapshots(file, header)
    bitmaps: tuple[PersistentBitmap, ...] = ()
    if header.nb_bitmaps:
        bitmaps = _read_bitmap_directory(file, header)
    return _Parsed(
        header=header,
        snapshots=snapshots,
        bitmaps=bitmaps,
        encrypt=encrypt,
        stale_bitmaps_ext=stale_bitmaps_ext,
    )


def _read_extensions(
    ctx: OpenContext, header: Qcow2Header, end: int
) -> tuple[Qcow2Encryption | None, bool]:
    """qcow2_read_extensions for a real open. Also says whether a bitmaps extension
    was found that the autoclear bit declares stale (2.11 then drops it from the
    header of a read-write image)."""
    file = ctx.file
    encrypt: Qcow2Encryption | None = None
    stale = False
    for magic, offset, length in _iter_extensions(file, header.header_length, end):
        if magic == EXT_BACKING_FORMAT:
            if length >= 16:
                raise ImageError(f"ERROR: ext_backing_format: len={length} too large (>=16)")
            raw = read_or_fail(
                file, offset, length, "ERROR: ext_backing_format: Could not read format name"
            )
            header.backing_format = c_string(raw)
        elif magic == EXT_FEATURE_TABLE:
            pass
        elif magic == EXT_CRYPTO_HEADER:
            if header.crypt_method != QCOW_CRYPT_LUKS:
                raise ImageError(
                    "CRYPTO header extension only expected with LUKS encryption method"
                )
            if length != 16:
                raise ImageError(f"CRYPTO header extension size {length}, but expected size 16")
            raw = read_or_fail(file, offset, 16, "Unable to read CRYPTO header extension")
            crypto_offset, crypto_length = struct.unpack(">QQ", raw)
            if crypto_offset % header.cluster_size:
                raise ImageError(
                    f"Encryption header offset '{crypto_offset}' is not a multiple of "
                    f"cluster size '{header.cluster_size}'"
                )
            header.crypto_header = (crypto_offset, crypto_length)

            def read(
                pos: int, size: int, base: int = crypto_offset, lim: int = crypto_length
            ) -> bytes:
                if pos + size > lim:
                    raise ImageError("Request for data outside of extension header")
                return read_or_fail(file, base + pos, size, "Could not read encryption header")

            info = luks.parse_header(read, optprefix="encrypt.", key_secret=ctx.key_secret)
            encrypt = Qcow2Encryption(format="luks", luks=info)
        elif magic == EXT_BITMAPS:
            if length != 24:
                # 2.11 passes the byte count of its last read as the errno.
                raise ImageError(
                    f"bitmaps_ext: Invalid extension length: Unknown error -{_EXT.size}"
                )
            if not header.autoclear_features & AUTOCLEAR_BITMAPS:
                # A program without bitmap support touched the image: 2.11 warns
                # and ignores the extension.
                stale = True
                continue
            raw = read_or_fail(file, offset, 24, "bitmaps_ext: Could not read ext header")
            nb_bitmaps, reserved, dir_size, dir_offset = struct.unpack(">IIQQ", raw)
            if reserved != 0:
                raise ImageError("bitmaps_ext: Reserved field is not zero: Unknown error -24")
            if nb_bitmaps > QCOW2_MAX_BITMAPS:
                raise ImageError(
                    f"bitmaps_ext: Image has {nb_bitmaps} bitmaps, exceeding the QEMU "
                    f"supported maximum of {QCOW2_MAX_BITMAPS}"
                )
            if nb_bitmaps == 0:
                raise ImageError("found bitmaps extension with zero bitmaps")
            if dir_offset & (header.cluster_size - 1):
                raise ImageError("bitmaps_ext: invalid bitmap directory offset")
            if dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE:
                raise ImageError(
                    f"bitmaps_ext: bitmap directory size ({dir_size}) exceeds the maximum "
                    f"supported size ({QCOW2_MAX_BITMAP_DIRECTORY_SIZE})"
                )
            header.nb_bitmaps = nb_bitmaps
            header.bitmap_directory_size = dir_size
            header.bitmap_directory_offset = dir_offset
        else:
            data = read_or_fail(
                file, offset, length, "ERROR: unknown extension: Could not read data"
            )
            # QLIST_INSERT_HEAD: a rewritten header has them in reverse order.
            header.unknown_extensions.insert(0, (magic, data))
    return encrypt, stale


def _read_snapshots(file: FileNode, header: Qcow2Header) -> tuple[SnapshotInfo, ...]:
    """qcow2_read_snapshots; any failure is `Could not read snapshots: <strerror>`."""
    snaps = []
    offset = header.snapshots_offset
    try:
        for _ in range(header.nb_snapshots):
            offset = round_up(offset, 8)
            (
                _l1_offset,
                _l1_size,
                id_size,
                name_size,
                date_sec,
                date_nsec,
                vm_clock_nsec,
                vm_state_size,
                extra_size,
            ) = _SNAPSHOT.unpack(file.pread(offset, _SNAPSHOT.size))
            offset += _SNAPSHOT.size
            extra = file.pread(offset, min(16, extra_size))
            offset += extra_size
            if extra_size >= 8:
                vm_state_size = struct.unpack_from(">Q", extra, 0)[0]
            id_str = c_string(file.pread(offset, id_size))
            offset += id_size
            name = c_string(file.pread(offset, name_size))
            offset += name_size
            if offset - header.snapshots_offset > QCOW_MAX_SNAPSHOTS_SIZE:
                fail_errno("Could not read snapshots", 27)
            snaps.append(
                SnapshotInfo(
                    id=id_str,
                    name=name,
                    vm_state_size=vm_state_size,
                    date_sec=date_sec,
                    date_nsec=date_nsec,
                    vm_clock_sec=vm_clock_nsec // 1_000_000_000,
                    vm_clock_nsec=vm_clock_nsec % 1_000_000_000,
                )
            )
    except OSError as e:
        fail_errno("Could not read snapshots", e.errno or 0)
    return tuple(snaps)


def _read_bitmap_directory(file: FileNode, header: Qcow2Header) -> tuple[PersistentBitmap, ...]:
    """bitmap_list_load with its checks and messages (check_dir_entry included)."""
    size = header.bitmap_directory_size
    if size == 0:
        raise ImageError("Requested bitmap directory size is zero")
    if size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE:
        raise ImageError("Requested bitmap directory size is too big")
    raw = read_or_fail(
        file, header.bitmap_directory_offset, size, "Failed to read bitmap directory"
    )
    disk_len = header.size // SECTOR_SIZE * SECTOR_SIZE
    out = []
    pos = 0
    count = 0
    while pos < size:
        if pos + _BITMAP_DIR_ENTRY.size > size:
            raise ImageError("Broken bitmap directory")
        count += 1
        if count > header.nb_bitmaps:
            raise ImageError("More bitmaps found than specified in header extension")
        table_offset, table_size, flags, kind, gran_bits, name_size, extra_size = (
            _BITMAP_DIR_ENTRY.unpack_from(raw, pos)
        )
        entry_size = round_up(_BITMAP_DIR_ENTRY.size + name_size + extra_size, 8)
        if pos + entry_size > size:
            raise ImageError("Broken bitmap directory")
        if extra_size != 0:
            raise ImageError("Bitmap extra data is not supported")
        name_start = pos + _BITMAP_DIR_ENTRY.size + extra_size
        name_raw = raw[name_start : name_start + name_size]
        bad = (
            table_size == 0
            or table_offset == 0
            or table_offset % header.cluster_size
            or table_size > BME_MAX_TABLE_SIZE
            or gran_bits > BME_MAX_GRANULARITY_BITS
            or gran_bits < BME_MIN_GRANULARITY_BITS
            or flags & BME_RESERVED_FLAGS
            or name_size > BME_MAX_NAME_SIZE
            or kind != 1
        )
        if not bad:
            phys = table_size * header.cluster_size
            bad = phys > BME_MAX_PHYS_SIZE or disk_len > (phys * 8) << gran_bits
        if bad:
            text = c_string(name_raw)
            raise ImageError(f"Bitmap '{text}' doesn't satisfy the constraints")
        out.append(
            PersistentBitmap(
                name=name_raw.decode("utf-8", errors="replace"),
                granularity=1 << gran_bits,
                in_use=bool(flags & BME_FLAG_IN_USE),
                auto=bool(flags & BME_FLAG_AUTO),
            )
        )
        pos += entry_size
    if count != header.nb_bitmaps:
        raise ImageError("Less bitmaps found than specified in header extension")
    if pos != size:
        raise ImageError("Broken bitmap directory")
    return tuple(out)


def open_image(ctx: OpenContext) -> ImageFacts:
    parsed = read_header(ctx)
    header = parsed.header
    # qcow2_do_open: a read-write, active open clears unknown autoclear bits and
    # drops a stale bitmaps extension by rewriting the header.
    if (header.autoclear_features & ~AUTOCLEAR_MASK or parsed.stale_bitmaps_ext) and not (
        ctx.read_only or ctx.inactive
    ):
        header.autoclear_features &= AUTOCLEAR_MASK
        header.size = header.size // SECTOR_SIZE * SECTOR_SIZE
        try:
            ctx.file.pwrite(0, header.pack())
        except OSError as e:
            fail_errno("Could not update qcow2 header", e.errno or 0)
    if header.version == 2:
        specific = Qcow2Specific(
            compat="0.10", refcount_bits=1 << header.refcount_order, encrypt=parsed.encrypt
        )
    else:
        specific = Qcow2Specific(
            compat="1.1",
            lazy_refcounts=bool(header.compatible_features & COMPAT_LAZY_REFCOUNTS),
            corrupt=bool(header.incompatible_features & INCOMPAT_CORRUPT),
            refcount_bits=1 << header.refcount_order,
            encrypt=parsed.encrypt,
        )
    backing = header.backing_file
    full = reported_full_backing(ctx.filename, backing)
    return ImageFacts(
        filename=ctx.filename,
        format="qcow2",
        # bs->total_sectors = header.size / 512
        virtual_size=header.size // SECTOR_SIZE * SECTOR_SIZE,
        actual_size=ctx.file.allocated_size(),
        # qcow2_get_info never sets is_dirty in 2.11.
        dirty_flag=False,
        cluster_size=header.cluster_size,
        encrypted=header.crypt_method != QCOW_CRYPT_NONE,
        backing_filename=backing or None,
        full_backing_filename=full,
        backing_filename_format=(header.backing_format or None) if backing else None,
        snapshots=parsed.snapshots,
        format_specific=specific,
        probed=ctx.probed,
        supports_backing=True,
        persistent_bitmaps=parsed.bitmaps,
    )


# --- Creation -----------------------------------------------------------------------


@attrs.frozen
class CreateOptions:
    """The qcow2 creation options 2.11 understands [qcow2_create], minus
    encryption and preallocation (see `create`)."""

    size: int
    backing_file: str | None = None
    backing_format: str | None = None
    cluster_size: int = DEFAULT_CLUSTER_SIZE
    version: int = 3
    lazy_refcounts: bool = False
    refcount_bits: int = 16


def parse_create_options(
    size: int,
    backing_file: str | None,
    backing_format: str | None,
    options: dict[str, str | int | bool],
) -> CreateOptions:
    """qcow2_create's option checks, in its order and with its messages."""
    opts = dict(options)
    encrypt = opts.pop("encryption", None)
    encrypt_format = opts.pop("encrypt.format", None)
    if encrypt_format is not None and encrypt is not None:
        raise ImageError("Options encryption and encrypt.format are mutually exclusive")
    cluster_size = int(opts.pop("cluster_size", DEFAULT_CLUSTER_SIZE))
    bits = (cluster_size & -cluster_size).bit_length() - 1 if cluster_size else 0
    if bits < MIN_CLUSTER_BITS or bits > MAX_CLUSTER_BITS or 1 << bits != cluster_size:
        raise ImageError(
            f"Cluster size must be a power of two between {1 << MIN_CLUSTER_BITS} and "
            f"{1 << (MAX_CLUSTER_BITS - 10)}k"
        )
    prealloc = str(opts.pop("preallocation", "off"))
    if prealloc not in ("off", "metadata", "falloc", "full"):
        raise ImageError(f"invalid parameter value: {prealloc}")
    compat = opts.pop("compat", None)
    if compat is None or compat == "1.1":
        version = 3
    elif compat == "0.10":
        version = 2
    else:
        raise ImageError(f"Invalid compatibility level: '{compat}'")
    lazy = _bool("lazy_refcounts", opts.pop("lazy_refcounts", False))
    if backing_file is not None and prealloc != "off":
        raise ImageError("Backing file and preallocation cannot be used at the same time")
    if version < 3 and lazy:
        raise ImageError(
            "Lazy refcounts only supported with compatibility level 1.1 and above "
            "(use compat=1.1 or greater)"
        )
    refcount_bits = int(opts.pop("refcount_bits", 16))
    if refcount_bits > 64 or refcount_bits <= 0 or refcount_bits & (refcount_bits - 1):
        raise ImageError("Refcount width must be a power of two and may not exceed 64 bits")
    if version < 3 and refcount_bits != 16:
        raise ImageError(
            "Different refcount widths than 16 bits require compatibility level 1.1 "
            "or above (use compat=1.1 or greater)"
        )
    if opts:
        raise ImageError("Invalid options for file format 'qcow2'")
    if encrypt not in (None, False, "off") or encrypt_format is not None:
        raise ImageError("qcow2 encryption is not supported by the emulator's image writer")
    if prealloc != "off":
        raise ImageError(
            f"qcow2 preallocation={prealloc} is not supported by the emulator's image writer"
        )
    return CreateOptions(
        size=round_up(size, SECTOR_SIZE),
        backing_file=backing_file,
        backing_format=backing_format,
        cluster_size=cluster_size,
        version=version,
        lazy_refcounts=lazy,
        refcount_bits=refcount_bits,
    )


def _bool(name: str, value: str | int | bool) -> bool:
    """util/qemu-option.c parse_option_bool."""
    if isinstance(value, str):
        if value == "on":
            return True
        if value == "off":
            return False
        raise ImageError(f"Parameter '{name}' expects 'on' or 'off'")
    return bool(value)


def _refcount_block(refcount_bits: int, cluster_size: int, used: range) -> bytes:
    """One refcount block giving every cluster index in `used` a refcount of 1, in
    the bit packing of qcow2-refcount.c (sub-byte widths fill a byte from its least
    significant bit; wider ones are big-endian)."""
    block = bytearray(cluster_size)
    for index in used:
        if refcount_bits < 8:
            per_byte = 8 // refcount_bits
            block[index // per_byte] |= 1 << (refcount_bits * (index % per_byte))
        else:
            width = refcount_bits // 8
            block[index * width + width - 1] = 1
    return bytes(block)


def create(file: FileNode, opts: CreateOptions) -> None:
    """Write a new empty image into the freshly truncated `file`, as qcow2_create2.

    The image without backing file is written first; as in 2.11, a backing file
    name that cannot be recorded then fails with the image left behind.
    """
    cluster = opts.cluster_size
    cluster_bits = cluster.bit_length() - 1
    refcount_order = opts.refcount_bits.bit_length() - 1
    l1_size = _size_to_l1(opts.size, cluster_bits)
    if l1_size > QCOW_MAX_L1_SIZE // 8:
        # qcow2_grow_l1_table fails after the empty image exists; bdrv_img_create
        # then words the EFBIG itself.
        _write_image(file, opts, cluster_bits, refcount_order, size=0, l1_size=0)
        raise ImageError("The image size is too large for file format 'qcow2'", errno=27)
    header = _write_image(file, opts, cluster_bits, refcount_order, size=opts.size, l1_size=l1_size)
    if opts.backing_file is not None:
        fmt = opts.backing_format
        try:
            if len(qemu_bytes(opts.backing_file)) > 1023:
                raise OSError(22, "Invalid argument")
            header.backing_file = opts.backing_file
            header.backing_format = fmt
            file.pwrite(0, header.pack())
        except OSError as e:
            fail_errno(
                f"Could not assign backing file '{opts.backing_file}' with format "
                f"'{fmt if fmt is not None else '(null)'}'",
                e.errno or 0,
            )


def _write_image(
    file: FileNode,
    opts: CreateOptions,
    cluster_bits: int,
    refcount_order: int,
    *,
    size: int,
    l1_size: int,
) -> Qcow2Header:
    cluster = 1 << cluster_bits
    l1_clusters = (l1_size * 8 + cluster - 1) // cluster
    per_block = cluster * 8 // opts.refcount_bits
    reftable_clusters, refblocks = 1, 1
    while True:
        total = 1 + reftable_clusters + refblocks + l1_clusters
        need_blocks = (total + per_block - 1) // per_block
        need_table = (need_blocks * 8 + cluster - 1) // cluster
        if (need_blocks, need_table) == (refblocks, reftable_clusters):
            break
        refblocks, reftable_clusters = need_blocks, need_table
    total = 1 + reftable_clusters + refblocks + l1_clusters
    refblock_start = 1 + reftable_clusters
    l1_offset = (refblock_start + refblocks) * cluster if l1_size else 0

    header = Qcow2Header(
        version=opts.version,
        cluster_bits=cluster_bits,
        size=size,
        l1_size=l1_size,
        l1_table_offset=l1_offset,
        refcount_table_offset=cluster,
        refcount_table_clusters=reftable_clusters,
        compatible_features=COMPAT_LAZY_REFCOUNTS if opts.lazy_refcounts else 0,
        refcount_order=refcount_order,
    )
    table = bytearray(reftable_clusters * cluster)
    for i in range(refblocks):
        struct.pack_into(">Q", table, i * 8, (refblock_start + i) * cluster)
    blocks = b"".join(
        _refcount_block(
            opts.refcount_bits,
            cluster,
            range(0, max(0, min(per_block, total - i * per_block))),
        )
        for i in range(refblocks)
    )
    file.pwrite(0, header.pack())
    file.pwrite(cluster, bytes(table) + blocks)
    if l1_size:
        file.pwrite(l1_offset, bytes(l1_size * 8))
    return header
