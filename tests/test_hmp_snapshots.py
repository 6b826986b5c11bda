"""HMP's snapshot commands of a single device: `snapshot_blkdev`,
`snapshot_blkdev_internal` and `snapshot_delete_blkdev_internal` [hmp.c
hmp_snapshot_blkdev, hmp_snapshot_blkdev_internal,
hmp_snapshot_delete_blkdev_internal]: each calls its QMP command and prints nothing
on success, the error's text otherwise (hmp_handle_error).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.emulator import SyncVm
from tests.syncvm_helpers import hmp, new_vm, ok
from tests.test_block_support import make_image, qemu_img

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils")


def machine(vms: list[SyncVm], tmp_path: Path) -> SyncVm:
    img = make_image(tmp_path / "a.qcow2", "qcow2", "4M")
    return new_vm(vms, "-M", "none", "-nodefaults", "-S",
                  "-drive", f"file={img},if=none,id=d0,node-name=n0")


def inserted(vm: SyncVm) -> dict[str, object]:
    [info] = ok(vm, "query-block")
    return dict(info["inserted"])


def test_snapshot_blkdev(vms: list[SyncVm], tmp_path: Path) -> None:
    """snapshot_blkdev DEVICE FILE [FORMAT]: blockdev-snapshot-sync with mode
    absolute-paths (the overlay is created, qcow2 unless a format is given); `-n`
    reuses an existing file (mode existing); without a file, QERR_MISSING_PARAMETER."""
    vm = machine(vms, tmp_path)
    ov1, ov2 = tmp_path / "ov1.qcow2", tmp_path / "ov2.qcow2"
    assert hmp(vm, "snapshot_blkdev d0") == "Parameter 'snapshot-file' is missing\r\n"
    assert hmp(vm, f"snapshot_blkdev d0 {ov1}") == ""
    assert (inserted(vm)["file"], inserted(vm)["backing_file"]) == \
        (str(ov1), str(tmp_path / "a.qcow2"))
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(ov1), "-F", "qcow2", str(ov2))
    assert hmp(vm, f"snapshot_blkdev -n d0 {ov2} qcow2") == ""
    assert (inserted(vm)["file"], inserted(vm)["backing_file_depth"]) == (str(ov2), 2)
    assert hmp(vm, f"snapshot_blkdev d0 {tmp_path / 'ov3.raw'} raw") == (
        "Backing file not supported for file format 'raw'\r\n")  # bdrv_img_create
    assert not (tmp_path / "ov3.raw").exists()
    assert hmp(vm, f"snapshot_blkdev nosuch {tmp_path / 'x'}") == (
        "Cannot find device=nosuch nor node_name=\r\n")
    vm.close()
    infos = json.loads(qemu_img("info", "--output=json", "--backing-chain", str(ov2)).stdout)
    assert [i["filename"] for i in infos] == [str(ov2), str(ov1), str(tmp_path / "a.qcow2")]


def test_snapshot_blkdev_internal_and_delete(vms: list[SyncVm], tmp_path: Path) -> None:
    """snapshot_blkdev_internal DEVICE NAME and snapshot_delete_blkdev_internal
    DEVICE NAME [ID]: the QMP commands' work and texts."""
    vm = machine(vms, tmp_path)

    def snapshots() -> list[tuple[str, str]]:
        image = inserted(vm)["image"]
        assert isinstance(image, dict)
        return [(s["id"], s["name"]) for s in image.get("snapshots", [])]

    assert hmp(vm, "snapshot_blkdev_internal d0 s1") == ""
    assert hmp(vm, "snapshot_blkdev_internal d0 s2") == ""
    assert snapshots() == [("1", "s1"), ("2", "s2")]
    assert hmp(vm, "snapshot_blkdev_internal d0 s1") == (
        "Snapshot with name 's1' already exists on device 'd0'\r\n")
    assert hmp(vm, "snapshot_delete_blkdev_internal d0 s1 2") == (
        "Snapshot with id '2' and name 's1' does not exist on device 'd0'\r\n")
    assert hmp(vm, "snapshot_delete_blkdev_internal d0 s2 2") == ""
    assert hmp(vm, "snapshot_delete_blkdev_internal d0 s1") == ""
    assert snapshots() == []
    assert hmp(vm, "snapshot_delete_blkdev_internal d0 s1") == (
        "Snapshot with id 'null' and name 's1' does not exist on device 'd0'\r\n")
    assert hmp(vm, "snapshot_blkdev_internal nosuch s") == (
        "Cannot find device=nosuch nor node_name=nosuch\r\n")
