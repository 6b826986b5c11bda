"""The block drivers by name, and how a file name picks its protocol driver.

Pure part of the `blockdev` layer (`blockdev.drivers`) [block.c bdrv_find_format,
bdrv_find_protocol]: the table `bdrv_open` and image creation look drivers up in.
"""

from __future__ import annotations

from collections.abc import Callable

from blockdev.drivers import filters, formats, network, protocol
from blockdev.graph import DriverSpec
from blockdev.image.formats.base import path_has_protocol
from schema.errors import GenericError

DRIVERS: dict[str, DriverSpec] = {
    spec.format_name: spec
    for spec in (*protocol.FILE_POSIX, *protocol.NULL, *formats.SPECS, *network.SPECS,
                 protocol.VVFAT, *filters.SPECS)
}


def find_format(name: str) -> DriverSpec | None:
    """bdrv_find_format."""
    return DRIVERS.get(name)


def find_protocol(filename: str, allow_prefix: bool, probe_device: Callable[[str], str | None]
                  ) -> DriverSpec:
    """bdrv_find_protocol: host devices first, then a `proto:` prefix, else `file`."""
    dev = probe_device(filename)
    if dev is not None:
        return DRIVERS[dev]
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
