"""Trace events: the binary's 2 138, with QEMU 2.11's QMP semantics, and those we emit.

`vmm` layer. `trace-event-get-state`/`-set-state` see every trace event of the recorded
binary (`Catalog.trace_events`: name, vcpu flag, compiled in or not, in QEMU's reply
order) and behave as trace/qmp.c and trace/control*.c do: glob patterns are names
with a `*` (trace_event_is_pattern, pattern_glob: `*` is the only wildcard), a
per-vCPU event has one state per vCPU (the event's state is "any vCPU has it"), and an
event compiled out is "unavailable". The emulator runs none of QEMU's code, so of
those events it emits only the ones on paths it reproduces (`EMITTED_TRACE_EVENTS`);
an enabled one is printed as the "log" backend prints it, one line on stderr.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

import attrs

from schema.catalog import Catalog, TraceEventInfo
from schema.errors import GenericError

# QEMU 2.11.0's trace-events names of the spots the emulator passes and logs.
EMITTED_TRACE_EVENTS = ("handle_hmp_command", "handle_qmp_command")


def _pattern(name: str) -> re.Pattern[str]:
    """trace/control.c pattern_glob as a regular expression (whole name, `*` only)."""
    return re.compile(".*".join(re.escape(part) for part in name.split("*")), re.S)


@attrs.define(kw_only=True)
class TraceEvents:
    """The dynamic state of one machine's trace events."""

    catalog: Catalog
    vcpus: int = 1  # the machine's vCPUs (qemu_get_cpu finds indices below this)
    # Events enabled as a whole: events without the vcpu property, and vcpu events on a
    # machine without vCPUs (trace_event_set_state_dynamic keeps a global state then).
    enabled: set[str] = attrs.Factory(set)
    vcpu_enabled: dict[str, set[int]] = attrs.Factory(dict)
    stream: TextIO | None = None
    _by_name: dict[str, TraceEventInfo] | None = None

    def _events(self) -> tuple[TraceEventInfo, ...]:
        return self.catalog.trace_events()

    def _lookup(self, name: str) -> TraceEventInfo | None:
        if self._by_name is None:
            self._by_name = {ev.name: ev for ev in self._events()}
        return self._by_name.get(name)

    def _matching(self, name: str) -> list[TraceEventInfo]:
        """trace_event_iter over `name`, in reply order (QEMU prepends each match, so
        its replies run opposite to its iteration)."""
        if "*" not in name:
            ev = self._lookup(name)
            return [] if ev is None else [ev]
        pattern = _pattern(name)
        return [ev for ev in self._events() if pattern.fullmatch(ev.name)]

    def _cpu(self, vcpu: int | None) -> int | None:
        """trace/qmp.c get_cpu: the int64 argument is truncated to C's int."""
        if vcpu is None:
            return None
        index = vcpu % 2**32
        signed = index - 2**32 if index >= 2**31 else index
        if not 0 <= signed < self.vcpus:
            raise GenericError(f"invalid vCPU index {index}")
        return signed

    def _check(self, name: str, has_vcpu: bool, ignore_unavailable: bool,
               matches: list[TraceEventInfo]) -> None:
        """trace/qmp.c check_events."""
        if "*" not in name:
            if not matches:
                raise GenericError(f'unknown event "{name}"')
            if has_vcpu and not matches[0].vcpu:
                raise GenericError(f'event "{name}" is not vCPU-specific')
        if not ignore_unavailable:
            for ev in reversed(matches):  # the first in QEMU's iteration order
                if not ev.available:
                    raise GenericError(f'event "{ev.name}" is disabled')

    def _state(self, ev: TraceEventInfo) -> bool:
        """trace_event_get_state_dynamic (a vcpu event: OR'ed over the vCPUs)."""
        if ev.vcpu and self.vcpus:
            return bool(self.vcpu_enabled.get(ev.name))
        return ev.name in self.enabled

    def get_state(self, name: str, vcpu: int | None) -> list[dict[str, Any]]:
        """trace/qmp.c qmp_trace_event_get_state."""
        cpu = self._cpu(vcpu)
        matches = self._matching(name)
        self._check(name, cpu is not None, True, matches)
        out: list[dict[str, Any]] = []
        for ev in matches:
            if cpu is not None and not ev.vcpu:
                continue
            if not ev.available:
                state = "unavailable"
            elif cpu is not None:
                state = "enabled" if cpu in self.vcpu_enabled.get(ev.name, ()) else "disabled"
            else:
                state = "enabled" if self._state(ev) else "disabled"
            out.append({"name": ev.name, "state": state, "vcpu": ev.vcpu})
        return out

    def set_state(self, name: str, enable: bool, ignore_unavailable: bool,
                  vcpu: int | None) -> None:
        """trace/qmp.c qmp_trace_event_set_state."""
        cpu = self._cpu(vcpu)
        matches = self._matching(name)
        self._check(name, cpu is not None, ignore_unavailable, matches)
        for ev in matches:
            if not ev.available or (cpu is not None and not ev.vcpu):
                continue
            if cpu is not None:
                self._set_vcpu(ev.name, cpu, enable)
            elif ev.vcpu and self.vcpus:
                for index in range(self.vcpus):  # trace_event_set_state_dynamic
                    self._set_vcpu(ev.name, index, enable)
            elif enable:
                self.enabled.add(ev.name)
            else:
                self.enabled.discard(ev.name)

    def _set_vcpu(self, name: str, cpu: int, enable: bool) -> None:
        """trace_event_set_vcpu_state_dynamic."""
        cpus = self.vcpu_enabled.setdefault(name, set())
        if enable:
            cpus.add(cpu)
        else:
            cpus.discard(cpu)

    def log(self, name: str, text: str) -> None:
        """Print an enabled event the way the log backend does."""
        if name in self.enabled:
            print(f"{name} {text}", file=self.stream or sys.stderr, flush=True)
