"""Benchmark of live migration between emulators (not a test; prints figures).

Run from the repository root:

    python -m tests.bench.bench_migration [ROUNDS]

A tiny guest (`-m 16`, firmware only) migrates back and forth over a unix socket at
unlimited bandwidth (max-bandwidth 0), in real time: each round the guest moves to a
new emulator started with `-incoming defer` (a QEMU source ends in `postmigrate` and
cannot take a migration back), driven over QMP as a management tool would. Prints
migrations per second and the stream bytes each migration sent. Then one block
migration (`migrate` blk) of a 32 MiB qcow2 disk full of data into an empty image:
its time, the disk MiB per second and the stream bytes (qemu-img and qemu-io are
needed for it).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from tests import emulator
from tests.test_server import Client

ARGV = ["-M", "pc", "-m", "16", "--emu-guest=firmware"]


async def _start(nursery: trio.Nursery, sock: Path, *extra: str) -> tuple[Any, Client]:
    built = emulator.build_from_argv([*ARGV, *extra],
                                     emulator.Clock.anchored(trio.current_time, time.time()))
    built.start()
    await emulator.serve(nursery, built.vm, [emulator.unix_monitor(sock)])
    client = await Client.unix(str(sock))
    await client.negotiate()
    await client.cmd("migrate_set_speed", value=0)
    return built.vm, client


async def call(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    """A command's reply, past any event."""
    req: dict[str, Any] = {"execute": name}
    if arguments:
        req["arguments"] = arguments
    await client.send(req)
    while True:
        msg = await client.line()
        if "event" not in msg:
            return msg


async def _query_until_done(client: Client) -> dict[str, Any]:
    while True:
        info = (await call(client, "query-migrate"))["return"]
        if info.get("status") in ("completed", "failed", "cancelled"):
            return dict(info)
        await trio.sleep(0.001)


async def run(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="migbench"))
    async with trio.open_nursery() as nursery:
        vm, client = await _start(nursery, tmp / "m0.qmp")
        wire: list[int] = []
        start = time.perf_counter()
        for n in range(1, rounds + 1):
            new_vm, new_client = await _start(nursery, tmp / f"m{n}.qmp", "-incoming", "defer")
            uri = f"unix:{tmp / f'mig{n}.sock'}"
            assert (await call(new_client, "migrate-incoming", uri=uri)) == {"return": {}}
            assert (await call(client, "migrate", uri=uri)) == {"return": {}}
            info = await _query_until_done(client)
            assert info["status"] == "completed", info
            current = vm.migration.current
            wire.append(current.wire_bytes if current is not None else 0)
            while (await call(new_client, "query-status"))["return"]["status"] != "running":
                await trio.sleep(0.001)
            client.close()
            vm, client = new_vm, new_client
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    print(f"migrations: {rounds} in {elapsed:.3f} s = {rounds / elapsed:.1f} per second "
          "(including each destination's start)")
    print(f"stream bytes per migration: {sum(wire) / len(wire):.0f} "
          f"(min {min(wire)}, max {max(wire)})")


DISK_MIB = 32


async def run_block() -> None:
    """One block migration of a DISK_MIB MiB disk written with a pattern."""
    tmp = Path(tempfile.mkdtemp(prefix="migbench-blk"))
    images = [tmp / "src.qcow2", tmp / "dst.qcow2"]
    for image in images:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image),
                        f"{DISK_MIB}M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {DISK_MIB}M",
                    str(images[0])], check=True, capture_output=True)

    def drive(image: Path) -> tuple[str, ...]:
        return ("-drive", f"file={image},format=qcow2,if=none,id=d0")

    async with trio.open_nursery() as nursery:
        vm, client = await _start(nursery, tmp / "src.qmp", *drive(images[0]))
        dst_vm, dst = await _start(nursery, tmp / "dst.qmp", "-incoming", "defer",
                                   *drive(images[1]))
        dst_vm.machine.stdout = lambda text: None  # block_load's progress lines
        uri = f"unix:{tmp / 'mig.sock'}"
        assert (await call(dst, "migrate-incoming", uri=uri)) == {"return": {}}
        start = time.perf_counter()
        assert (await call(client, "migrate", uri=uri, blk=True)) == {"return": {}}
        info = await _query_until_done(client)
        elapsed = time.perf_counter() - start
        assert info["status"] == "completed", info
        current = vm.migration.current
        wire = current.wire_bytes if current is not None else 0
        nursery.cancel_scope.cancel()
    print(f"block migration of a {DISK_MIB} MiB disk: {elapsed:.3f} s = "
          f"{DISK_MIB / elapsed:.1f} MiB/s, stream bytes {wire}")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    trio.run(run, rounds)
    trio.run(run_block)


if __name__ == "__main__":
    main()
