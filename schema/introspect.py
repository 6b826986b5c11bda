"""The `query-qmp-schema` reply, computed from a checked schema the way QEMU 2.11 does.

A reader of `schema.model`. QEMU generates this at build time
(scripts/qapi-introspect.py): commands and events sorted by name, then every type in
first-use order, type names masked as decimal strings, integer builtins folded into
`int`. `../shared/reference/qapi-introspection.md` §3 restates the algorithm; the
result is a list of plain dicts whose keys are inserted in sorted order, as QEMU's
generated JSON text has them, so the wire serializer's hash order comes out right.
"""

from __future__ import annotations

from typing import Any

from schema.model import (
    INTEGER_BUILTINS,
    AlternateType,
    ArrayType,
    BuiltinType,
    Command,
    EnumType,
    Event,
    ObjectType,
    Schema,
    Type,
)


def _sorted_dict(**items: Any) -> dict[str, Any]:
    return {k.replace("_", "-"): items[k] for k in sorted(items, key=lambda k: k.replace("_", "-"))}


def introspect(schema: Schema) -> list[dict[str, Any]]:
    """Return the SchemaInfo list QEMU 2.11 would answer for `schema`."""
    out: list[dict[str, Any]] = []
    queue: list[Type] = []
    queued: set[int] = set()
    numbers: dict[str, str] = {}
    int_type = schema.lookup_type("int")
    int_list = schema.lookup_type("intList")

    def masked(name: str) -> str:
        if name not in numbers:
            numbers[name] = str(len(numbers))
        return numbers[name]

    def use(t: Type) -> str:
        if t.name in INTEGER_BUILTINS:
            t = int_type
        elif isinstance(t, ArrayType) and t.element.name in INTEGER_BUILTINS:
            t = int_list
        if id(t) not in queued:
            queued.add(id(t))
            queue.append(t)
        if isinstance(t, BuiltinType):
            return t.name
        if isinstance(t, ArrayType):
            return "[" + use(t.element) + "]"
        return masked(t.name)

    empty = schema.lookup_type("q_empty")
    entities = [e for e in schema.entities.values() if isinstance(e, (Command, Event))]
    for ent in sorted(entities, key=lambda e: e.name.encode()):
        if isinstance(ent, Command):
            arg = use(ent.arg_type or empty)
            ret = use(ent.ret_type or empty)
            out.append(_sorted_dict(name=ent.name, meta_type="command", arg_type=arg,
                                    ret_type=ret))
        else:
            out.append(_sorted_dict(name=ent.name, meta_type="event",
                                    arg_type=use(ent.arg_type or empty)))
    i = 0
    while i < len(queue):
        t = queue[i]
        i += 1
        if isinstance(t, BuiltinType):
            out.append(_sorted_dict(name=t.name, meta_type="builtin", json_type=t.json_type))
        elif isinstance(t, EnumType):
            out.append(_sorted_dict(name=masked(t.name), meta_type="enum",
                                    values=list(t.values)))
        elif isinstance(t, ArrayType):
            element = use(t.element)
            out.append(_sorted_dict(name="[" + element + "]", meta_type="array",
                                    element_type=element))
        elif isinstance(t, AlternateType):
            out.append(_sorted_dict(name=masked(t.name), meta_type="alternate",
                                    members=[{"type": use(v.type)} for v in t.variants]))
        elif isinstance(t, ObjectType):
            assert t.members is not None
            members: list[dict[str, Any]] = []
            for m in t.members:
                if m.optional:
                    members.append({"default": None, "name": m.name, "type": use(m.type)})
                else:
                    members.append({"name": m.name, "type": use(m.type)})
            entry: dict[str, Any] = {"members": members, "meta-type": "object",
                                     "name": masked(t.name)}
            if t.variants is not None:
                assert t.variants.tag_member is not None
                entry["tag"] = t.variants.tag_member.name
                entry["variants"] = [{"case": v.name, "type": use(v.type)} for v in t.variants]
            out.append(dict(sorted(entry.items())))
        else:  # pragma: no cover - the model has no other kind of type
            raise AssertionError(t)
    return out
