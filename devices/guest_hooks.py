"""The Subsystem hooks a device model with guest behaviour does not need.

`devices` layer. The Machine calls the same hooks on every subsystem
(`vmm.machine.subsystem`); the device subsystems whose guest acts through the
Machine's virtual timers have no deadlines of their own and nothing to do before a
`cont`, on a stop, or at exit. They inherit these and write only the hooks they use.
"""

from __future__ import annotations

from schema.handlers import SubsystemHooks


class GuestTimedHooks(SubsystemHooks):
    """No own deadline (the guest's timers are the Machine's virtual timers), nothing
    before cont, on a stop, or at exit: the no-op hooks of `schema.handlers`."""
