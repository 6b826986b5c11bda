"""Many block jobs on one machine: server CPU and event lateness on the real clock, and
the wall time of the same jobs under trio's MockClock (issue 9, "Many at once").
A benchmark script, not a test; it prints figures.

Run from the repository root:

    python -m tests.bench.bench_jobs [--jobs 1000] [--seconds 15] [--kind auto] [--no-mock]
                                     [--raw-client]

The server is the emulator's own trio server, in this process, on a unix socket;
the client is a separate process speaking QMP with the `qemu.qmp` library (PyPI).
Each job is a slow one, `--seconds` long at its kind's `speed`. The client sets
up every job's nodes first, then the jobs start one after the other, 1 ms apart (as
a management tool starts them); each sends one timed event.

`--kind`:
- `backup`: `blockdev-backup` sync=full between two null-co nodes per job, at
  64 KiB/s (a cluster a second); the timed event is BLOCK_JOB_COMPLETED;
- `mirror`: `blockdev-mirror` sync=full between two null-co nodes per job, at
  1 MiB/s; the timed event is BLOCK_JOB_READY (the mirror then stays in sync, waking
  every 100 ms as 2.11's does, until the end);
- `count`: a job kind of the benchmark's own (`CountJob`: blockjob.c's loop with
  nothing but the time of its 512 KiB requests) at 1 MiB/s, started through the job
  model in the server process, since no QMP command starts it; it measures the
  scheduler alone; the timed event is BLOCK_JOB_COMPLETED;
- `auto` (default): the first of `backup`, `mirror` this tree has, else `count`.

Figures:
- server CPU: the server process's CPU time (user + system) over the wall time,
  while every job runs (from the last start to the first timed event), and over the
  whole run;
- event lateness: when the client receives each job's timed event, minus when the
  model said it was due (the deadline of the job's timer whose expiry sent it, kept
  by a probe the benchmark plugs in front of the job registry), and the server's
  share of it (sent minus due); p50, p99 and max. Targets of issue 9: p99 under
  10 ms, CPU under 20 %;
- the garbage collector's pauses while the jobs run (gc.callbacks), which hold
  every timer due during them;
- MockClock: the wall time the same jobs take to their timed event with
  `trio.testing.MockClock` (autojump), an in-process client counting the events.

The real-clock run can be profiled: JOBS_BENCH_PROFILE=FILE writes cProfile's
statistics of the server process to FILE.
Figures are of this machine under its current load (it prints the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from blockdev.graph import PERM_ALL
from blockdev.jobs.core import BlockJob, Co, Jobs
from tests import emulator

MiB = 1 << 20
CHUNK = 512 * 1024  # block/stream.c STREAM_BUFFER_SIZE
ARGV = ["-machine", "none", "-nodefaults", "-S"]


@attrs.define(kw_only=True, eq=False)
class CountJob(BlockJob):
    """The benchmark's own kind: `total` bytes in CHUNK requests, each the simulated
    disk's time, then the rate limit's delay (blockjob.c's loop, no data)."""

    job_type = "stream"
    total: int = 8 * MiB

    def run(self) -> Co:
        self.len = self.total
        delay = 0
        while self.offset < self.len:
            yield from self.sleep_ns(delay)
            if self.cancelled:
                break
            yield from self.io(self.io_delay_ns(CHUNK))
            self.offset += CHUNK
            delay = self.rate_delay_ns(CHUNK)
        self.defer_to_main_loop(lambda: self.registry.completed(self, 0))


@attrs.define(kw_only=True, eq=False)
class DueProbe:
    """A subsystem plugged in front of the job registry: before the registry runs its
    timers due at `now`, it notes each due job's deadline, so an event a job sends
    while its timer runs is known to have been due then. It reads the registry's
    heap (only the entries due, walking the heap from its root: O(due)). It has no
    deadline of its own."""

    jobs: Jobs
    event: str
    due: dict[str, float] = attrs.Factory(dict)   # job id -> deadline being served
    # job id -> (its timed event, when it was due, when the server sent it)
    sent: dict[str, tuple[str, float, float]] = attrs.Factory(dict)
    ended: int = 0  # timed events seen, due at a timer or not
    on_event_seen: Callable[[], None] = lambda: None

    def reset(self) -> None: ...
    def before_cont(self) -> None: ...
    def vm_start(self) -> None: ...
    def vm_stop(self) -> None: ...
    def close(self) -> None: ...

    def next_deadline(self) -> float:
        return float("inf")

    def run_due(self, now: float) -> None:
        self.due.clear()
        heap = self.jobs._heap
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            deadline, _, token, job = heap[i]
            if deadline > now:
                continue
            if token == job.token and job.id is not None:
                self.due[job.id] = deadline
            stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))

    def on_event(self, event: Any) -> None:
        if event.name == self.event:
            device = event.data["device"]
            if device in self.due:
                self.sent[device] = (event.name, self.due[device], self.jobs.now())
            self.ended += 1
            self.on_event_seen()


# -- the jobs of each kind ------------------------------------------------------------


@attrs.frozen
class Plan:
    """What the server is started with, and what the client sends (per job)."""

    setup: list[dict[str, Any]]   # QMP requests before the clock starts
    start: list[dict[str, Any]]   # one request per job that starts it
    start_in_process: bool
    event: str = "BLOCK_JOB_COMPLETED"  # the timed event: one per job


def plan_count(n: int) -> Plan:
    setup: list[dict[str, Any]] = [
        {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": f"d{i}",
                                                  "size": 64 * MiB}}
        for i in range(n)]
    return Plan(setup=setup, start=[], start_in_process=True)


def _null_pairs(command: str, n: int, speed: int, length: int,
                event: str = "BLOCK_JOB_COMPLETED") -> Plan:
    """Per job a null-co source and target, and `command` (sync=full) between them."""
    setup: list[dict[str, Any]] = []
    for i in range(n):
        for name in (f"s{i}", f"t{i}"):
            setup.append({"execute": "blockdev-add", "arguments": {
                "driver": "null-co", "node-name": name, "size": length}})
    start: list[dict[str, Any]] = [
        {"execute": command, "arguments": {
            "job-id": f"j{i}", "device": f"s{i}", "target": f"t{i}", "sync": "full",
            "speed": speed}} for i in range(n)]
    return Plan(setup=setup, start=start, start_in_process=False, event=event)


def plan_backup(n: int, speed: int, length: int) -> Plan:
    """`blockdev-backup` copies the source cluster by cluster (64 KiB: null-co tells
    no cluster size) at `speed`."""
    return _null_pairs("blockdev-backup", n, speed, length)


def plan_mirror(n: int, speed: int, length: int) -> Plan:
    """`blockdev-mirror` copies the source at `speed`, then sends BLOCK_JOB_READY and
    stays (until completed or cancelled)."""
    return _null_pairs("blockdev-mirror", n, speed, length, event="BLOCK_JOB_READY")


# -- the client: a separate process ----------------------------------------------------


async def raw_client_main(sock: str, expect: int) -> None:
    """The same client without a QMP library: one JSON message per line on a plain
    asyncio stream, so that the lateness it measures is the server's and the
    kernel's, not a library's per-message cost."""
    plan = json.loads(sys.stdin.readline())
    reader, writer = await asyncio.open_unix_connection(sock, limit=1 << 24)
    await reader.readline()  # the greeting

    async def execute(name: str, arguments: Any = None) -> None:
        req: dict[str, Any] = {"execute": name}
        if arguments is not None:
            req["arguments"] = arguments
        writer.write(json.dumps(req).encode() + b"\n")
        while True:
            msg = json.loads(await reader.readline())
            if "return" in msg or "error" in msg:
                return
            pending.append((time.perf_counter(), msg))

    pending: list[tuple[float, dict[str, Any]]] = []
    await execute("qmp_capabilities")
    for req in plan["setup"]:
        await execute(req["execute"], req.get("arguments"))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    for req in plan["start"]:
        await execute(req["execute"], req.get("arguments"))
    print("started", flush=True)
    arrivals: list[dict[str, Any]] = []

    def keep(t: float, msg: dict[str, Any]) -> None:
        if msg.get("event") == plan["event"]:
            arrivals.append({"t": t, "event": msg["event"], "device": msg["data"]["device"]})

    for t, msg in pending:
        keep(t, msg)
    while len(arrivals) < expect:
        line = await reader.readline()
        keep(time.perf_counter(), json.loads(line))
    for arrival in arrivals:
        print(json.dumps(arrival), flush=True)
    writer.close()


async def client_main(sock: str, expect: int) -> None:
    """Reads the plan's requests (JSON) on stdin, sends the set-up ones and says
    `ready`, sends the starting ones on `go` and says `started`, then writes each
    timed event's arrival (time.perf_counter) as a JSON line."""
    from qemu.qmp import EventListener, QMPClient

    plan = json.loads(sys.stdin.readline())
    qmp = QMPClient("bench")
    await qmp.connect(sock)
    listener = EventListener(names=[plan["event"]])
    arrivals: list[dict[str, Any]] = []
    with qmp.listen(listener):
        for req in plan["setup"]:
            await qmp.execute(req["execute"], req.get("arguments"))
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # "go"
        for req in plan["start"]:
            await qmp.execute(req["execute"], req.get("arguments"))
        print("started", flush=True)
        while len(arrivals) < expect:
            event = await listener.get()
            arrivals.append({"t": time.perf_counter(), "event": event["event"],
                             "device": event["data"]["device"]})
    for arrival in arrivals:
        print(json.dumps(arrival), flush=True)
    try:
        await qmp.disconnect()
    except EOFError:
        pass  # the server closed first


# -- the server: this process ---------------------------------------------------------


def start_count_job(vm: Any, i: int, speed: int, total: int) -> None:
    jobs: Jobs = vm.jobs
    job = CountJob(registry=jobs, total=total)
    jobs.create(job, f"j{i}", vm.block.lookup_bs(None, f"d{i}"), 0, PERM_ALL, speed)
    jobs.start(job)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def real_clock(plan: Plan, n: int, speed: int, total: int, tmp: Path,
                     raw_client: bool = False) -> None:
    built = emulator.build_from_argv(
        ARGV, emulator.Clock.anchored(trio.current_time, time.time()))
    built.start()
    vm = built.vm
    sock = tmp / "qmp.sock"
    ended = trio.Event()
    probe = DueProbe(jobs=vm.jobs, event=plan.event)
    cpu_marks: dict[str, float] = {}

    def seen() -> None:
        if "first_end" not in cpu_marks:
            cpu_marks["first_end"] = time.process_time()
            cpu_marks["first_end_wall"] = time.perf_counter()
        if probe.ended >= n:
            ended.set()

    probe.on_event_seen = seen
    pauses = GcPauses()
    gc.callbacks.append(pauses.callback)
    vm.machine.subsystems.insert(0, probe)
    vm.machine.events.subscribe(probe.on_event)
    async with trio.open_nursery() as nursery:
        await emulator.serve(nursery, vm, [emulator.unix_monitor(sock)])
        client = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.bench.bench_jobs", "--client", str(sock),
             "--jobs", str(n), *(["--raw-client"] if raw_client else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert client.stdin is not None and client.stdout is not None
        lines = LineReader(client.stdout)
        await client.stdin.send_all(json.dumps(
            {"setup": plan.setup, "start": plan.start, "event": plan.event}).encode() + b"\n")
        assert await lines.next() == "ready"
        cpu0, wall0 = time.process_time(), time.perf_counter()
        pauses.counting = True
        await client.stdin.send_all(b"go\n")
        if plan.start_in_process:
            for i in range(n):
                start_count_job(vm, i, speed, total)
                await trio.sleep(0.001)
        assert await lines.next() == "started"
        cpu1, wall1 = time.process_time(), time.perf_counter()
        await ended.wait()
        cpu2, wall2 = time.process_time(), time.perf_counter()
        pauses.counting = False
        arrivals = [json.loads(await lines.next()) for _ in range(n)]
        await client.wait()
        offset = trio.current_time() - time.perf_counter()
        nursery.cancel_scope.cancel()
    gc.callbacks.remove(pauses.callback)
    late = [(a["t"] - (probe.sent[a["device"]][1] - offset)) * 1000 for a in arrivals
            if a["device"] in probe.sent]
    sent_late = [(sent - due) * 1000 for _, due, sent in probe.sent.values()]
    steady_wall = cpu_marks["first_end_wall"] - wall1
    steady_cpu = cpu_marks["first_end"] - cpu1
    print(f"real clock: {n} jobs started in {wall1 - wall0:.2f} s (CPU {cpu1 - cpu0:.2f} s), "
          f"all ended after {wall2 - wall0:.2f} s")
    if steady_wall > 0:
        print(f"  server CPU while all {n} run: {100 * steady_cpu / steady_wall:.1f} % "
              f"({steady_cpu:.2f} s of {steady_wall:.2f} s)")
    print(f"  server CPU over the whole run: {100 * (cpu2 - cpu0) / (wall2 - wall0):.1f} %")
    print(f"  the garbage collector while they ran: {len(pauses.ms)} collections, "
          f"{sum(pauses.ms):.0f} ms, the longest {max(pauses.ms, default=0):.1f} ms")
    if late:
        print(f"  {plan.event} lateness ({len(late)} events): p50 "
              f"{percentile(late, 50):.2f} ms, p99 {percentile(late, 99):.2f} ms, "
              f"max {max(late):.2f} ms")
        print(f"  of which the server's (sent - due): p50 {percentile(sent_late, 50):.2f} ms, "
              f"p99 {percentile(sent_late, 99):.2f} ms, max {max(sent_late):.2f} ms")


@attrs.define
class GcPauses:
    """The garbage collector's pauses (gc.callbacks), in ms: a pause holds every
    timer that falls due during it."""

    ms: list[float] = attrs.Factory(list)
    started: float = 0.0
    counting: bool = False

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.counting:
            self.ms.append((time.perf_counter() - self.started) * 1000)


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = b""

    async def next(self) -> str:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


async def mock_clock(plan: Plan, n: int, speed: int, total: int, tmp: Path) -> None:
    """The same jobs with every timer jumped to: what the model costs per job."""
    from tests.test_server import Client

    wall0 = time.perf_counter()
    built = emulator.build_from_argv(
        ARGV, emulator.Clock.anchored(trio.current_time, time.time()))
    built.start()
    vm = built.vm
    sock = tmp / "mock.sock"
    async with trio.open_nursery() as nursery:
        await emulator.serve(nursery, vm, [emulator.unix_monitor(sock)])
        client = await Client.unix(str(sock))
        await client.negotiate()
        for req in plan.setup:
            await call(client, req)
        t0, wall1 = trio.current_time(), time.perf_counter()
        for i in range(n):
            if plan.start_in_process:
                start_count_job(vm, i, speed, total)
            else:
                await call(client, plan.start[i])
            await trio.sleep(0.001)
        seen = 0
        while seen < n:
            msg = await client.line()
            seen += msg.get("event") == plan.event
        simulated = trio.current_time() - t0
        client.close()
        nursery.cancel_scope.cancel()
    wall2 = time.perf_counter()
    print(f"MockClock: {n} jobs, {simulated:.2f} s of the Machine's time in "
          f"{wall2 - wall1:.2f} s of wall time (machine built in {wall1 - wall0:.2f} s)")


async def call(client: Any, req: dict[str, Any]) -> None:
    await client.send(req)
    while "event" in (reply := await client.line()):
        pass
    assert "return" in reply, reply


def make_plan(kind: str, n: int, speed: int, total: int) -> Plan:
    if kind == "backup":
        return plan_backup(n, speed, total)
    if kind == "mirror":
        return plan_mirror(n, speed, total)
    return plan_count(n)


def available(command: str) -> bool:
    """Whether this tree's `command` is more than the "not implemented" stub."""
    vm = emulator.SyncVm(["-machine", "none", "-nodefaults"])
    try:
        reply = vm.execute({"execute": command, "arguments": {
            "device": "x", "target": "y", "sync": "full"}})
    finally:
        vm.close()
    assert reply is not None
    return "not implemented" not in reply.get("error", {}).get("desc", "")


# kind -> (its speed, the request its time is counted in)
SPEEDS = {"backup": (64 * 1024, 64 * 1024), "mirror": (MiB, CHUNK), "count": (MiB, CHUNK)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=15.0,
                    help="how long each job runs at its speed")
    ap.add_argument("--kind", choices=["auto", "backup", "mirror", "count"], default="auto")
    ap.add_argument("--no-mock", action="store_true", help="skip the MockClock run")
    ap.add_argument("--raw-client", action="store_true",
                    help="measure with a plain JSON-lines client instead of qemu.qmp")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        main_fn = raw_client_main if args.raw_client else client_main
        asyncio.run(main_fn(args.client, args.jobs))
        return
    kind = args.kind
    if kind == "auto":
        kind = next((k for k in ("backup", "mirror") if available(f"blockdev-{k}")),
                    "count")
    speed, request = SPEEDS[kind]
    total = max(request, int(args.seconds * speed) // request * request)
    print(f"{args.jobs} {kind} jobs of {total // 1024} KiB at {speed // 1024} KiB/s "
          f"(~{total / speed:.0f} s each), 1 ms apart; load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs")
    # what the emulator reports on stderr (backup's warning about null-co's cluster
    # size, once per job) is counted, not shown
    stderr = io.StringIO()
    with temp_dir() as tmp, redirect_stderr(stderr):
        (tmp / "real").mkdir()
        plan = make_plan(kind, args.jobs, speed, total)
        if os.environ.get("JOBS_BENCH_PROFILE"):
            # JOBS_BENCH_PROFILE=FILE: the real-clock run under cProfile, stats in FILE
            import cProfile

            cProfile.runctx("trio.run(real_clock, plan, args.jobs, speed, total, "
                            "tmp / 'real', args.raw_client)", globals(), locals(),
                            os.environ["JOBS_BENCH_PROFILE"])
        else:
            trio.run(real_clock, plan, args.jobs, speed, total, tmp / "real",
                     args.raw_client)
        if not args.no_mock:
            (tmp / "mock").mkdir()
            plan = make_plan(kind, args.jobs, speed, total)
            trio.run(mock_clock, plan, args.jobs, speed, total, tmp / "mock",
                     clock=trio.testing.MockClock(autojump_threshold=0))
    lines = stderr.getvalue().splitlines()
    if lines:
        print(f"stderr: {len(lines)} lines, the first: {lines[0]}")


@contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="jobbench.") as d:
        yield Path(d)


if __name__ == "__main__":
    main()
