"""ImageIO.open_data (blockdev/image/io.py), the hand-out of a format node's data
engine: it follows open_format's header checks, keeps the engine in
FormatImage.data, and turns an engine's open error into the GenericError QEMU's
bdrv_open reports (raw_read_options' texts; the luks passphrase check of
qcrypto_block_luks_open)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from blockdev.image.formats.base import FileNode
from blockdev.image.io import FormatImage, ImageIO
from schema.errors import GenericError


def _open(io: ImageIO, path: str, fmt: str, **extra: object) -> tuple[FormatImage, FileNode]:
    node = FileNode.open(path, writable=True)
    image = io.open_format(node, fmt, filename=path, read_only=False, probed=False,
                           inactive=False, extra=dict(extra), open_extent=lambda p: None)
    return image, node


def test_qcow2_engine_through_image_io(tmp_path: Path) -> None:
    """A written byte is there after close, as `qemu-io` reads it."""
    img = str(tmp_path / "a.qcow2")
    assert subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "1M"],
                          check=False).returncode == 0
    io = ImageIO(system_emulator=True)
    image, node = _open(io, img, "qcow2")
    try:
        eng = io.open_data(image, node, writable=True)
        assert image.data is eng
        eng.write(1 << 16, b"\x5a" * 4096)
        eng.close()
    finally:
        node.close()
    result = subprocess.run(["qemu-io", "-c", "read -P 0x5a 64k 4k", img],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "Pattern verification failed" not in result.stdout


def test_engine_open_errors_are_generic_errors(tmp_path: Path) -> None:
    """raw's offset past the file: raw_read_options' text, as a GenericError."""
    img = tmp_path / "a.raw"
    img.write_bytes(bytes(4096))
    io = ImageIO(system_emulator=True)
    image, node = _open(io, str(img), "raw", offset=8192)
    try:
        with pytest.raises(GenericError) as exc:
            io.open_data(image, node, writable=True)
        assert exc.value.desc == ("Offset (8192) cannot be greater than size of the "
                                  "containing file (4096)")
    finally:
        node.close()
