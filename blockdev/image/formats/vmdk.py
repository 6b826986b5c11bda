"""VMDK: block/vmdk.c's sparse headers (VMDK4 "KDMV", VMDK3 "COWD"), descriptor
files with FLAT/SPARSE/VMFS/VMFSSPARSE extents, and image creation for the
subformats 2.11 writes.

A descriptor's extents are separate files: each is opened as its own file node
(through `OpenContext.open_extent`, which also takes its lock) and reported in
`ImageFacts.extent_files`. The parent hint (`parentFileNameHint`) is the backing
file; vmdk has no backing-format option, so 2.11 refuses to create a vmdk overlay
when a backing format is given. VMDK images block live migration. Reading grain
tables and the parent CID check done at I/O time are outside this module.

`VmdkData` is the data engine (reads of flat, sparse and streamOptimized extents).
"""

from __future__ import annotations

import errno
import re
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

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
    fail_errno,
    full_backing_filename,
    open_fail,
    path_combine,
    path_has_protocol,
    path_is_absolute,
    reported_full_backing,
    round_up,
)
from blockdev.image.formats.facts import ImageFacts, VmdkExtentInfo, VmdkSpecific
from blockdev.image.formats.mapped import (
    COMPRESSED,
    DATA,
    UNALLOCATED,
    ZERO,
    Extent,
    MappedData,
)

if TYPE_CHECKING:
    import random

VMDK3_MAGIC = 0x434F5744  # "COWD"
VMDK4_MAGIC = 0x4B444D56  # "KDMV"
VMDK4_COMPRESSION_DEFLATE = 1
VMDK4_FLAG_NL_DETECT = 1 << 0
VMDK4_FLAG_RGD = 1 << 1
VMDK4_FLAG_ZERO_GRAIN = 1 << 2
VMDK4_FLAG_COMPRESS = 1 << 16
VMDK4_FLAG_MARKER = 1 << 17
VMDK4_GD_AT_END = 0xFFFFFFFFFFFFFFFF
MARKER_END_OF_STREAM = 0
MARKER_FOOTER = 3
DESC_SIZE = 20 * SECTOR_SIZE
SPLIT_SIZE = 0x80000000

# version, flags, capacity, granularity, desc_offset, desc_size, num_gtes_per_gt,
# rgd_offset, gd_offset, grain_offset, filler, check_bytes[4], compressAlgorithm
_VMDK4 = struct.Struct("<IIQQQQIQQQB4sH")
# version, flags, disk_sectors, granularity, l1dir_offset, l1dir_size,
# file_sectors, cylinders, heads, sectors_per_track
_VMDK3 = struct.Struct("<10I")

SUBFORMATS = (
    "monolithicSparse",
    "monolithicFlat",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
    "streamOptimized",
)
DESCRIPTOR_CREATE_TYPES = (
    "monolithicFlat",
    "vmfs",
    "vmfsSparse",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
)


def probe(buf: bytes, filename: str) -> int:
    """vmdk_probe: a sparse magic, or a text file whose first line that is neither a
    comment nor blank is `version=1` or `version=2`."""
    if len(buf) < 4:
        return 0
    magic = struct.unpack_from(">I", buf, 0)[0]
    if magic in (VMDK3_MAGIC, VMDK4_MAGIC):
        return 100
    p, end = 0, len(buf)
    while p < end:
        if buf[p : p + 1] == b"#":
            while p < end and buf[p : p + 1] != b"\n":
                p += 1
            p += 1
            continue
        if buf[p : p + 1] == b" ":
            while p < end and buf[p : p + 1] == b" ":
                p += 1
            if p < end and buf[p : p + 1] == b"\r":
                p += 1
            if p == end or buf[p : p + 1] != b"\n":
                return 0
            p += 1
            continue
        rest = buf[p:]
        if rest.startswith((b"version=1\n", b"version=2\n", b"version=1\r\n", b"version=2\r\n")):
            return 100
        return 0
    return 0


@attrs.define(kw_only=True)
class _Extent:
    file: FileNode
    flat: bool
    sectors: int
    cluster_sectors: int
    compressed: bool = False
    type: str | None = None
    # Where the data is (the data engine's needs): a flat extent's start in its
    # file; a sparse extent's grain directory (L1) and grain table size.
    flat_offset: int = 0
    l1_offset: int = 0
    l1_size: int = 0
    l2_size: int = 0
    zero_grain: bool = False
    has_marker: bool = False


@attrs.define(kw_only=True)
class _State:
    ctx: OpenContext
    create_type: str | None = None
    desc_offset: int = 0
    extents: list[_Extent] = attrs.Factory(list)
    extra_files: list[FileNode] = attrs.Factory(list)


def _read_desc(file: FileNode, offset: int) -> bytes:
    """vmdk_read_desc: up to 1 MiB - 1 bytes, as a C string."""
    size = file.length
    if size < 4:
        raise ImageError("File is too small, not a valid image")
    size = min(size, (1 << 20) - 1)
    try:
        data = file.pread(offset, size)
    except OSError as e:
        fail_errno("Could not read from file", e.errno or 0)
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def _add_extent(
    st: _State,
    file: FileNode,
    *,
    flat: bool,
    sectors: int,
    l1_offset: int,
    l1_backup_offset: int,
    l1_size: int,
    cluster_sectors: int,
    l2_size: int = 0,
    flat_offset: int = 0,
) -> _Extent:
    """vmdk_add_extent (+ vmdk_init_tables for sparse extents)."""
    if cluster_sectors > 0x200000:
        raise ImageError("Invalid granularity, image may be corrupt", errno=errno.EFBIG)
    if l1_size > 512 * 1024 * 1024:
        raise ImageError("L1 size too big", errno=errno.EFBIG)
    extent = _Extent(
        file=file,
        flat=flat,
        sectors=sectors,
        cluster_sectors=sectors if flat else cluster_sectors,
        flat_offset=flat_offset,
        l1_offset=l1_offset,
        l1_size=l1_size,
        l2_size=l2_size,
    )
    if not flat:
        try:
            file.pread(l1_offset, l1_size * 4)
        except OSError as e:
            fail_errno(f"Could not read l1 table from extent '{file.path}'", e.errno or 0)
        if l1_backup_offset:
            try:
                file.pread(l1_backup_offset, l1_size * 4)
            except OSError as e:
                fail_errno(
                    f"Could not read l1 backup table from extent '{file.path}'", e.errno or 0
                )
    st.extents.append(extent)
    return extent


def _open_vmdk4(st: _State, file: FileNode) -> None:
    """vmdk_open_vmdk4."""
    try:
        raw = file.pread(4, _VMDK4.size)
    except OSError as e:
        fail_errno(f"Could not read header from file '{file.path}'", e.errno or 0)
    header = _VMDK4.unpack(raw)
    (
        version,
        flags,
        capacity,
        granularity,
        desc_offset,
        _ds,
        gtes,
        rgd_offset,
        gd_offset,
        grain_offset,
        _filler,
        _check,
        compress,
    ) = header
    if capacity == 0 and desc_offset:
        buf = _read_desc(file, desc_offset << 9)
        _open_desc_file(st, buf)
        return
    if st.create_type is None:
        st.create_type = "monolithicSparse"
    if gd_offset == VMDK4_GD_AT_END:
        # The footer (one sector before the end-of-stream marker) takes precedence;
        # 2.11 locates it from the main file's length.
        main_len = st.ctx.file.length
        try:
            footer = file.pread(main_len - 1536, 1536)
        except OSError as e:
            fail_errno("Failed to read footer", e.errno or 0)
        _f_val, f_size, f_type = struct.unpack_from("<QII", footer, 0)
        magic = struct.unpack_from(">I", footer, 512)[0]
        e_val, e_size, e_type = struct.unpack_from("<QII", footer, 1024)
        if (
            magic != VMDK4_MAGIC
            or f_size != 0
            or f_type != MARKER_FOOTER
            or e_val != 0
            or e_size != 0
            or e_type != MARKER_END_OF_STREAM
        ):
            raise ImageError("Invalid footer", errno=errno.EINVAL)
        header = _VMDK4.unpack_from(footer, 516)
        (
            version,
            flags,
            capacity,
            granularity,
            desc_offset,
            _ds,
            gtes,
            rgd_offset,
            gd_offset,
            grain_offset,
            _filler,
            _check,
            compress,
        ) = header
    compressed = compress == VMDK4_COMPRESSION_DEFLATE
    if version > 3:
        raise ImageError(f"Unsupported VMDK version {version}", errno=errno.ENOTSUP)
    if version == 3 and not st.ctx.read_only and not compressed:
        raise ImageError("VMDK version 3 must be read only", errno=errno.EINVAL)
    if gtes > 512:
        raise ImageError("L2 table size too big", errno=errno.EINVAL)
    l1_entry_sectors = (gtes * granularity) & 0xFFFFFFFF
    if l1_entry_sectors == 0:
        raise ImageError("L1 entry size is invalid", errno=errno.EINVAL)
    l1_size = ((capacity + l1_entry_sectors - 1) // l1_entry_sectors) & 0xFFFFFFFF
    l1_backup = (rgd_offset << 9) if flags & VMDK4_FLAG_RGD else 0
    if file.length // SECTOR_SIZE < grain_offset:
        raise ImageError(
            f"File truncated, expecting at least {grain_offset * SECTOR_SIZE} bytes",
            errno=errno.EINVAL,
        )
    extent = _add_extent(
        st,
        file,
        flat=False,
        sectors=capacity,
        l1_offset=gd_offset << 9,
        l1_backup_offset=l1_backup,
        l1_size=l1_size,
        cluster_sectors=granularity,
        l2_size=gtes,
    )
    extent.compressed = compressed
    extent.zero_grain = bool(flags & VMDK4_FLAG_ZERO_GRAIN)
    extent.has_marker = bool(flags & VMDK4_FLAG_MARKER)
    if compressed:
        st.create_type = "streamOptimized"


def _open_vmfs_sparse(st: _State, file: FileNode) -> None:
    """vmdk_open_vmfs_sparse (the VMDK3 "COWD" header)."""
    try:
        raw = file.pread(4, _VMDK3.size)
    except OSError as e:
        fail_errno(f"Could not read header from file '{file.path}'", e.errno or 0)
    _v, _f, disk_sectors, granularity, l1dir_offset, l1dir_size, *_ = _VMDK3.unpack(raw)
    _add_extent(
        st,
        file,
        flat=False,
        sectors=disk_sectors,
        l1_offset=l1dir_offset << 9,
        l1_backup_offset=0,
        l1_size=l1dir_size,
        cluster_sectors=granularity,
        l2_size=4096,
    )


def _open_sparse(st: _State, file: FileNode, buf: bytes) -> None:
    magic = struct.unpack_from(">I", buf + bytes(4), 0)[0]
    if magic == VMDK3_MAGIC:
        _open_vmfs_sparse(st, file)
    elif magic == VMDK4_MAGIC:
        _open_vmdk4(st, file)
    else:
        raise ImageError("Image not in VMDK format", errno=errno.EINVAL)


def _parse_description(desc: bytes, name: bytes) -> str | None:
    """vmdk_parse_description: the value after `name="` up to the next quote."""
    pos = desc.find(name)
    if pos < 0:
        return None
    start = pos + len(name) + 2
    if start >= len(desc):
        return None
    end = desc.find(b'"', start)
    if end < 0 or end - start + 1 > 128:
        return None
    return desc[start:end].decode("utf-8", errors="replace")


_WS = b" \t\n\v\f\r"


def _scan_extent_line(text: bytes) -> tuple[int, str, int, str, str, int]:
    """sscanf(p, "%10s %lld %10s \\"%511[^\\n\\r\\"]\\" %lld", ...) as glibc does it:
    returns (matches, access, sectors, type, fname, flat_offset)."""
    line = text
    pos = 0
    n = len(line)
    values: list[object] = []

    def skip_ws() -> None:
        nonlocal pos
        while pos < n and line[pos] in _WS:
            pos += 1

    def word(limit: int) -> str | None:
        nonlocal pos
        skip_ws()
        start = pos
        while pos < n and pos - start < limit and line[pos] not in _WS:
            pos += 1
        return line[start:pos].decode("latin-1") if pos > start else None

    def number() -> int | None:
        nonlocal pos
        skip_ws()
        m = re.compile(rb"[+-]?\d+").match(line, pos)
        if m is None:
            return None
        pos = m.end()
        return int(m.group())

    def literal(ch: int) -> bool:
        nonlocal pos
        if pos < n and line[pos] == ch:
            pos += 1
            return True
        return False

    steps = ("word", "number", "word", "quoted", "number")
    for step in steps:
        if step == "word":
            val: object = word(10)
        elif step == "number":
            val = number()
        else:
            skip_ws()
            if not literal(ord('"')):
                break
            start = pos
            while pos < n and pos - start < 511 and line[pos] not in b'\n\r"':
                pos += 1
            if pos == start:
                break
            val = line[start:pos].decode("utf-8", errors="replace")
            values.append(val)
            if not literal(ord('"')):
                break
            continue
        if val is None:
            break
        values.append(val)
    matches = len(values)
    padded = values + [None] * (5 - len(values))
    access = str(padded[0] or "")
    sectors = int(padded[1]) if isinstance(padded[1], int) else 0
    kind = str(padded[2] or "")
    fname = str(padded[3] or "")
    flat_offset = int(padded[4]) if isinstance(padded[4], int) else -1
    return matches, access, sectors, kind, fname, flat_offset


def _parse_extents(st: _State, desc: bytes) -> None:
    """vmdk_parse_extents. Like 2.11, each line is scanned together with the rest
    of the descriptor (sscanf does not stop at the newline)."""
    desc_path = st.ctx.file.path
    start = 0
    while start < len(desc):
        end = desc.find(b"\n", start)
        end = len(desc) if end < 0 else end
        line = desc[start:end]
        rest = desc[start:]
        start = end + 1
        matches, access, sectors, kind, fname, flat_offset = _scan_extent_line(rest)
        if matches < 4 or access != "RW":
            continue
        if kind == "FLAT":
            if matches != 5 or flat_offset < 0:
                _invalid(line)
        elif kind == "VMFS":
            if matches == 4:
                flat_offset = 0
            else:
                _invalid(line)
        elif matches != 4:
            _invalid(line)
        if sectors <= 0 or kind not in ("FLAT", "SPARSE", "VMFS", "VMFSSPARSE"):
            continue
        if not path_is_absolute(fname) and not path_has_protocol(fname) and not desc_path:
            raise ImageError(
                f"Cannot use relative extent paths with VMDK descriptor file '{st.ctx.file.path}'"
            )
        path = path_combine(desc_path, fname)
        if st.ctx.open_extent is None:
            raise ImageError(f"Could not open '{path}': extents cannot be opened here")
        extent_file = st.ctx.open_extent(path)
        st.extra_files.append(extent_file)
        if kind in ("FLAT", "VMFS"):
            extent = _add_extent(
                st,
                extent_file,
                flat=True,
                sectors=sectors,
                l1_offset=0,
                l1_backup_offset=0,
                l1_size=0,
                cluster_sectors=0,
                flat_offset=flat_offset * SECTOR_SIZE,
            )
        else:
            buf = _read_desc(extent_file, 0)
            _open_sparse(st, extent_file, buf)
            extent = st.extents[-1]
        extent.type = kind


def _invalid(line: bytes) -> None:
    raise ImageError(
        f"Invalid extent line: {line.decode('utf-8', errors='replace')}", errno=errno.EINVAL
    )


def _open_desc_file(st: _State, buf: bytes) -> None:
    """vmdk_open_desc_file."""
    create_type = _parse_description(buf, b"createType")
    if create_type is None:
        raise ImageError("invalid VMDK image descriptor", errno=errno.EINVAL)
    if create_type not in DESCRIPTOR_CREATE_TYPES:
        raise ImageError(f"Unsupported image type '{create_type}'", errno=errno.ENOTSUP)
    st.create_type = create_type
    st.desc_offset = 0
    _parse_extents(st, buf)


def _read_desc_area(ctx: OpenContext, offset: int) -> bytes:
    try:
        desc = ctx.file.pread(offset, DESC_SIZE)
    except OSError as e:
        open_fail(ctx, e.errno or 0)
    return desc[: DESC_SIZE - 1]


_HEX = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)")


def read_cid(ctx: OpenContext, desc_offset: int, parent: bool) -> int:
    """vmdk_read_cid: `strstr` for "CID"/"parentCID" in the descriptor area, then
    `sscanf("%x")` after the '='. Failures are a bare EINVAL."""
    desc = _read_desc_area(ctx, desc_offset)
    nul = desc.find(b"\0")
    if nul >= 0:
        desc = desc[:nul]
    key = b"parentCID" if parent else b"CID"
    pos = desc.find(key)
    if pos < 0:
        open_fail(ctx, errno.EINVAL)
    m = _HEX.match(desc, pos + len(key) + 1)
    if m is None:
        open_fail(ctx, errno.EINVAL)
    value = int(m.group(2), 16)
    if m.group(1) == b"-":
        value = -value
    return value & 0xFFFFFFFF


def _parent_hint(ctx: OpenContext, desc_offset: int) -> str | None:
    """vmdk_parent_open: the text between `parentFileNameHint="` and the next
    quote."""
    desc = _read_desc_area(ctx, desc_offset)
    nul = desc.find(b"\0")
    if nul >= 0:
        desc = desc[:nul]
    pos = desc.find(b"parentFileNameHint")
    if pos < 0:
        return None
    start = pos + len(b"parentFileNameHint") + 2
    end = desc.find(b'"', start)
    if end < 0 or end - start > 4095:
        open_fail(ctx, errno.EINVAL)
    return c_string(desc[start:end])


def _extents_same_type(a: _Extent, b: _Extent) -> bool:
    return (
        a.flat == b.flat
        and a.compressed == b.compressed
        and (a.flat or a.cluster_sectors == b.cluster_sectors)
    )


def _open_state(ctx: OpenContext) -> tuple[_State, str | None, int, int]:
    """vmdk_open up to the extents, CID and parent hint."""
    st = _State(ctx=ctx)
    try:
        buf = _read_desc(ctx.file, 0)
        magic = struct.unpack_from(">I", buf + bytes(4), 0)[0]
        if magic in (VMDK3_MAGIC, VMDK4_MAGIC):
            _open_sparse(st, ctx.file, buf)
            st.desc_offset = 0x200
        else:
            _open_desc_file(st, buf)
        backing = _parent_hint(ctx, st.desc_offset)
        cid = read_cid(ctx, st.desc_offset, parent=False)
        parent_cid = read_cid(ctx, st.desc_offset, parent=True)
    except BaseException:
        for f in st.extra_files:
            f.close()
        raise
    return st, backing, cid, parent_cid


def open_image(ctx: OpenContext) -> ImageFacts:
    """vmdk_open."""
    st, backing, cid, parent_cid = _open_state(ctx)
    # Only the opener keeps the extent files; they are closed here because this
    # module reports facts, and the opener holds them through open_extent.
    extents = st.extents
    same = all(_extents_same_type(extents[0], e) for e in extents[1:]) if extents else True
    dirty: bool | None = False if same else None
    cluster: int | None = None
    if same and extents and not extents[0].flat:
        cluster = extents[0].cluster_sectors * SECTOR_SIZE
    actual = ctx.file.allocated_size()
    for e in extents:
        if e.file is not ctx.file:
            actual += e.file.allocated_size()
    infos = tuple(
        VmdkExtentInfo(
            filename=e.file.path,
            format=e.type or "",
            virtual_size=e.sectors * SECTOR_SIZE,
            cluster_size=None if e.flat else e.cluster_sectors * SECTOR_SIZE,
            compressed=True if e.compressed else None,
        )
        for e in extents
    )
    full = reported_full_backing(ctx.filename, backing)
    return ImageFacts(
        filename=ctx.filename,
        format="vmdk",
        virtual_size=sum(e.sectors for e in extents) * SECTOR_SIZE,
        actual_size=actual,
        dirty_flag=dirty,
        cluster_size=cluster,
        backing_filename=backing or None,
        full_backing_filename=full,
        format_specific=VmdkSpecific(
            create_type=st.create_type or "",
            cid=cid,
            parent_cid=parent_cid,
            extents=infos,
        ),
        probed=ctx.probed,
        supports_backing=True,
        blocks_migration=True,
        extent_files=tuple(f.path for f in st.extra_files),
    )


# --- Creation -----------------------------------------------------------------------


@attrs.frozen
class CreatePlan:
    filename: str
    size: int
    subformat: str
    adapter_type: str
    hw_version: str
    zeroed_grain: bool
    backing_file: str | None
    parent_cid: int


def _decompose(filename: str) -> tuple[str, str, str]:
    """filename_decompose: (directory part with its slash, stem, extension)."""
    if not filename:
        raise ImageError("No filename provided")
    cut = -1
    for sep in ("/", "\\", ":"):
        cut = filename.rfind(sep)
        if cut >= 0:
            break
    path = filename[: cut + 1] if cut >= 0 else ""
    rest = filename[cut + 1 :] if cut >= 0 else filename
    dot = rest.rfind(".")
    if dot < 0:
        return path, rest, ""
    return path, rest[:dot], rest[dot:]


def plan_create(
    filename: str,
    size: int,
    backing_file: str | None,
    options: dict[str, str | int | bool],
    read_backing_cid: Callable[[str], int],
) -> CreatePlan:
    """vmdk_create's checks, up to (and including) reading the parent's CID.
    `read_backing_cid(full_path) -> int` opens the backing image read-only and
    returns its CID, raising QEMU's errors (the caller provides it so that this
    module needs no knowledge of probing and locks)."""
    _decompose(filename)
    opts = dict(options)
    total = round_up(int(size), SECTOR_SIZE)
    adapter = opts.pop("adapter_type", None)
    hw_version = str(opts.pop("hwversion", "undefined"))
    compat6 = opts.pop("compat6", False)
    subformat = opts.pop("subformat", None)
    zeroed = opts.pop("zeroed_grain", False)
    if opts:
        raise ImageError("Invalid options for file format 'vmdk'")
    if compat6 in (True, "on"):
        if hw_version != "undefined":
            raise ImageError("compat6 cannot be enabled with hwversion set")
        hw_version = "6"
    if hw_version == "undefined":
        hw_version = "4"
    zeroed_grain = zeroed in (True, "on")
    if adapter is None:
        adapter = "ide"
    elif adapter not in ("ide", "buslogic", "lsilogic", "legacyESX"):
        raise ImageError(f"Unknown adapter type: '{adapter}'")
    if subformat is None:
        subformat = "monolithicSparse"
    elif subformat not in SUBFORMATS:
        raise ImageError(f"Unknown subformat: '{subformat}'")
    flat = subformat in ("monolithicFlat", "twoGbMaxExtentFlat")
    if flat and backing_file is not None:
        raise ImageError("Flat image can't have backing file", errno=errno.ENOTSUP)
    if flat and zeroed_grain:
        raise ImageError("Flat image can't enable zeroed grain", errno=errno.ENOTSUP)
    parent_cid = 0xFFFFFFFF
    if backing_file is not None:
        full = full_backing_filename(filename, backing_file)
        parent_cid = read_backing_cid(full)
    return CreatePlan(
        filename=filename,
        size=total,
        subformat=str(subformat),
        adapter_type=str(adapter),
        hw_version=hw_version,
        zeroed_grain=zeroed_grain,
        backing_file=backing_file,
        parent_cid=parent_cid,
    )


def extent_paths(plan: CreatePlan) -> list[tuple[str, str, int]]:
    """The files vmdk_create writes besides the descriptor, as (path, name in the
    descriptor, size)."""
    path, prefix, postfix = _decompose(plan.filename)
    split = plan.subformat in ("twoGbMaxExtentFlat", "twoGbMaxExtentSparse")
    flat = plan.subformat in ("monolithicFlat", "twoGbMaxExtentFlat")
    out = []
    left = plan.size
    idx = 0
    while left > 0:
        size = min(left, SPLIT_SIZE) if split else left
        if split:
            idx += 1
            name = f"{prefix}-{'f' if flat else 's'}{idx:03d}{postfix}"
        elif flat:
            name = f"{prefix}-flat{postfix}"
        else:
            name = f"{prefix}{postfix}"
        out.append((path + name, name, size))
        left -= size
    return out


def write_extent(file: FileNode, plan: CreatePlan, size: int) -> None:
    """vmdk_create_extent on a freshly created file."""
    flat = plan.subformat in ("monolithicFlat", "twoGbMaxExtentFlat")
    compress = plan.subformat == "streamOptimized"
    file.truncate(0)
    if flat:
        file.truncate(size)
        return
    version = 3 if compress else 2 if plan.zeroed_grain else 1
    flags = VMDK4_FLAG_RGD | VMDK4_FLAG_NL_DETECT
    if compress:
        flags |= VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER
    if plan.zeroed_grain:
        flags |= VMDK4_FLAG_ZERO_GRAIN
    capacity = size // SECTOR_SIZE
    granularity = 128
    gtes = SECTOR_SIZE
    grains = (capacity + granularity - 1) // granularity
    gt_size = (gtes * 4 + SECTOR_SIZE - 1) // SECTOR_SIZE
    gt_count = (grains + gtes - 1) // gtes
    gd_sectors = (gt_count * 4 + SECTOR_SIZE - 1) // SECTOR_SIZE
    desc_offset, desc_size = 1, 20
    rgd_offset = desc_offset + desc_size
    gd_offset = rgd_offset + gd_sectors + gt_size * gt_count
    grain_offset = round_up(gd_offset + gd_sectors + gt_size * gt_count, granularity)
    header = _VMDK4.pack(
        version,
        flags,
        capacity,
        granularity,
        desc_offset,
        desc_size,
        gtes,
        rgd_offset,
        gd_offset,
        grain_offset,
        0,
        b"\n \r\n",
        VMDK4_COMPRESSION_DEFLATE if compress else 0,
    )
    file.pwrite(0, struct.pack(">I", VMDK4_MAGIC) + header)
    file.truncate(grain_offset << 9)
    for table_offset in (rgd_offset, gd_offset):
        entries = [table_offset + gd_sectors + i * gt_size for i in range(gt_count)]
        gd = struct.pack(f"<{gt_count}I", *entries)
        file.pwrite(table_offset * SECTOR_SIZE, gd + bytes(gd_sectors * SECTOR_SIZE - len(gd)))


def descriptor(plan: CreatePlan, *, rng: random.Random) -> bytes:
    """The descriptor text of vmdk_create's template (its CID drawn from `rng`)."""
    heads = 16 if plan.adapter_type == "ide" else 255
    flat = plan.subformat in ("monolithicFlat", "twoGbMaxExtentFlat")
    lines = ""
    for _path, name, size in extent_paths(plan):
        if flat:
            lines += f'RW {size // SECTOR_SIZE} FLAT "{name}" 0\n'
        else:
            lines += f'RW {size // SECTOR_SIZE} SPARSE "{name}"\n'
    parent = f'parentFileNameHint="{plan.backing_file}"' if plan.backing_file is not None else ""
    cid = rng.getrandbits(32)
    text = (
        "# Disk DescriptorFile\n"
        "version=1\n"
        f"CID={cid:x}\n"
        f"parentCID={plan.parent_cid:x}\n"
        f'createType="{plan.subformat}"\n'
        f"{parent}"
        "\n"
        "# Extent description\n"
        f"{lines}"
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        f'ddb.virtualHWVersion = "{plan.hw_version}"\n'
        f'ddb.geometry.cylinders = "{plan.size // (63 * heads * SECTOR_SIZE)}"\n'
        f'ddb.geometry.heads = "{heads}"\n'
        'ddb.geometry.sectors = "63"\n'
        f'ddb.adapterType = "{plan.adapter_type}"\n'
    )
    return text.encode()


def is_monolithic_sparse(plan: CreatePlan) -> bool:
    """Whether the descriptor goes into the (single) sparse extent at 0x200 rather
    than into a descriptor file of its own."""
    return plan.subformat in ("monolithicSparse", "streamOptimized")


# --- Data engine ----------------------------------------------------------------------

VMDK_GTE_ZEROED = 1


class VmdkData(MappedData):
    """block/vmdk.c's reads over the extents of the descriptor (or the one extent
    of a monolithic file): flat extents are their file from `flat_offset`; sparse
    ones map grains through the grain directory and tables (little-endian u32
    sector numbers; 0 unallocated, 1 a zeroed grain where the header allows it)
    [get_cluster_offset with allocate=false]; streamOptimized grains are zlib
    streams behind a grain marker [vmdk_read_extent]. A lookup past the grain
    directory reads as unallocated, as vmdk_co_preadv treats VMDK_ERROR.
    The extent files are the views `open_extent` returned: they belong to the
    caller. Writes: see `mapped`."""

    def __init__(self, ctx: DataContext) -> None:
        self.writable = ctx.writable
        self.backing = ctx.backing
        octx = OpenContext(file=cast(FileNode, ctx.file), filename=ctx.facts.filename,
                           read_only=not ctx.writable,
                           open_extent=cast("Callable[[str], FileNode] | None",
                                            ctx.open_extent))
        st = _open_state(octx)[0]
        self.extents = st.extents
        self.size = sum(e.sectors for e in self.extents) * SECTOR_SIZE
        self._l1: dict[int, tuple[int, ...]] = {}
        self._l2: dict[tuple[int, int], tuple[int, ...]] = {}

    @property
    def length(self) -> int:
        return self.size

    def _table(self, ext: _Extent, offset: int, entries: int) -> tuple[int, ...]:
        key = (id(ext), offset)
        table = self._l2.get(key)
        if table is None:
            if len(self._l2) >= 64:
                self._l2.clear()
            table = struct.unpack(f"<{entries}I", ext.file.pread(offset, entries * 4))
            self._l2[key] = table
        return table

    def _map(self, offset: int, length: int) -> Extent:
        start = 0
        for ext in self.extents:
            end = start + ext.sectors * SECTOR_SIZE
            if offset < end:
                break
            start = end
        else:
            raise BlockIOError(errno.EIO)
        rel = offset - start
        n = min(length, end - offset)
        if ext.flat:
            return Extent(DATA, n, ext.file, ext.flat_offset + rel)
        grain = ext.cluster_sectors * SECTOR_SIZE
        in_grain = rel % grain
        n = min(n, grain - in_grain)
        sector = rel // SECTOR_SIZE
        l1_index = sector // (ext.l2_size * ext.cluster_sectors)
        if l1_index >= ext.l1_size:
            return Extent(UNALLOCATED, n)
        l1 = self._l1.get(id(ext))
        if l1 is None:
            l1 = struct.unpack(f"<{ext.l1_size}I", ext.file.pread(ext.l1_offset, ext.l1_size * 4))
            self._l1[id(ext)] = l1
        l2_offset = l1[l1_index]
        if not l2_offset:
            return Extent(UNALLOCATED, n)
        table = self._table(ext, l2_offset * SECTOR_SIZE, ext.l2_size)
        cluster_sector = table[(sector // ext.cluster_sectors) % ext.l2_size]
        if ext.zero_grain and cluster_sector == VMDK_GTE_ZEROED:
            return Extent(ZERO, n)
        if not cluster_sector:
            return Extent(UNALLOCATED, n)
        host = cluster_sector * SECTOR_SIZE
        if not ext.compressed:
            return Extent(DATA, n, ext.file, host + in_grain)
        raw = ext.file.pread(host, grain * 2)
        data, size = raw, grain
        if ext.has_marker:
            size = struct.unpack_from("<I", raw, 8)[0]
            data = raw[12:]
        if not size or size > grain * 2:
            raise BlockIOError(errno.EINVAL)
        try:
            out = zlib.decompress(data[:size])
        except zlib.error:
            raise BlockIOError(errno.EINVAL) from None
        if in_grain + n > len(out):
            raise BlockIOError(errno.EINVAL)
        return Extent(COMPRESSED, n, payload=out[in_grain:in_grain + n])


def open_data(ctx: DataContext) -> FormatData:
    return VmdkData(ctx)
