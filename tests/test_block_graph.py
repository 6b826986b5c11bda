"""The block graph: names, blockdev-add/-drive/-blockdev building the same graph, the
three query commands member by member, blockdev-del, and permissions.

Each test pins one behaviour of QEMU 2.11.0 as block.md (§1, §2, §3.1, §3.2, §10)
describes it, or the source function its docstring names. Node names come from a
seeded generator, so the `#block<N><RR>` names are reproducible.
"""

from __future__ import annotations

from typing import Any

import pytest

from blockdev import drive as block_drive
from blockdev.graph import Reason
from tests.test_block_support import Block, fails

ZERO_STATS = {
    "rd_bytes": 0, "wr_bytes": 0, "rd_operations": 0, "wr_operations": 0,
    "flush_operations": 0, "flush_total_time_ns": 0, "wr_total_time_ns": 0,
    "rd_total_time_ns": 0, "wr_highest_offset": 0, "rd_merged": 0, "wr_merged": 0,
    "failed_rd_operations": 0, "failed_wr_operations": 0, "failed_flush_operations": 0,
    "invalid_rd_operations": 0, "invalid_wr_operations": 0,
    "invalid_flush_operations": 0, "account_invalid": False, "account_failed": False,
    "timed_stats": [],
}

NO_THROTTLE = {"bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}


def null_node_info(name: str, *, ro: bool = False, writeback: bool = True,
                   size: int = 1 << 30, filename: str = "null-co://",
                   drv: str = "null-co") -> dict[str, Any]:
    """BlockDeviceInfo of a null-co node, member by member [block/qapi.c
    bdrv_block_device_info, bdrv_query_image_info; block/null.c has no get_info and
    no allocated size, so no dirty-flag and no actual-size]."""
    return {
        "file": filename, "node-name": name, "ro": ro, "drv": drv, "encrypted": False,
        "encryption_key_missing": False, "detect_zeroes": "off", **NO_THROTTLE,
        "backing_file_depth": 0,
        "image": {"filename": filename, "format": drv, "virtual-size": size},
        "cache": {"writeback": writeback, "direct": False, "no-flush": False},
        "write_threshold": 0,
    }


@pytest.fixture
def b() -> Block:
    return Block()


# --- names (§1.2) ---------------------------------------------------------------------


def test_generated_names_follow_counter_and_two_random_digits(b: Block) -> None:
    """util/id.c id_generate: `#block` + process counter + 2 random digits; the
    counter advances per generated name."""
    b.drive("driver=null-co,if=none,id=d0")
    b.drive("driver=null-co,if=none,id=d1")
    names = [bs.node_name for bs in b.layer.nodes]
    assert [n[:7] for n in names] == ["#block0", "#block1"]
    assert all(len(n) == 9 and n[7:].isdigit() for n in names)


def test_generated_name_counter_advances_even_when_the_open_fails(b: Block) -> None:
    """bdrv_assign_node_name runs id_generate before the driver's open; a failed open
    still consumed the number (block.c bdrv_open_driver)."""
    with fails("latency-ns is invalid"):
        b.drive("driver=null-co,if=none,id=d0,latency-ns=-1")
    b.drive("driver=null-co,if=none,id=d1")
    assert b.layer.nodes[0].node_name.startswith("#block1")


@pytest.mark.parametrize("name", ["1bad", "", "a b", "#block1", "é"])
def test_invalid_node_name(b: Block, name: str) -> None:
    """bdrv_assign_node_name: a name not id_wellformed is `Invalid node name`."""
    assert b.error("blockdev-add", driver="null-co", **{"node-name": name}) == \
        ("GenericError", "Invalid node name")


def test_duplicate_node_name(b: Block) -> None:
    """bdrv_assign_node_name: `Duplicate node name`."""
    b.add(driver="null-co", **{"node-name": "n0"})
    assert b.error("blockdev-add", driver="null-co", **{"node-name": "n0"}) == \
        ("GenericError", "Duplicate node name")


def test_node_name_conflicting_with_device(b: Block) -> None:
    """bdrv_assign_node_name: a node named like a BlockBackend."""
    b.drive("if=none,id=d0")
    assert b.error("blockdev-add", driver="null-co", **{"node-name": "d0"}) == \
        ("GenericError", "node-name=d0 is conflicting with a device id")


def test_device_name_conflicting_with_node(b: Block) -> None:
    """monitor_add_blk: a -drive id that is already a node name."""
    b.add(driver="null-co", **{"node-name": "n0"})
    with fails("Device name 'n0' conflicts with an existing "
                                        "node name"):
        b.drive("if=none,id=n0")


def test_duplicate_device_name(b: Block) -> None:
    """monitor_add_blk: `Device with id '%s' already exists`."""
    b.drive("if=none,id=d0")
    with fails("Device with id 'd0' already exists"):
        b.drive("if=none,id=d0")


def test_invalid_device_name(b: Block) -> None:
    """monitor_add_blk: `Invalid device name`."""
    with fails("Invalid device name"):
        block_drive.add_drive(b.layer, {"if": "none", "id": "9x"})


# --- what creates what (§1.6) ------------------------------------------------------------


def test_empty_drive_is_a_named_backend_without_medium(b: Block) -> None:
    """§1.6 / §2.1: `-drive if=none,id=d0` without a file: BlockBackend, no node;
    query-block shows no `inserted`, `removable` true without a device."""
    b.drive("if=none,id=d0")
    assert b.qmp("query-block") == [{"device": "d0", "type": "unknown",
                                     "removable": True, "locked": False}]
    assert b.qmp("query-named-block-nodes") == []


def test_blockdev_add_creates_no_backend(b: Block) -> None:
    """§3.1: blockdev-add makes nodes only; query-block stays empty."""
    b.add(driver="null-co", **{"node-name": "n0"})
    assert b.qmp("query-block") == []
    assert b.qmp("query-named-block-nodes") == [null_node_info("n0")]


def test_blockdev_add_requires_a_root_node_name(b: Block) -> None:
    """qmp_blockdev_add: `'node-name' must be specified for the root node`."""
    assert b.error("blockdev-add", driver="null-co") == \
        ("GenericError", "'node-name' must be specified for the root node")


def test_drive_and_blockdev_build_the_same_node(b: Block) -> None:
    """-drive driver=null-co,node-name=n and blockdev-add give the same BlockDeviceInfo
    (bds_tree_init and blockdev_init apply the same defaults)."""
    b.drive("driver=null-co,if=none,id=d0,node-name=a")
    block_drive.add_blockdev(b.layer, {"driver": "null-co", "node-name": "b"})
    a, bb = b.node("a"), b.node("b")
    a.pop("node-name")
    bb.pop("node-name")
    assert a == bb


def test_blockdev_keyval_strings_are_typed(b: Block, schema: Any) -> None:
    """-blockdev keyval syntax: the strings are read by type (qobject input visitor in
    keyval mode), so `size=1048576` is a number in the json: file name."""
    block_drive.add_blockdev(b.layer, {"driver": "null-co", "node-name": "n0",
                                   "size": "1048576", "read-only": "on"},
                         keyval=True, schema=schema)
    info = b.node("n0")
    assert info["ro"] is True
    assert info["file"] == 'json:{"driver": "null-co", "size": 1048576}'


def test_query_named_block_nodes_is_newest_first(b: Block) -> None:
    """bdrv_named_nodes_list prepends while walking graph_bdrv_states."""
    for name in ("n0", "n1", "n2"):
        b.add(driver="null-co", **{"node-name": name})
    assert [i["node-name"] for i in b.qmp("query-named-block-nodes")] == ["n2", "n1", "n0"]


# --- query-block and query-blockstats members (§2) ----------------------------------------


def test_query_block_of_a_drive_member_by_member(b: Block) -> None:
    """§2.1/§2.2: a -drive with a medium and no device: `inserted` is the root's
    BlockDeviceInfo; no qdev, no tray, no io-status."""
    b.drive("driver=null-co,if=none,id=d0,node-name=n0")
    assert b.qmp("query-block") == [{
        "device": "d0", "type": "unknown", "removable": True, "locked": False,
        "inserted": null_node_info("n0")}]


def test_query_blockstats_of_backends(b: Block) -> None:
    """§2.4: one entry per named BlockBackend; an empty one has device and stats
    only (accounting flags false: block_acct_setup never ran); a -drive with a
    medium accounts invalid and failed requests by default."""
    b.drive("if=none,id=d0")
    b.drive("driver=null-co,if=none,id=d1,node-name=n1")
    assert b.qmp("query-blockstats") == [
        {"device": "d0", "stats": ZERO_STATS},
        {"device": "d1", "node-name": "n1",
         "stats": dict(ZERO_STATS, account_invalid=True, account_failed=True)},
    ]


def test_query_blockstats_query_nodes(b: Block) -> None:
    """§2.4: `query-nodes: true`: one entry per node in creation order, no device,
    `parent` for the file child, never `backing`."""
    b.add(driver="null-co", **{"node-name": "n0"})
    b.add(driver="raw", **{"node-name": "r0", "file": "n0"})
    assert b.qmp("query-blockstats", **{"query-nodes": True}) == [
        {"node-name": "n0", "stats": ZERO_STATS},
        {"node-name": "r0", "stats": ZERO_STATS,
         "parent": {"node-name": "n0", "stats": ZERO_STATS}},
    ]


def test_stats_intervals_give_timed_stats(b: Block) -> None:
    """blockdev_init parse_stats_intervals: each interval has its timed_stats entry,
    in the order given; all zero before any I/O."""
    b.drive("driver=null-co,if=none,id=d0,stats-intervals.0=60,stats-intervals.1=3600")
    stats = b.qmp("query-blockstats")[0]["stats"]
    assert [t["interval_length"] for t in stats["timed_stats"]] == [60, 3600]
    assert stats["timed_stats"][0]["avg_rd_queue_depth"] == 0.0


def test_invalid_stats_interval(b: Block) -> None:
    """parse_stats_intervals: `Invalid interval length: %s`."""
    with fails("Invalid interval length: 0"):
        b.drive("driver=null-co,if=none,id=d0,stats-intervals.0=0")


def test_json_filename_for_driver_options(b: Block) -> None:
    """bdrv_refresh_filename: driver options that a plain name cannot express give
    `json:{...}` in QDict hash order; a null-co without options is `null-co://`;
    a raw on it inherits the json: name through full_open_options."""
    b.add(driver="null-co", **{"node-name": "n0", "size": 1048576})
    b.add(driver="raw", **{"node-name": "r0", "file": "n0"})
    assert b.node("n0")["file"] == 'json:{"driver": "null-co", "size": 1048576}'
    assert b.node("r0")["file"] == \
        'json:{"driver": "raw", "file": {"driver": "null-co", "size": 1048576}}'


def test_drive_options_are_strings_in_json_filename(b: Block) -> None:
    """-drive options are QStrings: iotests 186's `json:{"driver": "null-co",
    "size": "1M"}`."""
    b.drive("driver=null-co,if=none,id=d0,size=1M,node-name=n0")
    assert b.node("n0")["file"] == 'json:{"driver": "null-co", "size": "1M"}'
    assert b.node("n0")["image"]["virtual-size"] == 1 << 20


def test_unknown_option_of_a_protocol_driver(b: Block) -> None:
    """bdrv_open_inherit: leftovers of a protocol driver: `Block protocol '%s'
    doesn't support the option '%s'`."""
    with fails("Block protocol 'null-co' doesn't support the "
                                        "option 'bogus'"):
        b.drive("driver=null-co,if=none,id=d0,bogus=1")


def test_unknown_option_of_a_format_driver(b: Block) -> None:
    """bdrv_open_inherit: `Block format '%s' does not support the option '%s'`."""
    with fails("Block format 'raw' does not support the option "
                                        "'bogus'"):
        b.drive("driver=raw,file.driver=null-co,if=none,id=d0,bogus=1")


def test_unknown_driver_on_the_command_line(b: Block) -> None:
    """bdrv_fill_options: `Unknown driver '%s'` (QMP catches it earlier in the enum)."""
    with fails("Unknown driver 'nosuch'"):
        b.drive("driver=nosuch,if=none,id=d0")


def test_format_and_driver_together(b: Block) -> None:
    """blockdev_init: `Cannot specify both 'driver' and 'format'`."""
    with fails("Cannot specify both 'driver' and 'format'"):
        b.drive("driver=null-co,format=raw,if=none,id=d0")


def test_force_share_needs_read_only(b: Block) -> None:
    """bdrv_open_common: `force-share=on can only be used with read-only images`."""
    assert b.error("blockdev-add", driver="null-co",
                   **{"node-name": "n0", "force-share": True}) == \
        ("GenericError", "force-share=on can only be used with read-only images")


def test_detect_zeroes_unmap_needs_discard_unmap(b: Block) -> None:
    """bdrv_open_common: detect-zeroes=unmap without discard=unmap."""
    assert b.error("blockdev-add", driver="null-co",
                   **{"node-name": "n0", "detect-zeroes": "unmap"}) == \
        ("GenericError", "setting detect-zeroes to unmap is not allowed without setting "
                         "discard operation to unmap")


def test_detect_zeroes_and_cache_show_in_query(b: Block) -> None:
    """BlockDeviceInfo detect_zeroes and cache.direct/no-flush come from the node;
    cache.writeback is true for a node without BlockBackend."""
    b.add(driver="null-co", **{"node-name": "n0", "detect-zeroes": "on",
                               "cache": {"direct": True, "no-flush": True}})
    info = b.node("n0")
    assert info["detect_zeroes"] == "on"
    assert info["cache"] == {"writeback": True, "direct": True, "no-flush": True}


def test_drive_cache_modes(b: Block) -> None:
    """drive_new: cache=none is writeback + direct; cache=writethrough clears the
    BlockBackend's write cache (shown as cache.writeback in query-block)."""
    b.drive("driver=null-co,if=none,id=d0,cache=none")
    b.drive("driver=null-co,if=none,id=d1,cache=writethrough")
    assert b.block("d0")["inserted"]["cache"] == \
        {"writeback": True, "direct": True, "no-flush": False}
    assert b.block("d1")["inserted"]["cache"] == \
        {"writeback": False, "direct": False, "no-flush": False}


def test_drive_readonly_alias(b: Block) -> None:
    """drive_new renames `readonly` to `read-only`; both at once is an error."""
    b.drive("driver=null-co,if=none,id=d0,readonly=on")
    assert b.block("d0")["inserted"]["ro"] is True
    with fails("'read-only' and its alias 'readonly' can't be "
                                        "used at the same time"):
        b.drive("driver=null-co,if=none,id=d1,readonly=on,read-only=on")


# --- blockdev-del (§3.2) -----------------------------------------------------------------


def test_blockdev_del_success(b: Block) -> None:
    """qmp_blockdev_del: the node and its unused children go; no event."""
    b.add(driver="raw", **{"node-name": "r0", "file": {"driver": "null-co"}})
    assert len(b.layer.nodes) == 2
    b.qmp("blockdev-del", **{"node-name": "r0"})
    assert b.layer.nodes == []
    assert b.events() == []


def test_blockdev_del_unknown(b: Block) -> None:
    """qmp_blockdev_del check 1: `Cannot find node %s`."""
    assert b.error("blockdev-del", **{"node-name": "n0"}) == \
        ("GenericError", "Cannot find node n0")


def test_blockdev_del_node_of_a_backend(b: Block) -> None:
    """check 2: a node with a BlockBackend parent: `Node %s is in use`."""
    b.drive("driver=null-co,if=none,id=d0,node-name=n0")
    assert b.error("blockdev-del", **{"node-name": "n0"}) == \
        ("GenericError", "Node n0 is in use")


def test_blockdev_del_op_blocker(b: Block) -> None:
    """check 3: an op blocker on drive-del: `Node '<name>' is busy: <reason>`."""
    b.add(driver="null-co", **{"node-name": "n0"})
    b.layer.find_node("n0").op_block("drive-del", Reason("testing"))  # type: ignore[union-attr]
    assert b.error("blockdev-del", **{"node-name": "n0"}) == \
        ("GenericError", "Node 'n0' is busy: testing")


def test_blockdev_del_child_not_owned_by_monitor(b: Block) -> None:
    """check 4: a child node opened implicitly is `not owned by the monitor`."""
    b.add(driver="raw", **{"node-name": "r0", "file": {"driver": "null-co",
                                                       "node-name": "f0"}})
    assert b.error("blockdev-del", **{"node-name": "f0"}) == \
        ("GenericError", "Node f0 is not owned by the monitor")


def test_blockdev_del_referenced_node(b: Block) -> None:
    """check 5: a monitor-owned node used as another node's file:
    `Block device %s is in use`."""
    b.add(driver="null-co", **{"node-name": "n0"})
    b.add(driver="raw", **{"node-name": "r0", "file": "n0"})
    assert b.error("blockdev-del", **{"node-name": "n0"}) == \
        ("GenericError", "Block device n0 is in use")


def test_format_without_file_child(b: Block) -> None:
    """bdrv_open_child (allow_none false in raw_open): a format needs its file."""
    assert b.error("blockdev-add", driver="raw", **{"node-name": "r0"}) == \
        ("GenericError", 'A block device must be specified for "file"')


# --- permissions (§1.5) -----------------------------------------------------------------


def test_two_writers_on_one_node_conflict(b: Block) -> None:
    """bdrv_check_update_perm: a second virtio-blk on a node the first one writes
    without sharing write: the first user is named by its device path."""
    b.add(driver="null-co", **{"node-name": "n0"})
    b.device("virtio-blk-pci", drive="n0", id="vd0")
    with pytest.raises(Exception, match=r"^Conflicts with use by "
                                        r"/machine/peripheral/vd0/virtio-backend as 'root', "
                                        r"which does not allow 'write' on n0$"):
        b.device("virtio-blk-pci", drive="n0", id="vd1")


def test_share_rw_lets_two_writers_share(b: Block) -> None:
    """blkconf_apply_backend_options: share-rw=on shares write."""
    b.add(driver="null-co", **{"node-name": "n0"})
    b.device("virtio-blk-pci", drive="n0", id="vd0", **{"share-rw": "on"})
    b.device("virtio-blk-pci", drive="n0", id="vd1", **{"share-rw": "on"})
    assert [i["qdev"] for i in b.qmp("query-block")] == [
        "/machine/peripheral/vd0/virtio-backend", "/machine/peripheral/vd1/virtio-backend"]


def test_drive_backend_named_in_conflict(b: Block) -> None:
    """blk_root_get_parent_desc: a named BlockBackend is named by its name."""
    b.drive("driver=null-co,if=none,id=d0,node-name=n0")
    b.device("virtio-blk-pci", drive="d0")
    with fails("Conflicts with use by d0 as 'root', which does "
                                        "not allow 'write' on n0"):
        b.device("virtio-blk-pci", drive="n0")


def test_device_attached_to_node_gets_anonymous_backend(b: Block) -> None:
    """§1.6: drive=<node-name> makes an anonymous BlockBackend: device "" in
    query-block, no io-status (report/report policies, §8.3)."""
    b.add(driver="null-co", **{"node-name": "n0"})
    b.device("virtio-blk-pci", drive="n0")
    info = b.qmp("query-block")[0]
    assert info["device"] == ""
    assert info["qdev"] == "/machine/peripheral-anon/device[0]/virtio-backend"
    assert "io-status" not in info
    assert info["removable"] is False
    assert b.qmp("query-blockstats") == []
