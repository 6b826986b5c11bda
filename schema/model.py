"""The checked QAPI schema model: every definition resolved, every rule enforced.

Second and third stage of the `schema` package: `check_expressions` applies the rules
QEMU's generator enforces on parsed expressions (keys, names, references, union and
alternate shapes), then `Schema` builds entities, adds the implicit ones QEMU adds
(builtins, `<T>List` arrays, `q_empty`, `QType`, `q_obj_*` argument/base/wrapper
types, `<Union>Kind` enums) and resolves and flattens members, rejecting clashes and
cycles. Everything downstream (visitor, introspection, output checker, strategies)
reads a `Schema` and never re-parses or re-checks.

The 1.x dialect is read in 2.11 terms (`_normalise_legacy`): `'type'` is a struct,
`'gen': 'no'` is false, `'visitor'` is `any`, a union with an empty discriminator
is an alternate, and an inline struct as a member type becomes an implicit object
type. It is checked with the rules of its time: looser names, no case or `returns`
whitelists, doc comments unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from schema.source import Doc, Expression, ParsedFiles, QAPIError, SourceInfo

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

_VALID_NAME = re.compile(r"^(__[a-zA-Z0-9.-]+_)?[a-zA-Z][a-zA-Z0-9_-]*$")
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
# Checking expressions (QEMU's check_exprs)


class _Checker:
    """QEMU's check_exprs state: the names defined so far, by kind."""

    def __init__(self, *, legacy: bool, returns_whitelist: frozenset[str],
                 doc_required: bool) -> None:
        self.legacy = legacy
        self.returns_whitelist = returns_whitelist
        self.doc_required = doc_required
        self.all_names: dict[str, str] = {}
        self.enum_types: dict[str, dict[str, Any]] = {}
        self.struct_types: dict[str, dict[str, Any]] = {}
        self.union_types: dict[str, dict[str, Any]] = {}

    def check_name(self, info: SourceInfo, source: str, name: Any,
                   allow_optional: bool = False, enum_member: bool = False) -> None:
        if not isinstance(name, str):
            raise QAPIError(info, f"{source} requires a string name")
        membername = name
        if name.startswith("*"):
            membername = name[1:]
            if not allow_optional:
                raise QAPIError(info, f"{source} does not allow optional name '{name}'")
        if enum_member and membername[:1].isdigit():
            membername = "D" + membername
        if self.legacy:
            # 1.x wrote enum values such as 'x86_64' and members such as 'UUID' freely.
            if not membername or not re.match(r"^[a-zA-Z0-9_.-]+$", membername):
                raise QAPIError(info, f"{source} uses invalid name '{name}'")
            return
        if not _VALID_NAME.match(membername) or c_name(membername, False).startswith("q_"):
            raise QAPIError(info, f"{source} uses invalid name '{name}'")

    def add_name(self, name: str, info: SourceInfo, meta: str, implicit: bool = False) -> None:
        self.check_name(info, f"'{meta}'", name)
        if name in self.all_names:
            raise QAPIError(info, f"{self.all_names[name]} '{name}' is already defined")
        if not implicit and not self.legacy and (name.endswith("Kind") or name.endswith("List")):
            raise QAPIError(info, f"{meta} '{name}' should not end in '{name[-4:]}'")
        self.all_names[name] = meta

    def check_type(self, info: SourceInfo, source: str, value: Any,
                   allow_array: bool = False, allow_dict: bool = False,
                   allow_optional: bool = False,
                   allow_metas: Iterable[str] = ()) -> None:
        if value is None:
            return
        if isinstance(value, list):
            if not allow_array:
                raise QAPIError(info, f"{source} cannot be an array")
            if len(value) != 1 or not isinstance(value[0], str):
                raise QAPIError(info, f"{source}: array type must contain single type name")
            value = value[0]
        if isinstance(value, str):
            if value not in self.all_names:
                raise QAPIError(info, f"{source} uses unknown type '{value}'")
            if self.all_names[value] not in allow_metas:
                raise QAPIError(info, f"{source} cannot use {self.all_names[value]} "
                                      f"type '{value}'")
            return
        if not allow_dict:
            raise QAPIError(info, f"{source} should be a type name")
        if not isinstance(value, dict):
            raise QAPIError(info, f"{source} should be a dictionary or type name")
        for key, arg in value.items():
            self.check_name(info, f"Member of {source}", key, allow_optional=allow_optional)
            cname = c_name(key, False)
            if cname == "u" or cname.startswith("has_"):
                raise QAPIError(info, f"Member of {source} uses reserved name '{key}'")
            # 1.x allowed an inline struct as a member's type (QEMU dropped it in
            # 2.4, commit "qapi: Drop inline nested struct in query-version").
            self.check_type(info, f"Member '{key}' of {source}", arg, allow_array=True,
                            allow_dict=self.legacy, allow_optional=allow_optional,
                            allow_metas=["built-in", "union", "alternate", "struct", "enum"])

    def check_keys(self, e: Expression, meta: str, required: list[str],
                   optional: list[str]) -> None:
        expr, info = e.expr, e.info
        name = expr[meta]
        if not isinstance(name, str):
            raise QAPIError(info, f"'{meta}' key must have a string value")
        required = [*required, meta]
        for key, value in expr.items():
            if key not in required and key not in optional:
                raise QAPIError(info, f"Unknown key '{key}' in {meta} '{name}'")
            if key in ("gen", "success-response"):
                if self.legacy and value in ("no", False):
                    continue
                if value is not False:
                    raise QAPIError(info, f"'{key}' of {meta} '{name}' should only use "
                                          "false value")
            if key == "boxed" and value is not True:
                raise QAPIError(info, f"'{key}' of {meta} '{name}' should only use true value")
        for key in required:
            if key not in expr:
                raise QAPIError(info, f"Key '{key}' is missing from {meta} '{name}'")

    def find_base_members(self, base: Any) -> dict[str, Any] | None:
        if isinstance(base, dict):
            return base
        define = self.struct_types.get(base)
        return None if define is None else define["data"]

    def discriminator_enum(self, expr: dict[str, Any]) -> dict[str, Any] | None:
        base, disc = expr.get("base"), expr.get("discriminator")
        if not (disc and base) or not isinstance(disc, str):
            return None
        members = self.find_base_members(base)
        if not members:
            return None
        dtype = members.get(disc)
        return self.enum_types.get(dtype) if isinstance(dtype, str) else None

    def alternate_qtype(self, name: str) -> str | None:
        if name in BUILTINS:
            return BUILTINS[name][1]
        if name in self.struct_types or name in self.union_types:
            return "QTYPE_QDICT"
        if name in self.enum_types:
            return "QTYPE_QSTRING"
        return None

    # -- per meta-type checks ---------------------------------------------------------

    def check_command(self, expr: dict[str, Any], info: SourceInfo) -> None:
        name = expr["command"]
        boxed = expr.get("boxed", False)
        args_meta = ["struct"] + (["union", "alternate"] if boxed else [])
        self.check_type(info, f"'data' for command '{name}'", expr.get("data"),
                        allow_dict=not boxed, allow_optional=True, allow_metas=args_meta)
        returns_meta = ["union", "struct"]
        if self.legacy or name in self.returns_whitelist:
            returns_meta += ["built-in", "alternate", "enum"]
        self.check_type(info, f"'returns' for command '{name}'", expr.get("returns"),
                        allow_array=True, allow_optional=True, allow_metas=returns_meta)

    def check_event(self, expr: dict[str, Any], info: SourceInfo) -> None:
        name = expr["event"]
        meta = ["struct"] + (["union", "alternate"] if expr.get("boxed", False) else [])
        self.check_type(info, f"'data' for event '{name}'", expr.get("data"),
                        allow_dict=not expr.get("boxed", False), allow_optional=True,
                        allow_metas=meta)

    def check_union(self, expr: dict[str, Any], info: SourceInfo) -> None:
        name = expr["union"]
        base = expr.get("base")
        discriminator = expr.get("discriminator")
        members = expr["data"]
        enum_define = None
        if discriminator is None:
            allow_metas = ["built-in", "union", "alternate", "struct", "enum"]
            if base is not None:
                raise QAPIError(info, f"Simple union '{name}' must not have a base")
        else:
            self.check_type(info, f"'base' for union '{name}'", base, allow_dict=True,
                            allow_optional=True, allow_metas=["struct"])
            if not base:
                raise QAPIError(info, f"Flat union '{name}' must have a base")
            base_members = self.find_base_members(base)
            assert base_members is not None
            self.check_name(info, f"Discriminator of flat union '{name}'", discriminator)
            dtype = base_members.get(discriminator)
            if not dtype:
                raise QAPIError(info, f"Discriminator '{discriminator}' is not a member of "
                                      f"base struct '{base}'")
            enum_define = self.enum_types.get(dtype) if isinstance(dtype, str) else None
            allow_metas = ["struct"]
            if not enum_define:
                raise QAPIError(info, f"Discriminator '{discriminator}' must be of "
                                      "enumeration type")
        if not isinstance(members, dict):
            raise QAPIError(info, f"Union '{name}' requires a dictionary for 'data'")
        if not members:
            raise QAPIError(info, f"Union '{name}' cannot have empty 'data'")
        for key, value in members.items():
            self.check_name(info, f"Member of union '{name}'", key)
            self.check_type(info, f"Member '{key}' of union '{name}'", value,
                            allow_array=not base, allow_metas=allow_metas)
            if enum_define and key not in enum_define["data"]:
                raise QAPIError(info, f"Discriminator value '{key}' is not found in enum "
                                      f"'{enum_define['enum']}'")
        if enum_define:
            for value in enum_define["data"]:
                if value not in members:
                    raise QAPIError(info, f"Union '{name}' data missing '{value}' branch")

    def check_alternate(self, expr: dict[str, Any], info: SourceInfo) -> None:
        name = expr["alternate"]
        members = expr["data"]
        if not isinstance(members, dict) or len(members) < 2:
            raise QAPIError(info, f"Alternate '{name}' should have at least two branches "
                                  "in 'data'")
        seen: dict[str, str] = {}
        for key, value in members.items():
            self.check_name(info, f"Member of alternate '{name}'", key)
            self.check_type(info, f"Member '{key}' of alternate '{name}'", value,
                            allow_metas=["built-in", "union", "struct", "enum"])
            qtype = self.alternate_qtype(value)
            if not qtype:
                raise QAPIError(info, f"Alternate '{name}' member '{key}' cannot use type "
                                      f"'{value}'")
            conflicting = {qtype}
            if qtype == "QTYPE_QSTRING":
                enum = self.enum_types.get(value)
                if enum:
                    for v in enum["data"]:
                        if v in ("on", "off"):
                            conflicting.add("QTYPE_QBOOL")
                        if re.match(r"[-+0-9.]", v):
                            conflicting.add("QTYPE_QNUM")
                else:
                    conflicting |= {"QTYPE_QNUM", "QTYPE_QBOOL"}
            for qt in sorted(conflicting):
                if qt in seen:
                    raise QAPIError(info, f"Alternate '{name}' member '{key}' can't be "
                                          f"distinguished from member '{seen[qt]}'")
                seen[qt] = key

    def check_enum(self, expr: dict[str, Any], info: SourceInfo) -> None:
        name = expr["enum"]
        members = expr.get("data")
        prefix = expr.get("prefix")
        if not isinstance(members, list):
            raise QAPIError(info, f"Enum '{name}' requires an array for 'data'")
        if prefix is not None and not isinstance(prefix, str):
            raise QAPIError(info, f"Enum '{name}' requires a string for 'prefix'")
        for member in members:
            self.check_name(info, f"Member of enum '{name}'", member, enum_member=True)

    def check_struct(self, expr: dict[str, Any], info: SourceInfo) -> None:
        name = expr["struct"]
        self.check_type(info, f"'data' for struct '{name}'", expr["data"], allow_dict=True,
                        allow_optional=True)
        self.check_type(info, f"'base' for struct '{name}'", expr.get("base"),
                        allow_metas=["struct"])


def _meta_of(expr: dict[str, Any]) -> str | None:
    for meta in ("enum", "union", "alternate", "struct", "command", "event"):
        if meta in expr:
            return meta
    return None


def _context(expr: dict[str, Any]) -> str | None:
    meta = _meta_of(expr)
    if meta is None:
        return None
    name = expr[meta]
    return f"{meta} '{name}'" if isinstance(name, str) else None


# Before QEMU 2.5 a hand-written ('gen': 'no') command spelled "any value" as one of
# these; commit "qapi: Unify type bypass and add tests" (2.4) lists them, 2.5 made it
# the builtin 'any'.
_LEGACY_ANY = frozenset(("visitor", "dict", "**"))


def _legacy_any(value: Any) -> Any:
    if isinstance(value, str):
        return "any" if value in _LEGACY_ANY else value
    if isinstance(value, list):
        return [_legacy_any(v) for v in value]
    return value


def _normalise_legacy(e: Expression) -> Expression:
    """Read a 1.x expression in 2.11 terms: `'type'` is a struct, `'no'` is false,
    the type-bypass names are `any`."""
    expr = e.expr
    if "type" in expr and not any(k in expr for k in ("struct", "union", "enum")):
        expr = {("struct" if k == "type" else k): v for k, v in expr.items()}
    if "command" in expr:
        bypassed = dict(expr)
        if "returns" in expr:
            bypassed["returns"] = _legacy_any(expr["returns"])
        if isinstance(expr.get("data"), dict):
            bypassed["data"] = {m: _legacy_any(t) for m, t in expr["data"].items()}
        if bypassed != expr:
            expr = bypassed
    if expr.get("gen") == "no" or expr.get("success-response") == "no":
        expr = {k: (False if k in ("gen", "success-response") and v == "no" else v)
                for k, v in expr.items()}
    if "union" in expr and expr.get("discriminator") == {}:
        # 2.0/2.1 spelled an alternate as a union with an empty discriminator.
        expr = {("alternate" if k == "union" else k): v for k, v in expr.items()
                if k != "discriminator"}
    return e if expr is e.expr else e._replace(expr=expr)


def check_expressions(exprs: Iterable[Expression], *, legacy: bool,
                      returns_whitelist: Iterable[str] = (),
                      doc_required: bool = False) -> list[Expression]:
    """Apply QEMU's expression rules; return the expressions in 2.11 terms."""
    exprs = [_normalise_legacy(e) for e in exprs] if legacy else list(exprs)
    checker = _Checker(legacy=legacy, returns_whitelist=frozenset(returns_whitelist),
                       doc_required=doc_required)
    for builtin in BUILTINS:
        checker.all_names[builtin] = "built-in"
    checker.all_names["QType"] = "built-in"
    for e in exprs:
        expr, info, doc = e.expr, e.info, e.doc
        try:
            if doc is None and doc_required:
                raise QAPIError(info, "Expression missing documentation comment")
            meta = _meta_of(expr)
            if meta == "enum":
                checker.check_keys(e, "enum", ["data"], ["prefix"])
                checker.enum_types[expr["enum"]] = expr
            elif meta == "union":
                checker.check_keys(e, "union", ["data"], ["base", "discriminator"])
                checker.union_types[expr["union"]] = expr
            elif meta == "alternate":
                checker.check_keys(e, "alternate", ["data"], [])
            elif meta == "struct":
                checker.check_keys(e, "struct", ["data"], ["base"])
                checker.struct_types[expr["struct"]] = expr
            elif meta == "command":
                checker.check_keys(e, "command", [],
                                   ["data", "returns", "gen", "success-response", "boxed"])
            elif meta == "event":
                checker.check_keys(e, "event", [], ["data", "boxed"])
            else:
                raise QAPIError(info, "Expression is missing metatype")
            name = expr[meta]
            checker.add_name(name, info, meta)
            if doc is not None and doc.symbol != name and not legacy:
                raise QAPIError(info, f"Definition of '{name}' follows documentation for "
                                      f"'{doc.symbol}'")
        except QAPIError as err:
            raise _with_context(err, expr) from None
    for e in exprs:
        expr = e.expr
        if "union" in expr and not checker.discriminator_enum(expr):
            name = f"{expr['union']}Kind"
        elif "alternate" in expr:
            name = f"{expr['alternate']}Kind"
        else:
            continue
        checker.enum_types[name] = {"enum": name, "data": []}
        checker.add_name(name, e.info, "enum", implicit=True)
    for e in exprs:
        expr, info = e.expr, e.info
        try:
            meta = _meta_of(expr)
            getattr(checker, f"check_{meta}")(expr, info)
            if e.doc is not None and any(n == "Returns" for n, _ in e.doc.sections) \
                    and meta != "command" and not legacy:
                raise QAPIError(e.doc.info, "'Returns:' is only valid for commands")
        except QAPIError as err:
            raise _with_context(err, expr) from None
    return exprs


def _with_context(err: QAPIError, expr: dict[str, Any]) -> QAPIError:
    if err.context is None and err.col is None:
        err.context = _context(expr)
    return err


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
        if legacy is None:
            legacy = any("type" in e.expr and _meta_of(e.expr) is None for e in parsed.exprs)
        pragmas = _check_pragmas(parsed.pragmas)
        exprs = check_expressions(parsed.exprs, legacy=legacy,
                                  returns_whitelist=pragmas.get("returns-whitelist", ()),
                                  doc_required=pragmas.get("doc-required", False))
        builder = _Builder(legacy=legacy,
                           name_case_whitelist=frozenset(pragmas.get("name-case-whitelist",
                                                                     ())))
        builder.def_predefineds()
        for e in exprs:
            builder.def_expr(e)
        builder.check()
        return cls(entities=builder.entities, pragmas=pragmas,
                   pragma_directives=len({info for _, _, info in parsed.pragmas}),
                   legacy=legacy, files=parsed.files)


def _check_pragmas(pragmas: Iterable[tuple[str, Any, SourceInfo]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value, info in pragmas:
        if name == "doc-required":
            if not isinstance(value, bool):
                raise QAPIError(info, "Pragma 'doc-required' must be boolean")
        elif name in ("returns-whitelist", "name-case-whitelist"):
            if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
                raise QAPIError(info, f"Pragma {name} must be a list of strings")
        else:
            raise QAPIError(info, f"Unknown pragma '{name}'")
        out[name] = value
    return out


class _Builder:
    """QEMU's QAPISchema construction: define entities, then check and resolve them."""

    def __init__(self, *, legacy: bool, name_case_whitelist: frozenset[str]) -> None:
        self.legacy = legacy
        self.name_case_whitelist = name_case_whitelist
        self.entities: dict[str, Entity] = {}
        # Per doc comment (by id), the documented names that turned out to be
        # members; a doc comment is shared by a command and its implicit argument
        # type, a union and its implicit base.
        self.documented: dict[int, set[str]] = {}

    def connect_doc(self, doc: Doc | None, name: str) -> None:
        if doc is not None and not self.legacy:
            self.documented.setdefault(id(doc), set()).add(name)

    def check_doc(self, doc: Doc | None) -> None:
        """QEMU's QAPIDoc.check: every `@name:` section must document a member."""
        if doc is None or self.legacy:
            return
        connected = self.documented.get(id(doc), set())
        bogus = [n for n, _ in doc.args if n not in connected]
        if bogus:
            raise QAPIError(doc.info, "The following documented members are not in the "
                                      "declaration: " + ", ".join(bogus))

    def define(self, ent: Entity) -> None:
        assert ent.name not in self.entities, ent.name
        self.entities[ent.name] = ent

    def def_predefineds(self) -> None:
        for name, (json_type, _) in BUILTINS.items():
            self.define(BuiltinType(name, json_type))
            self.make_array(name, None)
        self.define(ObjectType("q_empty", None, kind="implicit"))
        self.define(EnumType("QType", None, values=QTYPE_VALUES, prefix="QTYPE",
                             implicit=True))

    def make_array(self, element: str, info: SourceInfo | None) -> str:
        name = element + "List"
        if name not in self.entities:
            self.define(ArrayType(name, info, element_name=element))
        return name

    def make_member(self, name: str, typ: Any, info: SourceInfo, owner: str) -> Member:
        optional = name.startswith("*")
        if optional:
            name = name[1:]
        if isinstance(typ, list):
            typ = self.make_array(typ[0], info)
        elif isinstance(typ, dict):
            # A 1.x inline nested struct becomes an implicit object type.
            typ = self.make_implicit_object(f"{owner}-{name}", info, None, "nested", typ)
            if typ is None:
                typ = "q_empty"
        return Member(name, typ, optional, owner)

    def make_members(self, data: dict[str, Any], info: SourceInfo, owner: str) -> tuple[Member, ...]:
        return tuple(self.make_member(k, v, info, owner) for k, v in data.items())

    def make_implicit_object(self, name: str, info: SourceInfo, doc: Doc | None, role: str,
                             members: dict[str, Any]) -> str | None:
        if not members:
            return None
        tname = f"q_obj_{name}-{role}"
        if tname not in self.entities:
            self.define(ObjectType(tname, info, doc,
                                   local_members=self.make_members(members, info, tname),
                                   kind="implicit"))
        return tname

    def def_expr(self, e: Expression) -> None:
        expr, info, doc = e.expr, e.info, e.doc
        meta = _meta_of(expr)
        if meta == "enum":
            self.define(EnumType(expr["enum"], info, doc, values=tuple(expr["data"]),
                                 prefix=expr.get("prefix")))
        elif meta == "struct":
            name = expr["struct"]
            self.define(ObjectType(name, info, doc, base_name=expr.get("base"),
                                   local_members=self.make_members(expr["data"], info, name)))
        elif meta == "union":
            self.def_union(expr, info, doc)
        elif meta == "alternate":
            name = expr["alternate"]
            variants = tuple(Variant(k, v, False, name) for k, v in expr["data"].items())
            tag = Member("type", "QType", False, name)
            self.define(AlternateType(name, info, doc,
                                      variants=Variants(None, tag, variants)))
        elif meta == "command":
            name = expr["command"]
            data = expr.get("data")
            if isinstance(data, dict):
                data = self.make_implicit_object(name, info, doc, "arg", data)
            rets = expr.get("returns")
            if isinstance(rets, list):
                rets = self.make_array(rets[0], info)
            self.define(Command(name, info, doc, arg_type_name=data, ret_type_name=rets,
                                gen=expr.get("gen", True) is not False,
                                success_response=expr.get("success-response", True) is not False,
                                boxed=expr.get("boxed", False)))
        elif meta == "event":
            name = expr["event"]
            data = expr.get("data")
            if isinstance(data, dict):
                data = self.make_implicit_object(name, info, doc, "arg", data)
            self.define(Event(name, info, doc, arg_type_name=data,
                              boxed=expr.get("boxed", False)))

    def def_union(self, expr: dict[str, Any], info: SourceInfo, doc: Doc | None) -> None:
        name = expr["union"]
        data = expr["data"]
        base = expr.get("base")
        tag_name = expr.get("discriminator")
        if isinstance(base, dict):
            base = self.make_implicit_object(name, info, doc, "base", base)
        if tag_name:
            variants = tuple(Variant(k, v, False, name) for k, v in data.items())
            self.define(ObjectType(name, info, doc, base_name=base,
                                   variants=Variants(tag_name, None, variants), kind="union"))
            return
        branches = []
        for case, typ in data.items():
            if isinstance(typ, list):
                typ = self.make_array(typ[0], info)
            wrapper = self.make_implicit_object(typ, info, None, "wrapper", {"data": typ})
            assert wrapper is not None
            branches.append(Variant(case, wrapper, False, name))
        kind = name + "Kind"
        self.define(EnumType(kind, info, None, values=tuple(v.name for v in branches),
                             implicit=True))
        tag = Member("type", kind, False, name)
        self.define(ObjectType(name, info, doc, base_name=base, local_members=(tag,),
                               variants=Variants(None, tag, tuple(branches)), kind="union"))

    # -- resolution and clash checks ------------------------------------------------

    def lookup(self, name: str) -> Type:
        ent = self.entities.get(name)
        assert isinstance(ent, Type), name
        return ent

    def check(self) -> None:
        for ent in list(self.entities.values()):
            try:
                self.check_entity(ent)
            except QAPIError as err:
                if err.context is None and err.col is None:
                    err.context = self.context_of(ent)
                raise

    def context_of(self, ent: Entity) -> str | None:
        """`meta 'name'` of the definition an entity comes from, for error messages."""
        if ent.info is None:
            return None
        if ent.name.startswith("q_obj_") and ent.name.endswith(("-arg", "-base")):
            # q_obj_<definition>-arg / -base: blame the command, event or union.
            owner = self.entities.get(ent.name[6:].rsplit("-", 1)[0])
            return None if owner is None else self.context_of(owner)
        if isinstance(ent, EnumType) and ent.implicit and ent.name.endswith("Kind"):
            # <Union>Kind: its values are the union's branch names.
            owner = self.entities.get(ent.name[:-4])
            return None if owner is None else self.context_of(owner)
        if ent.is_implicit():
            return None
        if isinstance(ent, ObjectType):
            return f"{'union' if ent.kind == 'union' else 'struct'} '{ent.name}'"
        return f"{ent.meta} '{ent.name}'"

    def check_entity(self, ent: Entity) -> None:
        if isinstance(ent, EnumType):
            seen: dict[str, Member] = {}
            for v in ent.values:
                self.check_clash(Member(v, "", False, ent.name), ent.info, seen)
                self.connect_doc(ent.doc, v)
        elif isinstance(ent, ArrayType):
            ent.element = self.lookup(ent.element_name)
        elif isinstance(ent, ObjectType):
            self.check_object(ent)
        elif isinstance(ent, AlternateType):
            self.check_alternate(ent)
        elif isinstance(ent, Command):
            self.check_command_like(ent)
            if ent.ret_type_name:
                ent.ret_type = self.lookup(ent.ret_type_name)
                self.check_entity(ent.ret_type) if isinstance(ent.ret_type, ArrayType) else None
        elif isinstance(ent, Event):
            self.check_command_like(ent)

    def check_command_like(self, ent: Command | Event) -> None:
        if ent.arg_type_name:
            arg = self.lookup(ent.arg_type_name)
            assert isinstance(arg, (ObjectType, AlternateType))
            if isinstance(arg, ObjectType):
                self.check_object(arg)
            else:
                self.check_alternate(arg)
            if ent.boxed:
                if isinstance(arg, ObjectType) and arg.is_empty():
                    raise QAPIError(ent.info, "Cannot use 'boxed' with empty type")
            else:
                assert isinstance(arg, ObjectType) and not arg.variants
            ent.arg_type = arg
        elif ent.boxed:
            raise QAPIError(ent.info, "Use of 'boxed' requires 'data'")

    def check_clash(self, member: Member, info: SourceInfo | None,
                    seen: dict[str, Member]) -> None:
        cname = c_name(member.name)
        if cname.lower() != cname and member.owner not in self.name_case_whitelist \
                and not self.legacy:
            raise QAPIError(info, f"{member.describe()} should not use uppercase")
        if cname in seen:
            raise QAPIError(info, f"{member.describe()} collides with {seen[cname].describe()}")
        seen[cname] = member

    def check_object(self, obj: ObjectType) -> None:
        if obj.members is not None:
            if obj.members is _CHECKING:
                raise QAPIError(obj.info, f"Object {obj.name} contains itself")
            return
        obj.members = _CHECKING
        seen: dict[str, Member] = {}
        members: list[Member] = []
        if obj.base_name:
            base = self.lookup(obj.base_name)
            assert isinstance(base, ObjectType)
            self.check_object(base)
            obj.base = base
            assert base.members is not None
            for m in base.members:
                self.check_clash(m, obj.info, seen)
                members.append(m)
        for m in obj.local_members:
            m.type = self.lookup(m.type_name)
            self.check_clash(m, obj.info, seen)
            self.connect_doc(obj.doc, m.name)
            members.append(m)
        obj.members = tuple(members)
        if obj.variants is not None:
            variants = obj.variants
            if variants.tag_member is None:
                tag = next(m for m in obj.members if m.name == variants.tag_name)
                variants.tag_member = tag
            assert isinstance(variants.tag_member.type, EnumType)
            for v in variants:
                v.type = self.lookup(v.type_name)
                assert isinstance(v.type, ObjectType)
                self.check_object(v.type)
                assert v.type.members is not None
                branch_seen = dict(seen)
                for m in v.type.members:
                    self.check_clash(m, obj.info, branch_seen)
        self.check_doc(obj.doc)

    def check_alternate(self, alt: AlternateType) -> None:
        if alt.variants.tag_member is not None:
            alt.variants.tag_member.type = self.lookup("QType")
        seen: dict[str, Member] = {}
        for v in alt.variants:
            v.type = self.lookup(v.type_name)
            if isinstance(v.type, ObjectType):
                self.check_object(v.type)
            self.check_clash(v, alt.info, seen)
            self.connect_doc(alt.doc, v.name)
        self.check_doc(alt.doc)


_CHECKING: tuple[Member, ...] = (Member("<checking>", ""),)
