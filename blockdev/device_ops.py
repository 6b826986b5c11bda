"""What the block layer needs from the device a BlockBackend is attached to.

A Protocol module at the bottom of the pure `blockdev` layer. The block layer never
imports `devices`: `BlockDevOps` is the device as the block layer sees it [include/sysemu/
  block-backend.h BlockDevOps; block/block-backend.c blk_get_attached_dev_id,
  blk_dev_change_media_cb, blk_dev_eject_request, blk_dev_is_tray_open,
  blk_dev_is_medium_locked]: its qdev id and canonical QOM path (query-block's
  `qdev`, the `id` of DEVICE_TRAY_MOVED), whether its media are removable, whether
  it has a tray and a lock, the tray's state, and the callbacks the block layer
  invokes when a medium changes or the monitor asks for an eject. Device models
  (`devices.blockdevs.BlockDevice`) satisfy it structurally; block tests use
  `RecordingDevice`. The other direction, the BlockBackend calls a device model
  makes, is `blockdev.device_backends`.
"""

from __future__ import annotations

from typing import Protocol

import attrs


class BlockDevOps(Protocol):
    """The device model attached to a BlockBackend."""

    @property
    def id(self) -> str | None:
        """The qdev id (`-device ...,id=`), if any."""
        ...

    @property
    def qom_path(self) -> str:
        """The device's canonical QOM path."""
        ...

    def qdev_id(self) -> str:
        """blk_get_attached_dev_id: the id, else the canonical QOM path of the device
        the BlockBackend is attached to."""
        ...

    @property
    def removable(self) -> bool:
        """The device has a change_media_cb."""
        ...

    @property
    def has_tray(self) -> bool:
        """The device has an is_tray_open callback."""
        ...

    @property
    def has_lock(self) -> bool:
        """The device has an is_medium_locked callback."""
        ...

    @property
    def perms_follow_medium(self) -> bool:
        """The change_media_cb drops the BlockBackend's permissions when the medium
        goes and applies the device's (write unless the new medium is read-only)
        when one comes [hw/block/fdc.c fd_change_cb]."""
        ...

    # The state behind is_tray_open / is_medium_locked, and the eject request the
    # guest has not answered yet; the guest's side (blockdev.media) moves them.
    tray_open: bool
    locked: bool
    eject_request: bool

    def change_media_cb(self, load: bool) -> None:
        """A medium was inserted (`load`) or removed: a tray closes or opens."""
        ...

    def eject_request_cb(self, force: bool) -> None:
        """The monitor asks the guest to eject; `force` drops the guest's lock."""
        ...

    def reset(self) -> None:
        """qemu_system_reset reaching the device (its qdev reset handler)."""
        ...


@attrs.define(kw_only=True, eq=False)
class RecordingDevice:
    """A stand-in device for block tests: behaves as a CD-ROM drive (or whatever
    the flags say) and records the callbacks the block layer made."""

    id: str | None = None
    qom_path: str = "/machine/peripheral-anon/device[0]"
    removable: bool = True
    has_tray: bool = True
    has_lock: bool = True
    tray_open: bool = False
    locked: bool = False
    eject_request: bool = False
    perms_follow_medium: bool = False
    calls: list[tuple[str, bool]] = attrs.Factory(list)

    def qdev_id(self) -> str:
        return self.id if self.id else self.qom_path

    def change_media_cb(self, load: bool) -> None:
        self.calls.append(("change_media_cb", load))
        if self.has_tray:
            self.tray_open = not load
            self.eject_request = False

    def eject_request_cb(self, force: bool) -> None:
        self.calls.append(("eject_request_cb", force))
        self.eject_request = True
        if force:
            self.locked = False

    def reset(self) -> None:
        self.calls.append(("reset", True))
        self.tray_open = self.locked = self.eject_request = False
