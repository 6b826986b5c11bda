"""QEMU 2.11's two migration state machines as tables, and the run states they touch.

Pure model of the `migration` layer. The outgoing machine is what `query-migrate`
reports and the source's MIGRATION events carry; the incoming machine drives the
destination's events only (`../shared/reference/migration.md` §1, §2, §7.2). Every
change is migrate_set_state's compare-and-swap [migration/migration.c
migrate_set_state]: it happens only if the state is still the expected old one, which
is how a `cancelling` migration refuses a late `failed` or `active`, and why the §2.1
defect exists (a cancel during `setup` whose connection then fails stays `cancelling`).
"""

from __future__ import annotations

import attrs

STATUSES = ("none", "setup", "cancelling", "cancelled", "active", "postcopy-active",
            "completed", "failed", "colo", "pre-switchover", "device")

# §2: (from, to) of the outgoing side.
OUTGOING: frozenset[tuple[str, str]] = frozenset(
    (src, dst) for src, dsts in {
        "none": ("setup",),
        "completed": ("setup",),
        "failed": ("setup",),
        "cancelled": ("setup",),
        "setup": ("failed", "active", "cancelling"),
        "active": ("postcopy-active", "pre-switchover", "completed", "failed",
                   "cancelling", "colo"),
        "pre-switchover": ("device", "postcopy-active", "failed", "cancelling"),
        "device": ("completed", "failed", "cancelling"),
        "postcopy-active": ("completed", "failed", "cancelling"),
        "cancelling": ("cancelled",),
    }.items() for dst in dsts)

# §7.2: the incoming side (`setup` is the start of listening).
INCOMING: frozenset[tuple[str, str]] = frozenset(
    (src, dst) for src, dsts in {
        "none": ("setup", "active"),
        "setup": ("setup", "active"),
        "active": ("postcopy-active", "completed", "failed"),
        "postcopy-active": ("completed", "failed"),
    }.items() for dst in dsts)

# migration_is_setup_or_active, and the states `migrate` refuses to start over.
SETUP_OR_ACTIVE = frozenset({"setup", "active", "postcopy-active", "pre-switchover",
                             "device"})
MIGRATE_BUSY = SETUP_OR_ACTIVE | {"cancelling", "colo"}
# migration_is_idle: device_add/device_del and blockers are allowed only then.
IDLE = frozenset({"none", "cancelled", "completed", "failed"})
TERMINAL = frozenset({"cancelled", "completed", "failed"})
# The states in which query-migrate reports the RAM statistics of a running migration.
WITH_STATS = frozenset({"active", "cancelling", "postcopy-active", "pre-switchover",
                        "device"})


@attrs.define(kw_only=True)
class StateVar:
    """One of the two state variables and its table."""

    table: frozenset[tuple[str, str]]
    state: str = "none"

    def set(self, old: str, new: str) -> bool:
        """migrate_set_state: move to `new` only if still in `old` (and the table
        allows it); returns whether it moved."""
        if self.state != old:
            return False
        if (old, new) not in self.table:
            raise ValueError(f"migration state {old!r} -> {new!r} is not in the table")
        self.state = new
        return True
