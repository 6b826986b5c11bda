"""Block options as QEMU 2.11 carries them: flat QDicts, QemuOpts absorption, json: names.

Pure helper of the `blockdev` layer, used by the graph (`blockdev.graph`), the drivers
(`blockdev.drivers`) and the command-line adapters (`blockdev.drive`).

QEMU hands a node's options around as a *flattened* QDict: nested objects become
dotted keys (`file.filename`), lists become numbered keys (`children.0.driver`)
[qobject/qdict.c qdict_flatten]. Values keep their type when they come from
`blockdev-add`/`-blockdev` (QAPI-typed) and are strings when they come from `-drive`
(QemuOpts). Drivers pick their options with `absorb` (qemu_opts_absorb_qdict, from
`schema.opts`, re-exported here with its `OptDesc` parameter type), which turns
whatever type it finds back into a string and parses it by the option's declared type
[util/qemu-option.c], so both sources are checked with the same messages. A QDict
iterates in hash order; where the first leftover or first bad key decides an error
message, `schema.qobject.qdict_order` reproduces that order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from schema.opts.qemuopts import AbsorbedOpts as Opts
from schema.opts.qemuopts import OptParam as OptDesc
from schema.opts.qemuopts import absorb, parse_bool, qobject_as_opt_string
from schema.qobject import qdict_order

Flat = dict[str, Any]

__all__ = [
    "Flat",
    "OptDesc",
    "Opts",
    "absorb",
    "extract_subqdict",
    "first_key",
    "flatten",
    "get_bool",
    "get_str",
    "parse_bool",
    "qobject_as_opt_string",
    "set_default",
    "unflatten",
]


def flatten(nested: Mapping[str, Any], prefix: str = "") -> Flat:
    """qdict_flatten: nested objects and lists become dotted keys, in insertion order.

    An empty nested object or list disappears, as in QEMU (it has no leaves). The walk
    keeps its own stack: a `json:` file name may nest 1024 levels deep.
    """
    out: Flat = {}
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = [(prefix, iter(nested.items()))]
    while stack:
        outer, members = stack[-1]
        for key, value in members:
            full = f"{outer}{key}"
            if isinstance(value, Mapping):
                stack.append((full + ".", iter(value.items())))
                break
            if isinstance(value, list):
                stack.append((full + ".", iter([(str(i), v) for i, v in enumerate(value)])))
                break
            out[full] = value
        else:
            stack.pop()
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
