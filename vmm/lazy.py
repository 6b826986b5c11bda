"""What the composition root (`vmm.vm`) loads on first use, so that a plain start-up
does not import it.

`vmm` layer, pure. A subsystem that a machine only needs once a command, an option
or a guest uses it (migration, ...) is plugged into the Machine as a `LazySubsystem`
in the place where the subsystem itself would be, so the hooks run in the same order
as if it had been built with the machine; its command handlers join the dispatcher
as a `schema.handlers.LazyOwner`, under the names listed here, which are the names
the owner's class marks (`tests/test_lazy.py` pins the two together). Command owners
over another subsystem (the transaction command over the block layer) join as
LazyOwners alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

from vmm.machine.subsystem import Subsystem

T = TypeVar("T", bound=Subsystem)

# migration.commands.MigrationCommands
MIGRATION_COMMANDS = (
    "migrate", "migrate_cancel", "migrate-continue", "migrate-start-postcopy",
    "migrate-incoming", "query-migrate", "query-migrate-capabilities",
    "migrate-set-capabilities", "query-migrate-parameters", "migrate-set-parameters",
    "migrate_set_speed", "migrate_set_downtime", "migrate-set-cache-size",
    "query-migrate-cache-size", "xen-save-devices-state", "xen-load-devices-state",
)

# The block jobs (blockdev.jobs.core, built with the first of these commands), the
# commands that start them, and the transaction command with its actions
# (blockdev.transaction, the backup actions); each list loads only its own owner.
BLOCK_JOB_COMMANDS = (  # blockdev.jobs.commands.BlockJobCommands
    "query-block-jobs", "block-job-set-speed", "block-job-cancel", "block-job-pause",
    "block-job-resume", "block-job-complete",
)
STREAM_COMMANDS = ("block-stream",)  # blockdev.jobs.stream.StreamCommands
COMMIT_COMMANDS = ("block-commit",)  # blockdev.jobs.commit.CommitCommands
MIRROR_COMMANDS = ("drive-mirror", "blockdev-mirror")  # blockdev.jobs.mirror.MirrorCommands
BACKUP_COMMANDS = ("drive-backup", "blockdev-backup")  # blockdev.jobs.backup.BackupCommands
TRANSACTION_COMMANDS = ("transaction",)  # blockdev.transaction.Transactions


class LazySubsystem(Generic[T]):
    """A subsystem built the first time something asks for it (`lazy()`), standing
    in for it among the Machine's subsystems. Its hooks reach the subsystem once it
    is built; before, they have nothing to do: only a subsystem whose hooks leave a
    freshly built one as it was may be composed this way (an idle one: no timer, no
    file, nothing that a reset or a run state change would touch)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._subsystem: T | None = None
        self._waiting: list[Callable[[T], None]] = []

    @property
    def built(self) -> bool:
        return self._subsystem is not None

    def __call__(self) -> T:
        if self._subsystem is None:
            self._subsystem = self._build()
            waiting, self._waiting = self._waiting, []
            for callback in waiting:
                callback(self._subsystem)
        return self._subsystem

    def when_built(self, callback: Callable[[T], None]) -> None:
        """Call `callback` with the subsystem now if it is built, else once it is."""
        if self._subsystem is None:
            self._waiting.append(callback)
        else:
            callback(self._subsystem)

    def reset(self) -> None:
        if self._subsystem is not None:
            self._subsystem.reset()

    def before_cont(self) -> None:
        if self._subsystem is not None:
            self._subsystem.before_cont()

    def vm_start(self) -> None:
        if self._subsystem is not None:
            self._subsystem.vm_start()

    def vm_stop(self) -> None:
        if self._subsystem is not None:
            self._subsystem.vm_stop()

    def next_deadline(self) -> float:
        if self._subsystem is None:
            return math.inf
        return self._subsystem.next_deadline()

    def run_due(self, now: float) -> None:
        if self._subsystem is not None:
            self._subsystem.run_due(now)

    def close(self) -> None:
        if self._subsystem is not None:
            self._subsystem.close()
