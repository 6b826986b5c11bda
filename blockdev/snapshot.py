"""Snapshots: external (a new overlay above a node) and internal (inside a qcow2).

Pure model of the `blockdev` layer, with image creation through `blockdev.image.io`
[blockdev.c external_snapshot_prepare/commit/abort/clean, internal_snapshot_*,
qmp_blockdev_snapshot_delete_internal_sync; block/qcow2-snapshot.c].

Each snapshot kind is a transaction action (`blockdev.action`: prepare, commit,
abort, clean), because QEMU runs even the stand-alone commands as one-action
transactions; the `transaction` command (`blockdev.transaction`) runs several of them
with the same objects.

* External: the overlay file is created for real (a valid image of the requested
  format whose backing file is the old node's file name) unless `mode` is
  `existing`; it is opened, put above the old node (every parent of the old node now
  uses the overlay) and, on commit, the old node becomes read-only. Unlike QEMU,
  the emulator refuses to overwrite a file that already exists (QEMU truncates it):
  existing files are never modified; and an aborted action deletes the overlay file
  it created (QEMU leaves it behind).
* Internal: the snapshot is recorded in the emulator's model of the qcow2 image; the
  image file itself is not rewritten (a decision of this project), so `qemu-img
  snapshot -l` on the file does not see it.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.action import Action, TransactionProperties, check_completion_mode
from blockdev.drivers.registry import DRIVERS, find_protocol
from blockdev.graph import Node
from blockdev.image.create_opts import formatting_line
from blockdev.image.io import FormatImage
from blockdev.options import Flat
from schema.errors import QERR_DEVICE_HAS_NO_MEDIUM, QERR_FEATURE_DISABLED, GenericError

if TYPE_CHECKING:
    from blockdev.image.formats.facts import SnapshotInfo
    from blockdev.layer import BlockLayer


@attrs.define(kw_only=True, eq=False)
class ExternalSnapshot(Action):
    """blockdev-snapshot-sync (snapshot_file set) or blockdev-snapshot (overlay set)."""

    kind: str
    device: str | None = None
    node_name: str | None = None
    snapshot_file: str | None = None
    overlay: str | None = None
    snapshot_node_name: str | None = None
    format: str | None = None
    mode: str | None = None
    old_bs: Node | None = None
    new_bs: Node | None = None
    overlay_appended: bool = False
    created_file: str | None = None
    aborted: bool = False

    @classmethod
    def from_sync(cls, data: dict[str, Any]) -> ExternalSnapshot:
        """The action of a BlockdevSnapshotSync (wire names)."""
        return cls(kind="blockdev-snapshot-sync", device=data.get("device"),
                   node_name=data.get("node-name"), snapshot_file=data["snapshot-file"],
                   snapshot_node_name=data.get("snapshot-node-name"),
                   format=data.get("format"), mode=data.get("mode"))

    @classmethod
    def from_overlay(cls, data: dict[str, Any]) -> ExternalSnapshot:
        """The action of a BlockdevSnapshot: `node` is looked up as device or node."""
        return cls(kind="blockdev-snapshot", device=data["node"], node_name=data["node"],
                   overlay=data["overlay"])

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        """external_snapshot_prepare."""
        check_completion_mode(self.kind, props)
        self.old_bs = old = layer.lookup_bs(self.device, self.node_name)
        if not old.is_inserted():
            raise GenericError(QERR_DEVICE_HAS_NO_MEDIUM % self.device)
        old.check_op("external-snapshot")
        if not old.read_only and getattr(old, "faults", {}).get("flush") is not None:
            raise GenericError("An IO error has occurred")
        if not layer.is_first_non_filter(old):
            raise GenericError(QERR_FEATURE_DISABLED % "snapshot")
        options: Flat | None = None
        flags = old.open_flags.copy()
        if self.kind == "blockdev-snapshot-sync":
            fmt = self.format or "qcow2"
            if self.node_name is not None and self.snapshot_node_name is None:
                raise GenericError("New snapshot node name missing")
            if self.snapshot_node_name is not None and (
                    layer.blk_by_name(self.snapshot_node_name) is not None
                    or layer.find_node(self.snapshot_node_name) is not None):
                raise GenericError("New snapshot node name already in use")
            flags.snapshot = flags.copy_on_read = False
            flags.no_backing = True
            mode = self.mode or "absolute-paths"
            assert self.snapshot_file is not None
            if mode != "existing":
                size = old.length()
                create_new_image(layer, self.snapshot_file, fmt, size,
                                 backing_file=old.filename,
                                 backing_format=old.driver.format_name if old.driver else "")
                self.created_file = self.snapshot_file
            options = {}
            if self.snapshot_node_name is not None:
                options["node-name"] = self.snapshot_node_name
            options["driver"] = fmt
        flags.protocol = False
        self.new_bs = new = layer.open(self.snapshot_file, self.overlay, options, flags)
        if new.has_blk():
            raise GenericError("The snapshot is already in use")
        new.check_op("external-snapshot")
        if new.backing is not None:
            raise GenericError("The snapshot already has a backing image")
        if new.driver is None or not new.driver.supports_backing:
            raise GenericError("The snapshot does not support backing images")
        new.refcnt += 1
        layer.append(new, old)
        self.overlay_appended = True

    def commit(self, layer: BlockLayer) -> None:
        """external_snapshot_commit: the old node becomes read-only (a failed reopen
        is ignored)."""
        old = self.old_bs
        assert old is not None
        if not old.open_flags.copy_on_read:
            try:
                layer.reopen_read_only(old, True)
            except GenericError:
                pass

    def abort(self, layer: BlockLayer) -> None:
        """external_snapshot_abort: the overlay leaves the graph; its parents use
        the old node again."""
        self.aborted = True
        new, old = self.new_bs, self.old_bs
        if new is not None and self.overlay_appended and old is not None:
            old.refcnt += 1
            layer.set_backing_hd(new, None)
            layer.replace_node(new, old)
            layer.unref(old)

    def clean(self, layer: BlockLayer) -> None:
        """external_snapshot_clean: our reference to the overlay goes (after an
        abort that closes it). Unlike QEMU, which leaves the image it created behind,
        an aborted action deletes the overlay file it created (issue 9: no file of an
        aborted transaction is left); a file given with mode=existing is never
        deleted, and create_new_image never overwrites one."""
        if self.new_bs is not None:
            layer.unref(self.new_bs)
            self.new_bs = None
        if self.aborted and self.created_file is not None:
            layer.io.remove_temporary(self.created_file)
            self.created_file = None


def create_new_image(layer: BlockLayer, path: str, fmt: str, size: int, *,
                     backing_file: str | None, backing_format: str | None) -> None:
    """bdrv_img_create for a new image (overlay or job target). The emulator does not
    overwrite existing files."""
    if fmt not in DRIVERS:
        raise GenericError(f"Unknown file format '{fmt}'")
    proto = find_protocol(path, True, layer.io.probe_device)
    if proto.format_name != "file":
        raise GenericError(f"Protocol driver '{proto.format_name}' does not support image "
                           "creation")
    if os.path.lexists(path):
        raise GenericError(f"Could not create file: {os.strerror(17)}")
    line = formatting_line(path, fmt, size, backing_file=backing_file or None,
                           backing_format=backing_format or None)
    if line is not None:
        layer.host.stdout(line)
    layer.io.create(path, fmt, size, backing_file=backing_file or None,
                    backing_format=backing_format or None, now=layer.host.clock.wall(),
                    rng=layer.host.rng)


def _image(bs: Node) -> FormatImage | None:
    return bs.state if isinstance(bs.state, FormatImage) else None


def can_snapshot(bs: Node) -> bool:
    """bdrv_can_snapshot."""
    drv = bs.driver
    if drv is None or not bs.is_inserted() or bs.read_only:
        return False
    if not drv.internal_snapshots:
        if bs.file_bs is not None:
            return can_snapshot(bs.file_bs)
        return False
    return True


def _snapshot_owner(bs: Node) -> Node:
    """The node whose driver keeps the snapshots (bdrv_snapshot_* recurse to file)."""
    node: Node | None = bs
    while node is not None and node.driver is not None and not node.driver.internal_snapshots:
        node = node.file_bs
    return node or bs


def _lists_snapshots(bs: Node) -> bool:
    """bdrv_snapshot_list succeeds: a driver on the `file` chain lists snapshots."""
    node: Node | None = bs
    while node is not None and node.driver is not None:
        if node.driver.internal_snapshots:
            return True
        node = node.file_bs
    return False


def snapshot_list(bs: Node) -> list[SnapshotInfo]:
    owner = _snapshot_owner(bs)
    image = _image(owner)
    if image is not None:
        return image.snapshots
    state = owner.state
    extra = getattr(state, "extra", None)
    if isinstance(extra, dict):
        return extra.setdefault("snapshots", [])
    return []


def find_snapshot(bs: Node, snap_id: str | None, name: str | None) -> SnapshotInfo | None:
    """bdrv_snapshot_find_by_id_and_name."""
    for sn in snapshot_list(bs):
        if snap_id is not None and name is not None:
            if sn.id == snap_id and sn.name == name:
                return sn
        elif snap_id is not None:
            if sn.id == snap_id:
                return sn
        elif sn.name == name:
            return sn
    return None


@attrs.define(kw_only=True, eq=False)
class InternalSnapshot(Action):
    """blockdev-snapshot-internal-sync."""

    device: str
    name: str
    bs: Node | None = None
    created: SnapshotInfo | None = None

    @classmethod
    def from_qmp(cls, data: dict[str, Any]) -> InternalSnapshot:
        """The action of a BlockdevSnapshotInternal (wire names)."""
        return cls(device=data["device"], name=data["name"])

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        """internal_snapshot_prepare."""
        check_completion_mode("blockdev-snapshot-internal-sync", props)
        self.bs = bs = layer.get_root_bs(self.device)
        bs.check_op("internal-snapshot")
        if bs.read_only:
            raise GenericError(f"Device '{self.device}' is read only")
        if not can_snapshot(bs):
            fmt = bs.driver.format_name if bs.driver else ""
            raise GenericError(f"Block format '{fmt}' used by device '{self.device}' does "
                               "not support internal snapshots")
        if not self.name:
            raise GenericError("Name is empty")
        if find_snapshot(bs, None, self.name) is not None:
            raise GenericError(f"Snapshot with name '{self.name}' already exists on device "
                               f"'{self.device}'")
        snaps = snapshot_list(bs)
        if len(snaps) >= 65536:
            raise GenericError(f"Failed to create snapshot '{self.name}' on device "
                               f"'{self.device}': {os.strerror(27)}")
        new_id = str(max((int(s.id) if s.id.isdigit() else 0 for s in snaps), default=0) + 1)
        wall = layer.host.clock.wall()
        sec = int(wall)
        usec = int((wall - sec) * 1_000_000)
        vm_ns = layer.host.vm_clock_ns()  # QEMU_CLOCK_VIRTUAL
        # the format readers (and their facts) load with the first image opened
        from blockdev.image.formats.facts import SnapshotInfo

        sn = SnapshotInfo(id=new_id, name=self.name, vm_state_size=0, date_sec=sec,
                          date_nsec=usec * 1000, vm_clock_sec=vm_ns // 1_000_000_000,
                          vm_clock_nsec=vm_ns % 1_000_000_000)
        snaps.append(sn)
        self.created = sn

    def abort(self, layer: BlockLayer) -> None:
        """internal_snapshot_abort: the snapshot this action took is deleted."""
        if self.created is not None and self.bs is not None:
            snaps = snapshot_list(self.bs)
            if self.created in snaps:
                snaps.remove(self.created)


def delete_internal(layer: BlockLayer, device: str, snap_id: str | None,
                    name: str | None) -> dict[str, Any]:
    """qmp_blockdev_snapshot_delete_internal_sync: returns the deleted SnapshotInfo."""
    bs = layer.get_root_bs(device)
    if snap_id is None and name is None:
        raise GenericError("Name or id must be provided")
    bs.check_op("internal-snapshot-delete")
    if not _lists_snapshots(bs):
        # bdrv_snapshot_list's -ENOTSUP, as bdrv_snapshot_find_by_id_and_name words it
        raise GenericError(f"Failed to get a snapshot list: {os.strerror(errno.ENOTSUP)}")
    sn = find_snapshot(bs, snap_id, name)
    if sn is None:
        raise GenericError(f"Snapshot with id '{snap_id if snap_id is not None else 'null'}'"
                           f" and name '{name if name is not None else 'null'}' does not "
                           f"exist on device '{device}'")
    owner = _snapshot_owner(bs)
    if owner.driver is None or not owner.driver.internal_snapshots:
        fmt = bs.driver.format_name if bs.driver else ""
        raise GenericError(f"Block format '{fmt}' used by device '{bs.device_name()}' does "
                           "not support internal snapshot deletion")
    snapshot_list(bs).remove(sn)
    return sn.as_qapi()
