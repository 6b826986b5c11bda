"""The Machine: one simulated VM, the owner of its subsystems, events, clock and timers.

Composition layer of `vmm`, still synchronous and free of trio: the server drives it.
A Machine holds the run state, the event bus, the simulated guest and (as their
issues land) the block layer, devices and migration. It mirrors QEMU's main loop:
commands and guest actions *request* a reset, shutdown, power-down, wake-up or
suspend, and `process_requests` carries them out in vl.c's order
(`../shared/reference/runstate.md` §4), which is why such events follow the reply of
the command that asked for them. Time-driven work (guest reactions, throttled
events, later jobs and migration) is a deadline: `next_deadline()` says when to call
`run_timers(now)`.

Every clock read goes through `Machine.clock`, so tests on trio's MockClock are exact.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from schema.catalog import Catalog
from schema.errors import DeviceNotFound
from schema.model import Schema
from vmm.machine.events import Event, EventBus
from vmm.machine.fds import FdSets
from vmm.machine.guest import Guest, GuestBehaviour
from vmm.machine.runstate import RunState

# include/sysemu/sysemu.h ShutdownCause, as the wire-visible "guest" flag needs it.
GUEST_CAUSES = frozenset({"guest-shutdown", "guest-reset", "guest-panic"})


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


@attrs.frozen
class MachineOptions:
    """What the command line (or a test) decides about a machine."""

    name: str | None = None
    uuid: str = "00000000-0000-0000-0000-000000000000"
    machine_type: str = "pc-i440fx-2.11"
    accel: str = "tcg"
    cpu_model: str | None = None
    ram_bytes: int = 128 * 1024 * 1024
    smp_cpus: int = 1
    max_cpus: int = 1
    start_paused: bool = False  # -S
    incoming: str | None = None
    no_shutdown: bool = False
    no_reboot: bool = False
    singlestep: bool = False
    watchdog_action: str = "reset"
    package: str = " (v2.11.0)"
    strict: bool = False  # a reply or event the schema rejects is an error, not a log line
    new_glib: bool = False
    guest: GuestBehaviour = attrs.Factory(GuestBehaviour)
    # -object iothread: (id, poll-max-ns, poll-grow, poll-shrink)
    iothreads: tuple[tuple[str, int, int, int], ...] = ()
    pid: int = 0  # the emulator's process id (reported as every iothread's thread id)
    vmgenid_guid: str | None = None


@attrs.define(kw_only=True)
class _Requests:
    """vl.c's pending main-loop requests (one slot each, as in QEMU)."""

    reset: str | None = None      # the cause
    shutdown: str | None = None   # the cause
    powerdown: bool = False
    wakeup: bool = False
    suspend: bool = False
    debug: bool = False
    vmstop: str | None = None     # the run state to stop to

    def any(self) -> bool:
        return bool(self.reset or self.shutdown or self.powerdown or self.wakeup or
                    self.suspend or self.debug or self.vmstop)


@attrs.define(kw_only=True)
class Machine:
    """One VM. Build it with `Machine.create`."""

    schema: Schema
    catalog: Catalog
    options: MachineOptions
    clock: Clock
    runstate: RunState
    events: EventBus
    guest: Guest
    fdsets: FdSets
    no_shutdown: bool
    watchdog_action: str
    autostart: bool
    requests: _Requests = attrs.Factory(_Requests)
    exit_code: int | None = None
    subsystems: dict[str, Any] = attrs.Factory(dict)
    kick: Callable[[], None] = lambda: None  # the server's "recompute your deadline"
    rng: random.Random = attrs.Factory(random.Random)  # g_random_*: new images' UUIDs
    # QEMU_CLOCK_VIRTUAL: ticks from vm_start to the next do_vm_stop [cpus.c
    # cpu_enable_ticks, cpu_disable_ticks]; nanoseconds banked, and since when it runs.
    _vclock_ns: int = 0
    _vclock_since: float | None = None
    _timers: list[tuple[float, int, Callable[[], None]]] = attrs.Factory(list)
    _seq: Any = attrs.Factory(itertools.count)
    _cont_hooks: list[Callable[[], None]] = attrs.Factory(list)
    _start_hooks: list[Callable[[], None]] = attrs.Factory(list)

    @classmethod
    def create(cls, *, schema: Schema, catalog: Catalog, options: MachineOptions,
               clock: Clock) -> Machine:
        machine = cls(
            schema=schema,
            catalog=catalog,
            options=options,
            clock=clock,
            runstate=RunState(singlestep=options.singlestep),
            events=EventBus(schema=schema, strict=options.strict),
            guest=Guest(behaviour=options.guest),
            fdsets=FdSets(),
            no_shutdown=options.no_shutdown,
            watchdog_action=options.watchdog_action,
            autostart=not options.start_paused,
        )
        machine.guest.machine = machine
        return machine

    def start(self) -> None:
        """What vl.c's main() does after the machine is built, before the main loop."""
        if self.options.incoming is not None:
            self.runstate.set("inmigrate")
        elif self.autostart:
            # The start-up RESUME goes out before any monitor could have negotiated.
            self.vm_start()

    # -- clock and events ----------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def find_device_state(self, qdev_id: str) -> object:
        """qdev-monitor.c find_device_state for the block layer: the machine has no
        QOM tree of its own yet (the devices issue builds it), so only the block
        devices the block layer attached exist, and it finds those itself."""
        raise DeviceNotFound(f"Device '{qdev_id}' not found")

    def vm_clock_ns(self) -> int:
        """qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL): how long the VM has run."""
        ns = self._vclock_ns
        if self._vclock_since is not None:
            ns += round((self.clock.now() - self._vclock_since) * 1e9)
        return ns

    def emit(self, name: str, data: dict[str, Any] | None = None) -> Event:
        return self.events.emit(name, data, now=self.clock.now(), wall=self.clock.wall())

    def _emit_all(self, names: list[str]) -> None:
        for name in names:
            self.emit(name)

    # -- timers ---------------------------------------------------------------------

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (deadline, next(self._seq), callback))
        self.kick()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.call_at(self.clock.now() + delay, callback)

    def next_deadline(self) -> float:
        deadline = self._timers[0][0] if self._timers else math.inf
        deadline = min(deadline, self.events.next_deadline())
        for sub in self.subsystems.values():
            nd = getattr(sub, "next_deadline", None)
            if nd is not None:
                deadline = min(deadline, nd())
        return deadline

    def run_timers(self, now: float) -> None:
        """Run everything due at `now`, then whatever main-loop work it requested."""
        self.events.run_due(now)
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            callback()
        for sub in self.subsystems.values():
            run = getattr(sub, "run_due", None)
            if run is not None:
                run(now)
        self.process_requests()

    # -- hooks for subsystems -------------------------------------------------------

    def on_cont(self, hook: Callable[[], None]) -> None:
        """Run `hook` when `cont` resets I/O status (block layer)."""
        self._cont_hooks.append(hook)

    def on_vm_start(self, hook: Callable[[], None]) -> None:
        self._start_hooks.append(hook)

    # -- the primitives of cpus.c --------------------------------------------------------

    def vm_stop(self, state: str) -> None:
        events = self.runstate.vm_stop(state)
        if events:
            self._disable_ticks()
        self._emit_all(events)

    def vm_start(self) -> None:
        events = self.runstate.vm_start()
        if events and self._vclock_since is None:
            self._vclock_since = self.clock.now()
        self._emit_all(events)
        if events:
            for hook in list(self._start_hooks):
                hook()
            self.guest.on_vm_start()

    def vm_stop_force(self, state: str) -> None:
        was_running = self.runstate.running
        events = self.runstate.vm_stop_force(state)
        if was_running:
            self._disable_ticks()
        self._emit_all(events)

    def _disable_ticks(self) -> None:
        if self._vclock_since is not None:
            self._vclock_ns = self.vm_clock_ns()
            self._vclock_since = None

    # -- requests (vl.c qemu_system_*_request) -----------------------------------------

    def request_reset(self, cause: str) -> None:
        if self.options.no_reboot:
            self.requests.shutdown = cause
        else:
            self.requests.reset = cause
        self.kick()

    def request_shutdown(self, cause: str) -> None:
        self.requests.shutdown = cause
        self.kick()

    def request_powerdown(self) -> None:
        self.requests.powerdown = True
        self.kick()

    def request_suspend(self) -> None:
        if self.runstate.state == "suspended":
            return
        self.requests.suspend = True
        self.kick()

    def request_wakeup(self) -> None:
        if self.runstate.state != "suspended":
            return
        self.runstate.set("running")
        self.requests.wakeup = True
        self.kick()

    def request_vmstop(self, state: str) -> None:
        self.requests.vmstop = state
        self.kick()

    def request_debug(self) -> None:
        self.requests.debug = True
        self.kick()

    def process_requests(self) -> None:
        """vl.c main_loop_should_exit, repeated until nothing is pending."""
        req = self.requests
        while req.any() and self.exit_code is None:
            if req.debug:
                req.debug = False
                self.vm_stop("debug")
            if req.suspend:
                req.suspend = False
                self.runstate.set("suspended")
                self.emit("SUSPEND")
            if req.shutdown is not None:
                cause, req.shutdown = req.shutdown, None
                self.emit("SHUTDOWN", {"guest": cause in GUEST_CAUSES})
                if self.no_shutdown:
                    self.vm_stop("shutdown")
                else:
                    self.exit_code = 0
                    return
            if req.reset is not None:
                cause, req.reset = req.reset, None
                self.system_reset(cause)
                if self.runstate.state not in ("running", "inmigrate"):
                    self.runstate.set("prelaunch")
            if req.wakeup:
                req.wakeup = False
                self.guest.on_reset()  # qemu_system_wakeup resets the machine silently
                self.emit("WAKEUP")
            if req.powerdown:
                req.powerdown = False
                self.emit("POWERDOWN")
                self.guest.on_power_button()
            if req.vmstop is not None:
                state, req.vmstop = req.vmstop, None
                self.vm_stop(state)

    def system_reset(self, cause: str) -> None:
        """qemu_system_reset: reset the devices, then say RESET (unless cause is none)."""
        for sub in self.subsystems.values():
            reset = getattr(sub, "reset", None)
            if reset is not None:
                reset()
        self.guest.on_reset()
        if cause != "none":
            self.emit("RESET", {"guest": cause in GUEST_CAUSES})

    # -- guest- and device-initiated changes (runstate.md §4) ---------------------------

    def guest_poweroff(self) -> None:
        """ACPI S5 or similar: the guest asks to be switched off."""
        self.request_shutdown("guest-shutdown")

    def guest_reset(self) -> None:
        self.request_reset("guest-reset")

    def guest_suspend(self) -> None:
        """ACPI S3 (only valid while running, as in QEMU)."""
        self.request_suspend()

    def guest_suspend_disk(self) -> None:
        """ACPI S4: SUSPEND_DISK, then a guest shutdown."""
        self.emit("SUSPEND_DISK")
        self.request_shutdown("guest-shutdown")

    def guest_panicked(self, info: dict[str, Any] | None = None) -> None:
        """vl.c qemu_system_guest_panicked."""
        data: dict[str, Any] = {"action": "pause"}
        if info is not None:
            data["info"] = info
        self.emit("GUEST_PANICKED", data)
        self.vm_stop("guest-panicked")
        if not self.no_shutdown:
            data = {"action": "poweroff"}
            if info is not None:
                data["info"] = info
            self.emit("GUEST_PANICKED", data)
            self.request_shutdown("guest-panic")

    def watchdog_expired(self) -> None:
        """hw/watchdog/watchdog.c watchdog_perform_action."""
        action = self.watchdog_action
        self.emit("WATCHDOG", {"action": action})
        if action == "reset":
            self.request_reset("guest-reset")
        elif action == "shutdown":
            self.request_powerdown()
        elif action == "poweroff":
            self.exit_code = 0
        elif action == "pause":
            self.request_vmstop("watchdog")
        # debug, none, inject-nmi change nothing a monitor can see

    def cont_hooks(self) -> None:
        for hook in list(self._cont_hooks):
            hook()
