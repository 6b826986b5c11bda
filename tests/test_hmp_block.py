"""HMP's block commands and texts: hmp.c print_block_info / hmp_info_block /
hmp_info_blockstats, block/qapi.c bdrv_image_info_dump / bdrv_snapshot_dump,
device-hotplug.c hmp_drive_add, blockdev.c hmp_drive_del / hmp_commit, and the
VM snapshots of migration/savevm.c (savevm, loadvm, delvm, info snapshots).

Every text is computed from the block graph (the same data query-block returns).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_block_support import make_image
from tests.test_hmp_help import hmp
from vmm.hmp.block import dump_qobject, human_readable_size, snapshot_line
from vmm.hmp.savevm import vm_state_size


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bdrv_snapshot_dump prints local time: pin the time zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_human_readable_size() -> None:
    """block/qapi.c get_human_readable_size."""
    assert [human_readable_size(n) for n in (0, 999, 1000, 10239, 10240, 1023999, 1024000,
                                             16 << 20, (1 << 50) * 3)] == [
        "0", "999", "1.0K", "10.0K", "10K", "1000K", "1.0M", "16M", "3072T"]


def test_snapshot_dump(utc: None) -> None:
    """block/qapi.c bdrv_snapshot_dump: fixed columns, local date, VM clock."""
    assert snapshot_line(None) == (
        "ID        TAG                 VM SIZE                DATE       VM CLOCK")
    sn = {"id": "1", "name": "s1", "vm-state-size": 295000, "date-sec": 1510000000,
          "date-nsec": 0, "vm-clock-sec": 3725, "vm-clock-nsec": 42_000_000}
    assert snapshot_line(sn) == (
        "1         s1                     288K 2017-11-06 20:26:40   01:02:05.042")


def test_dump_qobject() -> None:
    """block/qapi.c dump_qdict / dump_qlist: QDict order, dashes as spaces, nesting
    indented by four."""
    data = {"compat": "1.1", "lazy-refcounts": False, "refcount-bits": 16, "corrupt": False}
    assert dump_qobject(data, 1) == (
        "    compat: 1.1\n    lazy refcounts: false\n    refcount bits: 16\n"
        "    corrupt: false\n")
    assert dump_qobject({"list": [1, {"a": 2}]}, 0) == "list:\n    [0]: 1\n    [1]:\n        a: 2\n"
    # a double as qobject/qnum.c qnum_to_string writes it: "%f", trailing zeros and
    # a trailing point removed
    assert dump_qobject({"ratio": 100.0}, 0) == "ratio: 100\n"
    assert dump_qobject([0.125], 0) == "[0]: 0.125\n"


def test_info_block(vm_cmdline, tmp_path: Path) -> None:
    """hmp.c print_block_info for a disk with a device, a -drive if=none with I/O
    limits, and the board's empty CD-ROM; one blank line between entries."""
    disk = make_image(tmp_path / "a.qcow2", "qcow2", "64M")
    raw = make_image(tmp_path / "b.raw", "raw", "1M")
    vm = vm_cmdline("-machine", "pc", "-nodefaults", "-S",
                    "-drive", f"file={disk},if=ide,id=disk0,node-name=top",
                    "-drive", f"file={raw},format=raw,if=none,id=d1,bps=1000,readonly=on,"
                              "cache=none,detect-zeroes=on",
                    "-drive", "if=ide,media=cdrom,id=cd0,index=2")
    assert hmp(vm, "info block") == (
        f"disk0 (top): {disk} (qcow2)\r\n"
        "    Attached to:      /machine/unattached/device[18]\r\n"
        "    Cache mode:       writeback\r\n"
        "\r\n"
        f"d1 (#block{vm.vm.block.blk_by_name('d1').bs.node_name[6:]}): {raw} (raw, read-only)\r\n"
        "    Removable device: not locked, tray closed\r\n"
        "    Cache mode:       writeback, direct\r\n"
        "    Detect zeroes:    on\r\n"
        "    I/O throttling:   bps=1000 bps_rd=0 bps_wr=0 bps_max=0 bps_rd_max=0 "
        "bps_wr_max=0 iops=0 iops_rd=0 iops_wr=0 iops_max=0 iops_rd_max=0 iops_wr_max=0 "
        "iops_size=0 group=d1\r\n"
        "\r\n"
        "cd0: [not inserted]\r\n"
        "    Attached to:      /machine/unattached/device[19]\r\n"
        "    Removable device: not locked, tray closed\r\n")
    # One device: the blank line still follows a skipped first entry (hmp_info_block).
    assert hmp(vm, "info block cd0").startswith("\r\ncd0: [not inserted]\r\n")
    assert hmp(vm, "info block nosuch") == ""
    # Named nodes in naming order: the protocol node was named first, so a blank line.
    assert hmp(vm, "info block -n top") == (
        f"\r\ntop: {disk} (qcow2)\r\n    Cache mode:       writeback\r\n")


def test_info_block_verbose(vm_cmdline, tmp_path: Path, utc: None) -> None:
    """hmp.c print_block_info -v: "Images:" and bdrv_image_info_dump of each image of
    the chain (snapshots and format-specific data included)."""
    base = make_image(tmp_path / "base.qcow2", "qcow2", "16M")
    top = tmp_path / "top.qcow2"
    make_image(top, "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    vm = vm_cmdline("-machine", "none", "-nodefaults", "-S",
                    "-drive", f"file={top},if=none,id=d0")
    vm.machine.run_timers(0)
    assert hmp(vm, "snapshot_blkdev_internal d0 snap") == ""
    text = hmp(vm, "info block -v d0")
    info = vm.talk().execute("query-block")["return"][0]["inserted"]["image"]
    assert text == (
        f"d0 (#block{vm.vm.block.blk_by_name('d0').bs.node_name[6:]}): {top} (qcow2)\r\n"
        "    Removable device: not locked, tray closed\r\n"
        "    Cache mode:       writeback\r\n"
        f"    Backing file:     {base} (chain depth: 1)\r\n"
        "\r\nImages:\r\n"
        f"image: {top}\r\n"
        "file format: qcow2\r\n"
        "virtual size: 16M (16777216 bytes)\r\n"
        f"disk size: {human_readable_size(info['actual-size'])}\r\n"
        "cluster_size: 65536\r\n"
        f"backing file: {base}\r\n"
        "backing file format: qcow2\r\n"
        "Snapshot list:\r\n"
        "ID        TAG                 VM SIZE                DATE       VM CLOCK\r\n"
        "1         snap                      0 2017-11-06 20:26:40   00:00:00.000\r\n"
        "Format specific information:\r\n"
        "    compat: 1.1\r\n    lazy refcounts: false\r\n    refcount bits: 16\r\n"
        "    corrupt: false\r\n"
        f"image: {base}\r\n"
        "file format: qcow2\r\n"
        "virtual size: 16M (16777216 bytes)\r\n"
        f"disk size: {human_readable_size(info['backing-image']['actual-size'])}\r\n"
        "cluster_size: 65536\r\n"
        "Format specific information:\r\n"
        "    compat: 1.1\r\n    lazy refcounts: false\r\n    refcount bits: 16\r\n"
        "    corrupt: false\r\n")


def test_info_blockstats(vm_cmdline, tmp_path: Path) -> None:
    """hmp.c hmp_info_blockstats: one line per named BlockBackend."""
    raw = make_image(tmp_path / "b.raw", "raw", "1M")
    vm = vm_cmdline("-machine", "none", "-nodefaults", "-S",
                    "-drive", f"file={raw},format=raw,if=none,id=d1")
    assert hmp(vm, "info blockstats") == (
        "d1: rd_bytes=0 wr_bytes=0 rd_operations=0 wr_operations=0 flush_operations=0 "
        "wr_total_time_ns=0 rd_total_time_ns=0 flush_total_time_ns=0 rd_merged=0 "
        "wr_merged=0 idle_time_ns=0\r\n")


def test_block_commands_reach_qmp(vm_cmdline, tmp_path: Path) -> None:
    """hmp.c hmp_block_resize, hmp_block_set_io_throttle, hmp_eject, hmp_change,
    hmp_block_passwd and the internal snapshot commands call the QMP commands; their
    errors come back as text."""
    img = make_image(tmp_path / "a.qcow2", "qcow2", "16M")
    iso = make_image(tmp_path / "cd.raw", "raw", "1M")
    vm = vm_cmdline("-machine", "pc", "-nodefaults", "-S",
                    "-drive", f"file={img},if=none,id=d0",
                    "-drive", "if=ide,media=cdrom,id=cd0")
    assert hmp(vm, "block_resize d0 32") == ""
    assert vm.talk().execute("query-block")["return"][0]["inserted"]["image"][
        "virtual-size"] == 32 << 20
    assert hmp(vm, "block_resize d0 1000B") == "The new size must be a multiple of 512\r\n"
    assert hmp(vm, "block_resize nosuch 1") == "Cannot find device=nosuch nor node_name=\r\n"
    assert hmp(vm, "block_set_io_throttle d0 1 0 0 0 0 0") == ""
    assert "I/O throttling:   bps=1 " in hmp(vm, "info block d0")
    assert hmp(vm, "block_set_io_throttle cd0 1 0 0 0 0 0") == "Device has no medium\r\n"
    assert hmp(vm, "block_passwd d0 secret") == (
        "Setting block passwords directly is no longer supported\r\n")
    assert hmp(vm, "change cd0 " + str(iso) + " raw") == ""
    assert f"): {iso} (raw, read-only)\r\n" in hmp(vm, "info block cd0")
    assert hmp(vm, "change cd0 " + str(iso) + " raw sometimes") == (
        "invalid parameter value: sometimes\r\n")
    assert hmp(vm, "eject -f cd0") == ""
    assert "cd0: [not inserted]" in hmp(vm, "info block cd0")
    assert hmp(vm, "eject d0") == ""  # no device: removable, no tray
    assert hmp(vm, "eject nosuch") == "Device 'nosuch' not found\r\n"
    assert hmp(vm, "snapshot_blkdev cd0") == "Parameter 'snapshot-file' is missing\r\n"
    assert hmp(vm, "snapshot_blkdev_internal cd0 s") == "Device 'cd0' has no medium\r\n"
    assert hmp(vm, "snapshot_delete_blkdev_internal cd0 s") == (
        "Device 'cd0' has no medium\r\n")
    assert hmp(vm, "block_job_set_speed d0 0") == (
        vm.talk().execute("block-job-set-speed", {"device": "d0", "speed": 0})
        ["error"]["desc"] + "\r\n")


def test_drive_add(vm_cmdline, tmp_path: Path) -> None:
    """device-hotplug.c hmp_drive_add: "OK" for if=none; any other interface is
    created and removed again ("Can't hot-add drive to type N", the interface's
    number); drive_new's errors; a duplicate id (QemuOpts); -n adds a node."""
    raw = make_image(tmp_path / "b.raw", "raw", "1M")
    vm = vm_cmdline("-machine", "pc", "-nodefaults", "-S")
    assert hmp(vm, f"drive_add 0 if=none,file={raw},format=raw,id=hot") == "OK\r\n"
    assert hmp(vm, f"drive_add 0 if=none,file={raw},format=raw,readonly=on") == "OK\r\n"
    # drive_new: the first free unit of if=none (hot has unit 0)
    assert [b["device"] for b in vm.talk().execute("query-block")["return"]] == [
        "hot", "none1"]
    assert hmp(vm, f"drive_add 0 file={raw},format=raw") == "Can't hot-add drive to type 1\r\n"
    assert hmp(vm, f"drive_add 0 if=virtio,file={raw},format=raw") == (
        "Can't hot-add drive to type 7\r\n")
    assert hmp(vm, "drive_add 0 if=none,id=hot") == "Duplicate ID 'hot' for drive\r\n"
    assert hmp(vm, "drive_add 0 if=none,cache=bogus") == "invalid cache option\r\n"
    assert hmp(vm, "drive_add 0 if=none,file=/nonexistent/x") == (
        "Could not open '/nonexistent/x': No such file or directory\r\n")
    assert hmp(vm, "drive_add 0 if=none,id=1x") == (
        "Parameter 'id' expects an identifier\r\nIdentifiers consist of letters, digits, "
        "'-', '.', '_', starting with a letter.\r\n")
    assert [b["device"] for b in vm.talk().execute("query-block")["return"]] == [
        "hot", "none1"]
    assert hmp(vm, "drive_add -n 0 file=x") == "'node-name' needs to be specified\r\n"
    assert hmp(vm, f"drive_add -n 0 node-name=n1,driver=raw,file.driver=file,"
                   f"file.filename={raw}") == ""
    assert hmp(vm, "info block -n n1") == f"n1: {raw} (raw)\r\n    Cache mode:       writeback\r\n"
    assert hmp(vm, "drive_add") == (
        "drive_add: string expected\r\nTry \"help drive_add\" for more information\r\n")
    none = vm_cmdline("-machine", "none", "-nodefaults", "-S")
    assert hmp(none, f"drive_add 0 file={raw},format=raw") == "OK\r\n"  # IF_NONE default


def test_drive_del(vm_cmdline, tmp_path: Path) -> None:
    """blockdev.c hmp_drive_del: a -drive goes (its name with it), a node added with
    drive_add -n is deleted as blockdev-del deletes it; errors as error_report."""
    raw = make_image(tmp_path / "b.raw", "raw", "1M")
    vm = vm_cmdline("-machine", "none", "-nodefaults", "-S",
                    "-drive", f"file={raw},format=raw,if=none,id=d1",
                    "-blockdev", f"driver=file,filename={raw},node-name=f1")
    assert hmp(vm, "drive_del d1") == ""
    assert vm.talk().execute("query-block")["return"] == []
    assert hmp(vm, "drive_del d1") == "Device 'd1' not found\r\n"
    assert hmp(vm, "drive_del f1") == ""
    assert hmp(vm, "drive_del f1") == "Device 'f1' not found\r\n"


def test_commit(vm_cmdline, tmp_path: Path) -> None:
    """blockdev.c hmp_commit -> bdrv_commit: ENOTSUP without a backing file, the
    lookups' own texts; `commit all` has nothing to do without backing files."""
    raw = make_image(tmp_path / "b.raw", "raw", "1M")
    vm = vm_cmdline("-machine", "pc", "-nodefaults", "-S",
                    "-drive", f"file={raw},format=raw,if=none,id=d1",
                    "-drive", "if=ide,media=cdrom,id=cd0")
    assert hmp(vm, "commit d1") == "'commit' error for 'd1': Operation not supported\r\n"
    assert hmp(vm, "commit nosuch") == "Device 'nosuch' not found\r\n"
    assert hmp(vm, "commit cd0") == "Device 'cd0' has no medium\r\n"
    assert hmp(vm, "commit all") == ""
    over = tmp_path / "over.qcow2"
    make_image(over, "qcow2", "1M", "-b", str(raw), "-F", "raw")
    vm2 = vm_cmdline("-machine", "none", "-S", "-drive", f"file={over},if=none,id=d2")
    assert hmp(vm2, "commit d2") == ""  # tests/test_jobs_commit.py follows the data


def test_savevm_loadvm_delvm(vm_cmdline, tmp_path: Path, utc: None) -> None:
    """migration/savevm.c save_snapshot / load_snapshot and hmp.c hmp_info_snapshots:
    a VM snapshot on every writable image that can take one; the first also records
    the VM state's size; STOP (save-vm) and RESUME around savevm; loadvm puts the
    virtual clock back; partial snapshots are listed per image."""
    a = make_image(tmp_path / "a.qcow2", "qcow2")
    b = make_image(tmp_path / "b.qcow2", "qcow2")
    vm = vm_cmdline("-machine", "pc", "-nodefaults", "-m", "64",
                    "-drive", f"file={a},if=none,id=da",
                    "-drive", f"file={b},if=none,id=db")
    talk = vm.talk()
    assert hmp(vm, "info snapshots") == "There is no snapshot available.\r\n"
    vm.tick(2.5)
    assert talk.lines({"execute": "human-monitor-command",
                       "arguments": {"command-line": "savevm s1"}}) == [
        '{"timestamp": T, "event": "STOP"}', '{"timestamp": T, "event": "RESUME"}',
        '{"return": ""}']
    vm.tick(1)
    assert hmp(vm, "snapshot_blkdev_internal db partial") == ""
    size = human_readable_size(vm_state_size(64 << 20))
    assert size == "144K"
    assert hmp(vm, "info snapshots") == (
        "List of snapshots present on all disks:\r\n"
        "ID        TAG                 VM SIZE                DATE       VM CLOCK\r\n"
        f"--        s1                     {size} 2017-11-06 20:26:42   00:00:02.500\r\n"
        "\r\nList of partial (non-loadable) snapshots on 'db':\r\n"
        "ID        TAG                 VM SIZE                DATE       VM CLOCK\r\n"
        "2         partial                   0 2017-11-06 20:26:43   00:00:03.500\r\n")
    # The vmstate image is the first one; the others record no VM state.
    snaps = [b["inserted"]["image"]["snapshots"] for b in talk.execute("query-block")["return"]]
    assert [[(s["id"], s["name"], s["vm-state-size"] > 0) for s in x] for x in snaps] == [
        [("1", "s1", True)], [("1", "s1", False), ("2", "partial", False)]]
    assert hmp(vm, "loadvm partial") == (
        "Device 'da' does not have the requested snapshot 'partial'\r\n")
    assert hmp(vm, "info status") == "VM status: paused (restore-vm)\r\n"
    assert hmp(vm, "loadvm s1") == ""  # the VM stays stopped: it did not run before
    assert vm.machine.vm_clock_ns() == 2_500_000_000
    assert hmp(vm, "c") == ""
    # a second savevm of the same name replaces the first (find_new_snapshot_id)
    assert hmp(vm, "savevm s1") == ""
    assert [[s["id"] for s in b["inserted"]["image"]["snapshots"]]
            for b in talk.execute("query-block")["return"]] == [["1"], ["2", "3"]]
    assert hmp(vm, "delvm s1") == ""
    assert hmp(vm, "delvm nosuch") == ""
    assert hmp(vm, "info snapshots") == (
        "List of snapshots present on all disks:\r\nNone\r\n"
        "\r\nList of partial (non-loadable) snapshots on 'db':\r\n"
        "ID        TAG                 VM SIZE                DATE       VM CLOCK\r\n"
        "2         partial                   0 2017-11-06 20:26:43   00:00:03.500\r\n")
    assert hmp(vm, "savevm") == ""  # named after the date
    assert "vm-20171106202643" in hmp(vm, "info snapshots")


def test_savevm_errors(vm_cmdline, tmp_path: Path) -> None:
    """save_snapshot / load_snapshot's errors: a writable image without snapshots, no
    image that takes them, a disk-only snapshot."""
    raw = make_image(tmp_path / "b.raw", "raw", "1M")
    qcow = make_image(tmp_path / "a.qcow2", "qcow2")
    vm = vm_cmdline("-machine", "none", "-S", "-drive", f"file={raw},format=raw,if=none,id=r")
    assert hmp(vm, "savevm x") == "Device 'r' is writable but does not support snapshots\r\n"
    assert hmp(vm, "loadvm x") == "Device 'r' is writable but does not support snapshots\r\n"
    ro = vm_cmdline("-machine", "none", "-S",
                    "-drive", f"file={raw},format=raw,if=none,id=r,readonly=on")
    assert hmp(ro, "savevm x") == "No block device can accept snapshots\r\n"
    assert hmp(ro, "loadvm x") == "No block device supports snapshots\r\n"
    assert hmp(ro, "info snapshots") == "No available block device supports snapshots\r\n"
    disk_only = vm_cmdline("-machine", "none", "-S", "-drive", f"file={qcow},if=none,id=q")
    assert hmp(disk_only, "snapshot_blkdev_internal q s") == ""
    assert hmp(disk_only, "loadvm s") == (
        "This is a disk-only snapshot. Revert to it  offline using qemu-img\r\n")
    disk_only.talk().execute("block-dirty-bitmap-add", {"node": "q", "name": "bm"})
    assert hmp(disk_only, "savevm t") == ""
    assert hmp(disk_only, "loadvm t") == (
        "Could not load snapshot 't' on 'q': Device has active dirty bitmaps\r\n")
