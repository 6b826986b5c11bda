"""The simulated guest: named behaviours, the guest profiles, and the guest itself.

Pure model of the `vmm` layer. No guest code runs, yet management tools depend on
guest reactions: an ACPI power button press makes a real OS shut down a moment
later, SeaBIOS resets the machine once more after a system reset. Each reaction is a
named `Behaviour` (declared in `schema.handlers`, so that subsystems can declare
theirs) whose value comes from the guest profile and can be changed on the command
line (`--emu-behaviour=NAME=VALUE`) or at run time (`Machine.behaviours.set`):

- `--emu-guest=os` (the default): a cooperative OS. It powers off when the ACPI power
  button is pressed, `powerdown-delay` seconds of run time later.
- `--emu-guest=firmware`: what a QEMU booted without an OS shows: SeaBIOS runs and
  nothing answers ACPI.

In both profiles a board with firmware (the PC machines; `-machine none` has none)
runs SeaBIOS, which resets the machine once after a system reset: one `RESET
{"guest": true}` once the VM has run again for `firmware-reboot-delay` (13 ms, as
a 2.11.0 showed: ../shared/reference/runstate.md, top paragraph), so a command sent
right after the reset is answered before it, as on a real QEMU. The first start shows none: SeaBIOS reboots only when it finds that it
has run POST already (SeaBIOS src/resume.c, `HaveRunPost`), and runstate.md's
verified start-up and `-S`/`cont` transcripts (§2.2, §3.7) carry no RESET.

A guest only acts while its VM runs: its timers run on the virtual clock. Under
`-machine accel=qtest` no guest code runs at all (the vCPUs are dummies), so neither
the OS nor SeaBIOS reacts, whatever the behaviours say: what QEMU's own qtest-based
tests see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from schema.handlers import (
    PROFILES,
    Behaviour,
    BehaviourError,
    SubsystemHooks,
    choice,
    flag,
    seconds,
)
from vmm.machine.clock import Timer

if TYPE_CHECKING:
    from vmm.machine.core import Machine

POWERDOWN = Behaviour(
    "powerdown", "what the guest does when the ACPI power button is pressed",
    choice("shutdown", "ignore"), os="shutdown", firmware="ignore")
POWERDOWN_DELAY = Behaviour(
    "powerdown-delay", "seconds of run time from the power button to the power-off",
    seconds, os=0.5, firmware=0.5)
FIRMWARE_REBOOT = Behaviour(
    "firmware-reboot", "SeaBIOS resets the machine once after a system reset (on|off)",
    flag, os=True, firmware=True)
# runstate.md, top: on 2.11.0 SeaBIOS's RESET came about 13 ms after QEMU's.
FIRMWARE_REBOOT_DELAY = Behaviour(
    "firmware-reboot-delay", "seconds of run time SeaBIOS takes before its reset",
    seconds, os=0.013, firmware=0.013)

GUEST_BEHAVIOURS = (POWERDOWN, POWERDOWN_DELAY, FIRMWARE_REBOOT, FIRMWARE_REBOOT_DELAY)


@attrs.define(kw_only=True)
class Behaviours:
    """The current value of every declared behaviour of one machine."""

    profile: str = "os"
    _declared: dict[str, Behaviour] = attrs.Factory(dict)
    _values: dict[str, Any] = attrs.Factory(dict)

    @classmethod
    def create(cls, declarations: Iterable[Behaviour], *, profile: str = "os",
               overrides: Sequence[tuple[str, Any]] = ()) -> Behaviours:
        if profile not in PROFILES:
            raise BehaviourError(f"expects one of {', '.join(PROFILES)}")
        registry = cls(profile=profile)
        registry.declare(*declarations)
        for name, value in overrides:
            registry.set(name, value)
        return registry

    def declare(self, *declarations: Behaviour) -> None:
        """Add behaviours (a subsystem's), valued by the current profile."""
        for decl in declarations:
            if decl.name in self._declared:
                raise ValueError(f"behaviour {decl.name!r} declared twice")
            self._declared[decl.name] = decl
            self._values[decl.name] = decl.default(self.profile)

    def get(self, name: str) -> Any:
        return self._values[name]

    def set(self, name: str, value: Any) -> None:
        """Change one behaviour; text is converted as on the command line."""
        decl = self._declared.get(name)
        if decl is None:
            raise BehaviourError(f"unknown behaviour '{name}'")
        self._values[name] = decl.convert(value)

    def use_profile(self, profile: str) -> None:
        """Every behaviour back to `profile`'s value."""
        if profile not in PROFILES:
            raise BehaviourError(f"expects one of {', '.join(PROFILES)}")
        self.profile = profile
        for decl in self._declared.values():
            self._values[decl.name] = decl.default(profile)

    def declarations(self) -> list[Behaviour]:
        return list(self._declared.values())


@attrs.define(kw_only=True)
class Guest(SubsystemHooks):
    """The guest OS and the firmware of one machine (a Subsystem of the Machine)."""

    machine: Machine
    firmware: bool  # the board boots SeaBIOS (and its vCPUs run)
    os: bool = True  # an OS runs behind the firmware (not under the qtest accelerator)
    _poweroff: Timer | None = None
    _reboot: Timer | None = None
    # SeaBIOS: POST has run since its image was last restored; a reset found it so
    # (the reboot is due once the VM runs); the guest suspended to RAM (CMOS shutdown
    # status 0xfe: the next reset is a resume, not a reboot).
    _posted: bool = False
    _reboot_due: bool = False
    _s3: bool = False

    # -- the OS -------------------------------------------------------------------------

    def on_power_button(self) -> None:
        """The ACPI power button was pressed (the POWERDOWN event just went out)."""
        behaviours = self.machine.behaviours
        if not self.os or behaviours.get("powerdown") == "ignore" or \
                self._poweroff is not None:
            return
        self._poweroff = self.machine.vm_call_later(behaviours.get("powerdown-delay"),
                                                    self._power_off)

    def _power_off(self) -> None:
        self._poweroff = None
        self.machine.guest_poweroff()

    def on_suspend(self) -> None:
        """The guest entered ACPI S3."""
        self._s3 = True

    def on_wakeup(self) -> None:
        """The machine woke from S3 (after its silent reset): SeaBIOS resumed the OS."""
        self._s3 = False

    # -- the firmware -------------------------------------------------------------------

    def on_system_reset(self) -> None:
        """A system reset with a cause (the one that says RESET): the CPU starts SeaBIOS
        from the reset vector. A reset without one (start-up, S3 wake-up, loadvm)
        either comes before the firmware runs or restores where it was."""
        if not self.firmware:
            return
        if self._s3:
            self._s3 = False  # CMOS shutdown status 0xfe: SeaBIOS resumes the OS
            return
        if self._posted:
            self._posted = False
            self._reboot_due = bool(self.machine.behaviours.get("firmware-reboot"))
        self._firmware_runs()

    def _firmware_runs(self) -> None:
        """SeaBIOS runs (only while the VM does): on a machine where it has run POST
        before, it resets the machine once more, from a restored image."""
        if not self.firmware or not self.machine.runstate.running:
            return
        if self._reboot_due:
            if self._reboot is None:
                self._reboot = self.machine.vm_call_later(
                    self.machine.behaviours.get("firmware-reboot-delay"), self._reboot_now)
        else:
            self._posted = True

    def _reboot_now(self) -> None:
        self._reboot = None
        self._reboot_due = False
        self.machine.guest_reset()

    # -- Subsystem hooks ----------------------------------------------------------------

    def reset(self) -> None:
        """A machine reset reboots the guest: whatever it was about to do is forgotten."""
        if self._poweroff is not None:
            self._poweroff.cancel()
            self._poweroff = None
        if self._reboot is not None:  # on_system_reset decides afresh
            self._reboot.cancel()
            self._reboot = None

    def vm_start(self) -> None:
        self._firmware_runs()

    def next_deadline(self) -> float:
        return float("inf")
