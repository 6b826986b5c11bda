"""Build `qom-templates.json.gz` from the catalogue's recorded QOM trees.

A data-preparation script, never loaded by the emulator: run it by hand as
`python schema/data/extract_qom_templates.py CATALOGUE_DIR` (the directory of
`board-{pc,q35}-{defaults,nodefaults}/qom-tree.json`). It keeps what a recording
says about QOM *types*: for every device and bus type of the pc and q35 trees, its
properties (name, type, value) and the objects it owns that are neither devices
nor buses (memory regions, GPIO lines, a CPU's local APIC), per board (the same
type is wired to other GPIO lines on pc and q35), with links expressed
relative to the owner (`@rel`) or to the n-th board device of a type
(`#type:n/rest`). It drops what the emulator computes: every device and bus,
where they sit (`parent_bus`, `child[N]`, `hotplug-handler`, `addr`, the
`/machine/unattached/device[N]` numbers), `realized` and `hotplugged`. Per board
it also keeps the machine object's properties and the objects that board code
creates outside any device (RAM and I/O regions, its GPIO lines). See README.md.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

COMPUTED_DEVICE = {"parent_bus", "realized", "hotplugged"}
UNATTACHED = re.compile(r"^/machine/unattached/device\[(\d+)\](/.*)?$")


def is_device(node: dict[str, Any]) -> bool:
    return any(p["name"] == "hotpluggable" for p in node["qom-list"]["return"])


def is_bus(node: dict[str, Any]) -> bool:
    names = {p["name"] for p in node["qom-list"]["return"]}
    return "hotplug-handler" in names and "hotpluggable" not in names


def extract(tree: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    nodes = tree["nodes"]
    typeof = {p: v["values"]["type"]["return"] for p, v in nodes.items()}
    unattached: dict[int, str] = {}
    for p in nodes:
        m = UNATTACHED.match(p)
        if m and m.group(2) is None:
            unattached[int(m.group(1))] = typeof[p]
    ordinal: dict[int, int] = {}
    seen: dict[str, int] = {}
    for n in sorted(unattached):
        t = unattached[n]
        ordinal[n] = seen.get(t, 0)
        seen[t] = ordinal[n] + 1

    def link(owner: str, target: str) -> str:
        if not target:
            return ""
        if owner.startswith("/machine/") and (target == owner
                                              or target.startswith(owner + "/")):
            return "@" + target[len(owner):]
        m = UNATTACHED.match(target)
        if m:
            n = int(m.group(1))
            return f"#{unattached[n]}:{ordinal[n]}{m.group(2) or ''}"
        return target

    def internal(path: str) -> bool:
        node = nodes[path]
        if is_bus(node):
            return False
        if is_device(node):
            # a device without a bus inside another device (a CPU's local APIC)
            m = UNATTACHED.match(path)
            return node["values"]["parent_bus"].get("return") == "" and \
                (m is None or m.group(2) is not None)
        return True

    def template(path: str, owner: str, skip: set[str]) -> list[Any]:
        node = nodes[path]
        out: list[Any] = []
        for prop in node["qom-list"]["return"]:
            name, type_ = prop["name"], prop["type"]
            if name in skip or name == "type":
                continue
            if type_.startswith("child<"):
                child = f"{path}/{name}" if path != "/" else f"/{name}"
                if child in nodes and internal(child):
                    out.append([name, type_, {"child": template(child, owner, set())}])
                continue
            value = node["values"].get(name)
            if value is None:
                continue
            if "error" in value:
                out.append([name, type_, {"error": value["error"]["desc"]}])
            elif type_.startswith("link<"):
                out.append([name, type_, {"link": link(owner, value["return"])}])
            else:
                out.append([name, type_, {"value": value["return"]}])
        return out

    devices: dict[str, Any] = {}
    buses: dict[str, Any] = {}
    for path, node in nodes.items():
        t = typeof[path]
        if is_device(node) and not internal(path):
            tmpl = template(path, path, COMPUTED_DEVICE)
            m = UNATTACHED.match(path)
            k = ordinal[int(m.group(1))] if m else 0
            if k:
                # a later instance of a type the board creates several of (the
                # second PIC, the second DMA controller): kept when it differs
                if tmpl != devices.get(t):
                    devices[f"{t}#{k}"] = tmpl
                continue
            devices.setdefault(t, tmpl)
        elif is_bus(node):
            skip = {p["name"] for p in node["qom-list"]["return"]
                    if p["name"].startswith("child[")} | {"realized", "hotplug-handler"}
            buses.setdefault(t, template(path, path, skip))
    board = {
        "machine": template("/machine", "/machine", set()),
        "unattached": template("/machine/unattached", "/machine/unattached", set()),
    }
    return devices, buses, board


def main(catalogue: Path, out: Path) -> None:
    devices: dict[str, dict[str, Any]] = {"pc": {}, "q35": {}}
    buses: dict[str, Any] = {}
    boards: dict[str, Any] = {}
    for board in ("pc", "q35"):
        for variant in ("defaults", "nodefaults"):
            tree = json.loads((catalogue / f"board-{board}-{variant}" / "qom-tree.json")
                              .read_text())
            d, b, machine = extract(tree)
            for t, tmpl in d.items():
                devices[board].setdefault(t, tmpl)
            for t, tmpl in b.items():
                buses.setdefault(t, tmpl)
            boards[f"{board}-{variant}"] = machine
    data = {"devices": devices, "buses": buses, "boards": boards}
    with gzip.open(out, "wt", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True, separators=(",", ":"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent / "qom-templates.json.gz")
