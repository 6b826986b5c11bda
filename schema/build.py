"""QEMU's QAPISchema construction: checked expressions to a resolved `Schema`.

Third stage of the `schema` package, after the expression checks (`schema.checks`):
`build_schema` defines the entities (`schema.model`), adds the implicit ones QEMU adds
(builtins, `<T>List` arrays, `q_empty`, `QType`, `q_obj_*` argument/base/wrapper
types, `<Union>Kind` enums), then resolves names and flattens members, rejecting
clashes, cycles and doc comments that document no member. An inline struct as a 1.x
member type becomes an implicit object type. Only a start without a cached schema
runs this module (`schema.loader`).
"""

from __future__ import annotations

from typing import Any

from schema.checks import check_expressions, check_pragmas, meta_of
from schema.model import (
    BUILTINS,
    QTYPE_VALUES,
    AlternateType,
    ArrayType,
    BuiltinType,
    Command,
    Entity,
    EnumType,
    Event,
    Member,
    ObjectType,
    Schema,
    Type,
    Variant,
    Variants,
    c_name,
)
from schema.source import Doc, Expression, ParsedFiles, QAPIError, SourceInfo


def build_schema(parsed: ParsedFiles, *, legacy: bool | None = None) -> Schema:
    """Check and build the schema of parsed files; `legacy` picks the 1.x rules (by
    default: if an expression uses the 1.x `'type'` key)."""
    if legacy is None:
        legacy = any("type" in e.expr and meta_of(e.expr) is None for e in parsed.exprs)
    pragmas = check_pragmas(parsed.pragmas)
    exprs = check_expressions(parsed.exprs, legacy=legacy,
                              returns_whitelist=pragmas.get("returns-whitelist", ()),
                              doc_required=pragmas.get("doc-required", False))
    builder = _Builder(legacy=legacy,
                       name_case_whitelist=frozenset(pragmas.get("name-case-whitelist", ())))
    builder.def_predefineds()
    for e in exprs:
        builder.def_expr(e)
    builder.check()
    return Schema(entities=builder.entities, pragmas=pragmas,
                  pragma_directives=len({info for _, _, info in parsed.pragmas}),
                  legacy=legacy, files=parsed.files)


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
        meta = meta_of(expr)
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
