"""Image format drivers: `raw`, `qcow2`, `qcow`, `vmdk`, `vpc`, `vdi`, `vhdx`, `qed`,
`luks`, and the read-only `bochs`, `cloop`, `dmg`, `parallels`.

Pure part of the `blockdev` layer (`blockdev.drivers`) [block/raw-format.c,
block/qcow2.c, block/qcow.c, block/vmdk.c, block/vpc.c, block/vdi.c, block/vhdx.c,
block/qed.c, block/crypto.c]. A format node opens its `file` child, then reads the
real header through that child's byte view with the image edge's format readers
(`DriverContext.io.open_format`); vmdk extents are opened as further children. The
node keeps a `FormatImage`: the header's facts and the emulator's model of the image,
which commands change where QEMU would rewrite metadata.
"""

from __future__ import annotations

from typing import Any

from blockdev.bitmaps import DirtyBitmap
from blockdev.drivers.base import node_view, open_file_child
from blockdev.graph import (
    SECTOR,
    DriverContext,
    DriverSpec,
    Node,
    OpenFn,
    filter_default_perms,
    format_default_perms,
)
from blockdev.image.io import FormatImage
from blockdev.options import Flat, OptDesc, absorb
from schema.errors import GenericError

QCOW2_OPTS = tuple(
    [OptDesc("lazy-refcounts", "bool"), OptDesc("pass-discard-request", "bool"),
     OptDesc("pass-discard-snapshot", "bool"), OptDesc("pass-discard-other", "bool"),
     OptDesc("overlap-check"), OptDesc("overlap-check.template")]
    + [OptDesc(f"overlap-check.{n}", "bool") for n in (
        "main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
        "snapshot-table", "inactive-l1", "inactive-l2")]
    + [OptDesc("cache-size", "size"), OptDesc("l2-cache-size", "size"),
       OptDesc("refcount-cache-size", "size"), OptDesc("cache-clean-interval", "number")])


def _qcow2_options(bs: Node, options: Flat, image: Any) -> None:
    """qcow2_update_options_prepare: the checks that do not need the cache code."""
    opts = absorb(QCOW2_OPTS, options)
    sizes = [opts.has(k) for k in ("cache-size", "l2-cache-size", "refcount-cache-size")]
    if all(sizes):
        raise GenericError("cache-size, l2-cache-size and refcount-cache-size may not "
                           "be set at the same time")
    if opts.get("cache-clean-interval", 0) > 0xFFFFFFFF:
        raise GenericError("Cache clean interval too big")
    lazy = opts.get("lazy-refcounts")
    if lazy and image.facts.format_specific is not None and \
            image.facts.format_specific.compat == "0.10":
        raise GenericError("Lazy refcounts require a qcow2 image with at least qemu 1.1 "
                           "compatibility level")
    check = opts.get("overlap-check")
    template = opts.get("overlap-check.template")
    if check and template and check != template:
        raise GenericError(f"Conflicting values for qcow2 options 'overlap-check' "
                           f"('{check}') and 'overlap-check.template' ('{template}')")
    value = check or template or "cached"
    if value not in ("none", "constant", "cached", "all"):
        raise GenericError(f"Unsupported value '{value}' for qcow2 option 'overlap-check'. "
                           "Allowed are any of the following: none, constant, cached, all")


def _format_open(fmt: str) -> OpenFn:
    def open_(ctx: DriverContext, bs: Node, options: Flat) -> None:
        """<fmt>_open: the file child, then the header through it."""
        open_file_child(ctx, bs, options)
        extra: dict[str, Any] = {}
        if fmt == "raw":
            extra = dict(absorb((OptDesc("offset", "size"), OptDesc("size", "size")),
                                options).values)
        elif fmt == "luks":
            extra = dict(absorb((OptDesc("key-secret"),), options).values)
        elif fmt in ("qcow", "qcow2"):
            for key in [k for k in options if k == "encrypt" or k.startswith("encrypt.")]:
                extra[key] = options.pop(key)
        elif fmt == "vpc":
            extra = dict(absorb((OptDesc("force-size-calc"),), options).values)
        image = _read_header(ctx, bs, fmt, extra)
        bs.state = image
        if fmt == "qcow2":
            _qcow2_options(bs, options, image)
        if fmt == "raw":
            _raw_check(bs, image, extra)
        facts = image.facts
        bs.encrypted = facts.encrypted
        if facts.backing_filename:
            bs.backing_file = facts.backing_filename
            bs.backing_format = facts.backing_filename_format or ""
        bs.total_sectors = (image.virtual_size + SECTOR - 1) // SECTOR
        if fmt == "qcow2":
            _load_autoloading_bitmaps(bs, image)
    return open_


def _read_header(ctx: DriverContext, bs: Node, fmt: str, extra: dict[str, Any]) -> FormatImage:
    """The format driver's header checks, through the node's file child; the
    extents a vmdk descriptor names become children `extents.<N>`."""
    file_bs = bs.file_bs
    assert file_bs is not None
    extents = 0

    def open_extent(path: str) -> Any:
        nonlocal extents
        key = f"extents.{extents}"
        extents += 1
        child = ctx.open_child(path, {}, key, bs, "file", allow_none=False)
        assert child is not None and child.bs is not None
        return node_view(child.bs)

    return ctx.io.open_format(node_view(file_bs), fmt, filename=bs.filename,
                              read_only=not bs.open_flags.rdwr, probed=bs.probed,
                              inactive=bs.open_flags.inactive, extra=extra,
                              open_extent=open_extent)


def _load_autoloading_bitmaps(bs: Node, image: Any) -> None:
    """qcow2_load_autoloading_dirty_bitmaps: stored bitmaps flagged `auto` and not
    `in_use` become the node's persistent bitmaps (read-only on a read-only node).
    Their stored content is not read: they start clean in the model."""
    for pb in image.facts.persistent_bitmaps:
        if pb.auto and not pb.in_use:
            bs.bitmaps.insert(0, DirtyBitmap(
                name=pb.name, granularity=pb.granularity, size=image.virtual_size,
                persistent=True, autoload=True, readonly=not bs.open_flags.rdwr))


def _raw_check(bs: Node, image: Any, extra: dict[str, Any]) -> None:
    """raw_read_options: offset and size inside the containing file."""
    real_size = image.facts.virtual_size
    offset = extra.get("offset", 0)
    if offset > real_size:
        raise GenericError(f"Offset ({offset}) cannot be greater than size of the "
                           f"containing file ({real_size})")
    if "size" in extra:
        size = extra["size"]
        if real_size - offset < size:
            raise GenericError(
                f"The sum of offset ({offset}) and size ({size}) has to be smaller or "
                f"equal to the  actual size of the containing file ({real_size})")
        if size % SECTOR:
            raise GenericError(f"Specified size is not multiple of {SECTOR}")
        image.virtual_size = size
    else:
        image.virtual_size = real_size - offset


def _format_getlength(bs: Node) -> int:
    """Formats with a variable length (raw) follow their file."""
    image = bs.state
    if image is None:
        return 0
    if image.facts.format == "raw" and bs.file is not None and bs.file.bs is not None:
        if "size" not in image.raw_options:
            return max(0, bs.file.bs.length() - image.raw_options.get("offset", 0))
    return int(image.virtual_size)


def _format_truncate(bs: Node, size: int) -> None:
    """<fmt>_truncate: the emulator's model of the image changes; its file is not
    rewritten."""
    image = bs.state
    image.virtual_size = size
    image.raw_options["size"] = size


# QCOW_MAX_L1_SIZE [block/qcow2.h]: the L1 table's byte limit.
QCOW_MAX_L1_SIZE = 0x2000000
INT_MAX = 2**31 - 1


def _qcow2_truncate(bs: Node, size: int) -> None:
    """qcow2_truncate: whole sectors only, its first check on the size; not while
    the image has internal snapshots (nb_snapshots); growing needs
    an L1 table that covers the new size, and qcow2_grow_l1_table refuses one of more
    than QCOW_MAX_L1_SIZE bytes (or INT_MAX / 8 entries) with EFBIG [block/qcow2.c,
    block/qcow2-cluster.c, size_to_l1 in block/qcow2.h]."""
    if size & (SECTOR - 1):
        raise GenericError(f"The new size must be a multiple of {SECTOR}")
    if bs.state.snapshots:
        raise GenericError("Can't resize an image which has snapshots")
    cluster_size = bs.state.cluster_size or 65536
    shift = 2 * cluster_size.bit_length() - 5  # cluster_bits + l2_bits (cluster_bits - 3)
    new_l1_size = (size + (1 << shift) - 1) >> shift
    old_l1_size = (bs.total_sectors * SECTOR + (1 << shift) - 1) >> shift
    if size >= bs.total_sectors * SECTOR and new_l1_size > old_l1_size and (
            new_l1_size > INT_MAX // 8 or new_l1_size > QCOW_MAX_L1_SIZE // 8):
        raise GenericError("Failed to grow the L1 table: File too large")
    _format_truncate(bs, size)


def _format_driver(name: str, **kw: Any) -> DriverSpec:
    return DriverSpec(format_name=name, open=_format_open(name),
                      child_perm=kw.pop("child_perm", format_default_perms),
                      has_get_info=True, getlength=_format_getlength,
                      has_variable_length=name == "raw", **kw)


SPECS = (
    _format_driver("raw", child_perm=filter_default_perms, truncate=_format_truncate),
    _format_driver("qcow2", supports_backing=True, truncate=_qcow2_truncate,
                   internal_snapshots=True, persistent_bitmaps=True,
                   change_backing_file=True),
    _format_driver("qcow", supports_backing=True),
    _format_driver("vmdk", supports_backing=True),
    _format_driver("vpc"),
    _format_driver("vdi"),
    _format_driver("vhdx"),
    _format_driver("qed", supports_backing=True, truncate=_format_truncate,
                   change_backing_file=True),
    _format_driver("luks", truncate=_format_truncate),
    _format_driver("bochs"),
    _format_driver("cloop"),
    _format_driver("dmg"),
    _format_driver("parallels", truncate=_format_truncate),
)
