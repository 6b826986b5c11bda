"""Hypothesis strategies for the wire data a schema describes.

A reader of `schema.model`, like the visitor and the output checker, and their
test-side counterpart: `values` draws valid JSON values for any type, `arguments`
valid `arguments` objects for a command, and `near_misses` arguments with exactly
one thing wrong together with the error text QEMU 2.11's input visitor gives for
it (`../shared/reference/qapi-introspection.md` §6). Everything is built from the
`Schema` passed in; nothing is global.

Values are kept finite by a nesting budget: every type has a minimal height (how
many objects deep its smallest valid value is, computed as a fixpoint because
types are recursive, e.g. BlockdevOptions -> BlockdevRef -> BlockdevOptions), and
a type is only drawn where the remaining budget allows it; optional members,
list elements, union branches and alternate branches that do not fit are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from schema.jsontypes import JSONValue, json_kind
from schema.model import (
    AlternateType,
    ArrayType,
    BuiltinType,
    Command,
    EnumType,
    Member,
    ObjectType,
    Schema,
    Type,
)

DEFAULT_DEPTH = 4
INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1
_SIGNED_BITS = {"int8": 8, "int16": 16, "int32": 32, "int": 64, "int64": 64}
_UNSIGNED_BITS = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "size": 64}
_INF = math.inf

# Strings QEMU's JSON parser reads back as they were: no NUL, no lone surrogates.
_TEXT = st.text(st.characters(min_codepoint=1, exclude_categories=["Cs"]), max_size=8)
_KEYS = st.from_regex(r"[a-z][a-z0-9_-]{0,9}", fullmatch=True)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(*INT64) |
    st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


class Strategies:
    """The strategies for one schema. Building one costs a pass over the schema
    (the minimal heights); strategies it hands out are memoized, so a test that
    draws many types should keep one. The module-level functions make one each."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._builder = _Builder(schema)

    def values(self, typ: Type | str, *,
               depth: int = DEFAULT_DEPTH) -> st.SearchStrategy[JSONValue]:
        """Valid JSON values of `typ` (a type or its name), at most `depth` objects
        deep where the type allows (one that needs more is drawn at its minimal
        height)."""
        return self._builder.values(_type(self.schema, typ), depth)

    def arguments(self, command: Command | str, *,
                  depth: int = DEFAULT_DEPTH) -> st.SearchStrategy[dict[str, JSONValue]]:
        """Valid `arguments` objects for a command (`{}` for one without arguments)."""
        cmd = _command(self.schema, command)
        if cmd.arg_type is None:
            return st.just({})
        return self._builder.values(cmd.arg_type, depth)

    def near_misses(self, command: Command | str, *, depth: int = DEFAULT_DEPTH,
                    ) -> st.SearchStrategy[tuple[dict[str, JSONValue], str]]:
        """`(arguments, expected error text)` with exactly one thing wrong.

        A valid arguments object is drawn, then one mutation site in it: a required
        member removed, one unexpected key added to an object, a value of a JSON
        kind its type rejects, an enum value that is not one, or an integer outside
        its width. The other members stay valid, so the mutation is the first error
        the visitor meets wherever it sits in the flattened visiting order.
        Mutations that would change how the rest is read are never made: a union's
        discriminator only ever becomes invalid, never another branch's value, and
        an alternate's value only a JSON kind none of its branches takes.
        """
        cmd = _command(self.schema, command)
        builder = self._builder
        valid = self.arguments(cmd, depth=depth)

        @st.composite
        def draw_near_miss(draw: st.DrawFn) -> tuple[dict[str, JSONValue], str]:
            args = draw(valid)
            sites: list[tuple[str, _Site]] = []
            if cmd.arg_type is None:
                sites.append(("extra", _extra_key_site((), "", frozenset())))
            else:
                builder.sites(cmd.arg_type, args, (), "", None, sites, root=True)
            # Pick the kind of mistake first, so that the kinds with many sites
            # (every object takes an extra key) do not crowd out the rare ones.
            kind = draw(st.sampled_from(sorted({k for k, _ in sites})))
            site = draw(st.sampled_from([f for k, f in sites if k == kind]))
            return site(draw, args)

        return draw_near_miss()


def values(schema: Schema, typ: Type | str, *,
           depth: int = DEFAULT_DEPTH) -> st.SearchStrategy[JSONValue]:
    """Valid JSON values of `typ` in `schema` (see `Strategies.values`)."""
    return Strategies(schema).values(typ, depth=depth)


def arguments(schema: Schema, command: Command | str, *,
              depth: int = DEFAULT_DEPTH) -> st.SearchStrategy[dict[str, JSONValue]]:
    """Valid `arguments` objects for a command of `schema` (see `Strategies.arguments`)."""
    return Strategies(schema).arguments(command, depth=depth)


def near_misses(schema: Schema, command: Command | str, *, depth: int = DEFAULT_DEPTH,
                ) -> st.SearchStrategy[tuple[dict[str, JSONValue], str]]:
    """Arguments with one mistake and QEMU's message (see `Strategies.near_misses`)."""
    return Strategies(schema).near_misses(command, depth=depth)


# --------------------------------------------------------------------------------------


def _type(schema: Schema, typ: Type | str) -> Type:
    return schema.lookup_type(typ) if isinstance(typ, str) else typ


def _command(schema: Schema, command: Command | str) -> Command:
    return schema.commands[command] if isinstance(command, str) else command


def _full(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _branch_members(obj: ObjectType, case: str) -> tuple[Member, ...]:
    assert obj.variants is not None
    branch = obj.variants[case].type
    assert isinstance(branch, ObjectType) and branch.members is not None
    return branch.members


# A value of each JSON kind, for "wrong type" mutations (the JSON kind, not the
# visitor's: an integer and a double are both numbers, but only one is an integer).
_WRONG = {"string": "x", "integer": 1, "double": 1.5, "boolean": True, "null": None,
          "array": [], "object": {}}

# A mutation site: given Hypothesis' draw and the valid arguments, the mutated
# arguments and the message.
_Site = Callable[[st.DrawFn, dict[str, JSONValue]], tuple[dict[str, JSONValue], str]]
_Path = tuple[str | int, ...]


def _replace(args: Any, path: _Path, value: Any) -> Any:
    """A copy of `args` with the value at `path` replaced (copies along the path)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    out: Any = dict(args) if isinstance(args, dict) else list(args)
    out[head] = _replace(args[head], rest, value)
    return out


def _get(args: Any, path: _Path) -> Any:
    for step in path:
        args = args[step]
    return args


def _extra_key_site(path: _Path, full: str, members: frozenset[str]) -> _Site:
    def mutate(draw: st.DrawFn, args: dict[str, JSONValue]) -> tuple[dict[str, JSONValue], str]:
        obj = _get(args, path)
        key = draw(_KEYS.filter(lambda k: k not in members and k not in obj))
        return _replace(args, path, {**obj, key: draw(_JSON)}), \
            f"Parameter '{_full(full, key)}' is unexpected"
    return mutate


def _missing_site(path: _Path, full: str, name: str) -> _Site:
    def mutate(draw: st.DrawFn, args: dict[str, JSONValue]) -> tuple[dict[str, JSONValue], str]:
        obj = dict(_get(args, path))
        del obj[name]
        return _replace(args, path, obj), f"Parameter '{_full(full, name)}' is missing"
    return mutate


def _set_site(path: _Path, choices: list[tuple[Any, str]]) -> _Site:
    """Replace the value at `path` by one of `choices` (value, message)."""
    def mutate(draw: st.DrawFn, args: dict[str, JSONValue]) -> tuple[dict[str, JSONValue], str]:
        value, message = draw(st.sampled_from(choices))
        return _replace(args, path, value), message
    return mutate


def _enum_site(path: _Path, enum: EnumType) -> _Site:
    def mutate(draw: st.DrawFn, args: dict[str, JSONValue]) -> tuple[dict[str, JSONValue], str]:
        near = [v + "x" for v in enum.values] + [v[:-1] for v in enum.values] + \
            [v.upper() for v in enum.values] + ["", " "]
        bad = draw(st.sampled_from([v for v in near if v not in enum.values]))
        return _replace(args, path, bad), f"Invalid parameter '{bad}'"
    return mutate


class _Builder:
    """Strategies and mutation sites for one schema, memoized per (type, budget)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.heights = _heights(schema)
        self.memo: dict[tuple[str, int], st.SearchStrategy[Any]] = {}

    def fits(self, t: Type, budget: int) -> bool:
        return self.heights[t.name] <= budget

    # -- valid values ------------------------------------------------------------------

    def values(self, t: Type, budget: int) -> st.SearchStrategy[Any]:
        height = self.heights[t.name]
        if height == _INF:
            # e.g. a struct with a required member of its own type: QEMU accepts the
            # definition, but no finite JSON value has that type.
            raise ValueError(f"type {t.name} has no finite value")
        budget = max(budget, int(height))
        key = (t.name, budget)
        strategy = self.memo.get(key)
        if strategy is None:
            strategy = self.memo[key] = self._values(t, budget)
        return strategy

    def _values(self, t: Type, budget: int) -> st.SearchStrategy[Any]:
        if isinstance(t, BuiltinType):
            return _builtin(t.name)
        if isinstance(t, EnumType):
            return st.sampled_from(t.values)
        if isinstance(t, ArrayType):
            if not self.fits(t.element, budget - 1):
                return st.just([])
            return st.lists(self.values(t.element, budget - 1), max_size=3)
        if isinstance(t, AlternateType):
            return st.one_of([self.values(v.type, budget) for v in t.variants
                              if self.fits(v.type, budget)])
        assert isinstance(t, ObjectType) and t.members is not None
        if t.variants is None:
            return self._object(t.members, budget - 1)
        tag = t.variants.tag_member
        assert tag is not None
        cases = [v.name for v in t.variants
                 if self._members_fit(_branch_members(t, v.name), budget - 1)]
        return st.one_of([
            self._object((*t.members, *_branch_members(t, case)), budget - 1,
                         fixed={tag.name: case})
            for case in cases])

    def _members_fit(self, members: tuple[Member, ...], budget: int) -> bool:
        return all(self.fits(m.type, budget) for m in members if not m.optional)

    def _object(self, members: tuple[Member, ...], budget: int,
                fixed: dict[str, str] | None = None) -> st.SearchStrategy[Any]:
        fixed = fixed or {}
        required = {m.name: (st.just(fixed[m.name]) if m.name in fixed
                             else self.values(m.type, budget))
                    for m in members if not m.optional}
        optional = {m.name: self.values(m.type, budget)
                    for m in members if m.optional and self.fits(m.type, budget)}
        some = st.fixed_dictionaries(required, optional=optional)
        if not optional:
            return some
        # Each optional member present or not, and, as often, all of them present:
        # a near miss can only land on members that are there.
        return st.one_of(some, st.fixed_dictionaries({**required, **optional}))

    # -- mutation sites ----------------------------------------------------------------

    def sites(self, t: Type, value: Any, path: _Path, full: str, bare: str | None,
              out: list[tuple[str, _Site]], root: bool = False) -> None:
        """Collect every mutation site of `value` (of type `t`, at `path`, named
        `full` in full and `bare` bare) into `out`."""
        if not root:
            wrong = self.wrong_kind(t, full, bare)
            if wrong:
                out.append(("kind", _set_site(path, wrong)))
        if isinstance(t, (BuiltinType, EnumType)):
            self.scalar_sites(t, path, full, bare, out)
        elif isinstance(t, ArrayType):
            for i, element in enumerate(value):
                self.sites(t.element, element, (*path, i), f"{full}[{i}]", None, out)
        elif isinstance(t, AlternateType):
            kind = json_kind(value)
            branch = next(v.type for v in t.variants if v.type.alternate_kind() == kind)
            self.object_or_scalar_sites(branch, value, path, full, bare, out)
        else:
            self.object_or_scalar_sites(t, value, path, full, bare, out)

    def object_or_scalar_sites(self, t: Type, value: Any, path: _Path, full: str,
                               bare: str | None, out: list[tuple[str, _Site]]) -> None:
        if not isinstance(t, ObjectType):
            # An alternate's scalar branch: its own range and enum mutations (a
            # kind mutation would pick another branch or be the alternate's error).
            self.scalar_sites(t, path, full, bare, out)
            return
        assert t.members is not None
        members = t.members
        if t.variants is not None:
            tag = t.variants.tag_member
            assert tag is not None
            members = (*members, *_branch_members(t, value[tag.name]))
        names = frozenset(m.name for m in members)
        out.append(("extra", _extra_key_site(path, full, names)))
        for m in members:
            if m.name not in value:
                continue
            if not m.optional:
                out.append(("missing", _missing_site(path, full, m.name)))
            self.sites(m.type, value[m.name], (*path, m.name), _full(full, m.name), m.name,
                       out)

    def scalar_sites(self, t: Type, path: _Path, full: str, bare: str | None,
                     out: list[tuple[str, _Site]]) -> None:
        if isinstance(t, EnumType):
            out.append(("enum", _enum_site(path, t)))
        elif isinstance(t, BuiltinType):
            outside = _out_of_range(t.name, full, bare)
            if outside:
                out.append(("range", _set_site(path, outside)))

    def wrong_kind(self, t: Type, full: str, bare: str | None) -> list[tuple[Any, str]]:
        """Values of a JSON kind `t` rejects, each with the visitor's message."""
        def invalid_type(expected: str) -> str:
            return f"Invalid parameter type for '{full}', expected: {expected}"

        if isinstance(t, AlternateType):
            taken = {v.type.alternate_kind() for v in t.variants}
            msg = f"Invalid parameter type for '{bare or 'null'}', expected: {t.name}"
            return [(v, msg) for k, v in _WRONG.items()
                    if json_kind(v) not in taken]
        if isinstance(t, ObjectType):
            return [(v, invalid_type("object")) for k, v in _WRONG.items() if k != "object"]
        if isinstance(t, ArrayType):
            return [(v, invalid_type("array")) for k, v in _WRONG.items() if k != "array"]
        if isinstance(t, EnumType):
            return [(v, invalid_type("string")) for k, v in _WRONG.items() if k != "string"]
        assert isinstance(t, BuiltinType)
        name = t.name
        if name == "any":
            return []
        if name in _UNSIGNED_BITS:
            return [(v, f"Parameter '{full}' expects uint64")
                    for k, v in _WRONG.items() if k != "integer"]
        accepted, expected = {
            "str": ({"string"}, "string"), "bool": ({"boolean"}, "boolean"),
            "number": ({"integer", "double"}, "number"), "null": ({"null"}, "null"),
        }.get(name, ({"integer"}, "integer"))
        return [(v, invalid_type(expected)) for k, v in _WRONG.items() if k not in accepted]


def _out_of_range(name: str, full: str, bare: str | None) -> list[tuple[int, str]]:
    """Integers just outside a width, with the message (qapi-visit-core.c:
    visit_type_intN / uintN name the bare member; the int64/uint64 visits the full
    path)."""
    short = bare if bare is not None else "null"
    if name in _SIGNED_BITS:
        bits = _SIGNED_BITS[name]
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if bits == 64:
            msg = f"Invalid parameter type for '{full}', expected: integer"
        else:
            msg = f"Parameter '{short}' expects {name}_t"
        return [(lo - 1, msg), (hi + 1, msg)]
    if name in _UNSIGNED_BITS:
        bits = _UNSIGNED_BITS[name]
        if bits == 64:
            msg = f"Parameter '{full}' expects uint64"
            return [(UINT64_MAX + 1, msg), (INT64[0] - 1, msg)]
        msg = f"Parameter '{short}' expects uint{bits}_t"
        return [(1 << bits, msg), (-1, msg)]
    return []


def _builtin(name: str) -> st.SearchStrategy[Any]:
    if name == "str":
        return _TEXT
    if name == "bool":
        return st.booleans()
    if name == "null":
        return st.none()
    if name == "any":
        return _JSON
    if name == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if name in _SIGNED_BITS:
        bits = _SIGNED_BITS[name]
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    bits = _UNSIGNED_BITS[name]
    return st.integers(0, (1 << bits) - 1)


def _heights(schema: Schema) -> dict[str, float]:
    """The minimal object nesting of a valid value of every type (a fixpoint)."""
    heights: dict[str, float] = {t.name: _INF for t in schema.types()}

    def members_height(members: tuple[Member, ...]) -> float:
        return max((heights[m.type.name] for m in members if not m.optional), default=0)

    changed = True
    while changed:
        changed = False
        for t in schema.types():
            if isinstance(t, (BuiltinType, EnumType, ArrayType)):
                h: float = 0
            elif isinstance(t, AlternateType):
                h = min(heights[v.type.name] for v in t.variants)
            else:
                assert isinstance(t, ObjectType) and t.members is not None
                h = members_height(t.members)
                if t.variants is not None:
                    h = max(h, min(members_height(_branch_members(t, v.name))
                                   for v in t.variants))
                h += 1
            if h < heights[t.name]:
                heights[t.name] = h
                changed = True
    return heights


__all__ = ["Strategies", "arguments", "near_misses", "values"]
