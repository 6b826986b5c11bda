"""The QOM trees of the pc and q35 boards, with and without -nodefaults, against a
real QEMU 2.11.0's.

The oracle is tests/data/qom-trees/*.json.gz: the catalogue's recordings of
`-machine pc|q35 -m 128 -display none -S [-nodefaults]` (copied from the steering
repository's `shared/data/qemu-2.11.0-catalogue/board-*/qom-tree.json`; see
tests/data/qom-trees/README.md): every object reached through child<> properties,
its qom-list, and the qom-get of every other property. Normalisation: qom-list is
compared as a set (QEMU lists properties in GLib hash-table order); `rtc-time` and
the RTC's `date` are the host's time; only the /machine subtree is compared (the
chardevs and consoles belong to other subsystems). The emulator builds the tree from
the board's configuration (devices/board.py); only per-type values come from the
recordings (schema/data/qom-templates.json.gz).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import SyncVm

DATA = Path(__file__).resolve().parent / "data" / "qom-trees"
RUN_TO_RUN = ("rtc-time", "date")


def recorded(board: str) -> dict[str, Any]:
    with gzip.open(DATA / f"{board}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)["nodes"]  # type: ignore[no-any-return]


def machine(board: str) -> SyncVm:
    kind, variant = board.split("-")
    argv = ["-machine", kind, "-m", "128", "-display", "none", "-S"]
    return SyncVm([*argv, "-nodefaults"] if variant == "nodefaults" else argv)


@pytest.mark.parametrize("board", ["pc-nodefaults", "pc-defaults", "q35-nodefaults",
                                   "q35-defaults"])
def test_every_path_lists_and_gets_as_recorded(board: str) -> None:
    """qmp.c qmp_qom_list/qmp_qom_get on every object of /machine: the same
    properties (as a set) and the same values or errors as QEMU 2.11.0."""
    vm = machine(board)
    nodes = recorded(board)
    mismatches = []
    for path, node in nodes.items():
        if not path.startswith("/machine"):
            continue
        got = vm.execute({"execute": "qom-list", "arguments": {"path": path}})
        assert got is not None
        want = node["qom-list"]
        if "return" in got and "return" in want:
            if sorted(map(json.dumps, got["return"])) != sorted(map(json.dumps,
                                                                    want["return"])):
                mismatches.append((path, "qom-list"))
        elif got != want:
            mismatches.append((path, "qom-list"))
        for name, value in node["values"].items():
            if name in RUN_TO_RUN:
                continue
            reply = vm.execute({"execute": "qom-get",
                                "arguments": {"path": path, "property": name}})
            assert reply is not None
            reply.pop("id", None)
            if reply != value:
                mismatches.append((path, name, value, reply))
    assert mismatches == []


@pytest.mark.parametrize("board", ["pc-nodefaults", "pc-defaults", "q35-nodefaults",
                                   "q35-defaults"])
def test_no_object_qemu_does_not_have(board: str) -> None:
    """Every object below /machine is one QEMU has (child<> walk of the recording)."""
    vm = machine(board)
    nodes = recorded(board)
    ours = [o.path() for o in vm.vm.qdev.root.walk() if o.path().startswith("/machine")]
    assert sorted(p for p in ours if p not in nodes) == []
