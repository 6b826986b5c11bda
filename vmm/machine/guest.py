"""The simulated guest: how the machine's occupant reacts to what management does.

Pure model of the `vmm` layer. No guest code runs, yet management tools depend on
guest reactions: an ACPI power button press makes a real OS shut down a moment
later, a reset makes it reboot. Each reaction has a default that matches a
cooperative Linux guest and can be changed with an emulator-only option
(`--emu-guest-powerdown=shutdown|ignore`, `--emu-guest-powerdown-delay=SECONDS`).
A guest only acts while its VM runs: a reaction that falls due while the VM is
stopped waits until the VM runs again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from vmm.machine.core import Machine

POWERDOWN_REACTIONS = ("shutdown", "ignore")


@attrs.frozen
class GuestBehaviour:
    """How the simulated guest reacts; the defaults are a cooperative guest."""

    powerdown: str = "shutdown"
    powerdown_delay: float = 0.5  # seconds between the button press and the power-off

    def __attrs_post_init__(self) -> None:
        if self.powerdown not in POWERDOWN_REACTIONS:
            raise ValueError(f"guest power-down reaction must be one of "
                             f"{', '.join(POWERDOWN_REACTIONS)}")
        if not self.powerdown_delay >= 0:
            raise ValueError("guest power-down delay must be a non-negative number")


@attrs.define(kw_only=True)
class Guest:
    behaviour: GuestBehaviour
    machine: Machine | None = None
    # A power-off the guest has decided on but not carried out yet (generation-tagged
    # so that a reset in between cancels it).
    shutdown_pending: bool = False
    _generation: int = 0

    def on_power_button(self) -> None:
        """The ACPI power button was pressed (the POWERDOWN event just went out)."""
        if self.behaviour.powerdown == "ignore" or self.shutdown_pending:
            return
        self.shutdown_pending = True
        self._schedule_shutdown()

    def _schedule_shutdown(self) -> None:
        machine = self.machine
        assert machine is not None
        generation = self._generation

        def fire() -> None:
            if generation != self._generation or not self.shutdown_pending:
                return
            if machine.runstate.state != "running":
                return  # picked up again by on_vm_start
            self.shutdown_pending = False
            machine.guest_poweroff()

        machine.call_later(self.behaviour.powerdown_delay, fire)

    def on_vm_start(self) -> None:
        """The VM runs again: a decision taken before the stop is carried out now."""
        if self.shutdown_pending:
            self._generation += 1
            self._schedule_shutdown()

    def on_reset(self) -> None:
        """A machine reset reboots the guest: whatever it was about to do is forgotten."""
        self._generation += 1
        self.shutdown_pending = False
