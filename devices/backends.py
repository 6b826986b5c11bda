"""What device models need from the backends they sit on: today the block layer's
BlockBackends.

Part of the pure `devices` layer. Devices never import `blockdev`; they call it
through `BlockBackends`, which `blockdev.device_ops.DeviceBackends` satisfies
structurally [the block-backend.c and blockdev.c calls of qdev-properties-system.c
parse_drive and release_drive, hw/block/block.c blkconf_apply_backend_options, and
the boards' drive_get]. The BlockBackend itself is opaque here, apart from what
realize reads and sets (`BackendLike`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from devices.blockdevs import BlockDevice


class DriveLike(Protocol):
    """A -drive's DriveInfo as boards read it: interface, bus, unit, media."""

    @property
    def type(self) -> str: ...

    @property
    def bus(self) -> int: ...

    @property
    def unit(self) -> int: ...

    @property
    def media_cd(self) -> bool: ...


class BackendLike(Protocol):
    """A BlockBackend as realize reads and configures it."""

    enable_write_cache: bool  # blk_set_enable_write_cache
    on_read_error: str  # blk_get/set_on_error
    on_write_error: str

    def is_inserted(self) -> bool: ...

    def is_read_only(self) -> bool: ...


B = TypeVar("B", bound=BackendLike)


class BlockBackends(Protocol[B]):
    """The block layer's calls a block device model makes."""

    def by_name(self, name: str) -> B | None:
        """blk_by_name."""
        ...

    def new_on_node(self, node_name: str) -> B | None:
        """A new BlockBackend of the device's own on the node of that name; None
        when there is none. Errors of blk_insert_bs raise."""
        ...

    def new_empty(self) -> B:
        """blk_new without a medium."""
        ...

    def unref(self, blk: B) -> None: ...

    def is_attached(self, blk: B) -> bool: ...

    def legacy_drive(self, blk: B) -> DriveLike | None:
        """blk_legacy_dinfo."""
        ...

    def legacy_drives(self) -> Sequence[tuple[str, DriveLike]]:
        """Every -drive, by BlockBackend name."""
        ...

    def attach_dev(self, blk: B, dev: BlockDevice, *, readonly: bool, resizable: bool,
                   share_rw: bool) -> None:
        """blk_attach_dev with the device's permissions; raises (unattached) when
        the permissions are refused."""
        ...

    def iostatus_enable(self, blk: B) -> None: ...

    def detach_dev(self, dev: BlockDevice) -> None:
        """release_drive: blockdev_auto_del, blk_detach_dev."""
        ...

    def mark_auto_del(self, dev: BlockDevice) -> None:
        """blockdev_mark_auto_del."""
        ...
