"""The checked QAPI schema model: its entities and the `Schema` that holds them.

The result of the `schema` package's stages: the parser (`schema.parser`) reads the
files, `schema.checks` applies the rules QEMU's generator enforces on expressions,
`schema.build` turns them into these entities and resolves them. Everything
downstream (visitor, introspection, output checker, strategies) reads a `Schema` and
never re-parses or re-checks. A warm start unpickles a `Schema` from the loader's
cache and imports only this module, not the checks and the builder.

Types are `BuiltinType`, `EnumType`, `ArrayType`, `ObjectType` (structs, unions,
implicit objects) and `AlternateType`; `Command` and `Event` refer to their argument
and return types. Members come flattened (base first), a union's branches in
`Variants`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from schema.source import Doc, ParsedFiles, SourceInfo

# name -> (json-type of introspection, QType an alternate uses to tell it apart)
BUILTINS: dict[str, tuple[str, str | None]] = {
    "str": ("string", "QTYPE_QSTRING"),
    "number": ("number", "QTYPE_QNUM"),
    "int": ("int", "QTYPE_QNUM"),
    "int8": ("int", "QTYPE_QNUM"),
    "int16": ("int", "QTYPE_QNUM"),
    "int32": ("int", "QTYPE_QNUM"),
    "int64": ("int", "QTYPE_QNUM"),
    "uint8": ("int", "QTYPE_QNUM"),
    "uint16": ("int", "QTYPE_QNUM"),
    "uint32": ("int", "QTYPE_QNUM"),
    "uint64": ("int", "QTYPE_QNUM"),
    "size": ("int", "QTYPE_QNUM"),
    "bool": ("boolean", "QTYPE_QBOOL"),
    "any": ("value", None),
    "null": ("null", "QTYPE_QNULL"),
}
INTEGER_BUILTINS = frozenset(n for n, (j, _) in BUILTINS.items() if j == "int")
QTYPE_VALUES = ("none", "qnull", "qnum", "qstring", "qdict", "qlist", "qbool")

_C_WORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto
if int long register return short signed sizeof static struct switch typedef union
unsigned void volatile while inline restrict _Bool _Complex _Imaginary _Alignas _Alignof
_Atomic _Generic _Noreturn _Static_assert _Thread_local asm typeof bool catch class
const_cast delete dynamic_cast explicit false friend mutable namespace new operator
private protected public reinterpret_cast static_cast template this throw true try
typeid typename using virtual wchar_t and and_eq bitand bitor compl not not_eq or or_eq
xor xor_eq unix errno mips sparc""".split())
_C_NAME_TRANS = str.maketrans(".-", "__")


def c_name(name: str, protect: bool = True) -> str:
    """The C identifier QEMU would generate (used for clash checks)."""
    name = name.translate(_C_NAME_TRANS)
    if protect and name in _C_WORDS:
        return "q_" + name
    return name


# --------------------------------------------------------------------------------------
# Entities


# The entities are plain classes with __slots__ rather than attrs classes: there are
# many small ones, every server start imports them, and attrs costs ~15 ms to import
# plus ~5 ms to create them (tests/bench/bench_schema.py). They compare by identity.
# Attributes documented as "after check" are set by the builder's check pass.


class Entity:
    """A named definition: a type, a command or an event."""

    __slots__ = ("doc", "info", "name")
    meta = "entity"

    def __init__(self, name: str, info: SourceInfo | None, doc: Doc | None = None) -> None:
        self.name = name
        self.info = info  # None for the predefined entities
        self.doc = doc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def is_implicit(self) -> bool:
        return self.info is None


class Type(Entity):
    __slots__ = ()
    meta = "type"

    @property
    def json_type(self) -> str:
        raise NotImplementedError

    def alternate_kind(self) -> str:
        """The JSON kind an alternate branch of this type takes: the QType QEMU's
        generated alternate visitor switches on, as a json_kind()."""
        if self.json_type == "object":
            return "object"
        return {"string": "string", "boolean": "boolean", "null": "null", "number": "number",
                "int": "number"}[self.json_type]

    def alternate_qtype(self) -> str | None:
        return {"null": "QTYPE_QNULL", "string": "QTYPE_QSTRING", "number": "QTYPE_QNUM",
                "int": "QTYPE_QNUM", "boolean": "QTYPE_QBOOL",
                "object": "QTYPE_QDICT"}.get(self.json_type)


class BuiltinType(Type):
    __slots__ = ("builtin_json_type",)
    meta = "built-in"

    def __init__(self, name: str, json_type: str) -> None:
        super().__init__(name, None)
        self.builtin_json_type = json_type

    @property
    def json_type(self) -> str:
        return self.builtin_json_type

    def is_implicit(self) -> bool:
        return True


class EnumType(Type):
    __slots__ = ("implicit", "prefix", "values")
    meta = "enum"

    def __init__(self, name: str, info: SourceInfo | None, doc: Doc | None = None, *,
                 values: tuple[str, ...], prefix: str | None = None,
                 implicit: bool = False) -> None:
        super().__init__(name, info, doc)
        self.values = values
        self.prefix = prefix
        self.implicit = implicit  # QType and the <Union>Kind enums

    @property
    def json_type(self) -> str:
        return "string"

    def is_implicit(self) -> bool:
        return self.implicit


class ArrayType(Type):
    __slots__ = ("element", "element_name")
    meta = "array"
    element: Type  # after check

    def __init__(self, name: str, info: SourceInfo | None, *, element_name: str) -> None:
        super().__init__(name, info)
        self.element_name = element_name

    @property
    def json_type(self) -> str:
        return "array"

    def is_implicit(self) -> bool:
        return True


class Member:
    """A member of an object type (or a branch of a union or alternate)."""

    __slots__ = ("name", "optional", "owner", "type", "type_name")
    role = "member"
    type: Type  # after check

    def __init__(self, name: str, type_name: str, optional: bool = False,
                 owner: str = "") -> None:
        self.name = name
        self.type_name = type_name
        self.optional = optional
        self.owner = owner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.owner}.{self.name}: {self.type_name}>"

    def describe(self) -> str:
        owner = self.owner
        if owner.startswith("q_obj_"):
            owner = owner[6:]
            if owner.endswith("-arg"):
                return f"'{self.name}' (parameter of {owner[:-4]})"
            if owner.endswith("-base"):
                return f"'{self.name}' (base of {owner[:-5]})"
            return f"'{self.name}' (member of {owner})"
        if owner.endswith("Kind"):
            return f"'{self.name}' (branch of {owner[:-4]})"
        return f"'{self.name}' ({self.role} of {owner})"


class Variant(Member):
    __slots__ = ()
    role = "branch"


class Variants:
    """The tag and branches of a union (tag member) or alternate (tag `QType`).

    A flat union names its tag (`tag_name`) and finds the member at check time;
    simple unions and alternates bring their tag member along.
    """

    __slots__ = ("tag_member", "tag_name", "variants")

    def __init__(self, tag_name: str | None, tag_member: Member | None,
                 variants: tuple[Variant, ...]) -> None:
        self.tag_name = tag_name
        self.tag_member = tag_member  # set for flat unions by check
        self.variants = variants

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants)

    def __getitem__(self, case: str) -> Variant:
        for v in self.variants:
            if v.name == case:
                return v
        raise KeyError(case)

    def get(self, case: str) -> Variant | None:
        return next((v for v in self.variants if v.name == case), None)


class ObjectType(Type):
    """A struct, a union (simple or flat), an implicit object, or `q_empty`.

    `members` is the flattened list: the base's members (recursively), then the
    local ones; a union's branch members live in `variants`.
    """

    __slots__ = ("base", "base_name", "kind", "local_members", "members", "variants")
    meta = "struct"

    def __init__(self, name: str, info: SourceInfo | None, doc: Doc | None = None, *,
                 base_name: str | None = None, local_members: tuple[Member, ...] = (),
                 variants: Variants | None = None, kind: str = "struct") -> None:
        super().__init__(name, info, doc)
        self.base_name = base_name
        self.local_members = local_members
        self.variants = variants
        self.kind = kind  # struct | union | implicit
        self.base: ObjectType | None = None  # after check
        self.members: tuple[Member, ...] | None = None  # after check

    @property
    def json_type(self) -> str:
        return "object"

    def is_implicit(self) -> bool:
        return self.name.startswith("q_")

    def is_empty(self) -> bool:
        assert self.members is not None
        return not self.members and not self.variants

    def member(self, name: str) -> Member | None:
        assert self.members is not None
        return next((m for m in self.members if m.name == name), None)


class AlternateType(Type):
    __slots__ = ("variants",)
    meta = "alternate"

    def __init__(self, name: str, info: SourceInfo | None, doc: Doc | None = None, *,
                 variants: Variants) -> None:
        super().__init__(name, info, doc)
        self.variants = variants

    @property
    def json_type(self) -> str:
        return "value"


class Command(Entity):
    __slots__ = ("arg_type", "arg_type_name", "boxed", "gen", "ret_type", "ret_type_name",
                 "success_response")
    meta = "command"

    def __init__(self, name: str, info: SourceInfo | None, doc: Doc | None = None, *,
                 arg_type_name: str | None = None, ret_type_name: str | None = None,
                 gen: bool = True, success_response: bool = True,
                 boxed: bool = False) -> None:
        super().__init__(name, info, doc)
        self.arg_type_name = arg_type_name
        self.ret_type_name = ret_type_name
        self.gen = gen
        self.success_response = success_response
        self.boxed = boxed
        self.arg_type: ObjectType | AlternateType | None = None  # after check
        self.ret_type: Type | None = None  # after check


class Event(Entity):
    __slots__ = ("arg_type", "arg_type_name", "boxed")
    meta = "event"

    def __init__(self, name: str, info: SourceInfo | None, doc: Doc | None = None, *,
                 arg_type_name: str | None = None, boxed: bool = False) -> None:
        super().__init__(name, info, doc)
        self.arg_type_name = arg_type_name
        self.boxed = boxed
        self.arg_type: ObjectType | AlternateType | None = None  # after check


# --------------------------------------------------------------------------------------
# The schema


class Schema:
    """A checked, resolved schema. Build one with `Schema.from_parsed`.

    `entities` holds every entity by name, implicit ones included, in the order they
    were defined; `commands` and `events` are views on it in definition order.
    """

    __slots__ = ("_introspection", "commands", "entities", "events", "files", "legacy",
                 "pragma_directives", "pragmas", "source_files")

    def __init__(self, *, entities: dict[str, Entity], pragmas: dict[str, Any],
                 pragma_directives: int, legacy: bool, files: tuple[str, ...] = ()) -> None:
        self.entities = entities
        self.commands = {n: c for n, c in entities.items() if isinstance(c, Command)}
        self.events = {n: e for n, e in entities.items() if isinstance(e, Event)}
        self.pragmas = pragmas  # pragma name -> value, all directives merged
        self.pragma_directives = pragma_directives
        self.legacy = legacy
        self.files = files  # as parsed: the main file, then its includes
        self.source_files: tuple[str, ...] = ()  # absolute paths, set by the loader
        self._introspection: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return (f"<Schema {len(self.commands)} commands, {len(self.events)} events, "
                f"{len(self.entities)} entities>")

    # -- lookups -----------------------------------------------------------------------

    def lookup_type(self, name: str) -> Type:
        ent = self.entities.get(name)
        if not isinstance(ent, Type):
            raise KeyError(name)
        return ent

    def types(self) -> Iterator[Type]:
        return (e for e in self.entities.values() if isinstance(e, Type))

    def introspection(self) -> list[dict[str, Any]]:
        """The `query-qmp-schema` reply, computed once per schema value (and cached
        with it by the loader). Every call returns the same list: read it, copy it,
        never change it."""
        if self._introspection is None:
            from schema.introspect import introspect

            self._introspection = introspect(self)
        return self._introspection

    def drop_docs(self) -> None:
        """Forget the doc comments (after checking; they are most of a model's size)."""
        for ent in self.entities.values():
            ent.doc = None

    def counts(self) -> dict[str, int]:
        """Explicit definitions by kind, as the seed README counts them."""
        n = {"commands": len(self.commands), "events": len(self.events), "structs": 0,
             "enums": 0, "unions": 0, "alternates": 0, "pragmas": self.pragma_directives}
        for t in self.types():
            if t.info is None or t.is_implicit():
                continue
            if isinstance(t, EnumType):
                n["enums"] += 1
            elif isinstance(t, AlternateType):
                n["alternates"] += 1
            elif isinstance(t, ObjectType):
                n["unions" if t.kind == "union" else "structs"] += 1
        return n

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_parsed(cls, parsed: ParsedFiles, *, legacy: bool | None = None) -> Schema:
        """Check and build the schema of parsed files (`schema.build.build_schema`);
        `legacy` picks the 1.x rules, by default guessed from the expressions."""
        from schema.build import build_schema  # not needed when the loader's cache hits

        return build_schema(parsed, legacy=legacy)
