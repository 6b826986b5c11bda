"""Trace events: the ones this emulator really has, with QEMU 2.11's QMP semantics.

`vmm` layer. QEMU 2.11 lists a few thousand trace points, one per instrumented spot
of its C code; an emulator that runs none of that code has only the spots it models.
It carries those of QEMU's trace points (same names, same vCPU flag) whose code path
it reproduces: run-state changes, shutdown/power-down/wake-up requests, the monitor's
command handling and event emission. `trace-event-get-state`/`-set-state` behave as
trace/qmp.c does over that set, glob patterns included (`trace_event_is_pattern`:
a name containing `*`). Enabled events are printed as QEMU's "log" backend prints
them, one line on stderr.
"""

from __future__ import annotations

import fnmatch
import sys
from typing import Any, TextIO

import attrs

from schema.errors import GenericError

# Names as in QEMU 2.11.0's top-level trace-events file; none of them is per-vCPU.
EMULATED_TRACE_EVENTS = (
    "vm_state_notify",
    "runstate_set",
    "system_wakeup_request",
    "qemu_system_shutdown_request",
    "qemu_system_powerdown_request",
    "monitor_protocol_event_handler",
    "monitor_protocol_event_emit",
    "monitor_protocol_event_queue",
    "handle_hmp_command",
    "handle_qmp_command",
)


@attrs.define(kw_only=True)
class TraceEvents:
    enabled: set[str] = attrs.Factory(set)
    stream: TextIO | None = None

    def _matching(self, name: str) -> list[str]:
        if "*" in name:
            return [n for n in EMULATED_TRACE_EVENTS if fnmatch.fnmatchcase(n, name)]
        return [n for n in EMULATED_TRACE_EVENTS if n == name]

    def _check(self, name: str, vcpu: int | None, smp_cpus: int) -> None:
        if vcpu is not None and not 0 <= vcpu < smp_cpus:
            raise GenericError(f"invalid vCPU index {vcpu % 2**32}")
        if "*" not in name:
            if name not in EMULATED_TRACE_EVENTS:
                raise GenericError(f'unknown event "{name}"')
            if vcpu is not None:
                raise GenericError(f'event "{name}" is not vCPU-specific')

    def get_state(self, name: str, vcpu: int | None, smp_cpus: int) -> list[dict[str, Any]]:
        """trace/qmp.c qmp_trace_event_get_state (vCPU events are skipped with `vcpu`)."""
        self._check(name, vcpu, smp_cpus)
        if vcpu is not None:
            return []
        return [{"name": n, "state": "enabled" if n in self.enabled else "disabled",
                 "vcpu": False} for n in self._matching(name)]

    def set_state(self, name: str, enable: bool, ignore_unavailable: bool,
                  vcpu: int | None, smp_cpus: int) -> None:
        """trace/qmp.c qmp_trace_event_set_state."""
        self._check(name, vcpu, smp_cpus)
        if vcpu is not None:
            return
        for n in self._matching(name):
            if enable:
                self.enabled.add(n)
            else:
                self.enabled.discard(n)

    def log(self, name: str, text: str) -> None:
        """Print an enabled event the way the log backend does."""
        if name in self.enabled:
            print(f"{name} {text}", file=self.stream or sys.stderr, flush=True)
