"""The machine's other devices as QMP sees them: the RTC's reinjection, TPM, rocker,
and the Xen/COLO commands of an x86_64 build without them.

Handlers of the `devices` layer, registered by schema name [hw/timer/mc146818rtc.c
qmp_rtc_reset_reinjection; tpm.c qmp_query_tpm, qmp_query_tpm_types,
qmp_query_tpm_models; hw/net/rocker/rocker.c qmp_query_rocker*,
rocker_of_dpa.c qmp_query_rocker_of_dpa_*; stubs/xen-hvm.c
qmp_xen_set_global_dirty_log; migration/colo.c (CONFIG_REPLICATION, on by default
in 2.11's configure) qmp_xen_set_replication, qmp_query_xen_replication_status,
qmp_xen_colo_do_checkpoint; migration/colo-failover.c qmp_x_colo_lost_heartbeat].
The catalogue gives the TPM types and models of the recorded binary.
"""

from __future__ import annotations

from typing import Any

from schema.catalog import Catalog
from schema.errors import QERR_FEATURE_DISABLED, GenericError
from schema.handlers import qmp_command


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
