"""What the block drivers share: their node state, option helpers, the byte view.

Pure part of the `blockdev` layer (`blockdev.drivers`), above `blockdev.graph`. The
byte view (`node_view`) is the data path of a read: a format driver reads its `file`
child through it, probing reads the file below a new node through it, and it ends in
the image edge (`blockdev.image.io`) for nodes backed by a real file.
"""

from __future__ import annotations

from typing import Any

import attrs

from blockdev.graph import Child, DriverContext, Node
from blockdev.image.io import FileHandle, FormatImage, ReadView, ZeroView
from blockdev.options import Flat, extract_subqdict


class OpenErrno(Exception):
    """A driver open that failed with -errno and no message of its own."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


@attrs.define(kw_only=True, eq=False)
class SimState:
    """A simulated protocol node: its length is all there is to know."""

    size: int
    extra: dict[str, Any] = attrs.Factory(dict)


@attrs.define(kw_only=True, eq=False)
class FilterState:
    extra: dict[str, Any] = attrs.Factory(dict)


def consume_prefix(options: Flat, *keys: str) -> dict[str, Any]:
    """Take `keys` and everything below `key.` (the schema already checked them)."""
    taken: dict[str, Any] = {}
    for key in keys:
        if key in options:
            taken[key] = options.pop(key)
        for sub, value in extract_subqdict(options, key + ".").items():
            taken[f"{key}.{sub}"] = value
    return taken


def open_file_child(ctx: DriverContext, bs: Node, options: Flat, *,
                    allow_none: bool = False, role: str = "file") -> Child | None:
    child = ctx.open_child(None, options, "file", bs, role, allow_none=allow_none)
    bs.file = child
    return child


def sim_getlength(bs: Node) -> int:
    return int(bs.state.size) if isinstance(bs.state, SimState) else 0


def sim_truncate(bs: Node, size: int) -> None:
    """A simulated protocol node takes any new size."""
    bs.state.size = size


def filter_getlength(bs: Node) -> int:
    child = bs.file.bs if bs.file is not None else None
    if child is None:
        return 0
    return child.length()


def node_view(bs: Node) -> Any:
    """A read-only byte view of a node, as a format driver reads its `file` child:
    file nodes read the real file; raw nodes apply their offset; filters pass
    through; everything else reads as zeros."""
    drv = bs.driver
    state = bs.state
    if isinstance(state, FileHandle):
        return state.view()
    if drv is not None and drv.format_name == "raw" and isinstance(state, FormatImage) \
            and bs.file is not None and bs.file.bs is not None:
        inner = node_view(bs.file.bs)
        offset = state.raw_options.get("offset", 0)
        return ReadView(bs.filename, lambda o, n: inner.pread(o + offset, n),
                        lambda: state.virtual_size, lambda: inner.allocated_size())
    if drv is not None and drv.is_filter and bs.file is not None and bs.file.bs is not None:
        return node_view(bs.file.bs)
    return ZeroView(bs.filename, bs.length())
