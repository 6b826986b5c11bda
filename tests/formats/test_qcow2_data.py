"""The qcow2 data engine against images made and checked by the real qemu-img and
qemu-io: compressed clusters, internal snapshots (copy-on-write of shared L2 tables
and clusters), refcount table growth, lazy refcounts and the repair of a dirty
image, corruption, resizing, and the number of file calls of sequential I/O."""

from __future__ import annotations

import errno
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from blockdev.image.formats.base import BlockIOError, DataContext, FileNode, ImageError
from blockdev.image.formats.facts import ImageFacts
from blockdev.image.formats.qcow2_data import Qcow2Data


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    return result


def create(path: Path, size: str, *opts: str) -> str:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", ",".join(opts)]
    assert run(*args, str(path), size).returncode == 0
    return str(path)


class CountingFile:
    """A FileNode that counts the calls made to it."""

    def __init__(self, node: FileNode) -> None:
        self.node = node
        self.preads = 0
        self.pwrites = 0

    @property
    def length(self) -> int:
        return self.node.length

    def pread(self, offset: int, size: int) -> bytes:
        self.preads += 1
        return self.node.pread(offset, size)

    def pwrite(self, offset: int, data: bytes) -> None:
        self.pwrites += 1
        self.node.pwrite(offset, data)

    def truncate(self, size: int) -> None:
        self.node.truncate(size)

    def flush(self) -> None:
        pass


def engine(path: str, *, writable: bool = True, **options: Any) -> Qcow2Data:
    node = FileNode.open(path, writable=writable)
    facts = ImageFacts(filename=path, format="qcow2", virtual_size=0)
    return Qcow2Data(DataContext(file=CountingFile(node), facts=facts,
                                 writable=writable, options=options))


def as_raw(path: str, tmp: Path, *extra: str) -> bytes:
    out = tmp / "converted.raw"
    assert run("qemu-img", "convert", *extra, "-O", "raw", path, str(out)).returncode == 0
    return out.read_bytes()


def check_clean(path: str) -> None:
    result = run("qemu-img", "check", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors were found on the image." in result.stdout


def test_compressed_clusters_read(tmp_path: Path) -> None:
    """qcow2_decompress_cluster: `qemu-img convert -c` writes deflate-compressed
    clusters; reads inflate them, and block_status says data without an offset
    (qcow2_co_get_block_status)."""
    raw = tmp_path / "src.raw"
    rng = random.Random(8)
    raw.write_bytes(b"".join(bytes([i]) * 3000 + rng.randbytes(1000) for i in range(250)))
    img = str(tmp_path / "c.qcow2")
    assert run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
               "cluster_size=4096", str(raw), img).returncode == 0
    eng = engine(img, writable=False)
    data = raw.read_bytes()
    assert eng.read(0, len(data)) == data
    assert eng.read(5000, 7000) == data[5000:12000]
    status = eng.block_status(0, 4096)
    assert status.data and status.offset is None


def test_overwrite_compressed_cluster(tmp_path: Path) -> None:
    """handle_alloc overwrites a compressed cluster by a new one, COW filling the
    rest from the old contents; the compressed sectors are freed (link_l2)."""
    raw = tmp_path / "src.raw"
    raw.write_bytes(bytes(range(256)) * 256)
    img = str(tmp_path / "c.qcow2")
    assert run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw),
               img).returncode == 0
    eng = engine(img)
    eng.write(100, b"\xee" * 10)
    eng.close()
    check_clean(img)
    expect = bytearray(raw.read_bytes())
    expect[100:110] = b"\xee" * 10
    assert as_raw(img, tmp_path) == bytes(expect)


def test_internal_snapshot_is_preserved(tmp_path: Path) -> None:
    """An internal snapshot shares the L1's L2 tables and clusters (no COPIED flag):
    a write copies the L2 table (get_cluster_table -> l2_allocate) and the
    cluster, leaving the snapshot's data as it was."""
    img = create(tmp_path / "s.qcow2", "1M")
    assert run("qemu-io", "-c", "write -P 0x11 0 128k", img).returncode == 0
    assert run("qemu-img", "snapshot", "-c", "snap", img).returncode == 0
    eng = engine(img)
    eng.write(4096, b"\x22" * 512)
    eng.write_zeroes(65536, 65536, unmap=True)
    eng.close()
    check_clean(img)
    now = bytearray(b"\x11" * 131072 + bytes(1048576 - 131072))
    now[4096:4608] = b"\x22" * 512
    now[65536:131072] = bytes(65536)
    assert as_raw(img, tmp_path) == bytes(now)
    snap = as_raw(img, tmp_path, "-l", "snap")
    assert snap == b"\x11" * 131072 + bytes(1048576 - 131072)


def test_refcount_table_grows(tmp_path: Path) -> None:
    """With 512-byte clusters one refcount table cluster covers 8 MiB of file:
    writing past that grows the table (alloc_refcount_block ->
    qcow2_refcount_area) and qemu-img check agrees with every refcount."""
    img = create(tmp_path / "g.qcow2", "24M", "cluster_size=512")
    eng = engine(img)
    chunk = bytes(range(256)) * 256
    for off in range(0, 12 << 20, len(chunk)):
        eng.write(off, chunk)
    eng.close()
    assert os.path.getsize(img) > 8 << 20
    check_clean(img)
    assert run("qemu-io", "-c", "read -P 0x11 4113 1", img).returncode == 0
    assert as_raw(img, tmp_path)[:12 << 20] == chunk * ((12 << 20) // len(chunk))


def test_lazy_refcounts_dirty_bit_and_repair(tmp_path: Path) -> None:
    """With lazy refcounts the dirty bit reaches the disk before the first L2
    update (qcow2_mark_dirty) and refcounts lag; an engine dropped without close
    leaves a dirty image, which the next read-write open repairs (qcow2_do_open's
    qcow2_check with fix) and close leaves clean (qcow2_mark_clean)."""
    img = create(tmp_path / "l.qcow2", "4M", "lazy_refcounts=on")
    eng = engine(img)
    eng.write(0, b"\x33" * 200000)
    eng.flush()
    with open(img, "rb") as f:
        f.seek(72)
        assert int.from_bytes(f.read(8), "big") & 1
    dirty = run("qemu-img", "check", img)
    assert dirty.returncode != 0  # refcounts were left behind
    fixed = engine(img)
    with open(img, "rb") as f:
        f.seek(72)
        assert not int.from_bytes(f.read(8), "big") & 1
    assert fixed.read(0, 200000) == b"\x33" * 200000
    fixed.close()
    check_clean(img)


def test_clean_close_clears_dirty_bit(tmp_path: Path) -> None:
    """qcow2_inactivate writes the caches back and clears the dirty bit."""
    img = create(tmp_path / "l.qcow2", "4M", "lazy_refcounts=on")
    eng = engine(img)
    eng.write(70000, b"\x44" * 5000)
    eng.close()
    check_clean(img)
    with open(img, "rb") as f:
        f.seek(72)
        assert int.from_bytes(f.read(8), "big") == 0


def test_lazy_refcounts_need_v3(tmp_path: Path) -> None:
    """qcow2_update_options_prepare: the lazy-refcounts option on a v2 image."""
    img = create(tmp_path / "v2.qcow2", "1M", "compat=0.10")
    with pytest.raises(ImageError, match=r"^Lazy refcounts require a qcow2 image with at "
                       r"least qemu 1.1 compatibility level$"):
        engine(img, **{"lazy-refcounts": True})


def test_zero_flag_in_v2_image_is_corruption(tmp_path: Path) -> None:
    """qcow2_get_cluster_offset: a zero cluster entry in a pre-v3 image is
    corruption (EIO); qcow2_signal_corruption then leaves the node without a
    driver, so the next request is -ENOMEDIUM (block/io.c)."""
    img = create(tmp_path / "v2.qcow2", "1M", "compat=0.10")
    assert run("qemu-io", "-c", "write -P 0x55 0 64k", img).returncode == 0
    eng = engine(img, writable=False)
    l2 = eng.l1[0] & 0x00FFFFFFFFFFFE00
    with open(img, "r+b") as f:
        f.seek(l2)
        entry = int.from_bytes(f.read(8), "big")
        f.seek(l2)
        f.write((entry | 1).to_bytes(8, "big"))
    eng = engine(img, writable=False)
    with pytest.raises(BlockIOError) as exc:
        eng.read(0, 512)
    assert exc.value.errno == errno.EIO
    assert eng.corruption is not None
    assert eng.corruption.startswith("Zero cluster entry found in pre-v3 image")
    with pytest.raises(BlockIOError) as exc:
        eng.read(65536, 512)
    assert exc.value.errno == errno.ENOMEDIUM


def test_zero_writes_make_zero_clusters_on_v3_only(tmp_path: Path) -> None:
    """qcow2_cluster_zeroize refuses v2 (-ENOTSUP, block/io.c writes zeros):
    `qemu-img map` shows zero clusters on v3, data on v2."""
    for compat, kind in (("1.1", "zero"), ("0.10", "data")):
        img = create(tmp_path / f"z{compat}.qcow2", "1M", f"compat={compat}")
        eng = engine(img)
        eng.write_zeroes(0, 65536, unmap=False)
        status = eng.block_status(0, 65536)
        assert (status.zero, status.data) == (kind == "zero", kind == "data")
        eng.close()
        check_clean(img)
        mapped = run("qemu-img", "map", "--output=json", img).stdout
        assert '"zero": true' in mapped if kind == "zero" else '"data": true' in mapped


def test_truncate_grows(tmp_path: Path) -> None:
    """qcow2_truncate: the L1 table grows to the exact size; written data stays."""
    img = create(tmp_path / "t.qcow2", "1M", "cluster_size=4096")
    eng = engine(img)
    eng.write(0, b"\x66" * 4096)
    eng.truncate(64 << 20)
    eng.write((64 << 20) - 4096, b"\x77" * 4096)
    eng.close()
    check_clean(img)
    info = run("qemu-img", "info", img).stdout
    assert "(67108864 bytes)" in info
    assert run("qemu-io", "-c", f"read -P 0x77 {(64 << 20) - 4096} 4k", img).returncode == 0


def test_truncate_refusals(tmp_path: Path) -> None:
    """qcow2_truncate's texts."""
    img = create(tmp_path / "t.qcow2", "1M")
    assert run("qemu-img", "snapshot", "-c", "s", img).returncode == 0
    eng = engine(img)
    with pytest.raises(BlockIOError, match=r"^The new size must be a multiple of 512$"):
        eng.truncate(1000)
    with pytest.raises(BlockIOError, match=r"^Can't resize an image which has snapshots$"):
        eng.truncate(2 << 20)


def test_sequential_io_is_a_few_file_calls(tmp_path: Path) -> None:
    """A contiguous cluster run is one pread/pwrite (qcow2_co_preadv /
    qcow2_co_pwritev work on runs), not one per sector or cluster."""
    img = create(tmp_path / "p.qcow2", "64M")
    eng = engine(img)
    file = eng.file
    assert isinstance(file, CountingFile)
    data = random.Random(4).randbytes(4 << 20)
    before = file.pwrites
    eng.write(0, data)
    assert file.pwrites - before <= 4
    eng.flush()
    before = file.preads
    assert eng.read(0, len(data)) == data
    assert file.preads - before <= 2
    eng.close()
    check_clean(img)


def test_read_only_engine_refuses_writes(tmp_path: Path) -> None:
    """bdrv_co_pwritev on a read-only node: -EPERM."""
    img = create(tmp_path / "r.qcow2", "1M")
    eng = engine(img, writable=False)
    for call in (lambda: eng.write(0, b"x"), lambda: eng.discard(0, 65536),
                 lambda: eng.write_zeroes(0, 512, unmap=False)):
        with pytest.raises(BlockIOError) as exc:
            call()
        assert exc.value.errno == errno.EPERM
