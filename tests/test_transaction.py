"""The `transaction` command: all actions done, or none [blockdev.c qmp_transaction,
its action table and each action's prepare/commit/abort/clean; block.md §5].

Whole machines from a command line (strict: every reply and event is checked against
the schema) on real qcow2 images made by qemu-img; what the emulator left on disk is
read back with `qemu-img info --backing-chain` after it closed its images. Bitmap
contents are compared with x-debug-block-dirty-bitmap-sha256.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from blockdev.transaction import ACTIONS, Transactions
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, hmp, new_vm, ok
from tests.test_block_support import Block, fails, make_image, qemu_img
from vmm.qmp.dispatch import not_implemented

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils")


def action(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data}


def snapshot_sync(device: str, path: Path, **more: Any) -> dict[str, Any]:
    return action("blockdev-snapshot-sync", device=device, **{"snapshot-file": str(path)},
                  **more)


def transaction(vm: SyncVm, *actions: dict[str, Any], **properties: Any) -> Any:
    args: dict[str, Any] = {"actions": list(actions)}
    if properties:
        args["properties"] = {k.replace("_", "-"): v for k, v in properties.items()}
    return ok(vm, "transaction", args)


def transaction_error(vm: SyncVm, *actions: dict[str, Any], **properties: Any) -> str:
    args: dict[str, Any] = {"actions": list(actions)}
    if properties:
        args["properties"] = {k.replace("_", "-"): v for k, v in properties.items()}
    cls, desc = error(vm, "transaction", args)
    assert cls == "GenericError"
    return desc


def two_disks(vms: list[SyncVm], tmp_path: Path) -> SyncVm:
    """Two qcow2 drives: d0 (node n0) and d1 (node n1), on the 2.11.0 persona (the
    one with x-debug-block-dirty-bitmap-sha256)."""
    for name in ("a", "b"):
        make_image(tmp_path / f"{name}.qcow2", "qcow2", "4M")
    return new_vm(vms, "--emu-persona=2.11.0", "-M", "none", "-nodefaults", "-S",
                  "-drive", f"file={tmp_path / 'a.qcow2'},if=none,id=d0,node-name=n0",
                  "-drive", f"file={tmp_path / 'b.qcow2'},if=none,id=d1,node-name=n1")


def inserted(vm: SyncVm, device: str) -> dict[str, Any]:
    [info] = [b for b in ok(vm, "query-block") if b["device"] == device]
    return dict(info["inserted"])


def node(vm: SyncVm, name: str) -> dict[str, Any]:
    [info] = [n for n in ok(vm, "query-named-block-nodes") if n["node-name"] == name]
    return dict(info)


def sha256(vm: SyncVm, node_name: str, name: str) -> str:
    return str(ok(vm, "x-debug-block-dirty-bitmap-sha256",
                  {"node": node_name, "name": name})["sha256"])


def graph(vm: SyncVm) -> tuple[Any, Any]:
    """Everything query-block and query-named-block-nodes say (bitmaps included)."""
    return ok(vm, "query-block"), ok(vm, "query-named-block-nodes")


def chain(path: Path) -> list[tuple[str, str | None]]:
    """(filename, backing filename) of each image of `qemu-img info --backing-chain`."""
    infos = json.loads(qemu_img("info", "--output=json", "--backing-chain",
                                str(path)).stdout)
    return [(i["filename"], i.get("backing-filename")) for i in infos]


def test_all_succeed(vms: list[SyncVm], tmp_path: Path) -> None:
    """§5: every prepare succeeds, then every commit: both overlays are created and
    inserted, the old nodes become read-only (external_snapshot_commit), the bitmaps
    exist, one of them on the overlay that an earlier action of the same transaction
    created (prepare runs in list order). No event. On disk, each overlay's backing
    file is the old image."""
    vm = two_disks(vms, tmp_path)
    ov0, ov1 = tmp_path / "ov0.qcow2", tmp_path / "ov1.qcow2"
    transaction(vm,
                snapshot_sync("d0", ov0),
                action("blockdev-snapshot-sync", **{"node-name": "n1",
                                                    "snapshot-file": str(ov1),
                                                    "snapshot-node-name": "o1"}),
                action("block-dirty-bitmap-add", node="n0", name="b0"),
                action("block-dirty-bitmap-add", node="o1", name="b1", granularity=4096))
    assert events(vm) == []
    d0, d1 = inserted(vm, "d0"), inserted(vm, "d1")
    assert (d0["file"], d0["backing_file"], d0["backing_file_depth"]) == \
        (str(ov0), str(tmp_path / "a.qcow2"), 1)
    assert (d1["file"], d1["node-name"], d1["backing_file"]) == \
        (str(ov1), "o1", str(tmp_path / "b.qcow2"))
    assert node(vm, "n0")["ro"] is True and node(vm, "n1")["ro"] is True
    assert node(vm, "o1")["ro"] is False
    assert [b["dirty-bitmaps"] for b in ok(vm, "query-block")
            if b["device"] == "d1"] == [
        [{"name": "b1", "count": 0, "granularity": 4096, "status": "active"}]]
    assert len(sha256(vm, "n0", "b0")) == 64  # b0 exists on n0, below the overlay now
    vm.close()
    assert chain(ov0) == [(str(ov0), str(tmp_path / "a.qcow2")),
                          (str(tmp_path / "a.qcow2"), None)]
    assert chain(ov1) == [(str(ov1), str(tmp_path / "b.qcow2")),
                          (str(tmp_path / "b.qcow2"), None)]


@pytest.mark.parametrize(("failing", "text"), [
    (action("abort"), "Transaction aborted using Abort action"),
    (action("block-dirty-bitmap-add", node="n1", name="old"), "Bitmap already exists: old"),
    (action("blockdev-snapshot-sync", device="d1",
            **{"snapshot-file": "/nonexistent/dir/x.qcow2"}),
     "Could not create file: No such file or directory"),
    (action("blockdev-snapshot-internal-sync", device="d1", name=""), "Name is empty"),
])
def test_one_fails_all_roll_back(vms: list[SyncVm], tmp_path: Path,
                                 failing: dict[str, Any], text: str) -> None:
    """§5: the first failing prepare aborts every action attempted (in list order)
    and its error is the reply: the graph is as it was (query-block and
    query-named-block-nodes compare equal, the old nodes writable again), the bitmap
    that was added is gone, the one that was cleared has its contents back
    (block_dirty_bitmap_clear_abort), the one that existed before is kept (the add
    that failed removes nothing: block_dirty_bitmap_add_abort checks `prepared`), the
    overlay file the aborted action created is deleted (issue 9), and the file given
    with mode=existing is kept as it was."""
    vm = two_disks(vms, tmp_path)
    ok(vm, "block-dirty-bitmap-add", {"node": "n0", "name": "b0", "granularity": 512})
    ok(vm, "block-dirty-bitmap-add", {"node": "n1", "name": "old"})
    assert hmp(vm, 'qemu-io d0 "write -P 0x5a 4096 3000"') == ""
    before_sha = sha256(vm, "n0", "b0")
    assert before_sha != sha256(vm, "n1", "old")  # b0 is dirty, old is not
    existing = make_image(tmp_path / "existing.qcow2", "qcow2", "4M")
    existing_bytes = existing.read_bytes()
    before = graph(vm)
    created = tmp_path / "ov0.qcow2"
    events(vm)
    assert transaction_error(
        vm,
        snapshot_sync("d0", created),
        action("block-dirty-bitmap-clear", node="n0", name="b0"),
        action("block-dirty-bitmap-add", node="n1", name="new"),
        snapshot_sync("d1", existing, mode="existing", format="qcow2"),
        failing) == text
    assert events(vm) == []
    assert graph(vm) == before
    assert sha256(vm, "n0", "b0") == before_sha
    assert error(vm, "x-debug-block-dirty-bitmap-sha256", {"node": "n1", "name": "new"}) == \
        ("GenericError", "Dirty bitmap 'new' not found")
    assert not created.exists()
    assert existing.read_bytes() == existing_bytes
    assert not (tmp_path / "x.qcow2").exists()
    # the machine goes on: the same snapshot succeeds now
    transaction(vm, snapshot_sync("d0", created))
    assert inserted(vm, "d0")["file"] == str(created)
    vm.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.qcow2", "b.qcow2", "existing.qcow2", "ov0.qcow2"]
    assert chain(created)[0] == (str(created), str(tmp_path / "a.qcow2"))


def test_blockdev_snapshot_rolled_back_keeps_overlay_node(vms: list[SyncVm],
                                                          tmp_path: Path) -> None:
    """blockdev-snapshot in an aborted transaction [external_snapshot_abort]: the
    overlay (a node of blockdev-add) leaves the chain again and stays a node of the
    monitor; its file, which the action did not create, is kept."""
    vm = two_disks(vms, tmp_path)
    ov = make_image(tmp_path / "ov.qcow2", "qcow2", "4M")
    ok(vm, "blockdev-add", {"driver": "qcow2", "node-name": "ov", "backing": None,
                            "file": {"driver": "file", "filename": str(ov)}})
    before = graph(vm)
    assert transaction_error(vm, action("blockdev-snapshot", node="d0", overlay="ov"),
                             action("abort")) == "Transaction aborted using Abort action"
    blocks, nodes = graph(vm)
    assert blocks == before[0]
    assert [n["node-name"] for n in nodes] == [n["node-name"] for n in before[1]]
    ov_info = node(vm, "ov")
    assert (ov_info["backing_file_depth"], "backing-image" in ov_info["image"]) == (0, False)
    assert node(vm, "n0")["ro"] is False
    assert ov.exists()
    transaction(vm, action("blockdev-snapshot", node="n0", overlay="ov"))
    assert (inserted(vm, "d0")["node-name"], node(vm, "n0")["ro"]) == ("ov", True)


def test_internal_snapshot_undone_on_abort(vms: list[SyncVm], tmp_path: Path) -> None:
    """internal_snapshot_abort deletes the snapshot its prepare took; a later one
    takes the next free id again (find_new_snapshot_id: max id + 1). The second of
    two actions with the same name fails (`Snapshot with name ... already exists`)
    because the first one's snapshot exists by then, and both are undone."""
    vm = two_disks(vms, tmp_path)

    def snapshots() -> list[tuple[str, str]]:
        return [(s["id"], s["name"])
                for s in inserted(vm, "d0")["image"].get("snapshots", [])]

    assert transaction_error(
        vm, action("blockdev-snapshot-internal-sync", device="d0", name="s1"),
        action("abort")) == "Transaction aborted using Abort action"
    assert snapshots() == []
    transaction(vm, action("blockdev-snapshot-internal-sync", device="d0", name="s1"),
                action("blockdev-snapshot-internal-sync", device="d1", name="s1"))
    assert snapshots() == [("1", "s1")]
    assert transaction_error(
        vm, action("blockdev-snapshot-internal-sync", device="d0", name="s2"),
        action("blockdev-snapshot-internal-sync", device="d0", name="s2")) == \
        "Snapshot with name 's2' already exists on device 'd0'"
    assert snapshots() == [("1", "s1")]
    transaction(vm, action("blockdev-snapshot-internal-sync", device="d0", name="s3"))
    assert snapshots() == [("1", "s1"), ("2", "s3")]


@pytest.mark.parametrize("kind_data", [
    action("block-dirty-bitmap-add", node="n0", name="b"),
    action("block-dirty-bitmap-clear", node="n0", name="b0"),
    action("blockdev-snapshot", node="n0", overlay="n1"),
    action("blockdev-snapshot-internal-sync", device="d0", name="s"),
    action("blockdev-snapshot-sync", device="d0", **{"snapshot-file": "/nonexistent/x"}),
], ids=lambda a: a["type"])
def test_grouped_refused_by_non_backup_actions(vms: list[SyncVm], tmp_path: Path,
                                               kind_data: dict[str, Any]) -> None:
    """action_check_completion_mode: only the backup actions take `grouped`; the
    check comes before anything else the action looks at (block.md §5, verified for
    block-dirty-bitmap-add), so nothing changes."""
    vm = two_disks(vms, tmp_path)
    ok(vm, "block-dirty-bitmap-add", {"node": "n0", "name": "b0"})
    before = graph(vm)
    assert transaction_error(vm, kind_data, completion_mode="grouped") == (
        f"Action '{kind_data['type']}' does not support Transaction property "
        "completion-mode = grouped")
    assert graph(vm) == before


def test_grouped_abort_and_individual(vms: list[SyncVm], tmp_path: Path) -> None:
    """abort_prepare does not look at the completion mode; `individual` is the
    default and may be given explicitly."""
    vm = two_disks(vms, tmp_path)
    assert transaction_error(vm, action("abort"), completion_mode="grouped") == \
        "Transaction aborted using Abort action"
    transaction(vm, action("block-dirty-bitmap-add", node="n0", name="b"),
                completion_mode="individual")
    assert transaction(vm) == {}  # no actions: nothing to do


def test_bitmap_clear_texts(vms: list[SyncVm], tmp_path: Path) -> None:
    """block_dirty_bitmap_clear_prepare has texts of its own (block.md §5), not the
    stand-alone command's; the lookup is block_dirty_bitmap_lookup's."""
    from blockdev.bitmaps import DirtyBitmap

    vm = two_disks(vms, tmp_path)
    ok(vm, "block-dirty-bitmap-add", {"node": "n0", "name": "b0"})
    layer = vm.block
    bm = layer.find_dirty_bitmap(layer.find_node("n0"), "b0")
    assert bm is not None

    def clear() -> str:
        return transaction_error(vm, action("block-dirty-bitmap-clear", node="n0",
                                            name="b0"))

    bm.successor = DirtyBitmap(name=None, granularity=bm.granularity, size=bm.size)
    assert clear() == "Cannot modify a frozen bitmap"
    bm.successor = None
    bm.disabled = True
    assert clear() == "Cannot clear a disabled bitmap"
    bm.disabled, bm.readonly = False, True
    assert clear() == "Cannot clear a readonly bitmap"
    assert transaction_error(vm, action("block-dirty-bitmap-clear", node="zz",
                                        name="b0")) == "Node 'zz' not found"
    assert transaction_error(vm, action("block-dirty-bitmap-clear", node="n0",
                                        name="zz")) == "Dirty bitmap 'zz' not found"


@pytest.mark.parametrize(("act", "text"), [
    (action("block-dirty-bitmap-add", node="n0", name=""), "Bitmap name cannot be empty"),
    (action("block-dirty-bitmap-add", node="zz", name="a"),
     "Cannot find device=zz nor node_name=zz"),
    (action("block-dirty-bitmap-add", node="n0", name="a", granularity=100),
     "Granularity must be power of 2 and at least 512"),
    (action("blockdev-snapshot-sync", **{"node-name": "n0", "snapshot-file": "/x"}),
     "New snapshot node name missing"),
    (action("blockdev-snapshot-sync", **{"node-name": "n0", "snapshot-file": "/x",
                                         "snapshot-node-name": "n1"}),
     "New snapshot node name already in use"),
    (action("blockdev-snapshot", node="n0", overlay="n1"), "The snapshot is already in use"),
    (action("blockdev-snapshot-internal-sync", device="zz", name="s"),
     "Cannot find device=zz nor node_name=zz"),
])
def test_action_texts(vms: list[SyncVm], tmp_path: Path, act: dict[str, Any],
                      text: str) -> None:
    """Each action fails in a transaction with its stand-alone command's text
    [block_dirty_bitmap_add_prepare calls qmp_block_dirty_bitmap_add;
    external_snapshot_prepare; internal_snapshot_prepare]."""
    vm = two_disks(vms, tmp_path)
    assert transaction_error(vm, act) == text


def test_two_clears_of_one_bitmap(vms: list[SyncVm], tmp_path: Path) -> None:
    """Two clears of the same bitmap in an aborted transaction leave it empty, as
    2.11 does: the aborts run in list order and bdrv_undo_clear_dirty_bitmap puts back
    each action's backup, so the second clear's (empty) backup is restored last
    [blockdev.c qmp_transaction, block_dirty_bitmap_clear_abort; block/dirty-bitmap.c
    bdrv_clear_dirty_bitmap, bdrv_undo_clear_dirty_bitmap]. One clear alone is
    restored."""
    vm = two_disks(vms, tmp_path)
    ok(vm, "block-dirty-bitmap-add", {"node": "n0", "name": "b0"})
    assert hmp(vm, 'qemu-io d0 "write 0 64k"') == ""
    ok(vm, "block-dirty-bitmap-add", {"node": "n0", "name": "empty"})
    dirty, empty = sha256(vm, "n0", "b0"), sha256(vm, "n0", "empty")
    assert dirty != empty
    clear = action("block-dirty-bitmap-clear", node="n0", name="b0")
    assert transaction_error(vm, clear, action("abort")) != ""
    assert sha256(vm, "n0", "b0") == dirty
    assert transaction_error(vm, clear, clear, action("abort")) != ""
    assert sha256(vm, "n0", "b0") == empty


def test_action_without_a_handler(tmp_path: Path) -> None:
    """A kind that no subsystem has registered (the backup actions until the block
    jobs add theirs to the table) fails at its place in the list with the
    dispatcher's text for a command without a handler, and the actions before it are
    rolled back."""
    b = Block()
    b.drive("driver=null-co,if=none,id=d0,node-name=n0")
    table = {k: v for k, v in ACTIONS.items() if k not in ("drive-backup", "blockdev-backup")}
    txn = Transactions(b.layer, not_implemented=not_implemented, actions=table)
    with fails(not_implemented("drive-backup")):
        txn.transaction([action("block-dirty-bitmap-add", node="n0", name="b"),
                         action("drive-backup", device="d0", target="/nonexistent/t",
                                sync="full")])
    assert "dirty-bitmaps" not in b.block("d0")
