"""The guest RAM as a migration sees it: a time-driven model of pages, passes and rates.

Pure model of the `migration` layer: nothing here reads a clock; the caller passes
`now` (the Machine's host clock, seconds). It follows QEMU 2.11's RAM migration
[migration/ram.c ram_save_setup, ram_find_and_save_block, save_zero_page,
migration_bitmap_sync, mig_throttle_guest_down, ram_save_pending] closely enough
that `query-migrate`'s `ram`, `xbzrle-cache` and `cpu-throttle-percentage` move as
QEMU's do (`../shared/reference/migration.md` §3):

- the first pass sends every page: the guest's used part as normal pages (a page
  header plus the page), the rest as zero pages (a header and one byte);
- while the VM runs, the guest dirties pages at the `migration-dirty-rate` behaviour
  (pages per second), slowed by the auto-converge throttle; each bitmap sync
  (MIGRATION_PASS) adds them to what remains;
- with xbzrle, pages sent again are sent as encoded differences when the cache holds
  them, and counted as cache misses when it does not;
- a sync more than a second after the previous one computes the dirty-page rate and,
  with auto-converge, may throttle the guest (cpu-throttle-initial, then
  -increment, up to 99 %).

The two behaviours it reads are declared in `migration.behaviours` (re-exported here),
which the composition root imports at start-up without this model.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from migration.behaviours import DIRTY_RATE, RAM_BEHAVIOURS, RAM_USED
from migration.params import PAGE_SIZE

__all__ = ["DIRTY_RATE", "RAM_BEHAVIOURS", "RAM_USED", "RamMigration", "ram_total"]

PAGE_HEADER = 8          # ram.c save_page_header: the offset and flags
ZERO_PAGE_COST = PAGE_HEADER + 1
XBZRLE_PAGE_COST = PAGE_HEADER + 3 + 256  # header, encoding header, a typical delta
# The small RAM blocks of a PC besides pc.ram (ROMs, ACPI tables): `total` is
# 134750208 for -m 128 on pc in the verified sample of migration.md §3.
EXTRA_RAM_BYTES = 134_750_208 - 128 * 1024 * 1024


def ram_total(machine_type: str, ram_bytes: int) -> int:
    """ram_bytes_total: every migrated RAM block (a board without firmware has only
    its main RAM)."""
    return ram_bytes + (0 if machine_type == "none" else EXTRA_RAM_BYTES)


@attrs.define(kw_only=True)
class RamMigration:
    """One outgoing migration's RAM state and counters (ram_counters, RAMState)."""

    total_bytes: int
    used_fraction: float
    xbzrle: bool = False
    xbzrle_cache_size: int = 64 * 1024 * 1024
    dirty_zero: int = 0
    dirty_normal: int = 0
    resent: int = 0  # of dirty_normal: pages sent before (xbzrle candidates)
    transferred: int = 0
    duplicate: int = 0
    normal: int = 0
    dirty_sync_count: int = 0
    postcopy_requests: int = 0
    dirty_pages_rate: int = 0
    dirtied: float = 0.0        # pages dirtied since the last sync
    period_dirty: float = 0.0   # num_dirty_pages_period
    last_sync_time: float = 0.0  # time_last_bitmap_sync
    bytes_xfer_prev: int = 0
    dirty_rate_high_cnt: int = 0
    throttle: int = 0           # cpu-throttle-percentage (0: not throttling)
    xbzrle_bytes: int = 0
    xbzrle_pages: int = 0
    cache_miss: int = 0
    cache_miss_rate: float = 0.0
    overflow: int = 0
    _miss_prev: int = 0
    _iterations_prev: int = 0
    iterations: int = 0

    @property
    def pages(self) -> int:
        return self.total_bytes // PAGE_SIZE

    def remaining(self) -> int:
        """ram_bytes_remaining: every dirty page."""
        return (self.dirty_zero + self.dirty_normal) * PAGE_SIZE

    def setup(self, now: float) -> None:
        """ram_save_setup: every page dirty, the first bitmap sync (MIGRATION_PASS 1)."""
        used = round(self.pages * self.used_fraction)
        self.dirty_normal = used
        self.dirty_zero = self.pages - used
        self.dirty_sync_count = 1
        self.last_sync_time = now

    def dirty(self, pages: float) -> None:
        """The guest wrote `pages` pages (not more than it has)."""
        self.dirtied = min(float(self.pages), self.dirtied + pages)

    def dirty_rate(self, rate: float) -> float:
        """The guest's dirtying rate under the auto-converge throttle."""
        return rate * (100 - self.throttle) / 100

    def send(self, budget: float) -> int:
        """Send pages for up to `budget` bytes; returns the bytes sent. A call sends
        at least one page while some are dirty (QEMU sends whole pages): pages sent
        before and dirtied again first (xbzrle-encoded while the cache holds the
        guest's working set), then the others, then zero pages."""
        normal_cost = PAGE_HEADER + PAGE_SIZE
        spent = 0

        def fit(cost: float, limit: int) -> int:
            left = budget - spent
            count = limit if left == math.inf else int(left // cost)
            return min(limit, max(1, count)) if spent == 0 else min(limit, count)

        if self.xbzrle and self.resent:
            used = max(1, round(self.pages * self.used_fraction))
            ratio = min(1.0, max(0, self.xbzrle_cache_size // PAGE_SIZE) / used)
            count = fit(ratio * XBZRLE_PAGE_COST + (1 - ratio) * normal_cost, self.resent)
            hits = int(count * ratio)
            misses = count - hits
            self.resent -= count
            self.dirty_normal -= count
            self.iterations += count
            self.xbzrle_pages += hits
            self.xbzrle_bytes += hits * (XBZRLE_PAGE_COST - PAGE_HEADER)
            self.cache_miss += misses
            self.normal += misses
            spent += hits * XBZRLE_PAGE_COST + misses * normal_cost
        plain = self.dirty_normal - (self.resent if self.xbzrle else 0)
        if plain:
            count = fit(normal_cost, plain)
            self.dirty_normal -= count
            self.resent = min(self.resent, self.dirty_normal)
            self.normal += count
            spent += count * normal_cost
        if self.dirty_zero:
            count = fit(ZERO_PAGE_COST, self.dirty_zero)
            self.dirty_zero -= count
            self.duplicate += count
            spent += count * ZERO_PAGE_COST
        self.transferred += spent
        return spent

    def send_all(self) -> int:
        return self.send(math.inf)

    def sync(self, now: float, *, auto_converge: bool, throttle_initial: int,
             throttle_increment: int) -> None:
        """migration_bitmap_sync: the dirtied pages join the dirty set; more than a
        second after the last computation, the rates and the throttle are updated."""
        new = int(self.dirtied)
        self.dirtied -= new
        self.period_dirty += new
        fresh = min(new, self.pages - self.dirty_normal - self.dirty_zero)
        self.dirty_normal += fresh
        self.resent = min(self.dirty_normal, self.resent + fresh)
        self.dirty_sync_count += 1
        if now > self.last_sync_time + 1.0:
            if auto_converge:
                xfer = self.transferred - self.bytes_xfer_prev
                if self.period_dirty * PAGE_SIZE > xfer / 2:
                    self.dirty_rate_high_cnt += 1
                    if self.dirty_rate_high_cnt >= 2:
                        self.dirty_rate_high_cnt = 0
                        self._throttle_down(throttle_initial, throttle_increment)
                self.bytes_xfer_prev = self.transferred
            if self.xbzrle and self.iterations > self._iterations_prev:
                self.cache_miss_rate = ((self.cache_miss - self._miss_prev) /
                                        (self.iterations - self._iterations_prev))
                self._iterations_prev = self.iterations
                self._miss_prev = self.cache_miss
            self.dirty_pages_rate = int(self.period_dirty / (now - self.last_sync_time))
            self.last_sync_time = now
            self.period_dirty = 0

    def _throttle_down(self, initial: int, increment: int) -> None:
        """mig_throttle_guest_down."""
        self.throttle = initial if not self.throttle else min(self.throttle + increment, 99)

    def stats(self, *, mbps: float, completed: bool) -> dict[str, Any]:
        """MigrationStats of `ram` (populate_ram_info)."""
        return {
            "transferred": self.transferred,
            "remaining": 0 if completed else self.remaining(),
            "total": self.total_bytes,
            "duplicate": self.duplicate,
            "skipped": 0,
            "normal": self.normal,
            "normal-bytes": self.normal * PAGE_SIZE,
            "dirty-pages-rate": 0 if completed else self.dirty_pages_rate,
            "mbps": mbps,
            "dirty-sync-count": self.dirty_sync_count,
            "postcopy-requests": self.postcopy_requests,
            "page-size": PAGE_SIZE,
        }

    def xbzrle_stats(self) -> dict[str, Any]:
        return {"cache-size": self.xbzrle_cache_size, "bytes": self.xbzrle_bytes,
                "pages": self.xbzrle_pages, "cache-miss": self.cache_miss,
                "cache-miss-rate": self.cache_miss_rate, "overflow": self.overflow}
