"""Background tasks a subsystem starts from a command (an NBD listener and its clients).

`vmm.machine` layer. A subsystem's edge asks for an async function to run
(`spawn`); the server (`vmm.server`) attaches its nursery when it starts serving, and
tasks spawned before that wait until then. Without a server (the synchronous
machine of the tests) they wait forever: nothing is connected to them anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

TaskFn = Callable[[], Awaitable[None]]


@attrs.define(kw_only=True)
class Tasks:
    pending: list[TaskFn] = attrs.Factory(list)
    start_soon: Callable[[TaskFn], None] | None = None

    def spawn(self, fn: TaskFn) -> None:
        if self.start_soon is None:
            self.pending.append(fn)
        else:
            self.start_soon(fn)

    def attach(self, start_soon: Callable[[TaskFn], None]) -> None:
        """The server's nursery takes the tasks from now on (and those waiting)."""
        self.start_soon = start_soon
        pending, self.pending = self.pending, []
        for fn in pending:
            start_soon(fn)

    def detach(self) -> None:
        self.start_soon = None
