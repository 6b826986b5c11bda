"""Mirror jobs (drive-mirror, blockdev-mirror, active block-commit) and their filter
nodes, on real images written by qemu-io / qemu-img. Texts from block.md §1.4, §4.5,
§4.6 and §4.8; QEMU sources cited per test."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blockdev.jobs.filters import COMMIT_TOP, MIRROR_TOP, drop_filter, new_filter_node
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, hmp, new_vm, ok, vms

__all__ = ["vms"]

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-utils")

MIB = 1 << 20


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def qemu_io(path: Path, *cmds: str) -> None:
    args = ["qemu-io"]
    for cmd in cmds:
        args += ["-c", cmd]
    run(*args, str(path))


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """base.qcow2 <- top.qcow2 (4 MiB), written with patterns by real qemu-io."""
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(base), "4M")
    qemu_io(base, "write -P 0x11 0 1M", "write -P 0x22 2M 1M")
    run("qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    qemu_io(top, "write -P 0x33 512k 1M")
    return top


def machine(vms: list[SyncVm], top: Path, *extra: str) -> SyncVm:
    return new_vm(vms, "-S", "-nodefaults", "-display", "none",
                  "-drive", f"if=none,id=drive0,file={top},format=qcow2", *extra)


@pytest.fixture
def vm(vms: list[SyncVm], chain: Path) -> Iterator[SyncVm]:
    yield machine(vms, chain, "--emu-behaviour=block-job-bandwidth=10485760")


def named(vm: SyncVm) -> dict[str, dict[str, object]]:
    return {n["node-name"]: n for n in ok(vm, "query-named-block-nodes")}


# --- the filter nodes (block.md §1.4) -------------------------------------------------------


def test_implicit_mirror_top_is_hidden_from_query_block(vm: SyncVm, chain: Path) -> None:
    """block/mirror.c mirror_start_job: the mirror_top node made without a name is
    implicit with a generated `#block` name; block/qapi.c bdrv_query_info skips it,
    bdrv_named_nodes_list shows it with the filename of the node below
    (bdrv_mirror_top_refresh_filename). Requests pass through it; taking it out
    leaves the graph as it was."""
    layer = vm.block
    src = layer.lookup_bs("drive0", None)
    before = ok(vm, "query-block")
    top = new_filter_node(layer, MIRROR_TOP, None, rdwr=True,
                          total_sectors=src.total_sectors)
    assert top.implicit and top.node_name.startswith("#block")
    top.refcnt += 1
    layer.append(top, src)
    assert layer.blk_by_name("drive0").bs is top  # type: ignore[union-attr]
    assert ok(vm, "query-block") == before
    node = named(vm)[top.node_name]
    assert node["drv"] == "mirror_top"
    assert node["file"] == str(chain)
    assert node["backing_file"] == str(chain)
    assert node["ro"] is False
    assert hmp(vm, 'qemu-io drive0 "write -P 0x44 0 64k"') == ""  # report on stdout
    drop_filter(layer, top)
    layer.unref(top)
    assert layer.blk_by_name("drive0").bs is src  # type: ignore[union-attr]
    assert top.node_name not in named(vm)
    vm.close()
    run("qemu-io", "-c", "read -P 0x44 0 64k", str(chain))


def test_named_filter_shows_in_query_block(vm: SyncVm, chain: Path) -> None:
    """With filter-node-name the filter is not implicit: query-block's `inserted` is
    the filter itself (drv mirror_top) (block.md §1.4)."""
    layer = vm.block
    src = layer.lookup_bs("drive0", None)
    top = new_filter_node(layer, MIRROR_TOP, "mtop", rdwr=True,
                          total_sectors=src.total_sectors)
    top.refcnt += 1
    layer.append(top, src)
    [info] = ok(vm, "query-block")
    assert info["inserted"]["drv"] == "mirror_top"
    assert info["inserted"]["node-name"] == "mtop"
    assert info["inserted"]["file"] == str(chain)
    drop_filter(layer, top)
    layer.unref(top)
    assert "mtop" not in named(vm)


def test_filter_name_rules(vm: SyncVm) -> None:
    """bdrv_new_open_driver -> bdrv_assign_node_name: the node-name rules and texts."""
    from schema.errors import GenericError

    layer = vm.block
    with pytest.raises(GenericError, match=r"^Invalid node name$"):
        new_filter_node(layer, COMMIT_TOP, "1x", rdwr=False, total_sectors=0)
    ok(vm, "blockdev-add", {"driver": "null-co", "node-name": "taken"})
    with pytest.raises(GenericError, match=r"^Duplicate node name$"):
        new_filter_node(layer, COMMIT_TOP, "taken", rdwr=False, total_sectors=0)
    with pytest.raises(GenericError, match="conflicting with a device id"):
        new_filter_node(layer, COMMIT_TOP, "drive0", rdwr=False, total_sectors=0)


def test_commit_top_between_overlay_and_top(vms: list[SyncVm], tmp_path: Path,
                                             chain: Path) -> None:
    """block/commit.c commit_start: a read-only commit_top above `top`; the overlay's
    reads pass through it; query-block's image chain skips it, the named nodes show
    it (block/qapi.c bdrv_block_device_info)."""
    active = tmp_path / "active.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", str(chain), "-F", "qcow2", str(active))
    vm = machine(vms, active)
    layer = vm.block
    act = layer.lookup_bs("drive0", None)
    mid = act.backing_bs
    assert mid is not None
    before = ok(vm, "query-block")
    ctop = new_filter_node(layer, COMMIT_TOP, None, rdwr=False,
                           total_sectors=mid.total_sectors)
    layer.set_backing_hd(ctop, mid)
    layer.replace_node(mid, ctop)
    layer.unref(ctop)
    assert act.backing_bs is ctop
    after = ok(vm, "query-block")
    # bdrv_backing_attach copies the new backing node's driver name into the overlay's
    # backing_format, so 2.11 shows the filter's there; the chain itself skips it.
    image = after[0]["inserted"]["image"]
    assert image["backing-filename-format"] == "commit_top"
    image["backing-filename-format"] = "qcow2"
    assert after == before
    node = named(vm)[ctop.node_name]
    assert node["drv"] == "commit_top" and node["ro"] is True
    assert node["file"] == str(chain)
    assert hmp(vm, 'qemu-io drive0 "read -P 0x33 512k 1M"') == ""
    ctop.refcnt += 1
    drop_filter(layer, ctop)
    layer.unref(ctop)
    assert act.backing_bs is mid
    assert ctop.node_name not in named(vm)
    assert error(vm, "blockdev-add", {"driver": "mirror_top", "node-name": "x"})[0] \
        == "GenericError"
    events(vm)


# --- drive-mirror ---------------------------------------------------------------------------


def until(vm: SyncVm, name: str, limit: float = 60.0, step: float = 0.05) -> list[tuple[str, Any]]:
    """Tick until the event `name` was sent; every event so far."""
    seen: list[tuple[str, Any]] = []
    waited = 0.0
    while waited <= limit:
        seen += events(vm)
        if any(n == name for n, _ in seen):
            return seen
        vm.tick(step)
        waited += step
    raise AssertionError(f"no {name} in {limit} s: {seen}")


def image_chain(path: Path) -> list[dict[str, Any]]:
    out = run("qemu-img", "info", "--backing-chain", "--output=json", str(path))
    return json.loads(out)  # type: ignore[no-any-return]


def test_drive_mirror_full_then_complete(vms: list[SyncVm], chain: Path,
                                         tmp_path: Path) -> None:
    """blockdev.c qmp_drive_mirror (sync full: a new image without backing file, its
    Formatting line), block/mirror.c mirror_run (what the chain allocates is copied;
    len = offset + dirty), BLOCK_JOB_READY, block-job-complete pivots
    (mirror_exit: bdrv_replace_node) before BLOCK_JOB_COMPLETED (block.md §4.6, §4.8).
    After exit the target equals the source's view and has no backing file."""
    vm = machine(vms, chain, "--emu-behaviour=block-job-bandwidth=10485760")
    printed: list[str] = []
    vm.machine.stdout = printed.append
    target = tmp_path / "target.qcow2"
    assert ok(vm, "drive-mirror", {"device": "drive0", "target": str(target),
                                   "sync": "full"}) == {}
    assert printed == [f"Formatting '{target}', fmt=qcow2 size=4194304 cluster_size=65536 "
                       "lazy_refcounts=off refcount_bits=16\n"]
    [job] = ok(vm, "query-block-jobs")
    assert job["type"] == "mirror" and job["device"] == "drive0" and job["ready"] is False
    seen = until(vm, "BLOCK_JOB_READY")
    data = 2621440  # 0-1.5M and 2M-3M are allocated somewhere in the chain
    assert seen == [("BLOCK_JOB_READY", {"type": "mirror", "device": "drive0", "len": data,
                                         "offset": data, "speed": 0})]
    [job] = ok(vm, "query-block-jobs")
    assert job["ready"] is True and job["offset"] == job["len"] == data
    assert ok(vm, "block-job-complete", {"device": "drive0"}) == {}
    seen = until(vm, "BLOCK_JOB_COMPLETED")
    assert seen == [("BLOCK_JOB_COMPLETED", {"type": "mirror", "device": "drive0",
                                             "len": data, "offset": data, "speed": 0})]
    assert ok(vm, "query-block-jobs") == []
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(target)
    assert info["inserted"]["backing_file_depth"] == 0
    assert "dirty-bitmaps" not in info
    assert not any(n["drv"] == "mirror_top" for n in ok(vm, "query-named-block-nodes"))
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."
    [only] = image_chain(target)
    assert "backing-filename" not in only
    assert "No errors were found" in run("qemu-img", "check", str(target))


def test_drive_mirror_top_then_complete(vms: list[SyncVm], chain: Path,
                                        tmp_path: Path) -> None:
    """sync top: the target is created with the source's backing file; only what the
    top allocates is copied; on complete the target gets the source's backing node
    and replaces the source (mirror_exit, MIRROR_SOURCE_BACKING_CHAIN)."""
    vm = machine(vms, chain, "--emu-behaviour=block-job-bandwidth=10485760")
    printed: list[str] = []
    vm.machine.stdout = printed.append
    base = tmp_path / "base.qcow2"
    target = tmp_path / "target.qcow2"
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "top"})
    assert printed == [f"Formatting '{target}', fmt=qcow2 size=4194304 backing_file={base} "
                       "backing_fmt=qcow2 cluster_size=65536 lazy_refcounts=off "
                       "refcount_bits=16\n"]
    seen = until(vm, "BLOCK_JOB_READY")
    assert seen[-1][1]["len"] == seen[-1][1]["offset"] == MIB
    ok(vm, "block-job-complete", {"device": "drive0"})
    until(vm, "BLOCK_JOB_COMPLETED")
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(target)
    assert info["inserted"]["backing_file"] == str(base)
    assert info["inserted"]["backing_file_depth"] == 1
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."
    assert [i["filename"] for i in image_chain(target)] == [str(target), str(base)]


# --- writes while the job runs --------------------------------------------------------------


async def test_mirror_while_an_nbd_client_writes(tmp_path: Path) -> None:
    """block/mirror.c: every write that reaches the source while the job runs dirties
    the job's bitmap (bdrv_aligned_pwritev -> bdrv_set_dirty) and is copied again, so
    after block-job-complete the target equals the source. The writes come from
    real qemu-io over the emulator's NBD server (nbd+unix), before and after READY.
    Real clock, no sleeps: the test waits for the events."""
    import trio

    from tests.emulator import build_from_argv, mock_clock, qmp_session, serve

    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(base), "4M")
    qemu_io(base, "write -P 0x11 0 1M", "write -P 0x22 2M 1M")
    run("qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    qemu_io(top, "write -P 0x33 512k 1M")
    target = tmp_path / "target.qcow2"
    sock = tmp_path / "nbd.sock"
    built = build_from_argv(["-machine", "none", "-nodefaults", "--emu-strict",
                             "-drive", f"if=none,id=drive0,file={top},format=qcow2",
                             "--emu-behaviour=block-job-bandwidth=4194304"], mock_clock())
    vm = built.vm
    dispatcher, session = qmp_session(vm)

    def qmp(command: str, **args: Any) -> Any:
        return dispatcher.execute(session, {"execute": command, "arguments": args})

    async def arun(*argv: str) -> None:
        result = await trio.run_process(list(argv), capture_stdout=True,
                                        capture_stderr=True, check=False)
        assert result.returncode == 0, result

    built.start()
    async with trio.open_nursery() as nursery:
        await serve(nursery, vm, [])
        seen: dict[str, trio.Event] = {"BLOCK_JOB_READY": trio.Event(),
                                       "BLOCK_JOB_COMPLETED": trio.Event()}
        sent: list[Any] = []

        def on_event(event: Any) -> None:
            sent.append((event.name, event.data))
            if event.name in seen:
                seen[event.name].set()

        vm.machine.events.subscribe(on_event)
        vm.machine.stdout = lambda text: None
        assert qmp("nbd-server-start",
                   addr={"type": "unix", "data": {"path": str(sock)}}) == {"return": {}}
        assert qmp("nbd-server-add", device="drive0", writable=True) == {"return": {}}
        reply = qmp("drive-mirror", device="drive0", target=str(target), sync="full")
        assert reply == {"return": {}}, reply
        url = f"nbd+unix:///drive0?socket={sock}"
        await arun("qemu-io", "-f", "raw", "-c", "write -P 0x44 1792k 512k",
                   "-c", "write -P 0x55 0 64k", "-c", "write -z 2560k 64k", url)
        with trio.fail_after(30):
            await seen["BLOCK_JOB_READY"].wait()
        # after READY the job keeps the target in sync
        await arun("qemu-io", "-f", "raw", "-c", "write -P 0x66 3584k 128k",
                   "-c", "write -P 0x77 600k 4k", url)
        assert qmp("block-job-complete", device="drive0") == {"return": {}}
        with trio.fail_after(30):
            await seen["BLOCK_JOB_COMPLETED"].wait()
        completed = [d for n, d in sent if n == "BLOCK_JOB_COMPLETED"]
        assert completed and "error" not in completed[0]
        info = qmp("query-block")["return"][0]
        assert info["inserted"]["file"] == str(target)
        qmp("nbd-server-stop")
        qmp("quit")
    vm.close()
    assert run("qemu-img", "compare", str(top), str(target)).strip() == "Images are identical."
    out = run("qemu-io", "-c", "read -P 0x44 1792k 512k", "-c", "read -P 0x55 0 64k",
              "-c", "read -P 0 2560k 64k", "-c", "read -P 0x66 3584k 128k",
              "-c", "read -P 0x77 600k 4k", "-c", "read -P 0x33 604k 60k", str(target))
    assert "Pattern verification failed" not in out


# --- the ends of a mirror -------------------------------------------------------------------


def test_cancel_before_ready_is_cancelled(vm: SyncVm, chain: Path, tmp_path: Path) -> None:
    """block-job-cancel before READY: BLOCK_JOB_CANCELLED after the reply, the graph
    unchanged, the filter and the anonymous bitmap gone (block.md §4.6, §4.8);
    completing a job that is not READY is refused (mirror_complete)."""
    vm.machine.stdout = lambda text: None
    target = tmp_path / "t.qcow2"
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "full",
                            "speed": MIB})
    vm.tick(0.5)
    [info] = ok(vm, "query-block")
    assert info["dirty-bitmaps"][0]["granularity"] == 65536
    assert "name" not in info["dirty-bitmaps"][0]
    assert error(vm, "block-job-complete", {"device": "drive0"}) == (
        "GenericError", "The active block job 'drive0' cannot be completed")
    assert ok(vm, "block-job-cancel", {"device": "drive0"}) == {}
    vm.tick(0.2)
    [(name, data)] = events(vm)
    assert name == "BLOCK_JOB_CANCELLED"
    assert data["type"] == "mirror" and 0 < data["offset"] < data["len"]
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(chain) and "dirty-bitmaps" not in info
    assert not any(n["drv"] == "mirror_top" for n in ok(vm, "query-named-block-nodes"))
    assert ok(vm, "query-block-jobs") == []


def test_cancel_after_ready_completes_without_pivot(vm: SyncVm, chain: Path,
                                                    tmp_path: Path) -> None:
    """block-job-cancel after READY: what is dirty is copied, then
    BLOCK_JOB_COMPLETED without `error` and without the pivot (mirror_run clears
    `cancelled` once in sync); the target is a point-in-time copy (block.md §4.6)."""
    vm.machine.stdout = lambda text: None
    target = tmp_path / "t.qcow2"
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "full"})
    until(vm, "BLOCK_JOB_READY")
    hmp(vm, 'qemu-io drive0 "write -P 0x5a 3M 64k"')
    ok(vm, "block-job-cancel", {"device": "drive0"})
    seen = until(vm, "BLOCK_JOB_COMPLETED")
    assert seen[-1] == ("BLOCK_JOB_COMPLETED", {"type": "mirror", "device": "drive0",
                                                "len": 2686976, "offset": 2686976,
                                                "speed": 0})
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(chain)
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."


def test_sync_none_copies_only_new_writes(vm: SyncVm, chain: Path, tmp_path: Path) -> None:
    """sync none: the target's backing file is the source itself, nothing is copied
    at the start (mirror_run skips mirror_dirty_init), READY at once; writes made
    while the job runs are copied; on complete the target sits on the source."""
    vm.machine.stdout = lambda text: None
    target = tmp_path / "t.qcow2"
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "none"})
    seen = until(vm, "BLOCK_JOB_READY")
    assert seen[-1][1]["len"] == seen[-1][1]["offset"] == 0
    hmp(vm, 'qemu-io drive0 "write -P 0x5a 1M 128k"')
    vm.tick(0.5)
    [job] = ok(vm, "query-block-jobs")
    assert job["offset"] == job["len"] == 131072
    ok(vm, "block-job-complete", {"device": "drive0"})
    until(vm, "BLOCK_JOB_COMPLETED")
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(target)
    assert info["inserted"]["backing_file"] == str(chain)
    vm.close()
    assert [i["filename"] for i in image_chain(target)] == [
        str(target), str(chain), str(tmp_path / "base.qcow2")]
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."
    out = run("qemu-img", "map", "--output=json", str(target))
    mine = [m for m in json.loads(out) if m["depth"] == 0 and m["data"]]
    assert [(m["start"], m["length"]) for m in mine] == [(MIB, 131072)]


# --- arguments and their errors ---------------------------------------------------------


def test_drive_mirror_errors(vm: SyncVm, chain: Path, tmp_path: Path) -> None:
    """blockdev.c qmp_drive_mirror / blockdev_mirror_common / mirror_start_job texts,
    in their order: the target is created before the common checks, so a bad
    granularity leaves the file behind (block.md §4.6, verified on 2.11)."""
    vm.machine.stdout = lambda text: None

    def mirror(name: str, **args: Any) -> tuple[str, str]:
        return error(vm, "drive-mirror", {"device": "drive0", "sync": "full",
                                          "target": str(tmp_path / name), **args})

    assert error(vm, "drive-mirror", {"device": "nope", "target": "x", "sync": "full"}) \
        == ("GenericError", "Cannot find device=nope nor node_name=nope")
    assert mirror("a.qcow2", replaces="x") == (
        "GenericError",
        "a node-name must be provided when replacing a named node of the graph")
    assert mirror("a.qcow2", replaces="x", **{"node-name": "n"}) == (
        "GenericError", "Node name 'x' not found")
    assert not (tmp_path / "a.qcow2").exists()
    assert mirror("g1.qcow2", granularity=256) == (
        "GenericError", "Parameter 'granularity' expects a value in range [512B, 64MB]")
    assert (tmp_path / "g1.qcow2").exists()
    assert mirror("g2.qcow2", granularity=3 * 4096) == (
        "GenericError", "Parameter 'granularity' expects power of 2")
    assert mirror("b.qcow2", **{"buf-size": -1}) == (
        "GenericError", "Invalid parameter 'buf-size'")
    assert mirror("i.qcow2", sync="incremental") == (
        "GenericError", "Sync mode 'incremental' not supported")
    assert mirror("j.qcow2", **{"job-id": "1bad"}) == ("GenericError", "Invalid job ID '1bad'")
    assert mirror("s.qcow2", speed=-1) == ("GenericError", "Invalid parameter 'speed'")
    assert mirror("f.qcow2", format="nosuch") == (
        "GenericError", "Unknown file format 'nosuch'")
    # nothing of the failed starts is left in the graph
    assert [n["drv"] for n in ok(vm, "query-named-block-nodes")].count("mirror_top") == 0
    assert "dirty-bitmaps" not in ok(vm, "query-block")[0]
    assert ok(vm, "query-block-jobs") == []
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(tmp_path / "ok.qcow2"),
                            "sync": "full", "speed": 1})
    # while the job runs, the device's root is below the job's filter (block.md §4.1)
    assert mirror("c.qcow2") == ("GenericError", "Need a root block node")
    assert error(vm, "blockdev-snapshot-sync", {
        "device": "drive0", "snapshot-file": str(tmp_path / "sn.qcow2")}) == (
        "GenericError", "Node 'drive0' is busy: block device is in use by block job: mirror")


def test_job_id_needs_a_name(vms: list[SyncVm], chain: Path, tmp_path: Path) -> None:
    """block_job_create: a node without a BlockBackend name needs `job-id`; with one
    the job is found by it."""
    vm = new_vm(vms, "-S", "-nodefaults", "-display", "none",
                "-blockdev", f"driver=qcow2,node-name=src,file.driver=file,"
                             f"file.filename={chain}",
                "-blockdev", "driver=null-co,node-name=dst,size=4194304")
    assert error(vm, "blockdev-mirror", {"device": "src", "target": "dst",
                                         "sync": "full"}) == (
        "GenericError", "An explicit job ID is required for this node")
    ok(vm, "blockdev-mirror", {"device": "src", "target": "dst", "sync": "full",
                               "job-id": "m0"})
    assert error(vm, "blockdev-mirror", {"device": "src", "target": "dst", "sync": "full",
                                         "job-id": "m1"})[1] == "Need a root block node"
    [job] = ok(vm, "query-block-jobs")
    assert job["device"] == "m0"


def test_mode_existing_opens_the_targets_backing_at_complete(vm: SyncVm, chain: Path,
                                                             tmp_path: Path) -> None:
    """mode existing: nothing is created (no Formatting line), the format is probed,
    the target is opened without its backing chain and opens it at
    block-job-complete (mirror_complete, MIRROR_OPEN_BACKING_CHAIN)."""
    printed: list[str] = []
    vm.machine.stdout = printed.append
    base = tmp_path / "base.qcow2"
    target = tmp_path / "existing.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(target))
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "top",
                            "mode": "existing", "node-name": "tgt"})
    assert printed == []
    node = named(vm)["tgt"]
    assert node["drv"] == "qcow2" and node["backing_file_depth"] == 0
    until(vm, "BLOCK_JOB_READY")
    ok(vm, "block-job-complete", {"device": "drive0"})
    until(vm, "BLOCK_JOB_COMPLETED")
    [info] = ok(vm, "query-block")
    assert info["inserted"]["node-name"] == "tgt"
    assert info["inserted"]["backing_file"] == str(base)
    assert info["inserted"]["backing_file_depth"] == 1
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."


def test_blockdev_mirror_named_filter_and_replaces(vms: list[SyncVm], chain: Path,
                                                   tmp_path: Path) -> None:
    """blockdev-mirror to an existing node with `filter-node-name` (the filter is not
    implicit: query-block shows it) and `replaces` naming the source node, blocked
    from block-job-complete to the pivot (mirror_complete's replace_blocker); the
    target's chain is left as configured (MIRROR_LEAVE_BACKING_CHAIN)."""
    target = tmp_path / "target.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(target), "4M")
    vm = machine(vms, chain, "--emu-behaviour=block-job-bandwidth=10485760")
    src = ok(vm, "query-block")[0]["inserted"]["node-name"]
    ok(vm, "blockdev-add", {"driver": "qcow2", "node-name": "tgt",
                            "file": {"driver": "file", "filename": str(target)}})
    ok(vm, "blockdev-mirror", {"device": "drive0", "target": "tgt", "sync": "full",
                               "filter-node-name": "mf", "replaces": src})
    [info] = ok(vm, "query-block")
    assert info["inserted"]["drv"] == "mirror_top"
    assert info["inserted"]["node-name"] == "mf"
    assert info["inserted"]["file"] == str(chain)
    until(vm, "BLOCK_JOB_READY")
    ok(vm, "block-job-complete", {"device": "drive0"})
    # until mirror_exit runs (a bottom half after the reply), `replaces` is blocked
    assert error(vm, "blockdev-snapshot-sync", {
        "node-name": src, "snapshot-file": str(tmp_path / "s.qcow2"),
        "snapshot-node-name": "s"}) == (
        "GenericError", f"Node '{src}' is busy: block device is in use by "
        "block-job-complete")
    until(vm, "BLOCK_JOB_COMPLETED")
    [info] = ok(vm, "query-block")
    assert info["inserted"]["node-name"] == "tgt"
    assert info["inserted"]["backing_file_depth"] == 0
    assert "mf" not in named(vm)
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."


def test_blockdev_mirror_target_in_use_by_a_device(vms: list[SyncVm], chain: Path,
                                                   tmp_path: Path) -> None:
    """A target a guest device writes to cannot be the mirror's: the job's
    BlockBackend on it is a permission conflict, named after the device's BlockBackend
    (block.c bdrv_check_update_perm, block-backend.c blk_root_get_parent_desc;
    block.md §1.5, §4.6), and nothing
    of the job is left."""
    vm = new_vm(vms, "-S", "-nodefaults", "-display", "none",
                "-drive", f"if=none,id=drive0,file={chain},format=qcow2",
                "-drive", "if=none,id=other,driver=null-co,size=4194304",
                "-device", "virtio-blk-pci,drive=other,id=vd1")
    other = ok(vm, "query-block")[1]["inserted"]["node-name"]
    assert error(vm, "blockdev-mirror", {"device": "drive0", "target": other,
                                         "sync": "full"}) == (
        "GenericError",
        f"Conflicts with use by other as 'root', which does not allow 'write' on {other}")
    assert ok(vm, "query-block-jobs") == []
    assert not any(n["drv"] == "mirror_top" for n in ok(vm, "query-named-block-nodes"))
    assert ok(vm, "query-block")[0]["inserted"]["drv"] == "qcow2"


# --- errors inside the job (block.md §4.3) -------------------------------------------------


def blkdebug_target(vm: SyncVm, path: Path, err: int, once: bool) -> None:
    run("qemu-img", "create", "-f", "raw", str(path), "4M")
    ok(vm, "blockdev-add", {"driver": "raw", "node-name": "tgt", "file": {
        "driver": "blkdebug", "image": {"driver": "file", "filename": str(path)},
        "inject-error": [{"event": "write_aio", "errno": err, "once": once}]}})


def test_target_write_error_reported(vm: SyncVm, tmp_path: Path, chain: Path) -> None:
    """on-target-error report: BLOCK_JOB_ERROR(write, report), then
    BLOCK_JOB_COMPLETED with the strerror text; the graph is unchanged
    (mirror_write_complete, blockjob.c block_job_error_action)."""
    blkdebug_target(vm, tmp_path / "t.raw", 5, False)
    ok(vm, "blockdev-mirror", {"device": "drive0", "target": "tgt", "sync": "full"})
    seen = until(vm, "BLOCK_JOB_COMPLETED")
    assert seen[0] == ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "write",
                                           "action": "report"})
    data = seen[-1][1]
    assert data["error"] == "Input/output error" and data["offset"] == 0
    assert [n for n, _ in seen] == ["BLOCK_JOB_ERROR", "BLOCK_JOB_COMPLETED"]
    assert ok(vm, "query-block")[0]["inserted"]["file"] == str(chain)


def test_target_enospc_stops_until_resumed(vm: SyncVm, tmp_path: Path) -> None:
    """on-target-error enospc with ENOSPC: BLOCK_JOB_ERROR(write, stop); the job is
    user-paused with io-status nospace, cancel needs force; resume retries and the
    job reaches READY (block.md §4.3)."""
    blkdebug_target(vm, tmp_path / "t.raw", 28, True)
    ok(vm, "blockdev-mirror", {"device": "drive0", "target": "tgt", "sync": "full",
                               "on-target-error": "enospc"})
    vm.tick(1)
    assert events(vm) == [("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "write",
                                               "action": "stop"})]
    [job] = ok(vm, "query-block-jobs")
    assert job["paused"] is True and job["io-status"] == "nospace" and job["busy"] is False
    assert error(vm, "block-job-cancel", {"device": "drive0"}) == (
        "GenericError", "The block job for device 'drive0' is currently paused")
    assert error(vm, "block-job-complete", {"device": "drive0"}) == (
        "GenericError", "The active block job 'drive0' cannot be completed")
    ok(vm, "block-job-resume", {"device": "drive0"})
    assert ok(vm, "query-block-jobs")[0]["io-status"] == "ok"
    seen = until(vm, "BLOCK_JOB_READY")
    # blkdebug has no bdrv_has_zero_init: mirror_dirty_init marks the whole disk
    assert seen[-1][1]["offset"] == seen[-1][1]["len"] == 4 * MIB
    ok(vm, "block-job-cancel", {"device": "drive0"})
    assert until(vm, "BLOCK_JOB_COMPLETED")[-1][0] == "BLOCK_JOB_COMPLETED"


def test_source_read_error_ignored_is_retried(vm: SyncVm) -> None:
    """on-source-error ignore: BLOCK_JOB_ERROR(read, ignore) for every failure, the
    region dirty again and copied later (block.md §4.3)."""
    from blockdev import guest_io

    ok(vm, "blockdev-add", {"driver": "null-co", "node-name": "tgt", "size": 4 * MIB})
    src = ok(vm, "query-block")[0]["inserted"]["node-name"]
    guest_io.set_fault(vm.block, src, "read", errno.EIO)
    ok(vm, "blockdev-mirror", {"device": "drive0", "target": "tgt", "sync": "full",
                               "on-source-error": "ignore"})
    vm.tick(0.3)
    seen = events(vm)
    assert len(seen) >= 2 and all(e == ("BLOCK_JOB_ERROR", {
        "device": "drive0", "operation": "read", "action": "ignore"}) for e in seen)
    [job] = ok(vm, "query-block-jobs")
    assert job["offset"] < job["len"] and job["ready"] is False
    guest_io.set_fault(vm.block, src, "read", None)
    seen = until(vm, "BLOCK_JOB_READY")
    # null-co has no zero init: the whole disk is dirty; what the source does not
    # allocate is written as zeros (no read), the rest is copied once the reads work
    assert seen[-1][1]["offset"] == seen[-1][1]["len"] == 4 * MIB


# --- active block-commit (block.md §4.5) -------------------------------------------------


def active_commit(vm: SyncVm, **kw: Any) -> None:
    """What block-commit does for the active layer (blockdev.jobs.commit calls it)."""
    from blockdev.jobs.mirror import commit_active_start

    top = vm.block.lookup_bs("drive0", None)
    base = top.find_base()
    commit_active_start(vm.vm.jobs, kw.get("job_id"), top, base, kw.get("speed", 0),
                        kw.get("on_error", "report"), kw.get("filter_node_name"))
    vm.machine.process_requests()


def test_active_commit_then_complete(vm: SyncVm, chain: Path, tmp_path: Path) -> None:
    """block/mirror.c commit_active_start: base reopened read-write, a mirror job of
    type `commit` copies what is above base into it, READY, and block-job-complete
    makes base the device's root (inserted.file = base, backing_file_depth 0); after
    exit base holds what the whole chain showed."""
    base = tmp_path / "base.qcow2"
    ref = tmp_path / "ref.raw"
    run("qemu-img", "convert", "-U", "-O", "raw", str(chain), str(ref))
    assert named(vm)[vm.block.lookup_bs("drive0", None).backing_bs.node_name]["ro"] is True
    active_commit(vm)
    [job] = ok(vm, "query-block-jobs")
    assert job["type"] == "commit" and job["device"] == "drive0"
    seen = until(vm, "BLOCK_JOB_READY")
    assert seen == [("BLOCK_JOB_READY", {"type": "commit", "device": "drive0",
                                         "len": MIB, "offset": MIB, "speed": 0})]
    hmp(vm, 'qemu-io drive0 "write -P 0x99 3M 64k"')
    ok(vm, "block-job-complete", {"device": "drive0"})
    seen = until(vm, "BLOCK_JOB_COMPLETED")
    assert seen == [("BLOCK_JOB_COMPLETED", {"type": "commit", "device": "drive0",
                                             "len": MIB + 65536, "offset": MIB + 65536,
                                             "speed": 0})]
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(base)
    assert info["inserted"]["backing_file_depth"] == 0
    assert info["inserted"]["ro"] is False
    assert str(chain) not in [n["file"] for n in ok(vm, "query-named-block-nodes")]
    vm.close()
    run("qemu-io", "-f", "raw", "-c", "write -P 0x99 3M 64k", str(ref))
    assert run("qemu-img", "compare", "-F", "raw", str(base), str(ref)).strip() \
        == "Images are identical."
    [only] = image_chain(base)
    assert "backing-filename" not in only
    assert "No errors were found" in run("qemu-img", "check", str(base))


def test_active_commit_cancel_before_and_after_ready(vm: SyncVm, chain: Path) -> None:
    """Active commit cancelled before READY: BLOCK_JOB_CANCELLED; after READY:
    BLOCK_JOB_COMPLETED without error and without the pivot (block.md §4.5). The
    filter and the job's blockers go either way."""
    active_commit(vm, speed=65536)
    vm.tick(0.5)
    ok(vm, "block-job-cancel", {"device": "drive0"})
    vm.tick(0.1)
    assert [n for n, _ in events(vm)] == ["BLOCK_JOB_CANCELLED"]
    assert ok(vm, "query-block")[0]["inserted"]["file"] == str(chain)
    active_commit(vm, job_id="c1", filter_node_name="cf")
    assert ok(vm, "query-block")[0]["inserted"]["node-name"] == "cf"
    until(vm, "BLOCK_JOB_READY")
    ok(vm, "block-job-cancel", {"device": "c1"})
    seen = until(vm, "BLOCK_JOB_COMPLETED")
    assert seen[-1] == ("BLOCK_JOB_COMPLETED", {"type": "commit", "device": "c1",
                                                "len": MIB, "offset": MIB, "speed": 0})
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(chain)
    assert info["inserted"]["backing_file_depth"] == 1
    assert "cf" not in named(vm)


# --- HMP ---------------------------------------------------------------------------------


def test_hmp_drive_mirror_and_block_job_complete(vm: SyncVm, chain: Path,
                                                 tmp_path: Path) -> None:
    """hmp.c hmp_drive_mirror (sync top, or full with -f; absolute-paths, or existing
    with -n; the job is named after the device), hmp_block_job_complete and
    hmp_info_block_jobs; errors are printed as error_report does."""
    printed: list[str] = []
    vm.machine.stdout = printed.append
    target = tmp_path / "hmp.qcow2"
    assert hmp(vm, f"drive_mirror -n drive0 {tmp_path / 'missing.qcow2'}").startswith(
        "Could not open ")
    assert hmp(vm, f"drive_mirror drive0 {target}") == ""
    assert printed[0].startswith(f"Formatting '{target}', fmt=qcow2 size=4194304 "
                                 f"backing_file={tmp_path / 'base.qcow2'} ")
    assert hmp(vm, "info block-jobs") == (
        f"Type mirror, device drive0: Completed 0 of {MIB} bytes, "
        "speed limit 0 bytes/s\r\n")
    assert hmp(vm, "block_job_complete drive0") == (
        "The active block job 'drive0' cannot be completed\r\n")
    assert hmp(vm, f"drive_mirror -f drive0 {tmp_path / 'x.qcow2'}") == (
        "Need a root block node\r\n")
    until(vm, "BLOCK_JOB_READY")
    assert hmp(vm, "info block-jobs") == (
        f"Type mirror, device drive0: Completed {MIB} of {MIB} bytes, "
        "speed limit 0 bytes/s\r\n")
    assert hmp(vm, "block_job_complete drive0") == ""
    until(vm, "BLOCK_JOB_COMPLETED")
    assert hmp(vm, "info block-jobs") == "No active jobs\r\n"
    assert hmp(vm, "block_job_complete drive0") == "Block job 'drive0' not found\r\n"
    full = tmp_path / "full.qcow2"
    assert hmp(vm, f"drive_mirror -f drive0 {full} qcow2") == ""
    until(vm, "BLOCK_JOB_READY")
    assert hmp(vm, "block_job_complete drive0") == ""
    until(vm, "BLOCK_JOB_COMPLETED")
    vm.close()
    assert [i["filename"] for i in image_chain(full)] == [str(full)]
    assert run("qemu-img", "compare", str(chain), str(full)).strip() \
        == "Images are identical."


def test_mirror_while_the_guest_writes(vms: list[SyncVm], chain: Path, tmp_path: Path) -> None:
    """The guest workload writes through its device's BlockBackend, through the
    mirror_top filter, into the source, so the job's bitmap sees every write and the
    target catches up (block/mirror.c; blockdev.workload). With the guest stopped,
    block-job-complete leaves a target equal to the source."""
    vm = new_vm(vms, "-machine", "pc", "-nodefaults", "-S",
                "-drive", f"if=none,id=drive0,file={chain},format=qcow2",
                "-device", "virtio-blk-pci,drive=drive0,id=vd0",
                "--emu-behaviour=block-job-bandwidth=10485760")
    vm.machine.stdout = lambda text: None
    vm.machine.behaviours.set("guest-workload", "random")
    vm.machine.behaviours.set("guest-workload-rate", "655360")
    vm.machine.behaviours.set("guest-workload-pattern", "0x6b")
    target = tmp_path / "t.qcow2"
    ok(vm, "cont")
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "full"})
    until(vm, "BLOCK_JOB_READY")
    vm.tick(1.0)
    stats = ok(vm, "query-blockstats")[0]["stats"]
    assert stats["wr_operations"] > 10
    ok(vm, "stop")
    vm.tick(0.3)
    [job] = ok(vm, "query-block-jobs")
    assert job["ready"] is True and job["offset"] == job["len"] > 2621440
    events(vm)
    ok(vm, "block-job-complete", {"device": "drive0"})
    until(vm, "BLOCK_JOB_COMPLETED")
    assert ok(vm, "query-block")[0]["inserted"]["file"] == str(target)
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."


def test_quit_while_a_mirror_runs(vm: SyncVm, chain: Path, tmp_path: Path) -> None:
    """bdrv_close_all cancels every job first (block_job_cancel_sync_all): a mirror
    before READY ends with BLOCK_JOB_CANCELLED and the images stay valid."""
    vm.machine.stdout = lambda text: None
    target = tmp_path / "t.qcow2"
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "full",
                            "speed": 65536})
    vm.tick(0.2)
    events(vm)
    vm.machine.close()  # the exit's close: the jobs' registry before the block layer
    assert [n for n, _ in events(vm)] == ["BLOCK_JOB_CANCELLED"]
    assert "No errors were found" in run("qemu-img", "check", str(target))
    assert "No errors were found" in run("qemu-img", "check", str(chain))


def test_block_commit_active_three_deep(vms: list[SyncVm], chain: Path, tmp_path: Path) -> None:
    """block-commit with top = the active layer of base <- top <- act, through the
    command (blockdev.jobs.commit calls commit_active_start): the intermediate node is
    blocked while the job runs and dropped with the active one on complete; base is
    the device's image and holds the whole chain's data after exit (block.md §4.5)."""
    act = tmp_path / "act.qcow2"
    base = tmp_path / "base.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", str(chain), "-F", "qcow2", str(act))
    qemu_io(act, "write -P 0x77 3M 256k")
    ref = tmp_path / "ref.raw"
    run("qemu-img", "convert", "-O", "raw", str(act), str(ref))
    vm = machine(vms, act, "--emu-behaviour=block-job-bandwidth=10485760")
    ok(vm, "block-commit", {"device": "drive0"})
    [job] = ok(vm, "query-block-jobs")
    assert job["type"] == "commit" and job["len"] == MIB + 256 * 1024
    mid = vm.block.lookup_bs("drive0", None).backing_bs.backing_bs
    assert mid.filename == str(chain)
    assert mid.op_blocked("stream") == (
        f"Node '{mid.node_name}' is busy: block device is in use by block job: commit")
    assert error(vm, "block-commit", {"device": "drive0"}) == (
        "GenericError", "Need a root block node")
    until(vm, "BLOCK_JOB_READY")
    ok(vm, "block-job-complete", {"device": "drive0"})
    until(vm, "BLOCK_JOB_COMPLETED")
    [info] = ok(vm, "query-block")
    assert info["inserted"]["file"] == str(base)
    assert info["inserted"]["backing_file_depth"] == 0
    files = [n["file"] for n in ok(vm, "query-named-block-nodes")]
    assert str(act) not in files and str(chain) not in files
    vm.close()
    assert run("qemu-img", "compare", "-F", "raw", str(base), str(ref)).strip() \
        == "Images are identical."
    assert [i["filename"] for i in image_chain(base)] == [str(base)]
    # the active and intermediate images are left as they were (QEMU does not empty them)
    assert [i["filename"] for i in image_chain(act)] == [str(act), str(chain), str(base)]


def test_nothing_to_copy_is_ready_before_the_reply(vms: list[SyncVm], tmp_path: Path) -> None:
    """With nothing allocated, mirror_run reaches READY before the coroutine first
    yields, i.e. inside the command: the event precedes the reply (block.md §4.6,
    verified on 2.11). The granularity given is the dirty bitmap's."""
    empty = tmp_path / "empty.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(empty), "4M")
    vm = machine(vms, empty)
    vm.machine.stdout = lambda text: None
    replies_then_events: list[str] = []
    vm.machine.events.subscribe(lambda e: replies_then_events.append(e.name))
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(tmp_path / "t.qcow2"),
                            "sync": "full", "granularity": 4096, "buf-size": 1})
    replies_then_events.append("reply")
    assert replies_then_events == ["BLOCK_JOB_READY", "reply"]
    [info] = ok(vm, "query-block")
    assert info["dirty-bitmaps"] == [{"count": 0, "granularity": 4096, "status": "active"}]
    [job] = ok(vm, "query-block-jobs")
    assert job["ready"] is True and job["len"] == job["offset"] == 0


def test_pause_resume_and_speed(vm: SyncVm, tmp_path: Path) -> None:
    """block-job-pause: `paused` at once, the job stops at its next pause point and
    copies nothing more; resume goes on; block-job-set-speed shows in the job and its
    events (blockjob.c; block/mirror.c mirror_set_speed)."""
    vm.machine.stdout = lambda text: None
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(tmp_path / "t.qcow2"),
                            "sync": "full", "buf-size": 65536})
    vm.tick(0.05)
    ok(vm, "block-job-pause", {"device": "drive0"})
    ok(vm, "block-job-pause", {"device": "drive0"})  # twice: silently
    vm.tick(0.05)
    [job] = ok(vm, "query-block-jobs")
    assert job["paused"] is True and job["busy"] is False
    vm.tick(1)
    [again] = ok(vm, "query-block-jobs")
    assert again["offset"] == job["offset"] < job["len"]
    ok(vm, "block-job-set-speed", {"device": "drive0", "speed": 4 * MIB})
    ok(vm, "block-job-resume", {"device": "drive0"})
    seen = until(vm, "BLOCK_JOB_READY")
    assert seen[-1][1]["speed"] == 4 * MIB
    assert seen[-1][1]["offset"] == seen[-1][1]["len"] == 2621440


def test_sync_top_small_granularity_copies_whole_target_clusters(
        vms: list[SyncVm], chain: Path, tmp_path: Path) -> None:
    """sync top with a granularity below the target's cluster size: the target is
    open without its backing file, so a partly dirty cluster is copied whole from the
    source's view (mirror_cow_align, the cow_bitmap); the result equals the source."""
    qemu_io(chain, "write -P 0x44 2052k 4k")
    vm = machine(vms, chain, "--emu-behaviour=block-job-bandwidth=10485760")
    vm.machine.stdout = lambda text: None
    target = tmp_path / "t.qcow2"
    ok(vm, "drive-mirror", {"device": "drive0", "target": str(target), "sync": "top",
                            "granularity": 4096})
    seen = until(vm, "BLOCK_JOB_READY")
    # 1 MiB of top's own data, and the whole 64 KiB cluster around the 4 KiB write
    assert seen[-1][1]["offset"] == MIB + 65536
    ok(vm, "block-job-complete", {"device": "drive0"})
    until(vm, "BLOCK_JOB_COMPLETED")
    vm.close()
    assert run("qemu-img", "compare", str(chain), str(target)).strip() \
        == "Images are identical."
