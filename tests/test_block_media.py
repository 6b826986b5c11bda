"""Removable media: the tray state machine, its events, the guest's lock, and every
error of eject, blockdev-open-tray, blockdev-close-tray, x-blockdev-remove-medium,
x-blockdev-insert-medium, blockdev-change-medium and change.

Pins block.md §6 and the QEMU functions each docstring names (blockdev.c
do_open_tray and the qmp_* tray commands, hw/ide/core.c and hw/ide/atapi.c for
the CD-ROM's own behaviour).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blockdev import media
from blockdev.graph import Reason
from tests.test_block_support import Block


def moved(device: str, qdev: str, tray_open: bool) -> tuple[str, dict[str, object]]:
    return ("DEVICE_TRAY_MOVED", {"device": device, "id": qdev, "tray-open": tray_open})


@pytest.fixture
def b() -> Block:
    return Block()


@pytest.fixture
def cd(b: Block) -> Block:
    """An ide-cd `ide0` on the -drive `cd0` with a medium."""
    b.drive("driver=null-co,if=none,id=cd0,media=cdrom")
    b.device("ide-cd", drive="cd0", id="ide0")
    return b


def test_cdrom_in_query_block(cd: Block) -> None:
    """§2.1/§6: ide-cd: removable, tray_open present, qdev is the device id,
    io-status enabled (default werror=enospc), medium read-only."""
    info = cd.block("cd0")
    assert {k: info[k] for k in ("qdev", "removable", "locked", "tray_open",
                                 "io-status")} == {
        "qdev": "ide0", "removable": True, "locked": False, "tray_open": False,
        "io-status": "ok"}
    assert info["inserted"]["ro"] is True


# --- eject ---------------------------------------------------------------------------------


def test_eject_opens_tray_and_removes_medium(cd: Block) -> None:
    """qmp_eject: tray opens (DEVICE_TRAY_MOVED true), medium gone."""
    cd.qmp("eject", device="cd0")
    assert cd.events() == [moved("cd0", "ide0", True)]
    info = cd.block("cd0")
    assert "inserted" not in info and info["tray_open"] is True


def test_eject_open_empty_drive_is_silent(cd: Block) -> None:
    """§6 (verified): ejecting an already open, empty drive succeeds, no event."""
    cd.qmp("eject", device="cd0")
    cd.events()
    cd.qmp("eject", device="cd0")
    assert cd.events() == []


def test_eject_by_qdev_id(cd: Block) -> None:
    """qmp_get_blk with `id`: the device's qdev id finds its BlockBackend."""
    cd.qmp("eject", id="ide0")
    assert cd.events() == [moved("cd0", "ide0", True)]


def test_eject_needs_exactly_one_of_device_and_id(cd: Block) -> None:
    """qmp_get_blk: `Need exactly one of 'device' and 'id'`."""
    assert cd.error("eject", device="cd0", id="ide0") == \
        ("GenericError", "Need exactly one of 'device' and 'id'")
    assert cd.error("eject") == ("GenericError", "Need exactly one of 'device' and 'id'")


def test_eject_unknown_device(cd: Block) -> None:
    """qmp_get_blk: class DeviceNotFound, `Device '%s' not found`."""
    assert cd.error("eject", device="nope") == ("DeviceNotFound", "Device 'nope' not found")
    assert cd.error("eject", id="nope") == ("DeviceNotFound", "Device 'nope' not found")


def test_eject_fixed_disk(b: Block) -> None:
    """do_open_tray: `Device '%s' is not removable` (ide-hd)."""
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("ide-hd", drive="hd0")
    assert b.error("eject", device="hd0") == ("GenericError", "Device 'hd0' is not removable")


def test_eject_locked_tray(cd: Block) -> None:
    """do_open_tray on a locked tray without force: the guest is asked to eject and
    eject fails with the 'is locked' error; the cooperative guest then opens the
    tray itself (guest-initiated DEVICE_TRAY_MOVED)."""
    dev = cd.layer.devices[0]
    media.guest_lock(cd.layer, dev, True)
    assert cd.error("eject", device="cd0") == (
        "GenericError", "Device 'cd0' is locked and force was not specified, wait for "
                        "tray to open and try again")
    assert cd.events() == []
    assert dev.eject_request is True
    cd.host.clock.t = 1.0
    cd.layer.run_due(1.0)
    assert cd.events() == [moved("cd0", "ide0", True)]
    assert cd.block("cd0")["locked"] is False
    assert "inserted" in cd.block("cd0")


def test_eject_locked_names_qdev_id(cd: Block) -> None:
    """do_open_tray names the device by its qdev id when one was given."""
    media.guest_lock(cd.layer, cd.layer.devices[0], True)
    assert cd.error("eject", id="ide0")[1].startswith("Device 'ide0' is locked")


def test_eject_force_on_locked_tray(cd: Block) -> None:
    """do_open_tray with force: the lock is dropped, the tray opens, medium removed."""
    media.guest_lock(cd.layer, cd.layer.devices[0], True)
    cd.qmp("eject", device="cd0", force=True)
    assert cd.events() == [moved("cd0", "ide0", True)]
    assert cd.block("cd0")["locked"] is False


def test_eject_floppy_has_no_tray_events(b: Block) -> None:
    """§6: a floppy is removable without a tray: eject removes the medium, no event."""
    b.drive("driver=null-co,if=none,id=fd0")
    b.device("floppy", drive="fd0")
    info = b.block("fd0")
    assert "tray_open" not in info and "io-status" not in info
    b.qmp("eject", device="fd0")
    assert b.events() == []
    assert "inserted" not in b.block("fd0")


def test_eject_blocked_medium(cd: Block) -> None:
    """x-blockdev-remove-medium's eject blocker: `Node '%s' is busy: %s`."""
    cd.layer.blk_by_name("cd0").bs.op_block("eject", Reason("in use"))  # type: ignore[union-attr]
    assert cd.error("eject", device="cd0") == ("GenericError", "Node 'cd0' is busy: in use")


# --- open / close tray ---------------------------------------------------------------------


def test_open_and_close_tray(cd: Block) -> None:
    """qmp_blockdev_open_tray / qmp_blockdev_close_tray: one event per move, none for
    a tray already in place; the medium stays."""
    cd.qmp("blockdev-open-tray", device="cd0")
    cd.qmp("blockdev-open-tray", device="cd0")
    assert cd.events() == [moved("cd0", "ide0", True)]
    assert "inserted" in cd.block("cd0")
    cd.qmp("blockdev-close-tray", device="cd0")
    cd.qmp("blockdev-close-tray", device="cd0")
    assert cd.events() == [moved("cd0", "ide0", False)]


def test_open_locked_tray_succeeds_and_waits_for_the_guest(cd: Block) -> None:
    """qmp_blockdev_open_tray: -EINPROGRESS is success; the guest opens the tray once
    the VM runs (not while it is stopped)."""
    media.guest_lock(cd.layer, cd.layer.devices[0], True)
    cd.qmp("blockdev-open-tray", device="cd0")
    assert cd.events() == []
    cd.host.runstate.state = "paused"
    assert cd.layer.next_deadline() == float("inf")
    cd.layer.run_due(5.0)
    assert cd.events() == []
    cd.host.runstate.state = "running"
    assert cd.layer.next_deadline() == pytest.approx(0.1)
    cd.layer.run_due(5.0)
    assert cd.events() == [moved("cd0", "ide0", True)]


def test_open_tray_of_trayless_device_is_a_no_op(b: Block) -> None:
    """do_open_tray: -ENOSYS (no tray) is ignored by blockdev-open-tray."""
    b.drive("driver=null-co,if=none,id=fd0")
    b.device("floppy", drive="fd0")
    b.qmp("blockdev-open-tray", device="fd0")
    b.qmp("blockdev-close-tray", device="fd0")
    assert b.events() == []
    assert "inserted" in b.block("fd0")


def test_open_tray_not_removable(b: Block) -> None:
    """do_open_tray: `Device '%s' is not removable`."""
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("virtio-blk-pci", drive="hd0", id="vd0")
    assert b.error("blockdev-open-tray", id="vd0") == \
        ("GenericError", "Device 'vd0' is not removable")


def test_close_tray_not_removable(b: Block) -> None:
    """qmp_blockdev_close_tray: `Device '%s' is not removable`."""
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("scsi-hd", drive="hd0")
    assert b.error("blockdev-close-tray", device="hd0") == \
        ("GenericError", "Device 'hd0' is not removable")


def test_scsi_hd_removable_has_a_tray(b: Block) -> None:
    """scsi-hd,removable=on uses scsi_disk_removable_block_ops."""
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("scsi-hd", drive="hd0", id="s0", removable="on")
    b.qmp("blockdev-open-tray", device="hd0")
    assert b.events() == [moved("hd0", "s0", True)]


# --- remove / insert medium ----------------------------------------------------------------


def test_remove_medium_needs_open_tray(cd: Block) -> None:
    """qmp_x_blockdev_remove_medium: `Tray of device '%s' is not open`."""
    assert cd.error("x-blockdev-remove-medium", device="cd0") == \
        ("GenericError", "Tray of device 'cd0' is not open")


def test_remove_medium_not_removable(b: Block) -> None:
    """qmp_x_blockdev_remove_medium: a device without removable media."""
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("ide-hd", drive="hd0")
    assert b.error("x-blockdev-remove-medium", device="hd0") == \
        ("GenericError", "Device 'hd0' is not removable")


def test_remove_and_insert_medium(cd: Block) -> None:
    """The building blocks: open, remove, insert a blockdev-add node, close."""
    cd.add(driver="null-co", **{"node-name": "new", "read-only": True})
    cd.qmp("blockdev-open-tray", device="cd0")
    cd.qmp("x-blockdev-remove-medium", device="cd0")
    cd.qmp("x-blockdev-remove-medium", device="cd0")
    cd.qmp("x-blockdev-insert-medium", device="cd0", **{"node-name": "new"})
    cd.qmp("blockdev-close-tray", device="cd0")
    assert cd.events() == [moved("cd0", "ide0", True), moved("cd0", "ide0", False)]
    assert cd.block("cd0")["inserted"]["node-name"] == "new"


def test_insert_medium_errors(cd: Block) -> None:
    """qmp_x_blockdev_insert_medium / qmp_blockdev_insert_anon_medium, in order."""
    cd.add(driver="null-co", **{"node-name": "new", "read-only": True})
    assert cd.error("x-blockdev-insert-medium", device="cd0", **{"node-name": "x"}) == \
        ("GenericError", "Node 'x' not found")
    root = cd.block("cd0")["inserted"]["node-name"]
    assert cd.error("x-blockdev-insert-medium", device="cd0", **{"node-name": root}) == \
        ("GenericError", f"Node '{root}' is already in use")
    assert cd.error("x-blockdev-insert-medium", device="cd0", **{"node-name": "new"}) == \
        ("GenericError", "Tray of the device is not open")
    cd.qmp("blockdev-open-tray", device="cd0")
    assert cd.error("x-blockdev-insert-medium", device="cd0", **{"node-name": "new"}) == \
        ("GenericError", "There already is a medium in the device")


def test_insert_medium_not_removable(b: Block) -> None:
    """qmp_blockdev_insert_anon_medium: `Device is not removable`."""
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("ide-hd", drive="hd0")
    b.add(driver="null-co", **{"node-name": "new"})
    assert b.error("x-blockdev-insert-medium", device="hd0", **{"node-name": "new"}) == \
        ("GenericError", "Device is not removable")


def test_backend_without_device_swaps_media_at_will(b: Block) -> None:
    """x-blockdev-remove/insert-medium: a BlockBackend without a device has no tray."""
    b.drive("driver=null-co,if=none,id=d0")
    b.add(driver="null-co", **{"node-name": "new"})
    b.qmp("x-blockdev-remove-medium", device="d0")
    b.qmp("x-blockdev-insert-medium", device="d0", **{"node-name": "new"})
    assert b.block("d0")["inserted"]["node-name"] == "new"
    assert b.events() == []


def test_floppy_insert_loads_immediately(b: Block) -> None:
    """Tray-less devices get the medium at once (blk_dev_change_media_cb load)."""
    b.drive("driver=null-co,if=none,id=fd0")
    b.device("floppy", drive="fd0")
    b.add(driver="null-co", **{"node-name": "new"})
    b.qmp("x-blockdev-remove-medium", device="fd0")
    b.qmp("x-blockdev-insert-medium", device="fd0", **{"node-name": "new"})
    assert b.block("fd0")["inserted"]["node-name"] == "new"


# --- change-medium and change ----------------------------------------------------------------


def test_change_medium_events_on_closed_tray(cd: Block) -> None:
    """§6 (verified): on a closed, unlocked CD: tray open, tray close, then success."""
    cd.qmp("blockdev-change-medium", device="cd0", filename="null-co://",
           format="null-co")
    assert cd.events() == [moved("cd0", "ide0", True), moved("cd0", "ide0", False)]
    assert cd.block("cd0")["tray_open"] is False


def test_change_medium_on_open_tray_only_closes(cd: Block) -> None:
    """§6: with the tray already open only the closing event is sent."""
    cd.qmp("blockdev-open-tray", device="cd0")
    cd.events()
    cd.qmp("blockdev-change-medium", device="cd0", filename="null-co://",
           format="null-co")
    assert cd.events() == [moved("cd0", "ide0", False)]


def test_change_medium_open_error_leaves_drive_untouched(cd: Block, tmp_path: object) -> None:
    """§6 step 2: the new image is opened first; its error changes nothing."""
    before = cd.block("cd0")
    assert cd.error("blockdev-change-medium", device="cd0",
                    filename="/nonexistent/image.iso") == (
        "GenericError", "Could not open '/nonexistent/image.iso': No such file or directory")
    assert cd.block("cd0") == before
    assert cd.events() == []


def test_change_medium_locked(cd: Block) -> None:
    """§6 step 3: a locked tray: the 'is locked' error, the guest was asked."""
    media.guest_lock(cd.layer, cd.layer.devices[0], True)
    assert cd.error("blockdev-change-medium", device="cd0", filename="null-co://",
                    format="null-co")[1].startswith("Device 'cd0' is locked")
    assert cd.layer.devices[0].eject_request is True


def test_change_medium_read_only_mode(cd: Block) -> None:
    """qmp_blockdev_change_medium: read-only-mode read-write on a CD backend."""
    cd.qmp("blockdev-change-medium", device="cd0", filename="null-co://",
           format="null-co", **{"read-only-mode": "read-write"})
    assert cd.block("cd0")["inserted"]["ro"] is False


def test_change_command_is_change_medium(cd: Block) -> None:
    """qmp.c qmp_change: any device but `vnc` means blockdev-change-medium."""
    cd.qmp("change", device="cd0", target="null-co://", arg="null-co")
    assert cd.events() == [moved("cd0", "ide0", True), moved("cd0", "ide0", False)]


def test_change_vnc_password_missing(cd: Block) -> None:
    """qmp_change_vnc: `Parameter 'password' is missing`."""
    assert cd.error("change", device="vnc", target="password") == \
        ("GenericError", "Parameter 'password' is missing")


def test_change_unknown_device(cd: Block) -> None:
    """qmp_get_blk via change: DeviceNotFound."""
    assert cd.error("change", device="nope", target="null-co://") == \
        ("DeviceNotFound", "Device 'nope' not found")


# --- the guest ------------------------------------------------------------------------------


def test_guest_cannot_open_a_locked_tray(cd: Block) -> None:
    """hw/ide/atapi.c cmd_start_stop_unit: a locked, closed tray stays closed."""
    dev = cd.layer.devices[0]
    media.guest_lock(cd.layer, dev, True)
    assert media.guest_start_stop_unit(cd.layer, dev, start=False) is False
    assert cd.events() == []
    media.guest_lock(cd.layer, dev, False)
    assert media.guest_start_stop_unit(cd.layer, dev, start=False) is True
    assert media.guest_start_stop_unit(cd.layer, dev, start=False) is True
    assert cd.events() == [moved("cd0", "ide0", True)]


def test_guest_lock_shows_in_query_block(cd: Block) -> None:
    """BlockInfo.locked is the device's medium lock."""
    media.guest_lock(cd.layer, cd.layer.devices[0], True)
    assert cd.block("cd0")["locked"] is True


def test_system_reset_unlocks_and_closes_silently(cd: Block) -> None:
    """ide_reset clears tray_locked and tray_open without an event."""
    dev = cd.layer.devices[0]
    cd.qmp("blockdev-open-tray", device="cd0")
    media.guest_lock(cd.layer, dev, True)
    cd.events()
    cd.layer.reset()
    assert (dev.tray_open, dev.locked) == (False, False)
    assert cd.events() == []


def test_empty_cdrom_device_has_anonymous_backend(b: Block) -> None:
    """ide_dev_initfn: an ide-cd without drive gets an anonymous empty BlockBackend
    (iotests 186: listed with its QOM path)."""
    b.device("ide-cd")
    assert b.qmp("query-block") == [{
        "device": "", "qdev": "/machine/peripheral-anon/device[0]", "type": "unknown",
        "removable": True, "locked": False, "tray_open": False}]


def test_eject_request_asks_the_host_for_a_new_deadline(cd: Block) -> None:
    """A guest reaction scheduled by an eject request is due before anything the host
    was waiting for: the block layer kicks its host, which then asks `next_deadline()`
    again (BlockHost.kick)."""
    media.guest_lock(cd.layer, cd.layer.devices[0], True)
    assert cd.host.kicks == 0
    cd.qmp("blockdev-open-tray", device="cd0")
    assert cd.host.kicks == 1
    assert cd.layer.next_deadline() == pytest.approx(0.1)


def test_change_medium_read_only_on_a_read_write_floppy(b: Block, tmp_path: Path) -> None:
    """qmp_blockdev_change_medium [blockdev.c] with read-only-mode read-only clears
    BDRV_O_RDWR; the floppy's change callback [hw/block/fdc.c fd_change_cb] drops the
    BlockBackend's permissions when the old medium goes (blk_set_perm(blk, 0,
    BLK_PERM_ALL)) and applies blkconf_apply_backend_options with the new medium's
    read-only flag when it comes, so a read-write drive takes a read-only medium
    (qemu-iotests 118 TestChangeReadOnly.test_make_rw_ro)."""
    old, new = tmp_path / "old.img", tmp_path / "new.img"
    old.write_bytes(bytes(1474560))
    new.write_bytes(bytes(1474560))
    b.drive(f"file={old},format=raw,if=none,id=fd0")
    b.device("floppy", drive="fd0")
    assert b.block("fd0")["inserted"]["ro"] is False
    b.qmp("blockdev-change-medium", device="fd0", filename=str(new), format="raw",
          **{"read-only-mode": "read-only"})
    inserted = b.block("fd0")["inserted"]
    assert (inserted["ro"], inserted["image"]["filename"]) == (True, str(new))
    # And back: retain keeps read-only, read-write makes it writable again.
    b.qmp("blockdev-change-medium", device="fd0", filename=str(old), format="raw",
          **{"read-only-mode": "read-write"})
    assert b.block("fd0")["inserted"]["ro"] is False
