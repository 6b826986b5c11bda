"""What a subsystem registers with the machine it is composed into, without registry state.

`@qmp_command("block-job-set-speed")` only marks a function or method; the dispatcher
(`vmm`) collects the marked callables of the objects it composes, so many machines can
share a process without sharing a table. A handler's parameters are the command's
members in snake_case; the schema visitor has already checked them. A `boxed` command
(and a `gen: false` one, which marshals its own arguments) receives one value: the
whole argument object, wire-named.

A `Behaviour` declares one named reaction of the simulated guest (the guest powers off
on the ACPI power button, acks an unplug, ...) with its value under each guest profile
and the conversion of the text a command line gives. Subsystems declare theirs here
because they never import `vmm`; the Machine's registry (`vmm.machine.guest`) holds the
values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__qmp_command__"


class SubsystemHooks:
    """The hooks the Machine calls on every subsystem (vmm.machine.subsystem), each
    with nothing to do: a subsystem inherits these and writes only those it uses."""

    def reset(self) -> None:
        pass

    def before_cont(self) -> None:
        pass

    def vm_start(self) -> None:
        pass

    def vm_stop(self) -> None:
        pass

    def next_deadline(self) -> float:
        return math.inf

    def run_due(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


def qmp_command(name: str) -> Callable[[F], F]:
    """Mark a callable as the handler of the QMP command `name` (its wire name)."""

    def mark(fn: F) -> F:
        names = getattr(fn, ATTRIBUTE, ())
        setattr(fn, ATTRIBUTE, (*names, name))
        return fn

    return mark


def handler_functions(cls: type) -> dict[str, Callable[..., Any]]:
    """Map command name to the (unbound) marked function of `cls`.

    A name claimed twice is a programming error and raises ValueError.
    """
    table: dict[str, Callable[..., Any]] = {}
    for attr in dir(cls):
        fn = getattr(cls, attr, None)
        for name in getattr(fn, ATTRIBUTE, ()):
            if name in table:
                raise ValueError(f"two handlers for QMP command {name!r}")
            table[name] = fn  # type: ignore[assignment]
    return table


def collect_handlers(*owners: object) -> dict[str, Callable[..., Any]]:
    """Map command name to bound handler for every marked method of `owners` (of a
    `LazyOwner`: a stand-in for each of its names).

    A name claimed twice is a programming error and raises ValueError.
    """
    table: dict[str, Callable[..., Any]] = {}
    for owner in owners:
        if isinstance(owner, LazyOwner):
            bound = {name: owner.deferred(name) for name in owner.names}
        else:
            bound = {name: fn.__get__(owner)
                     for name, fn in handler_functions(type(owner)).items()}
        for name, fn in bound.items():
            if name in table:
                raise ValueError(f"two handlers for QMP command {name!r}")
            table[name] = fn
    return table


class LazyOwner:
    """The owner of some commands' handlers, loaded and built the first time one of
    them runs: a composition root registers one where importing the owner's module
    (and its models) would cost every start-up, as `collect_handlers` registers a built
    owner. `names` are the commands its class marks, given without importing it (a
    test pins them to the class); `build` imports and builds the owner.
    """

    def __init__(self, names: Iterable[str], build: Callable[[], object]) -> None:
        self.names = tuple(names)
        self._build = build
        self._handlers: dict[str, Callable[..., Any]] | None = None

    @property
    def built(self) -> bool:
        return self._handlers is not None

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """The owner's bound handlers (built now if it was not yet)."""
        if self._handlers is None:
            self._handlers = collect_handlers(self._build())
        return self._handlers

    def deferred(self, name: str) -> Callable[..., Any]:
        """A stand-in for the handler of `name` that builds the owner on its first call."""

        def call(*args: Any, **kwargs: Any) -> Any:
            fn = self.handlers().get(name)
            if fn is None:
                raise ValueError(f"no handler for QMP command {name!r}: its lazily "
                                 "registered owner no longer marks it")
            return fn(*args, **kwargs)

        return call


def member_to_param(name: str) -> str:
    """The Python parameter name of a schema member: `node-name` -> `node_name`."""
    return name.replace("-", "_")


def command_names(cls: type) -> list[str]:
    """The command names a class's methods are marked with."""
    return list(handler_functions(cls))


# -- guest behaviours ----------------------------------------------------------------------

PROFILES = ("os", "firmware")


class BehaviourError(ValueError):
    """A value a behaviour does not take; the message says what it expects."""


@attrs.frozen
class Behaviour:
    """One named reaction of the simulated guest and its value under each profile.

    `convert` turns what a command line or a test gives (text, or a value of the
    behaviour's type) into the value, or raises BehaviourError. `os` is the value of
    the cooperative OS (`--emu-guest=os`, the default); `firmware` that of a machine
    where only SeaBIOS runs (`--emu-guest=firmware`).
    """

    name: str
    help: str
    convert: Callable[[Any], Any]
    os: Any
    firmware: Any

    def default(self, profile: str) -> Any:
        if profile not in PROFILES:
            raise BehaviourError(f"expects one of {', '.join(PROFILES)}")
        return self.os if profile == "os" else self.firmware


def choice(*values: str) -> Callable[[Any], str]:
    """A behaviour that is one word of `values`."""

    def convert(value: Any) -> str:
        if value not in values:
            raise BehaviourError(f"expects one of {', '.join(values)}")
        return str(value)

    return convert


def non_negative(unit: str) -> Callable[[Any], float]:
    """The converter of a non-negative, finite number of `unit`."""

    def convert(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
            raise BehaviourError(f"expects a non-negative number of {unit}")
        return number

    return convert


seconds = non_negative("seconds")


def flag(value: Any) -> bool:
    """on/off (or a bool)."""
    if isinstance(value, bool):
        return value
    if value in ("on", "off"):
        return bool(value == "on")
    raise BehaviourError("expects 'on' or 'off'")
