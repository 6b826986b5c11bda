"""The data path through the block graph (block/io.c, block/block-backend.c) with
real images: reads compared with the bytes real QEMU tools see, writes compared
with a twin written by real `qemu-io`, `qemu-img check` clean afterwards; HMP
`qemu-io` with qemu-io-cmds.c's texts on the process's stdout (hmp.c hmp_qemu_io);
dirty bitmaps, blockstats and the write threshold following real writes; blkdebug
rules and quorum votes; throttling as deadlines on the Machine's clock.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from blockdev import drive as block_drive
from blockdev import guest_io, io
from blockdev.host import RecordingHost
from blockdev.layer import BlockLayer
from tests.conftest import VmHarness
from tests.test_hmp_help import hmp

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-utils")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def qemu_io(path: Path, *cmds: str, fmt: str | None = None) -> None:
    args = ["qemu-io"] + (["-f", fmt] if fmt else [])
    for c in cmds:
        args += ["-c", c]
    run(*args, str(path))


def layer_with(spec: str) -> BlockLayer:
    layer = BlockLayer.create(RecordingHost())
    block_drive.add_drive(layer, [tuple(kv.split("=", 1)) for kv in spec.split(",")])  # type: ignore[misc]
    return layer


def chain(tmp_path: Path) -> Path:
    """A 3-deep qcow2 chain written with patterns by real qemu-io."""
    base, mid, top = (tmp_path / n for n in ("base.qcow2", "mid.qcow2", "top.qcow2"))
    run("qemu-img", "create", "-f", "qcow2", str(base), "4M")
    qemu_io(base, "write -P 0x11 0 1M", "write -P 0x12 3M 512k")
    run("qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(mid))
    qemu_io(mid, "write -P 0x22 512k 1M", "write -z 3M 4k")
    run("qemu-img", "create", "-f", "qcow2", "-b", str(mid), "-F", "qcow2", str(top))
    qemu_io(top, "write -P 0x33 1M 4k", "write -P 0x34 1000 3000")
    return top


def as_raw(path: Path, tmp_path: Path) -> bytes:
    out = tmp_path / "converted.raw"
    run("qemu-img", "convert", "-U", "-O", "raw", str(path), str(out))
    return out.read_bytes()


def test_read_through_a_qcow2_chain(tmp_path: Path) -> None:
    """Reads fall through the backing chain where a layer does not allocate
    (qcow2_co_preadv, bdrv_co_block_status): the bytes are qemu-img convert's."""
    top = chain(tmp_path)
    expected = as_raw(top, tmp_path)
    layer = layer_with(f"file={top},if=none,id=d0,node-name=n0,read-only=on")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    assert io.blk_pread(blk, 0, 4 << 20) == expected
    assert io.blk_pread(blk, 1000, 70000) == expected[1000:71000]
    layer.close_all()


def test_writes_match_a_qemu_io_twin_and_check_clean(tmp_path: Path) -> None:
    """Writes (a partial cluster over the backing chain: copy-on-write; zero
    writes; FUA) give the image real qemu-io gives a twin: qemu-img compare says
    identical and qemu-img check finds nothing."""
    top = chain(tmp_path)
    twin = tmp_path / "twin.qcow2"
    shutil.copy(top, twin)
    layer = layer_with(f"file={top},if=none,id=d0,node-name=n0")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    io.blk_pwrite(blk, 70000, b"\xab" * 5000)
    io.blk_pwrite_zeroes(blk, 2 << 20, 65536)
    io.blk_pwrite(blk, (3 << 20) + 512, b"\x5a" * 512, fua=True)
    io.blk_flush(blk)
    layer.close_all()
    qemu_io(twin, "write -P 0xab 70000 5000", "write -z 2M 64k", "write -P 0x5a 3146240 512")
    assert run("qemu-img", "compare", str(top), str(twin)).strip() == "Images are identical."
    assert "No errors were found" in run("qemu-img", "check", str(top))


def test_raw_offset_and_size(tmp_path: Path) -> None:
    """raw-format's offset/size: the node is a window on its file."""
    img = tmp_path / "r.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    qemu_io(img, "write -P 0x44 64k 64k", fmt="raw")
    layer = layer_with(f"file.filename={img},driver=raw,offset=65536,size=131072,"
                       "if=none,id=d0,node-name=n0")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    assert io.blk_getlength(blk) == 131072
    assert io.blk_pread(blk, 0, 65536) == b"\x44" * 65536
    io.blk_pwrite(blk, 65536, b"\x01" * 512)
    with pytest.raises(io.BlockIOError) as e:
        io.blk_pread(blk, 131072 - 512, 1024)
    assert e.value.errno == errno.EIO  # blk_check_byte_request: past the end
    layer.close_all()
    assert img.read_bytes()[131072:131072 + 512] == b"\x01" * 512


def test_read_only_node_refuses_writes(tmp_path: Path) -> None:
    """bdrv_co_pwritev: a read-only node answers EPERM; the file is untouched."""
    img = tmp_path / "r.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    before = img.read_bytes()
    layer = layer_with(f"file={img},format=raw,if=none,id=d0,read-only=on")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    with pytest.raises(io.BlockIOError) as e:
        io.blk_pwrite(blk, 0, b"x" * 512)
    assert e.value.errno == errno.EPERM
    layer.close_all()
    assert img.read_bytes() == before


def test_null_co_reads_zeroes() -> None:
    """null-co: reads give zeros, writes vanish (block/null.c)."""
    layer = layer_with("driver=null-co,size=1M,if=none,id=d0")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    io.blk_pwrite(blk, 0, b"\xff" * 4096)
    assert io.blk_pread(blk, 0, 4096) == bytes(4096)


def test_bitmaps_blockstats_and_threshold_follow_writes(tmp_path: Path) -> None:
    """bdrv_aligned_pwritev: a write dirties the bitmap's granules and passes the
    before-write notifier: BLOCK_WRITE_THRESHOLD once (write-threshold.c);
    guest requests are accounted (block/accounting.c)."""
    from blockdev.bitmaps import DirtyBitmap

    img = tmp_path / "r.img"
    run("qemu-img", "create", "-f", "raw", str(img), "4M")
    layer = layer_with(f"file={img},format=raw,if=none,id=d0,node-name=n0")
    blk = layer.blk_by_name("d0")
    assert blk is not None and blk.bs is not None
    bm = DirtyBitmap(name="b", granularity=65536, size=4 << 20)
    blk.bs.bitmaps.append(bm)
    blk.bs.write_threshold = 1 << 20
    assert guest_io.submit(layer, blk, guest_io.Request("write", 65536 - 512, 1024)) == "ok"
    assert bm.count == 2 * 65536
    assert guest_io.submit(layer, blk, guest_io.Request("write", (1 << 20) - 512, 4096,
                                                       pattern=0x77)) == "ok"
    host = blk.bs.host
    assert host.events == [("BLOCK_WRITE_THRESHOLD", {
        "node-name": "n0", "amount-exceeded": 3584, "write-threshold": 1 << 20})]
    assert blk.stats.nr_ops["write"] == 2 and blk.stats.nr_bytes["write"] == 5120
    guest_io.submit(layer, blk, guest_io.Request("read", 0, 8192))
    assert blk.stats.nr_bytes["read"] == 8192
    layer.close_all()
    assert img.read_bytes()[(1 << 20) - 512:(1 << 20) + 3584] == b"\x77" * 4096


def test_bitmap_sha256_is_hbitmap_sha256() -> None:
    """hbitmap_sha256: SHA-256 of the last level, whole 64-bit little-endian words
    (an empty 1 MiB bitmap at 64 KiB: one zero word)."""
    from blockdev.bitmaps import DirtyBitmap

    bm = DirtyBitmap(name="b", granularity=65536, size=1 << 20)
    assert bm.sha256() == hashlib.sha256(bytes(8)).hexdigest()
    bm.mark(0, 1)
    bm.mark(15 * 65536, 1)
    word = (1 | 1 << 15).to_bytes(8, "little")
    assert bm.sha256() == hashlib.sha256(word).hexdigest()


def test_blkdebug_rule_makes_werror_stop(tmp_path: Path) -> None:
    """blkdebug inject-error on write_aio (raised by raw on its file child): the
    write fails with the rule's errno, and werror=stop stops the VM with
    BLOCK_IO_ERROR (block/blkdebug.c rule_check, blk_error_action)."""
    img = tmp_path / "r.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    layer = layer_with(
        f"driver=raw,file.driver=blkdebug,file.image.filename={img},"
        "file.inject-error.0.event=write_aio,file.inject-error.0.errno=28,"
        "file.inject-error.0.once=on,if=none,id=d0,node-name=n0,werror=stop")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    host = blk.bs.host  # type: ignore[union-attr]
    assert guest_io.submit(layer, blk, guest_io.Request("write", 0, 512)) == "queued"
    assert host.vmstop_requests == ["io-error"]
    assert host.events[0][0] == "BLOCK_IO_ERROR"
    assert host.events[0][1]["reason"] == "No space left on device"
    # once=on: the next write goes through
    assert guest_io.submit(layer, blk, guest_io.Request("write", 0, 512)) == "ok"


def test_quorum_votes_and_reports(tmp_path: Path) -> None:
    """quorum: a read where one child differs returns the majority and reports the
    odd child (QUORUM_REPORT_BAD, block/quorum.c quorum_vote)."""
    paths = []
    for i in range(3):
        p = tmp_path / f"q{i}.img"
        run("qemu-img", "create", "-f", "raw", str(p), "1M")
        qemu_io(p, f"write -P {0x10 if i != 2 else 0x20} 0 4k", fmt="raw")
        paths.append(p)
    spec = ("driver=quorum,vote-threshold=2,if=none,id=d0,node-name=q,"
            + ",".join(f"children.{i}.driver=raw,children.{i}.file.filename={p},"
                       f"children.{i}.node-name=c{i}" for i, p in enumerate(paths)))
    layer = layer_with(spec)
    blk = layer.blk_by_name("d0")
    assert blk is not None
    assert io.blk_pread(blk, 0, 4096) == b"\x10" * 4096
    host = blk.bs.host  # type: ignore[union-attr]
    assert host.events == [("QUORUM_REPORT_BAD", {
        "type": "read", "node-name": "c2", "sector-num": 0, "sectors-count": 8})]


def test_throttle_deadline_under_the_group_limit() -> None:
    """util/throttle.c: with bps-write=1 MiB/s a 1 MiB write fills the bucket; the
    next request must wait until the level leaks down to avg/10 (0.9 s)."""
    layer = layer_with("driver=null-co,if=none,id=d0,throttling.bps-write=1048576")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    assert io.blk_throttle_deadline(blk, "write", 4096, 0.0) == 0.0
    io.blk_pwrite(blk, 0, bytes(1 << 20))
    assert io.blk_throttle_deadline(blk, "write", 4096, 0.0) == pytest.approx(0.9)
    assert io.blk_throttle_deadline(blk, "read", 4096, 0.0) == 0.0
    assert io.blk_throttle_deadline(blk, "write", 4096, 0.9) == pytest.approx(0.9)


async def test_throttle_waits_on_the_machine_clock(autojump_clock: object) -> None:
    """blockdev.io_edge.blk_co_wait sleeps on trio's clock (MockClock here) until
    the buckets allow the request."""
    import trio

    from blockdev.io_edge import blk_co_wait

    class TrioClock:
        def now(self) -> float:
            return trio.current_time()

        def wall(self) -> float:
            return trio.current_time()

    layer = layer_with("driver=null-co,if=none,id=d0,throttling.iops-total=10")
    layer.host.clock = TrioClock()  # type: ignore[misc]
    blk = layer.blk_by_name("d0")
    assert blk is not None
    start = trio.current_time()
    for _ in range(5):
        await blk_co_wait(blk, "read", 512, trio.current_time)
        io.blk_pread(blk, 0, 512)
    # one op passes free (the bucket holds avg/10 = 1 op), then 0.1 s each
    assert trio.current_time() - start == pytest.approx(0.3)


def hmp_out(vm: VmHarness, line: str) -> tuple[str, str]:
    printed: list[str] = []
    vm.vm.machine.stdout = printed.append
    reply = hmp(vm, line)
    return reply, "".join(printed)


def test_hmp_qemu_io_write_matches_a_qemu_io_twin(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """HMP `qemu-io drive0 "write -P 0xab 0 4k"`: the report goes to stdout, the
    monitor gets nothing; the image equals a twin real qemu-io wrote
    (hmp.c hmp_qemu_io, qemu-io-cmds.c write_f/print_report)."""
    img = tmp_path / "d.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(img), "16M")
    twin = tmp_path / "twin.qcow2"
    shutil.copy(img, twin)
    vm = vm_cmdline("-machine", "none", "-nodefaults", "-S",
                    "-drive", f"file={img},if=none,id=drive0")
    reply, out = hmp_out(vm, 'qemu-io drive0 "write -P 0xab 0 4k"')
    assert reply == ""
    assert out == ("wrote 4096/4096 bytes at offset 0\n"
                   "4 KiB, 1 ops; 0.0001 sec (39.062 MiB/sec and 10000.0000 ops/sec)\n")
    reply, out = hmp_out(vm, 'qemu-io drive0 "read -P 0xab 0 4k"')
    assert out.startswith("read 4096/4096 bytes at offset 0\n")
    reply, out = hmp_out(vm, 'qemu-io drive0 "read -P 0x00 4k 4k"')
    assert "Pattern verification failed" not in out
    reply, out = hmp_out(vm, 'qemu-io drive0 "map"')
    assert out == ("64 KiB (0x10000) bytes     allocated at offset 0 bytes (0x0)\n"
                   "15.938 MiB (0xff0000) bytes not allocated at offset 64 KiB (0x10000)\n")
    vm.vm.block.close_all()
    qemu_io(twin, "write -P 0xab 0 4k")
    assert run("qemu-img", "compare", str(img), str(twin)).strip() == "Images are identical."
    assert "No errors were found" in run("qemu-img", "check", str(img))


def test_hmp_qemu_io_texts(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """qemu-io-cmds.c's own texts: usage, parse errors, a failed request, an
    unknown command (stderr), a read-only image (error_report: the monitor)."""
    img = tmp_path / "d.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    vm = vm_cmdline("-machine", "none", "-nodefaults", "-S",
                    "-drive", f"file={img},format=raw,if=none,id=d0",
                    "-drive", f"file={img},format=raw,if=none,id=ro,read-only=on,"
                    "file.locking=off")
    assert hmp_out(vm, 'qemu-io d0 "write -z -P 1 0 512"')[1] == \
        "-z and -P cannot be specified at the same time\n"
    assert hmp_out(vm, 'qemu-io d0 "write -q 0"')[1] == \
        "write [-bcCfquz] [-P pattern] off len -- writes a number of bytes at a specified offset\n"
    assert hmp_out(vm, 'qemu-io d0 "write -P 0x100 0 1"')[1] == "0x100 is not a valid pattern byte\n"
    assert hmp_out(vm, 'qemu-io d0 "read 0 1x"')[1] == (
        "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1x\n")
    assert hmp_out(vm, 'qemu-io d0 "read 1M 512"')[1] == "read failed: Input/output error\n"
    printed: list[str] = []
    vm.vm.machine.stderr = printed.append
    assert hmp_out(vm, 'qemu-io d0 "frobnicate"') == ("", "")
    assert printed == ['command "frobnicate" not found\n']
    reply, out = hmp_out(vm, 'qemu-io ro "write 0 512"')
    assert reply == "Block node is read-only\r\n" and out == ""
    reply, out = hmp_out(vm, 'qemu-io d0 "discard 0 64k"')
    assert out.startswith("discard 65536/65536 bytes at offset 0\n")


def test_guest_workload_writes_on_the_machine_clock(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """The `guest-workload` behaviour (off by default): while the VM runs, one
    64 KiB write of the pattern every request/rate seconds, sequentially, through
    the data path: blockstats count them, a dirty bitmap fills, the write threshold
    fires, and the file holds the pattern; x-debug-block-dirty-bitmap-sha256 (the
    2.11.0 persona) hashes the real bitmap. Nothing is written while paused."""
    img = tmp_path / "d.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    vm = vm_cmdline("--emu-persona=2.11.0", "-machine", "pc", "-nodefaults", "-S",
                    "-drive", f"file={img},format=raw,if=none,id=d0,node-name=n0",
                    "-device", "virtio-blk-pci,drive=d0")
    talk = vm.talk()
    talk.execute("block-dirty-bitmap-add", {"node": "n0", "name": "b", "granularity": 65536})
    talk.execute("block-set-write-threshold", {"node-name": "n0", "write-threshold": 150000})
    vm.machine.behaviours.set("guest-workload", "sequential")
    vm.machine.behaviours.set("guest-workload-rate", "655360")  # 10 writes a second
    vm.tick(1.0)
    assert vm.vm.block.blk_by_name("d0").stats.nr_ops["write"] == 0  # type: ignore[union-attr]
    talk.execute("cont")
    talk.pending()
    vm.tick(0.35)
    events = [json.loads(line.replace('"timestamp": T', '"timestamp": 0'))
              for line in talk.pending()]
    stats = talk.execute("query-blockstats")["return"][0]["stats"]
    assert (stats["wr_operations"], stats["wr_bytes"]) == (3, 3 * 65536)
    info = talk.execute("query-block")["return"][0]
    assert info["dirty-bitmaps"][0]["count"] == 3 * 65536
    assert [e["event"] for e in events] == ["BLOCK_WRITE_THRESHOLD"]
    assert events[0]["data"] == {"node-name": "n0", "amount-exceeded": 46608,
                                 "write-threshold": 150000}
    sha = talk.execute("x-debug-block-dirty-bitmap-sha256", {"node": "n0", "name": "b"})
    assert sha["return"]["sha256"] == hashlib.sha256((0b111).to_bytes(8, "little")).hexdigest()
    talk.execute("stop")
    vm.tick(5)
    assert talk.execute("query-blockstats")["return"][0]["stats"]["wr_operations"] == 3
    vm.vm.block.close_all()
    assert img.read_bytes()[:3 * 65536] == b"\xa5" * (3 * 65536)
    assert img.read_bytes()[3 * 65536:] == bytes((1 << 20) - 3 * 65536)


def test_copy_on_read_fills_the_top_image(tmp_path: Path) -> None:
    """copy-on-read=on: a read of what the backing file holds copies the whole
    clusters into the top image (block/io.c bdrv_co_do_copy_on_readv), which
    qemu-img map then shows allocated in the top layer."""
    top = chain(tmp_path)
    expected = as_raw(top, tmp_path)
    layer = layer_with(f"file={top},if=none,id=d0,node-name=n0,copy-on-read=on")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    assert io.blk_pread(blk, 600 << 10, 4096) == expected[600 << 10:(600 << 10) + 4096]
    layer.close_all()
    out = run("qemu-img", "map", "--output=json", str(top))
    top_extents = [e for e in json.loads(out) if e["depth"] == 0 and e["data"]]
    assert any(e["start"] <= 600 << 10 < e["start"] + e["length"] for e in top_extents)
    assert as_raw(top, tmp_path) == expected
    assert "No errors were found" in run("qemu-img", "check", str(top))


def test_io_throttle_limits_the_guest_workload(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """block_set_io_throttle's bps_wr limits what the guest writes on the Machine's
    clock (util/throttle.c): at 64 KiB/s the guest's ten 64 KiB writes a second
    shrink to about one a second."""
    img = tmp_path / "d.img"
    run("qemu-img", "create", "-f", "raw", str(img), "4M")
    vm = vm_cmdline("-machine", "pc", "-nodefaults",
                    "-drive", f"file={img},format=raw,if=none,id=d0",
                    "-device", "virtio-blk-pci,drive=d0,id=vd0")
    talk = vm.talk()
    limits = {"device": "d0", "bps": 0, "bps_rd": 0, "bps_wr": 65536, "iops": 0,
              "iops_rd": 0, "iops_wr": 0}
    assert talk.execute("block_set_io_throttle", limits) == {"return": {}}
    vm.machine.behaviours.set("guest-workload", "sequential")
    vm.machine.behaviours.set("guest-workload-rate", str(10 * 65536))
    vm.tick(10.0)
    ops = talk.execute("query-blockstats")["return"][0]["stats"]["wr_operations"]
    assert ops == 10  # at 0.1 s, then every 0.9-1.0 s as the bucket leaks


def test_hmp_qemu_io_on_a_node_and_aio_write_accounting(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """hmp_qemu_io on a node name uses a temporary BlockBackend; on a device,
    aio_write is accounted (qemu-io-cmds.c aio_write_f: block_acct_start/done) and
    `aio_write -i` counts an invalid write; plain write is not accounted."""
    img = tmp_path / "d.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(img), "1M")
    vm = vm_cmdline("-machine", "none", "-nodefaults",
                    "-drive", f"file={img},if=none,id=d0,node-name=n0")
    reply, out = hmp_out(vm, 'qemu-io n0 "write -P 0x61 512 512"')
    assert (reply, out.splitlines()[0]) == ("", "wrote 512/512 bytes at offset 512")
    hmp_out(vm, 'qemu-io d0 "aio_write -P 0x62 4k 4k 4k"')
    reply, out = hmp_out(vm, 'qemu-io d0 "aio_write -i 0 512"')
    assert out == "injecting invalid write request\n"
    stats = vm.talk().execute("query-blockstats")["return"][0]["stats"]
    assert (stats["wr_operations"], stats["wr_bytes"], stats["invalid_wr_operations"]) == \
        (1, 8192, 1)
    reply, out = hmp_out(vm, 'qemu-io d0 "read -P 0x62 4k 8k"')
    assert "Pattern verification failed" not in out
    reply, out = hmp_out(vm, 'qemu-io d0 "read -v 512 16"')
    assert out.splitlines()[0] == \
        "00000200:  61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61  aaaaaaaaaaaaaaaa"


def test_blkdebug_config_file_rules(tmp_path: Path) -> None:
    """blkdebug:<config>:<image>: the config file's [inject-error] groups are rules
    (block/blkdebug.c read_config); a read through raw fails with the errno, and
    rerror=report reports it (BLOCK_IO_ERROR, action report)."""
    img = tmp_path / "r.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    conf = tmp_path / "blkdebug.conf"
    conf.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "8"\n')
    layer = layer_with(f"file=blkdebug:{conf}:{img},format=raw,if=none,id=d0,node-name=n0")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    # sector 8 is byte 4096: only a request that covers it fails (rule_check)
    assert guest_io.submit(layer, blk, guest_io.Request("read", 0, 4096)) == "ok"
    assert guest_io.submit(layer, blk, guest_io.Request("read", 0, 8192)) == "error"
    events = blk.bs.host.events  # type: ignore[union-attr]
    assert events == [("BLOCK_IO_ERROR", {"device": "d0", "node-name": "n0",
                                          "operation": "read", "action": "report",
                                          "reason": "Input/output error"})]


@pytest.mark.parametrize("fmt,opts", [
    ("vmdk", []), ("vmdk", ["-o", "subformat=twoGbMaxExtentFlat"]), ("vpc", []),
    ("vdi", []), ("vhdx", []), ("qed", []), ("qcow", []),
])
def test_other_formats_read_through_the_graph(tmp_path: Path, fmt: str,
                                              opts: list[str]) -> None:
    """The read engines of the other formats, through the graph (format node ->
    file node -> the real file, vmdk's extents as children): the bytes are
    qemu-img convert's."""
    img = tmp_path / f"d.{fmt}"
    run("qemu-img", "create", "-f", fmt, *opts, str(img), "4M")
    qemu_io(img, "write -P 0x61 0 64k", "write -P 0x62 1M 4k", "write -P 0x63 3M 512",
            fmt=fmt)
    expected = as_raw(img, tmp_path)
    layer = layer_with(f"file={img},format={fmt},if=none,id=d0,read-only=on")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    size = io.blk_getlength(blk)
    assert io.blk_pread(blk, 0, size) == expected[:size]
    layer.close_all()


@pytest.mark.parametrize("discard,expected", [("ignore", b"\x61"), ("unmap", b"\x00")])
def test_discard_needs_discard_unmap(tmp_path: Path, discard: str, expected: bytes) -> None:
    """bdrv_co_pdiscard does nothing unless the node has BDRV_O_UNMAP
    (-drive discard=unmap); on a qcow2 v3 image a discarded cluster then reads as
    zeros (qcow2 discard_single_l2) and qemu-img check stays clean."""
    img = tmp_path / "d.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(img), "1M")
    qemu_io(img, "write -P 0x61 0 128k")
    layer = layer_with(f"file={img},if=none,id=d0,discard={discard}")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    io.blk_pdiscard(blk, 0, 65536)
    assert io.blk_pread(blk, 0, 512) == expected * 512
    assert io.blk_pread(blk, 65536, 512) == b"\x61" * 512
    layer.close_all()
    assert "No errors were found" in run("qemu-img", "check", str(img))


def test_quorum_failure_when_no_version_reaches_the_threshold(tmp_path: Path) -> None:
    """quorum_vote: two children that disagree with vote-threshold=2 fail the read
    with EIO and QUORUM_FAILURE naming the device (no version wins, so none is
    reported bad)."""
    paths = []
    for i in range(2):
        p = tmp_path / f"q{i}.img"
        run("qemu-img", "create", "-f", "raw", str(p), "1M")
        qemu_io(p, f"write -P {0x10 + i} 0 4k", fmt="raw")
        paths.append(p)
    spec = ("driver=quorum,vote-threshold=2,if=none,id=d0,"
            + ",".join(f"children.{i}.driver=raw,children.{i}.file.filename={p}"
                       for i, p in enumerate(paths)))
    layer = layer_with(spec)
    blk = layer.blk_by_name("d0")
    assert blk is not None
    with pytest.raises(io.BlockIOError) as e:
        io.blk_pread(blk, 512, 4096)
    assert e.value.errno == errno.EIO
    assert blk.bs.host.events == [  # type: ignore[union-attr]
        ("QUORUM_FAILURE", {"reference": "d0", "sector-num": 1, "sectors-count": 8})]
    assert io.blk_pread(blk, 8192, 512) == bytes(512)  # they agree there


def test_blkdebug_set_state_gates_rules(tmp_path: Path) -> None:
    """blkdebug rules of state 2 fire only after a set-state rule moved the node
    from its first state (1) to 2 (blkdebug_debug_event / process_rule)."""
    img = tmp_path / "r.img"
    run("qemu-img", "create", "-f", "raw", str(img), "1M")
    layer = layer_with(
        f"driver=raw,file.driver=blkdebug,file.image.filename={img},"
        "file.set-state.0.event=write_aio,file.set-state.0.state=1,"
        "file.set-state.0.new_state=2,"
        "file.inject-error.0.event=read_aio,file.inject-error.0.state=2,"
        "if=none,id=d0")
    blk = layer.blk_by_name("d0")
    assert blk is not None
    assert io.blk_pread(blk, 0, 512) == bytes(512)
    io.blk_pwrite(blk, 0, b"\x01" * 512)
    with pytest.raises(io.BlockIOError) as e:
        io.blk_pread(blk, 0, 512)
    assert e.value.errno == errno.EIO
