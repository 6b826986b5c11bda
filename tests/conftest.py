"""Shared fixtures: the schema and catalogue (loaded once), VMs on a fake clock.

`vm_factory(**options)` builds a `Vm` from MachineOptions, `vm_cmdline(*argv)` from a
QEMU command line (as the program does, through `vmm.startup.build_vm`); either's
clock is a plain number the test moves (`vm.tick(seconds)`), so nothing in the
synchronous layers depends on real time.
`Talk` drives one monitor the way a client does and returns the exact bytes QEMU
would have written, timestamps masked to `T` where asked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schema import Schema, load_schema
from schema.catalog import Catalog
from tests.syncvm_helpers import vms  # noqa: F401  (the device tests' machines)
from vmm.machine.core import Clock, MachineOptions
from vmm.qmp.monitor import QmpMonitor
from vmm.startup import build_vm
from vmm.vm import RECURSION_FLOOR, Vm

WALL_ORIGIN = 1_510_000_000.25

# Building a Vm raises the recursion limit (vmm.vm.RECURSION_FLOOR); raise it once
# here, so Hypothesis does not see it change in the middle of a test.
sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_FLOOR))


@pytest.fixture(scope="session")
def schema() -> Schema:
    return load_schema(cache_dir=False)


@pytest.fixture(scope="session")
def schema_2110() -> Schema:
    return load_schema("2.11.0", cache_dir=False)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class VmHarness:
    """A Vm on a fake clock, plus conveniences for driving it."""

    def __init__(self, vm: Vm, time: FakeTime) -> None:
        self.vm = vm
        self.machine = vm.machine
        self.time = time

    def tick(self, seconds: float) -> None:
        """Advance the clock, running every deadline on the way, in order."""
        target = self.time.now + seconds
        while True:
            deadline = self.machine.next_deadline()
            if deadline > target:
                break
            self.time.now = max(self.time.now, deadline)
            self.machine.run_timers(self.time.now)
        self.time.now = target
        self.machine.run_timers(self.time.now)

    def talk(self, *, negotiate: bool = True, pretty: bool = False) -> Talk:
        mon = self.vm.qmp_monitor(pretty=pretty)
        talk = Talk(mon)
        mon.connect()
        talk.greeting = mon.take_output()
        if negotiate:
            talk.send(b'{"execute":"qmp_capabilities"}')
        return talk


class Talk:
    """One client on one QMP monitor."""

    def __init__(self, monitor: QmpMonitor) -> None:
        self.monitor = monitor
        self.greeting = b""

    def send(self, data: bytes | str | dict[str, Any], fds: list[int] | None = None) -> bytes:
        """Send raw bytes (or a request object); return everything written since."""
        if isinstance(data, dict):
            data = json.dumps(data)
        if isinstance(data, str):
            data = data.encode()
        self.monitor.feed(data, fds)
        return self.monitor.take_output()

    def lines(self, data: bytes | str | dict[str, Any], *, mask: bool = True) -> list[str]:
        """`send`, split into CR LF framed lines, timestamps masked as `T`."""
        out = self.send(data).decode()
        assert out.endswith("\r\n") or out == "", out
        lines = out.split("\r\n")[:-1] if out else []
        return [mask_timestamps(line) if mask else line for line in lines]

    def execute(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one command; return its parsed reply (events are dropped)."""
        req: dict[str, Any] = {"execute": name}
        if arguments is not None:
            req["arguments"] = arguments
        replies = [json.loads(line) for line in self.lines(req, mask=False)]
        replies = [r for r in replies if "event" not in r]
        assert len(replies) == 1, replies
        return replies[0]

    def pending(self) -> list[str]:
        out = self.monitor.take_output().decode()
        return [mask_timestamps(line) for line in out.split("\r\n")[:-1]] if out else []


_TS = re.compile(r'\{"seconds": -?\d+, "microseconds": -?\d+\}')


def mask_timestamps(line: str) -> str:
    return _TS.sub("T", line)


def _fake_clock() -> tuple[FakeTime, Clock]:
    time = FakeTime()
    return time, Clock(monotonic=time, wall_origin=WALL_ORIGIN, mono_origin=0.0)


@pytest.fixture
def made_vms() -> Iterator[list[VmHarness]]:
    """The VMs a test built; their descriptors and image files are closed after it."""
    made: list[VmHarness] = []
    yield made
    for tvm in made:
        tvm.machine.fdsets.close_all()
        tvm.vm.close()


@pytest.fixture
def vm_factory(schema: Schema, catalog: Catalog,
               made_vms: list[VmHarness]) -> Callable[..., VmHarness]:
    def make(*, start: bool = True, schema_value: Schema | None = None, **options: Any) -> VmHarness:
        options.setdefault("strict", True)
        time, clock = _fake_clock()
        vm = Vm.build(options=MachineOptions(**options), schema=schema_value or schema,
                      catalog=catalog, clock=clock)
        tvm = VmHarness(vm, time)
        if start:
            vm.machine.start()
        made_vms.append(tvm)
        return tvm

    return make


@pytest.fixture
def vm_cmdline(schema: Schema, catalog: Catalog,
               made_vms: list[VmHarness]) -> Callable[..., VmHarness]:
    """`vm_cmdline("-M", "none", "-S")`: the machine of that command line (strict;
    the default persona's schema unless the command line picks one)."""

    def make(*argv: str, start: bool = True) -> VmHarness:
        time, clock = _fake_clock()
        own_schema = any(a.startswith("--emu-persona") for a in argv)
        vm = build_vm(["--emu-strict", *argv], clock=clock, catalog=catalog,
                      schema=None if own_schema else schema, start=start)
        tvm = VmHarness(vm, time)
        made_vms.append(tvm)
        return tvm

    return make


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """Start the program with the given arguments (stdout/stderr piped, its schema
    cache in tmp_path); every process started is killed at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        env = dict(os.environ, QMP_EMULATOR_CACHE_DIR=str(tmp_path / "cache"))
        from tests.test_program import program

        proc = subprocess.Popen([*program(), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=pass_fds, env=env,
                                cwd=tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
