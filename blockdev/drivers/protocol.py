"""Protocol drivers that are not network clients: file-posix (`file`, `host_device`,
`host_cdrom`), `null-co`/`null-aio` and `vvfat`.

Pure part of the `blockdev` layer (`blockdev.drivers`) [block/file-posix.c,
block/null.c, block/vvfat.c]. The file-posix drivers open their path through the
image edge (`DriverContext.io`), which returns the open file description and its
lock; the others are simulations whose length is all there is to know.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable
from typing import Any

from blockdev.drivers.base import (
    OpenErrno,
    SimState,
    consume_prefix,
    sim_getlength,
)
from blockdev.graph import DriverContext, DriverSpec, Node, OpenFn
from blockdev.options import Flat, OptDesc, absorb
from schema.errors import GenericError
from schema.opts.cutils import to_int64

# --- file-posix ---------------------------------------------------------------------------

FILE_OPTS = (OptDesc("filename"), OptDesc("aio"), OptDesc("locking"),
             OptDesc("pr-manager"))


def _file_open(kind: str) -> OpenFn:
    def open_(ctx: DriverContext, bs: Node, options: Flat) -> None:
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
        bs.state = ctx.io.open_file(filename, writable=writable, locking=locking,
                                    inactive=bs.open_flags.inactive, kind=kind)
        if (aio == "native" or (bs.open_flags.native_aio and "aio" not in opts.values)) \
                and not bs.open_flags.nocache:
            bs.state.close()
            bs.state = None
            raise GenericError("aio=native was specified, but it requires cache.direct=on, "
                               "which was not specified.")
    return open_


def _file_getlength(bs: Node) -> int:
    return int(bs.state.length()) if bs.state is not None else 0


def _file_truncate(bs: Node, size: int) -> None:
    """raw_truncate: the model's size changes; the file is not rewritten."""
    bs.state.model_size = size


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
        open=_file_open(name), has_get_info=name != "host_cdrom", truncate=_file_truncate,
        has_variable_length=True, getlength=_file_getlength,
        check_perm=_file_check_perm, set_perm=_file_set_perm,
        abort_perm=_file_abort_perm, close=_file_close, **kw)


# --- null ---------------------------------------------------------------------------------

NULL_OPTS = (OptDesc("size", "size"), OptDesc("latency-ns", "number"),
             OptDesc("read-zeroes", "bool"))


def _null_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """null_file_open."""
    opts = absorb(NULL_OPTS, options)
    latency = opts.get("latency-ns", 0)
    # s->length is an int64_t: a size of 2^63 or more (qemu_opt_get_size's uint64)
    # wraps negative, as C converts it [block/null.c null_file_open]
    size = to_int64(opts.get("size", 1 << 30))
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


def _null_driver(name: str) -> DriverSpec:
    """bdrv_null_co / bdrv_null_aio: a fixed length (no has_variable_length), set at
    open by refresh_total_sectors [block/null.c]."""
    return DriverSpec(format_name=name, protocol_name=name, protocol=True, open=_null_open,
                      parse_filename=_null_parse_filename(name),
                      refresh_filename=_null_refresh_filename, getlength=sim_getlength)


# --- vvfat --------------------------------------------------------------------------------


def _vvfat_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """vvfat_open: a directory presented as a FAT disk."""
    taken = consume_prefix(options, "dir", "fat-type", "floppy", "label", "rw", "filename")
    directory = taken.get("dir") or taken.get("filename")
    if directory is None or not os.path.isdir(str(directory)):
        raise OpenErrno(errno_mod.EIO)
    size = 1440 * 1024 if taken.get("floppy") else 504 * 16 * 63 * 512
    bs.state = SimState(size=size, extra=taken)


FILE_POSIX = (_file_driver("file"), _file_driver("host_device"),
              _file_driver("host_cdrom", is_inserted=_cdrom_inserted))
NULL = (_null_driver("null-co"), _null_driver("null-aio"))
VVFAT = DriverSpec(format_name="vvfat", protocol_name="fat", protocol=True, open=_vvfat_open,
                   getlength=sim_getlength, has_variable_length=True)
