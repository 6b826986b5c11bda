"""bdrv_open: how a node is opened from a file name and flattened options.

Pure model of the `blockdev` layer [block.c bdrv_open_inherit, bdrv_fill_options,
bdrv_open_common, bdrv_open_child, bdrv_open_backing_file, bdrv_append_temp_snapshot,
bdrv_refresh_filename], between the drivers below (`blockdev.drivers`, which open
their children through it) and the layer above (`blockdev.layer`, whose `open` and
`open_child` call it). It reproduces:

* `json:` file names (`_parse_json_filename`), merged under the explicit options;
* option inheritance by child role (file, format, backing) and the `read-only`,
  `cache.*`, `discard`, `detect-zeroes`, `force-share` runtime options;
* protocol detection from the file name, format probing of the file below, node
  naming, the driver's open, the backing chain;
* the file name refresh (`json:{...}` names of nodes without a plain one) and the
  "does not support the option" check on whatever no one took;
* `-drive snapshot=on`: a temporary qcow2 overlay created by the image edge.

Its functions work on an `Opener`: the narrow part of the block layer opening needs
(lookups, the graph edits that attach and release nodes, the host for the clock and
random source of new overlays, and what a driver's open needs).
"""

from __future__ import annotations

import os
from typing import Protocol

from blockdev.drivers.base import OpenErrno, node_view
from blockdev.drivers.registry import DRIVERS, find_format, find_protocol
from blockdev.graph import SECTOR, Backend, Child, DriverContext, DriverSpec, Node, OpenFlags
from blockdev.host import BlockHost
from blockdev.image.formats.base import path_combine, path_has_protocol, path_is_absolute
from blockdev.options import (
    Flat,
    OptDesc,
    absorb,
    extract_subqdict,
    first_key,
    flatten,
    get_bool,
    get_str,
    set_default,
)
from schema.errors import GenericError
from schema.opts.cutils import to_c_int
from schema.qobject import from_json, qdict_order, to_json

# bdrv_runtime_opts [block.c].
RUNTIME_OPTS = (OptDesc("node-name"), OptDesc("driver"), OptDesc("cache.direct", "bool"),
                OptDesc("cache.no-flush", "bool"), OptDesc("read-only", "bool"),
                OptDesc("detect-zeroes"), OptDesc("discard"), OptDesc("force-share", "bool"))
RUNTIME_NAMES = frozenset(d.name for d in RUNTIME_OPTS)

DETECT_ZEROES = ("off", "on", "unmap")


class Opener(DriverContext, Protocol):
    """What opening a node needs of its block layer (`BlockLayer` is one)."""

    @property
    def host(self) -> BlockHost: ...

    def lookup_bs(self, device: str | None, node_name: str | None) -> Node: ...

    def assign_node_name(self, bs: Node, node_name: str | None) -> None: ...

    def attach_child(self, parent: Node, child_bs: Node, name: str, role: str) -> Child: ...

    def set_backing_hd(self, bs: Node, backing_hd: Node | None) -> None: ...

    def append(self, bs_new: Node, bs_top: Node) -> None: ...

    def unref(self, bs: Node) -> None: ...

    def unref_child(self, parent: Node, child: Child | None) -> None: ...

    def close_driver(self, bs: Node) -> None: ...

    def blk_dev_change_media_cb(self, blk: Backend, load: bool) -> None: ...


def bdrv_open(ctx: Opener, filename: str | None, reference: str | None,
              options: Flat | None, flags: OpenFlags | None = None,
              parent: Node | None = None, role: str | None = None) -> Node:
    """bdrv_open_inherit. The caller owns the returned reference."""
    flags = flags.copy() if flags is not None else OpenFlags()
    if reference is not None:
        if filename is not None or options:
            raise GenericError("Cannot reference an existing block device with "
                               "additional options or a new filename")
        bs = ctx.lookup_bs(reference, reference)
        bs.refcnt += 1
        return bs

    bs = Node()
    options = dict(options or {})
    if filename is not None and filename.startswith("json:"):
        json_opts = _parse_json_filename(filename)
        for key, value in json_opts.items():
            options.setdefault(key, value)
        filename = None
    bs.explicit_options = dict(options)

    if role is not None:
        assert parent is not None
        bs.inherits_from = parent
        flags = _inherit_options(role, options, parent.open_flags, parent.options)

    try:
        flags, filename = _fill_options(ctx, options, filename, flags)
        if get_str(options, "read-only") != "on" and not get_bool(options, "read-only",
                                                                    False):
            flags.rdwr = True
            flags.allow_rdwr = True
        else:
            flags.rdwr = False

        snapshot_options: Flat | None = None
        snapshot_flags: OpenFlags | None = None
        if flags.snapshot:
            snapshot_options = {}
            snapshot_flags = flags.copy()
            snapshot_flags.snapshot = False
            snapshot_flags.temporary = True
            set_default(snapshot_options, "cache.direct", "off")
            set_default(snapshot_options, "cache.no-flush", "on")
            if "read-only" in options:
                set_default(snapshot_options, "read-only", options["read-only"])
            options.pop("read-only", None)
            flags = _backing_flags(options, flags, options)

        bs.open_flags = flags
        bs.options = options
        options = dict(options)

        drv: DriverSpec | None = None
        drvname = get_str(options, "driver")
        if drvname is not None:
            drv = find_format(drvname)
            if drv is None:
                raise GenericError(f"Unknown driver: '{drvname}'")

        backing = get_str(options, "backing")
        if backing == "":
            flags.no_backing = True
            bs.open_flags.no_backing = True
            del options["backing"]

        probe_bs: Node | None = None
        if not flags.protocol:
            probe_bs = open_child_bs(ctx, filename, options, "file", bs, "file",
                                     allow_none=True)
            if probe_bs is not None:
                options["file"] = probe_bs.node_name

        bs.probed = drv is None
        if drv is None and probe_bs is not None:
            fmt = find_image_format(ctx, probe_bs)
            drv = DRIVERS[fmt]
            bs.options["driver"] = fmt
            options["driver"] = fmt
        elif drv is None:
            raise GenericError("Must specify either driver or file")

        try:
            _open_common(ctx, bs, probe_bs, options, drv)
        finally:
            if probe_bs is not None:
                ctx.unref(probe_bs)
    except GenericError:
        _discard_unopened(ctx, bs)
        raise

    try:
        if not flags.no_backing and not bs.open_flags.no_backing:
            open_backing_file(ctx, bs, options, "backing")
        refresh_filename(bs)
        if options:
            key = first_key(options)
            if flags.protocol:
                raise GenericError(f"Block protocol '{drv.format_name}' doesn't support "
                                   f"the option '{key}'")
            raise GenericError(f"Block format '{drv.format_name}' does not support the "
                               f"option '{key}'")
        parent_cb_change_media(ctx, bs, True)
        if snapshot_flags is not None:
            assert snapshot_options is not None
            snap = append_temp_snapshot(ctx, bs, snapshot_flags, snapshot_options)
            ctx.unref(bs)
            bs = snap
    except GenericError:
        ctx.unref(bs)
        raise
    return bs


def _discard_unopened(ctx: Opener, bs: Node) -> None:
    """The `fail:` path of bdrv_open_inherit: drop our reference."""
    if bs.refcnt > 0:
        ctx.unref(bs)


def _fill_options(ctx: Opener, options: Flat, filename: str | None,
                  flags: OpenFlags) -> tuple[OpenFlags, str | None]:
    """bdrv_fill_options."""
    protocol = flags.protocol
    parse_filename = False
    drv: DriverSpec | None = None
    drvname = get_str(options, "driver")
    if drvname is not None:
        drv = find_format(drvname)
        if drv is None:
            raise GenericError(f"Unknown driver '{drvname}'")
        protocol = drv.protocol
    flags.protocol = protocol
    _update_options_from_flags(options, flags)
    if protocol and filename is not None:
        if "filename" not in options:
            options["filename"] = filename
            parse_filename = True
        else:
            raise GenericError("Can't specify 'file' and 'filename' options at the "
                               "same time")
    fname = get_str(options, "filename")
    if drvname is None and protocol:
        if fname is not None:
            drv = find_protocol(fname, parse_filename, ctx.io.probe_device)
            options["driver"] = drv.format_name
        else:
            raise GenericError("Must specify either driver or file")
    if drv is not None and drv.parse_filename is not None and parse_filename:
        assert fname is not None
        drv.parse_filename(fname, options)
        if not drv.needs_filename and "url" not in options:
            options.pop("filename", None)
        elif not drv.needs_filename:
            options.pop("filename", None)
    return flags, (None if protocol else filename)


def find_image_format(ctx: Opener, file_bs: Node) -> str:
    """find_image_format: empty or sg files are raw, else probe."""
    if file_bs.sg or not file_bs.is_inserted() or file_bs.length() == 0:
        return "raw"
    return ctx.io.probe(node_view(file_bs))


def _open_common(ctx: Opener, bs: Node, file_bs: Node | None, options: Flat,
                 drv: DriverSpec) -> None:
    """bdrv_open_common + bdrv_open_driver."""
    opts = absorb(RUNTIME_OPTS, options)
    flags = bs.open_flags
    flags.no_flush = bool(opts.get("cache.no-flush", False))
    flags.nocache = bool(opts.get("cache.direct", False))
    flags.rdwr = not opts.get("read-only", False)
    bs.force_share = bool(opts.get("force-share", False))
    if bs.force_share and flags.rdwr:
        raise GenericError("force-share=on can only be used with read-only images")
    if file_bs is not None:
        filename: str | None = file_bs.filename
    else:
        filename = get_str(options, "filename")
    if drv.needs_filename and not filename:
        raise GenericError(f"The '{drv.format_name}' block driver requires a file name")
    bs.read_only = not flags.rdwr
    if flags.copy_on_read and bs.read_only:
        raise GenericError("Can't use copy-on-read on read-only device")
    discard = opts.get("discard")
    if discard is not None:
        if discard in ("off", "ignore"):
            flags.unmap = False
        elif discard in ("on", "unmap"):
            flags.unmap = True
        else:
            raise GenericError("Invalid discard option")
    detect = opts.get("detect-zeroes")
    if detect is not None:
        if detect not in DETECT_ZEROES:
            raise GenericError(f"Invalid parameter '{detect}'")
        if detect == "unmap" and not flags.unmap:
            raise GenericError("setting detect-zeroes to unmap is not allowed without "
                               "setting discard operation to unmap")
        bs.detect_zeroes = detect
    bs.filename = filename or ""
    bs.exact_filename = bs.filename
    ctx.assign_node_name(bs, opts.get("node-name"))
    bs.driver = drv
    bs.read_only = not flags.rdwr
    try:
        drv.open(ctx, bs, options)
    except OpenErrno as e:
        _open_failed(ctx, bs)
        if bs.filename:
            raise GenericError(f"Could not open '{bs.filename}': "
                               f"{os.strerror(e.errno)}") from None
        raise GenericError(f"Could not open image: {os.strerror(e.errno)}") from None
    except GenericError:
        _open_failed(ctx, bs)
        raise
    if drv.getlength is not None:
        _refresh_total_sectors(ctx, bs, drv.getlength(bs))


def _refresh_total_sectors(ctx: Opener, bs: Node, length: int) -> None:
    """bdrv_open_driver -> refresh_total_sectors, in C's integer arithmetic: a
    negative length is returned as an `int`, so only its low 32 bits say whether the
    open failed (an int64 length of -2^63, a size that wrapped, reads as 0: the open
    succeeds and the node keeps its 0 sectors) [block.c]."""
    if length < 0:
        ret = to_c_int(length)
        if ret < 0:
            _open_failed(ctx, bs)
            err = -ret if ret > -2**31 else ret  # -INT_MIN stays INT_MIN
            raise GenericError(f"Could not refresh total sector count: {os.strerror(err)}")
        return
    bs.total_sectors = (length + SECTOR - 1) // SECTOR


def _open_failed(ctx: Opener, bs: Node) -> None:
    """bdrv_open_driver's open_failed: the driver is gone, its children too."""
    ctx.close_driver(bs)
    for c in list(bs.children):
        ctx.unref_child(bs, c)
    bs.file = None
    bs.driver = None


def open_child_bs(ctx: Opener, filename: str | None, options: Flat, key: str, parent: Node,
                  role: str, *, allow_none: bool) -> Node | None:
    """bdrv_open_child_bs."""
    image_options = extract_subqdict(options, key + ".")
    reference = get_str(options, key)
    try:
        if filename is None and reference is None and not image_options:
            if not allow_none:
                raise GenericError(f'A block device must be specified for "{key}"')
            return None
        return bdrv_open(ctx, filename, reference, image_options, None, parent, role)
    finally:
        options.pop(key, None)


def open_child(ctx: Opener, filename: str | None, options: Flat, key: str, parent: Node,
               role: str, *, allow_none: bool) -> Child | None:
    """bdrv_open_child."""
    bs = open_child_bs(ctx, filename, options, key, parent, role, allow_none=allow_none)
    if bs is None:
        return None
    try:
        return ctx.attach_child(parent, bs, key, role)
    except GenericError:
        ctx.unref(bs)
        raise


def open_backing_file(ctx: Opener, bs: Node, parent_options: Flat, key: str) -> None:
    """bdrv_open_backing_file."""
    if bs.backing is not None:
        return
    bs.open_flags.no_backing = False
    options = extract_subqdict(parent_options, key + ".")
    reference = get_str(parent_options, key)
    backing_filename: str | None
    if reference is not None or "file.filename" in options:
        backing_filename = None
    elif not bs.backing_file and not options:
        return
    else:
        backing_filename = full_backing_filename(bs, bs.backing_file)
    drv = bs.driver
    if drv is None or not drv.supports_backing:
        raise GenericError("Driver doesn't support backing files")
    if reference is None and bs.backing_format and "driver" not in options:
        options["driver"] = bs.backing_format
    try:
        backing_hd = bdrv_open(ctx, backing_filename or None, reference, options, None, bs,
                               "backing")
    except GenericError as e:
        bs.open_flags.no_backing = True
        raise GenericError(f"Could not open backing file: {e.desc}") from None
    try:
        ctx.set_backing_hd(bs, backing_hd)
    finally:
        ctx.unref(backing_hd)
    parent_options.pop(key, None)


def full_backing_filename(bs: Node, backing: str) -> str:
    """bdrv_get_full_backing_filename(_from_filename)."""
    backed = bs.filename
    if backing == "" or path_has_protocol(backing) or path_is_absolute(backing):
        return backing
    if backed == "" or backed.startswith("json:"):
        raise GenericError(f"Cannot use relative backing file names for '{backed}'")
    return path_combine(backed, backing)


def append_temp_snapshot(ctx: Opener, bs: Node, flags: OpenFlags, options: Flat) -> Node:
    """bdrv_append_temp_snapshot (-drive snapshot=on): a qcow2 overlay in a
    temporary file the image edge creates, deleted again when the overlay closes."""
    total = bs.length()
    tmp = ctx.io.create_temp_overlay(total, now=ctx.host.clock.wall(), rng=ctx.host.rng)
    options["file.driver"] = "file"
    options["file.filename"] = tmp
    options["driver"] = "qcow2"
    snap = bdrv_open(ctx, None, None, options, flags)
    snap.temp_file = tmp
    snap.refcnt += 1
    ctx.append(snap, bs)
    return snap


def refresh_filename(bs: Node) -> None:
    """bdrv_refresh_filename."""
    drv = bs.driver
    if drv is None:
        return
    if bs.file is not None and bs.file.bs is not None:
        refresh_filename(bs.file.bs)
    if drv.refresh_filename is not None:
        bs.exact_filename = ""
        bs.full_open_options = None
        opts, _ = _append_open_options(bs)
        drv.refresh_filename(bs, opts)
    elif bs.file is not None and bs.file.bs is not None:
        file_bs = bs.file.bs
        bs.exact_filename = ""
        bs.full_open_options = None
        opts, found = _append_open_options(bs)
        if file_bs.exact_filename and not found:
            bs.exact_filename = file_bs.exact_filename
        if file_bs.full_open_options is not None:
            opts["driver"] = drv.format_name
            # shared, as QEMU shares the QDict (qobject_ref): nothing changes a
            # node's full_open_options once built, and a copy per level per open
            # made a deep `file` chain cubic
            opts["file"] = file_bs.full_open_options
            bs.full_open_options = opts
    elif bs.full_open_options is None and bs.options:
        opts, _ = _append_open_options(bs)
        opts["driver"] = drv.format_name
        if bs.exact_filename:
            opts["filename"] = bs.exact_filename
        bs.full_open_options = opts
    if bs.exact_filename:
        bs.filename = bs.exact_filename
    elif bs.full_open_options is not None:
        bs.filename = "json:" + to_json(bs.full_open_options)  # qobject_to_json


def _append_open_options(bs: Node) -> tuple[Flat, bool]:
    """append_open_options: the node's own driver options (a fresh dict each time).

    A node's options hold its children's flattened keys too (block.c keeps the
    options as given), so a chain N deep has O(N) keys per node, and every open
    refreshes the whole subtree: the result is remembered for the options and
    children it came from, which keeps a deep `file` chain quadratic, not cubic."""
    names = tuple(c.name for c in bs.children)
    key = (id(bs.options), len(bs.options), names)
    memo = bs.own_options_memo
    if memo is not None and memo[0] == key:
        return dict(memo[1]), memo[2]
    out: Flat = {}
    found = False
    for opt in qdict_order(list(bs.options)):
        if _names_a_child(opt, names) or opt in RUNTIME_NAMES:
            continue
        out[opt] = bs.options[opt]
        found = True
    bs.own_options_memo = (key, dict(out), found)
    return out, found


def _names_a_child(key: str, names: tuple[str, ...]) -> bool:
    """`key` is a child's name or below one (`file`, `file.driver`, `children.0.x`)."""
    if key in names:
        return True
    dot = key.find(".")
    while dot >= 0:
        if key[:dot] in names:
            return True
        dot = key.find(".", dot + 1)
    return False


def parent_cb_change_media(ctx: Opener, bs: Node, load: bool) -> None:
    """bdrv_parent_cb_change_media: a new node tells the BlockBackends above it."""
    for c in bs.parents:
        if c.role == "root":
            ctx.blk_dev_change_media_cb(c.parent, load)


def _update_options_from_flags(options: Flat, flags: OpenFlags) -> None:
    """update_options_from_flags."""
    if "cache.direct" not in options:
        options["cache.direct"] = flags.nocache
    if "cache.no-flush" not in options:
        options["cache.no-flush"] = flags.no_flush
    if "read-only" not in options:
        options["read-only"] = not flags.rdwr


def _inherit_options(role: str, options: Flat, parent_flags: OpenFlags,
                     parent_options: Flat) -> OpenFlags:
    """The child roles' inherit_options [block.c bdrv_inherited_options,
    bdrv_inherited_fmt_options, bdrv_backing_options]."""
    flags = parent_flags.copy()
    if role in ("file", "format"):
        flags.protocol = True
        for key in ("cache.direct", "cache.no-flush", "force-share", "read-only"):
            if key in parent_options:
                set_default(options, key, parent_options[key])
        set_default(options, "discard", "unmap")
        flags.snapshot = flags.no_backing = flags.copy_on_read = flags.no_io = False
        if role == "format":
            flags.protocol = False
            flags.no_io = False
        return flags
    if role == "backing":
        return _backing_flags(options, flags, parent_options)
    raise AssertionError(role)


def _backing_flags(options: Flat, flags: OpenFlags, parent_options: Flat) -> OpenFlags:
    """bdrv_backing_options."""
    flags = flags.copy()
    for key in ("cache.direct", "cache.no-flush", "force-share"):
        if key in parent_options:
            set_default(options, key, parent_options[key])
    set_default(options, "read-only", "on")
    flags.copy_on_read = False
    flags.snapshot = flags.temporary = False
    return flags


def _parse_json_filename(filename: str) -> Flat:
    """parse_json_filename: json:{...} read as qobject_from_json reads it, as flattened
    options. A first parser error counts even if a later value parsed."""
    parsed = from_json(filename[len("json:"):])
    if not parsed.ok:
        if parsed.error is None:
            raise GenericError("Could not parse the JSON options")
        raise GenericError("Could not parse the JSON options: " + parsed.error)
    if parsed.error is not None:
        raise GenericError(parsed.error)
    if not isinstance(parsed.value, dict):
        raise GenericError("Invalid JSON object given")
    return flatten(parsed.value)
