"""QMP events: their wire shape, delivery to monitors, and QEMU 2.11's rate limits.

Pure model of the `vmm` layer. The Machine emits events here with the current
monotonic time and wall-clock time (it owns the clock); the bus checks the data
against the schema, stamps the event, applies the throttle of monitor.c
(`../shared/reference/qmp-protocol.md` §8) and hands the event to every sink, which
in the server are the monitors in command mode. A throttled key's timer is a
deadline the trio layer sleeps until (`next_deadline`, `run_due`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from schema.jsontypes import JSONValue
from schema.model import Schema
from schema.output import OutputMismatch, check_event

# monitor.c monitor_qapi_event_init: event -> data member that is part of the key.
THROTTLED: dict[str, str | None] = {
    "RTC_CHANGE": None,
    "WATCHDOG": None,
    "BALLOON_CHANGE": None,
    "QUORUM_REPORT_BAD": "node-name",
    "QUORUM_FAILURE": None,
    "VSERPORT_CHANGE": "id",
}
THROTTLE_INTERVAL = 1.0  # seconds (1000 ms for every throttled event in 2.11)


@attrs.frozen
class Event:
    """One event as created: its timestamp is taken at creation (qmp-event.c)."""

    name: str
    data: dict[str, JSONValue] | None
    seconds: int
    microseconds: int

    def message(self) -> dict[str, JSONValue]:
        """The wire object, members inserted as qmp_event_build_dict inserts them."""
        msg: dict[str, JSONValue] = {
            "event": self.name,
            "timestamp": {"seconds": self.seconds, "microseconds": self.microseconds},
        }
        if self.data is not None:
            msg["data"] = self.data
        return msg


def wall_timestamp(wall: float) -> tuple[int, int]:
    """gettimeofday's seconds and microseconds for a wall-clock time in seconds."""
    if not math.isfinite(wall) or wall < 0:
        return -1, -1
    micro_total = int(wall * 1_000_000)  # gettimeofday truncates
    return micro_total // 1_000_000, micro_total % 1_000_000


@attrs.define
class _Throttle:
    deadline: float
    pending: Event | None = None


@attrs.define(kw_only=True)
class EventBus:
    """Where every event of one machine goes. Sinks are the monitors' inboxes."""

    schema: Schema
    strict: bool = False
    sinks: list[Callable[[Event], None]] = attrs.Factory(list)
    history: list[Event] | None = None  # kept only when a test asks for it
    mismatches: list[str] = attrs.Factory(list)
    _throttle: dict[tuple[str, Any], _Throttle] = attrs.Factory(dict)

    def subscribe(self, sink: Callable[[Event], None]) -> None:
        # monitor.c keeps the newest monitor first; order is not observable across
        # sockets, but keep it anyway.
        self.sinks.insert(0, sink)

    def unsubscribe(self, sink: Callable[[Event], None]) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def emit(self, name: str, data: dict[str, Any] | None, *, now: float,
             wall: float) -> Event:
        """Create and deliver (or hold back) one event."""
        ev = self.schema.events[name]
        try:
            checked = check_event(ev, data)
        except OutputMismatch as err:
            if self.strict:
                raise
            self.mismatches.append(f"event {name}: {err}")
            checked = data
        seconds, micro = wall_timestamp(wall)
        event = Event(name, checked, seconds, micro)
        if name in THROTTLED:
            member = THROTTLED[name]
            key = (name, None if member is None or checked is None else checked.get(member))
            state = self._throttle.get(key)
            if state is not None:
                state.pending = event
                return event
            self._throttle[key] = _Throttle(deadline=now + THROTTLE_INTERVAL)
        self._deliver(event)
        return event

    def _deliver(self, event: Event) -> None:
        if self.history is not None:
            self.history.append(event)
        for sink in list(self.sinks):
            sink(event)

    def next_deadline(self) -> float:
        return min((t.deadline for t in self._throttle.values()), default=math.inf)

    def run_due(self, now: float) -> None:
        """monitor_qapi_event_handler for every key whose timer has expired."""
        for key, state in list(self._throttle.items()):
            if state.deadline > now:
                continue
            if state.pending is None:
                del self._throttle[key]
                continue
            pending, state.pending = state.pending, None
            state.deadline = now + THROTTLE_INTERVAL
            self._deliver(pending)
