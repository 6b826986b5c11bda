"""Block options as QEMU 2.11 carries them: flat QDicts, QemuOpts absorption, json: names.

Pure helper of the `blockdev` layer, used by the graph (`blockdev.graph`), the drivers
(`blockdev.drivers`) and the command-line adapters (`blockdev.drive`).

QEMU hands a node's options around as a *flattened* QDict: nested objects become
dotted keys (`file.filename`), lists become numbered keys (`children.0.driver`)
[qobject/qdict.c qdict_flatten]. Values keep their type when they come from
`blockdev-add`/`-blockdev` (QAPI-typed) and are strings when they come from `-drive`
(QemuOpts). Drivers pick their options with `qemu_opts_absorb_qdict`, which turns
whatever type it finds back into a string and parses it by the option's declared type
[util/qemu-option.c], so both sources are checked with the same messages. A QDict
iterates in hash order; where the first leftover or first bad key decides an error
message, `schema.qdict.qdict_order` reproduces that order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from schema.errors import QERR_INVALID_PARAMETER_VALUE, GenericError
from schema.qdict import qdict_order
from schema.qjson import format_qnum_double

Flat = dict[str, Any]

UINT64_MAX = 2**64 - 1


def flatten(nested: Mapping[str, Any], prefix: str = "") -> Flat:
    """qdict_flatten: nested objects and lists become dotted keys, in insertion order.

    An empty nested object or list disappears, as in QEMU (it has no leaves).
    """
    out: Flat = {}
    for key, value in nested.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, full + "."))
        elif isinstance(value, list):
            out.update(flatten({str(i): v for i, v in enumerate(value)}, full + "."))
        else:
            out[full] = value
    return out


def extract_subqdict(options: Flat, prefix: str) -> Flat:
    """qdict_extract_subqdict: move every `prefix`-keyed entry into a new dict
    (keys without the prefix)."""
    sub: Flat = {}
    for key in [k for k in options if k.startswith(prefix)]:
        sub[key[len(prefix):]] = options.pop(key)
    return sub


def first_key(options: Mapping[str, Any]) -> str:
    """qdict_first: the key QEMU's iteration meets first."""
    return qdict_order(list(options))[0]


def set_default(options: Flat, key: str, value: Any) -> None:
    """qdict_set_default_str / qdict_copy_default."""
    if key not in options:
        options[key] = value


# --- qemu_strtou64 / qemu_strtosz ------------------------------------------------------


def _strtoull(text: str, base: int) -> tuple[int, str] | None:
    """strtoull with base 0 or 10: leading blanks, an optional sign, the prefix; returns
    (value, rest) or None if no digits. A '-' negates modulo 2**64, as C does."""
    s = text.lstrip(" \t\n\r\f\v")
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if base == 0:
        if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
            base, s = 16, s[2:]
        elif s[:1] == "0":
            base = 8
        else:
            base = 10
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    n = 0
    while n < len(s) and s[n].lower() in digits:
        n += 1
    if n == 0:
        return None
    value = int(s[:n], base)
    if value > UINT64_MAX:
        value = -1  # ERANGE marker
    elif neg:
        value = (-value) % 2**64
    return value, s[n:]


def parse_uint(name: str, value: str) -> int:
    """parse_option_number (qemu_strtou64, base 0)."""
    parsed = _strtoull(value, 0)
    if parsed is None or parsed[1] != "":
        raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, "a number"))
    if parsed[0] < 0:
        raise GenericError(f"Value '{value}' is too large for parameter '{name}'")
    return parsed[0]


_SUFFIX_SHIFT = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}

_STRTOD = re.compile(
    r"[ \t\n\r\f\v]*[+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
    r"(?:[pP][+-]?[0-9]+)?|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])")


def _strtod(text: str) -> tuple[float, str] | None:
    """C strtod: the longest numeric prefix, or None if there is none."""
    m = _STRTOD.match(text)
    if m is None:
        return None
    body = m.group(0).strip()
    try:
        if "x" in body.lower() and "inf" not in body.lower():
            sign = -1.0 if body.startswith("-") else 1.0
            val = sign * float.fromhex(body.lstrip("+-"))
        else:
            val = float(body)
    except (ValueError, OverflowError):
        return None
    return val, text[m.end():]


def strtosz(value: str) -> int | None:
    """util/cutils.c do_strtosz with default suffix 'B' and unit 1024: the size,
    -1 for ERANGE, None for EINVAL."""
    parsed = _strtod(value)
    if parsed is None or math.isnan(parsed[0]) or math.isinf(parsed[0]):
        return None
    val, rest = parsed
    mul_required = val != math.floor(val)
    shift = 0
    if rest and rest[0].lower() in _SUFFIX_SHIFT:
        shift = _SUFFIX_SHIFT[rest[0].lower()]
        rest = rest[1:]
    if rest:
        return None
    if shift == 0 and mul_required:
        return None
    result = val * (1 << shift)
    if result >= 0xFFFFFFFFFFFFFC00 or val < 0:
        return -1
    return int(result)


def parse_size(name: str, value: str) -> int:
    """parse_option_size."""
    size = strtosz(value)
    if size is None:
        raise GenericError(QERR_INVALID_PARAMETER_VALUE %
                           (name, "a non-negative number below 2^64"))
    if size < 0:
        raise GenericError(f"Value '{value}' is out of range for parameter '{name}'")
    return size


def parse_bool(name: str, value: str) -> bool:
    """parse_option_bool: only "on" and "off"."""
    if value == "on":
        return True
    if value == "off":
        return False
    raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, "'on' or 'off'"))


def qobject_as_opt_string(value: Any) -> str | None:
    """qemu_opts_from_qdict_1: QString as is, QNum printed, QBool as on/off; other
    types (null, nested) are not copied."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_qnum_double(value)  # qnum_to_string
    return None


# --- QemuOpts ----------------------------------------------------------------------------


@attrs.frozen
class OptDesc:
    """One QemuOptDesc: name and type (string, bool, number, size)."""

    name: str
    type: str = "string"


@attrs.define
class Opts:
    """A QemuOpts that absorbed some options: typed values by name."""

    values: dict[str, Any] = attrs.Factory(dict)
    raw: dict[str, str] = attrs.Factory(dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values


def absorb(descs: Iterable[OptDesc], options: Flat) -> Opts:
    """qemu_opts_absorb_qdict: take every option `descs` knows out of `options`
    (walking them in QDict order) and parse it by type; the first bad value raises."""
    by_name = {d.name: d for d in descs}
    opts = Opts()
    for key in qdict_order(list(options)):
        desc = by_name.get(key)
        if desc is None or key == "id":
            continue
        text = qobject_as_opt_string(options[key])
        if text is None:
            del options[key]
            continue
        if desc.type == "bool":
            opts.values[key] = parse_bool(key, text)
        elif desc.type == "number":
            opts.values[key] = parse_uint(key, text)
        elif desc.type == "size":
            opts.values[key] = parse_size(key, text)
        else:
            opts.values[key] = text
        opts.raw[key] = text
        del options[key]
    return opts


def get_str(options: Mapping[str, Any], key: str) -> str | None:
    """qdict_get_try_str: the value if it is a string, else None."""
    value = options.get(key)
    return value if isinstance(value, str) else None


def get_bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    """qdict_get_try_bool: the value if it is a bool, else the default."""
    value = options.get(key)
    return value if isinstance(value, bool) else default


# --- json: file names ------------------------------------------------------------------


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The nested form of a flat dict (numbered keys stay object members, as
    bs->full_open_options keeps them)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[parts[-1]] = value
    return out
