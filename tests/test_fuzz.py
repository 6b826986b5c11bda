"""The fuzzing harness that ships with the emulator (fuzz/), run for a bounded time.

Issue 13: users fuzz the emulator, so the harness that found its defects is part of
the repository (`qmp-emulator-fuzz`, README says how to run a long campaign), and a
short run of it is part of the suite, against the installed program under
--emu-strict: byte-level inputs (garbage, truncation, nesting around the 1 024
limit, invalid UTF-8, NUL), schema-drawn command sequences with valid and near-miss
arguments, clients that vanish at every stage, and mutated command lines.
"""

from __future__ import annotations

import random
from pathlib import Path

from fuzz.harness import KINDS, run
from fuzz.inputs import byte_inputs, cap_sizes, sandbox_paths
from tests.test_program import program


def test_bounded_fuzzing_run_finds_nothing(schema, tmp_path: Path) -> None:
    """No crash, hang, traceback, schema violation or internal error, for every kind
    of input (the seed is fixed, so a failure replays with `--seed 20261204`)."""
    counts = run(program(), schema, inputs=4000, seconds=120, kinds=KINDS,
                 seed=20261204, timeout=30, sandbox=tmp_path)
    assert counts.failures() == 0, counts.report()
    assert all(counts.inputs[kind] > 0 for kind in KINDS), counts.report()
    assert counts.peak_rss_kib > 0


def test_inputs_stay_in_the_sandbox() -> None:
    """Every absolute path an input names moves under the sandbox, and the sizes of
    commands that write what they are told are capped, so a run writes nothing
    outside its directory and fills no disk (pmemsave of 2^63 bytes would, as in QEMU)."""
    assert sandbox_paths({"a": ["/etc/x", "file:/y", "rel"]}, "/box") == {
        "a": ["/box/etc/x", "file:/box/y", "rel"]}
    assert cap_sizes("pmemsave", {"val": 0, "size": 2**63, "filename": "f"})["size"] < 2**20
    assert cap_sizes("query-status", {"size": 2**63}) == {"size": 2**63}


def test_byte_inputs_cover_the_reader_limits() -> None:
    """The byte-level generator reaches nesting past 1 024 and the 64 MiB token."""
    gen = byte_inputs(random.Random(1), huge_every=100)
    sample = [next(gen) for _ in range(300)]
    assert any(len(s) >= 64 << 20 for s in sample)
    assert any(s.count(b"[") > 1024 or s.count(b"{") > 1024 for s in sample)
