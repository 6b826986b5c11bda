"""virtio-balloon: the target, the guest driver's `actual`, and the guest statistics.

Pure model of the `devices` layer [balloon.c have_balloon, qmp_balloon,
qmp_query_balloon, qemu_add_balloon_handler; hw/virtio/virtio-balloon.c
virtio_balloon_to_target, virtio_balloon_set_config, virtio_balloon_stat,
balloon_stats_get_all, balloon_stats_set_poll_interval]. Sizes are bytes, the
device counts 4 KiB pages (VIRTIO_BALLOON_PFN_SHIFT 12). The guest driver's side
(moving `actual` toward `num_pages`, answering the statistics queue) is played by
`devices.machine_commands`, which owns the timers; this model only records what the
device sees.
"""

from __future__ import annotations

from typing import Any

import attrs

from schema.errors import QERR_INVALID_PARAMETER_VALUE, DeviceNotActive, GenericError

PFN_SHIFT = 12
# virtio-balloon.c balloon_stat_names, in VIRTIO_BALLOON_S_* order.
STAT_NAMES = ("stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
              "stat-free-memory", "stat-total-memory", "stat-available-memory")
UNSET = 0xFFFFFFFFFFFFFFFF  # reset_stats: an item the guest did not report


@attrs.define(kw_only=True)
class Balloon:
    """One virtio-balloon device (QEMU accepts only one)."""

    qom_path: str  # the virtio-balloon-device (a proxy's virtio-backend)
    id: str | None = None
    num_pages: int = 0  # what the host asks the guest to give up
    actual: int = 0     # what the guest says it gave up
    stats: list[int] = attrs.Factory(lambda: [UNSET] * len(STAT_NAMES))
    last_update: int = 0
    poll_interval: int = 0  # seconds; 0: the statistics timer is off

    def actual_bytes(self, ram_size: int) -> int:
        """virtio_balloon_stat: RAM (with the plugged DIMMs) less the balloon."""
        return ram_size - (self.actual << PFN_SHIFT)

    def to_target(self, target: int, ram_size: int) -> None:
        """virtio_balloon_to_target: the target is capped at RAM."""
        target = min(target, ram_size)
        if target:
            self.num_pages = (ram_size - target) >> PFN_SHIFT

    def set_actual(self, pages: int, ram_size: int) -> int | None:
        """virtio_balloon_set_config: the guest wrote `actual`; the new size for
        BALLOON_CHANGE when it changed."""
        old, self.actual = self.actual, pages
        return None if pages == old else self.actual_bytes(ram_size)

    def guest_stats(self) -> dict[str, Any]:
        """balloon_stats_get_all: the `guest-stats` property."""
        return {"last-update": self.last_update,
                "stats": dict(zip(STAT_NAMES, self.stats, strict=True))}

    def set_poll_interval(self, value: int) -> bool:
        """balloon_stats_set_poll_interval; True when the timer is to be (re)armed
        now, False when it stopped or nothing changed."""
        if value < 0:
            raise GenericError("timer value must be greater than zero")
        if value > 0xFFFFFFFF:
            raise GenericError("timer value is too big")
        if value == self.poll_interval:
            return False
        self.poll_interval = value
        return value != 0


def have_balloon(balloon: Balloon | None) -> Balloon:
    """balloon.c have_balloon (the KVM sync-MMU case never arises: TCG, or a KVM
    with synchronous MMU)."""
    if balloon is None:
        raise DeviceNotActive("No balloon device has been activated")
    return balloon


def check_target(target: int) -> None:
    """balloon.c qmp_balloon."""
    if target <= 0:
        raise GenericError(QERR_INVALID_PARAMETER_VALUE % ("target", "a size"))
