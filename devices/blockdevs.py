"""The block device models: what each declares through its BlockDevOps and realize.

Pure model of the `devices` layer [hw/ide/core.c, hw/ide/qdev.c, hw/scsi/
scsi-disk.c, hw/block/fdc.c, hw/sd/sd.c, hw/block/virtio-blk.c, hw/block/
pflash_cfi01.c]. `DEVICE_KINDS` is the table of block.md §6: whether a model's
media are removable, whether it has a tray the guest can lock, whether it enables
I/O status reporting, whether its BlockBackend may be resized by others, and the
realize checks it makes. A `BlockDevice` is one attached device; it satisfies the
block layer's `blockdev.device_ops.BlockDevOps` (structurally: nothing here imports
the block layer). `devices.qdev` creates them.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class DeviceKind:
    """What a device model declares through its BlockDevOps and realize function."""

    driver: str
    removable: bool  # has change_media_cb
    tray: bool  # has is_tray_open
    lock: bool  # has is_medium_locked
    iostatus: bool  # calls blk_iostatus_enable
    resizable: bool  # shares BLK_PERM_RESIZE (blkconf_apply_backend_options)
    readonly: bool | None  # forced read-only (CD-ROMs); None: follows the backend
    needs_media: bool  # "Device needs media, but drive is empty"
    rejects_readonly: bool = False  # ide-hd: "Can't use a read-only drive"
    error_options: bool = True  # accepts rerror/werror (fdc refuses them)
    inner_path: str = ""
    perms_follow_medium: bool = False  # fd_change_cb re-applies the permissions  # virtio-blk: the attached device is <proxy>/virtio-backend


_CD = dict(removable=True, tray=True, lock=True, iostatus=True, resizable=False,
           readonly=True, needs_media=False)
_HD = dict(removable=False, tray=False, lock=False, iostatus=True, resizable=True,
           readonly=None, needs_media=True)

DEVICE_KINDS: dict[str, DeviceKind] = {
    "ide-cd": DeviceKind("ide-cd", **_CD),  # type: ignore[arg-type]
    "ide-hd": DeviceKind("ide-hd", rejects_readonly=True, **_HD),  # type: ignore[arg-type]
    "ide-drive": DeviceKind("ide-drive", rejects_readonly=True, **_HD),  # type: ignore[arg-type]
    "scsi-cd": DeviceKind("scsi-cd", **_CD),  # type: ignore[arg-type]
    "scsi-hd": DeviceKind("scsi-hd", **_HD),  # type: ignore[arg-type]
    "scsi-disk": DeviceKind("scsi-disk", **_HD),  # type: ignore[arg-type]
    "scsi-block": DeviceKind("scsi-block", **_HD),  # type: ignore[arg-type]
    "virtio-blk-pci": DeviceKind("virtio-blk-pci", inner_path="/virtio-backend",
                                 **_HD),  # type: ignore[arg-type]
    "virtio-blk-device": DeviceKind("virtio-blk-device", **_HD),  # type: ignore[arg-type]
    "usb-storage": DeviceKind("usb-storage", **_HD),  # type: ignore[arg-type]
    "floppy": DeviceKind("floppy", removable=True, tray=False, lock=False, iostatus=False,
                         resizable=False, readonly=None, needs_media=False,
                         error_options=False, perms_follow_medium=True),
    "sd-card": DeviceKind("sd-card", removable=True, tray=False, lock=False, iostatus=False,
                          resizable=False, readonly=None, needs_media=False),
    "pflash": DeviceKind("pflash", removable=False, tray=False, lock=False, iostatus=False,
                         resizable=False, readonly=None, needs_media=False),
}


def scsi_hd_removable() -> DeviceKind:
    """scsi-hd with removable=on: scsi_disk_removable_block_ops."""
    return attrs.evolve(DEVICE_KINDS["scsi-cd"], driver="scsi-hd", readonly=None,
                        resizable=True)


@attrs.define(kw_only=True, eq=False)
class BlockDevice:
    """One attached block device model."""

    kind: DeviceKind
    id: str | None
    qom_path: str
    tray_open: bool = False
    locked: bool = False
    eject_request: bool = False
    share_rw: bool = False
    rerror: str = "auto"
    werror: str = "auto"
    wce: str = "auto"  # on/off/auto (write-cache property)

    @property
    def removable(self) -> bool:
        return self.kind.removable

    @property
    def has_tray(self) -> bool:
        return self.kind.tray

    @property
    def has_lock(self) -> bool:
        return self.kind.lock

    @property
    def perms_follow_medium(self) -> bool:
        return self.kind.perms_follow_medium

    def qdev_id(self) -> str:
        """What blk_get_attached_dev_id returns: the id, else the canonical QOM path
        of the device the BlockBackend is attached to (for virtio-blk the inner
        virtio device)."""
        if self.kind.inner_path:
            base = f"/machine/peripheral/{self.id}" if self.id else self.qom_path
            return base + self.kind.inner_path
        if self.id:
            return self.id
        return self.qom_path

    def change_media_cb(self, load: bool) -> None:
        """ide_cd_change_cb / scsi_cd_change_media_cb: a drive with a tray closes it
        on a new medium and opens it when the medium goes; a pending eject request
        is answered."""
        if self.kind.tray:
            self.tray_open = not load
            self.eject_request = False

    def eject_request_cb(self, force: bool) -> None:
        """ide_cd_eject_request_cb / scsi_cd_eject_request_cb: the guest is told;
        `force` drops its lock."""
        self.eject_request = True
        if force:
            self.locked = False

    def reset(self) -> None:
        """ide_reset / scsi_disk_reset: a CD-ROM drive unlocks and closes its tray
        silently (no DEVICE_TRAY_MOVED)."""
        if self.kind.tray:
            self.locked = False
            self.tray_open = False
            self.eject_request = False
