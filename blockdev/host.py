"""What the block layer needs from the machine that hosts it.

Part of the pure `blockdev` layer. The block model never imports `vmm`; it talks to
its host through this Protocol, which `vmm.machine.core.Machine` satisfies structurally:
publish an event, request a VM stop (BLOCK_IO_ERROR's `stop` action, vl.c
qemu_system_vmstop_request), read the run state, read the clocks (the host's, and the
guest's virtual clock QEMU_CLOCK_VIRTUAL, which advances only while the VM runs),
draw from the machine's random source (the identifiers of new images), find a
device by its qdev id (a device the block layer did not attach has no BlockBackend),
run an edge's task on the machine's nursery (the NBD server), report an error as
QEMU's error_report does, and read the current value of a guest behaviour the block
layer declares (`TRAY_BEHAVIOURS`, declared here: how the guest answers an eject
request; the Machine's registry holds their values, `blockdev.media` reads them), and
the guest's disk workload (`WORKLOAD_BEHAVIOURS`, read by `blockdev.workload`), open
and close files as qemu_open/qemu_close do (a `/dev/fdset/N` name is a descriptor of
the machine's fd sets), and print on QEMU's stdout. Tests use `RecordingHost`, a plain
in-memory host.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from schema.errors import DeviceNotFound, GenericError
from schema.handlers import Behaviour, BehaviourError, choice, seconds

# The guest's answer to an eject request (a locked tray: blk_dev_eject_request).
EJECT_REQUEST = Behaviour(
    "cdrom-eject-request",
    "what the guest does when the monitor asks it to eject a locked CD-ROM tray",
    choice("open", "ignore"), os="open", firmware="ignore")
EJECT_DELAY = Behaviour(
    "cdrom-eject-delay", "seconds from an eject request to the guest opening the tray",
    seconds, os=0.1, firmware=0.1)

TRAY_BEHAVIOURS = (EJECT_REQUEST, EJECT_DELAY)


def _positive_int(what: str, low: int, high: int) -> Any:
    def convert(value: Any) -> int:
        try:
            number = int(value, 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise BehaviourError(f"expects {what}") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise BehaviourError(f"expects {what}")
        return number
    return convert


WORKLOAD = Behaviour(
    "guest-workload", "how the guest writes to its disks: off, sequential or random",
    choice("off", "sequential", "random"), os="off", firmware="off")
WORKLOAD_RATE = Behaviour(
    "guest-workload-rate", "bytes per second the guest writes to each disk",
    _positive_int("a number of bytes per second from 1", 1, 2**40), os=1 << 20,
    firmware=1 << 20)
WORKLOAD_REQUEST = Behaviour(
    "guest-workload-request", "bytes of each guest write (a multiple of 512)",
    _positive_int("a number of bytes from 512 to 2097152", 512, 2 << 20), os=65536,
    firmware=65536)
WORKLOAD_PATTERN = Behaviour(
    "guest-workload-pattern", "the byte the guest writes",
    _positive_int("a byte value", 0, 255), os=0xA5, firmware=0xA5)
WORKLOAD_BEHAVIOURS = (WORKLOAD, WORKLOAD_RATE, WORKLOAD_REQUEST, WORKLOAD_PATTERN)

# The simulated disks' speed for block jobs without a rate limit (speed 0).
JOB_BANDWIDTH = Behaviour(
    "block-job-bandwidth",
    "bytes per second the disks move for a block job that has no speed limit",
    _positive_int("a number of bytes per second from 1", 1, 2**50), os=1 << 30,
    firmware=1 << 30)
JOB_BEHAVIOURS = (JOB_BANDWIDTH,)


class RunStateLike(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def running(self) -> bool: ...


class ClockLike(Protocol):
    def now(self) -> float: ...

    def wall(self) -> float: ...


class BehavioursLike(Protocol):
    def get(self, name: str) -> Any:
        """The current value of the guest behaviour `name`."""


class BlockHost(Protocol):
    """The Machine as the block layer sees it."""

    @property
    def runstate(self) -> RunStateLike: ...

    @property
    def clock(self) -> ClockLike: ...

    @property
    def behaviours(self) -> BehavioursLike:
        """The simulated guest's behaviours (those of TRAY_BEHAVIOURS among them)."""

    @property
    def rng(self) -> random.Random:
        """The machine's random source (UUIDs and CIDs of the images it creates)."""

    def vm_clock_ns(self) -> int:
        """qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL): nanoseconds the VM has run."""

    def emit(self, name: str, data: dict[str, Any] | None = None) -> Any: ...

    def request_vmstop(self, state: str) -> None: ...

    def kick(self) -> None:
        """Work became due earlier than the host's last `next_deadline()`: ask again."""

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run an edge's async function (the NBD listener, its clients) on the
        machine's nursery."""

    def error_report(self, text: str) -> None:
        """error_report outside a monitor command (QEMU's stderr)."""

    #: QEMU's own stdout (printf outside a monitor: bdrv_img_create's `Formatting` line).
    stdout: Callable[[str], None]

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """util/osdep.c qemu_open: `/dev/fdset/N` dups a descriptor of the host's fd
        set N (monitor_fdset_get_fd, monitor_fdset_dup_fd_add), any other name is
        opened; raises OSError with errno set."""

    def qemu_close(self, fd: int) -> None:
        """util/osdep.c qemu_close: a descriptor dup'ed from an fd set leaves it."""

    def find_device_state(self, qdev_id: str) -> object:
        """qdev-monitor.c find_device_state: the device `qdev_id` names (an id under
        /machine/peripheral, or an absolute QOM path); DeviceNotFound `Device '<id>'
        not found`, or GenericError `<id> is not a hotpluggable device` for an object
        that is not a device."""


class _State:
    def __init__(self, state: str) -> None:
        self.state = state

    @property
    def running(self) -> bool:
        return self.state == "running"


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.wall_origin = 1.5e9

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.wall_origin + self.t


class _Behaviours:
    """The block layer's guest behaviours at a profile's values; a test sets others."""

    def __init__(self, profile: str) -> None:
        self.values: dict[str, Any] = {b.name: b.default(profile)
                                       for b in (*TRAY_BEHAVIOURS, *WORKLOAD_BEHAVIOURS)}

    def get(self, name: str) -> Any:
        return self.values[name]


class RecordingHost:
    """A stand-alone host: records events and stop requests (for tests and tools)."""

    def __init__(self, state: str = "running", profile: str = "os") -> None:
        self.runstate = _State(state)
        self.clock = _Clock()
        self.behaviours = _Behaviours(profile)
        self.rng = random.Random(0)
        self.vm_clock = 0  # QEMU_CLOCK_VIRTUAL in ns: a test sets it
        # The QOM objects outside the block layer: canonical path -> is it a device.
        self.qom: dict[str, bool] = {}
        self.events: list[tuple[str, dict[str, Any] | None]] = []
        self.vmstop_requests: list[str] = []
        self.kicks = 0
        self.spawned: list[Callable[[], Awaitable[None]]] = []
        self.reports: list[str] = []
        self.printed: list[str] = []  # what QEMU would print on its stdout
        self.stdout: Callable[[str], None] = self.printed.append

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.spawned.append(fn)

    def error_report(self, text: str) -> None:
        self.reports.append(text)

    def vm_clock_ns(self) -> int:
        return self.vm_clock

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """No fd sets: every name is a file."""
        return os.open(name, flags | os.O_CLOEXEC, mode)

    def qemu_close(self, fd: int) -> None:
        os.close(fd)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((name, data))

    def request_vmstop(self, state: str) -> None:
        self.vmstop_requests.append(state)
        self.runstate.state = state

    def kick(self) -> None:
        self.kicks += 1

    def find_device_state(self, qdev_id: str) -> object:
        path = qdev_id if qdev_id.startswith("/") else f"/machine/peripheral/{qdev_id}"
        is_device = self.qom.get(path)
        if is_device is None or (not is_device and not qdev_id.startswith("/")):
            raise DeviceNotFound(f"Device '{qdev_id}' not found")
        if not is_device:
            raise GenericError(f"{qdev_id} is not a hotpluggable device")
        return path

    def take_events(self) -> list[tuple[str, dict[str, Any] | None]]:
        out, self.events = self.events, []
        return out
