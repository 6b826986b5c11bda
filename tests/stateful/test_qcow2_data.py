"""A state machine drives random reads, writes, zero writes, discards, flushes and
reopens through the qcow2 data engine (blockdev/image/formats/qcow2_data.py) and a
plain bytearray side by side; they never disagree, and `qemu-img check` of the
result finds no errors and no leaks [issue 8 "Done when"; block/qcow2.c
qcow2_co_preadv / qcow2_co_pwritev / qcow2_co_pwrite_zeroes / qcow2_co_pdiscard].

Images are made by the real `qemu-img create` (v2 and v3, several cluster sizes and
refcount widths, lazy refcounts), some over a backing file written by the real
`qemu-io -c 'write -P ...'`; the engine's reads fall through to the backing file
where block_status says unallocated, as the request path does. Discard follows
qcow2_co_pdiscard: whole clusters only (and the partial cluster that ends the
image); they then read as zeros on v3 and from the backing file on v2
(discard_single_l2).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from blockdev.image.formats.base import DataContext, FileNode
from blockdev.image.formats.facts import ImageFacts
from blockdev.image.formats.qcow2_data import Qcow2Data
from tests.formats.chain import chain_read

VARIANTS = (
    "compat=1.1,cluster_size=65536",
    "compat=1.1,cluster_size=512",
    "compat=0.10,cluster_size=4096",
    "compat=1.1,cluster_size=1024,lazy_refcounts=on",
    "compat=1.1,cluster_size=512,refcount_bits=1",
    "compat=1.1,cluster_size=2048,refcount_bits=64",
)
SIZE = 3 * 65536 + 1536  # not a whole number of clusters: the image-end cases
BACKING_SIZE = 2 * 65536 + 512  # shorter than the overlay: zeros past its end


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _engine(path: str, *, writable: bool, backing: Qcow2Data | None) -> tuple[Qcow2Data, FileNode]:
    file = FileNode.open(path, writable=writable)
    facts = ImageFacts(filename=path, format="qcow2", virtual_size=0)
    eng = Qcow2Data(DataContext(file=file, facts=facts, writable=writable))
    if backing is not None:
        eng.set_backing(lambda off, n: chain_read(backing, None, off, n))
    return eng, file


class Qcow2DataMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="qcow2-sm-"))
        self.path = str(self.dir / "top.qcow2")
        self.model = bytearray(SIZE)
        self.backing_model = bytes(SIZE)
        self.backing: Qcow2Data | None = None
        self.backing_file: FileNode | None = None
        self.eng: Qcow2Data | None = None
        self.file: FileNode | None = None

    @initialize(variant=st.sampled_from(VARIANTS), with_backing=st.booleans(),
                patterns=st.lists(st.tuples(st.integers(0, BACKING_SIZE - 1),
                                            st.integers(1, 40000), st.integers(1, 255)),
                                  max_size=3))
    def create(self, variant: str, with_backing: bool,
               patterns: list[tuple[int, int, int]]) -> None:
        self.v2 = "compat=0.10" in variant
        args = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", variant]
        if with_backing:
            base = str(self.dir / "base.qcow2")
            assert _run("qemu-img", "create", "-q", "-f", "qcow2", base,
                        str(BACKING_SIZE)).returncode == 0
            bmodel = bytearray(SIZE)
            cmds: list[str] = []
            for off, ln, pat in patterns:
                ln = min(ln, BACKING_SIZE - off)
                cmds += ["-c", f"write -P {pat:#x} {off} {ln}"]
                bmodel[off:off + ln] = bytes([pat]) * ln
            if cmds:
                assert _run("qemu-io", "-f", "qcow2", *cmds, base).returncode == 0
            self.backing_model = bytes(bmodel)
            self.model[:] = bmodel
            args += ["-b", base, "-F", "qcow2"]
            self.backing, self.backing_file = _engine(base, writable=False, backing=None)
        result = _run(*args, self.path, str(SIZE))
        assert result.returncode == 0, result.stderr
        self.eng, self.file = _engine(self.path, writable=True, backing=self.backing)

    def _span(self, data: st.DataObject) -> tuple[int, int]:
        off = data.draw(st.integers(0, SIZE - 1))
        ln = data.draw(st.integers(1, min(SIZE - off, 140000)))
        return off, ln

    @precondition(lambda self: self.eng is not None)
    @rule(data=st.data(), pattern=st.integers(0, 255))
    def write(self, data: st.DataObject, pattern: int) -> None:
        assert self.eng is not None
        off, ln = self._span(data)
        self.eng.write(off, bytes([pattern]) * ln)
        self.model[off:off + ln] = bytes([pattern]) * ln

    @precondition(lambda self: self.eng is not None)
    @rule(data=st.data(), unmap=st.booleans())
    def write_zeroes(self, data: st.DataObject, unmap: bool) -> None:
        assert self.eng is not None
        off, ln = self._span(data)
        self.eng.write_zeroes(off, ln, unmap=unmap)
        self.model[off:off + ln] = bytes(ln)

    @precondition(lambda self: self.eng is not None)
    @rule(data=st.data())
    def discard(self, data: st.DataObject) -> None:
        assert self.eng is not None
        off, ln = self._span(data)
        self.eng.discard(off, ln)
        cs = self.eng.cluster_size
        start = -(-off // cs) * cs
        stop = (off + ln) // cs * cs
        if off + ln == SIZE:
            stop = SIZE
        if stop > start:
            fill = self.backing_model[start:stop] if self.v2 else bytes(stop - start)
            self.model[start:stop] = fill

    @precondition(lambda self: self.eng is not None)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        assert self.eng is not None
        off, ln = self._span(data)
        assert chain_read(self.eng, self.backing, off, ln) == bytes(self.model[off:off + ln])

    @precondition(lambda self: self.eng is not None)
    @rule()
    def flush(self) -> None:
        assert self.eng is not None
        self.eng.flush()

    @precondition(lambda self: self.eng is not None)
    @rule()
    def reopen(self) -> None:
        """qcow2_close then qcow2_open: what was written is in the file."""
        assert self.eng is not None and self.file is not None
        self.eng.close()
        self.file.close()
        self.eng, self.file = _engine(self.path, writable=True, backing=self.backing)

    @invariant()
    def dirty_bit_only_with_lazy_refcounts(self) -> None:
        """qcow2_mark_dirty is called only with lazy refcounts (link_l2)."""
        if self.eng is not None and not self.eng.lazy_refcounts:
            assert not self.eng.incompatible & 1

    def teardown(self) -> None:
        try:
            if self.eng is not None and self.file is not None:
                assert chain_read(self.eng, self.backing, 0, SIZE) == bytes(self.model)
                self.eng.close()
                self.file.close()
                check = _run("qemu-img", "check", self.path)
                assert check.returncode == 0, check.stdout + check.stderr
                assert "No errors were found on the image." in check.stdout
                raw = str(self.dir / "out.raw")
                assert _run("qemu-img", "convert", "-O", "raw", self.path, raw).returncode == 0
                assert Path(raw).read_bytes() == bytes(self.model)
        finally:
            if self.backing_file is not None:
                self.backing_file.close()
            shutil.rmtree(self.dir, ignore_errors=True)


Qcow2DataMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestQcow2Data = Qcow2DataMachine.TestCase
