"""Removable media: trays, locks, inserting and removing media, and the guest's part.

Pure model of the `blockdev` layer [blockdev.c do_open_tray, qmp_eject,
qmp_blockdev_open_tray, qmp_blockdev_close_tray, qmp_x_blockdev_remove_medium,
qmp_blockdev_insert_anon_medium, qmp_x_blockdev_insert_medium,
qmp_blockdev_change_medium; hw/ide/core.c and hw/ide/atapi.c for the CD-ROM's
tray; block.md §6].

The monitor's tray request is a table (`OPEN_TRAY`): what happens to a closed tray
depends on the guest's lock and on `force`. A locked tray is not opened by the
monitor; the guest is sent an eject request instead (a media event it reads with
GET EVENT STATUS NOTIFICATION). What the guest does then is a guest behaviour the
block layer declares (`blockdev.host.TRAY_BEHAVIOURS`, read through its host): an OS
(Linux's cdrom driver and udev) unlocks and opens the tray `cdrom-eject-delay`
seconds later, while the VM runs, which sends DEVICE_TRAY_MOVED as a
guest-initiated move does [ide_cd_eject_request_cb, cmd_start_stop_unit]; SeaBIOS
never locks a tray and reads no media events, so under the firmware profile a tray
some guest locked stays shut. The guest can also lock, unlock, open and close the
tray on its own (`guest_*`), the hooks the control plane exposes.

It sits below `blockdev.layer`: its functions take a `MediaContext`, the part of the
block layer media changes use (BlockBackend lookups and media edits, `bdrv_open` for
a new medium, the tray scheduler and the host).
"""

from __future__ import annotations

import math
from typing import Protocol

import attrs

from blockdev.device_ops import BlockDevOps
from blockdev.graph import Backend, Node, OpenFlags
from blockdev.host import EJECT_DELAY, EJECT_REQUEST, BlockHost
from blockdev.options import Flat
from schema.errors import GenericError

# do_open_tray on a closed tray: (locked, force) -> (send eject request, open now,
# outcome). The outcome "in-progress" is -EINPROGRESS: blockdev-open-tray succeeds,
# eject and blockdev-change-medium fail with the "is locked" error.
OPEN_TRAY: dict[tuple[bool, bool], tuple[bool, bool, str]] = {
    (False, False): (False, True, "ok"),
    (False, True): (False, True, "ok"),
    (True, True): (True, True, "ok"),
    (True, False): (True, False, "in-progress"),
}


@attrs.define(kw_only=True)
class TrayScheduler:
    """Guest tray reactions that are due later (pure: `now` comes from the caller)."""

    pending: list[tuple[float, BlockDevOps]] = attrs.Factory(list)

    def next_deadline(self, running: bool) -> float:
        if not running or not self.pending:
            return math.inf
        return min(t for t, _ in self.pending)


class MediaContext(Protocol):
    """What media changes use of the block layer (`BlockLayer` is one)."""

    @property
    def host(self) -> BlockHost: ...

    @property
    def trays(self) -> TrayScheduler: ...

    def get_blk(self, device: str | None, qdev_id: str | None) -> Backend: ...

    def blk_by_dev(self, dev: BlockDevOps) -> Backend | None: ...

    def find_node(self, name: str) -> Node | None: ...

    def open(self, filename: str | None, reference: str | None, options: Flat | None,
             flags: OpenFlags | None = None) -> Node: ...

    def unref(self, bs: Node) -> None: ...

    def blk_insert_bs(self, blk: Backend, bs: Node) -> None: ...

    def blk_remove_bs(self, blk: Backend) -> None: ...

    def blk_update_root_state(self, blk: Backend) -> None: ...

    def blk_dev_change_media_cb(self, blk: Backend, load: bool) -> None: ...

    def medium_removed(self, blk: Backend) -> None: ...


def _open_tray_outcome(layer: MediaContext, device: str | None, qdev_id: str | None,
                       force: bool) -> tuple[Backend, str]:
    """do_open_tray: returns the BlockBackend and "ok", "no-tray" (-ENOSYS) or
    "in-progress" (-EINPROGRESS); lookup and "not removable" errors raise."""
    blk = layer.get_blk(device, qdev_id)
    name = qdev_id if qdev_id is not None else device
    if not blk.has_removable_media():
        raise GenericError(f"Device '{name}' is not removable")
    if not blk.has_tray():
        return blk, "no-tray"
    if blk.is_tray_open():
        return blk, "ok"
    locked = blk.is_medium_locked()
    request, open_now, outcome = OPEN_TRAY[(locked, force)]
    if request:
        eject_request(layer, blk, force)
    if open_now:
        layer.blk_dev_change_media_cb(blk, False)
    return blk, outcome


def _locked_error(name: str | None) -> GenericError:
    return GenericError(f"Device '{name}' is locked and force was not specified, wait for "
                        "tray to open and try again")


def eject(layer: MediaContext, device: str | None, qdev_id: str | None, force: bool) -> None:
    """qmp_eject: open the tray, then remove the medium."""
    _blk, outcome = _open_tray_outcome(layer, device, qdev_id, force)
    if outcome == "in-progress":
        raise _locked_error(qdev_id if qdev_id is not None else device)
    remove_medium(layer, device, qdev_id)


def open_tray(layer: MediaContext, device: str | None, qdev_id: str | None,
              force: bool) -> None:
    """qmp_blockdev_open_tray: success also when the guest was only asked."""
    _open_tray_outcome(layer, device, qdev_id, force)


def close_tray(layer: MediaContext, device: str | None, qdev_id: str | None) -> None:
    """qmp_blockdev_close_tray."""
    blk = layer.get_blk(device, qdev_id)
    if not blk.has_removable_media():
        raise GenericError(f"Device '{device or qdev_id}' is not removable")
    if not blk.has_tray() or not blk.is_tray_open():
        return
    layer.blk_dev_change_media_cb(blk, True)


def remove_medium(layer: MediaContext, device: str | None, qdev_id: str | None) -> None:
    """qmp_x_blockdev_remove_medium."""
    blk = layer.get_blk(device, qdev_id)
    name = device or qdev_id
    has_dev = blk.dev is not None
    if has_dev and not blk.has_removable_media():
        raise GenericError(f"Device '{name}' is not removable")
    if has_dev and blk.has_tray() and not blk.is_tray_open():
        raise GenericError(f"Tray of device '{name}' is not open")
    bs = blk.bs
    if bs is None:
        return
    bs.check_op("eject")
    layer.blk_remove_bs(blk)
    if not blk.has_tray():
        layer.blk_dev_change_media_cb(blk, False)
    layer.medium_removed(blk)


def insert_anon_medium(layer: MediaContext, blk: Backend, bs_name: str) -> None:
    """qmp_blockdev_insert_anon_medium (the node must exist and be free)."""
    bs = layer.find_node(bs_name)
    assert bs is not None
    has_dev = blk.dev is not None
    if has_dev and not blk.has_removable_media():
        raise GenericError("Device is not removable")
    if has_dev and blk.has_tray() and not blk.is_tray_open():
        raise GenericError("Tray of the device is not open")
    if blk.bs is not None:
        raise GenericError("There already is a medium in the device")
    layer.blk_insert_bs(blk, bs)
    if not blk.has_tray():
        layer.blk_dev_change_media_cb(blk, True)


def insert_medium(layer: MediaContext, device: str | None, qdev_id: str | None,
                  node_name: str) -> None:
    """qmp_x_blockdev_insert_medium."""
    blk = layer.get_blk(device, qdev_id)
    bs = layer.find_node(node_name)
    if bs is None:
        raise GenericError(f"Node '{node_name}' not found")
    if bs.has_blk():
        raise GenericError(f"Node '{node_name}' is already in use")
    insert_anon_medium(layer, blk, node_name)


def change_medium(layer: MediaContext, device: str | None, qdev_id: str | None,
                  filename: str, fmt: str | None, read_only_mode: str | None) -> None:
    """qmp_blockdev_change_medium: open the new image first, then open the tray
    (no force), swap the media, close the tray."""
    blk = layer.get_blk(device, qdev_id)
    if blk.bs is not None:
        layer.blk_update_root_state(blk)
    rs = blk.root_state
    flags: OpenFlags = rs.open_flags.copy()
    flags.rdwr = not rs.read_only
    flags.temporary = flags.snapshot = flags.no_backing = flags.protocol = False
    mode = read_only_mode or "retain"
    if mode == "read-only":
        flags.rdwr = False
    elif mode == "read-write":
        flags.rdwr = True
    options: Flat = {"detect-zeroes": "on" if rs.detect_zeroes != "off" else "off"}
    if fmt is not None:
        options["driver"] = fmt
    medium = layer.open(filename, None, options, flags)
    try:
        _blk, outcome = _open_tray_outcome(layer, device, qdev_id, False)
        if outcome == "in-progress":
            raise _locked_error(qdev_id if qdev_id is not None else device)
        remove_medium(layer, device, qdev_id)
        insert_anon_medium(layer, blk, medium.node_name)
        close_tray(layer, device, qdev_id)
    finally:
        layer.unref(medium)


# --- the guest's side ---------------------------------------------------------------


def eject_request(layer: MediaContext, blk: Backend, force: bool) -> None:
    """blk_dev_eject_request -> ide_cd_eject_request_cb / scsi_cd_eject_request_cb:
    the guest is told; `force` drops its lock. A guest that answers eject requests
    (`cdrom-eject-request`) then opens the tray itself (scheduled)."""
    dev = blk.dev
    if dev is None or not dev.has_tray:
        return
    dev.eject_request_cb(force)
    if force:
        return
    behaviours = layer.host.behaviours
    if behaviours.get(EJECT_REQUEST.name) == "open":
        due = layer.host.clock.now() + behaviours.get(EJECT_DELAY.name)
        layer.trays.pending.append((due, dev))
        layer.host.kick()


def run_due(layer: MediaContext, now: float) -> None:
    """Carry out guest tray reactions that are due (only while the VM runs)."""
    if not layer.host.runstate.running:
        return
    due = [(t, d) for t, d in layer.trays.pending if t <= now]
    layer.trays.pending = [(t, d) for t, d in layer.trays.pending if t > now]
    for _t, dev in due:
        if not dev.eject_request:
            continue
        dev.eject_request = False
        dev.locked = False
        guest_start_stop_unit(layer, dev, start=False, load_eject=True)


def guest_lock(layer: MediaContext, dev: BlockDevOps, locked: bool) -> None:
    """PREVENT ALLOW MEDIUM REMOVAL from the guest [hw/ide/atapi.c
    cmd_prevent_allow_medium_removal]."""
    if dev.has_lock:
        dev.locked = locked


def guest_start_stop_unit(layer: MediaContext, dev: BlockDevOps, *, start: bool,
                          load_eject: bool = True) -> bool:
    """START STOP UNIT with LoEj from the guest [hw/ide/atapi.c cmd_start_stop_unit]:
    a locked, closed tray is not opened (the guest gets an error); a tray that moves
    sends DEVICE_TRAY_MOVED. Returns False when refused."""
    if not dev.has_tray or not load_eject:
        return True
    if not start and not dev.tray_open and dev.locked:
        return False
    if dev.tray_open != (not start):
        blk = layer.blk_by_dev(dev)
        dev.tray_open = not start
        layer.host.emit("DEVICE_TRAY_MOVED", {
            "device": blk.display_name() if blk is not None else "",
            "id": dev.qdev_id(), "tray-open": dev.tray_open})
    return True
