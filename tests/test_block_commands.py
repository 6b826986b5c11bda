"""The non-media block commands: block_set_io_throttle, block-set-write-threshold,
dirty bitmaps, block_resize, block_passwd, internal snapshots, blockdev-snapshot,
blockdev-snapshot-sync's checks, change-backing-file and x-blockdev-change.

One test per success path and per QEMU error message (block.md §3.3 to §3.10, and
the source functions the docstrings name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blockdev.graph import Reason
from tests.test_block_support import Block, create_image, fails, make_image, needs_qemu_img


@pytest.fixture
def b() -> Block:
    return Block()


@pytest.fixture
def d0(b: Block) -> Block:
    """-drive d0 (null-co, node n0) used by a virtio-blk device vd0."""
    b.drive("driver=null-co,if=none,id=d0,node-name=n0")
    b.device("virtio-blk-pci", drive="d0", id="vd0")
    return b


def throttle(**values: Any) -> dict[str, Any]:
    base = {"bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}
    base.update(values)
    return base


# --- block_set_io_throttle (§3.5) -----------------------------------------------------------


def test_throttle_enable_shows_group_and_limits(d0: Block) -> None:
    """§3.5: non-zero limits enable throttling in a group named after the device;
    a burst rate shows with its length (default 1)."""
    d0.qmp("block_set_io_throttle", device="d0", **throttle(bps=1000, bps_max=2000))
    inserted = d0.block("d0")["inserted"]
    assert {k: inserted[k] for k in ("bps", "bps_max", "bps_max_length", "group")} == \
        {"bps": 1000, "bps_max": 2000, "bps_max_length": 1, "group": "d0"}
    assert "iops_size" not in inserted and "iops_max" not in inserted


def test_throttle_by_id_names_group_after_id(d0: Block) -> None:
    """qmp_block_set_io_throttle: group defaults to device, else id."""
    d0.qmp("block_set_io_throttle", id="vd0", **throttle(iops=10, iops_size=4096))
    inserted = d0.block("d0")["inserted"]
    assert (inserted["group"], inserted["iops"], inserted["iops_size"]) == ("vd0", 10, 4096)


def test_throttle_all_zero_disables(d0: Block) -> None:
    """§3.5: all-zero limits disable throttling; `group` disappears."""
    d0.qmp("block_set_io_throttle", device="d0", **throttle(bps=1000))
    d0.qmp("block_set_io_throttle", device="d0", **throttle())
    assert "group" not in d0.block("d0")["inserted"]
    assert d0.layer.throttle_groups.groups == {}


def test_throttle_group_members_share_limits(b: Block) -> None:
    """block/throttle-groups.c: a group has one configuration for all its members."""
    b.drive("driver=null-co,if=none,id=d0")
    b.drive("driver=null-co,if=none,id=d1")
    b.qmp("block_set_io_throttle", device="d0", group="g", **throttle(bps=100))
    b.qmp("block_set_io_throttle", device="d1", group="g", **throttle(bps=500))
    assert [b.block(d)["inserted"]["bps"] for d in ("d0", "d1")] == [500, 500]


def test_throttle_from_drive_options(b: Block) -> None:
    """drive_new's renames: bps=, group= become throttling.* options."""
    b.drive("driver=null-co,if=none,id=d0,bps=4096,group=grp")
    inserted = b.block("d0")["inserted"]
    assert (inserted["bps"], inserted["group"]) == (4096, "grp")


def test_throttle_no_medium(b: Block) -> None:
    """qmp_block_set_io_throttle: `Device has no medium`."""
    b.drive("if=none,id=d0")
    assert b.error("block_set_io_throttle", device="d0", **throttle(bps=1)) == \
        ("GenericError", "Device has no medium")


def test_throttle_checks_in_qemu_order(b: Block) -> None:
    """qmp_block_set_io_throttle looks the BlockBackend up first (qmp_get_blk, with
    blk_by_qdev_id's `Device does not have a block device backend` for a device
    without one), then wants a medium (`Device has no medium`), and only then checks
    the limits (throttle_is_valid) [blockdev.c qmp_block_set_io_throttle, qmp_get_blk;
    qdev-monitor.c blk_by_qdev_id, find_device_state]."""
    bad = throttle(bps=1, iops_size=512)  # `iops size requires an iops value to be set`
    b.host.qom["/machine/peripheral/nic0"] = True  # a device with no BlockBackend
    b.host.qom["/machine"] = False  # an object that is not a device
    b.device("ide-cd", id="cd0")  # an empty CD-ROM: a BlockBackend without medium
    b.drive("driver=null-co,if=none,id=d0")
    assert b.error("block_set_io_throttle", device="d0", id="cd0", **bad) == \
        ("GenericError", "Need exactly one of 'device' and 'id'")
    assert b.error("block_set_io_throttle", id="nic1", **bad) == \
        ("DeviceNotFound", "Device 'nic1' not found")
    assert b.error("block_set_io_throttle", id="/machine", **bad) == \
        ("GenericError", "/machine is not a hotpluggable device")
    assert b.error("block_set_io_throttle", id="nic0", **bad) == \
        ("GenericError", "Device does not have a block device backend")
    assert b.error("block_set_io_throttle", id="cd0", **bad) == \
        ("GenericError", "Device has no medium")
    assert b.error("block_set_io_throttle", device="d0", **bad) == \
        ("GenericError", "iops size requires an iops value to be set")


@pytest.mark.parametrize(("values", "message"), [
    (throttle(bps=1, bps_rd=1), "bps/iops/max total values and read/write values cannot "
                                "be used at the same time"),
    (throttle(iops=5, bps_max=1, bps_rd_max=1),
     "bps/iops/max total values and read/write values cannot be used at the same time"),
    (throttle(bps=1, iops_size=512), "iops size requires an iops value to be set"),
    (throttle(bps=10**15 + 1), "bps/iops/max values must be within [0, 1000000000000000]"),
    (throttle(bps=-1), "bps/iops/max values must be within [0, 1000000000000000]"),
    (throttle(bps=1, bps_max=2, bps_max_length=0), "the burst length cannot be 0"),
    (throttle(bps=1, bps_max_length=2), "burst length set without burst rate"),
    (throttle(bps=10, bps_max=10**14, bps_max_length=11),
     "burst length too high for this burst rate"),
    (throttle(iops=1, bps_max=2), "bps_max/iops_max require corresponding bps/iops values"),
    (throttle(bps=10, bps_max=5), "bps_max/iops_max cannot be lower than bps/iops"),
])
def test_throttle_validation(d0: Block, values: dict[str, Any], message: str) -> None:
    """util/throttle.c throttle_is_valid, each message in its order."""
    assert d0.error("block_set_io_throttle", device="d0", **values) == \
        ("GenericError", message)


# --- write threshold (§3.6) -----------------------------------------------------------------


def test_write_threshold_fires_once_and_disarms(d0: Block) -> None:
    """§3.6: a write ending past the threshold sends BLOCK_WRITE_THRESHOLD with
    amount-exceeded = end - threshold, then the threshold is 0."""
    from blockdev import guest_io

    d0.qmp("block-set-write-threshold", **{"node-name": "n0", "write-threshold": 1 << 20})
    assert d0.block("d0")["inserted"]["write_threshold"] == 1 << 20
    blk = d0.layer.blk_by_name("d0")
    assert blk is not None
    guest_io.submit(d0.layer, blk, guest_io.Request("write", 0, 4096))
    assert d0.events() == []
    guest_io.submit(d0.layer, blk, guest_io.Request("write", 0, 2 << 20))
    assert d0.events() == [("BLOCK_WRITE_THRESHOLD", {
        "node-name": "n0", "amount-exceeded": 1 << 20, "write-threshold": 1 << 20})]
    guest_io.submit(d0.layer, blk, guest_io.Request("write", 4 << 20, 4096))
    assert d0.events() == []
    assert d0.block("d0")["inserted"]["write_threshold"] == 0


def test_write_threshold_beyond_offset(d0: Block) -> None:
    """bdrv_write_threshold_exceeded: a write starting past the threshold counts
    offset - threshold + bytes."""
    from blockdev import guest_io

    d0.qmp("block-set-write-threshold", **{"node-name": "n0", "write-threshold": 1000})
    blk = d0.layer.blk_by_name("d0")
    assert blk is not None
    guest_io.submit(d0.layer, blk, guest_io.Request("write", 4096, 512))
    assert d0.events()[0][1]["amount-exceeded"] == 4096 - 1000 + 512


def test_write_threshold_unknown_node(d0: Block) -> None:
    """qmp_block_set_write_threshold: exact node names only, `Device '%s' not found`."""
    assert d0.error("block-set-write-threshold",
                    **{"node-name": "d0", "write-threshold": 1}) == \
        ("GenericError", "Device 'd0' not found")


# --- dirty bitmaps (§3.7) -------------------------------------------------------------------


def test_bitmap_add_query_clear_remove(d0: Block) -> None:
    """§3.7: bitmaps show newest first in query-block; writes dirty them; clear
    empties; remove deletes."""
    from blockdev import guest_io

    d0.qmp("block-dirty-bitmap-add", node="d0", name="a")
    d0.qmp("block-dirty-bitmap-add", node="n0", name="b", granularity=512)
    blk = d0.layer.blk_by_name("d0")
    assert blk is not None
    guest_io.submit(d0.layer, blk, guest_io.Request("write", 0, 1024))
    assert d0.block("d0")["dirty-bitmaps"] == [
        {"name": "b", "count": 1024, "granularity": 512, "status": "active"},
        {"name": "a", "count": 65536, "granularity": 65536, "status": "active"}]
    d0.qmp("block-dirty-bitmap-clear", node="d0", name="a")
    assert d0.block("d0")["dirty-bitmaps"][1]["count"] == 0
    d0.qmp("block-dirty-bitmap-remove", node="d0", name="a")
    d0.qmp("block-dirty-bitmap-remove", node="n0", name="b")
    assert "dirty-bitmaps" not in d0.block("d0")


@needs_qemu_img
def test_bitmap_default_granularity_follows_cluster_size(b: Block, tmp_path: Path) -> None:
    """bdrv_get_default_bitmap_granularity: cluster size clamped to [4K, 64K]."""
    img = make_image(tmp_path / "small.qcow2", "qcow2", "16M", "-o", "cluster_size=512")
    b.drive(f"file={img},if=none,id=d0")
    b.qmp("block-dirty-bitmap-add", node="d0", name="a")
    assert b.block("d0")["dirty-bitmaps"][0]["granularity"] == 4096


@pytest.mark.parametrize(("args", "message"), [
    ({"node": "d0", "name": ""}, "Bitmap name cannot be empty"),
    ({"node": "x", "name": "a"}, "Cannot find device=x nor node_name=x"),
    ({"node": "d0", "name": "a", "granularity": 256},
     "Granularity must be power of 2 and at least 512"),
    ({"node": "d0", "name": "a", "granularity": 1000},
     "Granularity must be power of 2 and at least 512"),
    ({"node": "d0", "name": "a", "autoload": True},
     "Autoload flag must be used only for persistent bitmaps"),
    ({"node": "d0", "name": "a", "persistent": True},
     "Can't store persistent bitmaps to d0: Operation not supported"),
])
def test_bitmap_add_errors(d0: Block, args: dict[str, Any], message: str) -> None:
    """qmp_block_dirty_bitmap_add, each message."""
    assert d0.error("block-dirty-bitmap-add", **args) == ("GenericError", message)


def test_bitmap_add_duplicate(d0: Block) -> None:
    """bdrv_create_dirty_bitmap: `Bitmap already exists: %s`."""
    d0.qmp("block-dirty-bitmap-add", node="d0", name="a")
    assert d0.error("block-dirty-bitmap-add", node="d0", name="a") == \
        ("GenericError", "Bitmap already exists: a")


def test_bitmap_lookup_errors(d0: Block) -> None:
    """block_dirty_bitmap_lookup: `Node '%s' not found` (not the add text) and
    `Dirty bitmap '%s' not found`."""
    for cmd in ("block-dirty-bitmap-remove", "block-dirty-bitmap-clear"):
        assert d0.error(cmd, node="x", name="a") == ("GenericError", "Node 'x' not found")
        assert d0.error(cmd, node="d0", name="a") == \
            ("GenericError", "Dirty bitmap 'a' not found")


def test_bitmap_frozen_disabled_readonly(d0: Block) -> None:
    """remove/clear of a frozen bitmap; clear of a disabled or read-only one."""
    from blockdev.bitmaps import DirtyBitmap

    d0.qmp("block-dirty-bitmap-add", node="d0", name="a")
    bm = d0.layer.find_dirty_bitmap(d0.layer.find_node("n0"), "a")  # type: ignore[arg-type]
    assert bm is not None
    bm.successor = DirtyBitmap(name=None, granularity=bm.granularity, size=bm.size)
    assert d0.error("block-dirty-bitmap-remove", node="d0", name="a") == \
        ("GenericError", "Bitmap 'a' is currently frozen and cannot be removed")
    assert d0.error("block-dirty-bitmap-clear", node="d0", name="a") == \
        ("GenericError", "Bitmap 'a' is currently frozen and cannot be modified")
    assert d0.block("d0")["dirty-bitmaps"][0]["status"] == "frozen"
    bm.successor = None
    bm.disabled = True
    assert d0.error("block-dirty-bitmap-clear", node="d0", name="a") == \
        ("GenericError", "Bitmap 'a' is currently disabled and cannot be cleared")
    bm.disabled, bm.readonly = False, True
    assert d0.error("block-dirty-bitmap-clear", node="d0", name="a") == \
        ("GenericError", "Bitmap 'a' is readonly and cannot be cleared")


@needs_qemu_img
def test_persistent_bitmap_on_qcow2(b: Block, tmp_path: Path) -> None:
    """qcow2_can_store_new_dirty_bitmap: qcow2 takes persistent bitmaps (kept in the
    emulator's model of the image)."""
    img = make_image(tmp_path / "img.qcow2", "qcow2")
    b.drive(f"file={img},if=none,id=d0")
    b.qmp("block-dirty-bitmap-add", node="d0", name="p", persistent=True, autoload=True)
    assert b.block("d0")["dirty-bitmaps"][0]["name"] == "p"


# --- block_resize and block_passwd (§3.3, §3.4) -------------------------------------------------


@pytest.fixture
def r(b: Block, tmp_path: Path) -> Block:
    """d0 on a real raw file (node r0), used by vd0."""
    img = make_image(tmp_path / "img.raw", "raw", "1M")
    b.drive(f"file={img},format=raw,if=none,id=d0,node-name=r0")
    b.device("virtio-blk-pci", drive="d0", id="vd0")
    return b


@needs_qemu_img
def test_block_resize(r: Block, tmp_path: Path) -> None:
    """qmp_block_resize: the new size shows at once (model only: the file keeps its
    length); no event."""
    r.qmp("block_resize", device="d0", size=2 << 30)
    assert r.block("d0")["inserted"]["image"]["virtual-size"] == 2 << 30
    r.qmp("block_resize", **{"node-name": "r0", "size": 0})
    assert r.block("d0")["inserted"]["image"]["virtual-size"] == 0
    assert (tmp_path / "img.raw").stat().st_size == 1 << 20
    assert r.events() == []


def test_block_resize_negative(d0: Block) -> None:
    """`Parameter 'size' expects a >0 size`."""
    assert d0.error("block_resize", device="d0", size=-1) == \
        ("GenericError", "Parameter 'size' expects a >0 size")


def test_block_resize_lookup(d0: Block) -> None:
    """bdrv_lookup_bs with device and node-name."""
    assert d0.error("block_resize", device="x", size=1) == \
        ("GenericError", "Cannot find device=x nor node_name=")


def test_block_resize_blocked(d0: Block) -> None:
    """A blocked resize: `Device '<device>' is in use`, `(null)` without device."""
    d0.layer.find_node("n0").op_block("resize", Reason("job"))  # type: ignore[union-attr]
    assert d0.error("block_resize", device="d0", size=1) == \
        ("GenericError", "Device 'd0' is in use")
    assert d0.error("block_resize", **{"node-name": "n0", "size": 1}) == \
        ("GenericError", "Device '(null)' is in use")


def test_block_resize_driver_without_truncate(d0: Block) -> None:
    """bdrv_truncate: null-co has no truncate: `Image format driver does not support
    resize`."""
    assert d0.error("block_resize", device="d0", size=1 << 20) == \
        ("GenericError", "Image format driver does not support resize")


@needs_qemu_img
def test_block_resize_read_only(b: Block, tmp_path: Path) -> None:
    """bdrv_truncate: `Image is read-only`."""
    img = make_image(tmp_path / "img.qcow2", "qcow2")
    b.drive(f"file={img},if=none,id=d0,readonly=on")
    assert b.error("block_resize", device="d0", size=1 << 20) == \
        ("GenericError", "Image is read-only")


def test_block_resize_below_a_filter(b: Block) -> None:
    """qmp_block_resize below blkdebug (which does not pass the first-non-filter
    search on): `The feature 'resize' is not enabled`."""
    b.add(driver="blkdebug", **{"node-name": "dbg", "image": {"driver": "null-co",
                                                              "node-name": "n0"}})
    b.device("virtio-blk-pci", drive="dbg")
    assert b.error("block_resize", **{"node-name": "n0", "size": 1}) == \
        ("GenericError", "The feature 'resize' is not enabled")


@needs_qemu_img
def test_block_resize_unsupported_format(b: Block, tmp_path: Path) -> None:
    """bdrv_truncate: `Image format driver does not support resize` (vpc)."""
    img = make_image(tmp_path / "img.vpc", "vpc")
    b.drive(f"file={img},if=none,id=d0")
    assert b.error("block_resize", device="d0", size=64 << 20) == \
        ("GenericError", "Image format driver does not support resize")


@needs_qemu_img
def test_block_resize_cdrom_conflicts_with_device(b: Block, tmp_path: Path) -> None:
    """An ide-cd does not share resize: the temporary BlockBackend's resize
    permission conflicts with it."""
    img = make_image(tmp_path / "img.raw", "raw", "1M")
    b.drive(f"file={img},format=raw,if=none,id=cd0")
    b.device("ide-cd", drive="cd0", id="ide0")
    root = b.block("cd0")["inserted"]["node-name"]
    assert b.error("block_resize", device="cd0", size=1 << 20) == (
        "GenericError", f"Conflicts with use by cd0 as 'root', which does not allow "
                        f"'resize' on {root}")


@needs_qemu_img
def test_block_resize_qcow2_whole_sectors(b: Block, tmp_path: Path) -> None:
    """qcow2_truncate: `The new size must be a multiple of 512`. It is the driver's
    check, so it comes after qmp_block_resize's own (`a >0 size`) and after
    bdrv_truncate's (`Image is read-only`) [blockdev.c qmp_block_resize, block.c
    bdrv_truncate, block/qcow2.c qcow2_truncate]."""
    img = make_image(tmp_path / "img.qcow2", "qcow2", "1M")
    b.drive(f"file={img},if=none,id=d0")
    b.drive(f"file={img},if=none,id=ro,readonly=on,file.locking=off")
    assert b.error("block_resize", device="d0", size=(2 << 20) + 100) == \
        ("GenericError", "The new size must be a multiple of 512")
    assert b.error("block_resize", device="d0", size=-100) == \
        ("GenericError", "Parameter 'size' expects a >0 size")
    assert b.error("block_resize", device="ro", size=(2 << 20) + 100) == \
        ("GenericError", "Image is read-only")
    assert b.block("d0")["inserted"]["image"]["virtual-size"] == 1 << 20
    b.qmp("block_resize", device="d0", size=(2 << 20) + 512)
    assert b.block("d0")["inserted"]["image"]["virtual-size"] == (2 << 20) + 512


@needs_qemu_img
def test_block_resize_raw_rounds_up(r: Block) -> None:
    """raw has no sector check: bdrv_truncate's refresh_total_sectors rounds the new
    length up to whole sectors [block/raw-format.c raw_truncate, block.c
    bdrv_truncate]."""
    r.qmp("block_resize", device="d0", size=(2 << 20) + 100)
    assert r.block("d0")["inserted"]["image"]["virtual-size"] == (2 << 20) + 512


def test_block_passwd(d0: Block) -> None:
    """qmp_block_passwd in 2.11."""
    assert d0.error("block_passwd", device="d0", password="x") == \
        ("GenericError", "Setting block passwords directly is no longer supported")


# --- internal snapshots (§3.8) ----------------------------------------------------------------


@pytest.fixture
def q(b: Block, tmp_path: Path) -> Block:
    """d0 on a real qcow2 (node q0), used by vd0."""
    img = make_image(tmp_path / "img.qcow2", "qcow2")
    b.drive(f"file={img},if=none,id=d0,node-name=q0")
    b.device("virtio-blk-pci", drive="d0", id="vd0")
    return b


@needs_qemu_img
def test_internal_snapshot_create_and_delete(q: Block) -> None:
    """Snapshots get ids "1", "2" ...; they show in ImageInfo.snapshots; delete returns
    the SnapshotInfo."""
    q.host.vm_clock = 2_500_000_000
    q.qmp("blockdev-snapshot-internal-sync", device="d0", name="s1")
    q.qmp("blockdev-snapshot-internal-sync", device="d0", name="s2")
    snaps = q.block("d0")["inserted"]["image"]["snapshots"]
    assert [(s["id"], s["name"], s["vm-state-size"]) for s in snaps] == \
        [("1", "s1", 0), ("2", "s2", 0)]
    assert snaps[0]["vm-clock-sec"] == 2 and snaps[0]["vm-clock-nsec"] == 500_000_000
    deleted = q.qmp("blockdev-snapshot-delete-internal-sync", device="d0", name="s1")
    assert deleted == snaps[0]
    q.qmp("blockdev-snapshot-internal-sync", device="d0", name="s3")
    ids = [s["id"] for s in q.block("d0")["inserted"]["image"]["snapshots"]]
    assert ids == ["2", "3"]


@needs_qemu_img
def test_internal_snapshot_vm_clock_is_the_virtual_clock(q: Block) -> None:
    """internal_snapshot_prepare: vm-clock-* is qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL),
    the guest's clock, not the host's: a VM that never ran has 0 and 0, whatever time
    it is [blockdev.c internal_snapshot_prepare; block/qapi.c bdrv_query_snapshot_info_list
    splits the nanoseconds]."""
    q.host.clock.t = 7.25
    q.qmp("blockdev-snapshot-internal-sync", device="d0", name="s1")
    [snap] = q.block("d0")["inserted"]["image"]["snapshots"]
    assert (snap["vm-clock-sec"], snap["vm-clock-nsec"]) == (0, 0)
    assert snap["date-sec"] == int(q.host.clock.wall())


def test_internal_snapshot_of_a_machine(vm_factory: Any, tmp_path: Path) -> None:
    """The Machine's QEMU_CLOCK_VIRTUAL runs only while the VM runs [cpus.c
    cpu_enable_ticks in vm_start, cpu_disable_ticks in do_vm_stop]: started with -S,
    a snapshot has vm-clock 0 and 0 however long the machine waited; after 1.25 s of
    running and 10 s stopped, it has 1 s and 250 000 000 ns."""
    img = tmp_path / "d.qcow2"
    create_image(str(img), "qcow2", 1 << 20)
    vm = vm_factory(start_paused=True)
    talk = vm.talk()
    assert talk.execute("blockdev-add", {
        "driver": "qcow2", "node-name": "q0",
        "file": {"driver": "file", "filename": str(img)}}) == {"return": {}}

    def snapshot(name: str) -> tuple[int, int]:
        assert talk.execute("blockdev-snapshot-internal-sync",
                            {"device": "q0", "name": name}) == {"return": {}}
        nodes = talk.execute("query-named-block-nodes")["return"]
        [node] = [n for n in nodes if n["node-name"] == "q0"]
        snap = node["image"]["snapshots"][-1]
        return snap["vm-clock-sec"], snap["vm-clock-nsec"]

    vm.tick(5)
    assert snapshot("s1") == (0, 0)
    talk.execute("cont")
    vm.tick(1.25)
    talk.execute("stop")
    vm.tick(10)
    assert snapshot("s2") == (1, 250_000_000)
    vm.vm.block.close_all()


@needs_qemu_img
def test_internal_snapshot_errors(q: Block) -> None:
    """internal_snapshot_prepare: empty name, duplicate name."""
    assert q.error("blockdev-snapshot-internal-sync", device="d0", name="") == \
        ("GenericError", "Name is empty")
    q.qmp("blockdev-snapshot-internal-sync", device="d0", name="s")
    assert q.error("blockdev-snapshot-internal-sync", device="d0", name="s") == \
        ("GenericError", "Snapshot with name 's' already exists on device 'd0'")


def test_internal_snapshot_unsupported_format(d0: Block) -> None:
    """`Block format '%s' used by device '%s' does not support internal snapshots`."""
    assert d0.error("blockdev-snapshot-internal-sync", device="d0", name="s") == \
        ("GenericError", "Block format 'null-co' used by device 'd0' does not support "
                         "internal snapshots")


def test_internal_snapshot_read_only(b: Block) -> None:
    """`Device '%s' is read only`."""
    b.drive("driver=null-co,if=none,id=d0,readonly=on")
    assert b.error("blockdev-snapshot-internal-sync", device="d0", name="s") == \
        ("GenericError", "Device 'd0' is read only")


def test_internal_snapshot_root_lookup(b: Block) -> None:
    """qmp_get_root_bs: unknown name, non-root node, no medium."""
    b.drive("if=none,id=empty")
    b.add(driver="raw", **{"node-name": "r0", "file": {"driver": "null-co",
                                                       "node-name": "f0"}})
    assert b.error("blockdev-snapshot-internal-sync", device="x", name="s") == \
        ("GenericError", "Cannot find device=x nor node_name=x")
    assert b.error("blockdev-snapshot-internal-sync", device="f0", name="s") == \
        ("GenericError", "Need a root block node")
    assert b.error("blockdev-snapshot-internal-sync", device="empty", name="s") == \
        ("GenericError", "Device 'empty' has no medium")


@needs_qemu_img
def test_internal_snapshot_delete_errors(q: Block) -> None:
    """qmp_blockdev_snapshot_delete_internal_sync: neither given; not found with
    `null` for the missing part."""
    assert q.error("blockdev-snapshot-delete-internal-sync", device="d0") == \
        ("GenericError", "Name or id must be provided")
    assert q.error("blockdev-snapshot-delete-internal-sync", device="d0", name="x") == \
        ("GenericError", "Snapshot with id 'null' and name 'x' does not exist on device 'd0'")
    assert q.error("blockdev-snapshot-delete-internal-sync", device="d0", id="7") == \
        ("GenericError", "Snapshot with id '7' and name 'null' does not exist on device 'd0'")


def test_internal_snapshot_blocked(d0: Block) -> None:
    """op blocker internal-snapshot: the busy error."""
    d0.layer.find_node("n0").op_block("internal-snapshot", Reason("busy"))  # type: ignore[union-attr]
    assert d0.error("blockdev-snapshot-internal-sync", device="d0", name="s") == \
        ("GenericError", "Node 'd0' is busy: busy")


# --- external snapshots: checks (§3.8) ----------------------------------------------------------


def test_snapshot_sync_checks(d0: Block, tmp_path: Path) -> None:
    """external_snapshot_prepare's checks, in order."""
    ov = str(tmp_path / "ov.qcow2")
    assert d0.error("blockdev-snapshot-sync", device="x", **{"snapshot-file": ov}) == \
        ("GenericError", "Cannot find device=x nor node_name=")
    assert d0.error("blockdev-snapshot-sync", **{"node-name": "n0", "snapshot-file": ov}) \
        == ("GenericError", "New snapshot node name missing")
    assert d0.error("blockdev-snapshot-sync", device="d0",
                    **{"snapshot-file": ov, "snapshot-node-name": "n0"}) == \
        ("GenericError", "New snapshot node name already in use")
    assert d0.error("blockdev-snapshot-sync", device="d0",
                    **{"snapshot-file": ov, "snapshot-node-name": "d0"}) == \
        ("GenericError", "New snapshot node name already in use")
    assert not Path(ov).exists()


def test_snapshot_sync_no_medium(b: Block, tmp_path: Path) -> None:
    """bdrv_lookup_bs on an empty drive: `Device '%s' has no medium`."""
    b.drive("if=none,id=d0")
    assert b.error("blockdev-snapshot-sync", device="d0",
                   **{"snapshot-file": str(tmp_path / "o")}) == \
        ("GenericError", "Device 'd0' has no medium")


def test_snapshot_sync_blocked_backing_node(b: Block, tmp_path: Path) -> None:
    """A backing node is blocked for external snapshots (bdrv_backing_attach)."""
    base = make_image(tmp_path / "base.qcow2", "qcow2")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    b.drive(f"file={top},if=none,id=d0,node-name=top")
    base_node = b.layer.find_node("top").backing_bs  # type: ignore[union-attr]
    assert base_node is not None
    assert b.error("blockdev-snapshot-sync", **{
        "node-name": base_node.node_name, "snapshot-file": str(tmp_path / "o"),
        "snapshot-node-name": "o"}) == (
        "GenericError", f"Node '{base_node.node_name}' is busy: node is used as backing "
                        "hd of 'top'")


def test_snapshot_below_a_filter(b: Block, tmp_path: Path) -> None:
    """`The feature 'snapshot' is not enabled` below a filter."""
    b.add(driver="blkdebug", **{"node-name": "dbg", "image": {"driver": "null-co",
                                                              "node-name": "n0"}})
    b.device("virtio-blk-pci", drive="dbg")
    assert b.error("blockdev-snapshot-sync", **{
        "node-name": "n0", "snapshot-file": str(tmp_path / "o"),
        "snapshot-node-name": "o"}) == \
        ("GenericError", "The feature 'snapshot' is not enabled")


def test_blockdev_snapshot_errors(d0: Block) -> None:
    """external_snapshot_prepare for blockdev-snapshot: overlay in use, has backing,
    unsupported backing."""
    d0.add(driver="null-co", **{"node-name": "nb"})
    assert d0.error("blockdev-snapshot", node="n0", overlay="nb") == \
        ("GenericError", "The snapshot does not support backing images")
    assert d0.error("blockdev-snapshot", node="n0", overlay="n0") == \
        ("GenericError", "The snapshot is already in use")
    assert d0.error("blockdev-snapshot", node="n0", overlay="zz") == \
        ("GenericError", "Cannot find device=zz nor node_name=zz")


@needs_qemu_img
def test_blockdev_snapshot_success(q: Block, tmp_path: Path) -> None:
    """blockdev-snapshot: overlay with `backing: null` goes above q0; its json: name
    loses the `backing` key once it has a backing child (append_open_options)."""
    ov = make_image(tmp_path / "ov.qcow2", "qcow2")
    q.add(driver="qcow2", **{"node-name": "ov", "backing": None,
                             "file": {"driver": "file", "filename": str(ov)}})
    assert q.node("ov")["file"].startswith('json:{"backing": ""')
    q.qmp("blockdev-snapshot", node="q0", overlay="ov")
    inserted = q.block("d0")["inserted"]
    assert (inserted["node-name"], inserted["file"], inserted["backing_file_depth"]) == \
        ("ov", str(ov), 1)
    assert q.node("q0")["ro"] is True
    assert q.error("blockdev-snapshot", node="ov", overlay="q0") == \
        ("GenericError", "Node 'q0' is busy: node is used as backing hd of 'ov'")


# --- change-backing-file (§3.9) ----------------------------------------------------------------


@needs_qemu_img
def test_change_backing_file(b: Block, tmp_path: Path) -> None:
    """qmp_change_backing_file: the recorded backing file string changes (model only),
    the graph does not."""
    base = make_image(tmp_path / "base.qcow2", "qcow2")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    b.drive(f"file={top},if=none,id=d0,node-name=top")
    b.qmp("change-backing-file", device="d0", **{"image-node-name": "top",
                                                 "backing-file": "new.qcow2"})
    inserted = b.block("d0")["inserted"]
    assert inserted["backing_file"] == "new.qcow2"
    assert inserted["image"]["full-backing-filename"] == str(tmp_path / "new.qcow2")
    assert inserted["backing_file_depth"] == 1


@needs_qemu_img
def test_change_backing_file_errors(b: Block, tmp_path: Path) -> None:
    """qmp_change_backing_file's checks."""
    base = make_image(tmp_path / "base.qcow2", "qcow2")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    b.drive(f"file={top},if=none,id=d0,node-name=top")
    b.drive("driver=null-co,if=none,id=d1,node-name=other")
    args = {"backing-file": "x"}
    assert b.error("change-backing-file", device="d0",
                   **{"image-node-name": "zz", **args}) == \
        ("GenericError", "Cannot find device= nor node_name=zz")
    base_name = b.layer.find_node("top").backing_bs.node_name  # type: ignore[union-attr]
    assert b.error("change-backing-file", device="d0",
                   **{"image-node-name": base_name, **args}) == \
        ("GenericError", "not allowing backing file change on an image without a "
                         "backing file")
    lone = make_image(tmp_path / "l.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    b.add(driver="qcow2", **{"node-name": "lone", "file": {
        "driver": "file", "filename": str(lone)}, "backing": {
        "driver": "qcow2", "file": {"driver": "file", "filename": str(base)}}})
    assert b.error("change-backing-file", device="d0",
                   **{"image-node-name": "lone", **args}) == \
        ("GenericError", "'d0' and image file are not in the same chain")
    b.layer.find_node("top").op_block("change", Reason("busy"))  # type: ignore[union-attr]
    assert b.error("change-backing-file", device="d0",
                   **{"image-node-name": "top", **args}) == \
        ("GenericError", "Node 'd0' is busy: busy")


# --- x-blockdev-change (§3.10) -------------------------------------------------------------------


def quorum(b: Block) -> None:
    b.add(driver="quorum", **{"node-name": "q", "vote-threshold": 1, "children": [
        {"driver": "null-co", "node-name": "c0"}, {"driver": "null-co", "node-name": "c1"}]})


def test_quorum_add_and_remove_child(b: Block) -> None:
    """quorum_add_child / quorum_del_child through x-blockdev-change."""
    quorum(b)
    b.add(driver="null-co", **{"node-name": "c2"})
    b.qmp("x-blockdev-change", parent="q", node="c2")
    assert [c.name for c in b.layer.find_node("q").children] == \
        ["children.2", "children.1", "children.0"]  # type: ignore[union-attr]
    b.qmp("x-blockdev-change", parent="q", child="children.0")
    assert [c.name for c in b.layer.find_node("q").children] == \
        ["children.2", "children.1"]  # type: ignore[union-attr]


def test_x_blockdev_change_errors(b: Block) -> None:
    """qmp_x_blockdev_change, bdrv_add_child and bdrv_del_child messages."""
    quorum(b)
    b.add(driver="null-co", **{"node-name": "n0"})
    assert b.error("x-blockdev-change", parent="zz", node="n0") == \
        ("GenericError", "Cannot find device=zz nor node_name=zz")
    assert b.error("x-blockdev-change", parent="q", node="n0", child="children.0") == \
        ("GenericError", "The parameters child and node are in conflict")
    assert b.error("x-blockdev-change", parent="q") == \
        ("GenericError", "Either child or node must be specified")
    assert b.error("x-blockdev-change", parent="q", child="nope") == \
        ("GenericError", "Node 'q' does not have child 'nope'")
    assert b.error("x-blockdev-change", parent="q", node="zz") == \
        ("GenericError", "Node 'zz' not found")
    assert b.error("x-blockdev-change", parent="n0", node="q") == \
        ("GenericError", "The node n0 does not support adding a child")
    assert b.error("x-blockdev-change", parent="q", node="c0") == \
        ("GenericError", "The node c0 already has a parent")
    b.add(driver="raw", **{"node-name": "r", "file": "n0"})
    assert b.error("x-blockdev-change", parent="r", child="file") == \
        ("GenericError", "The node r does not support removing a child")
    b.qmp("x-blockdev-change", parent="q", child="children.1")
    assert b.error("x-blockdev-change", parent="q", child="children.0") == \
        ("GenericError", "The number of children cannot be lower than the vote threshold 1")


# --- more error paths ---------------------------------------------------------------------


@needs_qemu_img
def test_change_backing_file_unsupported_format(b: Block, tmp_path: Path) -> None:
    """bdrv_change_backing_file: qcow has no change hook: -ENOTSUP."""
    base = make_image(tmp_path / "base.raw", "raw")
    top = make_image(tmp_path / "top.qcow", "qcow", "16M", "-b", str(base), "-F", "raw")
    b.drive(f"file={top},format=qcow,if=none,id=d0,node-name=top")
    assert b.error("change-backing-file", device="d0",
                   **{"image-node-name": "top", "backing-file": "x"}) == \
        ("GenericError", "Could not change backing file to 'x': Operation not supported")


@needs_qemu_img
def test_missing_backing_file(b: Block, tmp_path: Path) -> None:
    """bdrv_open_backing_file: `Could not open backing file: <why>`."""
    base = make_image(tmp_path / "base.raw", "raw")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "raw")
    base.unlink()
    with fails(f"Could not open backing file: Could not open '{base}': No such file or "
               "directory"):
        b.drive(f"file={top},if=none,id=d0")
    assert b.layer.nodes == []


def test_backing_on_a_driver_without_backing_files(b: Block) -> None:
    """bdrv_open_backing_file: `Driver doesn't support backing files`."""
    with fails("Driver doesn't support backing files"):
        b.drive("driver=raw,file.driver=null-co,backing.driver=null-co,if=none,id=d0")


def test_snapshot_sync_flush_failure(d0: Block, tmp_path: Path) -> None:
    """external_snapshot_prepare: a failing flush of a writable node:
    `An IO error has occurred`."""
    from blockdev import guest_io

    guest_io.set_fault(d0.layer, "n0", "flush", 5)
    assert d0.error("blockdev-snapshot-sync", device="d0",
                    **{"snapshot-file": str(tmp_path / "o.qcow2")}) == \
        ("GenericError", "An IO error has occurred")


@needs_qemu_img
def test_blockdev_snapshot_overlay_with_backing(q: Block, tmp_path: Path) -> None:
    """external_snapshot_prepare: `The snapshot already has a backing image`."""
    base = make_image(tmp_path / "b.raw", "raw")
    ov = make_image(tmp_path / "ov.qcow2", "qcow2", "16M", "-b", str(base), "-F", "raw")
    q.add(driver="qcow2", **{"node-name": "ov", "file": {"driver": "file",
                                                         "filename": str(ov)}})
    assert q.error("blockdev-snapshot", node="q0", overlay="ov") == \
        ("GenericError", "The snapshot already has a backing image")


def test_internal_snapshot_delete_blocked(d0: Block) -> None:
    """op blocker internal-snapshot-delete: the busy error."""
    d0.layer.find_node("n0").op_block("internal-snapshot-delete",  # type: ignore[union-attr]
                                      Reason("busy"))
    assert d0.error("blockdev-snapshot-delete-internal-sync", device="d0", name="s") == \
        ("GenericError", "Node 'd0' is busy: busy")


@needs_qemu_img
def test_stored_bitmaps_load_at_open(b: Block, tmp_path: Path) -> None:
    """qcow2_load_autoloading_dirty_bitmaps: an `auto` bitmap stored in the image is a
    persistent bitmap of the node; on a read-only node it is read-only."""
    from tests.test_block_support import qemu_img

    img = make_image(tmp_path / "img.qcow2", "qcow2")
    qemu_img("bitmap", "--add", "-g", "131072", str(img), "stored")
    b.drive(f"file={img},if=none,id=d0")
    assert b.block("d0")["dirty-bitmaps"] == [
        {"name": "stored", "count": 0, "granularity": 131072, "status": "active"}]
    assert b.error("block-dirty-bitmap-add", node="d0", name="stored",
                   persistent=True) == (
        "GenericError", "Can't make bitmap 'stored' persistent in 'd0': Bitmap with the "
                        "same name is already stored")
    assert b.error("block-dirty-bitmap-add", node="d0", name="stored") == \
        ("GenericError", "Bitmap already exists: stored")
    other = Block()
    other.drive(f"file={img},if=none,id=d0,readonly=on,file.locking=off")
    assert other.error("block-dirty-bitmap-clear", node="d0", name="stored") == \
        ("GenericError", "Bitmap 'stored' is readonly and cannot be cleared")
