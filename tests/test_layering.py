"""The direction of imports (ARCHITECTURE.md, "Packages and the direction of imports").

`schema/` depends on nothing of ours; `blockdev/`, `devices/` and `migration/`
depend on `schema/` at most (what one needs from another it declares as a Protocol)
and never import `vmm`. Real I/O through trio sits only in the edge modules named
here. Every import counts, also those inside functions and under TYPE_CHECKING:
the modules' source is walked with `ast`, nothing is imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The first-party packages each package may import (besides itself).
ALLOWED = {
    "schema": set(),
    "blockdev": {"schema"},
    "devices": {"schema"},
    "migration": {"schema"},
}
FIRST_PARTY = {"schema", "blockdev", "devices", "migration", "vmm"}

# The modules of those packages that may import trio: their I/O edges.
TRIO_EDGES = {
    "blockdev/io_edge.py",
    "migration/transport.py",  # migration streams (tcp, unix, fd, exec)
    "devices/chardev/edge.py",
    "blockdev/nbd/edge.py",
    "devices/display/vnc_edge.py",
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_subsystems_import_only_what_the_map_allows(package: str) -> None:
    """No module of blockdev/, devices/ or migration/ imports vmm (or another
    subsystem); schema/ imports nothing of ours."""
    wrong = []
    for path in _modules(package):
        for line, name in _imports(path):
            top = name.split(".", 1)[0]
            if top in FIRST_PARTY and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert wrong == []


def test_only_named_edges_import_trio() -> None:
    """Models are pure: trio appears only in the subsystems' named I/O edges."""
    users = set()
    for package in ALLOWED:
        for path in _modules(package):
            if any(name.split(".", 1)[0] == "trio" for _, name in _imports(path)):
                users.add(str(path.relative_to(ROOT)))
    assert users == TRIO_EDGES


def test_edges_exist() -> None:
    """The allow-list names real files (a renamed edge must update it)."""
    assert all((ROOT / edge).is_file() for edge in TRIO_EDGES)


def test_importing_the_configuration_does_not_load_trio() -> None:
    """`python -c "import vmm.config"`: reading the command line into a
    configuration is pure, so it loads no I/O framework."""
    probe = "import sys, vmm.config; print('trio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


# What the block jobs' commands (and transaction) load with their owners (vmm.lazy).
BLOCK_JOB_MODULES = ["blockdev.jobs.core", "blockdev.jobs.commands", "blockdev.jobs.stream",
                     "blockdev.jobs.commit", "blockdev.jobs.mirror", "blockdev.jobs.backup",
                     "blockdev.jobs.filters", "blockdev.transaction"]


def test_start_up_loads_what_a_plain_machine_needs() -> None:
    """The program's start-up (ready in under 200 ms) imports no part that only some
    machines use: the human monitor's interpreter and the qtest protocol load with
    the first human monitor or -qtest, the guest's address spaces with the first
    access to guest memory or ports, the image format readers (and their facts) with
    the first image, the block data path with the first request, migration with
    its first command, the schema parser and the Hypothesis strategies never."""
    lazy = ["vmm.hmp.interpreter", "vmm.hmp.table", "vmm.qtest", "devices.chipset",
            "devices.address_space", "devices.display.vnc", "devices.display.vnc_edge",
            "devices.display.rfb", "devices.display.des", "devices.display.console",
            "devices.input", "devices.dump.ppm", "devices.dump.elf", "devices.dump.kdump",
            "devices.dump.job",
            "blockdev.image.formats.facts", "blockdev.image.formats.registry",
            "blockdev.io", "blockdev.drivers.dataio", "blockdev.io_edge",
            "schema.parser", "schema.strategies", "hypothesis",
            "blockdev.nbd.codec", "blockdev.nbd.server", "blockdev.nbd.edge",
            # chardevs' host side, guest frontends and net clients: with the first
            # chardev, port or netdev that needs them
            "devices.chardev.hostio", "devices.chardev.frontends", "devices.net.model",
            "devices.net.hostnet",
            # block migration: with the first migration that copies disks
            "migration.block", "blockdev.block_migration",
            # the migration subsystem and the device state it carries: with the first
            # migration command or -incoming (vmm.lazy)
            "migration.commands", "migration.host", "migration.uri", "migration.stream",
            "migration.states", "migration.transport", "migration.files", "vmm.vmstate",
            # the RAM model (its behaviours are declared in migration.behaviours)
            "migration.ram", "migration.params",
            # external and internal snapshots: with the first snapshot command
            "blockdev.snapshot",
            # the block jobs, and transaction: with their first command (vmm.lazy)
            *BLOCK_JOB_MODULES]
    probe = ("import sys, vmm.program; "
             f"print([m for m in {lazy!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_building_a_plain_machine_loads_no_lazy_subsystem() -> None:
    """`Vm.build` composes every subsystem for every machine: a plain one, started
    and greeting a QMP monitor, still has not loaded what loads on first use."""
    lazy = ["migration.commands", "migration.host", "migration.uri", "migration.stream",
            "migration.states", "migration.transport", "migration.files", "vmm.vmstate",
            "devices.net.model", "devices.chardev.hostio", "devices.display.vnc",
            "devices.input", "devices.chipset", "vmm.hmp.interpreter", "blockdev.io",
            *BLOCK_JOB_MODULES]
    probe = (
        "import sys\n"
        "from schema.catalog import Catalog\n"
        "from schema.loader import load_schema\n"
        "from vmm.machine.clock import Clock\n"
        "from vmm.machine.core import MachineOptions\n"
        "from vmm.vm import Vm\n"
        "vm = Vm.build(options=MachineOptions(), schema=load_schema(), catalog=Catalog.load(),\n"
        "              clock=Clock.anchored(lambda: 0.0, 0.0))\n"
        "vm.machine.start()\n"
        "monitor = vm.qmp_monitor()\n"
        "monitor.connect()\n"
        "assert monitor.take_output().startswith(b'{\"QMP\"')\n"
        f"print([m for m in {lazy!r} if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
