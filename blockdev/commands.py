"""The block layer's QMP commands (everything but jobs, `transaction` and NBD).

Handlers of the `blockdev` layer, registered by schema name; the schema visitor has
already checked the arguments and the dispatcher checks and orders the replies
(`change`, which also reaches the display, is composed in `vmm.change`). Each
handler is a thin translation of QEMU 2.11's qmp_* function (named in its docstring)
onto the model in `blockdev.layer`, `blockdev.media`, `blockdev.snapshot` (loaded
with the first snapshot command), `blockdev.throttle` and `blockdev.guest_io`; the
texts are QEMU's (block.md §3, §6, §7).
"""

from __future__ import annotations

import os
from typing import Any

from blockdev import media, query
from blockdev.action import run_single
from blockdev.bitmaps import DirtyBitmap, default_granularity, valid_granularity
from blockdev.graph import Node, OpenFlags
from blockdev.image.io import FormatImage
from blockdev.layer import BlockLayer
from blockdev.options import Flat, flatten
from blockdev.throttle import ThrottleConfig
from schema.errors import (
    QERR_DEVICE_IN_USE,
    QERR_FEATURE_DISABLED,
    QERR_INVALID_PARAMETER_VALUE,
    GenericError,
)
from schema.handlers import qmp_command
from schema.jsontypes import qemu_bytes


def blockdev_add_options(options: dict[str, Any]) -> Flat:
    """qmp_blockdev_add's QDict: flattened, with `"backing": null` as "" at any depth."""
    flat = flatten(options)
    for key, value in list(flat.items()):
        if key.rsplit(".", 1)[-1] == "backing" and value is None:
            flat[key] = ""
    return flat


def bds_tree_init(layer: BlockLayer, options: Flat) -> Node:
    """bds_tree_init: the defaults of blockdev-add/-blockdev, then bdrv_open."""
    options.setdefault("cache.direct", "off")
    options.setdefault("cache.no-flush", "off")
    options.setdefault("read-only", "off")
    flags = OpenFlags(inactive=layer.host.runstate.state == "inmigrate")
    return layer.open(None, None, options, flags)


def blockdev_add(layer: BlockLayer, options: dict[str, Any]) -> Node:
    """qmp_blockdev_add (wire-named, schema-checked options)."""
    flat = blockdev_add_options(options)
    if not isinstance(flat.get("node-name"), str):
        raise GenericError("'node-name' must be specified for the root node")
    bs = bds_tree_init(layer, flat)
    bs.monitor_owned = True
    layer.monitor_nodes.append(bs)
    return bs


class BlockCommands:
    """The command handlers; one instance per machine, over its BlockLayer."""

    def __init__(self, layer: BlockLayer) -> None:
        self.layer = layer

    # -- queries ---------------------------------------------------------------------------

    @qmp_command("query-block")
    def query_block(self) -> list[dict[str, Any]]:
        """block/qapi.c qmp_query_block."""
        return query.query_block(self.layer)

    @qmp_command("query-named-block-nodes")
    def query_named_block_nodes(self) -> list[dict[str, Any]]:
        """block.c bdrv_named_nodes_list."""
        return query.query_named_block_nodes(self.layer)

    @qmp_command("query-blockstats")
    def query_blockstats(self, query_nodes: bool | None = None) -> list[dict[str, Any]]:
        """block/qapi.c qmp_query_blockstats."""
        return query.query_blockstats(self.layer, bool(query_nodes))

    # -- nodes -------------------------------------------------------------------------------

    @qmp_command("blockdev-add")
    def blockdev_add(self, options: dict[str, Any]) -> None:
        """blockdev.c qmp_blockdev_add (boxed: the options arrive as one value)."""
        blockdev_add(self.layer, options)

    @qmp_command("blockdev-del")
    def blockdev_del(self, node_name: str) -> None:
        """blockdev.c qmp_blockdev_del."""
        layer = self.layer
        bs = layer.find_node(node_name)
        if bs is None:
            raise GenericError(f"Cannot find node {node_name}")
        if bs.has_blk():
            raise GenericError(f"Node {node_name} is in use")
        bs.check_op("drive-del")
        if not bs.monitor_owned:
            raise GenericError(f"Node {bs.node_name} is not owned by the monitor")
        if bs.refcnt > 1:
            raise GenericError(f"Block device {bs.device_or_node_name()} is in use")
        layer.monitor_nodes.remove(bs)
        bs.monitor_owned = False
        layer.unref(bs)

    @qmp_command("block_resize")
    def block_resize(self, size: int, device: str | None = None,
                     node_name: str | None = None) -> None:
        """blockdev.c qmp_block_resize; the image file is not rewritten, only the
        emulator's model of the image changes."""
        layer = self.layer
        bs = layer.lookup_bs(device, node_name)
        if not layer.is_first_non_filter(bs):
            raise GenericError(QERR_FEATURE_DISABLED % "resize")
        if size < 0:
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % ("size", "a >0 size"))
        if bs.op_blocked("resize") is not None:
            raise GenericError(QERR_DEVICE_IN_USE % (device if device is not None else "(null)"))
        blk = layer.blk_new(0x08, 0x1F)
        try:
            layer.blk_insert_bs(blk, bs)
            truncate(layer, bs, size)
        finally:
            layer.blk_unref(blk)

    @qmp_command("block_passwd")
    def block_passwd(self, password: str, device: str | None = None,
                     node_name: str | None = None) -> None:
        """blockdev.c qmp_block_passwd."""
        raise GenericError("Setting block passwords directly is no longer supported")

    @qmp_command("block-set-write-threshold")
    def block_set_write_threshold(self, node_name: str, write_threshold: int) -> None:
        """block/write-threshold.c qmp_block_set_write_threshold (0 disarms)."""
        bs = self.layer.find_node(node_name)
        if bs is None:
            raise GenericError(f"Device '{node_name}' not found")
        bs.write_threshold = write_threshold

    @qmp_command("block_set_io_throttle")
    def block_set_io_throttle(self, args: dict[str, Any]) -> None:
        """blockdev.c qmp_block_set_io_throttle (boxed: one BlockIOThrottle value)."""
        layer = self.layer
        device, qdev_id, group = args.get("device"), args.get("id"), args.get("group")
        blk = layer.get_blk(device, qdev_id)
        if blk.bs is None:
            raise GenericError("Device has no medium")
        config = ThrottleConfig.from_qmp(args)
        config.validate()
        groups = layer.throttle_groups
        if config.enabled():
            if blk.throttle_group is None:
                name = group if group is not None else device if device is not None \
                    else qdev_id
                groups.io_limits_enable(blk, str(name))
            elif group is not None:
                groups.io_limits_update_group(blk, group)
            assert blk.throttle_group is not None
            tg = groups.get(blk.throttle_group)
            assert tg is not None
            tg.config = config
        elif blk.throttle_group is not None:
            groups.io_limits_disable(blk)

    # -- removable media ---------------------------------------------------------------------

    @qmp_command("eject")
    def eject(self, device: str | None = None, id: str | None = None,
              force: bool | None = None) -> None:
        """blockdev.c qmp_eject."""
        media.eject(self.layer, device, id, bool(force))

    @qmp_command("blockdev-open-tray")
    def blockdev_open_tray(self, device: str | None = None, id: str | None = None,
                           force: bool | None = None) -> None:
        """blockdev.c qmp_blockdev_open_tray."""
        media.open_tray(self.layer, device, id, bool(force))

    @qmp_command("blockdev-close-tray")
    def blockdev_close_tray(self, device: str | None = None, id: str | None = None) -> None:
        """blockdev.c qmp_blockdev_close_tray."""
        media.close_tray(self.layer, device, id)

    @qmp_command("x-blockdev-remove-medium")
    def x_blockdev_remove_medium(self, device: str | None = None,
                                 id: str | None = None) -> None:
        """blockdev.c qmp_x_blockdev_remove_medium."""
        media.remove_medium(self.layer, device, id)

    @qmp_command("x-blockdev-insert-medium")
    def x_blockdev_insert_medium(self, node_name: str, device: str | None = None,
                                 id: str | None = None) -> None:
        """blockdev.c qmp_x_blockdev_insert_medium."""
        media.insert_medium(self.layer, device, id, node_name)

    @qmp_command("blockdev-change-medium")
    def blockdev_change_medium(self, filename: str, device: str | None = None,
                               id: str | None = None, format: str | None = None,
                               read_only_mode: str | None = None) -> None:
        """blockdev.c qmp_blockdev_change_medium."""
        media.change_medium(self.layer, device, id, filename, format, read_only_mode)

    # -- snapshots ---------------------------------------------------------------------------

    @qmp_command("blockdev-snapshot-sync")
    def blockdev_snapshot_sync(self, snapshot_file: str, device: str | None = None,
                               node_name: str | None = None,
                               snapshot_node_name: str | None = None,
                               format: str | None = None, mode: str | None = None) -> None:
        """blockdev.c qmp_blockdev_snapshot_sync (a one-action transaction)."""
        from blockdev import snapshot  # loaded with the first snapshot command

        run_single(self.layer, snapshot.ExternalSnapshot(
            kind="blockdev-snapshot-sync", device=device, node_name=node_name,
            snapshot_file=snapshot_file, snapshot_node_name=snapshot_node_name,
            format=format, mode=mode))

    @qmp_command("blockdev-snapshot")
    def blockdev_snapshot(self, node: str, overlay: str) -> None:
        """blockdev.c qmp_blockdev_snapshot."""
        from blockdev import snapshot

        run_single(self.layer, snapshot.ExternalSnapshot(
            kind="blockdev-snapshot", device=node, node_name=node, overlay=overlay))

    @qmp_command("blockdev-snapshot-internal-sync")
    def blockdev_snapshot_internal_sync(self, device: str, name: str) -> None:
        """blockdev.c qmp_blockdev_snapshot_internal_sync (written into a qcow2 image:
        blockdev.snapshot)."""
        from blockdev import snapshot

        run_single(self.layer, snapshot.InternalSnapshot(device=device, name=name))

    @qmp_command("blockdev-snapshot-delete-internal-sync")
    def blockdev_snapshot_delete_internal_sync(self, device: str, id: str | None = None,
                                               name: str | None = None) -> dict[str, Any]:
        """blockdev.c qmp_blockdev_snapshot_delete_internal_sync."""
        from blockdev import snapshot

        return snapshot.delete_internal(self.layer, device, id, name)

    @qmp_command("change-backing-file")
    def change_backing_file(self, device: str, image_node_name: str,
                            backing_file: str) -> None:
        """blockdev.c qmp_change_backing_file: the backing file string of the image
        changes in the emulator's model only (the header is not rewritten)."""
        layer = self.layer
        bs = layer.get_root_bs(device)
        image_bs = layer.lookup_bs(None, image_node_name)
        if image_bs.find_base() is image_bs:
            raise GenericError("not allowing backing file change on an image without a "
                               "backing file")
        bs.check_op("change")
        if not bs.chain_contains(image_bs):
            raise GenericError(f"'{device}' and image file are not in the same chain")
        ro = image_bs.read_only
        if ro:
            layer.reopen_read_only(image_bs, False)
        error: str | None = None
        drv = image_bs.driver
        if drv is None or not drv.change_backing_file:
            error = (f"Could not change backing file to '{backing_file}': "
                     f"{os.strerror(95)}")
        else:
            image_bs.backing_file = backing_file
            image_bs.backing_format = drv.format_name
        if ro:
            layer.reopen_read_only(image_bs, True)
        if error is not None:
            raise GenericError(error)

    # -- graph changes -------------------------------------------------------------------

    @qmp_command("x-blockdev-change")
    def x_blockdev_change(self, parent: str, child: str | None = None,
                          node: str | None = None) -> None:
        """blockdev.c qmp_x_blockdev_change (quorum children)."""
        layer = self.layer
        parent_bs = layer.lookup_bs(parent, parent)
        if (child is None) == (node is None):
            if child is not None:
                raise GenericError("The parameters child and node are in conflict")
            raise GenericError("Either child or node must be specified")
        if child is not None:
            edge = next((c for c in parent_bs.children if c.name == child), None)
            if edge is None:
                raise GenericError(f"Node '{parent}' does not have child '{child}'")
            drv = parent_bs.driver
            if drv is None or not drv.del_child:
                raise GenericError(f"The node {parent_bs.device_or_node_name()} does not "
                                   "support removing a child")
            quorum_del_child(layer, parent_bs, edge)
        if node is not None:
            new_bs = layer.find_node(node)
            if new_bs is None:
                raise GenericError(f"Node '{node}' not found")
            drv = parent_bs.driver
            if drv is None or not drv.add_child:
                raise GenericError(f"The node {parent_bs.device_or_node_name()} does not "
                                   "support adding a child")
            if new_bs.parents:
                raise GenericError(f"The node {new_bs.node_name} already has a parent")
            quorum_add_child(layer, parent_bs, new_bs)

    # -- dirty bitmaps -------------------------------------------------------------------

    @qmp_command("block-dirty-bitmap-add")
    def block_dirty_bitmap_add(self, node: str, name: str, granularity: int | None = None,
                               persistent: bool | None = None,
                               autoload: bool | None = None) -> None:
        """blockdev.c qmp_block_dirty_bitmap_add; persistent bitmaps are kept in the
        emulator's model of the qcow2 image (its file is not rewritten)."""
        bitmap_add(self.layer, node, name, granularity, persistent, autoload)

    @qmp_command("block-dirty-bitmap-remove")
    def block_dirty_bitmap_remove(self, node: str, name: str) -> None:
        """blockdev.c qmp_block_dirty_bitmap_remove."""
        bitmap_remove(self.layer, node, name)

    @qmp_command("x-debug-block-dirty-bitmap-sha256")
    def x_debug_block_dirty_bitmap_sha256(self, node: str, name: str) -> dict[str, str]:
        """blockdev.c qmp_x_debug_block_dirty_bitmap_sha256 (the 2.11.0 persona):
        the hash of the bitmap's bits, as hbitmap_sha256."""
        _bs, bm = bitmap_lookup(self.layer, node, name)
        return {"sha256": bm.sha256()}

    @qmp_command("block-dirty-bitmap-clear")
    def block_dirty_bitmap_clear(self, node: str, name: str) -> None:
        """blockdev.c qmp_block_dirty_bitmap_clear."""
        _bs, bm = bitmap_lookup(self.layer, node, name)
        if bm.frozen:
            raise GenericError(f"Bitmap '{name}' is currently frozen and cannot be modified")
        if bm.disabled:
            raise GenericError(f"Bitmap '{name}' is currently disabled and cannot be cleared")
        if bm.readonly:
            raise GenericError(f"Bitmap '{name}' is readonly and cannot be cleared")
        bm.clear()


def truncate(layer: BlockLayer, bs: Node, size: int) -> None:
    """bdrv_truncate through a BlockBackend that holds the resize permission: the
    driver's truncate changes the model's size, bitmaps shrink, devices are told (no
    event)."""
    drv = bs.driver
    if drv is None:
        raise GenericError("No medium inserted")
    if drv.truncate is None:
        if bs.file_bs is not None and drv.is_filter:
            truncate(layer, bs.file_bs, size)
            return
        raise GenericError("Image format driver does not support resize")
    if bs.read_only:
        raise GenericError("Image is read-only")
    drv.truncate(bs, size)
    bs.total_sectors = (size + 511) // 512
    for bm in bs.bitmaps:
        bm.truncate(bs.total_sectors * 512)


def bitmap_lookup(layer: BlockLayer, node: str, name: str) -> tuple[Node, DirtyBitmap]:
    """block_dirty_bitmap_lookup."""
    try:
        bs = layer.lookup_bs(node, node)
    except GenericError:
        raise GenericError(f"Node '{node}' not found") from None
    bm = layer.find_dirty_bitmap(bs, name)
    if bm is None:
        raise GenericError(f"Dirty bitmap '{name}' not found")
    return bs, bm


def bitmap_remove(layer: BlockLayer, node: str, name: str) -> None:
    """qmp_block_dirty_bitmap_remove (also a transaction's undo of an add)."""
    bs, bm = bitmap_lookup(layer, node, name)
    if bm.frozen:
        raise GenericError(f"Bitmap '{name}' is currently frozen and cannot be removed")
    bs.bitmaps.remove(bm)


def bitmap_add(layer: BlockLayer, node: str, name: str, granularity: int | None,
               persistent: bool | None, autoload: bool | None) -> DirtyBitmap:
    """qmp_block_dirty_bitmap_add."""
    if not name:
        raise GenericError("Bitmap name cannot be empty")
    bs = layer.lookup_bs(node, node)
    if granularity is not None:
        if not valid_granularity(granularity):
            raise GenericError("Granularity must be power of 2 and at least 512")
    else:
        gi = query.get_info(layer, bs)
        granularity = default_granularity(gi["cluster_size"] if gi is not None else None)
    if autoload is not None and not persistent:
        raise GenericError("Autoload flag must be used only for persistent bitmaps")
    if persistent:
        check_can_store_bitmap(layer, bs, name, granularity)
    if layer.find_dirty_bitmap(bs, name) is not None:
        raise GenericError(f"Bitmap already exists: {name}")
    bm = DirtyBitmap(name=name, granularity=granularity, size=bs.length(),
                     persistent=bool(persistent), autoload=bool(autoload))
    bs.bitmaps.insert(0, bm)
    return bm


def check_can_store_bitmap(layer: BlockLayer, bs: Node, name: str, granularity: int) -> None:
    """bdrv_can_store_new_dirty_bitmap / qcow2_can_store_new_dirty_bitmap."""
    drv = bs.driver
    if drv is None or not drv.persistent_bitmaps:
        raise GenericError(f"Can't store persistent bitmaps to {bs.device_or_node_name()}: "
                           f"{os.strerror(95)}")
    image = bs.state
    stored = image.facts.persistent_bitmaps if isinstance(image, FormatImage) else ()
    prefix = f"Can't make bitmap '{name}' persistent in '{bs.device_or_node_name()}'"
    if granularity > 1 << 31:
        raise GenericError(f"{prefix}: Granularity exceeds maximum ({1 << 31} bytes)")
    if len(qemu_bytes(name)) > 1023:
        raise GenericError(f"{prefix}: Name length exceeds maximum (1023 characters)")
    count = len(stored) + sum(1 for bm in bs.bitmaps if bm.persistent)
    if count >= 65535:
        raise GenericError(f"{prefix}: Maximum number of persistent bitmaps is already "
                           "reached")
    if any(b.name == name for b in stored):
        raise GenericError(f"{prefix}: Bitmap with the same name is already stored")


def quorum_add_child(layer: BlockLayer, parent: Node, child_bs: Node) -> None:
    """quorum_add_child: the next free `children.N`."""
    extra = parent.state.extra
    index = extra["next_child_index"]
    if index >= 2**31 - 1:
        raise GenericError("Too many children")
    child_bs.refcnt += 1
    try:
        edge = layer.attach_child(parent, child_bs, f"children.{index}", "format")
    except GenericError:
        layer.unref(child_bs)
        raise
    extra["children"].append(edge)
    extra["next_child_index"] = index + 1


def quorum_del_child(layer: BlockLayer, parent: Node, edge: Any) -> None:
    """quorum_del_child: only the last child can go, and not below the threshold."""
    extra = parent.state.extra
    children = extra["children"]
    if len(children) <= extra["threshold"]:
        raise GenericError(f"The number of children cannot be lower than the vote "
                           f"threshold {extra['threshold']}")
    children.remove(edge)
    layer.unref_child(parent, edge)
