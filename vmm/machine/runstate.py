"""QEMU 2.11's run states: the transition table as data, and the VM start/stop primitives.

Pure model of the `vmm` layer (no trio, no I/O, no clock). The table is
`runstate_transitions_def` of vl.c as restated in `../shared/reference/runstate.md`
§2; the primitives are §2.1's "VM stop", "VM start" and "VM stop-force". Changing the
state emits nothing by itself: the primitives return the events they raise, and the
Machine publishes them.
"""

from __future__ import annotations

import attrs

RUN_STATES = (
    "debug", "inmigrate", "internal-error", "io-error", "paused", "postmigrate",
    "prelaunch", "finish-migrate", "restore-vm", "running", "save-vm", "shutdown",
    "suspended", "watchdog", "guest-panicked", "colo",
)

# vl.c runstate_transitions_def (QEMU 2.11.0): 68 allowed (from, to) pairs.
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    (src, dst)
    for src, dsts in {
        "debug": ("prelaunch", "finish-migrate", "running", "suspended"),
        "inmigrate": ("internal-error", "io-error", "paused", "postmigrate", "prelaunch",
                      "finish-migrate", "running", "shutdown", "suspended", "watchdog",
                      "guest-panicked", "colo"),
        "internal-error": ("paused", "prelaunch", "finish-migrate"),
        "io-error": ("prelaunch", "finish-migrate", "running"),
        "paused": ("postmigrate", "prelaunch", "finish-migrate", "running", "colo"),
        "postmigrate": ("prelaunch", "finish-migrate", "running"),
        "prelaunch": ("inmigrate", "finish-migrate", "running"),
        "finish-migrate": ("paused", "postmigrate", "prelaunch", "running", "colo"),
        "restore-vm": ("prelaunch", "running"),
        "running": ("debug", "internal-error", "io-error", "paused", "finish-migrate",
                    "restore-vm", "save-vm", "shutdown", "suspended", "watchdog",
                    "guest-panicked", "colo"),
        "save-vm": ("running",),
        "shutdown": ("paused", "prelaunch", "finish-migrate"),
        "suspended": ("prelaunch", "finish-migrate", "running", "colo"),
        "watchdog": ("prelaunch", "finish-migrate", "running", "colo"),
        "guest-panicked": ("prelaunch", "finish-migrate", "running"),
        "colo": ("running",),
    }.items()
    for dst in dsts
)


class InvalidTransition(Exception):
    """A transition vl.c's table does not allow; real QEMU aborts on it.

    The message is what QEMU prints to stderr before calling abort().
    """

    def __init__(self, src: str, dst: str) -> None:
        super().__init__(f"invalid runstate transition: '{src}' -> '{dst}'")
        self.src = src
        self.dst = dst


@attrs.define(kw_only=True)
class RunState:
    """The VM's run state and the primitives that move it (cpus.c, vl.c)."""

    state: str = "prelaunch"
    singlestep: bool = False

    @property
    def running(self) -> bool:
        return self.state == "running"

    def set(self, new: str) -> None:
        """runstate_set: a no-op for the current state, else the table decides."""
        if new == self.state:
            return
        if (self.state, new) not in TRANSITIONS:
            raise InvalidTransition(self.state, new)
        self.state = new

    def vm_stop(self, new: str) -> list[str]:
        """do_vm_stop: only a running VM stops (and says STOP); otherwise nothing."""
        if self.state != "running":
            return []
        self.set(new)
        return ["STOP"]

    def vm_start(self) -> list[str]:
        """vm_prepare_start: a running VM stays silent, anything else resumes."""
        if self.state == "running":
            return []
        self.set("running")
        return ["RESUME"]

    def vm_stop_force(self, new: str) -> list[str]:
        """vm_stop_force_state: a VM stop if running, else just the new state."""
        if self.state == "running":
            return self.vm_stop(new)
        self.set(new)
        return []
