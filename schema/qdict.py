"""Former home of `schema.qobject.qdict`, kept only for `vmm.qmp.dispatch`'s import until
that module imports `schema.qobject` (it is being reworked in parallel); nothing else
may use it."""

from schema.qobject.qdict import qdict_order

__all__ = ["qdict_order"]
