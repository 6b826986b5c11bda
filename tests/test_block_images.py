"""Real image files: what the emulator reports for images Debian's qemu-img made, the
image locks other processes see, the overlays it creates, and that existing files
are never written.

Pins block.md §2.2 (ImageInfo = what `qemu-img info` reports), §3.1 (open errors),
§3.8 (blockdev-snapshot-sync overlays), the locking appendix (file-posix OFD locks),
and this project's rule that an existing file's contents are never modified. Every
file lives in pytest's tmp_path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.test_block_support import (
    Block,
    fails,
    make_image,
    needs_qemu_img,
    qemu_img,
    qemu_img_info,
)

pytestmark = needs_qemu_img

# Members qemu-img 7.2 adds to qcow2's format-specific data that 2.11 does not have.
NEWER_QCOW2_KEYS = {"compression-type", "extended-l2"}


def _without_newer_keys(info: dict[str, Any]) -> dict[str, Any]:
    out = dict(info)
    spec = out.get("format-specific")
    if spec and spec.get("type") == "qcow2":
        data = {k: v for k, v in spec["data"].items() if k not in NEWER_QCOW2_KEYS}
        out["format-specific"] = {"type": "qcow2", "data": data}
    for key in ("backing-image",):
        if key in out:
            out[key] = _without_newer_keys(out[key])
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def b() -> Block:
    return Block()


@pytest.mark.parametrize(("fmt", "opts"), [
    ("raw", ()),
    ("qcow2", ()),
    ("qcow2", ("-o", "compat=0.10")),
    ("qcow2", ("-o", "lazy_refcounts=on,cluster_size=4096")),
    ("qcow", ()),
    ("vmdk", ()),
    ("vpc", ()),
    ("vdi", ()),
    ("vhdx", ()),
    ("qed", ()),
])
def test_image_info_matches_qemu_img(b: Block, tmp_path: Path, fmt: str,
                                     opts: tuple[str, ...]) -> None:
    """§2.2: a format node's ImageInfo equals `qemu-img info --output=json` for the
    same file (qemu-img 7.2's newer qcow2 keys aside)."""
    path = make_image(tmp_path / f"img.{fmt}", fmt, "24M", *opts)
    b.add(driver=fmt, **{"node-name": "n0", "file": {"driver": "file",
                                                     "filename": str(path)}})
    mine = b.node("n0")["image"]
    assert mine == _without_newer_keys(qemu_img_info(path, "-U"))


def test_probed_format_matches_qemu_img(b: Block, tmp_path: Path) -> None:
    """bdrv_open_inherit probes the format when none is given (find_image_format)."""
    path = make_image(tmp_path / "img.qcow2", "qcow2")
    b.drive(f"file={path},if=none,id=d0")
    inserted = b.block("d0")["inserted"]
    assert inserted["drv"] == "qcow2"
    assert inserted["image"] == _without_newer_keys(qemu_img_info(path, "-U"))


def test_backing_chain_three_deep(b: Block, tmp_path: Path) -> None:
    """§2.2: `backing-image` nests the whole chain, backing_file_depth counts it, and
    each level matches `qemu-img info --backing-chain`; query-blockstats nests
    `backing` and `parent` the same way (§2.4)."""
    base = make_image(tmp_path / "base.raw", "raw")
    mid = make_image(tmp_path / "mid.qcow2", "qcow2", "16M", "-b", str(base), "-F", "raw")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(mid), "-F", "qcow2")
    b.drive(f"file={top},if=none,id=d0,node-name=top")
    inserted = b.block("d0")["inserted"]
    assert inserted["backing_file_depth"] == 2
    assert inserted["backing_file"] == str(mid)
    chain = []
    image = inserted["image"]
    while image is not None:
        chain.append({k: v for k, v in image.items() if k != "backing-image"})
        image = image.get("backing-image")
    expected = [_without_newer_keys(i) for i in
                qemu_img_info(top, "-U", "--backing-chain")]
    assert chain == expected
    stats = b.qmp("query-blockstats")[0]
    assert stats["node-name"] == "top"
    assert "node-name" in stats["parent"] and "backing" not in stats["parent"]
    assert stats["backing"]["backing"]["parent"]["stats"]["wr_highest_offset"] == 0
    assert "backing" not in stats["backing"]["backing"]


def test_backing_nodes_are_read_only_with_generated_names(b: Block, tmp_path: Path) -> None:
    """§10: backing nodes opened automatically are read-only; every node of the chain
    (format and file) is in query-named-block-nodes, newest first."""
    base = make_image(tmp_path / "base.qcow2", "qcow2")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    b.drive(f"file={top},if=none,id=d0")
    nodes = b.qmp("query-named-block-nodes")
    assert [(n["drv"], n["file"], n["ro"]) for n in nodes] == [
        ("qcow2", str(base), True), ("file", str(base), True),
        ("qcow2", str(top), False), ("file", str(top), False)]


def test_relative_backing_file_becomes_the_backing_nodes_name(b: Block,
                                                              tmp_path: Path) -> None:
    """block.c bdrv_backing_attach copies the backing node's file name into
    bs->backing_file, so with the chain open 2.11 reports the resolved path where
    `qemu-img info` (which does not open the chain) shows the header's string."""
    make_image(tmp_path / "base.raw", "raw")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", "base.raw", "-F", "raw")
    b.drive(f"file={top},if=none,id=d0")
    image = b.block("d0")["inserted"]["image"]
    assert qemu_img_info(top, "-U")["backing-filename"] == "base.raw"
    assert image["backing-filename"] == str(tmp_path / "base.raw")
    assert image["full-backing-filename"] == str(tmp_path / "base.raw")


def test_missing_file(b: Block, tmp_path: Path) -> None:
    """file-posix raw_open_common: `Could not open '<f>': <strerror>`."""
    path = tmp_path / "nope.qcow2"
    assert b.error("blockdev-add", driver="file",
                   **{"node-name": "n0", "filename": str(path)}) == \
        ("GenericError", f"Could not open '{path}': No such file or directory")


def test_directory_opened_read_write(b: Block, tmp_path: Path) -> None:
    """raw_open_common on a directory opened read-write: EISDIR."""
    assert b.error("blockdev-add", driver="file",
                   **{"node-name": "n0", "filename": str(tmp_path)}) == \
        ("GenericError", f"Could not open '{tmp_path}': Is a directory")


def test_not_an_image_of_that_format(b: Block, tmp_path: Path) -> None:
    """qcow2_do_open on a raw file: `Image is not in qcow2 format`."""
    path = make_image(tmp_path / "img.raw", "raw")
    assert b.error("blockdev-add", driver="qcow2",
                   **{"node-name": "n0", "file": {"driver": "file",
                                                  "filename": str(path)}}) == \
        ("GenericError", "Image is not in qcow2 format")


def test_file_driver_requires_a_file_name(b: Block) -> None:
    """bdrv_open_common: `The '%s' block driver requires a file name`."""
    assert b.error("blockdev-add", driver="file", **{"node-name": "n0",
                                                     "filename": ""}) == \
        ("GenericError", "The 'file' block driver requires a file name")


def test_running_disk_is_locked_against_qemu_img(b: Block, tmp_path: Path) -> None:
    """Locking appendix: a writable qcow2 locks its write permission and refuses to
    share it, so `qemu-img info` fails exactly as with QEMU; `-U` still works; after
    blockdev-del the locks are gone."""
    path = make_image(tmp_path / "img.qcow2", "qcow2")
    b.add(driver="qcow2", **{"node-name": "n0", "file": {"driver": "file",
                                                         "filename": str(path)}})
    r = qemu_img("info", str(path), check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"qemu-img: Could not open '{path}': Failed to get shared \"write\" lock",
        f"Is another process using the image [{path}]?"]
    assert qemu_img("info", "-U", str(path)).returncode == 0
    b.qmp("blockdev-del", **{"node-name": "n0"})
    assert qemu_img("info", str(path)).returncode == 0


def test_raw_disk_locks_when_a_device_writes(b: Block, tmp_path: Path) -> None:
    """raw passes its parents' permissions through (filter perms), so a second
    process can open the image for writing only until a device takes write."""
    path = make_image(tmp_path / "img.raw", "raw")
    b.drive(f"file={path},format=raw,if=none,id=d0")
    other = Block()
    other.drive(f"file={path},format=raw,if=none,id=d0")
    b.device("virtio-blk-pci", drive="d0")
    with fails('Failed to get "write" lock'):
        other.device("virtio-blk-pci", drive="d0")


def test_two_emulators_cannot_open_one_qcow2_for_writing(b: Block, tmp_path: Path) -> None:
    """bdrv_format_default_perms: a writable format node takes write on its file and
    shares none, so a second writer fails with `Failed to get "write" lock`."""
    path = make_image(tmp_path / "img.qcow2", "qcow2")
    b.drive(f"file={path},if=none,id=d0")
    other = Block()
    with fails('Failed to get "write" lock'):
        other.drive(f"file={path},if=none,id=d0")
    other.drive(f"file={path},if=none,id=d1,readonly=on,file.locking=off")


def test_existing_files_are_never_written(b: Block, tmp_path: Path) -> None:
    """Project rule: opening read-write, resizing, internal snapshots, a backing file
    change, bitmaps and closing leave every existing file byte for byte unchanged."""
    base = make_image(tmp_path / "base.qcow2", "qcow2")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    before = {p: digest(p) for p in (base, top)}
    b.drive(f"file={top},if=none,id=d0,node-name=top")
    b.device("virtio-blk-pci", drive="d0")
    b.qmp("block_resize", device="d0", size=32 << 20)
    b.qmp("blockdev-snapshot-internal-sync", device="d0", name="s1")
    b.qmp("change-backing-file", device="d0", **{"image-node-name": "top",
                                                 "backing-file": "elsewhere.qcow2"})
    b.qmp("block-dirty-bitmap-add", node="top", name="bm", persistent=True)
    assert b.block("d0")["inserted"]["image"]["virtual-size"] == 32 << 20
    b.layer.close_all()
    assert {p: digest(p) for p in (base, top)} == before
    assert qemu_img_info(top, "-U")["virtual-size"] == 16 << 20


def test_snapshot_sync_creates_an_overlay_qemu_img_accepts(b: Block, tmp_path: Path) -> None:
    """§3.8: blockdev-snapshot-sync writes a qcow2 overlay whose backing file is the
    old node's file name and format; `qemu-img info --backing-chain` and
    `qemu-img check` accept it; query-block shows the overlay on top, the old
    image read-only below; no event."""
    disk = make_image(tmp_path / "disk.qcow2", "qcow2", "64M")
    overlay = tmp_path / "overlay.qcow2"
    b.drive(f"file={disk},if=none,id=d0,node-name=disk")
    b.device("virtio-blk-pci", drive="d0")
    b.qmp("blockdev-snapshot-sync", device="d0", **{"snapshot-file": str(overlay)})
    assert b.events() == []
    inserted = b.block("d0")["inserted"]
    assert inserted["file"] == str(overlay)
    assert inserted["backing_file"] == str(disk)
    assert inserted["backing_file_depth"] == 1
    assert b.node("disk")["ro"] is True
    chain = qemu_img_info(overlay, "-U", "--backing-chain")
    assert [(i["filename"], i["format"], i["virtual-size"]) for i in chain] == [
        (str(overlay), "qcow2", 64 << 20), (str(disk), "qcow2", 64 << 20)]
    assert chain[0]["backing-filename"] == str(disk)
    assert chain[0]["backing-filename-format"] == "qcow2"
    check = qemu_img("check", "-U", str(overlay))
    assert "No errors were found on the image." in check.stdout
    assert inserted["image"] == dict(_without_newer_keys(qemu_img_info(overlay, "-U")),
                                     **{"backing-image": inserted["image"]["backing-image"],
                                        "full-backing-filename": str(disk)})


def test_snapshot_sync_of_a_raw_disk_and_a_node_name(b: Block, tmp_path: Path) -> None:
    """§3.8 by node-name with snapshot-node-name: the overlay's backing format is the
    old node's driver (raw); the overlay node gets the requested name and replaces
    the old node under the device."""
    disk = make_image(tmp_path / "disk.raw", "raw", "8M")
    overlay = tmp_path / "overlay.qcow2"
    b.add(driver="raw", **{"node-name": "disk", "file": {"driver": "file",
                                                         "filename": str(disk)}})
    b.device("virtio-blk-pci", drive="disk", id="vd0")
    b.qmp("blockdev-snapshot-sync", **{"node-name": "disk", "snapshot-file": str(overlay),
                                       "snapshot-node-name": "ov"})
    info = b.node("ov")
    assert (info["drv"], info["backing_file"], info["backing_file_depth"]) == \
        ("qcow2", str(disk), 1)
    assert qemu_img_info(overlay, "-U")["backing-filename-format"] == "raw"
    assert qemu_img("check", "-U", str(overlay)).returncode == 0
    assert b.qmp("query-block")[0]["inserted"]["node-name"] == "ov"


def test_snapshot_of_a_node_nobody_uses_is_dropped(b: Block, tmp_path: Path) -> None:
    """bdrv_append hands the overlay to the old node's parents; a monitor-owned node
    without parents has none, so external_snapshot_clean drops the last reference
    and only the new file remains (QEMU 2.11 does the same)."""
    disk = make_image(tmp_path / "disk.raw", "raw", "8M")
    overlay = tmp_path / "overlay.qcow2"
    b.add(driver="raw", **{"node-name": "disk", "file": {"driver": "file",
                                                         "filename": str(disk)}})
    b.qmp("blockdev-snapshot-sync", **{"node-name": "disk", "snapshot-file": str(overlay),
                                       "snapshot-node-name": "ov"})
    assert all(n["node-name"] != "ov" for n in b.qmp("query-named-block-nodes"))
    assert overlay.exists()
    assert b.node("disk")["ro"] is True


def test_snapshot_sync_refuses_to_overwrite_an_existing_file(b: Block,
                                                             tmp_path: Path) -> None:
    """Project rule over QEMU (which would truncate the file): an existing target is
    refused and left alone; mode=existing opens it instead."""
    disk = make_image(tmp_path / "disk.qcow2", "qcow2")
    existing = make_image(tmp_path / "ov.qcow2", "qcow2", "16M", "-b", str(disk),
                          "-F", "qcow2")
    before = digest(existing)
    b.drive(f"file={disk},if=none,id=d0")
    assert b.error("blockdev-snapshot-sync", device="d0",
                   **{"snapshot-file": str(existing)}) == \
        ("GenericError", "Could not create file: File exists")
    assert digest(existing) == before
    assert b.block("d0")["inserted"]["file"] == str(disk)
    # mode=existing opens it without its backing chain (BDRV_O_NO_BACKING), then
    # appends it above the disk.
    b.qmp("blockdev-snapshot-sync", device="d0", mode="existing",
          **{"snapshot-file": str(existing)})
    inserted = b.block("d0")["inserted"]
    assert (inserted["file"], inserted["backing_file"]) == (str(existing), str(disk))
    assert digest(existing) == before


def test_snapshot_sync_overlay_format_without_backing_files(b: Block,
                                                            tmp_path: Path) -> None:
    """bdrv_img_create: raw has no backing_file creation option:
    `Backing file not supported for file format 'raw'` (nothing is created)."""
    disk = make_image(tmp_path / "disk.qcow2", "qcow2")
    overlay = tmp_path / "ov.raw"
    b.drive(f"file={disk},if=none,id=d0")
    assert b.error("blockdev-snapshot-sync", device="d0", format="raw",
                   **{"snapshot-file": str(overlay)}) == \
        ("GenericError", "Backing file not supported for file format 'raw'")
    assert not overlay.exists()


def test_snapshot_existing_overlay_without_backing_support(b: Block,
                                                           tmp_path: Path) -> None:
    """external_snapshot_prepare: `The snapshot does not support backing images`."""
    disk = make_image(tmp_path / "disk.qcow2", "qcow2")
    overlay = make_image(tmp_path / "ov.raw", "raw")
    b.drive(f"file={disk},if=none,id=d0")
    assert b.error("blockdev-snapshot-sync", device="d0", format="raw", mode="existing",
                   **{"snapshot-file": str(overlay)}) == \
        ("GenericError", "The snapshot does not support backing images")
    assert b.block("d0")["inserted"]["file"] == str(disk)


def test_actual_size_is_read_live(b: Block, tmp_path: Path) -> None:
    """bdrv_query_image_info asks for the allocated size on every query."""
    path = make_image(tmp_path / "img.raw", "raw", "4M")
    b.add(driver="raw", **{"node-name": "n0", "file": {"driver": "file",
                                                       "filename": str(path)}})
    first = b.node("n0")["image"]["actual-size"]
    with open(path, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"x" * 65536)
        os.fsync(f.fileno())
    assert b.node("n0")["image"]["actual-size"] > first


def test_iotests_067_query_block(b: Block, tmp_path: Path) -> None:
    """QEMU 2.11's iotests 067.out (`-drive file=t.qcow2,format=qcow2,if=none,id=disk
    -device virtio-blk,drive=disk,id=virtio0`): query-block member by member, with
    the node name and the allocated size masked as the test does."""
    img = make_image(tmp_path / "t.qcow2", "qcow2", "128M")
    b.drive(f"file={img},format=qcow2,if=none,id=disk")
    b.device("virtio-blk-pci", drive="disk", id="virtio0")
    reply = b.qmp("query-block")
    reply[0]["inserted"]["node-name"] = "NODE_NAME"
    reply[0]["inserted"]["image"]["actual-size"] = "SIZE"
    assert reply == [{
        "io-status": "ok", "device": "disk", "locked": False, "removable": False,
        "inserted": {
            "iops_rd": 0, "detect_zeroes": "off",
            "image": {
                "virtual-size": 134217728, "filename": str(img), "cluster-size": 65536,
                "format": "qcow2", "actual-size": "SIZE",
                "format-specific": {"type": "qcow2", "data": {
                    "compat": "1.1", "lazy-refcounts": False, "refcount-bits": 16,
                    "corrupt": False}},
                "dirty-flag": False},
            "iops_wr": 0, "ro": False, "node-name": "NODE_NAME", "backing_file_depth": 0,
            "drv": "qcow2", "iops": 0, "bps_wr": 0, "write_threshold": 0,
            "encrypted": False, "bps": 0, "bps_rd": 0,
            "cache": {"no-flush": False, "direct": False, "writeback": True},
            "file": str(img), "encryption_key_missing": False},
        "qdev": "/machine/peripheral/virtio0/virtio-backend", "type": "unknown"}]


def test_incoming_migration_defers_locks(tmp_path: Path) -> None:
    """bds_tree_init/blockdev_init under `inmigrate`: nodes open inactive and take no
    locks (raw_handle_perm_lock) until bdrv_invalidate_cache_all."""
    b = Block(state="inmigrate")
    img = make_image(tmp_path / "a.qcow2", "qcow2")
    b.drive(f"file={img},if=none,id=d0")
    b.device("virtio-blk-pci", drive="d0")
    assert qemu_img("info", str(img)).returncode == 0
    b.layer.invalidate_cache_all()
    assert qemu_img("info", str(img), check=False).returncode == 1


def test_two_formats_on_one_file_node_conflict(b: Block, tmp_path: Path) -> None:
    """bdrv_check_update_perm between two parents of one file node: a writable qcow2
    does not share write or resize on its file, so a second writable format node on
    the same file node is refused, naming the first parent node; even a read-only
    one, because a format node never shares write on its file."""
    path = make_image(tmp_path / "img.qcow2", "qcow2")
    b.add(driver="file", **{"node-name": "f0", "filename": str(path)})
    b.add(driver="qcow2", **{"node-name": "q1", "file": "f0"})
    assert b.error("blockdev-add", driver="qcow2", **{"node-name": "q2", "file": "f0"}) == (
        "GenericError", "Conflicts with use by q1 as 'file', which does not allow "
                        "'write, resize' on f0")
    assert b.error("blockdev-add", driver="qcow2",
                   **{"node-name": "q3", "file": "f0", "read-only": True}) == (
        "GenericError", "Conflicts with use by q1 as 'file', which uses 'write, resize' "
                        "on f0")


def test_chain_built_from_references(b: Block, tmp_path: Path) -> None:
    """§3.1: blockdev-add with `"backing": "<node-name>"` links existing nodes; the
    backing node gets the backing blocker and cannot be deleted while used; the
    chain shows three deep in query-named-block-nodes."""
    base = make_image(tmp_path / "base.raw", "raw")
    mid = make_image(tmp_path / "mid.qcow2", "qcow2", "16M", "-b", str(base), "-F", "raw")
    top = make_image(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(mid), "-F", "qcow2")

    def file(p: Path) -> dict[str, str]:
        return {"driver": "file", "filename": str(p)}

    b.add(driver="raw", **{"node-name": "base", "file": file(base), "read-only": True})
    b.add(driver="qcow2", **{"node-name": "mid", "file": file(mid), "backing": "base",
                             "read-only": True})
    b.add(driver="qcow2", **{"node-name": "top", "file": file(top), "backing": "mid"})
    info = b.node("top")
    assert info["backing_file_depth"] == 2
    assert info["image"]["backing-image"]["backing-image"]["filename"] == str(base)
    assert b.error("blockdev-del", **{"node-name": "mid"}) == \
        ("GenericError", "Node 'mid' is busy: node is used as backing hd of 'top'")
    b.qmp("blockdev-del", **{"node-name": "top"})
    b.qmp("blockdev-del", **{"node-name": "mid"})
    b.qmp("blockdev-del", **{"node-name": "base"})
    assert b.layer.nodes == []


def test_external_snapshot_abort_restores_the_graph(b: Block, tmp_path: Path) -> None:
    """external_snapshot_abort (what a failing `transaction` will run): the overlay
    leaves, the old node is the device's root again and stays writable."""
    from blockdev import snapshot
    from blockdev.action import TransactionProperties

    disk = make_image(tmp_path / "disk.qcow2", "qcow2")
    b.drive(f"file={disk},if=none,id=d0,node-name=disk")
    b.device("virtio-blk-pci", drive="d0")
    before = b.qmp("query-block")
    action = snapshot.ExternalSnapshot(kind="blockdev-snapshot-sync", device="d0",
                                       snapshot_file=str(tmp_path / "ov.qcow2"))
    action.prepare(b.layer, TransactionProperties())
    assert b.block("d0")["inserted"]["file"] == str(tmp_path / "ov.qcow2")
    action.abort(b.layer)
    action.clean(b.layer)
    after = b.qmp("query-block")
    for info in (before, after):
        info[0]["inserted"]["image"].pop("actual-size", None)
    assert after == before
    assert [n.node_name for n in b.layer.nodes if n.filename == str(tmp_path / "ov.qcow2")] \
        == []


def test_snapshot_sync_prints_formatting_line(b: Block, tmp_path: Path) -> None:
    """blockdev.c external_snapshot_prepare calls bdrv_img_create with quiet=false:
    block.c prints "Formatting '%s', fmt=%s " and util/qemu-option.c qemu_opts_print of
    the qcow2 create options in block/qcow2.c qcow2_create_opts order, the set ones
    and those with a default (2.11 has no `encryption=off`), commas doubled."""
    disk = make_image(tmp_path / "disk,1.raw", "raw", "8M")
    overlay = tmp_path / "overlay.qcow2"
    b.add(driver="raw", **{"node-name": "disk", "file": {"driver": "file",
                                                         "filename": str(disk)}})
    b.device("virtio-blk-pci", drive="disk", id="vd0")
    b.qmp("blockdev-snapshot-sync", **{"node-name": "disk", "snapshot-file": str(overlay),
                                       "snapshot-node-name": "ov"})
    escaped = str(disk).replace(",", ",,")
    assert b.host.printed == [
        f"Formatting '{overlay}', fmt=qcow2 size=8388608 backing_file={escaped} "
        "backing_fmt=raw cluster_size=65536 lazy_refcounts=off refcount_bits=16\n"]


def test_existing_mode_and_drive_snapshot_print_nothing(b: Block, tmp_path: Path) -> None:
    """mode=existing skips bdrv_img_create; -drive snapshot=on's temporary overlay is
    bdrv_append_temp_snapshot's bdrv_create, which prints nothing."""
    disk = make_image(tmp_path / "disk.raw", "raw", "8M")
    b.drive(f"file={disk},format=raw,if=none,id=d0,snapshot=on")
    b.device("virtio-blk-pci", drive="d0")
    overlay = make_image(tmp_path / "ov.qcow2", "qcow2", "8M")
    b.qmp("blockdev-snapshot-sync", device="d0", format="qcow2", mode="existing",
          **{"snapshot-file": str(overlay)})
    assert b.host.printed == []
