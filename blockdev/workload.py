"""The simulated guest's disk workload: writes at a configured rate and pattern.

Pure model of the `blockdev` layer. No guest code runs, so a guest that writes to
its disks is a named guest behaviour (`guest-workload`, off by default): while the
VM runs, every `request / rate` seconds of the Machine's clock each disk a device
uses (a BlockBackend with a device, writable, with a medium, not a CD-ROM) gets
one write of `guest-workload-request` bytes of the pattern byte, sequential (wrapping
at the end of the disk) or at random request-aligned offsets. A disk whose I/O
limits (block_set_io_throttle, a throttle node) do not let the write go yet skips
that round, so its throughput is the throttled one. The writes go
through `blockdev.guest_io.submit`, so they are accounted, dirty bitmaps, fire
write thresholds and meet the device's rerror/werror policy like any guest
request (a `stop` action stops the VM, and with it the workload).

The behaviours are declared with the block layer's others in `blockdev.host`.
It is deadline-driven: `next_deadline()` is the next write's time, `run_due(now)`
issues what is due (at most `MAX_CATCH_UP` rounds at once: a guest that fell
behind does not burst).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.host import (
    WORKLOAD,
    WORKLOAD_BEHAVIOURS,
    WORKLOAD_PATTERN,
    WORKLOAD_RATE,
    WORKLOAD_REQUEST,
    BlockHost,
)

if TYPE_CHECKING:
    from blockdev.graph import Backend

__all__ = ["WORKLOAD_BEHAVIOURS", "GuestWorkload"]

MAX_CATCH_UP = 64


@attrs.define(kw_only=True)
class GuestWorkload:
    """When the next guest writes are due, and where each disk's sequence is."""

    next_at: float | None = None
    offsets: dict[int, int] = attrs.Factory(dict)  # id(blk) -> next sequential offset

    def _mode(self, host: BlockHost) -> str:
        try:
            return str(host.behaviours.get(WORKLOAD.name))
        except KeyError:
            return "off"  # a host that does not declare the workload

    def next_deadline(self, host: BlockHost) -> float:
        if self._mode(host) == "off" or not host.runstate.running:
            return math.inf
        if self.next_at is None:
            return host.clock.now()  # due now: run_due schedules the first write
        return self.next_at

    def interval(self, host: BlockHost) -> float:
        size = int(host.behaviours.get(WORKLOAD_REQUEST.name))
        rate = int(host.behaviours.get(WORKLOAD_RATE.name))
        return size / rate

    def run_due(self, host: BlockHost, backends: list[Backend], now: float,
                submit: Any) -> None:
        """Issue the writes due at `now`; `submit(blk, offset, length, pattern)` is
        the guest request (`blockdev.guest_io.submit`)."""
        mode = self._mode(host)
        if mode == "off" or not host.runstate.running:
            self.next_at = None
            return
        interval = self.interval(host)
        if self.next_at is None:
            self.next_at = now + interval
            return
        rounds = 0
        while self.next_at <= now and rounds < MAX_CATCH_UP:
            self._round(host, backends, mode, submit, self.next_at)
            self.next_at += interval
            rounds += 1
            if not host.runstate.running:
                self.next_at = None
                return
        if self.next_at <= now:
            self.next_at = now + interval

    def _round(self, host: BlockHost, backends: list[Backend], mode: str, submit: Any,
               now: float) -> None:
        size = int(host.behaviours.get(WORKLOAD_REQUEST.name))
        pattern = int(host.behaviours.get(WORKLOAD_PATTERN.name))
        for blk in list(backends):
            dev = blk.dev
            bs = blk.bs
            if dev is None or dev.has_tray or bs is None or not blk.is_available() \
                    or blk.is_read_only():
                continue
            length = bs.length()
            if length < size:
                continue
            if blk.throttle_tg is not None or _has_throttle_node(blk):
                from blockdev.io import blk_throttle_deadline

                if blk_throttle_deadline(blk, "write", size, now) > now:
                    continue  # the guest's request waits in the throttle queue
            slots = length // size
            if mode == "random":
                offset = host.rng.randrange(slots) * size
            else:
                offset = self.offsets.get(id(blk), 0)
                if offset + size > length:
                    offset = 0
                self.offsets[id(blk)] = offset + size
            submit(blk, offset, size, pattern)
            if not host.runstate.running:
                return


def _has_throttle_node(blk: Backend) -> bool:
    bs = blk.bs
    while bs is not None and bs.driver is not None:
        if bs.driver.format_name == "throttle":
            return True
        bs = bs.file_bs
    return False
