"""Benchmark of the program's start-up (not a test; prints figures).

Run from the repository root:

    python -m tests.bench.bench_startup [-n 25] [--vs OTHER_TREE] [--instructions]

Figures: the ready time of a plain start-up (`python -m vmm -S -nodefaults -display
none -qmp unix:SOCK,server,nowait`), from just before the process is spawned until
its QMP greeting has been read, as median, quartiles and minimum over `-n` runs (the
target is 200 ms: real QEMU takes 20-35 ms). `--vs` measures a second source tree
(an export of another commit) the same way, interleaved run by run, so that the two
medians share the machine's load; only such pairs mean anything on a shared machine.
`--instructions` counts the instructions of `import vmm.program` under valgrind's
callgrind (deterministic, ~20 s each; the figure the session notes compare).
Both trees use compiled bytecode (the interpreter compiles it once first).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["-S", "-nodefaults", "-display", "none"]
TIMEOUT = 20.0


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_tree(tree: Path) -> None:
    packages = [p for p in ("schema", "blockdev", "devices", "migration", "vmm")
                if (tree / p).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], cwd=tree,
                   env=_env(tree), check=True, stdout=subprocess.DEVNULL)


def ready_ms(tree: Path, workdir: Path) -> float:
    """Spawn a plain start-up of `tree`; milliseconds until its greeting was read."""
    sock = workdir / "qmp.sock"
    sock.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vmm", *ARGS, "-qmp",
                             f"unix:{sock},server,nowait"], cwd=workdir, env=_env(tree),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = start + TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{tree}: the program exited with {proc.returncode}")
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(sock))
                    client.settimeout(TIMEOUT)
                    greeting = b""
                    while not greeting.endswith(b"\n"):
                        chunk = client.recv(4096)
                        if not chunk:
                            raise RuntimeError(f"{tree}: no greeting")
                        greeting += chunk
                    return (time.perf_counter() - start) * 1000
            except (FileNotFoundError, ConnectionRefusedError):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{tree}: no socket after {TIMEOUT} s") from None
                time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait()


def instructions(tree: Path) -> int | None:
    """callgrind's instruction count of `import vmm.program` (None: no valgrind)."""
    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", sys.executable,
             "-c", "import vmm.program"],
            cwd=tmp, env=_env(tree), capture_output=True, text=True, check=True)
    found = re.search(r"refs:\s+([\d,]+)", result.stderr)
    return int(found.group(1).replace(",", "")) if found else None


def summary(samples: list[float]) -> str:
    q1, med, q3 = statistics.quantiles(samples, n=4)
    return f"median {med:6.1f} ms  (quartiles {q1:.1f}-{q3:.1f}, min {min(samples):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=25)
    parser.add_argument("--vs", type=Path, help="another source tree, measured interleaved")
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args()
    trees = [ROOT] + ([args.vs.resolve()] if args.vs else [])
    for tree in trees:
        compile_tree(tree)
    samples: dict[Path, list[float]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for tree in trees:
            ready_ms(tree, Path(tmp))  # warm the page cache and the schema cache
        for i in range(args.runs):
            for tree in (trees if i % 2 == 0 else trees[::-1]):
                samples[tree].append(ready_ms(tree, Path(tmp)))
    for tree in trees:
        print(f"{tree}: ready {summary(samples[tree])}")
        if args.instructions:
            count = instructions(tree)
            if count is not None:
                print(f"{tree}: import vmm.program {count / 1e6:.1f} M instructions")
    if args.vs:
        a, b = (statistics.median(samples[t]) for t in trees)
        print(f"ratio {trees[0].name} / {trees[1].name}: {a / b:.3f}")


if __name__ == "__main__":
    main()
