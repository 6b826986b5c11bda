"""`block-commit` (blockdev.c qmp_block_commit, block/commit.c) on real qcow2 chains
written by `qemu-io`: the intermediate commit writes what lies between top and base
into base in the Machine's time, behind a `commit_top` filter, then re-points the
overlay at base (its image header too) and drops the committed range; cancelled or
failed, only the filter goes. After the emulator exits `qemu-img compare` and
`qemu-img info --backing-chain` say what they would after a real QEMU. The texts and
quirks are block.md §1.4, §4.1, §4.5, §4.8. The active commit is the mirror-based
job of `blockdev.jobs.mirror` (its tests live with it); here only its checks."""

from __future__ import annotations

import errno
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from blockdev import guest_io
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, hmp, new_vm, ok, vms
from tests.test_jobs_stream import (
    BANDWIDTH,
    MIB,
    backing_chain,
    check_clean,
    identical,
    make_chain,
    run,
)

__all__ = ["vms"]

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-utils")

HAS_MIRROR = importlib.util.find_spec("blockdev.jobs.mirror") is not None


def start_vm(vms: list[SyncVm], top: Path, *extra: str) -> SyncVm:
    return new_vm(vms, "-S", "-nodefaults", "-display", "none",
                  "-drive", f"if=none,id=drive0,file={top},node-name=top,"
                  f"backing.node-name=mid,backing.backing.node-name=base{''.join(extra)}",
                  f"--emu-behaviour=block-job-bandwidth={BANDWIDTH}")


def nodes(vm: SyncVm) -> dict[str, dict[str, Any]]:
    return {n["node-name"]: n for n in ok(vm, "query-named-block-nodes")}


def job(vm: SyncVm) -> dict[str, Any]:
    [info] = ok(vm, "query-block-jobs")
    return info  # type: ignore[no-any-return]


def four_deep(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """base <- mid <- top, and an active layer `act` above top with data of its own."""
    base, mid, top = make_chain(tmp_path)
    act = tmp_path / "act.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", str(top), "-F", "qcow2", str(act))
    run("qemu-io", "-c", "write -P 0x44 2M 64k", str(act))
    shutil.copy(act, tmp_path / "twin-act.qcow2")
    return base, mid, top, act


# -- the intermediate commit ------------------------------------------------------------------


def test_commit_mid_into_base(vms: list[SyncVm], tmp_path: Path) -> None:
    """block.md §4.5/§4.8: reply, a `commit_top` filter (implicit, #block name, the
    file of the node below) above `top` while the job runs, BLOCK_JOB_COMPLETED with
    offset == len == top's size; then the overlay's backing is base, mid is gone, and
    the data are the same."""
    base, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    assert ok(vm, "block-commit", {"device": "drive0", "top": str(mid)}) == {}
    filters = [n for n in nodes(vm).values() if n["drv"] == "commit_top"]
    assert len(filters) == 1
    assert filters[0]["node-name"].startswith("#block")
    assert filters[0]["file"] == str(mid)
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    assert job(vm)["type"] == "commit" and job(vm)["len"] == 4 * MIB
    vm.tick(1)
    assert events(vm) == [("BLOCK_JOB_COMPLETED", {"type": "commit", "device": "drive0",
                                                   "len": 4 * MIB, "offset": 4 * MIB,
                                                   "speed": 0})]
    assert ok(vm, "query-block-jobs") == []
    assert sorted(nodes(vm)) == sorted(["top", "base", *[
        n for n in nodes(vm) if n.startswith("#block")]])
    assert not any(n["drv"] == "commit_top" for n in nodes(vm).values())
    inserted = ok(vm, "query-block")[0]["inserted"]
    assert (inserted["backing_file"], inserted["backing_file_depth"]) == (str(base), 1)
    assert nodes(vm)["base"]["ro"] is True  # made read-only again
    vm.close()
    assert backing_chain(top) == [(str(top), str(base)), (str(base), None)]
    assert identical(top, tmp_path / "twin.qcow2")
    check_clean(base)
    check_clean(top)


def test_commit_with_backing_file_string_and_filter_name(vms: list[SyncVm],
                                                         tmp_path: Path) -> None:
    """`backing-file` is what the overlay's header records (query-block shows base's
    filename all the same); with `filter-node-name` the filter is not implicit and
    carries that name (block.md §1.4, §4.5)."""
    base, _, top, act = four_deep(tmp_path)
    vm = new_vm(vms, "-S", "-nodefaults", "-display", "none", "-drive",
                f"if=none,id=drive0,file={act},node-name=act,backing.node-name=top",
                f"--emu-behaviour=block-job-bandwidth={BANDWIDTH}")
    ok(vm, "block-commit", {"device": "drive0", "top": str(top), "base": str(base),
                            "backing-file": "base.qcow2", "filter-node-name": "ctop",
                            "job-id": "c1", "speed": 4 * MIB})
    assert nodes(vm)["ctop"]["drv"] == "commit_top"
    assert nodes(vm)["ctop"]["file"] == str(top)
    vm.tick(3)
    assert [(e[0], e[1]["device"]) for e in events(vm)] == [("BLOCK_JOB_COMPLETED", "c1")]
    assert "ctop" not in nodes(vm) and "top" not in nodes(vm)
    inserted = ok(vm, "query-block")[0]["inserted"]
    assert (inserted["backing_file"], inserted["backing_file_depth"]) == (str(base), 1)
    vm.close()
    assert backing_chain(act) == [(str(act), "base.qcow2"), (str(base), None)]
    assert identical(act, tmp_path / "twin-act.qcow2")
    check_clean(act)


def test_commit_below_a_read_only_overlay(vms: list[SyncVm], tmp_path: Path) -> None:
    """act <- top <- mid <- base, commit mid into base: the overlay `top` is an
    intermediate image, read-only; bdrv_backing_update_filename reopens it to write
    its header and makes it read-only again. The job cannot be completed by hand
    (block.md §4.1)."""
    base, mid, top, act = four_deep(tmp_path)
    vm = new_vm(vms, "-S", "-nodefaults", "-display", "none", "-drive",
                f"if=none,id=drive0,file={act},node-name=act,backing.node-name=top,"
                "backing.backing.node-name=mid",
                f"--emu-behaviour=block-job-bandwidth={BANDWIDTH}")
    ok(vm, "block-commit", {"device": "drive0", "top": str(mid), "base": str(base)})
    assert error(vm, "block-job-complete", {"device": "drive0"}) == (
        "GenericError", "The active block job 'drive0' cannot be completed")
    vm.tick(1)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    assert nodes(vm)["top"]["ro"] is True and "mid" not in nodes(vm)
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    vm.close()
    assert backing_chain(act) == [(str(act), str(top)), (str(top), str(base)),
                                  (str(base), None)]
    assert identical(act, tmp_path / "twin-act.qcow2")
    check_clean(top)
    check_clean(base)


def test_commit_speed_and_cancel(vms: list[SyncVm], tmp_path: Path) -> None:
    """With a speed the job waits out the rate limit between chunks; cancel gives
    BLOCK_JOB_CANCELLED, the filter goes and the chain stays (block.md §4.5)."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-commit", {"device": "drive0", "top": str(mid), "speed": 512 * 1024})
    vm.tick(0.3)
    assert 0 < job(vm)["offset"] < 4 * MIB
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(0.2)
    [(name, data)] = events(vm)
    assert name == "BLOCK_JOB_CANCELLED" and data["type"] == "commit"
    assert not any(n["drv"] == "commit_top" for n in nodes(vm).values())
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    assert nodes(vm)["base"]["ro"] is True
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(mid))
    assert identical(top, tmp_path / "twin.qcow2")


def test_commit_keeps_its_old_delay_after_speed_0(vms: list[SyncVm], tmp_path: Path) -> None:
    """commit_run recomputes its delay only after a chunk that copied while a speed
    is set: after `block-job-set-speed 0` the last delay stays (block.md quirk)."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-commit", {"device": "drive0", "top": str(mid), "speed": 512 * 1024})
    vm.tick(0.06)  # nothing above base below 512 KiB; mid's first chunk in 0.05 s
    assert job(vm)["offset"] == MIB
    ok(vm, "block-job-set-speed", {"device": "drive0", "speed": 0})
    vm.tick(0.5)
    # still sleeping the delay: 11 slices of a 52428-byte quota from 0.05 s
    assert job(vm)["offset"] == MIB
    vm.tick(0.7)  # 1.26 s: the next chunk was copied from 1.15 s to 1.2 s
    assert job(vm)["offset"] == MIB + 512 * 1024
    vm.tick(0.5)
    assert job(vm)["offset"] == MIB + 512 * 1024  # the same delay again at speed 0
    vm.tick(30)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    vm.close()
    assert identical(top, tmp_path / "twin.qcow2")


def test_write_error_is_reported_as_write(vms: list[SyncVm], tmp_path: Path) -> None:
    """A failed write into base: BLOCK_JOB_ERROR `write`/`report` (always, whatever
    happened: commit_run's swapped arguments), BLOCK_JOB_COMPLETED with the error, the
    chain unchanged (block.md §4.5)."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    guest_io.set_fault(vm.block, "base", "write", errno.ENOSPC)
    ok(vm, "block-commit", {"device": "drive0", "top": str(mid)})
    vm.tick(1)
    assert events(vm) == [
        ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "write", "action": "report"}),
        ("BLOCK_JOB_COMPLETED", {"type": "commit", "device": "drive0", "len": 4 * MIB,
                                 "offset": 512 * 1024,  # nothing above base below that
                                 "speed": 0, "error": "No space left on device"})]
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(mid))


def test_read_error_is_reported_as_write(vms: list[SyncVm], tmp_path: Path) -> None:
    """Even a failed read of top says `"operation": "write"`."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    guest_io.set_fault(vm.block, "mid", "read", errno.EIO)
    ok(vm, "block-commit", {"device": "drive0", "top": str(mid)})
    vm.tick(1)
    assert events(vm)[0] == ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "write",
                                                 "action": "report"})


# -- the command's checks, in QEMU's order ------------------------------------------------------


def test_command_errors(vms: list[SyncVm], tmp_path: Path) -> None:
    """qmp_block_commit's texts and classes (block.md §4.5)."""
    base, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)

    def err(**args: Any) -> tuple[str, str]:
        return error(vm, "block-commit", {k.replace("_", "-"): v for k, v in args.items()})

    assert err(device="nope") == ("DeviceNotFound", "Device 'nope' not found")
    assert err(device="mid") == ("GenericError", "Need a root block node")
    assert err(device="drive0", top="/no/such") == (
        "GenericError", "Top image file /no/such not found")
    assert err(device="drive0", top=str(mid), base="/no/such") == (
        "GenericError", "Base '/no/such' not found")
    assert err(device="drive0", top=str(base)) == (
        "GenericError", "cannot commit an image into itself")
    assert err(device="drive0", top=str(mid), base=str(mid)) == (
        "GenericError", "Base '" + str(mid) + "' not found")
    assert err(device="drive0", backing_file="x") == (
        "GenericError", "'backing-file' specified, but 'top' is the active layer")
    assert err(device="drive0", top=str(top), backing_file="x") == (
        "GenericError", "'backing-file' specified, but 'top' is the active layer")
    assert err(device="drive0", top=str(mid), job_id="1bad") == (
        "GenericError", "Invalid job ID '1bad'")
    assert err(device="drive0", top=str(mid), speed=-1) == (
        "GenericError", "Invalid parameter 'speed'")
    assert err(device="drive0", top=str(mid), filter_node_name="base") == (
        "GenericError", "Duplicate node name")
    # nothing is left of the failed attempts
    assert ok(vm, "query-block-jobs") == []
    assert not any(n["drv"] == "commit_top" for n in nodes(vm).values())
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    # a relative top name is taken relative to the overlay that records it
    ok(vm, "block-commit", {"device": "drive0", "top": "mid.qcow2", "speed": 1})
    assert err(device="drive0", top=str(mid)) == ("GenericError", "Need a root block node")
    assert error(vm, "block-stream", {"device": "drive0"}) == (
        "GenericError", "Node 'drive0' is busy: block device is in use by block job: commit")
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(1)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_CANCELLED"]


def test_commit_of_an_image_without_backing(vms: list[SyncVm], tmp_path: Path) -> None:
    """A device without a backing file: base defaults to the active layer itself."""
    img = tmp_path / "alone.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(img), "1M")
    vm = new_vm(vms, "-S", "-nodefaults", "-drive", f"if=none,id=drive0,file={img}")
    assert error(vm, "block-commit", {"device": "drive0"}) == (
        "GenericError", "cannot commit an image into itself")


@pytest.mark.skipif(not HAS_MIRROR, reason="the active commit is blockdev.jobs.mirror's")
def test_active_commit_goes_to_the_mirror_job(vms: list[SyncVm], tmp_path: Path) -> None:
    """top = the active layer: the mirror-based job (type commit), READY, then
    block-job-complete pivots to base (block.md §4.5, §4.8)."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-commit", {"device": "drive0"})
    vm.tick(2)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_READY"]
    ok(vm, "block-job-complete", {"device": "drive0"})
    vm.tick(1)
    assert [(e[0], e[1]["type"]) for e in events(vm)] == [("BLOCK_JOB_COMPLETED", "commit")]
    inserted = ok(vm, "query-block")[0]["inserted"]
    assert (inserted["file"], inserted["backing_file_depth"]) == (str(base), 0)
    vm.close()
    assert identical(base, tmp_path / "twin.qcow2")


# -- HMP `commit`: bdrv_commit, at once ---------------------------------------------------------


def test_hmp_commit_writes_top_into_its_backing_file(vms: list[SyncVm],
                                                     tmp_path: Path) -> None:
    """blockdev.c hmp_commit -> block/commit.c bdrv_commit: what the active image
    allocates goes into its backing file (read-only, reopened for it), the active
    image is emptied (qcow2_make_empty) and the chain stays; the disk reads the same."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    assert hmp(vm, "commit drive0") == ""
    assert nodes(vm)["mid"]["ro"] is True
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(mid))
    assert identical(top, tmp_path / "twin.qcow2")
    assert json.loads(run("qemu-img", "map", "--output=json", str(top)))[0]["depth"] == 1
    assert all(e["depth"] > 0 or not e["data"]
               for e in json.loads(run("qemu-img", "map", "--output=json", str(top))))
    check_clean(top)
    check_clean(mid)


def test_hmp_commit_all_and_busy(vms: list[SyncVm], tmp_path: Path) -> None:
    """`commit all` commits every drive with a backing file (blk_commit_all); a node
    a job uses is busy: EBUSY's text."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-stream", {"device": "drive0", "speed": 1})
    assert hmp(vm, "commit drive0") == (
        "'commit' error for 'drive0': Device or resource busy\r\n")
    assert hmp(vm, "commit all") == "'commit' error for 'all': Device or resource busy\r\n"
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(1)
    assert hmp(vm, "commit all") == ""
    vm.close()
    assert identical(top, tmp_path / "twin.qcow2")
    assert backing_chain(top)[0] == (str(top), str(mid))
