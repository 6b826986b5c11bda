"""NBD throughput: the emulator's server against Debian's qemu-nbd, side by side.

    python tests/bench/bench_nbd.py [--size-mb 256] [--block 64k] [--depth 1,16]
                                    [--clients 100]

A benchmark script, not a test. For a raw and a qcow2 image (fully allocated by
qemu-io first, the same file for both servers), it serves the image with

* the emulator (`python -m vmm`, -drive + QMP nbd-server-start/nbd-server-add), and
* `qemu-nbd` (Debian's, over a unix socket, `--shared` clients, writeback cache),

and runs `qemu-img bench` over `nbd+unix://` against each: sequential reads and
writes of `--block` bytes across the whole image, at each queue depth of `--depth`.
It prints MB/s per server and the ratio emulator / qemu-nbd (issue 8's targets:
0.5 for raw, 0.3 for qcow2). Then `--clients` qemu-io processes connect at once to
each server and each reads back (and checks) its own 1 MiB range; it prints how many
succeeded and the wall time. Figures are of this machine under its current load:
only ratios from the same run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# NBD_BENCH_PROFILE=FILE: the emulator runs under cProfile, its statistics in FILE
PROFILE = (["-m", "cProfile", "-o", os.environ["NBD_BENCH_PROFILE"]]
           if os.environ.get("NBD_BENCH_PROFILE") else [])


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(2000):
        if path.exists():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        time.sleep(0.01)
    raise RuntimeError(f"{path} never appeared")


class Qmp:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(500):  # the path exists a moment before the server listens
            try:
                self.sock.connect(str(path))
                break
            except ConnectionRefusedError:
                time.sleep(0.01)
        self.file = self.sock.makefile("rwb")
        self.file.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args: Any) -> Any:
        self.file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply or "error" in reply:
                if "error" in reply:
                    raise RuntimeError(f"{name}: {reply['error']}")
                return reply["return"]


@contextmanager
def emulator(image: Path, fmt: str, tmp: Path) -> Iterator[str]:
    qmp_path, nbd_path = tmp / "qmp.sock", tmp / "emu-nbd.sock"
    for p in (qmp_path, nbd_path):
        p.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, *PROFILE, "-m", "vmm", "-machine", "none", "-nodefaults",
         "-qmp", f"unix:{qmp_path},server,nowait",
         "-drive", f"file={image},format={fmt},if=none,id=drive0,cache=writeback"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(qmp_path, proc)
        qmp = Qmp(qmp_path)
        qmp.cmd("nbd-server-start", addr={"type": "unix", "data": {"path": str(nbd_path)}})
        qmp.cmd("nbd-server-add", device="drive0", writable=True)
        yield f"nbd+unix:///drive0?socket={nbd_path}"
        qmp.cmd("quit")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def qemu_nbd(image: Path, fmt: str, tmp: Path, clients: int) -> Iterator[str]:
    path = tmp / "qemu-nbd.sock"
    path.unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["qemu-nbd", "-k", str(path), "-f", fmt, "-x", "drive0", "--cache=writeback",
         f"--shared={clients + 1}", "--persistent", str(image)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(path, proc)
        yield f"nbd+unix:///drive0?socket={path}"
    finally:
        proc.terminate()
        proc.wait()


def bench(url: str, size: int, block: int, depth: int, write: bool) -> float:
    """MB/s of one `qemu-img bench` run over the whole image."""
    count = size // block
    argv = ["qemu-img", "bench", "-f", "raw", "-c", str(count), "-d", str(depth),
            "-s", str(block), "-S", str(block)]
    if write:
        argv += ["-w", "--pattern=0x5a"]
    out = sh(*argv, url)
    seconds = float(re.search(r"Run completed in ([0-9.]+) seconds", out).group(1))  # type: ignore[union-attr]
    return count * block / seconds / 1e6


def concurrent(url: str, clients: int) -> tuple[int, float]:
    """`clients` qemu-io processes at once, each reading and checking its own MiB."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["qemu-io", "-r", "-f", "raw", "-c",
                               f"read -P 0x{(i % 200) + 1:02x} {i}M 1M", url],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(clients)]
    ok = 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode == 0 and b"Pattern verification failed" not in out \
                and b"read 1048576/1048576" in out:
            ok += 1
    return ok, time.perf_counter() - t0


def prepare(image: Path, fmt: str, size: int, clients: int) -> None:
    """A fully allocated image whose MiB number i holds the byte (i % 200) + 1."""
    sh("qemu-img", "create", "-q", "-f", fmt, str(image), str(size))
    sh("qemu-io", "-f", fmt, *pattern_commands(size >> 20), str(image))


def pattern_commands(mebibytes: int) -> list[str]:
    """qemu-io commands writing MiB number i with the byte (i % 200) + 1."""
    cmds: list[str] = []
    for i in range(mebibytes):
        cmds += ["-c", f"write -q -P 0x{(i % 200) + 1:02x} {i}M 1M"]
    return cmds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--block", default="64k")
    ap.add_argument("--depth", default="1,16")
    ap.add_argument("--clients", type=int, default=100)
    args = ap.parse_args()
    size = args.size_mb << 20
    block = int(args.block.rstrip("kK")) * 1024 if args.block[-1] in "kK" else int(args.block)
    depths = [int(d) for d in args.depth.split(",")]
    clients = min(args.clients, args.size_mb)
    print(f"NBD over unix sockets, {args.size_mb} MiB image, {block // 1024} KiB requests; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'format':6} {'test':14} {'emulator MB/s':>14} {'qemu-nbd MB/s':>14} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for fmt in ("raw", "qcow2"):
            image = tmp / f"disk.{fmt}"
            prepare(image, fmt, size, clients)
            rows: dict[str, list[float]] = {}
            for name, server in (("emulator", emulator), ("qemu-nbd", qemu_nbd)):
                ctx = server(image, fmt, tmp) if name == "emulator" else \
                    qemu_nbd(image, fmt, tmp, clients)
                with ctx as url:
                    for depth in depths:
                        for write in (False, True):
                            label = f"{'write' if write else 'read'} d={depth}"
                            rows.setdefault(label, []).append(
                                bench(url, size, block, depth, write))
                    # the writes left 0x5a everywhere: restore the patterns for the readers
                    sh("qemu-io", "-f", "raw", *pattern_commands(clients), url)
                    ok, seconds = concurrent(url, clients)
                    rows.setdefault(f"{clients} clients", []).append(seconds)
                    rows.setdefault(f"{clients} ok", []).append(ok)
            for label, (emu, ref) in rows.items():
                if label.endswith(" ok"):
                    print(f"{fmt:6} {label:14} {int(emu):>14} {int(ref):>14}")
                elif label.endswith("clients"):
                    print(f"{fmt:6} {label + ' s':14} {emu:>14.2f} {ref:>14.2f} "
                          f"{ref / emu:>6.2f}")
                else:
                    print(f"{fmt:6} {label:14} {emu:>14.1f} {ref:>14.1f} {emu / ref:>6.2f}")
            check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True,
                                   text=True) if fmt == "qcow2" else None
            if check is not None:
                print(f"{fmt:6} qemu-img check: {check.stdout.strip().splitlines()[0]}")


if __name__ == "__main__":
    main()
