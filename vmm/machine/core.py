"""The Machine: one simulated VM, the owner of its subsystems, events, clocks and timers.

Composition layer of `vmm`, still synchronous and free of trio: the server drives it.
A Machine holds the run state, the event bus, the guest (`guest`), the behaviours
registry (`behaviours`), its trace events, and the subsystems plugged into it
(`plug`, the hooks of `vmm.machine.subsystem`). It mirrors QEMU's main loop:
commands and guest actions *request* a reset, shutdown, power-down, wake-up or
suspend, and `process_requests` carries them out in vl.c's order
(`../shared/reference/runstate.md` §4), which is why such events follow the reply of
the command that asked for them. Time-driven work (guest reactions, throttled
events, later jobs and migration) is a deadline: `next_deadline()` says when to call
`run_timers(now)`.

Every host clock read goes through `Machine.clock`, so tests on trio's MockClock are
exact; guest time is the virtual clock (`vm_clock_ns`), which only runs while the VM
does. Diagnostics (tracebacks of our bugs, schema mismatches) go to the Machine's own
logger, `vmm.vm.<name>`.
"""

from __future__ import annotations

import logging
import math
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import attrs

from schema.catalog import Catalog
from schema.errors import DeviceNotFound
from schema.handlers import Behaviour
from schema.model import Schema
from vmm.machine.clock import (
    Clock,
    RunningVirtualClock,
    SteppedVirtualClock,
    Timer,
    TimerQueue,
    VirtualClock,
)
from vmm.machine.events import Event, EventBus
from vmm.machine.fds import FdSets
from vmm.machine.guest import GUEST_BEHAVIOURS, Behaviours, Guest
from vmm.machine.runstate import RunState
from vmm.machine.subsystem import Subsystem
from vmm.machine.tasks import TaskFn, Tasks
from vmm.machine.trace import TraceEvents

__all__ = ["Board", "Clock", "Machine", "MachineOptions"]

# include/sysemu/sysemu.h ShutdownCause, as the wire-visible "guest" flag needs it.
GUEST_CAUSES = frozenset({"guest-shutdown", "guest-reset", "guest-panic"})


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
    smp_sockets: int = 1
    smp_cores: int = 1
    smp_threads: int = 1
    max_ram_bytes: int = 0  # -m maxmem (0: the same as ram_bytes)
    ram_slots: int = 0      # -m slots
    start_paused: bool = False  # -S
    incoming: str | None = None
    no_shutdown: bool = False
    no_reboot: bool = False
    singlestep: bool = False
    watchdog_action: str = "reset"
    package: str = " (v2.11.0)"
    strict: bool = False  # a reply or event the schema rejects is an error, not a log line
    new_glib: bool = False
    guest_profile: str = "os"  # --emu-guest
    # Behaviours changed from the profile's values (--emu-behaviour and friends), in order.
    behaviours: tuple[tuple[str, Any], ...] = ()
    # -object iothread: (id, poll-max-ns, poll-grow, poll-shrink)
    iothreads: tuple[tuple[str, int, int, int], ...] = ()
    pid: int = 0  # the emulator's process id (reported as every iothread's thread id)
    vmgenid_guid: str | None = None
    allow_exec_migration: bool = False  # --emu-allow-exec-migration: exec: URIs run


@attrs.frozen
class Board:
    """What the machine type's class gives the Machine.

    The PC machines (every type below `generic-pc-machine` in the recorded QOM tree)
    boot SeaBIOS, implement the NMI interface (hw/i386/pc.c pc_machine_info, TYPE_NMI)
    and create the vCPUs of `-smp`; `-machine none` (hw/core/null-machine.c
    machine_none_init) has no firmware, no NMI handler, and a vCPU only when `-cpu`
    names a model.
    """

    firmware: bool
    nmi: bool
    vcpus: int

    @classmethod
    def of(cls, options: MachineOptions, catalog: Catalog) -> Board:
        pc = "generic-pc-machine" in catalog.qom_ancestors(f"{options.machine_type}-machine")
        if pc:
            return cls(firmware=True, nmi=True, vcpus=options.smp_cpus)
        return cls(firmware=False, nmi=False, vcpus=1 if options.cpu_model else 0)


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


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


@attrs.define(kw_only=True)
class Machine:
    """One VM. Build it with `Machine.create`."""

    schema: Schema
    catalog: Catalog
    options: MachineOptions
    board: Board
    clock: Clock
    vm_clock: VirtualClock
    runstate: RunState
    events: EventBus
    behaviours: Behaviours
    fdsets: FdSets
    trace: TraceEvents
    log: logging.Logger
    no_shutdown: bool
    watchdog_action: str
    autostart: bool
    requests: _Requests = attrs.Factory(_Requests)
    exit_code: int | None = None
    # The hooks run in this order; the guest is first (it resets before the devices).
    subsystems: list[Subsystem] = attrs.Factory(list)
    kick: Callable[[], None] = lambda: None  # the server's "recompute your deadline"
    # dump.c dump_in_progress (devices.dump): stop and cont refuse to run meanwhile.
    dump_in_progress: Callable[[], bool] = lambda: False
    # qdev's find_device_state (devices.qdev), set by the composition root
    device_lookup: Callable[[str], object] | None = None
    nmi: Callable[[], None] = lambda: None  # hw/i386/pc.c x86_nmi: every CPU takes an NMI
    timers: TimerQueue = attrs.Factory(TimerQueue)     # host clock, seconds
    vm_timers: TimerQueue = attrs.Factory(TimerQueue)  # virtual clock, nanoseconds
    guest: Guest = attrs.field(init=False)  # needs the machine: set by `create`
    rng: random.Random = attrs.Factory(random.Random)  # g_random_*: new images' UUIDs
    tasks: Tasks = attrs.Factory(Tasks)  # background tasks of subsystem edges (NBD)
    # The process's stdout and stderr, where QEMU prints outside the monitor (HMP
    # qemu-io's printf); a test replaces them to read what was printed.
    stdout: Callable[[str], None] = attrs.field(default=lambda text: _write(sys.stdout, text))
    stderr: Callable[[str], None] = attrs.field(default=lambda text: _write(sys.stderr, text))

    @classmethod
    def create(cls, *, schema: Schema, catalog: Catalog, options: MachineOptions,
               clock: Clock, behaviours: Sequence[Behaviour] = GUEST_BEHAVIOURS) -> Machine:
        """A machine of `options`; `behaviours` are those of every subsystem composed
        into it (raises BehaviourError for a bad value in `options.behaviours`)."""
        board = Board.of(options, catalog)
        label = options.name if options.name else f"{id(options):x}"
        vm_clock: VirtualClock = (SteppedVirtualClock() if options.accel == "qtest"
                                  else RunningVirtualClock())
        machine = cls(
            schema=schema,
            catalog=catalog,
            options=options,
            board=board,
            clock=clock,
            vm_clock=vm_clock,
            runstate=RunState(singlestep=options.singlestep),
            events=EventBus(schema=schema, strict=options.strict),
            behaviours=Behaviours.create(behaviours, profile=options.guest_profile,
                                         overrides=options.behaviours),
            fdsets=FdSets(),
            trace=TraceEvents(catalog=catalog, vcpus=board.vcpus),
            log=logging.getLogger(f"vmm.vm.{label}"),
            no_shutdown=options.no_shutdown,
            watchdog_action=options.watchdog_action,
            autostart=not options.start_paused,
        )
        # Under the qtest accelerator the vCPUs never execute (cpus.c
        # qemu_dummy_start_vcpu): neither SeaBIOS nor an OS reacts to anything.
        runs = options.accel != "qtest"
        machine.guest = Guest(machine=machine, firmware=board.firmware and runs, os=runs)
        machine.plug(machine.guest)
        if options.incoming is not None:
            # vl.c sets inmigrate while it reads -incoming, before any device or
            # drive exists: the images of an incoming machine open inactive
            machine.runstate.set("inmigrate")
        return machine

    def plug(self, subsystem: Subsystem) -> None:
        """Add a subsystem: from now on its hooks run with the Machine's."""
        self.subsystems.append(subsystem)

    def start(self) -> None:
        """The end of vl.c's main(): a silent reset, then a VM start unless -S, or the
        wait for an incoming migration."""
        self.system_reset("none")
        if self.options.incoming is not None:
            if self.runstate.state != "inmigrate":
                self.runstate.set("inmigrate")
        elif self.autostart:
            # The start-up RESUME goes out before any monitor could have negotiated.
            self.vm_start()

    def close(self) -> None:
        """At exit: every subsystem closes (files, locks), the last plugged first."""
        for sub in reversed(self.subsystems):
            sub.close()

    # -- clocks and events -----------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def find_device_state(self, qdev_id: str) -> object:
        """qdev-monitor.c find_device_state for the block layer: the devices of the
        machine's QOM tree (`device_lookup`), with its errors."""
        if self.device_lookup is not None:
            return self.device_lookup(qdev_id)
        raise DeviceNotFound(f"Device '{qdev_id}' not found")

    def spawn(self, fn: TaskFn) -> None:
        """Run an edge's async function on the server's nursery (vmm.machine.tasks)."""
        self.tasks.spawn(fn)

    def qemu_open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """util/osdep.c qemu_open for the block layer: over the machine's fd sets."""
        return self.fdsets.qemu_open(name, flags, mode)

    def qemu_close(self, fd: int) -> None:
        """util/osdep.c qemu_close: over the machine's fd sets."""
        self.fdsets.qemu_close(fd)

    def error_report(self, text: str) -> None:
        """error_report outside a monitor command: QEMU prints it on stderr; here it
        goes to the machine's log."""
        self.log.warning("%s", text)

    def vm_clock_ns(self) -> int:
        """QEMU_CLOCK_VIRTUAL: nanoseconds of guest time (0 until the VM first runs;
        time spent stopped does not count)."""
        return self.vm_clock.read(self.clock.now())

    def emit(self, name: str, data: dict[str, Any] | None = None) -> Event:
        return self.events.emit(name, data, now=self.clock.now(), wall=self.clock.wall())

    def _emit_all(self, names: list[str]) -> None:
        for name in names:
            self.emit(name)

    # -- timers ---------------------------------------------------------------------

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` once the host clock reaches `deadline` (seconds)."""
        timer = self.timers.add(deadline, callback)
        self.kick()
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock.now() + delay, callback)

    def vm_call_at(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        """Run `callback` once the virtual clock reaches `deadline_ns`: only while the
        VM runs (qemu-timer.c: QEMU_CLOCK_VIRTUAL is disabled while vCPUs are paused)."""
        timer = self.vm_timers.add(deadline_ns, callback)
        self.kick()
        return timer

    def vm_call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """`callback` after `delay` seconds of guest time."""
        return self.vm_call_at(self.vm_clock_ns() + round(delay * 1e9), callback)

    def next_deadline(self) -> float:
        deadline = min(self.timers.earliest(), self.events.next_deadline())
        if self.runstate.running:
            first = self.vm_timers.earliest()
            if first != math.inf:
                deadline = min(deadline,
                               self.vm_clock.host_deadline(int(first), self.clock.now()))
        for sub in self.subsystems:
            deadline = min(deadline, sub.next_deadline())
        return deadline

    def run_timers(self, now: float) -> None:
        """Run everything due at `now`, then whatever main-loop work it requested."""
        self.events.run_due(now)
        while (timer := self.timers.pop_due(now)) is not None:
            timer.callback()
        self._run_vm_timers(now)
        for sub in self.subsystems:
            sub.run_due(now)
        self.process_requests()

    def _run_vm_timers(self, now: float) -> None:
        while self.runstate.running:
            timer = self.vm_timers.pop_due(self.vm_clock.read(now))
            if timer is None:
                return
            timer.callback()

    def vm_deadline_ns(self) -> int:
        """qemu_clock_deadline_ns_all(QEMU_CLOCK_VIRTUAL): nanoseconds of guest time to
        the first virtual timer; -1 when there is none or the VM is not running (a
        disabled clock has no deadline)."""
        first = self.vm_timers.earliest()
        if first == math.inf or not self.runstate.running:
            return -1
        return max(0, int(first) - self.vm_clock_ns())

    def warp_vm_clock(self, target_ns: int) -> int:
        """cpus.c qtest_clock_warp: move a stepped virtual clock to `target_ns`, running
        the virtual timers due on the way, each at its own deadline. Returns the clock.
        What the timers request (a reset, a power-off) waits for the main loop
        (`process_requests`), as in QEMU, where the qtest reply goes out first."""
        clock = self.vm_clock
        if not isinstance(clock, SteppedVirtualClock):
            raise ValueError("only the qtest accelerator's virtual clock can be warped")
        now = self.clock.now()
        while clock.value_ns < target_ns:
            first = self.vm_timers.earliest() if self.runstate.running else math.inf
            clock.warp(int(min(first, target_ns)))
            self._run_vm_timers(now)
        return clock.value_ns

    # -- the primitives of cpus.c --------------------------------------------------------

    def vm_stop(self, state: str) -> None:
        """do_vm_stop: the clock stops, the subsystems hear of it, then STOP."""
        events = self.runstate.vm_stop(state)
        if events:
            self.vm_clock.stop(self.clock.now())
            for sub in self.subsystems:
                sub.vm_stop()
            self._emit_all(events)
            self.kick()

    def vm_start(self) -> None:
        """vm_prepare_start: RESUME, the clock runs, then the subsystems hear of it."""
        events = self.runstate.vm_start()
        if events:
            self._emit_all(events)
            self.vm_clock.start(self.clock.now())
            for sub in self.subsystems:
                sub.vm_start()
            self.kick()

    def vm_stop_force(self, state: str) -> None:
        """vm_stop_force_state."""
        if self.runstate.running:
            self.vm_stop(state)
        else:
            self.runstate.set(state)

    def cont(self) -> None:
        """qmp_cont after its state checks: the subsystems' preparation (it may fail
        with the reply's error), then a VM start, or autostart while in inmigrate."""
        for sub in self.subsystems:
            sub.before_cont()
        if self.runstate.state == "inmigrate":
            self.autostart = True
        else:
            self.vm_start()

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
                self.guest.on_suspend()
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
                self.system_reset("none")  # qemu_system_wakeup resets the machine silently
                self.guest.on_wakeup()
                self.emit("WAKEUP")
            if req.powerdown:
                req.powerdown = False
                self.emit("POWERDOWN")
                self.guest.on_power_button()
            if req.vmstop is not None:
                state, req.vmstop = req.vmstop, None
                self.vm_stop(state)

    def system_reset(self, cause: str) -> None:
        """qemu_system_reset: every subsystem resets, then RESET (unless cause is none:
        the silent resets of start-up, S3 wake-up and loadvm)."""
        for sub in self.subsystems:
            sub.reset()
        if cause != "none":
            self.guest.on_system_reset()
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
        elif action == "inject-nmi":
            self.nmi()  # nmi_monitor_handle(0): what the guest does with it
        # debug and none change nothing
