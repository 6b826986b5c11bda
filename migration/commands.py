"""The migration subsystem: both sides' processes and their QMP commands.

Pure model of the `migration` layer (no trio, no sockets): `Migration` is one
subsystem of the Machine (the hooks of `vmm.machine.subsystem`), reaching the machine
through `migration.host.MigrationHost` and the real transport through
`migration.host.Edge` (`migration.transport` on trio). Time moves through
`next_deadline()`/`run_due(now)` on the Machine's clock: the outgoing side iterates
in BUFFER_DELAY (100 ms) periods, sending what `max-bandwidth` allows of the RAM
model (`migration.ram`) and, with the `block` capability, the disks
(`migration.block`, loaded with the first block migration), writing the stream
(`migration.stream`) as it goes, so a slow migration is slow on the wire too.

Behaviour and texts are QEMU 2.11's [migration/migration.c qmp_migrate,
migrate_fd_cancel, migration_thread, migration_completion, postcopy_start,
migration_maybe_pause, qmp_query_migrate, qemu_start_incoming_migration,
process_incoming_migration_co, process_incoming_migration_bh;
migration/savevm.c loadvm_postcopy_handle_run_bh], as restated in
`../shared/reference/migration.md` (section numbers in the docstrings).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from migration import uri as uris
from migration.host import Channel, Disks, Edge, FileAccess, MemoryFiles, MigrationHost
from migration.params import MIGRATION_ACTIVE, PAGE_SIZE, Settings
from migration.ram import DIRTY_RATE, RAM_USED, RamMigration, ram_total
from migration.states import (
    INCOMING,
    MIGRATE_BUSY,
    OUTGOING,
    SETUP_OR_ACTIVE,
    WITH_STATS,
    StateVar,
)
from migration.stream import (
    ACK_DONE,
    ACK_FAILED,
    BLOCK,
    CONFIG,
    END,
    HEADER,
    LISTEN,
    RUN,
    STATE,
    LoadError,
    Section,
    StreamReader,
    json_record,
    ram_record,
    record,
)
from schema.errors import GenericError
from schema.handlers import SubsystemHooks, qmp_command
from schema.opts.cutils import to_int64

if TYPE_CHECKING:
    from migration.block import BlockLoad, BlockSave

BUFFER_DELAY = 0.1  # seconds: migration.c's rate-limiting period
LINK_BYTES_PER_SECOND = 1_250_000_000  # max-bandwidth 0 (no limit): a 10 Gbit/s link
EXEC_DISABLED = ("exec: migration runs a shell command; start qmp-emulator with "
                 "--emu-allow-exec-migration to allow it")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@attrs.define(kw_only=True, eq=False)
class Outgoing:
    """One outgoing migration (MigrationState's per-run part) and the edge's end."""

    owner: Migration
    start: float
    ram: RamMigration
    error_desc: str | None = None
    channel: Channel | None = None
    phase: str = "connecting"  # iterating, paused, finishing, postcopy, flushing, over
    setup_time: int = 0
    last_tick: float = 0.0
    period_start: float = 0.0
    period_bytes: int = 0
    threshold: float = 0.0
    expected_downtime: int = 0
    mbps: float = 0.0
    wire_bytes: int = 0
    stop_time: float | None = None
    was_running: bool = False
    entered_postcopy: bool = False
    inactivated: bool = False  # the images were handed over (bdrv_inactivate_all)
    start_postcopy: bool = False
    finish_at: float = math.inf
    downtime: int = 0
    total_time: int = 0
    block_flags: tuple[bool, bool] | None = None  # caps blk/inc turned on for this run
    block: BlockSave | None = None  # block migration (the `block` capability)
    credit: float = 0.0  # wire bytes the bandwidth allowed and nothing used yet

    # -- the edge's callbacks (OutgoingEnd) ------------------------------------------

    def connected(self, channel: Channel) -> None:
        self.owner.outgoing_connected(self, channel)

    def connect_failed(self, desc: str) -> None:
        self.owner.outgoing_error(self, desc)

    def done(self, ok: bool) -> None:
        self.owner.outgoing_done(self, ok)

    def write(self, data: bytes) -> None:
        if self.channel is not None:
            self.wire_bytes += len(data)
            self.channel.write(data)


@attrs.define(kw_only=True, eq=False)
class Incoming:
    """One incoming migration: the stream being loaded (the edge's IncomingEnd)."""

    owner: Migration
    reader: StreamReader = attrs.Factory(StreamReader)
    channel: Channel | None = None
    over: bool = False
    device_state: dict[str, Any] | None = None  # the S record, applied at the end
    block: BlockLoad | None = None  # block_load's state, from the first B record

    def accepted(self, channel: Channel) -> None:
        self.owner.incoming_accepted(self, channel)

    def received(self, data: bytes) -> None:
        self.owner.incoming_received(self, data)

    def closed(self) -> None:
        self.owner.incoming_closed(self)

    def listen_failed(self, desc: str) -> None:
        self.owner.incoming_listen_failed(self, desc)


@attrs.define(kw_only=True, eq=False)
class Migration(SubsystemHooks):
    """Both migration state machines of one machine, and the commands on them."""

    host: MigrationHost
    settings: Settings = attrs.Factory(Settings)
    out: StateVar = attrs.Factory(lambda: StateVar(table=OUTGOING))
    inc: StateVar = attrs.Factory(lambda: StateVar(table=INCOMING))
    edge: Edge | None = None
    # monitor_get_fd(cur_mon, name): the calling monitor's named descriptor, taken.
    take_fd: Callable[[str], int | None] = lambda name: None
    # error_report: a line on stderr (the program prefixes its name).
    report: Callable[[str], None] = lambda line: None
    # The block layer's hand-over of the images: bdrv_inactivate_all on the source
    # before its last device state, bdrv_invalidate_cache_all where a side takes them
    # back (the destination once loaded; the source when the migration fails).
    block_inactivate: Callable[[], None] = lambda: None
    block_activate: Callable[[], None] = lambda: None
    # The disks of a block migration (`migration.host.Disks`), made on first use.
    disks: Callable[[], Disks] | None = None
    allow_exec: bool = False
    files: FileAccess = attrs.Factory(MemoryFiles)
    sections: list[Section] = attrs.Factory(list)
    blockers: list[str] = attrs.Factory(list)
    current: Outgoing | None = None
    incoming: Incoming | None = None
    incoming_uri: str | None = None   # -incoming (None: not an incoming machine)
    incoming_started: bool = False
    _pending_listen: str | None = None
    _cancel_due: bool = False
    _exit_due: bool = False

    # -- plumbing --------------------------------------------------------------------

    def add_section(self, section: Section) -> None:
        """A subsystem's part of the device state (`migration.stream.Section`)."""
        self.sections.append(section)

    def attach_edge(self, edge: Edge) -> None:
        """The server's transport; an -incoming given before it existed listens now."""
        self.edge = edge
        if self._pending_listen is not None:
            uri, self._pending_listen = self._pending_listen, None
            try:
                self._listen(uri)
            except GenericError as err:
                self._startup_failure(uri, err.desc)

    def _now(self) -> float:
        return self.host.clock.now()

    def _event(self, status: str) -> None:
        """migrate_generate_event: only with the events capability."""
        if self.settings.cap("events"):
            self.host.emit("MIGRATION", {"status": status})

    def _set(self, old: str, new: str) -> bool:
        if self.out.set(old, new):
            self._event(new)
            return True
        return False

    def _set_inc(self, old: str, new: str) -> bool:
        if self.inc.set(old, new):
            self._event(new)
            return True
        return False

    def _pass(self, count: int) -> None:
        if self.settings.cap("events"):
            self.host.emit("MIGRATION_PASS", {"pass": count})

    def _bandwidth(self) -> float:
        bw = self.settings.parameters["max-bandwidth"]
        return float(bw) if bw else float(LINK_BYTES_PER_SECOND)

    def is_idle(self) -> bool:
        """migration_is_idle (device_add/device_del, migration blockers)."""
        return self.out.state in ("none", "cancelled", "completed", "failed")

    # -- start-up --------------------------------------------------------------------

    def start_incoming(self, uri: str) -> None:
        """vl.c: `-incoming URI` (or `defer`) once the machine is built."""
        self.incoming_uri = uri
        if uri == "defer":
            return
        if self.edge is None:
            self._pending_listen = uri
            return
        try:
            self._listen(uri)
        except GenericError as err:
            self._startup_failure(uri, err.desc)

    def _startup_failure(self, uri: str, desc: str) -> None:
        """vl.c: error_reportf_err(err, "-incoming %s: ", incoming); exit(1)."""
        self.report(f"-incoming {uri}: {desc}")
        self.host.exit_code = 1
        self.host.kick()

    def _listen(self, uri: str) -> None:
        """qemu_start_incoming_migration: MIGRATION setup whatever the capability
        says (§7.1), then the scheme's listener."""
        self.host.emit("MIGRATION", {"status": "setup"})
        try:
            parsed = uris.parse(uri)
        except uris.UnknownProtocol:
            raise GenericError(f"unknown migration protocol: {uri}") from None
        if isinstance(parsed, uris.Exec) and not self.allow_exec:
            raise GenericError(EXEC_DISABLED)
        if isinstance(parsed, uris.Fd) and not parsed.name.isdigit():
            raise GenericError(f"Parameter 'fd' expects a number, not '{parsed.name}'")
        if self.edge is None:
            raise GenericError("migration needs the emulator's server to open streams")
        incoming = Incoming(owner=self)
        self.edge.listen(parsed, incoming)
        self.incoming = incoming

    # -- Subsystem hooks -------------------------------------------------------------

    def close(self) -> None:
        if self.current is not None and self.current.channel is not None \
                and self.current.phase != "over":
            self.current.channel.abort()

    def next_deadline(self) -> float:
        if self._cancel_due or self._exit_due:
            return 0.0
        o = self.current
        if o is None:
            return math.inf
        if o.phase in ("iterating", "postcopy"):
            return o.last_tick + self._step(o)
        if o.phase == "finishing":
            return o.finish_at
        return math.inf

    def _step(self, o: Outgoing) -> float:
        ram = o.ram
        cost: float = ram.dirty_normal * (PAGE_SIZE + 8) + ram.dirty_zero * 9
        if o.block is not None and o.phase == "iterating":
            cost += max(0.0, o.block.cost_left() - o.credit)
        if cost == 0:
            return 0.0
        period_left = max(0.0, o.period_start + BUFFER_DELAY - o.last_tick)
        return min(period_left or BUFFER_DELAY, max(cost / self._bandwidth(), 1e-6))

    def run_due(self, now: float) -> None:
        if self._cancel_due:
            self._cancel_due = False
            self._finish_cancel()
        if self._exit_due:
            self._exit_due = False
            self.host.exit_code = 1
        o = self.current
        if o is None:
            return
        if o.phase in ("iterating", "postcopy") and now >= o.last_tick + self._step(o):
            self._iterate(o, now)
        elif o.phase == "finishing" and now >= o.finish_at:
            self._end_stream(o)

    # -- the outgoing side -----------------------------------------------------------

    def migrate(self, uri: str, blk: bool | None = None, inc: bool | None = None,
                detach: bool | None = None) -> None:
        """qmp_migrate (§6.1)."""
        if self.out.state in MIGRATE_BUSY:
            raise GenericError(MIGRATION_ACTIVE)
        if self.host.runstate.state == "inmigrate":
            raise GenericError("Guest is waiting for an incoming migration")
        if self.blockers:
            raise GenericError(self.blockers[0])
        caps, params = self.settings.capabilities, self.settings.parameters
        flags: tuple[bool, bool] | None = None
        if blk or inc:
            if caps["block"] or params["block-incremental"]:
                raise GenericError(
                    "Command options are incompatible with current migration capabilities")
            flags = (True, bool(inc))
            caps["block"] = True
            if inc:
                params["block-incremental"] = True
        now = self._now()
        ram = RamMigration(
            total_bytes=ram_total(self.host.options.machine_type, self.host.options.ram_bytes),
            used_fraction=self.host.behaviours.get(RAM_USED.name),
            xbzrle=caps["xbzrle"],
            xbzrle_cache_size=to_int64(params["xbzrle-cache-size"]))
        o = Outgoing(owner=self, start=now, ram=ram, block_flags=flags)
        self.current = o
        self.out.state = "none"  # migrate_init
        self._set("none", "setup")
        try:
            parsed = uris.parse(uri)
        except uris.UnknownProtocol:
            self._set("setup", "failed")
            self._cleanup(o)
            raise GenericError("Parameter 'uri' expects a valid migration protocol") from None
        except GenericError as err:
            self._fail_setup(o, err.desc)
            raise
        fd: int | None = None
        try:
            if isinstance(parsed, uris.Fd):
                fd = self.take_fd(parsed.name)
                if fd is None:
                    raise GenericError(f"File descriptor named '{parsed.name}' has not "
                                       "been found")
            if isinstance(parsed, uris.Exec) and not self.allow_exec:
                raise GenericError(EXEC_DISABLED)
            if self.edge is None:
                raise GenericError("migration needs the emulator's server to open streams")
            self.edge.connect(parsed, fd, o)
        except GenericError as err:
            self._fail_setup(o, err.desc)
            raise

    def _fail_setup(self, o: Outgoing, desc: str) -> None:
        """migrate_fd_error: the message becomes error-desc, setup -> failed."""
        o.error_desc = desc
        self._set("setup", "failed")
        self._cleanup(o)

    def _cleanup(self, o: Outgoing) -> None:
        """migrate_fd_cleanup's part that QMP sees: the blk/inc flags go back off."""
        o.phase = "over"
        if o.block is not None:
            o.block.cleanup()  # block_migration_cleanup (save_cleanup)
        if o.block_flags is not None:
            self.settings.capabilities["block"] = False
            if o.block_flags[1]:
                self.settings.parameters["block-incremental"] = False
            o.block_flags = None

    def outgoing_error(self, o: Outgoing, desc: str) -> None:
        """The connection failed (§6.1 asynchronous errors). A migration cancelled
        while connecting stays `cancelling` for good (the 2.11 defect of §2.1)."""
        if o is not self.current:
            return
        if self.out.state == "setup":
            self._fail_setup(o, desc)
        else:
            o.phase = "over"
        self.host.kick()

    def outgoing_connected(self, o: Outgoing, channel: Channel) -> None:
        """migrate_fd_connect and the migration thread's setup: the stream's header and
        configuration, the first bitmap sync (MIGRATION_PASS 1), then `active`."""
        if o is not self.current or self.out.state != "setup":
            channel.abort()
            if o is self.current and self.out.state == "cancelling":
                self._cancel_due = True
                self.host.kick()
            return
        now = self._now()
        o.channel = channel
        o.setup_time = _ms(now - o.start)
        o.expected_downtime = self.settings.parameters["downtime-limit"]
        o.write(HEADER)
        o.write(json_record(CONFIG, {"machine-type": self.host.options.machine_type,
                                     "ram-bytes": self.host.options.ram_bytes,
                                     "page-size": PAGE_SIZE}))
        if self.settings.cap("block"):
            from migration.block import BlockSave

            o.block = BlockSave.setup(
                self._disks(), incremental=bool(self.settings.parameters["block-incremental"]),
                zero_blocks=self.settings.cap("zero-blocks"))
        o.ram.setup(now)
        self._pass(1)
        self._set("setup", "active")
        o.phase = "iterating"
        o.last_tick = o.period_start = now
        self.host.kick()

    def _disks(self) -> Disks:
        if self.disks is None:
            from migration.host import MemoryDisks

            return MemoryDisks()
        return self.disks()

    def _write_block(self, o: Outgoing, payloads: list[bytes]) -> None:
        for payload in payloads:
            o.write(record(BLOCK, payload))

    def _iterate(self, o: Outgoing, now: float) -> None:
        """One turn of migration_thread's loop."""
        ram = o.ram
        dt = now - o.last_tick
        o.last_tick = now
        if self.host.runstate.running:
            ram.dirty(ram.dirty_rate(self.host.behaviours.get(DIRTY_RATE.name)) * dt)
        budget = self._bandwidth() * dt
        if o.phase == "postcopy":
            sent = ram.send(budget)
            o.write(ram_record(sent))
            if not ram.remaining():
                o.phase = "finishing"
                o.finish_at = now
                self._end_stream(o)
            return
        params = self.settings.parameters
        # ram_save_pending: a bitmap sync once what remains fits the threshold
        if o.threshold and ram.remaining() < o.threshold:
            self._sync(o, now)
        pending: float = ram.remaining()
        if o.block is not None:
            pending += o.block.pending(o.threshold)
        if (self.settings.cap("postcopy-ram") and o.start_postcopy
                and self.out.state == "active"):
            self._postcopy_start(o, now)
            return
        if pending and pending >= o.threshold:
            if o.block is not None:
                # qemu_savevm_state_iterate: "block" comes before "ram" and takes what
                # the rate limit allows; RAM has the rest of it
                o.credit += budget
                try:
                    payloads, block_bytes = o.block.iterate(o.credit)
                except OSError:
                    self._save_failed(o)
                    return
                self._write_block(o, payloads)
                o.period_bytes += block_bytes
                o.credit -= block_bytes
                budget = max(o.credit, 0.0)
            sent = ram.send(budget) if ram.remaining() else 0
            if o.block is not None:
                o.credit -= sent
            o.period_bytes += sent
            o.write(ram_record(sent))
        else:
            self._completion(o, now)
            return
        if now >= o.period_start + BUFFER_DELAY - 1e-9:
            spent = now - o.period_start
            bandwidth = o.period_bytes / (spent * 1000)  # bytes per ms
            o.threshold = bandwidth * params["downtime-limit"]
            o.mbps = o.period_bytes * 8.0 / spent / 1e6
            if ram.dirty_pages_rate and o.period_bytes > 10000 and bandwidth:
                o.expected_downtime = int(ram.dirty_pages_rate * PAGE_SIZE / bandwidth)
            o.period_start = now
            o.period_bytes = 0

    def _sync(self, o: Outgoing, now: float) -> None:
        p = self.settings.parameters
        o.ram.sync(now, auto_converge=self.settings.cap("auto-converge"),
                   throttle_initial=p["cpu-throttle-initial"],
                   throttle_increment=p["cpu-throttle-increment"])
        self._pass(o.ram.dirty_sync_count)

    def _stop_for_switchover(self, o: Outgoing, now: float) -> None:
        o.was_running = self.host.runstate.running
        o.stop_time = now
        self.host.vm_stop_force("finish-migrate")

    def _completion(self, o: Outgoing, now: float) -> None:
        """migration_completion: the VM stops, an optional pause, the final sync."""
        self._stop_for_switchover(o, now)
        if self.settings.cap("pause-before-switchover"):
            self._set("active", "pre-switchover")
            o.phase = "paused"
            return
        self._final_precopy(o, now)

    def _final_precopy(self, o: Outgoing, now: float) -> None:
        """qemu_savevm_state_complete_precopy: the last sync (MIGRATION_PASS), the
        remaining pages, then the device state; the end comes once sent."""
        self._sync(o, now)
        try:
            sent = self._complete_block(o)
        except OSError:
            self._save_failed(o)
            return
        ram_sent = o.ram.send_all()
        sent += ram_sent
        o.write(ram_record(ram_sent))
        o.phase = "finishing"
        o.finish_at = now + sent / self._bandwidth()
        self.host.kick()

    def _complete_block(self, o: Outgoing) -> int:
        """block_save_complete (qemu_savevm_state_complete_precopy runs it before
        RAM's): the wire bytes it sent."""
        if o.block is None or not o.block.active:
            return 0
        payloads, spent = o.block.complete()
        self._write_block(o, payloads)
        return spent

    def _save_failed(self, o: Outgoing) -> None:
        """A section's save failed (block migration's read error: flush_blks sets the
        file's error): migration_thread ends `failed`, no error-desc, the stream is
        closed (the destination's load sees EOF), the VM runs again if it ran."""
        if o.channel is not None:
            o.channel.abort()
        self._set(self.out.state, "failed")
        self._restart_after(o)
        self._cleanup(o)
        self.host.kick()

    def _device_state(self) -> dict[str, Any]:
        return {"runstate": self._global_state(),
                "sections": {s.name: s.save() for s in self.sections}}

    def _global_state(self) -> str:
        """global_state_store: the run state before the final stop."""
        o = self.current
        if o is not None and o.stop_time is not None:
            return "running" if o.was_running else self._paused_state(o)
        return self.host.runstate.state

    def _paused_state(self, o: Outgoing) -> str:
        return "paused"

    def _end_stream(self, o: Outgoing) -> None:
        if not o.entered_postcopy:
            # migration_completion: the images are released before the last device
            # state goes, so the destination can take them [migration/migration.c]
            self.block_inactivate()
            o.inactivated = True
            o.write(json_record(STATE, self._device_state()))
        o.write(record(END))
        o.phase = "flushing"
        assert o.channel is not None
        o.channel.finish()

    def _postcopy_start(self, o: Outgoing, now: float) -> None:
        """postcopy_start: postcopy-active (before the stop unless paused first), STOP,
        the final precopy sync, LISTEN and RUN to the destination."""
        if not self.settings.cap("pause-before-switchover"):
            self._set("active", "postcopy-active")
        self._stop_for_switchover(o, now)
        if self.settings.cap("pause-before-switchover"):
            self._set("active", "pre-switchover")
            o.phase = "paused"
            o.entered_postcopy = True
            return
        self._postcopy_switch(o, now)

    def _postcopy_switch(self, o: Outgoing, now: float) -> None:
        o.entered_postcopy = True
        self._sync(o, now)
        try:
            self._complete_block(o)  # the non-postcopiable sections end before LISTEN
        except OSError:
            self._save_failed(o)
            return
        o.write(json_record(LISTEN, {}))
        o.write(json_record(STATE, self._device_state()))
        o.write(json_record(RUN, {"runstate": self._global_state()}))
        o.downtime = _ms(now - (o.stop_time or now))
        o.phase = "postcopy"
        o.last_tick = now
        self.host.kick()

    def outgoing_done(self, o: Outgoing, ok: bool) -> None:
        """The stream ended: flushed and accepted (`ok`), or broken (a write failed,
        the destination went away or refused the stream)."""
        if o is not self.current or o.phase == "over":
            return
        now = self._now()
        state = self.out.state
        if state == "cancelling":
            return
        if ok and o.phase == "flushing":
            end = now
            o.total_time = _ms(end - o.start)
            if not o.entered_postcopy:
                o.downtime = _ms(end - (o.stop_time or end))
            if o.total_time:  # bytes of the (modelled) stream per ms, as Mbit/s
                o.mbps = o.ram.transferred * 8.0 / o.total_time / 1000
            self._set(state, "completed")
            self._cleanup(o)
            if self.host.runstate.running:
                # `cont` restarted the VM during the switch-over: QEMU 2.11 aborts on
                # 'running' -> 'postmigrate'; the emulator stops it instead.
                self.host.vm_stop("finish-migrate")
            self.host.runstate.set("postmigrate")
        else:
            if state == "setup":
                self._fail_setup(o, "Input/output error")
                return
            self._set(state, "failed")
            self._restart_after(o)
            self._cleanup(o)
        self.host.kick()

    def _restart_after(self, o: Outgoing) -> None:
        """The end of migration_thread when it did not complete: the images come
        back first (bdrv_invalidate_cache_all), then the VM runs again if it ran."""
        if o.inactivated:
            o.inactivated = False
            self.block_activate()
        if o.stop_time is None:
            return
        if o.was_running and not o.entered_postcopy:
            self.host.vm_start()
        elif self.host.runstate.state == "finish-migrate":
            self.host.runstate.set("postmigrate")

    def migrate_cancel(self) -> None:
        """migrate_fd_cancel (§6.2): `cancelling` before the reply, the stream shut
        down; `cancelled` follows from the main loop."""
        o = self.current
        state = self.out.state
        if o is None or state not in SETUP_OR_ACTIVE:
            return
        self._set(state, "cancelling")
        if o.channel is not None:
            o.channel.abort()
            self._cancel_due = True
        elif o.phase != "connecting":
            self._cancel_due = True
        self.host.kick()

    def _finish_cancel(self) -> None:
        o = self.current
        if o is None or self.out.state != "cancelling":
            return
        self._restart_after(o)
        self._set("cancelling", "cancelled")
        self._cleanup(o)

    def migrate_continue(self, state: str) -> None:
        """qmp_migrate_continue (§6.4)."""
        if self.out.state != state:
            raise GenericError(f"Migration not in expected state: {self.out.state}")
        o = self.current
        if o is None or o.phase != "paused":
            return
        now = self._now()
        if o.entered_postcopy:
            self._set("pre-switchover", "postcopy-active")
            self._postcopy_switch(o, now)
        else:
            self._set("pre-switchover", "device")
            self._final_precopy(o, now)

    def migrate_start_postcopy(self) -> None:
        """qmp_migrate_start_postcopy (§6.3)."""
        if not self.settings.cap("postcopy-ram"):
            raise GenericError("Enable postcopy with migrate_set_capability before the "
                               "start of migration")
        if self.out.state == "none":
            raise GenericError("Postcopy must be started after migration has been started")
        if self.current is not None:
            self.current.start_postcopy = True
            self.host.kick()

    def query_migrate(self) -> dict[str, Any]:
        """qmp_query_migrate (§3): the outgoing state only."""
        state = self.out.state
        o = self.current
        if state == "none" or o is None:
            return {}
        info: dict[str, Any] = {"status": state}
        if state in WITH_STATS and o.channel is not None:
            now = self._now()
            info["total-time"] = _ms(now - o.start)
            info["expected-downtime"] = o.expected_downtime
            info["setup-time"] = o.setup_time
            info["ram"] = o.ram.stats(mbps=o.mbps, completed=False)
            if o.block is not None and o.block.devices:
                info["disk"] = o.block.stats()  # populate_disk_info: blk_mig_active
        elif state == "completed":
            info["total-time"] = o.total_time
            info["downtime"] = o.downtime
            info["setup-time"] = o.setup_time
            info["ram"] = o.ram.stats(mbps=o.mbps, completed=True)
        elif state == "failed" and o.error_desc is not None:
            info["error-desc"] = o.error_desc
        if state in WITH_STATS | {"completed"} and "ram" in info:
            if self.settings.cap("xbzrle"):
                info["xbzrle-cache"] = o.ram.xbzrle_stats()
            if o.ram.throttle and state in WITH_STATS:
                info["cpu-throttle-percentage"] = o.ram.throttle
        return info

    # -- device state files (Xen) ----------------------------------------------------

    def save_devices_state(self, filename: str) -> None:
        """qmp_xen_save_devices_state: the VM stops (save-vm) while the device state
        is written, then runs again if it ran."""
        was_running = self.host.runstate.running
        self.host.vm_stop("save-vm")
        try:
            state: dict[str, Any] = {
                "runstate": "running" if was_running else self.host.runstate.state,
                     "sections": {s.name: s.save() for s in self.sections}}
            self.files.write(filename, HEADER + json_record(STATE, state) + record(END))
        finally:
            if was_running:
                self.host.vm_start()

    def load_devices_state(self, filename: str) -> None:
        """qmp_xen_load_devices_state: only on a stopped VM; a stream that does not
        load is QERR_IO_ERROR."""
        if self.host.runstate.running:
            raise GenericError("Cannot update device state while vm is running")
        data = self.files.read(filename)
        reader = StreamReader()
        try:
            records = list(reader.feed(data))
            for rec in records:
                if rec.tag == STATE:
                    value = rec.json()
                    for section in self.sections:
                        if section.name in value.get("sections", {}):
                            section.load(value["sections"][section.name])
        except LoadError:
            raise GenericError("An IO error has occurred") from None
        if not reader.ended:
            raise GenericError("An IO error has occurred")

    # -- the incoming side -----------------------------------------------------------

    def migrate_incoming(self, uri: str) -> None:
        """qmp_migrate_incoming (§7.1), with 2.11's order: the second call still says
        `setup` and tries to listen before it is refused."""
        if self.incoming_uri != "defer":
            raise GenericError("For use with '-incoming defer'")
        second = self.incoming_started
        try:
            self._listen(uri)
        except GenericError:
            if not second:
                raise
        if second:
            raise GenericError("The incoming migration has already been started")
        self.incoming_started = True

    def incoming_listen_failed(self, incoming: Incoming, desc: str) -> None:
        if incoming is self.incoming and self.incoming_uri != "defer":
            self._startup_failure(self.incoming_uri or "", desc)

    def incoming_accepted(self, incoming: Incoming, channel: Channel) -> None:
        """migration_incoming_process: loading starts (`active`)."""
        if incoming is not self.incoming or incoming.channel is not None:
            channel.abort()
            return
        incoming.channel = channel
        self.inc.state = "active" if self.inc.state in ("none", "setup") else self.inc.state
        self._event("active")

    def incoming_received(self, incoming: Incoming, data: bytes) -> None:
        if incoming is not self.incoming or incoming.over:
            return
        try:
            for rec in incoming.reader.feed(data):
                self._load(incoming, rec.tag, rec)
        except LoadError as err:
            self._load_failed(incoming, err.lines)

    def incoming_closed(self, incoming: Incoming) -> None:
        """The stream ended before its end record: QEMU's load fails with EIO."""
        if incoming is not self.incoming or incoming.over:
            return
        self._load_failed(incoming, ("load of migration failed: Input/output error",))

    def _load(self, incoming: Incoming, tag: bytes, rec: Any) -> None:
        if tag == CONFIG:
            self._check_config(rec.json())
        elif tag == BLOCK:
            if incoming.block is None:
                from migration.block import BlockLoad

                incoming.block = BlockLoad(disks=self._disks(), stdout=self.host.stdout,
                                           stderr=self.host.stderr, report=self.report)
            incoming.block.load(rec.payload)
        elif tag == LISTEN:
            self._set_inc("active", "postcopy-active")
        elif tag == STATE:
            value = rec.json()
            for section in self.sections:
                if section.name in value.get("sections", {}):
                    section.load(value["sections"][section.name])
            incoming.device_state = value
        elif tag == RUN:
            self._start_guest(str(rec.json().get("runstate", "running")))
        elif tag == END:
            state = incoming.device_state
            if self.inc.state == "active":
                if state is None:
                    raise LoadError("load of migration failed: Invalid argument")
                self._start_guest(str(state.get("runstate", "running")))
            incoming.over = True
            self._set_inc(self.inc.state, "completed")
            if incoming.channel is not None:
                incoming.channel.answer(ACK_DONE)
            self.incoming_uri = None

    def _check_config(self, config: dict[str, Any]) -> None:
        """configuration_post_load, then ram_load's block length check."""
        local = self.host.options.machine_type
        if config.get("machine-type") != local:
            raise LoadError(f"Machine type received is '{config.get('machine-type')}' and "
                            f"local is '{local}'",
                            "load of migration failed: Invalid argument")
        ram = self.host.options.ram_bytes
        theirs = config.get("ram-bytes")
        if theirs != ram:
            size = theirs if isinstance(theirs, int) else 0
            raise LoadError(f"Length mismatch: pc.ram: 0x{size:x} in != 0x{ram:x}: "
                            "Invalid argument",
                            "load of migration failed: Invalid argument")

    def _start_guest(self, source_state: str) -> None:
        """process_incoming_migration_bh / loadvm_postcopy_handle_run_bh (§7.3): the
        images are taken over (bdrv_invalidate_cache_all), then the guest's run state."""
        if self.host.runstate.state != "inmigrate":
            return
        self.block_activate()
        if source_state == "running":
            if self.host.autostart:
                self.host.vm_start()
            else:
                self.host.runstate.set("paused")
        else:
            self.host.runstate.set(source_state)

    def _load_failed(self, incoming: Incoming, lines: tuple[str, ...]) -> None:
        """process_incoming_migration_co on error: `failed`, the messages, exit(1)."""
        incoming.over = True
        if self.inc.state in ("active", "postcopy-active"):
            self._set_inc(self.inc.state, "failed")
        for line in lines:
            self.report(line)
        if incoming.channel is not None:
            incoming.channel.answer(ACK_FAILED)
        self._exit_due = True
        self.host.kick()


class MigrationCommands:
    """The QMP commands of migration, registered by schema name."""

    def __init__(self, migration: Migration) -> None:
        self.m = migration

    @qmp_command("migrate")
    def migrate(self, uri: str, blk: bool | None = None, inc: bool | None = None,
                detach: bool | None = None) -> None:
        self.m.migrate(uri, blk, inc, detach)

    @qmp_command("migrate_cancel")
    def migrate_cancel(self) -> None:
        self.m.migrate_cancel()

    @qmp_command("migrate-continue")
    def migrate_continue(self, state: str) -> None:
        self.m.migrate_continue(state)

    @qmp_command("migrate-start-postcopy")
    def migrate_start_postcopy(self) -> None:
        self.m.migrate_start_postcopy()

    @qmp_command("migrate-incoming")
    def migrate_incoming(self, uri: str) -> None:
        self.m.migrate_incoming(uri)

    @qmp_command("query-migrate")
    def query_migrate(self) -> dict[str, Any]:
        return self.m.query_migrate()

    @qmp_command("query-migrate-capabilities")
    def query_migrate_capabilities(self) -> list[dict[str, Any]]:
        return self.m.settings.query_capabilities()

    @qmp_command("migrate-set-capabilities")
    def migrate_set_capabilities(self, capabilities: list[dict[str, Any]]) -> None:
        self.m.settings.set_capabilities(capabilities, outgoing=self.m.out.state,
                                         runstate=self.m.host.runstate.state)

    @qmp_command("query-migrate-parameters")
    def query_migrate_parameters(self) -> dict[str, Any]:
        return self.m.settings.query_parameters()

    @qmp_command("migrate-set-parameters")
    def migrate_set_parameters(self, arguments: dict[str, Any]) -> None:
        self.m.settings.set_parameters(arguments)

    @qmp_command("migrate_set_speed")
    def migrate_set_speed(self, value: int) -> None:
        """qmp_migrate_set_speed: max-bandwidth."""
        self.m.settings.set_parameters({"max-bandwidth": value})

    @qmp_command("migrate_set_downtime")
    def migrate_set_downtime(self, value: float) -> None:
        self.m.settings.set_downtime_seconds(value)

    @qmp_command("migrate-set-cache-size")
    def migrate_set_cache_size(self, value: int) -> None:
        """qmp_migrate_set_cache_size: xbzrle-cache-size, a uint64 in QEMU."""
        self.m.settings.set_parameters({"xbzrle-cache-size": value % 2**64})

    @qmp_command("query-migrate-cache-size")
    def query_migrate_cache_size(self) -> int:
        """qmp_query_migrate_cache_size: the parameter (a size, uint64) returned as
        migrate_xbzrle_cache_size's int64_t, so 2^63 and more wrap negative."""
        return to_int64(int(self.m.settings.parameters["xbzrle-cache-size"]))

    @qmp_command("xen-save-devices-state")
    def xen_save_devices_state(self, filename: str, live: bool | None = None) -> None:
        self.m.save_devices_state(filename)

    @qmp_command("xen-load-devices-state")
    def xen_load_devices_state(self, filename: str) -> None:
        self.m.load_devices_state(filename)
