"""util/cutils.c do_strtosz, the one size parser: qemu_strtosz (bytes by default, the
whole string) and qemu_strtosz_MiB (MiB by default, with an end pointer, as HMP's
'o' arguments read it)."""

from __future__ import annotations

import pytest

from schema.opts.cutils import Errno, do_strtosz, qemu_strtosz


@pytest.mark.parametrize(("text", "suffix", "expected"), [
    ("32", "M", (Errno.OK, 32 << 20, 2)),
    ("32", "B", (Errno.OK, 32, 2)),
    ("1.5k rest", "M", (Errno.OK, 1536, 4)),     # the end points after the suffix
    ("1.5", "B", (Errno.EINVAL, 0, 3)),          # a fraction needs a suffix
    ("1.5", "M", (Errno.OK, 3 << 19, 3)),        # ... unless the default is one
    ("16E", "B", (Errno.ERANGE, 0, 3)),
    ("-1", "M", (Errno.ERANGE, 0, 2)),
    ("x", "M", (Errno.EINVAL, 0, 0)),
])
def test_do_strtosz(text: str, suffix: str, expected: tuple[Errno, int, int]) -> None:
    assert do_strtosz(text, default_suffix=suffix) == expected


def test_qemu_strtosz_takes_the_whole_string() -> None:
    assert qemu_strtosz("4k") == (Errno.OK, 4096)
    assert qemu_strtosz("4kx") == (Errno.EINVAL, 0)
