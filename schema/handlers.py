"""Handler registration by schema name, without any registry state.

`@qmp_command("block-job-set-speed")` only marks a function or method; the dispatcher
(`vmm`) collects the marked callables of the objects it composes, so many machines can
share a process without sharing a table. A handler's parameters are the command's
members in snake_case; the schema visitor has already checked them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__qmp_command__"


def qmp_command(name: str) -> Callable[[F], F]:
    """Mark a callable as the handler of the QMP command `name` (its wire name)."""

    def mark(fn: F) -> F:
        names = getattr(fn, ATTRIBUTE, ())
        setattr(fn, ATTRIBUTE, (*names, name))
        return fn

    return mark


def collect_handlers(*owners: object) -> dict[str, Callable[..., Any]]:
    """Map command name to bound handler for every marked method of `owners`.

    A name claimed twice is a programming error and raises ValueError.
    """
    table: dict[str, Callable[..., Any]] = {}
    for owner in owners:
        for attr in dir(type(owner)):
            fn = getattr(type(owner), attr, None)
            for name in getattr(fn, ATTRIBUTE, ()):
                if name in table:
                    raise ValueError(f"two handlers for QMP command {name!r}")
                table[name] = getattr(owner, attr)
    return table


def member_to_param(name: str) -> str:
    """The Python parameter name of a schema member: `node-name` -> `node_name`."""
    return name.replace("-", "_")


def command_names(cls: type) -> list[str]:
    """The command names a class's methods are marked with."""
    return [name for attr in dir(cls) for name in getattr(getattr(cls, attr), ATTRIBUTE, ())]
