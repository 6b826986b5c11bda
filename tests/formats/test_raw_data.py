"""The raw format's data engine (blockdev/image/formats/raw.py RawData) against
QEMU 2.11's block/raw-format.c: offset/size, the ENOSPC past an explicit size, and
the EPERM for a write that would change a probed image's format."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from blockdev.image.formats import registry
from blockdev.image.formats.base import BlockIOError, DataContext, FileNode, ImageError
from blockdev.image.formats.facts import ImageFacts
from blockdev.image.formats.raw import RawData


def _engine(path: Path, *, writable: bool = True, probed: bool = False,
            **options: object) -> RawData:
    file = FileNode.open(str(path), writable=writable)
    facts = ImageFacts(filename=str(path), format="raw", virtual_size=file.length)
    return RawData(DataContext(file=file, facts=facts, writable=writable,
                               options=options, probed=probed),
                   lambda buf: (found.name if (found := registry.probe(buf, "")) else None))


def test_offset_and_size_shift_and_bound(tmp_path: Path) -> None:
    """raw_co_preadv/raw_co_pwritev add `offset`; past an explicit `size` a write
    fails with -ENOSPC and writes nothing (block/raw-format.c)."""
    img = tmp_path / "a.raw"
    img.write_bytes(bytes(range(256)) * 16)
    eng = _engine(img, offset=512, size=1024)
    assert eng.length == 1024
    assert eng.read(0, 4) == bytes(range(4))
    eng.write(0, b"\xaa" * 512)
    assert img.read_bytes()[512:1024] == b"\xaa" * 512
    with pytest.raises(BlockIOError) as exc:
        eng.write(1000, b"x" * 100)
    assert exc.value.errno == errno.ENOSPC
    assert eng.block_status(8, 16).offset == 520
    assert eng.block_status(8, 16).raw


def test_option_errors(tmp_path: Path) -> None:
    """raw_read_options' texts."""
    img = tmp_path / "a.raw"
    img.write_bytes(bytes(4096))
    with pytest.raises(ImageError, match=r"^Offset \(8192\) cannot be greater than size "
                       r"of the containing file \(4096\)$"):
        _engine(img, offset=8192)
    with pytest.raises(ImageError, match=r"^Specified size is not multiple of 512$"):
        _engine(img, size=100)


def test_probed_raw_refuses_format_change(tmp_path: Path) -> None:
    """raw_co_pwritev: with a probed format, a first-sector write that probes as
    another driver is -EPERM."""
    img = tmp_path / "a.raw"
    img.write_bytes(bytes(65536))
    eng = _engine(img, probed=True)
    header = subprocess.run(["qemu-img", "create", "-f", "qcow2", str(tmp_path / "q"), "1M"],
                            check=True, capture_output=True)
    assert header.returncode == 0
    qcow2_head = (tmp_path / "q").read_bytes()[:512]
    with pytest.raises(BlockIOError) as exc:
        eng.write(0, qcow2_head)
    assert exc.value.errno == errno.EPERM
    eng.write(0, b"plain data")
    assert img.read_bytes()[:10] == b"plain data"


def test_read_only_write_is_eperm(tmp_path: Path) -> None:
    """bdrv_co_pwritev on a read-only node: -EPERM (block/io.c)."""
    img = tmp_path / "a.raw"
    img.write_bytes(bytes(4096))
    eng = _engine(img, writable=False)
    with pytest.raises(BlockIOError) as exc:
        eng.write(0, b"x")
    assert exc.value.errno == errno.EPERM
