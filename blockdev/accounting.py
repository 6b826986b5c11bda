"""Block accounting: what `query-blockstats` counts of a BlockBackend's requests.

Pure leaf of the `blockdev` layer [block/accounting.c]. The frontends that account
(guest devices, qemu-io's aio_read/aio_write) call it through `blockdev.io`'s
`account=True`; the statistics live in the BlockBackend (`graph.AcctStats`).
"""

from __future__ import annotations

from blockdev.graph import Backend

# A simulated request takes this long (only visible in *_total_time_ns).
LATENCY_NS = 100_000


def done(blk: Backend, op: str, nbytes: int, error: int | None, now_ns: int) -> None:
    """block_acct_done, or block_acct_failed when `error` is set."""
    stats = blk.stats
    if error is not None:
        stats.failed_ops[op] += 1
        if stats.account_failed:
            stats.total_time_ns[op] += LATENCY_NS
            stats.last_access_time_ns = now_ns
            stats.accessed = True
        return
    stats.nr_bytes[op] += nbytes
    stats.nr_ops[op] += 1
    stats.total_time_ns[op] += LATENCY_NS
    stats.last_access_time_ns = now_ns
    stats.accessed = True


def invalid(blk: Backend, op: str, now_ns: int) -> None:
    """block_acct_invalid: a request refused before it went (out of range,
    read-only medium)."""
    stats = blk.stats
    stats.invalid_ops[op] += 1
    if stats.account_invalid:
        stats.last_access_time_ns = now_ns
        stats.accessed = True
