"""Block migration (`migrate` with blk/inc): the disks' contents go through the stream.

QEMU 2.11 migration/block.c: every writable node bdrv_next returns is copied by its
device name, a bulk phase then the chunks written since (an anonymous dirty bitmap);
with `inc` only what the top image allocates [mig_save_device_bulk]; the
destination writes into its own images [block_load]. query-migrate's `disk`
[migration/migration.c populate_disk_info] exists while the device list does.
Two emulators in one trio run over a real unix socket (MockClock); the images are
compared with `qemu-img compare` once both have closed them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing

from migration.block import BlockLoad, BlockSave
from migration.host import MemoryDisk, MemoryDisks
from migration.stream import LoadError
from tests.test_migration_live import Side, pair

MiB = 1 << 20


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


def qemu_io(image: Path, *commands: str, fmt: str = "qcow2") -> None:
    argv = ["qemu-io", "-f", fmt]
    for c in commands:
        argv += ["-c", c]
    subprocess.run([*argv, str(image)], check=True, capture_output=True)


def drive(image: Path, ident: str = "d0") -> tuple[str, ...]:
    return ("-drive", f"file={image},format=qcow2,if=none,id={ident}",
            "-device", f"virtio-blk-pci,drive={ident},id=v{ident}")


async def quit_both(src: Side, dst: Side) -> None:
    for side in (src, dst):
        side.built.vm.close()


async def block_pair(nursery: trio.Nursery, tmp_path: Path, src_image: Path,
                     dst_image: Path) -> tuple[Side, Side, str]:
    uri = f"unix:{tmp_path / 'mig.sock'}"
    src, dst = await pair(nursery, tmp_path, uri, src_args=drive(src_image),
                          dst_args=drive(dst_image))
    assert (await src.cmd("migrate-set-parameters", **{"max-bandwidth": 64 * MiB})) \
        == {"return": {}}
    return src, dst, uri


async def test_blk_copies_the_disk(tmp_path: Path, nursery: trio.Nursery,
                                   mock_clock: trio.testing.MockClock) -> None:
    """migrate blk: the destination's empty image ends equal to the source's
    (qemu-img compare); query-migrate shows `disk` while active (total = the
    disk's size) and not once completed; the destination prints block_load's
    progress lines."""
    mock_clock.autojump_threshold = 0
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        assert qemu_img("create", "-q", "-f", "qcow2", str(image), "8M").returncode == 0
    qemu_io(src_image, "write -P 0x11 0 64k", "write -P 0x22 3M 1M", "write -P 0x33 7680k 8k")
    src, dst, uri = await block_pair(nursery, tmp_path, src_image, dst_image)
    printed: list[str] = []
    dst.vm.machine.stdout = printed.append
    await src.client.send({"execute": "migrate", "arguments": {"uri": uri, "blk": True}})
    assert (await src.client.line())["data"] == {"status": "setup"}
    assert await src.client.line() == {"return": {}}
    await src.event("MIGRATION", "active")
    info = (await src.cmd("query-migrate"))["return"]
    assert info["status"] == "active"
    assert info["disk"]["total"] == 8 * MiB
    assert info["disk"]["transferred"] + info["disk"]["remaining"] == 8 * MiB
    caps = {c["capability"]: c["state"]
            for c in (await src.cmd("query-migrate-capabilities"))["return"]}
    assert caps["block"] is True
    await src.event("MIGRATION", "completed")
    await dst.event("MIGRATION", "completed")
    done = (await src.cmd("query-migrate"))["return"]
    assert "disk" not in done
    caps = {c["capability"]: c["state"]
            for c in (await src.cmd("query-migrate-capabilities"))["return"]}
    assert caps["block"] is False  # migrate_fd_cleanup turns blk's capability off
    assert printed[0] == "Receiving block device images\n"
    assert printed[-1] == "Completed 100 %\n"
    assert (await dst.cmd("query-status"))["return"]["status"] == "running"
    await quit_both(src, dst)
    cmp = qemu_img("compare", str(src_image), str(dst_image))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


async def test_writes_during_migration_reach_the_destination(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    """A write made while the bulk phase runs (HMP qemu-io on the source) lands in
    the dirty bitmap and is sent in the dirty phase or at completion
    [mig_save_device_dirty, block_save_complete]; during the migration query-block
    shows the anonymous bitmap of 1 MiB granularity (bdrv_create_dirty_bitmap)."""
    mock_clock.autojump_threshold = 0
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        assert qemu_img("create", "-q", "-f", "qcow2", str(image), "16M").returncode == 0
    qemu_io(src_image, "write -P 0x5a 0 16M")
    src, dst, uri = await block_pair(nursery, tmp_path, src_image, dst_image)
    assert (await src.cmd("migrate-set-parameters", **{"max-bandwidth": 8 * MiB})) \
        == {"return": {}}
    await migrate_blk(src, uri)
    await src.event("MIGRATION", "active")
    [blk] = [b for b in (await src.cmd("query-block"))["return"] if b["device"] == "d0"]
    [bitmap] = blk["dirty-bitmaps"]
    assert "name" not in bitmap and bitmap["granularity"] == MiB
    reply = await src.cmd("human-monitor-command",
                          **{"command-line": 'qemu-io d0 "write -P 0x77 512k 4k"'})
    assert "error" not in reply
    await src.event("MIGRATION", "completed")
    await dst.event("MIGRATION", "completed")
    [blk] = [b for b in (await src.cmd("query-block"))["return"] if b["device"] == "d0"]
    assert blk.get("dirty-bitmaps", []) == []
    await quit_both(src, dst)
    cmp = qemu_img("compare", str(src_image), str(dst_image))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    read = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x77 512k 4k",
                           str(dst_image)], capture_output=True, text=True)
    assert "Pattern verification failed" not in read.stdout and read.returncode == 0


async def migrate_blk(src: Side, uri: str, **flags: bool) -> None:
    await src.client.send({"execute": "migrate",
                           "arguments": {"uri": uri, "blk": True, **flags}})
    setup = await src.client.line()
    src.events.append(setup)
    assert await src.client.line() == {"return": {}}


async def test_inc_sends_only_the_top_image(tmp_path: Path, nursery: trio.Nursery,
                                            mock_clock: trio.testing.MockClock) -> None:
    """migrate inc over a shared backing file: only the chunks the top image
    allocates are sent (bdrv_is_allocated in mig_save_device_bulk); the
    destination's overlay then holds them, and reads the rest from the base."""
    mock_clock.autojump_threshold = 0
    base = tmp_path / "base.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(base), "32M").returncode == 0
    qemu_io(base, "write -P 0x01 0 32M")
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        assert qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                        str(image)).returncode == 0
    qemu_io(src_image, "write -P 0x42 5M 4k")
    src, dst, uri = await block_pair(nursery, tmp_path, src_image, dst_image)
    await migrate_blk(src, uri, inc=True)
    await src.event("MIGRATION", "completed")
    await dst.event("MIGRATION", "completed")
    await quit_both(src, dst)
    cmp = qemu_img("compare", str(src_image), str(dst_image))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    mapped = qemu_img("map", "--output=json", str(dst_image)).stdout
    top = [e for e in json.loads(mapped) if e["depth"] == 0 and e["data"]]
    assert [(e["start"], e["length"]) for e in top] == [(5 * MiB, MiB)]


async def test_unknown_device_on_the_destination(tmp_path: Path, nursery: trio.Nursery,
                                                 mock_clock: trio.testing.MockClock) -> None:
    """A destination without the source's drive: block_load prints `Error unknown
    block device NAME` (fprintf, no program name), then savevm's `error while
    loading state section id 1(block)` and `load of migration failed: Invalid
    argument`; it fails and exits 1, the source sees `failed`."""
    mock_clock.autojump_threshold = 0
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        assert qemu_img("create", "-q", "-f", "qcow2", str(image), "2M").returncode == 0
    uri = f"unix:{tmp_path / 'mig.sock'}"
    src, dst = await pair(nursery, tmp_path, uri, src_args=drive(src_image),
                          dst_args=drive(dst_image, "other"))
    errors: list[str] = []
    reports: list[str] = []
    dst.vm.machine.stderr = errors.append
    dst.vm.migration.report = reports.append
    await migrate_blk(src, uri)
    await src.event("MIGRATION", "failed")
    await dst.event("MIGRATION", "failed")
    assert errors == ["Error unknown block device d0\n"]
    assert reports == ["error while loading state section id 1(block)",
                       "load of migration failed: Invalid argument"]
    assert (await src.cmd("query-status"))["return"]["status"] == "running"


def test_model_bulk_dirty_and_stats() -> None:
    """The bulk phase's `transferred` is the sectors before each device's cursor
    (completed_sectors), so it lags one chunk behind; pending keeps the migration
    iterating during the bulk [block_save_pending]; a write after its chunk went
    is sent again at completion; the destination writes all-zero clusters as
    zero writes."""
    disk = MemoryDisk(name="d0", data=bytearray(b"\x07" * (3 * MiB)))
    save = BlockSave.setup(MemoryDisks(disks=[disk]), incremental=False, zero_blocks=False)
    assert disk.blocked == "block device is in use by migration"
    assert save.pending(0) == MiB
    out, spent = save.iterate(2 * (MiB + 20))
    assert len([p for p in out if len(p) > 8]) == 2 and spent > 2 * MiB
    assert save.stats()["transferred"] == MiB and save.stats()["total"] == 3 * MiB
    disk.write(100, b"\x09" * 10)
    out2, _ = save.iterate(10 * MiB)
    assert save.bulk_completed
    final, _ = save.complete()
    assert disk.dirty is None and disk.blocked is None and not save.devices
    target = MemoryDisk(name="d0", data=bytearray(3 * MiB))
    printed: list[str] = []
    load = BlockLoad(disks=MemoryDisks(disks=[target]), stdout=printed.append,
                     stderr=printed.append, report=printed.append)
    for payload in out + out2 + final:
        load.load(payload)
    assert target.data == disk.data and target.active
    assert printed[0] == "Receiving block device images\n"
    small = BlockLoad(disks=MemoryDisks(disks=[MemoryDisk(name="d0", data=bytearray(MiB))]),
                      stdout=printed.append, stderr=printed.append, report=printed.append)
    try:
        small.load(out[-1] if len(out[-1]) > 8 else out[-2])
    except LoadError as err:
        assert err.lines == ("error while loading state section id 1(block)",
                             "load of migration failed: Input/output error")
    else:
        raise AssertionError("a chunk past the destination's end loaded")


def test_hmp_migrate_b_info_migrate_and_the_op_blocker() -> None:
    """HMP `migrate -d -b` turns the block capability on for the run (hmp.c
    hmp_migrate, migration.c qmp_migrate); `info migrate` prints the disk lines
    (hmp_info_migrate); the devices are op-blocked while migrating
    (init_blk_migration's bdrv_op_block_all: block_resize says `Device 'd0' is in
    use`), and given back by the cleanup after a cancel (block_migration_cleanup)."""
    from migration.host import RecordingChannel
    from tests.test_migration_commands import Vm

    vm = Vm("-M", "pc", "-m", "16", "-drive", "driver=null-co,size=3145728,if=none,id=d0")

    def hmp(line: str) -> str:
        return str(vm.ok("human-monitor-command", **{"command-line": line}))

    assert hmp("migrate -d -b tcp:127.0.0.1:4444") == ""
    vm.edge.outgoing[-1][2].connected(RecordingChannel())
    info = hmp("info migrate")
    assert "block: on" in info
    assert info.endswith("transferred disk: 0 kbytes\r\nremaining disk: 3072 kbytes\r\n"
                         "total disk: 3072 kbytes\r\n")
    assert vm.error("block_resize", device="d0", size=4 << 20) == "Device 'd0' is in use"
    assert vm.ok("migrate_cancel") == {}
    vm.sync.tick(0.01)
    assert vm.ok("query-migrate") == {"status": "cancelled"}
    # the blocker is gone: null-co's own answer comes through
    assert vm.error("block_resize", device="d0", size=4 << 20) == \
        "Image format driver does not support resize"
    caps = {c["capability"]: c["state"] for c in vm.ok("query-migrate-capabilities")}
    assert caps["block"] is False


def test_a_read_error_fails_the_migration() -> None:
    """A source disk that cannot be read: block_save_iterate returns flush_blks's
    error, the stream's error is set and migration_thread ends `failed` (no
    error-desc); the bitmap and the blocker go (block_migration_cleanup), the
    stream is closed."""
    from migration.commands import Migration
    from migration.host import RecordingChannel, RecordingEdge, RecordingHost
    from migration.ram import DIRTY_RATE, RAM_USED

    class Broken(MemoryDisk):
        def pread(self, offset: int, length: int) -> bytes:
            raise OSError(5, "Input/output error")

    disk = Broken(name="d0", data=bytearray(2 * MiB))
    h = RecordingHost()
    h.behaviours.values.update({DIRTY_RATE.name: 0.0, RAM_USED.name: 0.01})
    edge = RecordingEdge()
    m = Migration(host=h, edge=edge, disks=lambda: MemoryDisks(disks=[disk]))
    m.settings.capabilities["events"] = True
    m.migrate("unix:/x", blk=True)
    channel = RecordingChannel()
    edge.outgoing[0][2].connected(channel)
    assert disk.blocked is not None and disk.dirty is not None
    while m.query_migrate()["status"] == "active":
        h.clock.value = max(h.clock.value, m.next_deadline())
        m.run_due(h.clock.value)
    assert m.query_migrate() == {"status": "failed"}
    assert h.events[-1] == ("MIGRATION", {"status": "failed"})
    assert channel.aborted and disk.blocked is None and disk.dirty is None
    assert h.runstate.state == "running"


async def test_guest_workload_during_migration_reaches_the_destination(
        tmp_path: Path, nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    """A guest that writes its disk while the bulk phase runs (the guest-workload
    behaviour): its writes behind the bulk cursor are sent by the dirty phase and
    the completion [mig_save_device_dirty, block_save_complete], so the
    destination's image equals the source's once the source has stopped."""
    mock_clock.autojump_threshold = 0
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        assert qemu_img("create", "-q", "-f", "qcow2", str(image), "8M").returncode == 0
    uri = f"unix:{tmp_path / 'mig.sock'}"
    src, dst = await pair(nursery, tmp_path, uri, src_args=(
        *drive(src_image), "--emu-behaviour=guest-workload=sequential",
        "--emu-behaviour=guest-workload-rate=1048576",
        "--emu-behaviour=guest-workload-pattern=60"), dst_args=drive(dst_image))
    assert (await src.cmd("migrate-set-parameters", **{"max-bandwidth": 4 * MiB})) \
        == {"return": {}}
    await migrate_blk(src, uri)
    await src.event("MIGRATION", "completed")
    await dst.event("MIGRATION", "completed")
    await quit_both(src, dst)
    written = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 60 0 1M",
                              str(src_image)], capture_output=True, text=True)
    assert "Pattern verification failed" not in written.stdout  # the guest wrote
    cmp = qemu_img("compare", str(src_image), str(dst_image))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


async def test_destination_disk_of_another_size(tmp_path: Path, nursery: trio.Nursery,
                                                mock_clock: trio.testing.MockClock) -> None:
    """2.11's block_load checks no size: it writes each chunk at the source's offset
    into the destination's device, so a smaller destination fails with the write's
    EIO past its end (blk_check_byte_request): `error while loading state section
    id 1(block)`, `load of migration failed: Input/output error`, exit 1; the
    source sees `failed`."""
    mock_clock.autojump_threshold = 0
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(src_image), "4M").returncode == 0
    assert qemu_img("create", "-q", "-f", "qcow2", str(dst_image), "2M").returncode == 0
    src, dst, uri = await block_pair(nursery, tmp_path, src_image, dst_image)
    reports: list[str] = []
    dst.vm.migration.report = reports.append
    await migrate_blk(src, uri)
    await dst.event("MIGRATION", "failed")
    await src.event("MIGRATION", "failed")
    await trio.testing.wait_all_tasks_blocked()
    assert dst.exit_code == [1]
    assert reports == ["error while loading state section id 1(block)",
                       "load of migration failed: Input/output error"]
    assert (await src.cmd("query-status"))["return"]["status"] == "running"


def test_a_disk_without_sectors_fails_the_reads() -> None:
    """init_blk_migration meets a node with no sectors: it returns before any
    device gets its BlockBackend (no op blockers), so the bulk phase's first read
    fails (ENOMEDIUM) and with it the migration."""
    empty = MemoryDisk(name="d0", data=bytearray())
    other = MemoryDisk(name="d1", data=bytearray(MiB))
    disks = MemoryDisks(disks=[other, empty])
    save = BlockSave.setup(disks, incremental=False, zero_blocks=False)
    assert other.blocked is None and [d.name for d in save.devices] == ["d1"]
    with pytest.raises(OSError):
        save.iterate(4 * MiB)


async def test_block_migration_to_a_file_and_back(tmp_path: Path, nursery: trio.Nursery,
                                                  mock_clock: trio.testing.MockClock) -> None:
    """Save with blk through exec: into a file, restore from it into an empty
    image: the disk's contents travel in the saved stream like any section's
    (block_save_* write them, block_load reads them back)."""
    from tests.test_migration_live import start

    mock_clock.autojump_threshold = 0
    src_image, dst_image = tmp_path / "src.qcow2", tmp_path / "dst.qcow2"
    for image in (src_image, dst_image):
        assert qemu_img("create", "-q", "-f", "qcow2", str(image), "2M").returncode == 0
    qemu_io(src_image, "write -P 0x2b 1M 256k")
    src = await start(nursery, tmp_path, "src", "--emu-allow-exec-migration",
                      *drive(src_image))
    path = tmp_path / "saved"
    await migrate_blk(src, f"exec:cat > {path}")
    await src.event("MIGRATION", "completed")
    src.built.vm.close()
    dst = await start(nursery, tmp_path, "dst", "--emu-allow-exec-migration",
                      "-incoming", "defer", *drive(dst_image))
    dst.vm.machine.stdout = lambda text: None
    assert await dst.cmd("migrate-incoming", uri=f"exec:cat {path}") == {"return": {}}
    await dst.event("MIGRATION", "completed")
    assert (await dst.cmd("query-status"))["return"]["status"] == "running"
    dst.built.vm.close()
    cmp = qemu_img("compare", str(src_image), str(dst_image))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def test_hmp_migrate_i_is_incremental_for_the_run() -> None:
    """HMP `migrate -d -i`: qmp_migrate turns on `block` and `block-incremental`
    for this migration (migrate_set_block_incremental); the cleanup turns both off
    again (block_cleanup_parameters)."""
    from migration.host import RecordingChannel
    from tests.test_migration_commands import Vm

    vm = Vm("-M", "pc", "-m", "16", "-drive", "driver=null-co,size=1048576,if=none,id=d0")
    assert vm.ok("human-monitor-command", **{"command-line": "migrate -d -i tcp:1.2.3.4:5"}) \
        == ""
    assert vm.ok("query-migrate-parameters")["block-incremental"] is True
    vm.edge.outgoing[-1][2].connected(RecordingChannel())
    assert vm.ok("query-migrate")["disk"]["total"] == 1 << 20
    assert vm.ok("migrate_cancel") == {}
    vm.sync.tick(0.01)
    assert vm.ok("query-migrate-parameters")["block-incremental"] is False
    caps = {c["capability"]: c["state"] for c in vm.ok("query-migrate-capabilities")}
    assert caps["block"] is False


def test_hmp_migrate_b_on_a_terminal_prints_the_progress() -> None:
    """HMP `migrate -b` without -d on a terminal monitor: the monitor is suspended and
    hmp_migrate_status_cb prints "Completed N %\\r" from query-migrate's disk each
    second; when the migration ends (here cancelled) a block migration's line is
    closed with a newline and the monitor resumes with its prompt (hmp.c)."""
    from migration.host import RecordingChannel
    from tests.test_migration_commands import Vm
    from vmm.qmp.monitor import HmpMonitor

    vm = Vm("-M", "pc", "-m", "16", "-drive", "driver=null-co,size=3145728,if=none,id=d0",
            "--emu-behaviour=migration-dirty-rate=0")
    mon = HmpMonitor(vm.sync.vm.hub, name="mon0")
    mon.connect()
    mon.feed(b"migrate -b tcp:127.0.0.1:4444\r")
    mon.take_output()
    vm.edge.outgoing[-1][2].connected(RecordingChannel())
    vm.sync.tick(0.001)
    disk = vm.ok("query-migrate")["disk"]
    out = mon.take_output()
    assert out.startswith(b"Completed ") and out.endswith(b" %\r") and b"(qemu)" not in out
    assert int(out.split()[1]) == disk["transferred"] * 100 // disk["total"]
    assert vm.ok("migrate_cancel") == {}
    vm.sync.tick(1.5)
    out = mon.take_output()
    assert out.endswith(b"\r\n(qemu) ") and mon.suspended == 0
