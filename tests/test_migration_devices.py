"""Save and restore with devices: the device state sections of `vmm.vmstate`.

Two emulators in one trio run: the source saves with `exec:cat > FILE` (libvirt's
`virsh save`), the destination restores with `migrate-incoming "exec:cat FILE"`
after the same command line and the same `device_add` (libvirt's restore). QEMU's
destination must have every device whose section the source sends
[migration/savevm.c qemu_loadvm_section_start_full, vmstate_register_with_alias_id;
hw/pci/pci.c pcibus_get_dev_path], else it reports and exits 1
[migration/migration.c process_incoming_migration_co].
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests import emulator
from tests.test_migration_live import Side, migrate, start
from vmm.vmstate import section_ids

EXEC = "--emu-allow-exec-migration"


def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


def command_line(disk: Path) -> list[str]:
    """Shared storage opened by both emulators at once: without the image
    inactivation of a switch-over, the second opener needs `file.locking=off`
    [block/file-posix.c raw_open_common]. The format node is named: generated names
    end in two random digits [util/id.c id_generate], in QEMU as here."""
    return [EXEC, "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,id=net0",
            "-drive", f"file={disk},format=qcow2,if=none,id=drive0,node-name=fmt0,file.locking=off",
            "-device", "virtio-blk-pci,drive=drive0,id=disk0"]


async def views(side: Side) -> dict[str, Any]:
    return {"pci": (await side.cmd("query-pci"))["return"],
            "qom": (await side.cmd("qom-list", path="/machine/peripheral"))["return"],
            "block": (await side.cmd("query-block"))["return"]}


async def exited(side: Side) -> None:
    """Read the side's monitor until the emulator closes it on its way out."""
    try:
        while True:
            side.events.append(await side.client.line())
    except EOFError:
        pass
    await trio.testing.wait_all_tasks_blocked()


async def saved(nursery: trio.Nursery, tmp_path: Path, disk: Path) -> tuple[Side, Path]:
    src = await start(nursery, tmp_path, "src", *command_line(disk))
    assert await src.cmd("device_add", driver="e1000", id="nic1") == {"return": {}}
    path = tmp_path / "saved"
    await migrate(src, f"exec:cat > {path}")
    await src.event("MIGRATION", "completed")
    return src, path


async def test_save_and_restore_keeps_devices_and_block_views(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    """The destination started like the source (+ the device_add before
    migrate-incoming) ends with the same query-pci, qom-list /machine/peripheral and
    query-block as the source, and runs the guest."""
    mock_clock.autojump_threshold = 0
    disk = image(tmp_path)
    src, path = await saved(nursery, tmp_path, disk)
    before = await views(src)
    dst = await start(nursery, tmp_path, "dst", *command_line(disk), "-incoming", "defer")
    assert await dst.cmd("device_add", driver="e1000", id="nic1") == {"return": {}}
    assert await dst.cmd("migrate-incoming", uri=f"exec:cat {path}") == {"return": {}}
    await dst.event("MIGRATION", "completed")
    assert dst.names() == ["setup", "active", "RESUME", "completed"]
    assert await views(dst) == before
    assert {p["name"] for p in before["qom"]} >= {"net0", "disk0", "nic1"}
    assert (await dst.cmd("query-status"))["return"]["status"] == "running"


async def test_restore_without_a_device_of_the_source_fails(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The destination lacks the source's device_add'ed e1000 (slot 5): QEMU's
    find_se fails on its section `0000:00:05.0/e1000`, instance 0
    [migration/savevm.c qemu_loadvm_section_start_full], then
    `load of migration failed: Invalid argument`; `failed` and exit 1."""
    mock_clock.autojump_threshold = 0
    disk = image(tmp_path)
    src, path = await saved(nursery, tmp_path, disk)
    slots = {d["slot"]: d["qdev_id"] for d in
             (await src.cmd("query-pci"))["return"][0]["devices"]}
    assert slots[5] == "nic1"
    dst = await start(nursery, tmp_path, "dst", *command_line(disk), "-incoming", "defer")
    rfd = os.open(path, os.O_RDONLY)  # libvirt's restore: the file as fd:N
    assert await dst.cmd("migrate-incoming", uri=f"fd:{rfd}") == {"return": {}}
    await dst.event("MIGRATION", "failed")
    await exited(dst)
    assert dst.exit_code == [1]
    err = capsys.readouterr().err
    assert ("qmp-emulator: Unknown savevm section or instance '0000:00:05.0/e1000' 0\n"
            "qmp-emulator: load of migration failed: Invalid argument\n") in err, err
    assert "RESUME" not in dst.names()


async def test_live_migration_to_a_destination_without_the_device(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Over a unix socket: the destination (no device_add) reports QEMU's texts and
    fails; the source, told so on the return path, sees `failed` and its guest runs
    again (migration.md §8.5: RESUME after `failed`)."""
    mock_clock.autojump_threshold = 0
    disk = image(tmp_path)
    uri = f"unix:{tmp_path / 'mig.sock'}"
    dst = await start(nursery, tmp_path, "dst", *command_line(disk), "-incoming", uri)
    src = await start(nursery, tmp_path, "src", *command_line(disk))
    assert await src.cmd("device_add", driver="e1000", id="nic1") == {"return": {}}
    await migrate(src, uri)
    await dst.event("MIGRATION", "failed")
    await src.event("MIGRATION", "failed")
    await exited(dst)
    assert dst.exit_code == [1]
    err = capsys.readouterr().err
    assert ": Unknown savevm section or instance '0000:00:05.0/e1000' 0\n" in err
    assert (await src.cmd("query-migrate"))["return"]["status"] == "failed"
    assert (await src.cmd("query-status"))["return"]["status"] == "running"


async def test_balloon_target_and_actual_travel(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    """virtio-balloon's vmstate carries the config space (num_pages, actual)
    [hw/virtio/virtio-balloon.c virtio_balloon_save_device,
    virtio_balloon_load_device]: the restored guest has given up what it had on the
    source, and query-balloon agrees on both sides."""
    mock_clock.autojump_threshold = 0
    argv = [EXEC, "-device", "virtio-balloon-pci,id=balloon0"]
    src = await start(nursery, tmp_path, "src", *argv)
    assert await src.cmd("balloon", value=64 << 20) == {"return": {}}
    while (await src.event("BALLOON_CHANGE"))["data"]["actual"] != 64 << 20:
        pass
    path = tmp_path / "saved"
    await migrate(src, f"exec:cat > {path}")
    await src.event("MIGRATION", "completed")
    dst = await start(nursery, tmp_path, "dst", *argv, "-incoming", "defer")
    assert (await dst.cmd("query-balloon"))["return"] == {"actual": 128 << 20}
    rfd = os.open(path, os.O_RDONLY)
    assert await dst.cmd("migrate-incoming", uri=f"fd:{rfd}") == {"return": {}}
    await dst.event("MIGRATION", "completed")
    assert (await dst.cmd("query-balloon"))["return"] == {"actual": 64 << 20}
    assert (await src.cmd("query-balloon"))["return"] == {"actual": 64 << 20}


def test_section_ids_follow_qemus_dev_paths() -> None:
    """vmstate_register_with_alias_id: `<pcibus_get_dev_path>/<vmsd name>` for PCI
    devices, a virtio backend under its proxy's path, the proxy itself without a
    section [hw/pci/pci.c pcibus_get_dev_path; hw/virtio/virtio-bus.c
    virtio_bus_get_dev_path]; instance ids count per idstr
    [migration/savevm.c calculate_new_instance_id]."""
    built = emulator.build_from_argv(
        ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,addr=5",
         "-device", "e1000,id=n1,addr=6.1,multifunction=on"],
        emulator.mock_clock(lambda: 0.0))
    built.start()
    ids = [(idstr, instance) for idstr, instance, _ in section_ids(built.vm.qdev)]
    assert ids[-2:] == [("0000:00:05.0/virtio-net", 0), ("0000:00:06.1/e1000", 0)]
    assert ("0000:00:02.0/vga", 0) in ids and ("0000:00:01.3/piix4_pm", 0) in ids
    assert ("isa-i8259", 1) in ids
    assert not any(idstr.endswith("virtio-net-pci") for idstr, _ in ids)
