"""C library conversions as QEMU 2.11's option parsing sees them.

Part of `schema.opts` (QEMU's option syntax), its lowest module: QemuOpts
(`schema.opts.qemuopts`), keyval and the keyval mode of the argument visitor
(`schema.visitor`) convert numbers with it, and the command line (`vmm.cmdline`)
parses its legacy syntaxes with it.

QEMU parses numbers with glibc's `strtoull`/`strtol`/`strtod` and its own
wrappers in util/cutils.c (`qemu_strtou64`, `qemu_strtosz`); legacy syntaxes
use `sscanf` with scansets and fixed-size buffers. The quirks matter for
which inputs are accepted and which message is printed (`-1` is a valid
"number" because `strtoull` negates; `1.5` is not a size but `1.5k` is;
`0x10` is a size of 16 bytes because `strtod` reads hex floats), so they
are reproduced here on Python strings, with byte lengths where QEMU's
buffers are byte arrays.
"""

from __future__ import annotations

import enum
import math

from schema.jsontypes import qemu_bytes

UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

_C_SPACE = " \t\n\v\f\r"
_DEC = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_DBL_MIN = 2.2250738585072014e-308


class Errno(enum.Enum):
    """The three outcomes of QEMU's checked conversions."""

    OK = 0
    EINVAL = 22
    ERANGE = 34


def byte_truncate(text: str, limit: int) -> str:
    """Keep at most `limit` bytes of `text`, as a `char buf[limit + 1]` would.

    Arguments arrive from the OS as bytes; Python decodes them with
    surrogateescape, and the same error handler round-trips a cut through
    the middle of a multi-byte character.
    """
    raw = qemu_bytes(text)
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "surrogateescape")


def byte_len(text: str) -> int:
    return len(qemu_bytes(text))


def c_isalpha(ch: str) -> bool:
    """qemu_isalpha in the C locale: ASCII letters only."""
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def c_isalnum(ch: str) -> bool:
    """qemu_isalnum in the C locale: ASCII letters and digits only."""
    return c_isalpha(ch) or ("0" <= ch <= "9")


def _digit_value(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - ord("0")
    if "a" <= ch <= "z":
        return ord(ch) - ord("a") + 10
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    return 99


def _scan_integer(text: str, base: int) -> tuple[bool, int, int, int]:
    """The part of glibc's strto*l shared by all of them.

    Returns (negative, magnitude, end, consumed_digits); `end` is 0 when no
    conversion was performed, as glibc then points endptr at the start.
    """
    i = 0
    n = len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    if base in (0, 16) and text[i : i + 2] in ("0x", "0X") and i + 2 < n and text[i + 2] in _HEX:
        i += 2
        base = 16
    elif base == 0:
        base = 8 if i < n and text[i] == "0" else 10
    start = i
    value = 0
    while i < n and _digit_value(text[i]) < base:
        value = value * base + _digit_value(text[i])
        i += 1
    if i == start:
        return False, 0, 0, 0
    return negative, value, i, i - start


def strtoull(text: str, base: int = 0) -> tuple[int, int, bool]:
    """glibc strtoull: (value, end index, overflowed)."""
    negative, magnitude, end, _ = _scan_integer(text, base)
    if magnitude > UINT64_MAX:
        return UINT64_MAX, end, True
    value = (-magnitude) & UINT64_MAX if negative else magnitude
    return value, end, False


def strtoll(text: str, base: int = 0) -> tuple[int, int, bool]:
    """glibc strtoll (and strtol, long being 64 bits on x86_64 Linux)."""
    negative, magnitude, end, _ = _scan_integer(text, base)
    value = -magnitude if negative else magnitude
    if value > INT64_MAX:
        return INT64_MAX, end, True
    if value < INT64_MIN:
        return INT64_MIN, end, True
    return value, end, False


def to_c_int(value: int) -> int:
    """Truncate to a 32-bit `int` the way an assignment does on x86_64."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def to_int64(value: int) -> int:
    """Convert to an `int64_t` the way an assignment does on x86_64 (a uint64_t of
    2^63 or more wraps negative)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value & (1 << 63) else value


def to_c_unsigned(value: int) -> int:
    return value & 0xFFFFFFFF


def _check_strtox(text: str, end: int, overflow: bool, need_full: bool) -> Errno:
    # util/cutils.c check_strtox_error: "no conversion" first, then
    # unconsumed characters, then the libc errno.
    if not overflow and end == 0:
        return Errno.EINVAL
    if need_full and end < len(text):
        return Errno.EINVAL
    return Errno.ERANGE if overflow else Errno.OK


def qemu_strtou64(text: str, base: int = 0, need_full: bool = True) -> tuple[Errno, int, int]:
    """util/cutils.c qemu_strtou64: (errno, value, end)."""
    value, end, overflow = strtoull(text, base)
    return _check_strtox(text, end, overflow, need_full), value, end


def qemu_strtoi64(text: str, base: int = 0, need_full: bool = True) -> tuple[Errno, int, int]:
    """util/cutils.c qemu_strtoi64 / qemu_strtol: (errno, value, end)."""
    value, end, overflow = strtoll(text, base)
    return _check_strtox(text, end, overflow, need_full), value, end


def strtod(text: str) -> tuple[float, int, bool]:
    """glibc strtod in the C locale: (value, end index, ERANGE set)."""
    n = len(text)
    i = 0
    while i < n and text[i] in _C_SPACE:
        i += 1
    sign = 1.0
    if i < n and text[i] in "+-":
        sign = -1.0 if text[i] == "-" else 1.0
        i += 1
    lower = text[i : i + 8].lower()
    if lower.startswith("infinity"):
        return sign * math.inf, i + 8, False
    if lower.startswith("inf"):
        return sign * math.inf, i + 3, False
    if lower.startswith("nan"):
        end = i + 3
        if end < n and text[end] == "(":
            j = end + 1
            while j < n and (text[j].isascii() and (text[j].isalnum() or text[j] == "_")):
                j += 1
            if j < n and text[j] == ")":
                end = j + 1
        return math.nan, end, False
    if text[i : i + 2] in ("0x", "0X"):
        j, mant_digits = _scan_mantissa(text, i + 2, _HEX)
        if not mant_digits:
            # "0x" without hex digits reads as the number 0, stopping at 'x'.
            return sign * 0.0, i + 1, False
        end = _scan_exponent(text, j, "pP")
        literal = text[i:end]
        if "p" not in literal.lower():
            literal += "p0"
        try:
            value = float.fromhex(literal)
        except OverflowError:
            return sign * math.inf, end, True
        return _finish_strtod(sign * value, end, literal)
    j, digits = _scan_mantissa(text, i, _DEC)
    if not digits:
        return 0.0, 0, False
    end = _scan_exponent(text, j, "eE")
    literal = text[i:end]
    return _finish_strtod(sign * float(literal), end, literal)


def _scan_mantissa(text: str, j: int, digit_chars: str) -> tuple[int, int]:
    """Digits, optionally a '.' and more digits: (end, number of digits)."""
    n = len(text)
    start = j
    while j < n and text[j] in digit_chars:
        j += 1
    digits = j - start
    if j < n and text[j] == ".":
        j += 1
        start = j
        while j < n and text[j] in digit_chars:
            j += 1
        digits += j - start
    return j, digits


def _scan_exponent(text: str, j: int, marks: str) -> int:
    """An exponent (a mark, an optional sign, decimal digits) at `j`, if complete: its
    end; else `j` (strtod then stops before the mark)."""
    n = len(text)
    if j < n and text[j] in marks:
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k] in _DEC:
            while k < n and text[k] in _DEC:
                k += 1
            return k
    return j


def _finish_strtod(value: float, end: int, literal: str) -> tuple[float, int, bool]:
    if math.isinf(value):
        return value, end, True
    nonzero_digits = any(ch not in "0.xXpPeE+-" for ch in literal.split("p")[0].split("P")[0])
    if value == 0.0 and nonzero_digits:
        return value, end, True
    if value != 0.0 and abs(value) < _DBL_MIN:
        return value, end, True
    return value, end, False


_SUFFIXES = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def do_strtosz(text: str, default_suffix: str = "B") -> tuple[Errno, int, int]:
    """util/cutils.c do_strtosz (unit 1024) with its end pointer: (errno, bytes, end).

    The value goes through a double: fractions are allowed with a suffix,
    and the overflow test compares against 2**64 (the C constant
    0xfffffffffffffc00 rounds up when converted to double). A number without a
    suffix is in `default_suffix` units (B for qemu_strtosz, M for
    qemu_strtosz_MiB).
    """
    val, end, erange = strtod(text)
    if math.isnan(val) or end == 0 or erange:
        return Errno.EINVAL, 0, end
    mul_required = math.modf(val)[0] != 0
    suffix = text[end].upper() if end < len(text) else ""
    if suffix in _SUFFIXES:
        mul = float(1024 ** _SUFFIXES[suffix])
        end += 1
    else:
        mul = float(1024 ** _SUFFIXES[default_suffix])
    if mul == 1.0 and mul_required:
        return Errno.EINVAL, 0, end
    if val * mul >= 2.0**64 or val < 0:
        return Errno.ERANGE, 0, end
    return Errno.OK, int(val * mul), end


def qemu_strtosz(text: str) -> tuple[Errno, int]:
    """util/cutils.c qemu_strtosz (default suffix B), the whole string."""
    result, value, end = do_strtosz(text)
    if end < len(text):
        return Errno.EINVAL, 0
    return result, value


def scan_set(text: str, pos: int, width: int, chars: str, negate: bool) -> tuple[str | None, int]:
    """sscanf `%<width>[chars]` or `%<width>[^chars]` at `pos` (width in bytes).

    Returns (matched text or None when nothing matched, new position).
    """
    j = pos
    used = 0
    while j < len(text):
        ch = text[j]
        if (ch in chars) == negate:
            break
        size = byte_len(ch)
        if used + size > width:
            break
        used += size
        j += 1
    if j == pos:
        return None, pos
    return text[pos:j], j


def scan_int(text: str, pos: int) -> tuple[int | None, int]:
    """sscanf `%d` at `pos`: skips white space, reads a decimal int."""
    value, end, _ = strtoll(text[pos:], 10)
    if end == 0:
        return None, pos
    return to_c_int(value), pos + end


def mktimegm(year: int, mon: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """util/cutils.c mktimegm with C's truncating division (struct tm fields)."""

    def cdiv(a: int, b: int) -> int:
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q

    y = year + 1900
    m = mon + 1
    d = mday
    if m < 3:
        m += 12
        y -= 1
    days = d + cdiv(153 * m - 457, 5) + 365 * y + cdiv(y, 4) - cdiv(y, 100) + cdiv(y, 400) - 719469
    t = (86400 * days) & UINT64_MAX
    t = t - (1 << 64) if t >> 63 else t
    return t + 3600 * hour + 60 * minute + sec
