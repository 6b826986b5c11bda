"""Backup jobs (block/backup.c; blockdev.c do_drive_backup, do_blockdev_backup and the
backup transaction actions) on real qcow2 images written by `qemu-io`, followed to
their last event and checked with `qemu-img compare` / `qemu-img info` after the
emulator let go of them. Texts and behaviour from block.md §4.7, §4.8 and §5."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blockdev import guest_io
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, hmp, new_vm, ok, vms

__all__ = ["vms"]

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-utils")

MiB = 1 << 20
SIZE = 4 * MiB
BANDWIDTH = 10 * MiB  # the simulated disk: a 4 MiB copy takes 0.4 s of Machine time


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def qemu_io(path: Path, *cmds: str) -> None:
    args = ["qemu-io"]
    for c in cmds:
        args += ["-c", c]
    run(*args, str(path))


def compare(a: Path, b: Path) -> str:
    return subprocess.run(["qemu-img", "compare", str(a), str(b)], capture_output=True,
                          text=True).stdout.strip()


def chain_of(path: Path) -> list[dict[str, Any]]:
    out = run("qemu-img", "info", "--output=json", "--backing-chain", str(path))
    info: list[dict[str, Any]] = json.loads(out)
    return info


def source_image(tmp_path: Path) -> tuple[Path, Path]:
    """A 4 MiB qcow2 with patterns, and a copy of it as it is now."""
    src = tmp_path / "src.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(src), "4M")
    qemu_io(src, "write -P 0x11 0 1M", "write -P 0x22 2M 512k", "write -P 0x23 3M 64k")
    orig = tmp_path / "orig.qcow2"
    shutil.copy(src, orig)
    return src, orig


def machine(vms: list[SyncVm], drive: str) -> SyncVm:
    return new_vm(vms, "-S", "-nodefaults", "-display", "none", "-drive", drive,
                  f"--emu-behaviour=block-job-bandwidth={BANDWIDTH}")


def add_target(vm: SyncVm, tmp_path: Path) -> Path:
    """An empty 4 MiB qcow2 image, added as node `tgt` (blockdev-add)."""
    target = tmp_path / "tgt.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(target), "4M")
    ok(vm, "blockdev-add", {"driver": "qcow2", "node-name": "tgt",
                            "file": {"driver": "file", "filename": str(target)}})
    return target


@pytest.fixture
def src(tmp_path: Path) -> tuple[Path, Path]:
    return source_image(tmp_path)


@pytest.fixture
def vm(vms: list[SyncVm], src: tuple[Path, Path]) -> Iterator[SyncVm]:
    yield machine(vms, f"file={src[0]},if=none,id=drive0,node-name=src0")


def finish(vm: SyncVm, seconds: float = 2) -> list[tuple[str, Any]]:
    vm.tick(seconds)
    assert ok(vm, "query-block-jobs") == []
    return events(vm)


def test_full_backup_is_the_source_at_job_start(vm: SyncVm, src: tuple[Path, Path],
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """drive-backup sync=full: the target is created (bdrv_img_create prints its
    Formatting line), `len` = source size, `offset` reaches `len`; a write through HMP
    qemu-io while the job runs first copies the old data (backup_before_write_notify),
    so the target equals the source as of the job's start (block.md §4.7, §4.8)."""
    target = tmp_path / "full.qcow2"
    ok(vm, "drive-backup", {"device": "drive0", "target": str(target), "sync": "full"})
    assert capsys.readouterr().out == (
        f"Formatting '{target}', fmt=qcow2 size=4194304 cluster_size=65536 "
        "lazy_refcounts=off refcount_bits=16\n")
    vm.tick(0.1)
    [info] = ok(vm, "query-block-jobs")
    assert (info["type"], info["device"], info["len"]) == ("backup", "drive0", SIZE)
    assert 0 < info["offset"] < SIZE
    hmp(vm, 'qemu-io drive0 "write -P 0x33 0 3M"')
    assert finish(vm) == [("BLOCK_JOB_COMPLETED", {"type": "backup", "device": "drive0",
                                                   "len": SIZE, "offset": SIZE,
                                                   "speed": 0})]
    vm.close()
    src_path, orig = src
    assert compare(target, orig) == "Images are identical."
    assert compare(src_path, orig) != "Images are identical."
    [only] = chain_of(target)
    assert only["format"] == "qcow2" and "backing-filename" not in only


def test_full_backup_progress_is_rate_limited(vm: SyncVm, tmp_path: Path) -> None:
    """speed: yield_and_check sleeps by ratelimit_calculate_delay on what was copied
    (100 ms slices, whole slices of delay as 2.11's ratelimit.h counts them): at
    1 MiB/s a 4 MiB backup of 64 KiB clusters takes several seconds."""
    ok(vm, "drive-backup", {"device": "drive0", "target": str(tmp_path / "t.qcow2"),
                            "sync": "full", "speed": MiB, "job-id": "b0"})
    vm.tick(1.05)
    [info] = ok(vm, "query-block-jobs")
    assert info["speed"] == MiB and 512 * 1024 <= info["offset"] <= MiB
    vm.tick(2)
    assert ok(vm, "query-block-jobs")[0]["offset"] < SIZE
    [(name, data)] = finish(vm, 6)
    assert name == "BLOCK_JOB_COMPLETED" and data["offset"] == SIZE


def test_incremental_after_hmp_qemu_io_writes(vm: SyncVm, src: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    """Incremental backup: a full backup, writes through HMP qemu-io dirty the bitmap,
    then sync=incremental copies the dirty clusters only into an existing image
    backed by the full one (mode=existing). The bitmap is frozen with an anonymous
    successor while the job runs; on success the successor (the writes made during
    the backup) becomes the bitmap. The result is the source as of the job's start; a
    guest write during the job copies its cluster's old data first and counts as
    progress too, so `offset` passes `len` (backup_do_cow) (block.md §3.7, §4.7)."""
    ok(vm, "block-dirty-bitmap-add", {"node": "drive0", "name": "bm0"})
    full = tmp_path / "full.qcow2"
    ok(vm, "drive-backup", {"device": "drive0", "target": str(full), "sync": "full"})
    finish(vm)
    hmp(vm, 'qemu-io drive0 "write -P 0x44 1M 64k"')
    hmp(vm, 'qemu-io drive0 "write -P 0x45 3200k 10k"')
    hmp(vm, 'qemu-io drive0 "write -z 2M 64k"')  # zeros over the full backup's data
    inc = tmp_path / "inc.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", str(full), "-F", "qcow2", str(inc))
    ok(vm, "drive-backup", {"device": "drive0", "target": str(inc), "sync": "incremental",
                            "bitmap": "bm0", "format": "qcow2", "mode": "existing"})
    [info] = ok(vm, "query-block", None)[0:1]
    assert info["dirty-bitmaps"] == [
        {"count": 0, "granularity": 65536, "status": "active"},
        {"name": "bm0", "count": 3 * 65536, "granularity": 65536, "status": "frozen"}]
    hmp(vm, 'qemu-io drive0 "write -P 0x46 0 4k"')  # its old data is copied first
    assert finish(vm) == [("BLOCK_JOB_COMPLETED", {"type": "backup", "device": "drive0",
                                                   "len": SIZE, "offset": SIZE + 65536,
                                                   "speed": 0})]
    [info] = ok(vm, "query-block")
    assert info["dirty-bitmaps"] == [
        {"name": "bm0", "count": 65536, "granularity": 65536, "status": "active"}]
    hmp(vm, 'qemu-io drive0 "write -P 0x47 2M 4k"')  # after the backup: not in inc
    vm.close()
    expected = tmp_path / "expected.qcow2"
    shutil.copy(src[1], expected)
    qemu_io(expected, "write -P 0x44 1M 64k", "write -P 0x45 3200k 10k", "write -z 2M 64k")
    assert compare(inc, expected) == "Images are identical."
    mapped = json.loads(run("qemu-img", "map", "--output=json", str(inc)))
    top = [(m["start"], m["length"]) for m in mapped if m["depth"] == 0 and m["data"]]
    assert top == [(0, 65536), (MiB, 65536), (3200 * 1024, 65536)]
    assert [c["filename"] for c in chain_of(inc)] == [str(inc), str(full)]


def test_incremental_cancel_merges_the_successor_back(vm: SyncVm, tmp_path: Path) -> None:
    """backup_abort / bdrv_reclaim_dirty_bitmap: a cancelled incremental backup loses
    nothing: the bitmap holds its old bits and the writes made meanwhile."""
    ok(vm, "block-dirty-bitmap-add", {"node": "src0", "name": "bm0"})
    hmp(vm, 'qemu-io drive0 "write -P 0x44 0 1M"')
    ok(vm, "drive-backup", {"device": "drive0", "target": str(tmp_path / "i.qcow2"),
                            "sync": "incremental", "bitmap": "bm0", "speed": 1})
    hmp(vm, 'qemu-io drive0 "write -P 0x45 2M 64k"')
    ok(vm, "block-job-cancel", {"device": "drive0"})
    [(name, _)] = finish(vm)
    assert name == "BLOCK_JOB_CANCELLED"
    [info] = ok(vm, "query-block")
    assert info["dirty-bitmaps"] == [
        {"name": "bm0", "count": 17 * 65536, "granularity": 65536, "status": "active"}]


def test_top_backup_copies_the_top_image_only(vms: list[SyncVm], tmp_path: Path) -> None:
    """sync=top: the target's backing file is the source's backing file; clusters the
    top does not allocate are neither copied nor counted, so `offset` < `len`
    (block.md §4.7, verified). The target over its backing equals the source."""
    base = tmp_path / "base.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(base), "4M")
    qemu_io(base, "write -P 0x11 0 4M")
    top = tmp_path / "top.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    qemu_io(top, "write -P 0x22 1M 128k", "write -P 0x23 3M 4k")
    vm = machine(vms, f"file={top},if=none,id=drive0")
    target = tmp_path / "t.qcow2"
    ok(vm, "drive-backup", {"device": "drive0", "target": str(target), "sync": "top"})
    assert finish(vm) == [("BLOCK_JOB_COMPLETED", {"type": "backup", "device": "drive0",
                                                   "len": SIZE, "offset": 3 * 65536,
                                                   "speed": 0})]
    vm.close()
    assert [c["filename"] for c in chain_of(target)] == [str(target), str(base)]
    assert compare(target, top) == "Images are identical."


def test_sync_none_copies_only_what_writes_replace(vm: SyncVm, src: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """sync=none: the target's backing is the source node itself; the job copies
    nothing until a write comes, then the old data; it never ends on its own, only
    by cancel → BLOCK_JOB_CANCELLED (block.md §4.7, verified). The target over the
    source file is the source at job start."""
    target = tmp_path / "none.qcow2"
    ok(vm, "drive-backup", {"device": "drive0", "target": str(target), "sync": "none"})
    vm.tick(5)
    assert ok(vm, "query-block-jobs")[0]["offset"] == 0
    hmp(vm, 'qemu-io drive0 "write -P 0x55 120k 16k"')
    vm.tick(5)
    assert ok(vm, "query-block-jobs")[0]["offset"] == 2 * 65536
    ok(vm, "block-job-cancel", {"device": "drive0"})
    assert events(vm) == []  # the coroutine's bottom half runs after the reply
    vm.tick(0)
    assert events(vm) == [("BLOCK_JOB_CANCELLED", {"type": "backup", "device": "drive0",
                                                   "len": SIZE, "offset": 2 * 65536,
                                                   "speed": 0})]
    vm.close()
    assert [c["filename"] for c in chain_of(target)] == [str(target), str(src[0])]
    assert compare(target, src[1]) == "Images are identical."


def test_blockdev_backup_to_an_existing_node(vms: list[SyncVm], src: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    """blockdev-backup: the target is a node (blockdev-add); the job holds it (its
    op blockers) and leaves the graph as it was (block.md §4.7)."""
    vm = machine(vms, f"file={src[0]},if=none,id=drive0")
    target = add_target(vm, tmp_path)
    ok(vm, "blockdev-backup", {"device": "drive0", "target": "tgt", "sync": "full",
                               "job-id": "job0"})
    assert error(vm, "blockdev-snapshot-sync", {
        "node-name": "tgt", "snapshot-file": str(tmp_path / "s.qcow2"),
        "snapshot-node-name": "s"}) == (
        "GenericError", "Node 'tgt' is busy: block device is in use by block job: backup")
    assert error(vm, "drive-backup", {"device": "drive0", "sync": "full",
                                      "target": str(tmp_path / "x.qcow2")}) == (
        "GenericError", "Need a root block node")
    [(name, data)] = finish(vm)
    assert (name, data["device"], data["offset"]) == ("BLOCK_JOB_COMPLETED", "job0", SIZE)
    assert [n["node-name"] for n in ok(vm, "query-named-block-nodes")].count("tgt") == 1
    ok(vm, "blockdev-del", {"node-name": "tgt"})
    vm.close()
    assert compare(target, src[1]) == "Images are identical."


def test_error_texts(vm: SyncVm, tmp_path: Path) -> None:
    """do_drive_backup / do_blockdev_backup / backup_job_create, one text each
    (block.md §4.7)."""
    t = str(tmp_path / "t.qcow2")
    assert error(vm, "blockdev-backup", {"device": "drive0", "target": "src0",
                                         "sync": "full"}) == (
        "GenericError", "Source and target cannot be the same")
    assert error(vm, "drive-backup", {"device": "nope", "target": t, "sync": "full"}) == (
        "GenericError", "Cannot find device=nope nor node_name=nope")
    assert error(vm, "drive-backup", {"device": "drive0", "target": t,
                                      "sync": "incremental"}) == (
        "GenericError", 'must provide a valid bitmap name for "incremental" sync mode')
    assert error(vm, "drive-backup", {"device": "drive0", "target": str(tmp_path / "u.qcow2"),
                                      "sync": "full", "bitmap": "bm0"}) == (
        "GenericError", "Bitmap 'bm0' could not be found")
    ok(vm, "block-dirty-bitmap-add", {"node": "drive0", "name": "bm0"})
    assert error(vm, "drive-backup", {"device": "drive0", "target": t, "sync": "full",
                                      "bitmap": "bm0", "mode": "existing"}) == (
        "GenericError", "a sync_bitmap was provided to backup_run, but received an "
        "incompatible sync_mode (full)")
    raw = tmp_path / "r.raw"
    run("qemu-img", "create", "-f", "raw", str(raw), "4M")
    assert error(vm, "drive-backup", {"device": "drive0", "target": str(raw), "sync": "full",
                                      "compress": True, "mode": "existing",
                                      "format": "raw"}) == (
        "GenericError", "Compression is not supported for this drive ")
    ok(vm, "drive-backup", {"device": "drive0", "target": t, "sync": "incremental",
                            "bitmap": "bm0", "mode": "existing", "job-id": "j0",
                            "speed": 1})
    ok(vm, "block-dirty-bitmap-add", {"node": "drive0", "name": "bm1"})
    assert error(vm, "block-dirty-bitmap-remove", {"node": "drive0", "name": "bm0"}) == (
        "GenericError", "Bitmap 'bm0' is currently frozen and cannot be removed")
    assert error(vm, "block-job-complete", {"device": "j0"}) == (
        "GenericError", "The active block job 'j0' cannot be completed")
    assert error(vm, "blockdev-backup", {"device": "drive0", "target": "src0",
                                         "sync": "full"}) == (
        "GenericError", "Need a root block node")
    ok(vm, "block-job-cancel", {"device": "j0"})
    finish(vm)
    # the file created before a later check failed stays, as in QEMU
    assert (tmp_path / "u.qcow2").exists()


def test_frozen_bitmap_text() -> None:
    """bdrv_dirty_bitmap_create_successor refuses a frozen bitmap (block.md §4.7; not
    reachable over QMP in 2.11: the bitmap's node is no root while its job runs)."""
    from blockdev.bitmaps import DirtyBitmap, create_successor
    from schema.errors import GenericError

    bitmaps = [DirtyBitmap(name="bm0", granularity=65536, size=SIZE)]
    create_successor(bitmaps, bitmaps[0])
    with pytest.raises(GenericError, match=r"^Cannot create a successor for a bitmap that "
                       r"is currently frozen$"):
        create_successor(bitmaps, bitmaps[1])


def test_second_backup_of_a_device_in_one_transaction(vms: list[SyncVm],
                                                      src: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """The first action's job (created, not started) holds the device: the second
    action finds no root node (block.md §4.1); the abort drops the first job with no
    event, its bitmap unfrozen (backup_abort's reclaim) and its target file deleted."""
    vm = machine(vms, f"file={src[0]},if=none,id=drive0")
    ok(vm, "block-dirty-bitmap-add", {"node": "drive0", "name": "bm0"})
    acts = [{"type": "drive-backup", "data": {"device": "drive0", "sync": "incremental",
                                              "bitmap": "bm0", "job-id": f"j{i}",
                                              "target": str(tmp_path / f"{i}.qcow2")}}
            for i in range(2)]
    assert error(vm, "transaction", {"actions": acts}) == (
        "GenericError", "Need a root block node")
    assert ok(vm, "query-block-jobs") == [] and events(vm) == []
    assert ok(vm, "query-block")[0]["dirty-bitmaps"] == [
        {"name": "bm0", "count": 0, "granularity": 65536, "status": "active"}]
    assert not (tmp_path / "0.qcow2").exists() and not (tmp_path / "1.qcow2").exists()


@pytest.mark.parametrize("policy", ["report", "stop", "enospc", "ignore"])
def test_target_error_policies(vms: list[SyncVm], src: tuple[Path, Path], tmp_path: Path,
                               policy: str) -> None:
    """on-target-error through block_job_error_action (block.md §4.3): every error
    sends BLOCK_JOB_ERROR (operation write); `report` ends the job with the error;
    `stop`/`enospc` (ENOSPC) pause it with io-status nospace until resumed;
    `ignore` retries the same cluster."""
    vm = machine(vms, f"file={src[0]},if=none,id=drive0")
    target = add_target(vm, tmp_path)
    ok(vm, "blockdev-backup", {"device": "drive0", "target": "tgt", "sync": "full",
                               "on-target-error": policy})
    vm.tick(0.1)
    guest_io.set_fault(vm.block, "tgt", "write", errno.ENOSPC)
    vm.tick(0.1)
    evs = events(vm)
    action = {"report": "report", "stop": "stop", "enospc": "stop", "ignore": "ignore"}[policy]
    assert evs[0] == ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "write",
                                          "action": action})
    if policy == "report":
        assert evs[1][0] == "BLOCK_JOB_COMPLETED"
        assert evs[1][1]["error"] == "No space left on device"
        assert ok(vm, "query-block-jobs") == []
        return
    guest_io.set_fault(vm.block, "tgt", "write", None)
    if action == "stop":
        assert len(evs) == 1
        [info] = ok(vm, "query-block-jobs")
        assert (info["paused"], info["io-status"]) == (True, "nospace")
        ok(vm, "block-job-resume", {"device": "drive0"})
    else:
        assert len(evs) > 1 and {e[0] for e in evs} == {"BLOCK_JOB_ERROR"}
    [(name, data)] = finish(vm)
    assert name == "BLOCK_JOB_COMPLETED" and "error" not in data and data["offset"] == SIZE
    ok(vm, "blockdev-del", {"node-name": "tgt"})
    vm.close()
    assert compare(target, src[1]) == "Images are identical."


def test_source_read_error_reports(vms: list[SyncVm], src: tuple[Path, Path],
                                   tmp_path: Path) -> None:
    """on-source-error: a failed read is a `read` BLOCK_JOB_ERROR; `report` ends the
    job with COMPLETED and the error's text."""
    vm = machine(vms, f"file={src[0]},if=none,id=drive0,node-name=src0")
    ok(vm, "drive-backup", {"device": "drive0", "target": str(tmp_path / "t.qcow2"),
                            "sync": "full"})
    guest_io.set_fault(vm.block, "src0", "read", errno.EIO)
    evs = finish(vm)
    assert evs[0] == ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "read",
                                          "action": "report"})
    assert evs[1][0] == "BLOCK_JOB_COMPLETED" and evs[1][1]["error"] == "Input/output error"


def test_a_failed_copy_before_write_fails_the_guest_write(
        vms: list[SyncVm], src: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """backup_before_write_notify's error is the write's: the source keeps its data."""
    vm = machine(vms, f"file={src[0]},if=none,id=drive0")
    add_target(vm, tmp_path)
    ok(vm, "blockdev-backup", {"device": "drive0", "target": "tgt", "sync": "none"})
    guest_io.set_fault(vm.block, "tgt", "write", errno.ENOSPC)
    assert hmp(vm, 'qemu-io drive0 "write -P 0x66 0 4k"') == ""
    assert capsys.readouterr().out == "write failed: No space left on device\n"
    guest_io.set_fault(vm.block, "tgt", "write", None)
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(0)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_CANCELLED"]
    ok(vm, "blockdev-del", {"node-name": "tgt"})
    vm.close()
    assert compare(src[0], src[1]) == "Images are identical."


def _grouped(tmp_path: Path, speeds: tuple[int, int]) -> dict[str, Any]:
    return {"actions": [
        {"type": "drive-backup", "data": {"device": f"drive{i}", "sync": "full",
                                          "target": str(tmp_path / f"b{i}.qcow2"),
                                          "speed": speeds[i]}}
        for i in range(2)], "properties": {"completion-mode": "grouped"}}


@pytest.fixture
def two(vms: list[SyncVm], tmp_path: Path) -> SyncVm:
    for i in range(2):
        run("qemu-img", "create", "-f", "qcow2", str(tmp_path / f"d{i}.qcow2"), "4M")
    return new_vm(vms, "-S", "-nodefaults", "-display", "none",
                  "-drive", f"file={tmp_path / 'd0.qcow2'},if=none,id=drive0",
                  "-drive", f"file={tmp_path / 'd1.qcow2'},if=none,id=drive1",
                  f"--emu-behaviour=block-job-bandwidth={BANDWIDTH}")


def test_grouped_transaction_completes_in_reverse_action_order(two: SyncVm,
                                                               tmp_path: Path) -> None:
    """completion-mode grouped: a finished job waits for the group; when the last one
    finishes every job completes, newest (last action) first (block.md §5)."""
    ok(two, "transaction", _grouped(tmp_path, (0, 2 * MiB)))
    two.tick(1)
    assert events(two) == []  # drive0 finished its copy; it waits for drive1
    assert [j["device"] for j in ok(two, "query-block-jobs")] == ["drive1", "drive0"]
    evs = finish(two, 3)
    assert [(n, d["device"], d["offset"]) for n, d in evs] == [
        ("BLOCK_JOB_COMPLETED", "drive1", SIZE), ("BLOCK_JOB_COMPLETED", "drive0", SIZE)]


def test_grouped_transaction_cancel_cancels_the_group(two: SyncVm, tmp_path: Path) -> None:
    """A cancelled job of a group cancels the others, even one that finished its copy:
    every job ends with BLOCK_JOB_CANCELLED, last action first (block.md §5, verified:
    d1 finished, user cancelled d0)."""
    ok(two, "transaction", _grouped(tmp_path, (2 * MiB, 0)))
    two.tick(1)
    ok(two, "block-job-cancel", {"device": "drive0"})
    evs = finish(two)
    assert [(n, d["device"]) for n, d in evs] == [
        ("BLOCK_JOB_CANCELLED", "drive1"), ("BLOCK_JOB_CANCELLED", "drive0")]
    assert evs[0][1]["offset"] == SIZE and evs[1][1]["offset"] < SIZE


def test_grouped_transaction_error_cancels_the_others(two: SyncVm, tmp_path: Path) -> None:
    """A job of a group that fails (policy report) ends with BLOCK_JOB_COMPLETED and
    its error; the others are cancelled; the events come last action first
    (block_job_completed_txn_abort, block.md §5)."""
    ok(two, "transaction", _grouped(tmp_path, (2 * MiB, 2 * MiB)))
    two.tick(0.5)
    [node] = [n.node_name for n in two.block.nodes
              if n.filename == str(tmp_path / "b0.qcow2") and n.driver.format_name == "qcow2"]
    guest_io.set_fault(two.block, node, "write", errno.EIO)
    evs = finish(two, 3)
    assert [(n, d["device"], d.get("error")) for n, d in evs] == [
        ("BLOCK_JOB_ERROR", "drive0", None),
        ("BLOCK_JOB_CANCELLED", "drive1", None),
        ("BLOCK_JOB_COMPLETED", "drive0", "Input/output error")]


def test_individual_transaction_jobs_report_alone(two: SyncVm, tmp_path: Path) -> None:
    """completion-mode individual (the default): each job reports when it ends."""
    acts = _grouped(tmp_path, (0, 2 * MiB))["actions"]
    ok(two, "transaction", {"actions": acts})
    two.tick(1)
    assert [(n, d["device"]) for n, d in events(two)] == [("BLOCK_JOB_COMPLETED", "drive0")]
    assert [(n, d["device"]) for n, d in finish(two, 3)] == [("BLOCK_JOB_COMPLETED", "drive1")]


def test_failed_transaction_drops_the_jobs_without_events(two: SyncVm, tmp_path: Path) -> None:
    """A later action's failure aborts the backup action: its job, never started, is
    cancelled without an event (block.md §4.2), and the target file it created is
    deleted (issue 9)."""
    acts = _grouped(tmp_path, (0, 0))["actions"] + [{"type": "abort", "data": {}}]
    assert error(two, "transaction", {"actions": acts,
                                      "properties": {"completion-mode": "grouped"}}) == (
        "GenericError", "Transaction aborted using Abort action")
    assert ok(two, "query-block-jobs") == []
    two.tick(1)
    assert events(two) == []
    assert not (tmp_path / "b0.qcow2").exists() and not (tmp_path / "b1.qcow2").exists()


def test_hmp_drive_backup(vm: SyncVm, src: tuple[Path, Path], tmp_path: Path) -> None:
    """hmp.c hmp_drive_backup: -f is sync full (else top, here without backing:
    full), the job runs as drive-backup's; `info block-jobs` shows it."""
    target = tmp_path / "h.qcow2"
    assert hmp(vm, f"drive_backup -f drive0 {target}") == ""
    vm.tick(0.1)
    assert hmp(vm, "info block-jobs").startswith("Type backup, device drive0: Completed ")
    [(name, _)] = finish(vm)
    assert name == "BLOCK_JOB_COMPLETED"
    assert hmp(vm, f"drive_backup -n drive0 {tmp_path / 'missing.qcow2'}").startswith(
        "Could not open")
    vm.close()
    assert compare(target, src[1]) == "Images are identical."


async def test_backups_while_an_nbd_client_writes(tmp_path: Path) -> None:
    """Writes through the NBD server (real qemu-io over nbd+unix) pass the backup's
    before-write notifier like any other: a full backup running while the client
    writes is the source as of its start, and an incremental backup afterwards holds
    exactly the clusters the client dirtied (block.md §3.11, §4.7). The jobs are run
    to their end with block_job_finish_sync's drain, so nothing waits for real time."""
    from tests.test_nbd_server import emulator, unix_start
    from tests.test_nbd_server import qemu_io as nbd_qemu_io
    from tests.test_nbd_server import run as run_async

    src, orig = source_image(tmp_path)
    sock = tmp_path / "nbd.sock"
    full, inc = tmp_path / "full.qcow2", tmp_path / "inc.qcow2"
    url = f"nbd+unix:///drive0?socket={sock}"
    async with emulator(["-drive", f"file={src},if=none,id=drive0"]) as qmp:
        jobs = qmp.vm.jobs
        unix_start(qmp, sock)
        assert qmp("nbd-server-add", device="drive0", writable=True) == {"return": {}}
        assert qmp("block-dirty-bitmap-add", node="drive0", name="bm0") == {"return": {}}
        assert qmp("drive-backup", device="drive0", target=str(full), sync="full",
                   speed=1) == {"return": {}}
        await nbd_qemu_io("-f", "raw", "-c", "write -P 0x77 0 2M", url)
        jobs.finish_sync(jobs.find("drive0"), None)
        await nbd_qemu_io("-f", "raw", "-c", "write -P 0x78 3M 4k", url)
        await run_async("qemu-img", "create", "-f", "qcow2", "-b", str(full), "-F", "qcow2",
                        str(inc))
        assert qmp("drive-backup", device="drive0", target=str(inc), sync="incremental",
                   bitmap="bm0", mode="existing", format="qcow2") == {"return": {}}
        jobs.finish_sync(jobs.find("drive0"), None)
        [info] = qmp("query-block")["return"]
        assert info["dirty-bitmaps"] == [
            {"name": "bm0", "count": 0, "granularity": 65536, "status": "active"}]
    assert compare(full, orig) == "Images are identical."
    assert compare(inc, src) == "Images are identical."
    mapped = json.loads(run("qemu-img", "map", "--output=json", str(inc)))
    top = [(m["start"], m["length"]) for m in mapped if m["depth"] == 0 and m["data"]]
    assert top == [(0, 2 * MiB), (3 * MiB, 65536)]



def test_target_node_lives_as_long_as_the_job(vm: SyncVm, src: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    """drive-backup opens its target as nodes of their own (format and protocol, with
    automatic `#block` names, listed by query-named-block-nodes) that go with the job: the graph is left as it
    was (issue 9: "backup leaves the graph as it was"). `compress` is accepted for a
    qcow2 target (it has compressed writes in 2.11); a negative speed is refused
    after the target was made (block_job_create)."""
    before = [n["node-name"] for n in ok(vm, "query-named-block-nodes")]
    target = tmp_path / "c.qcow2"
    ok(vm, "drive-backup", {"device": "drive0", "target": str(target), "sync": "full",
                            "compress": True})
    during = {n["node-name"]: (n["drv"], n["file"])
              for n in ok(vm, "query-named-block-nodes")}
    new = sorted(during[name] for name in during if name not in before)
    assert new == [("file", str(target)), ("qcow2", str(target))]
    assert all(name.startswith("#block") for name in during if name not in before)
    finish(vm)
    assert [n["node-name"] for n in ok(vm, "query-named-block-nodes")] == before
    assert error(vm, "drive-backup", {"device": "drive0", "target": str(tmp_path / "s.qcow2"),
                                      "sync": "full", "speed": -1}) == (
        "GenericError", "Invalid parameter 'speed'")
    assert (tmp_path / "s.qcow2").exists()
    vm.close()
    assert compare(target, src[1]) == "Images are identical."


def test_compressed_backup_is_a_valid_compressed_image(vm: SyncVm, src: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    """compress=true on a qcow2 target: every cluster with data is written with
    BDRV_REQ_WRITE_COMPRESSED (qcow2_co_pwritev_compressed: raw deflate, the bytes
    packed by qcow2_alloc_bytes), so the image is smaller than its data, qemu-img
    check finds nothing, qemu-img map reports the clusters as compressed (no host
    offset) and the contents equal the source."""
    target = tmp_path / "z.qcow2"
    ok(vm, "drive-backup", {"device": "drive0", "target": str(target), "sync": "full",
                            "compress": True})
    hmp(vm, 'qemu-io drive0 "write -P 0x5a 3M 4k"')  # copy-before-write compresses too
    [(name, _)] = finish(vm)
    assert name == "BLOCK_JOB_COMPLETED"
    vm.close()
    assert compare(target, src[1]) == "Images are identical."
    assert "No errors were found on the image." in run("qemu-img", "check", str(target))
    mapped = json.loads(run("qemu-img", "map", "--output=json", str(target)))
    data = [m for m in mapped if m["data"]]
    assert sum(m["length"] for m in data) == MiB + 512 * 1024 + 65536
    assert all("offset" not in m for m in data)
    assert target.stat().st_size < 512 * 1024


def test_existing_target_is_probed_and_kept(vm: SyncVm, src: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    """mode=existing without format: nothing is created and the target's format is
    probed (do_drive_backup leaves `format` unset); HMP drive_backup -n is the same."""
    target = tmp_path / "e.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(target), "4M")
    ok(vm, "drive-backup", {"device": "drive0", "target": str(target), "sync": "full",
                            "mode": "existing"})
    finish(vm)
    assert hmp(vm, f"drive_backup -n -f drive0 {target}") == ""
    [(name, _)] = finish(vm)
    assert name == "BLOCK_JOB_COMPLETED"
    vm.close()
    assert compare(target, src[1]) == "Images are identical."
    assert chain_of(target)[0]["format"] == "qcow2"


def test_failed_creation_unfreezes_the_bitmap(two: SyncVm, tmp_path: Path) -> None:
    """backup_job_create's error path reclaims the successor it made: a job ID in use
    (block_job_create, block.md §4.1) leaves the bitmap active, with nothing lost."""
    ok(two, "drive-backup", {"device": "drive1", "target": str(tmp_path / "x.qcow2"),
                             "sync": "full", "job-id": "x", "speed": 1})
    ok(two, "block-dirty-bitmap-add", {"node": "drive0", "name": "bm0"})
    hmp(two, 'qemu-io drive0 "write -P 0x44 0 64k"')
    assert error(two, "drive-backup", {"device": "drive0", "sync": "incremental",
                                       "target": str(tmp_path / "y.qcow2"),
                                       "bitmap": "bm0", "job-id": "x"}) == (
        "GenericError", "Job ID 'x' already in use")
    assert ok(two, "query-block")[0]["dirty-bitmaps"] == [
        {"name": "bm0", "count": 65536, "granularity": 65536, "status": "active"}]
    assert [j["device"] for j in ok(two, "query-block-jobs")] == ["x"]
    ok(two, "block-job-cancel", {"device": "x"})
    assert [n for n, _ in finish(two)] == ["BLOCK_JOB_CANCELLED"]
