"""Replay every golden transcript of tests/golden/ (see its README for the format).

Each file is one test per way it runs: `server` (the trio server in this process, on
real sockets, on trio's MockClock) and, where its header says so, `program` (the
stand-alone program). A file whose header has `xfail:` is a transcript of a real
QEMU that the emulator does not reproduce yet: it must fail (strict), so fixing the
emulator turns it into a reminder to drop the mark. `QMP_EMU_REGEN_GOLDEN=1`
rewrites the expected lines of the files that were not recorded from a real QEMU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests import golden_runner
from tests.golden_runner import Transcript


def _params(mode: str) -> list[object]:
    params: list[object] = []
    for t in golden_runner.transcripts():
        if mode not in t.modes:
            continue
        marks = []
        if "xfail" in t.header:
            marks.append(pytest.mark.xfail(strict=True, raises=golden_runner.Mismatch,
                                           reason=t.header["xfail"]))
        params.append(pytest.param(t, id=t.name, marks=marks))
    return params


@pytest.mark.parametrize("transcript", _params("server"))
def test_transcript_on_the_server(transcript: Transcript, tmp_path: Path) -> None:
    """The transcript, step by step, against vmm.server.Server on trio's MockClock.

    (Its own trio.run rather than pytest-trio's, so that a mismatch is raised as
    itself, not inside the fixture nursery's ExceptionGroup: `xfail(raises=...)`.)
    """
    clock = trio.testing.MockClock()
    actual = trio.run(golden_runner.replay_in_process, transcript, clock, tmp_path,
                      clock=clock)
    if golden_runner.regenerating() and not transcript.recorded:
        golden_runner.rewrite(transcript, actual)


@pytest.mark.parametrize("transcript", _params("program"))
def test_transcript_on_the_program(transcript: Transcript, tmp_path: Path) -> None:
    """The transcript against `python -m vmm`, as a management tool starts it."""
    golden_runner.replay_program(transcript, tmp_path)


def test_every_transcript_parses_and_says_where_it_comes_from() -> None:
    """The header names the command line and the source of the expected behaviour."""
    names = [t.name for t in golden_runner.transcripts()]
    assert names, "no transcripts in tests/golden/"
    for t in golden_runner.transcripts():
        assert t.header["source"], t.path
        assert t.steps and t.steps[0].kind == "connect", f"{t.path}: starts with '@ connect'"


def test_escapes_round_trip() -> None:
    """`<$`/`>$` lines: \\xHH, \\r, \\n, \\t, \\\\ and a visible trailing space."""
    data = bytes(range(256)) + b"(qemu) "
    text = golden_runner.escape(data)
    assert not text.endswith(" ")
    assert golden_runner.unescape(text, "here") == data


def test_masking_covers_compact_and_pretty_timestamps() -> None:
    """Timestamps become `T` as in the reference notes, in both output modes."""
    compact = b'{"timestamp": {"seconds": 1500000000, "microseconds": 5}, "event": "STOP"}\r\n'
    pretty = (b'{\r\n    "timestamp": {\r\n        "seconds": 1,\r\n'
              b'        "microseconds": 2\r\n    },\r\n    "event": "STOP"\r\n}\r\n')
    assert golden_runner.mask(compact) == b'{"timestamp": T, "event": "STOP"}\r\n'
    assert golden_runner.mask(pretty) == b'{\r\n    "timestamp": T,\r\n    "event": "STOP"\r\n}\r\n'
