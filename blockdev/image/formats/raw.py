"""raw: block/raw-format.c on top of the file node (block/file-posix.c).

raw is a filter in 2.11 (no metadata, permissions passed through), it answers
get_info through the file node (so `dirty-flag` is present and false, and there is
no `cluster-size`), and its size is the file's, rounded up to whole sectors. The
`offset`/`size` runtime options are not modelled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs

from blockdev.image.formats.base import (
    SECTOR_SIZE,
    FileNode,
    ImageError,
    OpenContext,
    fail_errno,
    round_up,
)
from blockdev.image.formats.facts import ImageFacts


def probe(buf: bytes, filename: str) -> int:
    """raw_probe: the smallest positive score, so raw wins only if nothing else does."""
    return 1


def open_image(ctx: OpenContext) -> ImageFacts:
    return ImageFacts(
        filename=ctx.filename,
        format="raw",
        virtual_size=ctx.file.length,
        actual_size=ctx.file.allocated_size(),
        dirty_flag=False,
        probed=ctx.probed,
    )


@attrs.frozen
class CreatePlan:
    size: int
    preallocation: str


def plan_create(size: int, options: dict[str, str | int | bool]) -> CreatePlan:
    """file-posix raw_create's option parsing, before the file is created."""
    opts = dict(options)
    prealloc = str(opts.pop("preallocation", "off"))
    opts.pop("nocow", None)
    if opts:
        raise ImageError("Invalid options for file format 'raw'")
    if prealloc not in ("off", "metadata", "falloc", "full"):
        raise ImageError(f"invalid parameter value: {prealloc}")
    return CreatePlan(size=round_up(size, SECTOR_SIZE), preallocation=prealloc)


def create(file: FileNode, plan: CreatePlan) -> None:
    """raw_create -> file-posix raw_regular_truncate on the new, empty file: sparse
    (`off`), posix_fallocate (`falloc`) or zeros written (`full`)."""
    total = plan.size
    prealloc = plan.preallocation
    fd = file.fd
    assert fd is not None
    try:
        if prealloc == "off":
            _step("Could not resize file", os.ftruncate, fd, total)
        elif prealloc == "falloc":
            _step("Could not preallocate new data", os.posix_fallocate, fd, 0, total)
        elif prealloc == "full":
            _step("Could not resize file", os.ftruncate, fd, total)
            _step("Failed to seek to the old end of file", os.lseek, fd, 0, os.SEEK_SET)
            chunk = bytes(65536)
            left = total
            while left > 0:
                n = _step(
                    "Could not write zeros for preallocation",
                    os.write,
                    fd,
                    chunk[: min(left, 65536)],
                )
                left -= n
            _step("Could not flush file to disk", os.fsync, fd)
        else:
            raise ImageError(f"Unsupported preallocation mode: {prealloc}")
    except ImageError:
        if prealloc != "off":
            os.ftruncate(fd, 0)
        raise


def _step(prefix: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError as e:
        fail_errno(prefix, e.errno or 0)
