"""What the block layer needs from the device a BlockBackend is attached to, and the
block-backend calls a device model makes.

Part of the pure `blockdev` layer. The block layer never imports `devices`:

* `BlockDevOps` is the device as the block layer sees it [include/sysemu/
  block-backend.h BlockDevOps; block/block-backend.c blk_get_attached_dev_id,
  blk_dev_change_media_cb, blk_dev_eject_request, blk_dev_is_tray_open,
  blk_dev_is_medium_locked]: its qdev id and canonical QOM path (query-block's
  `qdev`, the `id` of DEVICE_TRAY_MOVED), whether its media are removable, whether
  it has a tray and a lock, the tray's state, and the callbacks the block layer
  invokes when a medium changes or the monitor asks for an eject. Device models
  (`devices.blockdevs.BlockDevice`) satisfy it structurally; block tests use
  `RecordingDevice`.
* `DeviceBackends` is the other direction: the BlockBackend operations qdev's
  `drive` property, realize and unplug call [qdev-properties-system.c parse_drive,
  release_drive; block-backend.c blk_attach_dev, blk_detach_dev, blk_set_perm,
  blk_iostatus_enable; blockdev.c blockdev_mark_auto_del, blockdev_auto_del]. It
  satisfies the Protocol `devices.backends.BlockBackends` declares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

from blockdev.image.lock import Perm
from schema.errors import GenericError

if TYPE_CHECKING:
    from blockdev.drive import DriveInfo
    from blockdev.graph import Backend
    from blockdev.layer import BlockLayer


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


class DeviceBackends:
    """The BlockBackends of one BlockLayer, as device models use them."""

    def __init__(self, layer: BlockLayer) -> None:
        self.layer = layer

    def by_name(self, name: str) -> Backend | None:
        """blk_by_name."""
        return self.layer.blk_by_name(name)

    def new_on_node(self, node_name: str) -> Backend | None:
        """parse_drive for a node name: a new BlockBackend of the device's own on
        that node (bdrv_lookup_bs, blk_new, blk_insert_bs); None without such a node."""
        layer = self.layer
        bs = layer.find_node(node_name)
        if bs is None:
            return None
        blk = layer.blk_new(0, int(Perm.ALL))
        try:
            layer.blk_insert_bs(blk, bs)
        except GenericError:
            layer.blk_unref(blk)
            raise
        return blk

    def new_empty(self) -> Backend:
        """blk_new: a BlockBackend without a medium (a CD-ROM drive's own)."""
        return self.layer.blk_new(0, int(Perm.ALL))

    def unref(self, blk: Backend) -> None:
        """blk_unref."""
        self.layer.blk_unref(blk)

    def is_attached(self, blk: Backend) -> bool:
        """blk_get_attached_dev != NULL."""
        return blk.dev is not None

    def legacy_drive(self, blk: Backend) -> DriveInfo | None:
        """blk_legacy_dinfo: the -drive behind a BlockBackend."""
        return blk.legacy_dinfo

    def legacy_drives(self) -> list[tuple[str, DriveInfo]]:
        """Every -drive (drive_get's table): its BlockBackend's name and DriveInfo."""
        out = []
        for blk in self.layer.monitor_backends:
            if blk.legacy_dinfo is not None:
                assert blk.name is not None
                out.append((blk.name, blk.legacy_dinfo))
        return out

    def attach_dev(self, blk: Backend, dev: BlockDevOps, *, readonly: bool,
                   resizable: bool, share_rw: bool) -> None:
        """blk_attach_dev, then the device's permissions (blkconf_apply_backend_options:
        read, and write unless read-only; others may read, write unchanged data,
        change the graph, resize if the device allows it, write with share-rw).
        A refused permission leaves the BlockBackend unattached."""
        layer = self.layer
        if layer.host.runstate.state == "inmigrate":
            blk.disable_perm = True
        blk.dev = dev
        blk.refcnt += 1
        blk.iostatus_reset()
        perm = Perm.CONSISTENT_READ | (Perm.NONE if readonly else Perm.WRITE)
        shared = Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD
        if resizable:
            shared |= Perm.RESIZE
        if share_rw:
            shared |= Perm.WRITE
        try:
            layer.blk_set_perm(blk, int(perm), int(shared))
        except GenericError:
            blk.dev = None
            blk.refcnt -= 1
            raise
        layer.devices.append(dev)

    def iostatus_enable(self, blk: Backend) -> None:
        """blk_iostatus_enable."""
        blk.iostatus_enabled = True
        blk.iostatus = "ok"

    def detach_dev(self, dev: BlockDevOps) -> None:
        """Unplugging: release_drive (blockdev_auto_del, blk_detach_dev)."""
        layer = self.layer
        blk = layer.blk_by_dev(dev)
        if dev in layer.devices:
            layer.devices.remove(dev)
        if blk is None:
            return
        d = blk.legacy_dinfo
        if d is not None and d.auto_del:
            layer.monitor_remove_blk(blk)
            layer.blk_unref(blk)
        blk.dev = None
        blk.iostatus_enabled = False
        try:
            layer.blk_set_perm(blk, 0, int(Perm.ALL))
        except GenericError:
            pass
        layer.blk_unref(blk)

    def mark_auto_del(self, dev: BlockDevOps) -> None:
        """blockdev_mark_auto_del: a device_del'ed device takes its -drive with it."""
        blk = self.layer.blk_by_dev(dev)
        if blk is not None and blk.legacy_dinfo is not None:
            blk.legacy_dinfo.auto_del = True
