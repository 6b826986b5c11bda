"""HMP `commit`: the synchronous commit of a device's top image into its backing file
[blockdev.c hmp_commit; block/commit.c bdrv_commit; block/block-backend.c
blk_commit_all; block/qcow2.c qcow2_make_empty].

Real qcow2 chains written with patterns by qemu-io; after the emulator closed its
images, `qemu-img compare` checks the backing file against a flattened copy of the
chain made before the commit, and `qemu-img map` that the top allocates nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.emulator import SyncVm
from tests.syncvm_helpers import hmp, new_vm, ok
from tests.test_block_support import make_image, qemu_img

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-utils")


def qemu_io(path: Path, *commands: str) -> None:
    args = ["qemu-io", "-f", "qcow2"]
    for c in commands:
        args += ["-c", c]
    subprocess.run([*args, str(path)], check=True, capture_output=True)


def chain(tmp_path: Path, name: str = "") -> tuple[Path, Path, Path]:
    """base <- top, 4 MiB, with patterns in both and a zero cluster in the top over
    data of the base; returns (base, top, expected): `expected` is the chain
    flattened (what the guest reads) before any commit."""
    base = make_image(tmp_path / f"base{name}.qcow2", "qcow2", "4M")
    qemu_io(base, "write -P 0x11 0 1M", "write -P 0x44 2M 128k")
    top = tmp_path / f"top{name}.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    qemu_io(top, "write -P 0x22 512k 256k", "write -z 0 64k", "write -P 0x33 3M 70k",
            "write -P 0x55 2M 4k")
    expected = tmp_path / f"expected{name}.raw"
    qemu_img("convert", "-O", "raw", str(top), str(expected))
    assert not compare(base, expected)
    return base, top, expected


def top_allocates_nothing(top: Path) -> bool:
    """No extent of `qemu-img map` comes from the top image itself (depth 0)."""
    extents = json.loads(qemu_img("map", "--output=json", str(top)).stdout)
    return all(e["depth"] > 0 or not (e["data"] or e["zero"]) for e in extents)


def compare(a: Path, b: Path) -> bool:
    return qemu_img("compare", str(a), str(b), check=False).returncode == 0


def test_commit_device(vms: list[SyncVm], tmp_path: Path) -> None:
    """bdrv_commit copies every range the top allocates (data and zero clusters)
    into the backing file, then qcow2_make_empty empties the top: the backing file
    now holds what the chain read, the top allocates nothing, the guest still reads
    the same data, and the backing node is read-only again (it was reopened
    read-write for the copy). The graph does not change."""
    base, top, expected = chain(tmp_path)
    vm = new_vm(vms, "-M", "none", "-nodefaults", "-S",
                "-drive", f"file={top},if=none,id=d0,node-name=top")
    before = [n["node-name"] for n in ok(vm, "query-named-block-nodes")]
    assert hmp(vm, "commit d0") == ""
    assert [n["node-name"] for n in ok(vm, "query-named-block-nodes")] == before
    [info] = ok(vm, "query-block")
    assert (info["inserted"]["file"], info["inserted"]["backing_file"]) == (str(top), str(base))
    backing = [n for n in ok(vm, "query-named-block-nodes")
               if n["file"] == str(base) and n["drv"] == "qcow2"]
    assert [n["ro"] for n in backing] == [True]
    assert hmp(vm, 'qemu-io d0 "read -P 0x22 512k 256k"') == ""
    assert hmp(vm, 'qemu-io d0 "read -P 0 0 64k"') == ""
    vm.close()
    assert compare(base, expected)
    assert compare(top, expected)
    assert top_allocates_nothing(top)
    for image in (base, top):
        assert qemu_img("check", "-q", str(image), check=False).returncode == 0


def test_commit_all(vms: list[SyncVm], tmp_path: Path) -> None:
    """`commit all` (blk_commit_all): every device whose root has a backing file;
    a device without one, or without a medium, is passed over."""
    base0, top0, expected0 = chain(tmp_path, "0")
    base1, top1, expected1 = chain(tmp_path, "1")
    raw = make_image(tmp_path / "plain.raw", "raw", "1M")
    vm = new_vm(vms, "-M", "none", "-nodefaults", "-S",
                "-drive", f"file={top0},if=none,id=d0",
                "-drive", f"file={raw},format=raw,if=none,id=plain",
                "-drive", "if=none,id=empty",
                "-drive", f"file={top1},if=none,id=d1")
    assert hmp(vm, "commit all") == ""
    vm.close()
    assert compare(base0, expected0) and compare(base1, expected1)
    assert top_allocates_nothing(top0) and top_allocates_nothing(top1)


def test_commit_blocked_by_a_read_only_backing_file(vms: list[SyncVm],
                                                    tmp_path: Path) -> None:
    """bdrv_commit reopens a read-only backing node read-write first; when that is
    refused (the node may never be written: the chain was opened read-only), the
    error is -EACCES and nothing is copied."""
    base, top, _expected = chain(tmp_path)
    base_bytes = base.read_bytes()
    vm = new_vm(vms, "-M", "none", "-nodefaults", "-S",
                "-drive", f"file={top},if=none,id=d0,readonly=on")
    assert hmp(vm, "commit d0") == "'commit' error for 'd0': Permission denied\r\n"
    vm.close()
    assert base.read_bytes() == base_bytes


def test_commit_all_stops_at_the_first_failure(vms: list[SyncVm], tmp_path: Path) -> None:
    """blk_commit_all returns the first failure, in creation order of the
    BlockBackends, and hmp_commit names `all` in its text; the devices after it are
    not committed. (hmp_commit's lookup texts: test_hmp_block.test_commit.)"""
    _base0, top0, _ = chain(tmp_path, "0")
    base1, top1, _ = chain(tmp_path, "1")
    base1_bytes = base1.read_bytes()
    vm = new_vm(vms, "-M", "none", "-nodefaults", "-S",
                "-drive", f"file={top0},if=none,id=d0,readonly=on",
                "-drive", f"file={top1},if=none,id=d1")
    assert hmp(vm, "commit all") == "'commit' error for 'all': Permission denied\r\n"
    vm.close()
    assert base1.read_bytes() == base1_bytes


def test_commit_of_a_snapshot_drive(vms: list[SyncVm], tmp_path: Path) -> None:
    """What `commit` is for ("commit changes to the disk images (if -snapshot is
    used)", hmp-commands.hx): the guest's writes to a -drive snapshot=on go to the
    temporary overlay; `commit` writes them into the image itself, which keeps them
    after the emulator (and the overlay) is gone."""
    img = make_image(tmp_path / "disk.qcow2", "qcow2", "4M")
    qemu_io(img, "write -P 0x11 0 1M")
    vm = new_vm(vms, "-M", "none", "-nodefaults", "-S",
                "-drive", f"file={img},if=none,id=d0,snapshot=on")
    assert hmp(vm, 'qemu-io d0 "write -P 0x22 64k 64k"') == ""
    assert hmp(vm, "commit d0") == ""
    vm.close()
    data = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x22 64k 64k",
                           "-c", "read -P 0x11 0 64k", "-c", "read -P 0x11 128k 896k",
                           str(img)], capture_output=True, text=True, check=True).stdout
    assert "fail" not in data and data.count("read ") == 3
