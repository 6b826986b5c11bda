"""The block layer's query replies: query-block, query-named-block-nodes,
query-blockstats, and the ImageInfo / BlockDeviceInfo objects inside them.

Readers of the pure `blockdev` model [block/qapi.c bdrv_query_info,
bdrv_block_device_info, bdrv_query_image_info, bdrv_query_bds_stats,
qmp_query_blockstats; block.c bdrv_named_nodes_list]. Members are present exactly
when QEMU 2.11 sets them (block.md §2); member order is the schema's, the
dispatcher's output checker puts them in wire order. Sizes, allocation and the
image model are read live, so a resize or a new overlay shows at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blockdev.graph import Backend, Node
from blockdev.image.io import FileHandle, FormatImage
from blockdev.throttle import ThrottleConfig
from schema.errors import GenericError

if TYPE_CHECKING:
    from blockdev.layer import BlockLayer


def _skip_implicit(bs: Node | None) -> Node | None:
    while bs is not None and bs.driver is not None and bs.implicit:
        bs = bs.backing_bs
    return bs


def get_info(layer: BlockLayer, bs: Node) -> dict[str, Any] | None:
    """bdrv_get_info: (cluster_size, is_dirty), or None where the driver has none
    (-ENOTSUP). raw asks its file; file-posix answers zeros."""
    drv = bs.driver
    if drv is None:
        return None
    if drv.format_name == "raw":
        child = bs.file_bs
        return get_info(layer, child) if child is not None else None
    if isinstance(bs.state, FormatImage):
        facts = bs.state.facts
        return {"cluster_size": facts.cluster_size or 0, "is_dirty": bool(facts.dirty_flag)}
    if not drv.has_get_info:
        return None
    return {"cluster_size": 0, "is_dirty": False}


def allocated_size(layer: BlockLayer, bs: Node) -> int | None:
    """bdrv_get_allocated_file_size (vmdk sums its descriptor and extents)."""
    drv = bs.driver
    if drv is not None and drv.format_name == "vmdk":
        total = 0
        for c in bs.children:
            if c.name == "file" or c.name.startswith("extents."):
                size = _file_allocated_size(c.bs) if c.bs is not None else None
                if size is not None and size > 0:
                    total += size
        return total
    return _file_allocated_size(bs)


def _file_allocated_size(bs: Node) -> int | None:
    """The generic bdrv_get_allocated_file_size: file nodes ask their file (the
    image edge's answer, or -errno), formats and filters ask their file child, the
    rest do not know (-ENOTSUP)."""
    if isinstance(bs.state, FileHandle):
        return bs.state.allocated_size()
    if bs.file is not None and bs.file.bs is not None:
        return _file_allocated_size(bs.file.bs)
    return None


def image_info(layer: BlockLayer, bs: Node) -> dict[str, Any]:
    """bdrv_query_image_info: the node's own ImageInfo, without backing-image."""
    assert bs.driver is not None
    size = bs.length()
    info: dict[str, Any] = {"filename": bs.filename, "format": bs.driver.format_name}
    gi = get_info(layer, bs)
    if gi is not None:
        info["dirty-flag"] = gi["is_dirty"]
    actual = allocated_size(layer, bs)
    if actual is not None and actual >= 0:
        info["actual-size"] = actual
    info["virtual-size"] = size
    if gi is not None and gi["cluster_size"]:
        info["cluster-size"] = gi["cluster_size"]
    if bs.is_encrypted():
        info["encrypted"] = True
    image = bs.state if isinstance(bs.state, FormatImage) else None
    if image is not None and image.facts.compressed is not None:
        info["compressed"] = image.facts.compressed
    if bs.backing_file:
        info["backing-filename"] = bs.backing_file
        try:
            info["full-backing-filename"] = layer.full_backing_filename(bs, bs.backing_file)
        except GenericError:
            pass
        if bs.backing_format:
            info["backing-filename-format"] = bs.backing_format
    if image is not None and image.snapshots:
        info["snapshots"] = [s.as_qapi() for s in image.snapshots]
    if image is not None and image.facts.format_specific is not None:
        info["format-specific"] = image.facts.format_specific.as_qapi()
    return info


def block_device_info(layer: BlockLayer, blk: Backend | None, bs: Node) -> dict[str, Any]:
    """bdrv_block_device_info."""
    if bs.driver is None:
        raise GenericError(f"Block device {bs.node_name} is ejected")
    info: dict[str, Any] = {"file": bs.filename}
    if bs.node_name:
        info["node-name"] = bs.node_name
    info["ro"] = bs.read_only
    info["drv"] = bs.driver.format_name
    if bs.backing_file:
        info["backing_file"] = bs.backing_file
    info["encrypted"] = bs.encrypted
    info["encryption_key_missing"] = False
    info["detect_zeroes"] = bs.detect_zeroes
    throttled = blk is not None and blk.throttle_group is not None
    config = ThrottleConfig()
    if throttled:
        assert blk is not None and blk.throttle_group is not None
        group = layer.throttle_groups.get(blk.throttle_group)
        assert group is not None
        config = group.config
    fields = config.query_fields()
    for stem in ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"):
        info[stem] = fields[stem]
    # The chain of ImageInfo, skipping implicit nodes for query-block.
    depth = 0
    top = image_info(layer, bs)
    cur_info = top
    bs0 = bs
    while True:
        if bs0.driver is not None and bs0.backing_bs is not None:
            depth += 1
            bs0 = bs0.backing_bs
            while blk is not None and bs0.driver is not None and bs0.implicit:
                nxt = bs0.backing_bs
                assert nxt is not None
                bs0 = nxt
            nxt_info = image_info(layer, bs0)
            cur_info["backing-image"] = nxt_info
            cur_info = nxt_info
        else:
            break
    info["backing_file_depth"] = depth
    info["image"] = top
    if throttled:
        for key, value in fields.items():
            if key.endswith("_max") or key.endswith("_max_length") or key == "iops_size":
                info[key] = value
        assert blk is not None
        info["group"] = blk.throttle_group
    info["cache"] = {"writeback": blk.enable_write_cache if blk is not None else True,
                     "direct": bs.open_flags.nocache, "no-flush": bs.open_flags.no_flush}
    info["write_threshold"] = bs.write_threshold
    return info


def block_info(layer: BlockLayer, blk: Backend) -> dict[str, Any]:
    """bdrv_query_info: one BlockInfo."""
    bs = _skip_implicit(blk.bs)
    info: dict[str, Any] = {"device": blk.display_name()}
    qdev = blk.attached_dev_id()
    if qdev:
        info["qdev"] = qdev
    info["type"] = "unknown"
    info["removable"] = blk.has_removable_media()
    info["locked"] = blk.is_medium_locked()
    if bs is not None and bs.driver is not None:
        info["inserted"] = block_device_info(layer, blk, bs)
    if blk.has_tray():
        info["tray_open"] = blk.is_tray_open()
    if blk.iostatus_is_enabled():
        info["io-status"] = blk.iostatus
    if bs is not None and bs.bitmaps:
        info["dirty-bitmaps"] = [bm.info() for bm in bs.bitmaps]
    return info


def query_block(layer: BlockLayer) -> list[dict[str, Any]]:
    """qmp_query_block: every BlockBackend with a name or a device."""
    return [block_info(layer, blk) for blk in layer.backends
            if blk.name or blk.dev is not None]


def query_named_block_nodes(layer: BlockLayer) -> list[dict[str, Any]]:
    """bdrv_named_nodes_list: newest node first."""
    return [block_device_info(layer, None, bs) for bs in reversed(layer.nodes)]


def _device_stats(layer: BlockLayer, blk: Backend | None, bs: Node | None) -> dict[str, Any]:
    st = blk.stats if blk is not None else None
    out: dict[str, Any] = {}

    def v(table: str, kind: str) -> int:
        return getattr(st, table)[kind] if st is not None else 0

    out["rd_bytes"] = v("nr_bytes", "read")
    out["wr_bytes"] = v("nr_bytes", "write")
    out["rd_operations"] = v("nr_ops", "read")
    out["wr_operations"] = v("nr_ops", "write")
    out["flush_operations"] = v("nr_ops", "flush")
    out["flush_total_time_ns"] = v("total_time_ns", "flush")
    out["wr_total_time_ns"] = v("total_time_ns", "write")
    out["rd_total_time_ns"] = v("total_time_ns", "read")
    out["wr_highest_offset"] = bs.wr_highest_offset if bs is not None else 0
    out["rd_merged"] = v("merged", "read")
    out["wr_merged"] = v("merged", "write")
    if st is not None and st.accessed:
        now_ns = int(layer.host.clock.now() * 1e9)
        out["idle_time_ns"] = now_ns - st.last_access_time_ns
    out["failed_rd_operations"] = v("failed_ops", "read")
    out["failed_wr_operations"] = v("failed_ops", "write")
    out["failed_flush_operations"] = v("failed_ops", "flush")
    out["invalid_rd_operations"] = v("invalid_ops", "read")
    out["invalid_wr_operations"] = v("invalid_ops", "write")
    out["invalid_flush_operations"] = v("invalid_ops", "flush")
    out["account_invalid"] = st.account_invalid if st is not None else False
    out["account_failed"] = st.account_failed if st is not None else False
    timed: list[dict[str, Any]] = []
    if st is not None:
        # Built by prepending while walking the (newest first) interval list.
        for length in st.intervals:
            timed.insert(0, {
                "interval_length": length,
                "min_rd_latency_ns": 0, "max_rd_latency_ns": 0, "avg_rd_latency_ns": 0,
                "min_wr_latency_ns": 0, "max_wr_latency_ns": 0, "avg_wr_latency_ns": 0,
                "min_flush_latency_ns": 0, "max_flush_latency_ns": 0,
                "avg_flush_latency_ns": 0, "avg_rd_queue_depth": 0.0,
                "avg_wr_queue_depth": 0.0})
    out["timed_stats"] = timed
    return out


def bds_stats(layer: BlockLayer, bs: Node | None, blk_level: bool) -> dict[str, Any]:
    """bdrv_query_bds_stats (node counters only: wr_highest_offset)."""
    s: dict[str, Any] = {}
    if bs is None:
        s["stats"] = _device_stats(layer, None, None)
        return s
    while blk_level and bs.driver is not None and bs.implicit:
        nxt = bs.backing_bs
        assert nxt is not None
        bs = nxt
    if bs.node_name:
        s["node-name"] = bs.node_name
    s["stats"] = _device_stats(layer, None, bs)
    if bs.file_bs is not None:
        s["parent"] = bds_stats(layer, bs.file_bs, blk_level)
    if blk_level and bs.backing_bs is not None:
        s["backing"] = bds_stats(layer, bs.backing_bs, blk_level)
    return s


def query_blockstats(layer: BlockLayer, query_nodes: bool) -> list[dict[str, Any]]:
    """qmp_query_blockstats."""
    out: list[dict[str, Any]] = []
    if query_nodes:
        for bs in layer.nodes:
            out.append(bds_stats(layer, bs, False))
        return out
    for blk in layer.monitor_backends:
        s = bds_stats(layer, blk.bs, True)
        root = _skip_implicit(blk.bs)
        stats = _device_stats(layer, blk, root)
        s["stats"] = stats
        entry: dict[str, Any] = {"device": blk.display_name()}
        entry.update(s)
        out.append(entry)
    return out
