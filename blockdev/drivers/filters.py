"""Filter drivers: `throttle`, `blkdebug`, `blkverify`, `quorum`, `replication`.

Pure part of the `blockdev` layer (`blockdev.drivers`) [block/throttle.c,
block/blkdebug.c, block/blkverify.c, block/quorum.c, block/replication.c]. A filter
opens its children with the options its open function knows and passes the guest's
view through; the children it keeps (quorum's `children.N`, blkverify's `test`) are
in its `FilterState`.
"""

from __future__ import annotations

import errno as errno_mod
import os

from blockdev.drivers.base import FilterState, consume_prefix, filter_getlength, open_file_child
from blockdev.graph import PERM_ALL, Child, DriverContext, DriverSpec, Node, filter_default_perms
from blockdev.options import Flat, OptDesc, absorb, extract_subqdict
from schema.errors import QERR_INVALID_PARAMETER_VALUE, GenericError


def _throttle_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """throttle_open / throttle_configure_tgm."""
    open_file_child(ctx, bs, options)
    opts = absorb((OptDesc("throttle-group"),), options)
    group = opts.get("throttle-group")
    if not group:
        raise GenericError("Please specify a throttle group")
    if ctx.throttle_groups.get(group) is None:
        raise GenericError(f"Throttle group '{group}' does not exist")
    tg = ctx.throttle_groups.join(bs, group)
    bs.state = FilterState(extra={"throttle-group": group, "tg": tg})


def _blkdebug_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """blkdebug_open: rules, then the image child, then the limits."""
    rules = consume_prefix(options, "inject-error", "set-state")
    opts = absorb((OptDesc("config"), OptDesc("x-image"), OptDesc("align", "size"),
                   OptDesc("max-transfer", "size"), OptDesc("opt-write-zero", "size"),
                   OptDesc("max-write-zero", "size"), OptDesc("opt-discard", "size"),
                   OptDesc("max-discard", "size")), options)
    if opts.get("config") is not None:
        config = opts.get("config")
        if not os.path.exists(config):
            raise GenericError(f"Could not read blkdebug config file: "
                               f"{os.strerror(errno_mod.ENOENT)}")
    bs.file = ctx.open_child(opts.get("x-image"), options, "image", bs, "file",
                               allow_none=False)
    align = opts.get("align", 0)
    if align and (align & (align - 1) or align >= 2**31):
        raise GenericError(f"Cannot meet constraints with align {align}")
    # The rules are kept as given; blockdev.drivers.dataio reads them on the first
    # request (blkdebug's add_rule), so opening loads no data path.
    bs.state = FilterState(extra={**opts.values, "rule-options": rules, "state": 1})


def _blkdebug_parse_filename(filename: str, options: Flat) -> None:
    """blkdebug_parse_filename: `blkdebug:[<config>]:<image>`; without the prefix
    the whole name is the image."""
    if not filename.startswith("blkdebug:"):
        options["x-image"] = filename
        return
    rest = filename[len("blkdebug:"):]
    colon = rest.find(":")
    if colon < 0:
        raise GenericError("blkdebug requires both config file and image path")
    if colon:
        options["config"] = rest[:colon]
    options["x-image"] = rest[colon + 1:]


def _blkverify_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """blkverify_open: the raw copy as `file`, the image under test as `test`."""
    opts = absorb((OptDesc("x-raw"), OptDesc("x-image")), options)
    bs.file = ctx.open_child(opts.get("x-raw"), options, "raw", bs, "file",
                               allow_none=False)
    test = ctx.open_child(opts.get("x-image"), options, "test", bs, "format",
                            allow_none=False)
    bs.state = FilterState(extra={"test": test})


def _quorum_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
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
        child = ctx.open_child(None, sub_opts, f"children.{i}", bs, "format",
                                 allow_none=False)
        assert child is not None
        children.append(child)
    bs.state = FilterState(extra={"threshold": threshold, "next_child_index": len(indices),
                                  "children": children, "read-pattern": pattern,
                                  "rewrite-corrupted": bool(opts.get("rewrite-corrupted"))})


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


def _replication_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """replication_open."""
    open_file_child(ctx, bs, options)
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
    """blkdebug_refresh_filename [block/blkdebug.c, 2.11]: with no option but
    `config` and `x-image`, the name `blkdebug:<config>:<image>` (config empty when
    none); any other option (rules, limits) needs the image's full options, or the
    node keeps no name; the full options are the node's own, `x-image` dropped,
    with the image's under `image`."""
    child = bs.file_bs
    assert child is not None
    force_json = any(k not in ("config", "x-image") for k in options)
    if force_json and child.full_open_options is None:
        return
    if not force_json and child.exact_filename:
        config = options.get("config") or ""
        bs.exact_filename = f"blkdebug:{config}:{child.exact_filename}"
    if child.full_open_options is not None:
        opts: Flat = {"driver": "blkdebug", "image": child.full_open_options}
        opts.update((k, v) for k, v in options.items() if k != "x-image")
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


SPECS = (
    DriverSpec(format_name="throttle", protocol_name="throttle", protocol=True,
               is_filter=True, open=_throttle_open, child_perm=filter_default_perms,
               getlength=filter_getlength, has_variable_length=True),
    DriverSpec(format_name="blkdebug", protocol_name="blkdebug", protocol=True,
               is_filter=True, open=_blkdebug_open, child_perm=filter_default_perms,
               getlength=filter_getlength, has_variable_length=True,
               refresh_filename=_blkdebug_refresh_filename,
               parse_filename=_blkdebug_parse_filename),
    DriverSpec(format_name="blkverify", protocol_name="blkverify", protocol=True,
               is_filter=True, open=_blkverify_open, child_perm=filter_default_perms,
               getlength=filter_getlength, has_variable_length=True,
               refresh_filename=_blkverify_refresh_filename),
    DriverSpec(format_name="quorum", protocol_name="quorum", protocol=True, is_filter=True,
               open=_quorum_open, child_perm=filter_default_perms, add_child=True,
               del_child=True, getlength=_quorum_getlength, has_variable_length=True,
               refresh_filename=_quorum_refresh_filename),
    DriverSpec(format_name="replication", protocol_name="replication", is_filter=True,
               open=_replication_open, child_perm=_replication_child_perm,
               getlength=filter_getlength, has_variable_length=True),
)
