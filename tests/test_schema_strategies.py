"""Property tests: generated arguments against the input visitor, for every command.

For every command QEMU 2.11's marshallers check (not `'gen': false`:
query-qmp-schema, device_add, netdev_add, qapi-introspection.md §5), valid
arguments drawn by `schema.strategies.arguments` pass `visit_arguments`, and every
near miss drawn by `near_misses` fails with exactly the message the strategy
predicts from qapi-introspection.md §6 (the first error in flattened visiting
order, bare or full name as §6.2-§6.3 say).

Deterministic for CI: derandomized, no example database, a fixed number of
examples per command.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schema import GenericError, Schema, load_schema
from schema.model import EnumType, ObjectType
from schema.output import check_value
from schema.strategies import Strategies, arguments, near_misses
from schema.visitor import visit_arguments

CI = settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])


@cache
def qemu() -> Schema:
    return load_schema("2.11.50", cache_dir=False)


@cache
def strategies() -> Strategies:
    return Strategies(qemu())


CHECKED = [name for name, cmd in qemu().commands.items() if cmd.gen]


def test_hand_written_commands_are_left_out() -> None:
    assert sorted(set(qemu().commands) - set(CHECKED)) == [
        "device_add", "netdev_add", "query-qmp-schema"]


@pytest.mark.parametrize("name", CHECKED)
def test_valid_arguments_pass(name: str) -> None:
    """Valid arguments pass the visitor (§6.1), which keeps only known members."""
    command = qemu().commands[name]

    @CI
    @given(strategies().arguments(command))
    def check(args: dict[str, Any]) -> None:
        result = visit_arguments(command, args)
        assert set(result) == set(args)

    check()


@pytest.mark.parametrize("name", CHECKED)
def test_near_misses_fail_with_the_predicted_message(name: str) -> None:
    """One mistake → exactly the message QEMU 2.11 gives for it (§6.3-§6.8)."""
    command = qemu().commands[name]

    @CI
    @given(strategies().near_misses(command))
    def check(case: tuple[dict[str, Any], str]) -> None:
        args, message = case
        with pytest.raises(GenericError) as info:
            visit_arguments(command, args)
        assert info.value.desc == message

    check()


TYPES = sorted(t.name for t in qemu().types())


@settings(CI, max_examples=len(TYPES))
@given(st.data())
def test_values_conform(data: st.DataObject) -> None:
    """`values` draws what the output checker accepts, for every kind of type, and
    the checker gives it back unchanged (but for member order)."""
    t = qemu().lookup_type(data.draw(st.sampled_from(TYPES), label="type"))
    value = data.draw(strategies().values(t), label="value")
    assert check_value(t, value, "value") == value


@CI
@given(st.data())
def test_integer_widths_and_enums(data: st.DataObject) -> None:
    """Integers stay inside their width; enums are their values; a flat union's
    discriminator agrees with the branch members drawn."""
    schema = qemu()
    for name, (lo, hi) in {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
                           "uint16": (0, 65535), "int32": (-(2**31), 2**31 - 1),
                           "uint32": (0, 2**32 - 1), "int": (-(2**63), 2**63 - 1),
                           "uint64": (0, 2**64 - 1), "size": (0, 2**64 - 1)}.items():
        n = data.draw(strategies().values(name))
        assert isinstance(n, int) and not isinstance(n, bool) and lo <= n <= hi
    action = schema.lookup_type("WatchdogAction")
    assert isinstance(action, EnumType)
    assert data.draw(strategies().values(action)) in action.values
    options = schema.lookup_type("BlockdevOptions")
    assert isinstance(options, ObjectType) and options.variants is not None
    value = data.draw(strategies().values(options))
    branch = options.variants[value["driver"]].type
    assert isinstance(branch, ObjectType) and branch.members is not None
    assert {m.name for m in branch.members if not m.optional} <= set(value)


def test_no_argument_command_near_miss() -> None:
    """A command without arguments can only be given an unexpected key."""
    @CI
    @given(near_misses(qemu(), "query-status"))
    def check(case: tuple[dict[str, Any], str]) -> None:
        args, message = case
        (key,) = args
        assert message == f"Parameter '{key}' is unexpected"

    check()


def test_strategies_take_the_schema_they_are_given() -> None:
    """Nothing global: a schema of our own gets strategies of its own."""
    from schema.model import Schema as ModelSchema
    from schema.parser import parse_text

    small = ModelSchema.from_parsed(parse_text(
        "{ 'enum': 'E', 'data': [ 'only' ] }\n"
        "{ 'command': 'c', 'data': { 'e': 'E', '*n': 'null' } }\n", "small.json"))

    @CI
    @given(arguments(small, "c"))
    def check(args: dict[str, Any]) -> None:
        assert args["e"] == "only" and args.get("n") is None

    check()


def test_a_type_without_finite_values_is_refused() -> None:
    """QEMU accepts a struct that requires a member of its own type; nothing can be
    drawn for it, and the strategies say so instead of recursing forever."""
    from schema.model import Schema as ModelSchema
    from schema.parser import parse_text

    small = ModelSchema.from_parsed(parse_text(
        "{ 'struct': 'Loop', 'data': { 'next': 'Loop' } }\n"
        "{ 'struct': 'Fine', 'data': { '*next': 'Fine', 'l': ['Loop'] } }\n", "small.json"))
    with pytest.raises(ValueError, match="type Loop has no finite value"):
        Strategies(small).values("Loop")

    @CI
    @given(Strategies(small).values("Fine"))
    def check(value: Any) -> None:
        assert value["l"] == []

    check()
