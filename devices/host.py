"""What the board's devices need from the machine that hosts them.

Part of the pure `devices` layer. A device model never imports `vmm`: it asks its
host for what real hardware would ask the rest of QEMU for, through this Protocol,
which `vmm.machine.core.Machine` satisfies structurally:

- the main-loop requests a guest can make through a device: a reset
  (qemu_system_reset_request with SHUTDOWN_CAUSE_GUEST_RESET), a power-off
  (qemu_system_shutdown_request with SHUTDOWN_CAUSE_GUEST_SHUTDOWN), suspend to
  RAM (qemu_system_suspend_request), suspend to disk (SUSPEND_DISK, then a guest
  power-off: hw/acpi/core.c acpi_pm1_cnt_write), a panic
  (qemu_system_guest_panicked) and a watchdog expiry (watchdog_perform_action);
- QEMU_CLOCK_VIRTUAL: its value, and timers on it.

Tests use `RecordingDeviceHost`, which records the requests in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class DeviceHost(Protocol):
    """The Machine as the board's devices see it."""

    def guest_reset(self) -> None: ...

    def guest_poweroff(self) -> None: ...

    def guest_suspend(self) -> None: ...

    def guest_suspend_disk(self) -> None: ...

    def guest_panicked(self) -> None: ...

    def watchdog_expired(self) -> None: ...

    def vm_clock_ns(self) -> int:
        """qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)."""

    def vm_call_at(self, deadline_ns: int, callback: Callable[[], None]) -> TimerHandle:
        """timer_mod on QEMU_CLOCK_VIRTUAL: `callback` once the clock reaches
        `deadline_ns` (the handle's `cancel` is timer_del)."""


class _Timer:
    def __init__(self, host: RecordingDeviceHost, deadline_ns: int,
                 callback: Callable[[], None]) -> None:
        self.host = host
        self.deadline_ns = deadline_ns
        self.callback = callback

    def cancel(self) -> None:
        if self in self.host.timers:
            self.host.timers.remove(self)


class RecordingDeviceHost:
    """A stand-alone host: records every request; `advance` moves its virtual clock
    and runs the timers due on the way."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.vm_clock = 0
        self.timers: list[_Timer] = []

    def guest_reset(self) -> None:
        self.requests.append("reset")

    def guest_poweroff(self) -> None:
        self.requests.append("poweroff")

    def guest_suspend(self) -> None:
        self.requests.append("suspend")

    def guest_suspend_disk(self) -> None:
        self.requests.append("suspend-disk")

    def guest_panicked(self) -> None:
        self.requests.append("panicked")

    def watchdog_expired(self) -> None:
        self.requests.append("watchdog")

    def vm_clock_ns(self) -> int:
        return self.vm_clock

    def vm_call_at(self, deadline_ns: int, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self, deadline_ns, callback)
        self.timers.append(timer)
        return timer

    def advance(self, ns: int) -> None:
        target = self.vm_clock + ns
        while True:
            due = [t for t in self.timers if t.deadline_ns <= target]
            if not due:
                break
            first = min(due, key=lambda t: t.deadline_ns)
            self.timers.remove(first)
            self.vm_clock = max(self.vm_clock, first.deadline_ns)
            first.callback()
        self.vm_clock = target

    def take(self) -> list[str]:
        out, self.requests = self.requests, []
        return out
