"""The read engines of vmdk, vpc, vdi, qed, qcow and vhdx against images made by the
real `qemu-img create`/`convert` and written by the real `qemu-io`: every byte the
engine reads (with the backing fall-through the request path does) equals
`qemu-img convert -O raw` of the same image [block/vmdk.c, vpc.c, vdi.c, qed.c,
qcow.c, vhdx.c: their preadv and get_block_status]. Writes to these formats fail
as block/io.c fails a driver request the emulator does not implement (ENOTSUP),
or with EPERM on a read-only node."""

from __future__ import annotations

import errno
import random
import subprocess
from pathlib import Path

import pytest

from blockdev.image.formats import registry
from blockdev.image.formats.base import (
    BlockIOError,
    DataContext,
    FileNode,
    FormatData,
    OpenContext,
)
from tests.formats.chain import chain_read

SIZE = 5 << 20
WRITES = (
    "write -P 0x11 0 4k",
    "write -P 0x22 65024 131072",  # crosses cluster and block boundaries
    "write -P 0x33 1M 512",
    "write -P 0x44 3M 1M",
    f"write -P 0x55 {SIZE - 1024} 1024",
)


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, check=False)


def open_engine(path: str, fmt: str, files: list[FileNode], *,
                writable: bool = False) -> FormatData:
    node = FileNode.open(path, writable=writable)
    files.append(node)

    def open_extent(name: str) -> FileNode:
        extent = FileNode.open(name, writable=writable)
        files.append(extent)
        return extent

    driver = registry.BY_NAME[fmt]
    assert driver.open is not None and driver.open_data is not None
    facts = driver.open(OpenContext(file=node, filename=path, read_only=not writable,
                                    open_extent=open_extent))
    return driver.open_data(DataContext(file=node, facts=facts, writable=writable,
                                        open_extent=open_extent))


def as_raw(path: str, tmp: Path) -> bytes:
    out = tmp / "expected.raw"
    result = run("qemu-img", "convert", "-O", "raw", path, str(out))
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def written(path: str, fmt: str, *extra: str) -> str:
    assert run("qemu-img", "create", "-q", "-f", fmt, *extra, path, str(SIZE)).returncode == 0
    cmds = [arg for w in WRITES for arg in ("-c", w)]
    result = run("qemu-io", "-t", "unsafe", "-f", fmt, *cmds, path)
    assert result.returncode == 0, result.stderr
    return path


def compare(eng: FormatData, expected: bytes, backing: FormatData | None = None) -> None:
    assert chain_read(eng, backing, 0, len(expected)) == expected
    rng = random.Random(3)
    for _ in range(40):
        off = rng.randrange(len(expected))
        ln = rng.randrange(1, min(300000, len(expected) - off) + 1)
        assert chain_read(eng, backing, off, ln) == expected[off:off + ln]


CASES = (
    ("vmdk", ()),
    ("vmdk", ("-o", "subformat=monolithicFlat")),
    ("vmdk", ("-o", "subformat=twoGbMaxExtentSparse")),
    ("vmdk", ("-o", "subformat=twoGbMaxExtentFlat")),
    ("vmdk", ("-o", "zeroed_grain=on")),
    ("vpc", ()),
    ("vpc", ("-o", "subformat=fixed")),
    ("vdi", ()),
    ("vdi", ("-o", "static=on")),
    ("qed", ()),
    ("qcow", ()),
    ("vhdx", ()),
    ("vhdx", ("-o", "block_size=1M")),
)


@pytest.mark.parametrize(("fmt", "opts"), CASES)
def test_reads_match_qemu_img_convert(tmp_path: Path, fmt: str, opts: tuple[str, ...]) -> None:
    """The bytes of an image written by qemu-io, read through the engine."""
    img = written(str(tmp_path / f"img.{fmt}"), fmt, *opts)
    files: list[FileNode] = []
    try:
        eng = open_engine(img, fmt, files)
        # (vpc: the size is the footer geometry's, and the fixed image's footer
        # follows the data; Debian's qemu-img reports another size than 2.11.)
        assert eng.length == SIZE or fmt == "vpc"
        compare(eng, as_raw(img, tmp_path)[:eng.length])
    finally:
        for f in files:
            f.close()


def test_vmdk_zeroed_grains_read_as_zero(tmp_path: Path) -> None:
    """A zeroed grain (GTE 1, `zeroed_grain=on`) is BDRV_BLOCK_ZERO
    (vmdk_co_get_block_status: VMDK_ZEROED)."""
    img = written(str(tmp_path / "z.vmdk"), "vmdk", "-o", "zeroed_grain=on")
    assert run("qemu-io", "-t", "unsafe", "-f", "vmdk", "-c", "write -z 0 64k", img).returncode == 0
    files: list[FileNode] = []
    try:
        eng = open_engine(img, "vmdk", files)
        status = eng.block_status(0, 65536)
        assert status.zero and not status.data
        compare(eng, as_raw(img, tmp_path))
    finally:
        for f in files:
            f.close()


def test_stream_optimized_vmdk(tmp_path: Path) -> None:
    """streamOptimized vmdk made by qemu-img convert: grains behind grain markers,
    zlib streams (vmdk_read_extent)."""
    rng = random.Random(5)
    src = tmp_path / "src.raw"
    src.write_bytes(b"".join(bytes([i]) * 60000 + rng.randbytes(5536) for i in range(40)))
    img = str(tmp_path / "c.vmdk")
    result = run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                 "subformat=streamOptimized", str(src), img)
    assert result.returncode == 0, result.stderr
    files: list[FileNode] = []
    try:
        eng = open_engine(img, "vmdk", files)
        compare(eng, src.read_bytes())
    finally:
        for f in files:
            f.close()


def test_compressed_qcow(tmp_path: Path) -> None:
    """Compressed qcow clusters written by `qemu-io -c 'write -c ...'`: raw
    deflate, the size in the entry's top bits (qcow.c decompress_cluster); they
    are data without a host offset (qcow_co_get_block_status)."""
    img = str(tmp_path / "c.qcow")
    assert run("qemu-img", "create", "-q", "-f", "qcow", img, "1M").returncode == 0
    cmds = ["-c", "write -c -P 0x31 0 4k", "-c", "write -c -P 0x32 8k 4k",
            "-c", "write -P 0x33 12k 4k"]
    assert run("qemu-io", "-t", "unsafe", "-f", "qcow", *cmds, img).returncode == 0
    files: list[FileNode] = []
    try:
        eng = open_engine(img, "qcow", files)
        status = eng.block_status(0, 4096)
        assert status.data and status.offset is None
        compare(eng, as_raw(img, tmp_path))
    finally:
        for f in files:
            f.close()


@pytest.mark.parametrize(("fmt", "base_fmt"), (("qed", "raw"), ("qcow", "raw"),
                                               ("vmdk", "vmdk")))
def test_backing_fall_through(tmp_path: Path, fmt: str, base_fmt: str) -> None:
    """Unallocated clusters of an overlay are the backing file's (block_status says
    unallocated; the request path reads the backing node)."""
    base = str(tmp_path / f"base.{base_fmt}")
    assert run("qemu-img", "create", "-q", "-f", base_fmt, base, str(SIZE)).returncode == 0
    assert run("qemu-io", "-t", "unsafe", "-f", base_fmt, "-c", "write -P 0x77 0 5M", base).returncode == 0
    top = str(tmp_path / f"top.{fmt}")
    result = run("qemu-img", "create", "-q", "-f", fmt, "-b", base, "-F", base_fmt, top,
                 str(SIZE))
    assert result.returncode == 0, result.stderr
    assert run("qemu-io", "-t", "unsafe", "-f", fmt, "-c", "write -P 0x11 1M 64k", top).returncode == 0
    files: list[FileNode] = []
    try:
        eng = open_engine(top, fmt, files)
        base_eng = open_engine(base, base_fmt, files)
        compare(eng, as_raw(top, tmp_path), backing=base_eng)
    finally:
        for f in files:
            f.close()


@pytest.mark.parametrize("fmt", ("vmdk", "vpc", "vdi", "qed", "qcow", "vhdx"))
def test_writes_are_refused_in_qemus_errno(tmp_path: Path, fmt: str) -> None:
    """A write the emulator does not implement fails with -ENOTSUP (block/io.c for a
    driver without the operation); on a read-only node with -EPERM first
    (bdrv_co_pwritev's BDRV_O_RDONLY check). Discard on a driver without one is
    no error (bdrv_co_pdiscard returns 0)."""
    img = written(str(tmp_path / f"w.{fmt}"), fmt)
    files: list[FileNode] = []
    try:
        rw = open_engine(img, fmt, files, writable=True)
        with pytest.raises(BlockIOError) as exc:
            rw.write(0, b"x" * 512)
        assert exc.value.errno == errno.ENOTSUP
        with pytest.raises(BlockIOError) as exc:
            rw.write_zeroes(0, 512, unmap=False)
        assert exc.value.errno == errno.ENOTSUP
        rw.discard(0, 65536)
        ro = open_engine(img, fmt, files)
        with pytest.raises(BlockIOError) as exc:
            ro.write(0, b"x")
        assert exc.value.errno == errno.EPERM
    finally:
        for f in files:
            f.close()
