"""The Machine's clocks and its timer queues.

`vmm` layer, pure: nothing here reads a clock by itself. `Clock` is the host's
monotonic time (trio's clock in the server, a number a test moves) and the wall
clock anchored to it. The virtual clock is QEMU_CLOCK_VIRTUAL, the guest's time in
nanoseconds, owned by one of two models:

- `RunningVirtualClock` (every accelerator but qtest): it advances with the host's
  clock only while the VM runs, and reads 0 until the VM first runs (cpus.c
  cpu_get_clock, cpu_enable_ticks at vm_start, cpu_disable_ticks at do_vm_stop);
- `SteppedVirtualClock` (`-machine accel=qtest`): only explicit warps move it (cpus.c
  qtest_clock_warp, driven by qtest.c's clock_step/clock_set).

A `TimerQueue` is one heap of deadlines; the Machine keeps one on the host clock
(seconds) and one on the virtual clock (nanoseconds).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import attrs


@attrs.define(kw_only=True)
class Clock:
    """Monotonic seconds (trio's clock in the server) and the wall clock derived from it.

    Wall time is anchored once, so a test that fixes `wall_origin` and runs on a
    MockClock sees the same timestamps every run.
    """

    monotonic: Callable[[], float]
    wall_origin: float
    mono_origin: float

    @classmethod
    def anchored(cls, monotonic: Callable[[], float], wall_now: float) -> Clock:
        return cls(monotonic=monotonic, wall_origin=wall_now, mono_origin=monotonic())

    def now(self) -> float:
        return self.monotonic()

    def wall(self) -> float:
        return self.wall_origin + (self.monotonic() - self.mono_origin)


class VirtualClock(Protocol):
    """QEMU_CLOCK_VIRTUAL as the Machine drives it (`now`: host monotonic seconds)."""

    def read(self, now: float) -> int: ...

    def start(self, now: float) -> None: ...

    def stop(self, now: float) -> None: ...

    def host_deadline(self, ns: int, now: float) -> float:
        """When the host clock will have moved this clock to `ns` (inf: not by itself)."""
        ...


@attrs.define(kw_only=True)
class RunningVirtualClock:
    """Guest time that passes with host time while the VM runs (cpus.c timers_state)."""

    offset_ns: int = 0                 # time accumulated up to the last stop
    started_at: float | None = None    # host time of the last start, while running

    def read(self, now: float) -> int:
        if self.started_at is None:
            return self.offset_ns
        return self.offset_ns + round((now - self.started_at) * 1e9)

    def start(self, now: float) -> None:
        """cpu_enable_ticks."""
        if self.started_at is None:
            self.started_at = now

    def stop(self, now: float) -> None:
        """cpu_disable_ticks: the time so far is kept, nothing more accrues."""
        self.offset_ns = self.read(now)
        self.started_at = None

    def host_deadline(self, ns: int, now: float) -> float:
        if self.started_at is None:
            return math.inf
        return self.started_at + (ns - self.offset_ns) / 1e9


@attrs.define(kw_only=True)
class SteppedVirtualClock:
    """Guest time under the qtest accelerator: it moves only when warped."""

    value_ns: int = 0

    def read(self, now: float) -> int:
        return self.value_ns

    def start(self, now: float) -> None:
        pass

    def stop(self, now: float) -> None:
        pass

    def host_deadline(self, ns: int, now: float) -> float:
        return now if ns <= self.value_ns else math.inf

    def warp(self, ns: int) -> None:
        self.value_ns = max(self.value_ns, ns)


@attrs.define(eq=False)
class Timer:
    """One scheduled callback; `cancel()` keeps it from running."""

    deadline: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@attrs.define(kw_only=True)
class TimerQueue:
    """Timers of one clock in deadline order (ties in the order they were added)."""

    _heap: list[tuple[float, int, Timer]] = attrs.Factory(list)
    _seq: Iterator[int] = attrs.Factory(itertools.count)

    def add(self, deadline: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._seq), timer))
        return timer

    def earliest(self) -> float:
        """The first live deadline (inf: none)."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def pop_due(self, now: float) -> Timer | None:
        """The next timer due at `now`, removed from the queue (None: nothing due)."""
        if self.earliest() > now:
            return None
        return heapq.heappop(self._heap)[2]
