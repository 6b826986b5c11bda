"""QEMU's expression checks: the rules of its QAPI generator on parsed expressions.

Second stage of the `schema` package, between the parser (`schema.parser`) and the
builder (`schema.build`): `check_expressions` applies the rules QEMU's check_exprs
enforces (keys, names, references, union and alternate shapes) and `check_pragmas`
those of its pragma directive; errors carry the expression's position and name.

The 1.x dialect is read in 2.11 terms (`_normalise_legacy`): `'type'` is a struct,
`'gen': 'no'` is false, `'visitor'` is `any`, a union with an empty discriminator
is an alternate. It is checked with the rules of its time: looser names, no case or
`returns` whitelists, doc comments unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from schema.model import BUILTINS, c_name
from schema.source import Expression, QAPIError, SourceInfo

_VALID_NAME = re.compile(r"^(__[a-zA-Z0-9.-]+_)?[a-zA-Z][a-zA-Z0-9_-]*$")


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


def meta_of(expr: dict[str, Any]) -> str | None:
    for meta in ("enum", "union", "alternate", "struct", "command", "event"):
        if meta in expr:
            return meta
    return None


def _context(expr: dict[str, Any]) -> str | None:
    meta = meta_of(expr)
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
            meta = meta_of(expr)
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
            meta = meta_of(expr)
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


def check_pragmas(pragmas: Iterable[tuple[str, Any, SourceInfo]]) -> dict[str, Any]:
    """QEMU's pragma directive: the known pragmas and their value types, merged."""
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
