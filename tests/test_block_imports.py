"""The import graph of `blockdev/` has no cycles.

A module of the block layer may import only modules below it: the graph's objects
and the driver interface (`blockdev.graph`) at the bottom, the drivers and the image
edge above them, `bdrv_open`, the layer, then media, snapshots, queries, commands and
the command line. Every import counts, wherever it is written: at module level,
under `if TYPE_CHECKING:`, or inside a function (the usual way to hide a cycle from
the interpreter). Importing a submodule runs its packages' `__init__` first, so a
module also depends on its parent packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path, package: str) -> dict[str, Path]:
    return {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path = ROOT, package: str = "blockdev") -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (anywhere in its text)."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set(_parents(name))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    if not is_package:
                        anchor = anchor[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base]
                targets += [f"{base}.{alias.name}" for alias in node.names
                            if f"{base}.{alias.name}" in modules]
            for target in targets:
                if target == package or target.startswith(package + "."):
                    # `import a.b.c` names the module and runs its packages too.
                    while target not in modules:
                        target = target.rpartition(".")[0]
                    deps.add(target)
                    deps.update(_parents(target))
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found is not None:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found is not None:
                return found
    return None


def test_blockdev_import_graph_has_no_cycle() -> None:
    """No module of blockdev/ reaches itself through its imports (issue 7: the block
    layer's modules form layers, each given a narrow context by the one above)."""
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or ())


def test_the_checker_sees_hidden_imports(tmp_path: Path) -> None:
    """The checker itself: an import under TYPE_CHECKING and one inside a function
    are edges, a package's `__init__` is an edge of its submodules, and the cycle
    they close is reported."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg import c\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from pkg import b\n")
    (pkg / "b.py").write_text("def f() -> None:\n    from . import a\n")
    (pkg / "c.py").write_text("import pkg.sub.d\n")
    (pkg / "sub" / "d.py").write_text("")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg", "pkg.b"}
    assert graph["pkg.b"] == {"pkg", "pkg.a"}
    assert graph["pkg.sub.d"] == {"pkg", "pkg.sub"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"pkg.c": graph["pkg.c"], "pkg.sub": graph["pkg.sub"],
                       "pkg": set(), "pkg.sub.d": graph["pkg.sub.d"]}) == [
        "pkg.c", "pkg.sub", "pkg.c"]
