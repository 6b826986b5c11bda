"""The block layer and the device it is attached to, through `BlockDevOps` only.

A `RecordingDevice` (no device model from `devices/`) stands in for the device, so
these tests pin what the block layer itself does with a device [block/
block-backend.c blk_dev_change_media_cb, blk_dev_eject_request,
blk_get_attached_dev_id; blockdev.c do_open_tray, qmp_blockdev_close_tray;
block/qapi.c bdrv_query_info] and which callbacks it makes, in which order.
"""

from __future__ import annotations

from blockdev.device_backends import DeviceBackends
from blockdev.device_ops import RecordingDevice
from tests.test_block_support import Block


def attached(b: Block, dev: RecordingDevice, drive: str = "cd0") -> RecordingDevice:
    """blk_attach_dev of a stand-in device to the -drive `drive`."""
    backends = DeviceBackends(b.layer)
    blk = backends.by_name(drive)
    assert blk is not None
    backends.attach_dev(blk, dev, readonly=True, resizable=False, share_rw=False)
    return dev


def cd_with(dev: RecordingDevice) -> Block:
    b = Block()
    b.drive("driver=null-co,if=none,id=cd0,media=cdrom")
    attached(b, dev)
    return b


def test_query_block_shows_the_device_through_its_ops() -> None:
    """bdrv_query_info: `qdev` is blk_get_attached_dev_id (the device's id), and
    removable/locked/tray_open come from the device's callbacks."""
    b = cd_with(RecordingDevice(id="cd", locked=True))
    info = b.block("cd0")
    assert {k: info[k] for k in ("qdev", "removable", "locked", "tray_open")} == {
        "qdev": "cd", "removable": True, "locked": True, "tray_open": False}


def test_anonymous_device_is_named_by_its_qom_path() -> None:
    """blk_get_attached_dev_id: without an id, the canonical QOM path, which is
    also what `id` arguments may name (find_device_state with a leading '/')."""
    dev = RecordingDevice(qom_path="/machine/unattached/device[3]")
    b = cd_with(dev)
    assert b.block("cd0")["qdev"] == "/machine/unattached/device[3]"
    b.qmp("blockdev-open-tray", id="/machine/unattached/device[3]")
    assert dev.tray_open is True


def test_open_and_close_tray_call_change_media_cb() -> None:
    """do_open_tray / qmp_blockdev_close_tray: blk_dev_change_media_cb(false/true);
    the block layer sends DEVICE_TRAY_MOVED when the device's tray moved."""
    dev = RecordingDevice(id="cd")
    b = cd_with(dev)
    b.qmp("blockdev-open-tray", device="cd0")
    b.qmp("blockdev-close-tray", device="cd0")
    assert dev.calls == [("change_media_cb", False), ("change_media_cb", True)]
    assert b.events() == [
        ("DEVICE_TRAY_MOVED", {"device": "cd0", "id": "cd", "tray-open": True}),
        ("DEVICE_TRAY_MOVED", {"device": "cd0", "id": "cd", "tray-open": False})]


def test_locked_tray_gets_an_eject_request() -> None:
    """do_open_tray on a locked tray without force: blk_dev_eject_request(false),
    no media change, and eject answers that the device is locked."""
    dev = RecordingDevice(id="cd", locked=True)
    b = cd_with(dev)
    assert b.error("eject", device="cd0") == (
        "GenericError", "Device 'cd0' is locked and force was not specified, wait for "
        "tray to open and try again")
    assert dev.calls == [("eject_request_cb", False)]
    assert dev.eject_request is True and b.events() == []


def test_forced_eject_asks_and_opens() -> None:
    """do_open_tray with force on a locked tray: the eject request (force drops the
    lock), then the tray opens."""
    dev = RecordingDevice(id="cd", locked=True)
    b = cd_with(dev)
    b.qmp("eject", device="cd0", force=True)
    assert dev.calls == [("eject_request_cb", True), ("change_media_cb", False)]
    assert (dev.locked, dev.tray_open) == (False, True)


def test_device_without_change_media_cb_is_not_removable() -> None:
    """do_open_tray: a device without change_media_cb: `Device '...' is not removable`."""
    dev = RecordingDevice(id="hd", removable=False, has_tray=False, has_lock=False)
    b = cd_with(dev)
    assert b.error("eject", device="cd0") == (
        "GenericError", "Device 'cd0' is not removable")
    assert dev.calls == []


def test_trayless_removable_device_is_told_of_media_changes() -> None:
    """qmp_x_blockdev_remove_medium: a removable device without a tray (a floppy)
    hears of the removal through change_media_cb; no tray, no event."""
    dev = RecordingDevice(id="fd", has_tray=False, has_lock=False)
    b = cd_with(dev)
    b.qmp("x-blockdev-remove-medium", device="cd0")
    assert dev.calls == [("change_media_cb", False)]
    assert b.events() == []


def test_reset_reaches_the_attached_devices() -> None:
    """qemu_system_reset: each attached device resets (until qdev resets its tree)."""
    dev = RecordingDevice(id="cd", locked=True, tray_open=True)
    b = cd_with(dev)
    b.layer.reset()
    assert dev.calls == [("reset", True)]
    assert (dev.locked, dev.tray_open) == (False, False)
