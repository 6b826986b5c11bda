"""Migration capabilities and parameters, with QEMU 2.11's checks and texts.

Pure model of the `migration` layer [migration/migration.c
qmp_migrate_set_capabilities, migrate_caps_check, migrate_params_check,
qmp_migrate_set_parameters and the legacy wrappers]; the reference is
`../shared/reference/migration.md` §4 and §5. Parameters are kept by their wire
names in the order `query-migrate-parameters` lists them.
"""

from __future__ import annotations

from typing import Any

import attrs

from schema.errors import GenericError

CAPABILITIES = ("xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress",
                "events", "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
                "pause-before-switchover", "x-multifd")

PAGE_SIZE = 4096  # the x86 target page
SIZE_MAX = 2**64 - 1
MAX_MIGRATE_DOWNTIME = 2_000_000  # ms (migration.c MAX_MIGRATE_DOWNTIME)
MAX_MIGRATE_DOWNTIME_SECONDS = 2000

DEFAULT_PARAMETERS: dict[str, Any] = {
    "compress-level": 1,
    "compress-threads": 8,
    "decompress-threads": 2,
    "cpu-throttle-initial": 20,
    "cpu-throttle-increment": 10,
    "tls-creds": "",
    "tls-hostname": "",
    "max-bandwidth": 32 * 1024 * 1024,  # MAX_THROTTLE
    "downtime-limit": 300,
    "x-checkpoint-delay": 200,
    "block-incremental": False,
    "x-multifd-channels": 2,
    "x-multifd-page-count": 16,
    "xbzrle-cache-size": 64 * 1024 * 1024,
}

MIGRATION_ACTIVE = "There's a migration process in progress"  # QERR_MIGRATION_ACTIVE


def _invalid(name: str, expects: str) -> GenericError:
    """QERR_INVALID_PARAMETER_VALUE ("Parameter '%s' expects %s")."""
    return GenericError(f"Parameter '{name}' expects {expects}")


def _range(value: Any, low: int, high: int) -> bool:
    return value is None or low <= value <= high


def check_parameters(p: dict[str, Any]) -> None:
    """migrate_params_check: the first failing check, in QEMU's order."""
    get = p.get
    if not _range(get("compress-level"), 0, 9):
        raise _invalid("compress_level", "is invalid, it should be in the range of 0 to 9")
    if not _range(get("compress-threads"), 1, 255):
        raise _invalid("compress_threads", "is invalid, it should be in the range of 1 to 255")
    if not _range(get("decompress-threads"), 1, 255):
        raise _invalid("decompress_threads",
                       "is invalid, it should be in the range of 1 to 255")
    if not _range(get("cpu-throttle-initial"), 1, 99):
        raise _invalid("cpu_throttle_initial", "an integer in the range of 1 to 99")
    if not _range(get("cpu-throttle-increment"), 1, 99):
        raise _invalid("cpu_throttle_increment", "an integer in the range of 1 to 99")
    if not _range(get("max-bandwidth"), 0, SIZE_MAX):
        raise GenericError("Parameter 'max_bandwidth' expects an integer in the range of "
                           f"0 to {SIZE_MAX} bytes/second")
    if not _range(get("downtime-limit"), 0, MAX_MIGRATE_DOWNTIME):
        raise GenericError("Parameter 'downtime_limit' expects an integer in the range of "
                           f"0 to {MAX_MIGRATE_DOWNTIME} milliseconds")
    delay = get("x-checkpoint-delay")
    if delay is not None and delay < 0:
        raise _invalid("x_checkpoint_delay", "is invalid, it should be positive")
    if not _range(get("x-multifd-channels"), 1, 255):
        raise _invalid("multifd_channels", "is invalid, it should be in the range of 1 to 255")
    if not _range(get("x-multifd-page-count"), 1, 10000):
        raise _invalid("multifd_page_count",
                       "is invalid, it should be in the range of 1 to 10000")
    size = get("xbzrle-cache-size")
    if size is not None and (size < PAGE_SIZE or size & (size - 1)):
        raise _invalid("xbzrle_cache_size", "is invalid, it should be bigger than target "
                       "page size and a power of two")


@attrs.define(kw_only=True)
class Settings:
    """The capabilities and parameters of one machine's migration state."""

    capabilities: dict[str, bool] = attrs.Factory(lambda: dict.fromkeys(CAPABILITIES, False))
    parameters: dict[str, Any] = attrs.Factory(lambda: dict(DEFAULT_PARAMETERS))

    def cap(self, name: str) -> bool:
        return self.capabilities[name]

    def query_capabilities(self) -> list[dict[str, Any]]:
        """qmp_query_migrate_capabilities: all of them, in the enum's order."""
        return [{"capability": name, "state": on} for name, on in self.capabilities.items()]

    def set_capabilities(self, caps: list[dict[str, Any]], *, outgoing: str,
                         runstate: str, postcopy_supported: bool = True) -> None:
        """qmp_migrate_set_capabilities: refused while a migration runs; otherwise the
        values are applied, then checked (a failed check leaves them applied, §4.2)."""
        from migration.states import SETUP_OR_ACTIVE

        if outgoing in SETUP_OR_ACTIVE:
            raise GenericError(MIGRATION_ACTIVE)
        old_postcopy = self.capabilities["postcopy-ram"]
        for entry in caps:
            self.capabilities[entry["capability"]] = entry["state"]
        if self.capabilities["postcopy-ram"]:
            if self.capabilities["compress"]:
                raise GenericError("Postcopy is not currently compatible with compression")
            if not old_postcopy and runstate == "inmigrate" and not postcopy_supported:
                raise GenericError("Postcopy is not supported")

    def query_parameters(self) -> dict[str, Any]:
        return dict(self.parameters)

    def set_parameters(self, p: dict[str, Any]) -> None:
        """qmp_migrate_set_parameters: check the would-be values, then apply them all
        (no "in progress" check: parameters may change during a migration)."""
        changes = dict(p)
        for name in ("tls-creds", "tls-hostname"):
            if name in changes and changes[name] is None:
                changes[name] = ""  # StrOrNull's null is the empty string
        check_parameters(changes)
        self.parameters.update(changes)

    def set_downtime_seconds(self, value: float) -> None:
        """qmp_migrate_set_downtime: seconds, checked before the conversion."""
        if not 0 <= value <= MAX_MIGRATE_DOWNTIME_SECONDS:
            raise GenericError("Parameter 'downtime_limit' expects an integer in the range of "
                               f"0 to {MAX_MIGRATE_DOWNTIME_SECONDS} seconds")
        self.set_parameters({"downtime-limit": int(max(0, value * 1000))})
