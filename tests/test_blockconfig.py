"""Block devices from QEMU's command line, through the program's composition.

Pins vl.c configure_blockdev and the pc board: -blockdev first, then -drive, then the
default drives (ide1-cd0, floppy0, sd0 unless -nodefaults; no floppy on q35), board
devices for IDE/floppy drives, -device with drive=, errors at the option's location
(../shared/reference/block.md §1.2, §1.6, §6).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from vmm.cmdline import CommandLineError

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="Debian's qemu-img is not installed")


def devices(vm) -> list[tuple[str, str | None]]:
    reply = vm.talk().execute("query-block")["return"]
    return [(b["device"], b.get("qdev")) for b in reply]


def test_default_drives_of_a_pc(vm_cmdline) -> None:
    """vl.c default_drive: a CD-ROM at index 2 of IDE, a floppy, an SD card; the board
    attaches ide-cd and floppy devices, nothing takes the SD card."""
    vm = vm_cmdline("-machine", "pc")
    names = [d for d, _ in devices(vm)]
    assert names == ["ide1-cd0", "floppy0", "sd0"]


def test_q35_has_no_default_floppy_and_nodefaults_has_none(vm_cmdline) -> None:
    """hw/i386/pc_q35.c: no_floppy, and units_per_default_bus = 1, so the default CD-ROM
    at index 2 sits on bus 2 (ide2-cd0); -nodefaults turns every default drive off."""
    assert [d for d, _ in devices(vm_cmdline("-M", "q35"))] == [
        "ide2-cd0", "sd0"]
    assert devices(vm_cmdline("-nodefaults")) == []


@needs_qemu_img
def test_libvirt_style_disk(vm_cmdline, tmp_path: Path) -> None:
    """-drive if=none,id=X plus -device virtio-blk-pci,drive=X,id=Y: query-block shows
    the drive with the virtio device's inner QOM path as qdev (block.md §2.1)."""
    img = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
    vm = vm_cmdline("-nodefaults",
                 "-drive", f"file={img},format=qcow2,if=none,id=drive-virtio-disk0",
                 "-device", "virtio-blk-pci,drive=drive-virtio-disk0,id=virtio-disk0")
    [info] = vm.talk().execute("query-block")["return"]
    assert info["device"] == "drive-virtio-disk0"
    assert info["qdev"] == "/machine/peripheral/virtio-disk0/virtio-backend"
    assert info["removable"] is False
    assert info["inserted"]["image"]["virtual-size"] == 64 << 20
    vm.vm.block.close_all()


def test_blockdev_json_and_keyval(vm_cmdline) -> None:
    """-blockdev in JSON and in keyval syntax build the same kind of node."""
    vm = vm_cmdline("-nodefaults",
                 "-blockdev", '{"driver": "null-co", "node-name": "a", "size": 1048576}',
                 "-blockdev", "driver=null-co,node-name=b,size=2097152")
    nodes = vm.talk().execute("query-named-block-nodes")["return"]
    assert [(n["node-name"], n["image"]["virtual-size"]) for n in nodes] == [
        ("b", 2 << 20), ("a", 1 << 20)]


@pytest.mark.parametrize(("argv", "message"), [
    (("-drive", "file=/nonexistent.qcow2"),
     "-drive file=/nonexistent.qcow2: Could not open '/nonexistent.qcow2': "
     "No such file or directory"),
    (("-device", "virtio-blk-pci,drive=nope"),
     "-device virtio-blk-pci,drive=nope: Property 'virtio-blk-device.drive' can't find value "
     "'nope'"),
    (("-drive", "if=none,id=x,werror=bogus"),
     "-drive if=none,id=x,werror=bogus: 'bogus' invalid write error action"),
])
def test_block_errors_carry_the_options_location(vm_cmdline, argv, message) -> None:
    """QEMU reports a drive's or device's error at that option (qemu_opts_loc_restore)."""
    with pytest.raises(CommandLineError) as info:
        vm_cmdline("-nodefaults", *argv)
    assert info.value.render("qemu-system-x86_64") == f"qemu-system-x86_64: {message}\n"


@needs_qemu_img
def test_running_emulator_locks_its_image(tmp_path: Path) -> None:
    """block.md appendix: while the emulator runs, `qemu-img info` on its disk fails
    with `Failed to get shared "write" lock`, as with a real QEMU; `-U` still works."""
    from tests.test_program import program, wait_for_socket

    img = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "16M"], check=True)
    sock = tmp_path / "q.sock"
    proc = subprocess.Popen([*program(), "-nodefaults", "-drive",
                             f"file={img},format=qcow2,if=virtio",
                             "-qmp", f"unix:{sock},server,nowait"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        wait_for_socket(sock, proc)
        info = subprocess.run(["qemu-img", "info", str(img)], capture_output=True, text=True)
        assert info.returncode == 1
        assert 'Failed to get shared "write" lock' in info.stderr
        shared = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(img)],
                                capture_output=True, text=True, check=True)
        assert json.loads(shared.stdout)["virtual-size"] == 16 << 20
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
