"""The machine's other devices: the i6300esb watchdog, the guest's watchdog daemon
and panics (through pvpanic), and as QMP sees them the RTC's reinjection, TPM,
rocker, and the Xen/COLO commands of an x86_64 build without them.

Handlers of the `devices` layer, registered by schema name [hw/timer/mc146818rtc.c
qmp_rtc_reset_reinjection; tpm.c qmp_query_tpm, qmp_query_tpm_types,
qmp_query_tpm_models; hw/net/rocker/rocker.c qmp_query_rocker*,
rocker_of_dpa.c qmp_query_rocker_of_dpa_*; stubs/xen-hvm.c
qmp_xen_set_global_dirty_log; migration/colo.c (CONFIG_REPLICATION, on by default
in 2.11's configure) qmp_xen_set_replication, qmp_query_xen_replication_status,
qmp_xen_colo_do_checkpoint; migration/colo-failover.c qmp_x_colo_lost_heartbeat].
The catalogue gives the TPM types and models of the recorded binary.

`GuestMisc` is a Subsystem of the Machine: the guest OS's reactions as named
behaviours [hw/watchdog/wdt_i6300esb.c i6300esb_restart_timer,
i6300esb_timer_expired; hw/misc/pvpanic.c pvpanic_ioport_write]: a watchdog daemon
that arms every watchdog device once the OS has booted and then lets it fire
(`watchdog=starve`, `watchdog-timeout`), and an OS that panics (`panic`,
`panic-delay`), which the host sees only through a pvpanic device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from devices.guest_hooks import GuestTimedHooks
from devices.host import DeviceHost, TimerHandle
from schema.catalog import Catalog
from schema.errors import QERR_FEATURE_DISABLED, GenericError
from schema.handlers import Behaviour, choice, qmp_command, seconds

WATCHDOG = Behaviour(
    "watchdog", "what the guest's watchdog daemon does with the watchdog devices: none "
    "(never opens them) or starve (arms them with watchdog-timeout once the OS runs, "
    "then stops feeding, so they fire)", choice("none", "starve"), os="none",
    firmware="none")
WATCHDOG_TIMEOUT = Behaviour(
    "watchdog-timeout", "the heartbeat in seconds the guest's watchdog driver programs",
    seconds, os=30.0, firmware=30.0)
PANIC = Behaviour(
    "panic", "the guest OS panics panic-delay seconds of run time after it starts (once) "
    "or never; a pvpanic device reports it as GUEST_PANICKED", choice("never", "once"),
    os="never", firmware="never")
PANIC_DELAY = Behaviour(
    "panic-delay", "seconds of run time from the OS's start to its panic", seconds,
    os=1.0, firmware=1.0)

NMI = Behaviour(
    "nmi", "what the guest OS does with an NMI (inject-nmi, the inject-nmi watchdog "
    "action): ignore (Linux's default: it logs an unknown NMI) or panic "
    "(unknown_nmi_panic)", choice("ignore", "panic"), os="ignore", firmware="ignore")

MISC_BEHAVIOURS = (WATCHDOG, WATCHDOG_TIMEOUT, PANIC, PANIC_DELAY, NMI)


class PortDevice(Protocol):
    def write(self, offset: int, value: int, size: int) -> None: ...


@attrs.define(eq=False)
class Ib700Watchdog:
    """The guest's driver of an iBASE 700 (devices.chipset.Ib700): it writes the
    timeout's index to port 0x443 (wdt_ib700.c: 30 - 2 * index seconds)."""

    device: PortDevice

    def arm(self, seconds: float) -> None:
        self.device.write(2, min(15, max(0, int(30 - seconds) // 2)), 1)

    def reset(self) -> None:
        """The port device resets with the address spaces."""


class Watchdog(Protocol):
    """A watchdog device as the guest's driver programs it."""

    def arm(self, seconds: float) -> None:
        """The driver sets its heartbeat and enables it."""

    def reset(self) -> None: ...


@attrs.define(kw_only=True, eq=False)
class I6300esb:
    """The Intel 6300ESB watchdog (hw/watchdog/wdt_i6300esb.c): two stages, each
    (preload << 15) ticks of 30 ns at the 1 kHz scale after reset; the second stage's
    expiry runs the watchdog action (reboot_enabled). Linux's i6300esb driver
    programs both preloads with heartbeat << 9."""

    host: DeviceHost
    enabled: bool = False
    stage: int = 1
    preload: int = 0xFFFFF
    timer: TimerHandle | None = None

    def arm(self, seconds: float) -> None:
        self.preload = int(seconds) << 9
        self.enabled = True
        self._restart(1)

    def _restart(self, stage: int) -> None:
        """i6300esb_restart_timer."""
        self.stage = stage
        if self.timer is not None:
            self.timer.cancel()
        timeout_ns = (self.preload << 15) * 30
        self.timer = self.host.vm_call_at(self.host.vm_clock_ns() + timeout_ns,
                                          self._expired)

    def _expired(self) -> None:
        """i6300esb_timer_expired: stage 1 would interrupt the guest and starts stage
        2; stage 2 runs the watchdog action."""
        self.timer = None
        if self.stage == 1:
            self._restart(2)
        else:
            self.host.watchdog_expired()

    def reset(self) -> None:
        """i6300esb_reset: disabled, preloads back to 0xfffff."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        self.enabled = False
        self.stage = 1
        self.preload = 0xFFFFF


@attrs.define(kw_only=True, eq=False)
class GuestMisc(GuestTimedHooks):
    """The watchdog devices and pvpanic of one machine, and the guest OS's use of
    them (a Subsystem: the guest acts only while the VM runs)."""

    host: DeviceHost
    behaviours: Any  # the Machine's behaviours (`get(name)`)
    watchdogs: list[Watchdog] = attrs.Factory(list)
    pvpanic: bool = False
    os: bool = True  # an OS runs (not under the qtest accelerator)
    running: Callable[[], bool] = lambda: False  # the VM runs (its vCPUs execute)
    _booted: bool = False  # the OS started since the last reset
    _panic: TimerHandle | None = None
    _boot_timer: TimerHandle | None = None
    _nmi_pending: bool = False

    def add_watchdog(self, device: Watchdog) -> None:
        self.watchdogs.append(device)

    def _acts(self) -> bool:
        """The booting OS does something the host can see."""
        return (self.behaviours.get("watchdog") == "starve" and bool(self.watchdogs)) or \
            self.behaviours.get("panic") == "once"

    def _boot(self) -> None:
        """The OS starts (the first time the VM runs after a reset)."""
        self._boot_timer = None
        if self._booted:
            return
        self._booted = True
        if self.behaviours.get("watchdog") == "starve":
            for device in self.watchdogs:
                device.arm(self.behaviours.get("watchdog-timeout"))
        if self.behaviours.get("panic") == "once":
            delay_ns = int(self.behaviours.get("panic-delay") * 1e9)
            self._panic = self.host.vm_call_at(self.host.vm_clock_ns() + delay_ns,
                                               self._panicked)

    def nmi(self) -> None:
        """hw/i386/pc.c x86_nmi: an NMI to every CPU, taken once they run (a pending
        CPU_INTERRUPT_NMI); the OS's handler decides (`nmi`)."""
        if not self.os or self.behaviours.get("nmi") != "panic":
            return
        if self.running():
            self._panicked()
        else:
            self._nmi_pending = True

    def _panicked(self) -> None:
        """The OS panics; its pvpanic driver writes PVPANIC_PANICKED
        (pvpanic.c -> qemu_system_guest_panicked), else nothing shows."""
        self._panic = None
        if self.pvpanic:
            self.host.guest_panicked()

    # -- Subsystem hooks ------------------------------------------------------------

    def reset(self) -> None:
        """The devices reset and the OS starts again: at once when the VM keeps
        running (a guest or watchdog reset), else at its next start."""
        for device in self.watchdogs:
            device.reset()
        for timer in (self._panic, self._boot_timer):
            if timer is not None:
                timer.cancel()
        self._panic = self._boot_timer = None
        self._booted = False
        self._nmi_pending = False
        if self.os and self.running() and self._acts():
            # after every device's reset (a port watchdog resets with the address
            # spaces, which may come later in the Machine's order)
            self._boot_timer = self.host.vm_call_at(self.host.vm_clock_ns(), self._boot)

    def vm_start(self) -> None:
        if self.os and not self._booted:
            self._boot()
        if self._nmi_pending:
            self._nmi_pending = False
            self._panicked()


class MiscCommands:
    """QMP commands of the RTC, TPM, rocker, Xen and COLO (none of them configured:
    the emulator has no -tpmdev, no rocker switch, no Xen, no COLO)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @qmp_command("rtc-reset-reinjection")
    def rtc_reset_reinjection(self) -> None:
        """mc146818rtc.c: every RTC forgets its coalesced interrupts; nothing a monitor
        can see (x86 builds have the command whatever the board)."""

    @qmp_command("query-tpm")
    def query_tpm(self) -> list[dict[str, Any]]:
        """tpm.c qmp_query_tpm: the -tpmdev backends; none configured."""
        return []

    @qmp_command("query-tpm-types")
    def query_tpm_types(self) -> list[str]:
        return self.catalog.tpm_types()

    @qmp_command("query-tpm-models")
    def query_tpm_models(self) -> list[str]:
        return self.catalog.tpm_models()

    # -- rocker: rocker_find finds no switch ---------------------------------------------

    @qmp_command("query-rocker")
    def query_rocker(self, name: str) -> dict[str, Any]:
        raise GenericError(f"rocker {name} not found")

    @qmp_command("query-rocker-ports")
    def query_rocker_ports(self, name: str) -> list[dict[str, Any]]:
        raise GenericError(f"rocker {name} not found")

    @qmp_command("query-rocker-of-dpa-flows")
    def query_rocker_of_dpa_flows(self, name: str,
                                  tbl_id: int | None = None) -> list[dict[str, Any]]:
        raise GenericError(f"rocker {name} not found")

    @qmp_command("query-rocker-of-dpa-groups")
    def query_rocker_of_dpa_groups(self, name: str,
                                   type: int | None = None) -> list[dict[str, Any]]:
        raise GenericError(f"rocker {name} not found")

    # -- Xen and COLO ---------------------------------------------------------------------

    @qmp_command("xen-set-global-dirty-log")
    def xen_set_global_dirty_log(self, enable: bool) -> None:
        """stubs/xen-hvm.c: a no-op without Xen."""

    @qmp_command("xen-set-replication")
    def xen_set_replication(self, enable: bool, primary: bool,
                            failover: bool | None = None) -> None:
        """colo.c qmp_xen_set_replication: with no replication state registered,
        starting and stopping all of them succeeds."""
        if failover is not None and enable:
            raise GenericError("Parameter 'failover' is only for stopping replication")

    @qmp_command("query-xen-replication-status")
    def query_xen_replication_status(self) -> dict[str, Any]:
        """colo.c: replication_get_error_all over no replication state: no error."""
        return {"error": False}

    @qmp_command("xen-colo-do-checkpoint")
    def xen_colo_do_checkpoint(self) -> None:
        """colo.c: replication_do_checkpoint_all over no replication state."""

    @qmp_command("x-colo-lost-heartbeat")
    def x_colo_lost_heartbeat(self) -> None:
        """colo-failover.c: not in COLO mode."""
        raise GenericError(QERR_FEATURE_DISABLED % "colo")
