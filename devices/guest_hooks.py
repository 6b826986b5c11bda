"""The Subsystem hooks a device model with guest behaviour does not need.

`devices` layer. The Machine calls the same hooks on every subsystem
(`vmm.machine.subsystem`); the device subsystems whose guest acts through the
Machine's virtual timers have no deadlines of their own and nothing to do before a
`cont`, on a stop, or at exit. They inherit these and write only the hooks they use.
"""

from __future__ import annotations

import math


class GuestTimedHooks:
    """No-op hooks: no own deadline (the guest's timers are the Machine's virtual
    timers), nothing before cont, on a stop, or at exit."""

    def before_cont(self) -> None:
        pass

    def vm_stop(self) -> None:
        pass

    def next_deadline(self) -> float:
        return math.inf

    def run_due(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass
