"""The `transaction` command: several block actions, all done or none.

Handler of the `blockdev` layer [blockdev.c qmp_transaction and its action table
`actions[]`; block.md §5]. Its neighbours: `blockdev.action` (the action contract and
the prepare → commit / abort → clean order), `blockdev.snapshot` (the snapshot
actions), `blockdev.commands` (the bitmap lookups and checks the bitmap actions
share with the stand-alone commands) and `blockdev.bitmaps`.

`ACTIONS` maps each wire kind of `TransactionAction` to a factory that makes the
action from the action's `data` (wire member names, already checked by the schema
visitor). The handler takes the table it uses as an argument, so that the machine can
add the block jobs' backup actions (`drive-backup`, `blockdev-backup`) to it: a kind
without an entry fails at its place in the list, with the dispatcher's "not
implemented" text, and every action before it is rolled back.

A backup action implements `blockdev.action.Action`: in `prepare(layer, props)` it
creates its job without starting it (`props.completion_mode` may be `grouped`: the
jobs of one grouped transaction share `props.job_txn`, which the first of them
creates), `commit` starts the job, `abort` drops it without an event, `clean`
releases what prepare held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.action import Action, TransactionProperties, check_completion_mode, run_actions
from blockdev.commands import bitmap_add, bitmap_lookup, bitmap_remove
from blockdev.snapshot import ExternalSnapshot, InternalSnapshot
from schema.errors import GenericError
from schema.handlers import qmp_command

if TYPE_CHECKING:
    from blockdev.bitmaps import DirtyBitmap
    from blockdev.layer import BlockLayer

ActionFactory = Callable[["BlockLayer", dict[str, Any]], Action]


class AbortAction(Action):
    """The `abort` action [abort_prepare, abort_commit]: its prepare always fails,
    whatever the completion mode."""

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        raise GenericError("Transaction aborted using Abort action")

    def commit(self, layer: BlockLayer) -> None:
        raise AssertionError("the abort action never commits")


@attrs.define(kw_only=True, eq=False)
class BitmapAdd(Action):
    """block-dirty-bitmap-add [block_dirty_bitmap_add_prepare/_abort]: the stand-alone
    command's work and texts; an abort removes the bitmap again by its name."""

    data: dict[str, Any]
    prepared: bool = False

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        check_completion_mode("block-dirty-bitmap-add", props)
        d = self.data
        bitmap_add(layer, d["node"], d["name"], d.get("granularity"), d.get("persistent"),
                   d.get("autoload"))
        self.prepared = True

    def abort(self, layer: BlockLayer) -> None:
        if self.prepared:
            bitmap_remove(layer, self.data["node"], self.data["name"])


@attrs.define(kw_only=True, eq=False)
class BitmapClear(Action):
    """block-dirty-bitmap-clear [block_dirty_bitmap_clear_prepare/_commit/_abort]:
    the bitmap is cleared in prepare and its old content kept; an abort puts that
    content back (bdrv_undo_clear_dirty_bitmap), a commit drops it. The refusals have
    texts of their own, not the stand-alone command's."""

    data: dict[str, Any]
    bitmap: DirtyBitmap | None = None
    backup: set[int] | None = None

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        check_completion_mode("block-dirty-bitmap-clear", props)
        _bs, bm = bitmap_lookup(layer, self.data["node"], self.data["name"])
        self.bitmap = bm
        if bm.frozen:
            raise GenericError("Cannot modify a frozen bitmap")
        if bm.disabled:
            raise GenericError("Cannot clear a disabled bitmap")
        if bm.readonly:
            raise GenericError("Cannot clear a readonly bitmap")
        self.backup = bm.clear()

    def commit(self, layer: BlockLayer) -> None:
        self.backup = None

    def abort(self, layer: BlockLayer) -> None:
        if self.bitmap is not None and self.backup is not None:
            self.bitmap.undo_clear(self.backup)
            self.backup = None


@attrs.define(kw_only=True, eq=False)
class MissingAction(Action):
    """A kind of the schema that no subsystem has registered yet: its prepare fails
    with the dispatcher's text for a command without a handler."""

    kind: str
    text: Callable[[str], str]

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        raise GenericError(self.text(self.kind))


# The wire kind of a TransactionAction -> the action of its `data` (blockdev.c actions[]).
ACTIONS: Mapping[str, ActionFactory] = {
    "abort": lambda layer, data: AbortAction(),
    "block-dirty-bitmap-add": lambda layer, data: BitmapAdd(data=data),
    "block-dirty-bitmap-clear": lambda layer, data: BitmapClear(data=data),
    "blockdev-snapshot": lambda layer, data: ExternalSnapshot.from_overlay(data),
    "blockdev-snapshot-internal-sync": lambda layer, data: InternalSnapshot.from_qmp(data),
    "blockdev-snapshot-sync": lambda layer, data: ExternalSnapshot.from_sync(data),
}


class Transactions:
    """The `transaction` command of one machine, over its BlockLayer.

    `actions`: the action table (ACTIONS, plus what other subsystems add);
    `not_implemented`: the dispatcher's text for a command without a handler, used
    for a kind the table lacks."""

    def __init__(self, layer: BlockLayer, *, not_implemented: Callable[[str], str],
                 actions: Mapping[str, ActionFactory] = ACTIONS) -> None:
        self.layer = layer
        self.actions = actions
        self.not_implemented = not_implemented

    @qmp_command("transaction")
    def transaction(self, actions: list[dict[str, Any]],
                    properties: dict[str, Any] | None = None) -> None:
        """blockdev.c qmp_transaction."""
        layer = self.layer
        props = TransactionProperties.from_qmp(properties)
        run_actions(layer, [self._action(a["type"], a.get("data") or {}) for a in actions],
                    props)

    def _action(self, kind: str, data: dict[str, Any]) -> Action:
        factory = self.actions.get(kind)
        if factory is None:
            return MissingAction(kind=kind, text=self.not_implemented)
        return factory(self.layer, data)
