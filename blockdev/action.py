"""The contract of a transaction action, and QEMU 2.11's order of running actions.

Pure model of the `blockdev` layer [blockdev.c BlkActionOps, BlkActionState,
get_transaction_properties, action_check_completion_mode, qmp_transaction]. Its
neighbours: `blockdev.snapshot` (the snapshot actions, which the stand-alone snapshot
commands run as one-action transactions), `blockdev.transaction` (the `transaction`
command, its action table and the bitmap and abort actions) and, through that table,
the block jobs' backup actions.

An action is an object made from one `TransactionAction` of the wire (its `data`);
`run_actions` drives it:

    prepare(layer, props)  the real work, as far as it can be undone; may fail
                           (a QMPError); `props` is the transaction's
                           TransactionProperties, shared by all its actions
    commit(layer)          every prepare succeeded: make it final (cannot fail)
    abort(layer)           some prepare failed (this one's included): undo
    clean(layer)           after commit or abort, always: release what prepare held

Only prepare may fail (a QMPError: most are GenericError, a lookup may be
DeviceNotFound); an action gets exactly one of commit and abort, then clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from schema.errors import GenericError, QMPError

if TYPE_CHECKING:
    from blockdev.layer import BlockLayer


@attrs.define(kw_only=True, eq=False)
class TransactionProperties:
    """One transaction's TransactionProperties, with get_transaction_properties'
    default (`individual`), and the per-transaction state QEMU keeps beside them.

    `job_txn` is BlkActionState.block_job_txn: None in `individual` mode; in
    `grouped` mode the group that the jobs of this transaction's backup actions join
    (block_job_txn_new). The transaction creates no group itself: the first backup
    action that needs one creates it (in its prepare) and stores it here, and the
    others of the same transaction find it here.
    """

    completion_mode: str = "individual"
    job_txn: Any = None

    @classmethod
    def from_qmp(cls, properties: dict[str, Any] | None) -> TransactionProperties:
        """get_transaction_properties: the wire's `properties` (absent: defaults)."""
        mode = (properties or {}).get("completion-mode")
        return cls(completion_mode=mode if mode is not None else "individual")

    @property
    def grouped(self) -> bool:
        return self.completion_mode != "individual"


class Action:
    """BlkActionOps of one action kind; the instance is its BlkActionState."""

    def prepare(self, layer: BlockLayer, props: TransactionProperties) -> None:
        raise NotImplementedError

    def commit(self, layer: BlockLayer) -> None:
        pass

    def abort(self, layer: BlockLayer) -> None:
        pass

    def clean(self, layer: BlockLayer) -> None:
        pass


def check_completion_mode(kind: str, props: TransactionProperties) -> None:
    """action_check_completion_mode: only backup actions take `grouped`; `kind` is
    the action's wire name (TransactionActionKind_str)."""
    if props.grouped:
        raise GenericError(f"Action '{kind}' does not support Transaction property "
                           f"completion-mode = {props.completion_mode}")


def run_actions(layer: BlockLayer, actions: Sequence[Action],
                props: TransactionProperties) -> None:
    """qmp_transaction's order: prepare each action in list order; at the first
    failure, abort every action prepared so far (the failed one included) in list
    order, and raise its error; otherwise commit each in list order. Then clean
    every action that was attempted. (bdrv_drain_all comes first in QEMU: every
    request of the emulator completes within the call that made it, so nothing is in
    flight here.)"""
    attempted: list[Action] = []
    try:
        try:
            for action in actions:
                attempted.append(action)
                action.prepare(layer, props)
        except QMPError:
            for action in attempted:
                action.abort(layer)
            raise
        for action in attempted:
            action.commit(layer)
    finally:
        for action in attempted:
            action.clean(layer)


def run_single(layer: BlockLayer, action: Action) -> None:
    """blockdev_do_action: a stand-alone command run as a transaction of one action
    (default properties)."""
    run_actions(layer, [action], TransactionProperties())
