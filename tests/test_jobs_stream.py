"""`block-stream` (blockdev.c qmp_block_stream, block/stream.c) on real qcow2 chains
written by `qemu-io`: the job pulls the data into the top image in the Machine's
time, drops the chain down to base and rewrites the backing file name; after the
emulator exits, `qemu-img compare` and `qemu-img info --backing-chain` say what
they would say after a real QEMU. The texts and quirks are block.md §4.1, §4.4,
§4.8; HMP `block_stream` is hmp.c hmp_block_stream."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from blockdev import guest_io
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, hmp, new_vm, ok, vms

__all__ = ["vms"]

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-utils")

MIB = 1 << 20
BANDWIDTH = 10 * MIB  # the simulated disk: 1 MiB per 0.1 s


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def qemu_io(path: Path, *cmds: str) -> None:
    args = ["qemu-io"]
    for c in cmds:
        args += ["-c", c]
    run(*args, str(path))


def make_chain(tmp_path: Path) -> tuple[Path, Path, Path]:
    """base <- mid <- top, 4 MiB, patterns in every layer (the test_block_io chain),
    and `twin.qcow2`: a copy of top on the same chain, what the data must stay."""
    base, mid, top = (tmp_path / n for n in ("base.qcow2", "mid.qcow2", "top.qcow2"))
    run("qemu-img", "create", "-f", "qcow2", str(base), "4M")
    qemu_io(base, "write -P 0x11 0 1M", "write -P 0x12 3M 512k")
    run("qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(mid))
    qemu_io(mid, "write -P 0x22 512k 1M", "write -z 3M 4k")
    run("qemu-img", "create", "-f", "qcow2", "-b", str(mid), "-F", "qcow2", str(top))
    qemu_io(top, "write -P 0x33 1M 4k", "write -P 0x34 1000 3000")
    shutil.copy(top, tmp_path / "twin.qcow2")
    return base, mid, top


def backing_chain(path: Path) -> list[tuple[str, str | None]]:
    """(filename, backing-filename) of each image, as qemu-img info --backing-chain."""
    out = json.loads(run("qemu-img", "info", "-U", "--output=json", "--backing-chain",
                         str(path)))
    return [(i["filename"], i.get("backing-filename")) for i in out]


def identical(a: Path, b: Path) -> bool:
    done = subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "Images are identical."


def check_clean(path: Path) -> None:
    assert "No errors were found" in run("qemu-img", "check", str(path))


def start_vm(vms: list[SyncVm], top: Path, *extra: str) -> SyncVm:
    return new_vm(vms, "-S", "-nodefaults", "-display", "none",
                  "-drive", f"if=none,id=drive0,file={top}{''.join(extra)}",
                  f"--emu-behaviour=block-job-bandwidth={BANDWIDTH}")


def node_names(vm: SyncVm) -> list[str]:
    return [n["node-name"] for n in ok(vm, "query-named-block-nodes")]


def job(vm: SyncVm) -> dict[str, Any]:
    [info] = ok(vm, "query-block-jobs")
    return info  # type: ignore[no-any-return]


# -- success: the data, the chain, the header ----------------------------------------------


def test_stream_to_base_by_filename(vms: list[SyncVm], tmp_path: Path) -> None:
    """block.md §4.4/§4.8: reply, then BLOCK_JOB_COMPLETED with offset == len == the
    disk's size; top's backing is now base, with `base` as given in its header; the
    mid node is gone; the data are what they were."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    assert ok(vm, "block-stream", {"device": "drive0", "base": str(base)}) == {}
    assert job(vm) == {"type": "stream", "device": "drive0", "len": 4 * MIB, "offset": 0,
                       "busy": False, "paused": False, "speed": 0, "io-status": "ok",
                       "ready": False}
    vm.tick(0.05)  # mid's 1 MiB chunk pair is in flight
    assert job(vm)["busy"] is True
    vm.tick(1)
    assert events(vm) == [("BLOCK_JOB_COMPLETED", {"type": "stream", "device": "drive0",
                                                   "len": 4 * MIB, "offset": 4 * MIB,
                                                   "speed": 0})]
    assert ok(vm, "query-block-jobs") == []
    inserted = ok(vm, "query-block")[0]["inserted"]
    assert (inserted["backing_file"], inserted["backing_file_depth"]) == (str(base), 1)
    assert len(node_names(vm)) == 4  # top, its file, base, its file
    vm.close()
    assert backing_chain(top) == [(str(top), str(base)), (str(base), None)]
    assert identical(top, tmp_path / "twin.qcow2")
    check_clean(top)


def test_stream_whole_chain(vms: list[SyncVm], tmp_path: Path) -> None:
    """Without base every layer's data ends up in top, which has no backing file
    afterwards (bdrv_change_backing_file(bs, NULL, NULL))."""
    _, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-stream", {"device": "drive0"})
    vm.tick(2)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    inserted = ok(vm, "query-block")[0]["inserted"]
    assert "backing_file" not in inserted and inserted["backing_file_depth"] == 0
    vm.close()
    assert backing_chain(top) == [(str(top), None)]
    assert identical(top, tmp_path / "twin.qcow2")
    check_clean(top)


def test_base_node_and_backing_file_string(vms: list[SyncVm], tmp_path: Path) -> None:
    """`backing-file` is the string written into top's header; query-block shows the
    base node's filename all the same (block.md §4.4, verified)."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",backing.backing.node-name=basenode")
    ok(vm, "block-stream", {"device": "drive0", "base-node": "basenode",
                            "backing-file": "base.qcow2", "job-id": "s0"})
    vm.tick(2)
    assert events(vm)[0][1]["device"] == "s0"
    assert ok(vm, "query-block")[0]["inserted"]["backing_file"] == str(base)
    vm.close()
    assert backing_chain(top) == [(str(top), "base.qcow2"), (str(base), None)]
    assert identical(top, tmp_path / "twin.qcow2")


def test_stream_without_backing_ends_at_once(vms: list[SyncVm], tmp_path: Path) -> None:
    """A node without a backing file: the job completes with len 0, offset 0."""
    img = tmp_path / "alone.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(img), "1M")
    vm = start_vm(vms, img)
    ok(vm, "block-stream", {"device": "drive0"})
    vm.tick(0)
    assert events(vm) == [("BLOCK_JOB_COMPLETED", {"type": "stream", "device": "drive0",
                                                   "len": 0, "offset": 0, "speed": 0})]


def test_read_only_node_is_reopened_for_the_job(vms: list[SyncVm], tmp_path: Path) -> None:
    """stream_start reopens a read-only node read-write (an intermediate image, opened
    read-only below a writable one) and stream_complete makes it read-only again; a
    drive opened with readonly=on cannot be (bdrv_reopen_prepare's text)."""
    base, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",backing.node-name=mid")

    def mid_ro() -> bool:
        return next(n["ro"] for n in ok(vm, "query-named-block-nodes")
                    if n["node-name"] == "mid")

    assert mid_ro() is True
    ok(vm, "block-stream", {"device": "mid", "job-id": "j0"})
    assert mid_ro() is False
    vm.tick(2)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    assert mid_ro() is True
    vm.close()
    assert backing_chain(top) == [(str(top), str(mid)), (str(mid), None)]
    assert identical(top, tmp_path / "twin.qcow2")
    assert identical(mid, base) is False
    vms.clear()
    vm = start_vm(vms, base, ",readonly=on")
    assert error(vm, "block-stream", {"device": "drive0"}) == (
        "GenericError", "Node 'drive0' is read only")


# -- the Machine's time: rate limit, pause, cancel ---------------------------------------------


def test_speed_and_the_old_delay_after_speed_0(vms: list[SyncVm], tmp_path: Path) -> None:
    """With a speed, each 512 KiB chunk that copied waits ratelimit's delay; after
    `block-job-set-speed 0` the job keeps the last delay it computed (block/stream.c
    only recomputes it with a speed; block.md §4.4 quirk)."""
    _, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-stream", {"device": "drive0", "speed": 512 * 1024})
    assert job(vm)["speed"] == 512 * 1024
    vm.tick(0.06)  # the first chunk (512 KiB of base's pattern) copied in 0.05 s
    assert job(vm)["offset"] == 512 * 1024
    vm.tick(0.5)  # its delay: one second (ten slices of a 51 KiB quota)
    assert job(vm)["offset"] == 512 * 1024
    ok(vm, "block-job-set-speed", {"device": "drive0", "speed": 0})
    vm.tick(0.5)  # 1.06 s: the sleep ended, the next chunk copied
    assert job(vm)["offset"] == MIB
    vm.tick(0.5)  # and the same delay again, though the speed is 0 now
    assert job(vm)["offset"] == MIB
    vm.tick(30)  # every later iteration sleeps it too, copying or not
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    vm.close()
    assert identical(top, tmp_path / "twin.qcow2")


def test_cancel_leaves_the_chain(vms: list[SyncVm], tmp_path: Path) -> None:
    """block.md §4.4: on cancel BLOCK_JOB_CANCELLED, the chain unchanged (what was
    copied stays in top: the data are the same)."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-stream", {"device": "drive0", "speed": 512 * 1024})
    vm.tick(0.5)
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(0)
    [(name, data)] = events(vm)
    assert name == "BLOCK_JOB_CANCELLED" and data["offset"] == 512 * 1024
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(mid))
    assert identical(top, tmp_path / "twin.qcow2")


def test_pause_and_resume(vms: list[SyncVm], tmp_path: Path) -> None:
    """block-job-pause: paused at once, no progress until resumed (blockjob.c)."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    ok(vm, "block-stream", {"device": "drive0", "base": str(base), "speed": MIB})
    ok(vm, "block-job-pause", {"device": "drive0"})
    assert job(vm)["paused"] is True
    vm.tick(3)
    info = job(vm)
    assert (info["busy"], info["offset"]) == (False, 0)
    ok(vm, "block-job-resume", {"device": "drive0"})
    vm.tick(20)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]


# -- errors inside the job --------------------------------------------------------------------


def test_read_error_report(vms: list[SyncVm], tmp_path: Path) -> None:
    """block.md §4.3/§4.8: BLOCK_JOB_ERROR (read, report), then BLOCK_JOB_COMPLETED
    with the error; the chain stays."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",backing.node-name=mid")
    guest_io.set_fault(vm.block, "mid", "read", errno.EIO)
    ok(vm, "block-stream", {"device": "drive0"})
    vm.tick(1)
    assert events(vm) == [
        ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "read", "action": "report"}),
        ("BLOCK_JOB_COMPLETED", {"type": "stream", "device": "drive0", "len": 4 * MIB,
                                 "offset": 64 * 1024, "speed": 0,
                                 "error": "Input/output error"})]  # top's own cluster counted
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(mid))


def test_read_error_ignore_keeps_the_backing_file(vms: list[SyncVm], tmp_path: Path) -> None:
    """`ignore`: the chunk is skipped, the job goes on to the end, completes with the
    error and does not change the chain (block/stream.c 'Do not remove the backing
    file if an error was there but ignored')."""
    _, mid, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",backing.node-name=mid")
    guest_io.set_fault(vm.block, "mid", "read", errno.EIO)
    ok(vm, "block-stream", {"device": "drive0", "on-error": "ignore"})
    vm.tick(0.2)
    guest_io.set_fault(vm.block, "mid", "read", None)
    vm.tick(2)
    got = events(vm)
    assert got[0] == ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "read",
                                          "action": "ignore"})
    assert got[-1] == ("BLOCK_JOB_COMPLETED", {"type": "stream", "device": "drive0",
                                               "len": 4 * MIB, "offset": 4 * MIB,
                                               "speed": 0, "error": "Input/output error"})
    assert ok(vm, "query-block")[0]["inserted"]["backing_file_depth"] == 2
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(mid))
    assert identical(top, tmp_path / "twin.qcow2")


def test_read_error_stop_then_resume(vms: list[SyncVm], tmp_path: Path) -> None:
    """`stop`: the job is paused with io-status failed, cancel needs force, resume
    retries the chunk and the stream completes (block.md §4.3)."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",backing.node-name=mid")
    guest_io.set_fault(vm.block, "mid", "read", errno.ENOSPC)
    ok(vm, "block-stream", {"device": "drive0", "base": str(base), "on-error": "enospc"})
    vm.tick(1)
    assert events(vm) == [("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "read",
                                               "action": "stop"})]
    info = job(vm)
    # below 512 KiB only base has data: nothing to copy; mid's chunk failed
    assert (info["paused"], info["io-status"], info["offset"]) == (True, "nospace", 512 * 1024)
    assert error(vm, "block-job-cancel", {"device": "drive0"}) == (
        "GenericError", "The block job for device 'drive0' is currently paused")
    guest_io.set_fault(vm.block, "mid", "read", None)
    ok(vm, "block-job-resume", {"device": "drive0"})
    assert job(vm)["io-status"] == "ok"
    vm.tick(2)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(base))
    assert identical(top, tmp_path / "twin.qcow2")


# -- the command's checks, in QEMU's order ------------------------------------------------------


def test_command_errors(vms: list[SyncVm], tmp_path: Path) -> None:
    """qmp_block_stream's texts (block.md §4.4, blockdev.c)."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",node-name=topnode,backing.node-name=mid")

    def err(**args: Any) -> str:
        cls, desc = error(vm, "block-stream", {k.replace("_", "-"): v
                                               for k, v in args.items()})
        assert cls == "GenericError"
        return desc

    assert err(device="nope") == "Cannot find device=nope nor node_name=nope"
    assert err(device="drive0", base=str(base), base_node="mid") == (
        "'base' and 'base-node' cannot be specified at the same time")
    assert err(device="drive0", base="/no/such.qcow2") == "Base '/no/such.qcow2' not found"
    assert err(device="drive0", base_node="ghost") == "Cannot find device= nor node_name=ghost"
    assert err(device="drive0", base_node="topnode") == (
        "Node 'topnode' is not a backing image of 'drive0'")
    assert err(device="mid", base_node="topnode") == (
        "Node 'topnode' is not a backing image of 'mid'")
    assert err(device="drive0", backing_file="x.qcow2") == (
        "backing file specified, but streaming the entire chain")
    assert err(device="drive0", job_id="1bad") == "Invalid job ID '1bad'"
    assert err(device="drive0", speed=-1) == "Invalid parameter 'speed'"
    assert err(device="mid") == "An explicit job ID is required for this node"
    assert ok(vm, "query-block-jobs") == []
    assert ok(vm, "query-block")[0]["inserted"]["ro"] is False
    # a relative base name is taken relative to the overlay that records it
    ok(vm, "block-stream", {"device": "drive0", "base": "mid.qcow2", "speed": 1})
    assert err(device="drive0") == (
        "Node 'drive0' is busy: block device is in use by block job: stream")
    assert err(device="drive0", job_id="other") == (
        "Node 'drive0' is busy: block device is in use by block job: stream")
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(1)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_CANCELLED"]


def test_intermediate_stream_and_busy_base(vms: list[SyncVm], tmp_path: Path) -> None:
    """A stream into an intermediate node (by node name, with a job ID): the node is
    busy for a stream of the top that would use it."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top, ",backing.node-name=mid")
    ok(vm, "block-stream", {"device": "mid", "job-id": "j-mid", "speed": 1})
    assert error(vm, "block-stream", {"device": "drive0", "base": str(base)}) == (
        "GenericError", "Node 'mid' is busy: block device is in use by block job: stream")
    ok(vm, "block-job-cancel", {"device": "j-mid"})
    vm.tick(1)
    assert events(vm)[0][1]["device"] == "j-mid"


# -- HMP -------------------------------------------------------------------------------------


def test_hmp_block_stream_and_info(vms: list[SyncVm], tmp_path: Path) -> None:
    """hmp.c hmp_block_stream (the job is named after the device; hmp_handle_error prints
    the error) and
    hmp_info_block_jobs' "Streaming device" line."""
    base, _, top = make_chain(tmp_path)
    vm = start_vm(vms, top)
    assert hmp(vm, "block_stream drive0 1M " + str(base)) == ""
    vm.tick(0.06)  # nothing to copy below 512 KiB, then mid's first chunk (0.05 s)
    assert hmp(vm, "info block-jobs") == (
        f"Streaming device drive0: Completed {MIB} of {4 * MIB} bytes, "
        f"speed limit {MIB} bytes/s\r\n")
    assert hmp(vm, "block_stream drive0") == (
        "Node 'drive0' is busy: block device is in use by block job: stream\r\n")
    assert hmp(vm, "block_stream nope") == (
        "Cannot find device=nope nor node_name=nope\r\n")
    vm.tick(5)
    assert hmp(vm, "info block-jobs") == "No active jobs\r\n"
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]
    vm.close()
    assert backing_chain(top)[0] == (str(top), str(base))
