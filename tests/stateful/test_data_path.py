"""A Hypothesis state machine over the data path: random reads, writes, zero
writes, discards and flushes through a BlockBackend on a qcow2 node (with a backing
file written by real qemu-io, so reads fall through and partial writes copy on
write), side by side with a plain byte array. They never disagree, and
`qemu-img check` of the result is clean (issue 8's done-criterion).

The model follows QEMU 2.11: a zero write reads back zeros; a discard (the drive
has discard=unmap: without it bdrv_co_pdiscard does nothing) on a qcow2 v3 image
turns the whole clusters inside the range into zero clusters and
leaves partial clusters alone (block/io.c bdrv_co_pdiscard aligns to the
cluster size, block/qcow2-cluster.c discard_single_l2 sets QCOW_OFLAG_ZERO).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from blockdev import drive as block_drive
from blockdev import io
from blockdev.host import RecordingHost
from blockdev.layer import BlockLayer

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils")

SIZE = 1 << 20
CLUSTER = 4096

offsets = st.integers(0, SIZE - 1)
lengths = st.integers(1, 3 * CLUSTER)


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class DataPath(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="datapath."))
        base = self.dir / "base.qcow2"
        top = self.dir / "top.qcow2"
        _run("qemu-img", "create", "-f", "qcow2", str(base), str(SIZE))
        _run("qemu-io", "-c", "write -P 0x42 0 256k", "-c", "write -P 0x43 700k 100k",
             str(base))
        _run("qemu-img", "create", "-f", "qcow2", "-o", f"cluster_size={CLUSTER}",
             "-b", str(base), "-F", "qcow2", str(top))
        self.top = top
        self.model = bytearray(SIZE)
        self.model[0:256 << 10] = b"\x42" * (256 << 10)
        self.model[700 << 10:800 << 10] = b"\x43" * (100 << 10)
        self.layer = BlockLayer.create(RecordingHost())
        block_drive.add_drive(self.layer, [("file", str(top)), ("if", "none"), ("id", "d0"),
                                           ("discard", "unmap")])
        blk = self.layer.blk_by_name("d0")
        assert blk is not None
        self.blk = blk

    @rule(offset=offsets, length=lengths, pattern=st.integers(0, 255))
    def write(self, offset: int, length: int, pattern: int) -> None:
        length = min(length, SIZE - offset)
        io.blk_pwrite(self.blk, offset, bytes([pattern]) * length)
        self.model[offset:offset + length] = bytes([pattern]) * length

    @rule(offset=offsets, length=lengths, unmap=st.booleans())
    def write_zeroes(self, offset: int, length: int, unmap: bool) -> None:
        length = min(length, SIZE - offset)
        io.blk_pwrite_zeroes(self.blk, offset, length, may_unmap=unmap)
        self.model[offset:offset + length] = bytes(length)

    @rule(offset=offsets, length=lengths)
    def discard(self, offset: int, length: int) -> None:
        length = min(length, SIZE - offset)
        io.blk_pdiscard(self.blk, offset, length)
        start = -(-offset // CLUSTER) * CLUSTER
        end = (offset + length) // CLUSTER * CLUSTER
        if end > start:
            self.model[start:end] = bytes(end - start)

    @rule(offset=offsets, length=lengths)
    def read(self, offset: int, length: int) -> None:
        length = min(length, SIZE - offset)
        assert io.blk_pread(self.blk, offset, length) == bytes(self.model[offset:offset + length])

    @rule()
    def flush(self) -> None:
        io.blk_flush(self.blk)

    @invariant()
    def same_length(self) -> None:
        assert io.blk_getlength(self.blk) == SIZE

    def teardown(self) -> None:
        try:
            assert io.blk_pread(self.blk, 0, SIZE) == bytes(self.model)
            self.layer.close_all()
            check = subprocess.run(["qemu-img", "check", str(self.top)],
                                   capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
            raw = self.dir / "out.raw"
            _run("qemu-img", "convert", "-O", "raw", str(self.top), str(raw))
            assert raw.read_bytes() == bytes(self.model)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


TestDataPath = DataPath.TestCase
TestDataPath.settings = settings(
    max_examples=15, stateful_step_count=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
