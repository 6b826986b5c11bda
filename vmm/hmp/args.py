"""HMP's argument parser: monitor.c monitor_parse_arguments, get_str, get_expr, get_double.

`vmm` layer, pure. A command's `args_type` ("device:B,size:o", "fmt:/,addr:l", ...)
says how to read the rest of its command line; `parse_arguments` reads it the way
QEMU 2.11 does, character by character, and returns the argument dictionary the
command's function receives (monitor.c's QDict: strings, integers, booleans, a
float for `T`; a `/` format gives `count`, `format` and `size`). What QEMU prints
when the line does not fit ("unexpected end of expression", "invalid size", "eject:
block device name expected", ...) comes back as `ArgumentError`'s text; the
interpreter prints it and the `Try "help CMD"` hint after it.

The type codes: `s` a word or a quoted string (`F` a file name, `B` a block device
name: the same, with their own error text), `S` the rest of the line, `O` a QemuOpts
string of the option group named by the key, `/` a memory dump format, `i` a 32-bit
and `l` a 64-bit expression, `M` an expression in MiB, `o` a size (MiB by default),
`T` a duration in seconds, `b` on|off, `-x` a flag; `?` makes an argument optional,
and `.` after `i` takes the value only after a dot (`i /b 0x70 .0x10`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from schema.opts.cutils import Errno, byte_truncate, do_strtosz, strtod, strtoull
from vmm.hmp.state import DumpFormat

_SPACE = " \t\n\r\v\f"  # qemu_isspace in the C locale
INT64_MAX = (1 << 63) - 1


class ArgumentError(Exception):
    """The command line does not fit the command's arguments; `text` is what QEMU
    printed (possibly empty: some of QEMU's failures print nothing but the hint)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ExpressionError(ArgumentError):
    """get_expr's failure (expr_error prints the message and a newline)."""


@attrs.frozen
class ParseContext:
    """What argument parsing reads besides the text: the sticky dump format, the
    value of `$register` in an expression (None: QEMU's "unknown register"), and the
    QemuOpts reader of an `O` argument's option group (raises ArgumentError)."""

    formats: DumpFormat
    register: Callable[[str], int | None] = lambda _name: None
    opts: Callable[[str, str], dict[str, Any]] | None = None


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _first_byte(text: str) -> str:
    """The char a `%c` of QEMU prints for the first byte of `text`."""
    if not text:
        return ""
    raw = text[0].encode("utf-8", "surrogateescape")
    return raw[:1].decode("utf-8", "surrogateescape")


def _skip_space(text: str, p: int) -> int:
    while p < len(text) and text[p] in _SPACE:
        p += 1
    return p


# -- get_str --------------------------------------------------------------------------


def get_str(text: str, p: int) -> tuple[str | None, int]:
    """monitor.c get_str: a word, or a double-quoted string with \\n \\r \\\\ \\' \\"
    escapes, cut to 1023 bytes. None when there is nothing, or the string is
    unterminated or has another escape (QEMU says so on its stdout, not the monitor)."""
    p = _skip_space(text, p)
    if p >= len(text):
        return None, p
    out: list[str] = []
    if text[p] == '"':
        p += 1
        while p < len(text) and text[p] != '"':
            if text[p] == "\\":
                p += 1
                c = text[p] if p < len(text) else ""
                p += 1
                if c == "n":
                    c = "\n"
                elif c == "r":
                    c = "\r"
                elif c not in ("\\", "'", '"') or c == "":
                    return None, p
                out.append(c)
            else:
                out.append(text[p])
                p += 1
        if p >= len(text):
            return None, p
        p += 1
    else:
        start = p
        while p < len(text) and text[p] not in _SPACE:
            p += 1
        out.append(text[start:p])
    return byte_truncate("".join(out), 1023), p


def parse_cmdline(text: str) -> list[str] | None:
    """monitor.c parse_cmdline (for `help`): the words of `text`, at most 16; None
    when there are more or one fails."""
    words: list[str] = []
    p = 0
    while True:
        p = _skip_space(text, p)
        if p >= len(text):
            return words
        if len(words) >= 16:
            return None
        word, p = get_str(text, p)
        if word is None:
            return None
        words.append(word)


# -- get_expr -------------------------------------------------------------------------


class _Expr:
    """monitor.c expr_sum / expr_logic / expr_prod / expr_unary over `text` from `p`."""

    def __init__(self, text: str, p: int, register: Callable[[str], int | None]) -> None:
        self.text = text
        self.p = p
        self.register = register

    def ch(self) -> str:
        return self.text[self.p] if self.p < len(self.text) else ""

    def next(self) -> None:
        if self.p < len(self.text):
            self.p = _skip_space(self.text, self.p + 1)

    def error(self, message: str) -> ExpressionError:
        return ExpressionError(message + "\n")

    def unary(self) -> int:
        c = self.ch()
        if c == "+":
            self.next()
            return self.unary()
        if c == "-":
            self.next()
            return _int64(-self.unary())
        if c == "~":
            self.next()
            return _int64(~self.unary())
        if c == "(":
            self.next()
            n = self.sum()
            if self.ch() != ")":
                raise self.error("')' expected")
            self.next()
            return n
        if c == "'":
            self.p += 1
            if self.ch() == "":
                raise self.error("character constant expected")
            raw = self.text[self.p].encode("utf-8", "surrogateescape")
            n = raw[0] - 256 if raw[0] >= 0x80 else raw[0]  # a signed char
            self.p += 1
            if self.ch() != "'" or len(raw) > 1:  # one byte, then the quote
                raise self.error("missing terminating ' character")
            self.next()
            return n
        if c == "$":
            self.p += 1
            start = self.p
            while self.p < len(self.text) and (self.text[self.p].isascii() and (
                    self.text[self.p].isalnum() or self.text[self.p] in "_.")):
                self.p += 1
            name = byte_truncate(self.text[start:self.p], 127)
            self.p = _skip_space(self.text, self.p)
            value = self.register(name)
            if value is None:
                raise self.error("unknown register")
            return _int64(value)
        if c == "":
            raise self.error("unexpected end of expression")
        value, end, overflow = strtoull(self.text[self.p:], 0)
        if overflow:
            raise self.error("number too large")
        if end == 0:
            raise self.error(f"invalid char '{_first_byte(self.text[self.p:])}' in expression")
        self.p = _skip_space(self.text, self.p + end)
        return _int64(value)

    def prod(self) -> int:
        val = self.unary()
        while (op := self.ch()) and op in "*/%":
            self.next()
            val2 = self.unary()
            if op == "*":
                val = _int64(val * val2)
            else:
                if val2 == 0:
                    raise self.error("division by zero")
                quotient = abs(val) // abs(val2)  # C division truncates toward zero
                if (val < 0) != (val2 < 0):
                    quotient = -quotient
                val = _int64(quotient) if op == "/" else _int64(val - quotient * val2)
        return val

    def logic(self) -> int:
        val = self.prod()
        while (op := self.ch()) and op in "&|^":
            self.next()
            val2 = self.prod()
            if op == "&":
                val &= val2
            elif op == "|":
                val |= val2
            else:
                val ^= val2
            val = _int64(val)
        return val

    def sum(self) -> int:
        val = self.logic()
        while (op := self.ch()) and op in "+-":
            self.next()
            val2 = self.logic()
            val = _int64(val + val2 if op == "+" else val - val2)
        return val


def get_expr(text: str, p: int, register: Callable[[str], int | None] = lambda _n: None,
             ) -> tuple[int, int]:
    """monitor.c get_expr: a signed 64-bit value and where the expression ended."""
    expr = _Expr(text, _skip_space(text, p), register)
    return expr.sum(), expr.p


# -- numbers with units ---------------------------------------------------------------


# -- monitor_parse_arguments ------------------------------------------------------------


def _types(args_type: str) -> list[tuple[str, str]]:
    """key_get_info over the whole args_type: (key, type string) pairs."""
    out = []
    for spec in filter(None, args_type.split(",")):
        key, _, typ = spec.partition(":")
        out.append((key, typ))
    return out


def parse_arguments(name: str, args_type: str, text: str, ctx: ParseContext) -> dict[str, Any]:
    """monitor.c monitor_parse_arguments for command `name`; ArgumentError on failure."""
    args: dict[str, Any] = {}
    p = 0
    specs = _types(args_type)
    for index, (key, typ) in enumerate(specs):
        c, rest = typ[:1], typ[1:]
        if c in ("F", "B", "s"):
            p = _skip_space(text, p)
            if rest.startswith("?") and p >= len(text):
                continue
            value, p = get_str(text, p)
            if value is None:
                what = {"F": "filename", "B": "block device name"}.get(c, "string")
                raise ArgumentError(f"{name}: {what} expected\n")
            args[key] = value
        elif c == "O":
            if ctx.opts is None:
                raise ArgumentError(f"{name}: unknown type 'O'\n")
            p = _skip_space(text, p)
            if p >= len(text):
                continue
            value, p = get_str(text, p)
            if value is None:
                raise ArgumentError("")
            args.update(ctx.opts(key, value))
        elif c == "/":
            p = _parse_format(name, text, _skip_space(text, p), ctx.formats, args)
        elif c in ("i", "l", "M"):
            p = _skip_space(text, p)
            if rest.startswith("?"):
                if p >= len(text):
                    continue
            elif rest.startswith("."):
                if p < len(text) and text[p] == ".":
                    p = _skip_space(text, p + 1)
                else:
                    continue
            val, p = get_expr(text, p, ctx.register)
            if c == "i" and (val >> 32) & 0xFFFFFFFF:
                raise ArgumentError(f"'{name}' has failed: integer is for 32-bit values\n")
            if c == "M":
                if val < 0:
                    raise ArgumentError("enter a positive value\n")
                val = _int64(val << 20)
            args[key] = val
        elif c == "o":
            p = _skip_space(text, p)
            if rest.startswith("?") and p >= len(text):
                continue
            # qemu_strtosz_MiB with its end pointer
            err, size, end = do_strtosz(text[p:], default_suffix="M")
            if err is not Errno.OK or size > INT64_MAX:
                raise ArgumentError("invalid size\n")
            args[key] = size
            p += end
        elif c == "T":
            p = _skip_space(text, p)
            if rest.startswith("?") and p >= len(text):
                continue
            seconds, end, _erange = strtod(text[p:])
            if end == 0:
                raise ArgumentError("Number expected\n")
            if not math.isfinite(seconds):
                raise ArgumentError("Bad number\n")
            p += end
            if text[p + 1:p + 2] == "s" and text[p:p + 1] in ("m", "u", "n"):
                seconds /= {"m": 1e3, "u": 1e6, "n": 1e9}[text[p]]
                p += 2
            if p < len(text) and text[p] not in _SPACE:
                raise ArgumentError("Unknown unit suffix\n")
            args[key] = seconds
        elif c == "b":
            p = _skip_space(text, p)
            start = p
            while p < len(text) and "!" <= text[p] <= "~":  # qemu_isgraph
                p += 1
            word = text[start:p]
            if word not in ("on", "off"):
                raise ArgumentError("Expected 'on' or 'off'\n")
            args[key] = word == "on"
        elif c == "-":
            letter = rest[:1]
            if not letter:
                raise ArgumentError(f"{name}: unknown type '-'\n")
            before = p
            p = _skip_space(text, p)
            if p < len(text) and text[p] == "-":
                p += 1
                given = text[p:p + 1]
                if letter != given:
                    # is_valid_option: strstr of "-<given>" in the rest of args_type
                    later = ",".join(f"{k}:{t}" for k, t in specs[index + 1:])
                    if f"-{_first_byte(given)}" not in later:
                        # "%c" of the terminating NUL ends QEMU's message there
                        tail = f"{_first_byte(given)}\n" if given else ""
                        raise ArgumentError(f"{name}: unsupported option -{tail}")
                    p = before
                else:
                    p += 1
                    args[key] = True
        elif c == "S":
            p = _skip_space(text, p)
            if rest.startswith("?") and p >= len(text):
                continue
            if p >= len(text):
                raise ArgumentError(f"{name}: string expected\n")
            args[key] = text[p:]
            p = len(text)
        else:
            raise ArgumentError(f"{name}: unknown type '{c}'\n")
    p = _skip_space(text, p)
    if p < len(text):
        raise ArgumentError(f"{name}: extraneous characters at the end of line\n")
    return args


def _parse_format(name: str, text: str, p: int, formats: DumpFormat,
                  args: dict[str, Any]) -> int:
    """The `/` argument: /{count}{format}{size}, defaults from the last one given."""
    if p < len(text) and text[p] == "/":
        p += 1
        count = 1
        if p < len(text) and text[p].isascii() and text[p].isdigit():
            count = 0
            while p < len(text) and text[p].isascii() and text[p].isdigit():
                count = (count * 10 + int(text[p])) & 0xFFFFFFFF  # C int arithmetic
                p += 1
            count = count - (1 << 32) if count >> 31 else count
        size = -1
        fmt = ""
        while p < len(text):
            ch = text[p]
            if ch in "oduxic":
                fmt = ch
            elif ch in "bhwgL":
                size = {"b": 1, "h": 2, "w": 4, "g": 8, "L": 8}[ch]
            else:
                break
            p += 1
        if p < len(text) and text[p] not in _SPACE:
            raise ArgumentError(f"invalid char in format: '{_first_byte(text[p:])}'\n")
        if not fmt:
            fmt = formats.format
        if fmt != "i":
            if size < 0:
                size = formats.size
            formats.size = size
        formats.format = fmt
    else:
        count = 1
        fmt = formats.format
        size = formats.size if fmt != "i" else -1
    args["count"] = count
    args["format"] = fmt
    args["size"] = size
    return p
