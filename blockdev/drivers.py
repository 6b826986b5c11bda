"""QEMU 2.11's block drivers as the graph sees them: capabilities, options, open.

Pure part of the `blockdev` layer; the file-backed drivers reach real files only
through `blockdev.image.io` (the I/O edge). Every driver of the BlockdevDriver enum
is here [block/*.c BlockDriver definitions]:

* `file`, `host_device`, `host_cdrom` open the real path (`Could not open '<f>':
  <strerror>`) and lock it as file-posix does;
* the image formats (`raw`, `qcow2`, `qcow`, `vmdk`, `vpc`, `vdi`, `vhdx`, `qed`,
  `luks`) read their real header through their `file` child;
* `null-co`/`null-aio`, the network protocols and the filters are simulated:
  their options are checked as the driver's open function checks them, their target
  is never contacted.

A driver's `open` receives the node's remaining (flattened) options, takes the ones
it knows, and leaves the rest for bdrv_open_inherit's "does not support the option"
check. Errors carry QEMU's text; a bare errno failure is worded by the caller
(`Could not open '<filename>': <strerror>`).
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.graph import (
    PERM_ALL,
    SECTOR,
    Child,
    Node,
    filter_default_perms,
    format_default_perms,
)
from blockdev.options import Flat, OptDesc, absorb, extract_subqdict, get_str
from schema.errors import QERR_INVALID_PARAMETER_VALUE, GenericError

if TYPE_CHECKING:
    from blockdev.layer import BlockLayer


class OpenErrno(Exception):
    """A driver open that failed with -errno and no message of its own."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


OpenFn = Callable[["BlockLayer", Node, Flat], None]
ChildPermFn = Callable[[Node, Child | None, str, int, int], tuple[int, int]]


@attrs.frozen
class DriverSpec:
    """One BlockDriver: what the generic block code asks of it."""

    format_name: str
    open: OpenFn
    protocol_name: str | None = None
    protocol: bool = False  # has bdrv_file_open
    is_filter: bool = False
    needs_filename: bool = False
    supports_backing: bool = False
    child_perm: ChildPermFn | None = None
    has_get_info: bool = False
    can_truncate: bool = False
    internal_snapshots: bool = False
    persistent_bitmaps: bool = False
    change_backing_file: bool = False
    add_child: bool = False
    del_child: bool = False
    has_variable_length: bool = False
    real_file: bool = False
    simulated: bool = True
    refresh_filename: Callable[[Node, Flat], None] | None = None
    parse_filename: Callable[[str, Flat], None] | None = None
    getlength: Callable[[Node], int] | None = None
    is_inserted: Callable[[Node], bool] | None = None
    check_perm: Callable[[Node, int, int], None] | None = None
    set_perm: Callable[[Node, int, int], None] | None = None
    abort_perm: Callable[[Node], None] | None = None
    close: Callable[[Node], None] | None = None


# --- driver state ---------------------------------------------------------------------


@attrs.define(kw_only=True, eq=False)
class SimState:
    """A simulated protocol node: its length is all there is to know."""

    size: int
    extra: dict[str, Any] = attrs.Factory(dict)


@attrs.define(kw_only=True, eq=False)
class FilterState:
    extra: dict[str, Any] = attrs.Factory(dict)


# --- helpers ---------------------------------------------------------------------------


def _consume_prefix(options: Flat, *keys: str) -> dict[str, Any]:
    """Take `keys` and everything below `key.` (the schema already checked them)."""
    taken: dict[str, Any] = {}
    for key in keys:
        if key in options:
            taken[key] = options.pop(key)
        for sub, value in extract_subqdict(options, key + ".").items():
            taken[f"{key}.{sub}"] = value
    return taken


def open_file_child(layer: BlockLayer, bs: Node, options: Flat, *,
                    allow_none: bool = False, role: str = "file") -> Child | None:
    child = layer.open_child(None, options, "file", bs, role, allow_none=allow_none)
    bs.file = child
    return child


# --- file-posix ---------------------------------------------------------------------------

FILE_OPTS = (OptDesc("filename"), OptDesc("aio"), OptDesc("locking"),
             OptDesc("pr-manager"))


def _file_open(kind: str) -> OpenFn:
    def open_(layer: BlockLayer, bs: Node, options: Flat) -> None:
        """raw_open_common (file-posix.c): filename, aio, locking, then the open."""
        opts = absorb(FILE_OPTS, options)
        filename = opts.get("filename")
        aio = opts.get("aio", "threads")
        if aio not in ("threads", "native"):
            raise GenericError(f"Invalid parameter '{aio}'")
        locking = opts.get("locking", "auto")
        if locking not in ("on", "off", "auto"):
            raise GenericError(f"Invalid parameter '{locking}'")
        if opts.get("pr-manager") is not None:
            raise GenericError(f"No persistent reservation manager with id "
                               f"'{opts.get('pr-manager')}'")
        assert filename is not None
        writable = bs.open_flags.rdwr
        bs.state = layer.io.open_file(filename, writable=writable, locking=locking,
                                      inactive=bs.open_flags.inactive, kind=kind)
        if (aio == "native" or (bs.open_flags.native_aio and "aio" not in opts.values)) \
                and not bs.open_flags.nocache:
            bs.state.close()
            bs.state = None
            raise GenericError("aio=native was specified, but it requires cache.direct=on, "
                               "which was not specified.")
        if kind == "host_device" and writable and not bs.state.is_device():
            pass
    return open_


def _file_getlength(bs: Node) -> int:
    return int(bs.state.length()) if bs.state is not None else 0


def _file_check_perm(bs: Node, perm: int, shared: int) -> None:
    bs.state.prepare(perm, shared)


def _file_set_perm(bs: Node, perm: int, shared: int) -> None:
    bs.state.commit(perm, shared)


def _file_abort_perm(bs: Node) -> None:
    if bs.state is not None:
        bs.state.abort()


def _file_close(bs: Node) -> None:
    if bs.state is not None:
        bs.state.close()


def _cdrom_inserted(bs: Node) -> bool:
    return bool(bs.state is not None and bs.state.media_present())


def _file_driver(name: str, **kw: Any) -> DriverSpec:
    return DriverSpec(
        format_name=name, protocol_name=name, protocol=True, needs_filename=True,
        open=_file_open(name), has_get_info=name != "host_cdrom", can_truncate=True,
        has_variable_length=True, getlength=_file_getlength, real_file=True,
        simulated=False, check_perm=_file_check_perm, set_perm=_file_set_perm,
        abort_perm=_file_abort_perm, close=_file_close, **kw)


# --- null ---------------------------------------------------------------------------------

NULL_OPTS = (OptDesc("size", "size"), OptDesc("latency-ns", "number"),
             OptDesc("read-zeroes", "bool"))


def _null_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """null_file_open."""
    opts = absorb(NULL_OPTS, options)
    latency = opts.get("latency-ns", 0)
    size = opts.get("size", 1 << 30)
    bs.state = SimState(size=size, extra={"latency-ns": latency})
    if latency >= 2**63:
        raise GenericError("latency-ns is invalid")


def _null_parse_filename(name: str) -> Callable[[str, Flat], None]:
    def parse(filename: str, options: Flat) -> None:
        if filename != f"{name}://":
            raise GenericError(f"The only allowed filename for this driver is '{name}://'")
    return parse


def _null_refresh_filename(bs: Node, opts: Flat) -> None:
    opts.pop("filename", None)
    assert bs.driver is not None
    if not opts:
        bs.exact_filename = f"{bs.driver.format_name}://"
    opts["driver"] = bs.driver.format_name
    bs.full_open_options = opts


def _sim_getlength(bs: Node) -> int:
    return int(bs.state.size) if isinstance(bs.state, SimState) else 0


def _null_driver(name: str) -> DriverSpec:
    return DriverSpec(format_name=name, protocol_name=name, protocol=True, open=_null_open,
                      parse_filename=_null_parse_filename(name),
                      refresh_filename=_null_refresh_filename, getlength=_sim_getlength,
                      has_variable_length=True)


# --- network protocols (simulated: never contacted) ----------------------------------------


def _network_open(*keys: str, required: Callable[[dict[str, Any]], str | None] | None = None
                  ) -> OpenFn:
    def open_(layer: BlockLayer, bs: Node, options: Flat) -> None:
        taken = _consume_prefix(options, *keys)
        if required is not None:
            problem = required(taken)
            if problem is not None:
                raise GenericError(problem)
        bs.state = SimState(size=layer.network_size, extra=taken)
    return open_


NBD_KEYS = ("server", "export", "tls-creds", "host", "port", "path", "filename")


def _nbd_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """nbd_open / nbd_config: the legacy host/port/path options become `server`."""
    taken = _consume_prefix(options, *NBD_KEYS)
    server = {k[len("server."):]: v for k, v in taken.items() if k.startswith("server.")}
    legacy = {k: taken[k] for k in ("host", "port", "path") if k in taken}
    if server and legacy:
        raise GenericError("Cannot use 'server' and path/host/port at the same time")
    if "path" in legacy and "host" in legacy:
        raise GenericError("path and host may not be used at the same time")
    if "port" in legacy and "host" not in legacy:
        raise GenericError("port may not be used without host")
    if legacy:
        if "path" in legacy:
            server = {"type": "unix", "path": legacy["path"]}
        else:
            server = {"type": "inet", "host": legacy["host"],
                      "port": str(legacy.get("port", "10809"))}
    if not server:
        raise GenericError("NBD server address missing")
    if "tls-creds" in taken:
        creds = taken["tls-creds"]
        if not layer.has_tls_creds(creds):
            raise GenericError(f"No TLS credentials with id '{creds}'")
    extra: dict[str, Any] = {"server": server}
    if "export" in taken:
        extra["export"] = taken["export"]
    if "tls-creds" in taken:
        extra["tls-creds"] = taken["tls-creds"]
    bs.state = SimState(size=layer.network_size, extra=extra)


def _nbd_parse_filename(filename: str, options: Flat) -> None:
    """nbd_parse_filename / nbd_parse_uri: the nbd: and nbd:// file name forms."""
    for key in ("host", "port", "path", "export", "server"):
        if any(k == key or k.startswith(key + ".") for k in options):
            raise GenericError(f"Option '{key}' cannot be used with a file name")
    if "://" in filename:
        from urllib.parse import parse_qs, urlsplit

        uri = urlsplit(filename)
        scheme = uri.scheme
        if scheme not in ("nbd", "nbd+tcp", "nbd+unix"):
            raise GenericError("No valid URL specified")
        export: str | None = uri.path[1:] if uri.path.startswith("/") else uri.path
        if export:
            options["export"] = export
        query = parse_qs(uri.query)
        if scheme == "nbd+unix":
            if "socket" not in query or uri.netloc:
                raise GenericError("No valid URL specified")
            options["server.type"] = "unix"
            options["server.path"] = query["socket"][0]
        else:
            if query or not uri.hostname:
                raise GenericError("No valid URL specified")
            options["server.type"] = "inet"
            options["server.host"] = uri.hostname
            options["server.port"] = str(uri.port or 10809)
        return
    if not filename.startswith("nbd:"):
        raise GenericError("File name string for NBD must start with 'nbd:'")
    rest = filename[4:]
    export = None
    if ":exportname=" in rest:
        rest, export = rest.split(":exportname=", 1)
    if rest.startswith("unix:"):
        options["server.type"] = "unix"
        options["server.path"] = rest[5:]
    else:
        host, _, port = rest.rpartition(":")
        if not host:
            host, port = rest, "10809"
        options["server.type"] = "inet"
        options["server.host"] = host
        options["server.port"] = port
    if export is not None:
        options["export"] = export


def _nbd_refresh_filename(bs: Node, options: Flat) -> None:
    """nbd_refresh_filename."""
    extra = bs.state.extra
    server = extra["server"]
    export = extra.get("export")
    host = port = path = None
    if server.get("type") == "inet":
        if not any(k in server for k in ("ipv4", "ipv6", "to")):
            host, port = server.get("host"), server.get("port")
    elif server.get("type") == "unix":
        path = server.get("path")
    opts: Flat = {"driver": "nbd"}
    if path and export:
        bs.exact_filename = f"nbd+unix:///{export}?socket={path}"
    elif path:
        bs.exact_filename = f"nbd+unix://?socket={path}"
    elif host and export:
        bs.exact_filename = f"nbd://{host}:{port}/{export}"
    elif host:
        bs.exact_filename = f"nbd://{host}:{port}"
    for k, v in server.items():
        opts[f"server.{k}"] = v
    if export:
        opts["export"] = export
    if extra.get("tls-creds"):
        opts["tls-creds"] = extra["tls-creds"]
    bs.full_open_options = opts


def _url_parse(scheme: str) -> Callable[[str, Flat], None]:
    def parse(filename: str, options: Flat) -> None:
        options["url"] = filename
    return parse


def _iscsi_required(taken: dict[str, Any]) -> str | None:
    if "filename" in taken:
        return None
    for key in ("portal", "target", "transport"):
        if key not in taken:
            return f"Parameter '{key}' is missing" if key != "transport" else None
    return None


def _network_driver(name: str, keys: tuple[str, ...], *, protocol_name: str | None = None,
                    open_: OpenFn | None = None, needs_filename: bool = False,
                    url: bool = False, **kw: Any) -> DriverSpec:
    return DriverSpec(
        format_name=name, protocol_name=protocol_name or name, protocol=True,
        open=open_ or _network_open(*keys), needs_filename=needs_filename,
        getlength=_sim_getlength, has_variable_length=True,
        parse_filename=_url_parse(name) if url else kw.pop("parse_filename", _keep_filename),
        **kw)


def _keep_filename(filename: str, options: Flat) -> None:
    """Drivers whose parse_filename we do not reproduce keep the name as `filename`."""


CURL_KEYS = ("url", "readahead", "timeout", "sslverify", "cookie", "cookie-secret",
             "username", "password-secret", "proxy-username", "proxy-password-secret")


# --- image formats --------------------------------------------------------------------------

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
    def open_(layer: BlockLayer, bs: Node, options: Flat) -> None:
        """<fmt>_open: the file child, then the header through it."""
        open_file_child(layer, bs, options)
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
        image = layer.io.open_format(layer, bs, fmt, extra)
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


def _load_autoloading_bitmaps(bs: Node, image: Any) -> None:
    """qcow2_load_autoloading_dirty_bitmaps: stored bitmaps flagged `auto` and not
    `in_use` become the node's persistent bitmaps (read-only on a read-only node).
    Their stored content is not read: they start clean in the model."""
    from blockdev.bitmaps import DirtyBitmap

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


def _format_driver(name: str, **kw: Any) -> DriverSpec:
    return DriverSpec(format_name=name, open=_format_open(name),
                      child_perm=kw.pop("child_perm", format_default_perms),
                      has_get_info=True, simulated=False, getlength=_format_getlength,
                      has_variable_length=name == "raw", **kw)


# --- filters ----------------------------------------------------------------------------------


def _throttle_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """throttle_open / throttle_configure_tgm."""
    open_file_child(layer, bs, options)
    opts = absorb((OptDesc("throttle-group"),), options)
    group = opts.get("throttle-group")
    if not group:
        raise GenericError("Please specify a throttle group")
    if layer.throttle_groups.get(group) is None:
        raise GenericError(f"Throttle group '{group}' does not exist")
    layer.throttle_groups.join(bs, group)
    bs.state = FilterState(extra={"throttle-group": group})


def _filter_getlength(bs: Node) -> int:
    child = bs.file.bs if bs.file is not None else None
    if child is None:
        return 0
    return child.length()


def _blkdebug_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """blkdebug_open: rules, then the image child, then the limits."""
    _consume_prefix(options, "inject-error", "set-state")
    opts = absorb((OptDesc("config"), OptDesc("x-image"), OptDesc("align", "size"),
                   OptDesc("max-transfer", "size"), OptDesc("opt-write-zero", "size"),
                   OptDesc("max-write-zero", "size"), OptDesc("opt-discard", "size"),
                   OptDesc("max-discard", "size")), options)
    if opts.get("config") is not None:
        config = opts.get("config")
        if not os.path.exists(config):
            raise GenericError(f"Could not read blkdebug config file: "
                               f"{os.strerror(errno_mod.ENOENT)}")
    bs.file = layer.open_child(opts.get("x-image"), options, "image", bs, "file",
                               allow_none=False)
    align = opts.get("align", 0)
    if align and (align & (align - 1) or align >= 2**31):
        raise GenericError(f"Cannot meet constraints with align {align}")
    bs.state = FilterState(extra=dict(opts.values))


def _blkverify_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """blkverify_open: the raw copy as `file`, the image under test as `test`."""
    opts = absorb((OptDesc("x-raw"), OptDesc("x-image")), options)
    bs.file = layer.open_child(opts.get("x-raw"), options, "raw", bs, "file",
                               allow_none=False)
    test = layer.open_child(opts.get("x-image"), options, "test", bs, "format",
                            allow_none=False)
    bs.state = FilterState(extra={"test": test})


def _quorum_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """quorum_open: vote threshold, children, read pattern."""
    opts = absorb((OptDesc("vote-threshold", "number"), OptDesc("blkverify", "bool"),
                   OptDesc("rewrite-corrupted", "bool"), OptDesc("read-pattern")), options)
    indices = sorted({int(k.split(".")[1]) for k in options if k.startswith("children.")})
    if not indices:
        raise GenericError("Option children is not a valid array")
    threshold = opts.get("vote-threshold")
    if threshold is None:
        raise GenericError("Parameter 'vote-threshold' is missing")
    if threshold < 1:
        raise GenericError(QERR_INVALID_PARAMETER_VALUE % ("vote-threshold", "value >= 1"))
    if threshold > len(indices):
        raise GenericError("threshold may not exceed children count")
    pattern = opts.get("read-pattern", "quorum")
    if pattern not in ("quorum", "fifo"):
        raise GenericError("Please set read-pattern as fifo or quorum")
    if opts.get("blkverify") and (len(indices) != 2 or threshold != 2):
        raise GenericError("blkverify mode is set by setting blkverify=on and "
                           "vote-threshold=2")
    children = []
    for i in range(len(indices)):
        ref = options.pop(f"children.{i}", None)
        sub = extract_subqdict(options, f"children.{i}.")
        if isinstance(ref, str):
            sub_opts: Flat = {f"children.{i}": ref}
        else:
            sub_opts = {f"children.{i}.{k}": v for k, v in sub.items()}
        child = layer.open_child(None, sub_opts, f"children.{i}", bs, "format",
                                 allow_none=False)
        assert child is not None
        children.append(child)
    bs.state = FilterState(extra={"threshold": threshold, "next_child_index": len(indices),
                                  "children": children})


def _quorum_getlength(bs: Node) -> int:
    children = bs.state.extra["children"] if isinstance(bs.state, FilterState) else []
    return children[0].bs.length() if children else 0


def _quorum_refresh_filename(bs: Node, options: Flat) -> None:
    """quorum_refresh_filename: only when every child has full options."""
    children = bs.state.extra["children"]
    opts: Flat = {"driver": "quorum", "vote-threshold": bs.state.extra["threshold"]}
    opts["children"] = [c.bs.full_open_options for c in children]
    if any(c.bs.full_open_options is None for c in children):
        return
    bs.full_open_options = opts


def _replication_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """replication_open."""
    open_file_child(layer, bs, options)
    opts = absorb((OptDesc("mode"), OptDesc("top-id")), options)
    mode = opts.get("mode")
    if mode is None:
        raise GenericError("Missing the option mode")
    if mode == "primary":
        if opts.get("top-id") is not None:
            raise GenericError("The primary side does not support option top-id")
    elif mode == "secondary":
        if opts.get("top-id") is None:
            raise GenericError("Missing the option top-id")
    else:
        raise GenericError("The option mode's value should be primary or secondary")
    bs.state = FilterState(extra=dict(opts.values))


def _replication_child_perm(bs: Node, c: Child | None, role: str, perm: int,
                            shared: int) -> tuple[int, int]:
    """replication_child_perm: consistent read + write, share everything."""
    return 0x01 | 0x02, PERM_ALL


def _blkdebug_refresh_filename(bs: Node, options: Flat) -> None:
    """blkdebug_refresh_filename: blkdebug::<image> when no rule options are set."""
    child = bs.file_bs
    assert child is not None
    if child.exact_filename and not options:
        bs.exact_filename = f"blkdebug::{child.exact_filename}"
    if child.full_open_options is not None:
        opts: Flat = {"driver": "blkdebug", "image": child.full_open_options}
        opts.update(options)
        bs.full_open_options = opts


def _blkverify_refresh_filename(bs: Node, options: Flat) -> None:
    child = bs.file_bs
    test = bs.state.extra["test"].bs
    assert child is not None and test is not None
    if child.exact_filename and test.exact_filename:
        bs.exact_filename = f"blkverify:{child.exact_filename}:{test.exact_filename}"
    if child.full_open_options is not None and test.full_open_options is not None:
        bs.full_open_options = {"driver": "blkverify", "raw": child.full_open_options,
                                "test": test.full_open_options}


def _vvfat_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """vvfat_open: a directory presented as a FAT disk."""
    taken = _consume_prefix(options, "dir", "fat-type", "floppy", "label", "rw", "filename")
    directory = taken.get("dir") or taken.get("filename")
    if directory is None or not os.path.isdir(str(directory)):
        raise OpenErrno(errno_mod.EIO)
    size = 1440 * 1024 if taken.get("floppy") else 504 * 16 * 63 * 512
    bs.state = SimState(size=size, extra=taken)


def _internal_filter_open(layer: BlockLayer, bs: Node, options: Flat) -> None:
    """mirror_top / commit_top are created by jobs, never by name."""
    raise GenericError(f"Unknown driver '{bs.driver.format_name if bs.driver else ''}'")


DRIVERS: dict[str, DriverSpec] = {}


def _register(*specs: DriverSpec) -> None:
    for spec in specs:
        DRIVERS[spec.format_name] = spec


_register(
    _file_driver("file"),
    _file_driver("host_device"),
    _file_driver("host_cdrom", is_inserted=_cdrom_inserted),
    _null_driver("null-co"),
    _null_driver("null-aio"),
    _format_driver("raw", child_perm=filter_default_perms, can_truncate=True),
    _format_driver("qcow2", supports_backing=True, can_truncate=True,
                   internal_snapshots=True, persistent_bitmaps=True,
                   change_backing_file=True),
    _format_driver("qcow", supports_backing=True, can_truncate=False),
    _format_driver("vmdk", supports_backing=True),
    _format_driver("vpc", can_truncate=False),
    _format_driver("vdi"),
    _format_driver("vhdx", can_truncate=False),
    _format_driver("qed", supports_backing=True, can_truncate=True,
                   change_backing_file=True),
    _format_driver("luks", can_truncate=True),
    _format_driver("bochs"),
    _format_driver("cloop"),
    _format_driver("dmg"),
    _format_driver("parallels", can_truncate=True),
    DriverSpec(format_name="nbd", protocol_name="nbd", protocol=True, open=_nbd_open,
               parse_filename=_nbd_parse_filename, refresh_filename=_nbd_refresh_filename,
               getlength=_sim_getlength, has_variable_length=True),
    _network_driver("iscsi", ("transport", "portal", "target", "lun", "user",
                              "password-secret", "initiator-name", "header-digest",
                              "timeout", "filename"), has_get_info=True, can_truncate=True),
    _network_driver("rbd", ("pool", "image", "conf", "snapshot", "user", "server",
                            "password-secret", "filename"), has_get_info=True,
                    can_truncate=True, internal_snapshots=True),
    _network_driver("gluster", ("server", "volume", "path", "debug", "logfile",
                                "filename"), can_truncate=True),
    _network_driver("sheepdog", ("server", "vdi", "snap-id", "tag", "filename"),
                    can_truncate=True, internal_snapshots=True),
    _network_driver("ssh", ("server", "path", "user", "host-key-check", "host", "port",
                            "host_key_check", "filename")),
    _network_driver("nfs", ("server", "path", "user", "group", "tcp-syn-count",
                            "readahead-size", "page-cache-size", "debug", "filename"),
                    can_truncate=True),
    _network_driver("vxhs", ("vdisk-id", "server", "tls-creds", "filename")),
    _network_driver("http", CURL_KEYS, url=True, needs_filename=False),
    _network_driver("https", CURL_KEYS, url=True),
    _network_driver("ftp", CURL_KEYS, url=True),
    _network_driver("ftps", CURL_KEYS, url=True),
    DriverSpec(format_name="vvfat", protocol_name="fat", protocol=True, open=_vvfat_open,
               getlength=_sim_getlength, has_variable_length=True),
    DriverSpec(format_name="throttle", protocol_name="throttle", protocol=True,
               is_filter=True, open=_throttle_open, child_perm=filter_default_perms,
               getlength=_filter_getlength, has_variable_length=True),
    DriverSpec(format_name="blkdebug", protocol_name="blkdebug", protocol=True,
               is_filter=True, open=_blkdebug_open, child_perm=filter_default_perms,
               getlength=_filter_getlength, has_variable_length=True,
               refresh_filename=_blkdebug_refresh_filename),
    DriverSpec(format_name="blkverify", protocol_name="blkverify", protocol=True,
               is_filter=True, open=_blkverify_open, child_perm=filter_default_perms,
               getlength=_filter_getlength, has_variable_length=True,
               refresh_filename=_blkverify_refresh_filename),
    DriverSpec(format_name="quorum", protocol_name="quorum", protocol=True, is_filter=True,
               open=_quorum_open, child_perm=filter_default_perms, add_child=True,
               del_child=True, getlength=_quorum_getlength, has_variable_length=True,
               refresh_filename=_quorum_refresh_filename),
    DriverSpec(format_name="replication", protocol_name="replication", is_filter=True,
               open=_replication_open, child_perm=_replication_child_perm,
               getlength=_filter_getlength, has_variable_length=True),
)

# Drivers whose node is a simulation (no real file behind it).
SIMULATED = frozenset(name for name, spec in DRIVERS.items() if spec.simulated)


def find_format(name: str) -> DriverSpec | None:
    """bdrv_find_format."""
    return DRIVERS.get(name)


def find_protocol(filename: str, allow_prefix: bool, probe_device: Callable[[str], str | None]
                  ) -> DriverSpec:
    """bdrv_find_protocol: host devices first, then a `proto:` prefix, else `file`."""
    dev = probe_device(filename)
    if dev is not None:
        return DRIVERS[dev]
    from blockdev.image.formats.base import path_has_protocol

    if not path_has_protocol(filename) or not allow_prefix:
        return DRIVERS["file"]
    proto = filename.split(":", 1)[0][:127]
    for spec in DRIVERS.values():
        if spec.protocol_name == proto or (spec.format_name == "nbd" and
                                            proto in ("nbd+tcp", "nbd+unix")):
            return spec
        if spec.format_name == "gluster" and proto.startswith("gluster+"):
            return spec
        if spec.format_name == "sheepdog" and proto in ("sheepdog+tcp", "sheepdog+unix"):
            return spec
    raise GenericError(f"Unknown protocol '{proto}'")


def get_str_option(options: Flat, key: str) -> str | None:
    return get_str(options, key)
