"""The block data path's one wait: a throttled request waits on the Machine's clock.

Edge module of the `blockdev` layer (it imports trio). The pure model
(`blockdev.io.blk_throttle_deadline`) says when a request may go; an async frontend
(the NBD server, any trio task submitting guest I/O) awaits `blk_co_wait` and then
submits through `blockdev.io`'s synchronous `blk_*` functions with no await in
between, so that the request is charged to its throttle buckets before another
waiter looks at them [block/throttle-groups.c throttle_group_co_io_limits_intercept:
the waiter is released by the timer, then throttle_account].
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from blockdev.graph import Backend
from blockdev.io import blk_throttle_deadline


async def blk_co_wait(blk: Backend, op: str, nbytes: int, now: Callable[[], float]) -> None:
    """Sleep until a request of `op` ("read", "write", "zero", "discard" or
    "flush") and `nbytes` may go through `blk`'s throttling. `now` reads the
    Machine's clock, which in the server is trio's clock (`trio.sleep_until`
    takes the same time base)."""
    if op not in ("read", "write", "zero"):
        return
    while True:
        t = now()
        deadline = blk_throttle_deadline(blk, op, nbytes, t)
        if deadline <= t:
            return
        await trio.sleep_until(deadline)
