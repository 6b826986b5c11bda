"""qdev as far as it exists yet: creating, realizing and unplugging block devices.

Pure model of the `devices` layer [qdev-monitor.c qdev_device_add,
hw/core/qdev-properties-system.c parse_drive and release_drive, hw/ide/qdev.c
ide_dev_initfn, hw/block/virtio-blk.c, hw/scsi/scsi-disk.c, hw/block/fdc.c,
hw/block/block.c blkconf_apply_backend_options]. A `Qdev` belongs to one machine:
it reaches the block layer only through `devices.backends.BlockBackends`, and it
numbers the devices created without an id (`/machine/peripheral-anon/device[N]`; a
placeholder until the QOM tree exists). `attach_device` is `-device`/`device_add`
of a block device model of `devices.blockdevs.DEVICE_KINDS`: its properties, its
`drive`, and realize with QEMU's checks and texts; `detach_device` and
`mark_auto_del` are its unplug. Errors raise `GenericError` with QEMU's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from devices.backends import BlockBackends
from devices.blockdevs import DEVICE_KINDS, BlockDevice, scsi_hd_removable
from schema.errors import QERR_INVALID_PARAMETER, QERR_INVALID_PARAMETER_TYPE, GenericError

# The qapi enums of the block device properties: BlockdevOnError (rerror, werror)
# and OnOffAuto (write-cache).
ON_ERROR = ("report", "ignore", "enospc", "stop", "auto")
ON_OFF_AUTO = ("auto", "on", "off")


@attrs.define(kw_only=True, eq=False)
class Qdev:
    """The devices of one machine (today: its block devices)."""

    block: BlockBackends[Any]
    anon_devices: int = 0

    def next_anon_path(self) -> str:
        """/machine/peripheral-anon/device[N] for a device without id (the devices
        issue will number it as the QOM tree does)."""
        path = f"/machine/peripheral-anon/device[{self.anon_devices}]"
        self.anon_devices += 1
        return path


def prop_bool(name: str, value: str) -> bool:
    """A boolean qdev property set from a -device string: object_property_parse's
    string input visitor (qapi/string-input-visitor.c parse_type_bool), which takes
    on/yes/true and off/no/false in any case."""
    word = value.lower()
    if word in ("on", "yes", "true"):
        return True
    if word in ("off", "no", "false"):
        return False
    raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "boolean"))


def prop_enum(value: str, choices: tuple[str, ...]) -> str:
    """An enum qdev property set from a -device string (qdev-properties.c set_enum,
    qapi-visit-core.c input_type_enum): one of the enum's names, case-sensitive."""
    if value not in choices:
        raise GenericError(QERR_INVALID_PARAMETER % value)
    return value


def attach_device(qdev: Qdev, driver: str, props: Mapping[str, str], *,
                  qom_path: str | None = None) -> BlockDevice:
    """A block device's properties, its `drive=` (parse_drive) and realize."""
    kind = DEVICE_KINDS.get(driver)
    if kind is None:
        raise GenericError(f"'{driver}' is not a block device model known to the block "
                           "layer")
    if driver == "scsi-hd" and props.get("removable") is not None and \
            prop_bool("removable", props["removable"]):
        kind = scsi_hd_removable()
    ident = props.get("id")
    if qom_path is None:
        qom_path = f"/machine/peripheral/{ident}" if ident else qdev.next_anon_path()
    dev = BlockDevice(kind=kind, id=ident, qom_path=qom_path)
    if "rerror" in props:
        dev.rerror = prop_enum(props["rerror"], ON_ERROR)
    if "werror" in props:
        dev.werror = prop_enum(props["werror"], ON_ERROR)
    if "share-rw" in props:
        dev.share_rw = prop_bool("share-rw", props["share-rw"])
    if "write-cache" in props:
        dev.wce = prop_enum(props["write-cache"], ON_OFF_AUTO)
    block = qdev.block
    drive = props.get("drive")
    blk = None
    created = False
    if drive:
        blk = block.by_name(drive)
        if blk is None:
            blk = block.new_on_node(drive)
            created = blk is not None
        if blk is None:
            raise GenericError(f"Property '{driver}.drive' can't find value '{drive}'")
        if block.is_attached(blk):
            if created:
                block.unref(blk)
            d = block.legacy_drive(blk)
            if d is not None and d.type != "none":
                raise GenericError(f"Drive '{drive}' is already in use because it has been "
                                   "automatically connected to another device (did you "
                                   "need 'if=none' in the drive options?)")
            raise GenericError(f"Drive '{drive}' is already in use by another device")
    try:
        return _realize(qdev, dev, blk, created)
    except GenericError:
        if created and blk is not None:
            block.unref(blk)
        raise


def _realize(qdev: Qdev, dev: BlockDevice, blk: Any, created: bool) -> BlockDevice:
    block = qdev.block
    kind = dev.kind
    if blk is None:
        if kind.driver in ("ide-cd", "scsi-cd", "floppy") or kind.tray or \
                kind.driver == "sd-card":
            blk = block.new_empty()
            created = True
        elif kind.driver in ("ide-hd", "ide-drive"):
            raise GenericError("No drive specified")
        else:
            raise GenericError("drive property not set")
    if kind.needs_media and not blk.is_inserted():
        raise GenericError("Device needs media, but drive is empty")
    if kind.rejects_readonly and blk.is_read_only():
        raise GenericError("Can't use a read-only drive")
    if not kind.error_options:
        if blk.on_write_error != "enospc" and block.legacy_drive(blk) is not None:
            raise GenericError("fdc doesn't support drive option werror")
        if blk.on_read_error != "report":
            raise GenericError("fdc doesn't support drive option rerror")
    readonly = kind.readonly if kind.readonly is not None else blk.is_read_only()
    block.attach_dev(blk, dev, readonly=readonly, resizable=kind.resizable,
                     share_rw=dev.share_rw)
    if dev.wce == "on":
        blk.enable_write_cache = True
    elif dev.wce == "off":
        blk.enable_write_cache = False
    if dev.rerror != "auto":
        blk.on_read_error = dev.rerror
    if dev.werror != "auto":
        blk.on_write_error = dev.werror
    if created:
        block.unref(blk)  # the device keeps the only reference
    if kind.iostatus:
        block.iostatus_enable(blk)
    return dev


def detach_device(qdev: Qdev, dev: BlockDevice) -> None:
    """Unplugging: release_drive (blockdev_auto_del, blk_detach_dev)."""
    qdev.block.detach_dev(dev)


def mark_auto_del(qdev: Qdev, dev: BlockDevice) -> None:
    """blockdev_mark_auto_del: a device_del'ed device takes its -drive with it."""
    qdev.block.mark_auto_del(dev)
