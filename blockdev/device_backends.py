"""The BlockBackend calls a device model makes: the other direction of `device_ops`.

Part of the pure `blockdev` layer, above `layer` [qdev-properties-system.c
parse_drive, release_drive; block-backend.c blk_attach_dev, blk_detach_dev,
blk_set_perm, blk_iostatus_enable; blockdev.c blockdev_mark_auto_del,
blockdev_auto_del]. `DeviceBackends` satisfies the Protocol
`devices.backends.BlockBackends` declares, structurally: the block layer never
imports `devices`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blockdev.image.lock import Perm
from schema.errors import GenericError

if TYPE_CHECKING:
    from blockdev.device_ops import BlockDevOps
    from blockdev.driveinfo import DriveInfo
    from blockdev.graph import Backend
    from blockdev.layer import BlockLayer


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
        return layer.blk_new_with_bs(bs, 0, int(Perm.ALL))

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
        blk.dev_shared = int(shared)
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
