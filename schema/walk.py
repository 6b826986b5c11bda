"""Walking nested values without Python recursion.

A helper of the `schema` package's readers of values: the argument visitor
(`schema.visitor`) and the output checker (`schema.output`) walk values as deeply
nested as QEMU's JSON reader lets through (1024 levels), and a reply can nest as
deep as a backing chain is long. Each container being walked is a generator (a
`Walk`): it yields the walk of each part that is itself a container and is sent
that part's result back; what it returns is the container's result. `run` drives
them on a list instead of the call stack.
"""

from __future__ import annotations

from collections.abc import Generator
from types import GeneratorType
from typing import Any

#: The walk of one container: yields its parts' walks, receives their results.
Walk = Generator[Any, Any, Any]


def is_walk(step: Any) -> bool:
    """Whether a step is a container's walk still to run (else it is a result)."""
    return type(step) is GeneratorType


def run(step: Any) -> Any:
    """The result of a step: a result as it is, a walk run to its end."""
    if type(step) is not GeneratorType:
        return step
    stack: list[Walk] = [step]
    result: Any = None
    while True:
        try:
            part = stack[-1].send(result)
        except StopIteration as done:
            stack.pop()
            if not stack:
                return done.value
            result = done.value
            continue
        stack.append(part)
        result = None
