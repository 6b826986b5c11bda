"""The checked model: QEMU 2.11's expression rules and the entities it builds.

Messages are QEMU 2.11's (scripts/qapi.py: check_exprs, check_keys, check_name,
add_name, check_type, check_union, check_alternate, QAPISchemaMember.check_clash,
QAPISchemaObjectType.check, QAPISchemaCommand.check), preceded by this project's
`In <meta> '<name>':` context; the QEMU test whose .err carries the same text is
named where there is one. Structure: qapi-introspection.md §2.
"""

from __future__ import annotations

import pytest

from schema.model import (
    AlternateType,
    ArrayType,
    BuiltinType,
    EnumType,
    ObjectType,
    Schema,
)
from schema.parser import QAPIError, parse_text


def build(text: str, *, legacy: bool = False) -> Schema:
    return Schema.from_parsed(parse_text(text, "t.json", legacy=legacy), legacy=legacy)


def error(text: str) -> str:
    with pytest.raises(QAPIError) as info:
        build(text)
    return str(info.value)


ENUM = "{ 'enum': 'E', 'data': [ 'a', 'b' ] }\n"
BASE = "{ 'struct': 'Base', 'data': { 'kind': 'E', 'name': 'str' } }\n"
BRANCH_A = "{ 'struct': 'A', 'data': { 'x': 'int' } }\n"


@pytest.mark.parametrize(("text", "message"), [
    # missing-type.err, unknown-expr-key.err, enum-missing-data.err, bad-type-bool.err
    ("{ 'data': {} }", "t.json:1: Expression is missing metatype"),
    ("{ 'struct': 'bar', 'data': {}, 'bogus': [] }",
     "t.json:1: In struct 'bar': Unknown key 'bogus' in struct 'bar'"),
    ("{ 'enum': 'E' }", "t.json:1: In enum 'E': Key 'data' is missing from enum 'E'"),
    ("{ 'struct': true, 'data': {} }", "t.json:1: 'struct' key must have a string value"),
])
def test_expression_shape(text: str, message: str) -> None:
    """check_exprs / check_keys: the keys a definition may and must have."""
    assert error(text) == message


@pytest.mark.parametrize(("text", "message"), [
    # args-unknown.err, args-member-unknown.err, returns-unknown.err, union-unknown.err
    ("{ 'command': 'oops', 'data': 'NoSuchType' }",
     "t.json:1: In command 'oops': 'data' for command 'oops' uses unknown type 'NoSuchType'"),
    ("{ 'struct': 'S', 'data': { 'm': 'Nope' } }",
     "t.json:1: In struct 'S': Member 'm' of 'data' for struct 'S' uses unknown type 'Nope'"),
    ("{ 'command': 'oops', 'returns': [ 'Nope' ] }",
     "t.json:1: In command 'oops': 'returns' for command 'oops' uses unknown type 'Nope'"),
    ("{ 'union': 'U', 'data': { 'unknown': 'MissingType' } }",
     "t.json:1: In union 'U': Member 'unknown' of union 'U' uses unknown type 'MissingType'"),
    # args-int.err, bad-base.err, returns-alternate.err, nested-struct-data.err
    ("{ 'command': 'oops', 'data': 'int' }",
     "t.json:1: In command 'oops': 'data' for command 'oops' cannot use built-in type 'int'"),
    ("{ 'union': 'U', 'data': { 'a': 'int' } }\n{ 'struct': 'S', 'base': 'U', 'data': {} }",
     "t.json:2: In struct 'S': 'base' for struct 'S' cannot use union type 'U'"),
    ("{ 'command': 'oops', 'data': { 'a': { 'b': 'str' } } }",
     "t.json:1: In command 'oops': Member 'a' of 'data' for command 'oops' should be a "
     "type name"),
    # args-array-empty.err
    ("{ 'command': 'oops', 'data': { 'a': [] } }",
     "t.json:1: In command 'oops': Member 'a' of 'data' for command 'oops': array type "
     "must contain single type name"),
])
def test_type_references(text: str, message: str) -> None:
    """check_type: unknown types and types of the wrong kind."""
    assert error(text) == message


@pytest.mark.parametrize(("text", "message"), [
    # redefined-type.err, redefined-builtin.err, redefined-command.err
    ("{ 'struct': 'foo', 'data': {} }\n{ 'struct': 'foo', 'data': {} }",
     "t.json:2: In struct 'foo': struct 'foo' is already defined"),
    ("{ 'struct': 'size', 'data': {} }",
     "t.json:1: In struct 'size': built-in 'size' is already defined"),
    ("{ 'command': 'foo' }\n{ 'event': 'foo' }",
     "t.json:2: In event 'foo': command 'foo' is already defined"),
    # reserved-type-list.err, reserved-type-kind.err
    ("{ 'struct': 'FooList', 'data': {} }",
     "t.json:1: In struct 'FooList': struct 'FooList' should not end in 'List'"),
    # reserved-command-q.err, reserved-member-u.err, reserved-member-has.err,
    # bad-ident.err, enum-bad-name.err
    ("{ 'command': 'q-unix' }", "t.json:1: In command 'q-unix': 'command' uses invalid name 'q-unix'"),
    ("{ 'struct': 'Oops', 'data': { 'u': 'str' } }",
     "t.json:1: In struct 'Oops': Member of 'data' for struct 'Oops' uses reserved name 'u'"),
    ("{ 'command': 'oops', 'data': { 'has-a': 'str' } }",
     "t.json:1: In command 'oops': Member of 'data' for command 'oops' uses reserved name "
     "'has-a'"),
    ("{ 'struct': '*oops', 'data': {} }",
     "t.json:1: In struct '*oops': 'struct' does not allow optional name '*oops'"),
    ("{ 'enum': 'E', 'data': [ 'not^possible' ] }",
     "t.json:1: In enum 'E': Member of enum 'E' uses invalid name 'not^possible'"),
])
def test_names(text: str, message: str) -> None:
    """add_name / check_name: one definition per name, QAPI's name rules."""
    assert error(text) == message


@pytest.mark.parametrize(("text", "message"), [
    # struct-base-clash.err
    ("{ 'struct': 'Base', 'data': { 'name': 'str' } }\n"
     "{ 'struct': 'Sub', 'base': 'Base', 'data': { 'name': 'str' } }",
     "t.json:2: In struct 'Sub': 'name' (member of Sub) collides with 'name' (member of Base)"),
    # args-name-clash.err: '-' and '_' are the same in C
    ("{ 'command': 'oops', 'data': { 'a-b': 'str', 'a_b': 'str' } }",
     "t.json:1: In command 'oops': 'a_b' (parameter of oops) collides with 'a-b' "
     "(parameter of oops)"),
    # enum-clash-member.err
    ("{ 'enum': 'E', 'data': [ 'one-two', 'one_two' ] }",
     "t.json:1: In enum 'E': 'one_two' (member of E) collides with 'one-two' (member of E)"),
    # flat-union-clash-member.err: a branch member against a base member
    (ENUM + BASE + "{ 'struct': 'A', 'data': { 'name': 'int' } }\n"
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'kind', "
     "'data': { 'a': 'A', 'b': 'A' } }",
     "t.json:4: In union 'U': 'name' (member of A) collides with 'name' (member of Base)"),
    # union-clash-branches.err
    ("{ 'union': 'U', 'data': { 'a-b': 'int', 'a_b': 'str' } }",
     "t.json:1: In union 'U': 'a_b' (branch of U) collides with 'a-b' (branch of U)"),
    # enum-member-case.err, args-member-case.err
    ("{ 'enum': 'E', 'data': [ 'Value' ] }",
     "t.json:1: In enum 'E': 'Value' (member of E) should not use uppercase"),
    # base-cycle-direct.err
    ("{ 'struct': 'Loopy', 'base': 'Loopy', 'data': {} }",
     "t.json:1: In struct 'Loopy': Object Loopy contains itself"),
])
def test_member_clashes(text: str, message: str) -> None:
    """QAPISchemaMember.check_clash and QAPISchemaObjectType.check."""
    assert error(text) == message


@pytest.mark.parametrize(("text", "message"), [
    # flat-union-incomplete-branch.err
    (ENUM + BASE + BRANCH_A +
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'kind', 'data': { 'a': 'A' } }",
     "t.json:4: In union 'U': Union 'U' data missing 'b' branch"),
    # flat-union-invalid-branch-key.err
    (ENUM + BASE + BRANCH_A +
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'kind', "
     "'data': { 'a': 'A', 'c': 'A' } }",
     "t.json:4: In union 'U': Discriminator value 'c' is not found in enum 'E'"),
    # flat-union-invalid-discriminator.err, flat-union-string-discriminator.err
    (ENUM + BASE + BRANCH_A +
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'nope', 'data': { 'a': 'A' } }",
     "t.json:4: In union 'U': Discriminator 'nope' is not a member of base struct 'Base'"),
    (ENUM + BASE + BRANCH_A +
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'name', 'data': { 'a': 'A' } }",
     "t.json:4: In union 'U': Discriminator 'name' must be of enumeration type"),
    # flat-union-no-base.err, union-base-no-discriminator.err
    (ENUM + BRANCH_A + "{ 'union': 'U', 'discriminator': 'kind', 'data': { 'a': 'A' } }",
     "t.json:3: In union 'U': Flat union 'U' must have a base"),
    (ENUM + BASE + BRANCH_A + "{ 'union': 'U', 'base': 'Base', 'data': { 'a': 'A' } }",
     "t.json:4: In union 'U': Simple union 'U' must not have a base"),
    # flat-union-array-branch.err, union-empty.err
    (ENUM + BASE + BRANCH_A +
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'kind', "
     "'data': { 'a': ['A'], 'b': 'A' } }",
     "t.json:4: In union 'U': Member 'a' of union 'U' cannot be an array"),
    ("{ 'union': 'U', 'data': {} }", "t.json:1: In union 'U': Union 'U' cannot have empty 'data'"),
])
def test_unions(text: str, message: str) -> None:
    """check_union: a flat union needs a base, an enum discriminator from it, and a
    branch for every one of the enum's values."""
    assert error(text) == message


@pytest.mark.parametrize(("text", "message"), [
    # alternate-empty.err
    ("{ 'alternate': 'Alt', 'data': { 'one': 'str' } }",
     "t.json:1: In alternate 'Alt': Alternate 'Alt' should have at least two branches in "
     "'data'"),
    # alternate-conflict-num-string.err: a plain string also claims numbers and booleans
    ("{ 'alternate': 'Alt', 'data': { 'one': 'str', 'two': 'int' } }",
     "t.json:1: In alternate 'Alt': Alternate 'Alt' member 'two' can't be distinguished "
     "from member 'one'"),
    # alternate-conflict-enum-bool.err: an enum with 'on'/'off' claims booleans
    ("{ 'enum': 'OnOff', 'data': [ 'on', 'off' ] }\n"
     "{ 'alternate': 'Alt', 'data': { 'one': 'OnOff', 'two': 'bool' } }",
     "t.json:2: In alternate 'Alt': Alternate 'Alt' member 'two' can't be distinguished "
     "from member 'one'"),
    # alternate-any.err, alternate-nested.err, alternate-array.err
    ("{ 'alternate': 'Alt', 'data': { 'one': 'any', 'two': 'int' } }",
     "t.json:1: In alternate 'Alt': Alternate 'Alt' member 'one' cannot use type 'any'"),
    ("{ 'alternate': 'A1', 'data': { 'a': 'str', 'b': 'null' } }\n"
     "{ 'alternate': 'A2', 'data': { 'n': 'A1', 'i': 'int' } }",
     "t.json:2: In alternate 'A2': Member 'n' of alternate 'A2' cannot use alternate type "
     "'A1'"),
    ("{ 'alternate': 'Alt', 'data': { 'one': ['int'], 'two': 'str' } }",
     "t.json:1: In alternate 'Alt': Member 'one' of alternate 'Alt' cannot be an array"),
])
def test_alternates(text: str, message: str) -> None:
    """check_alternate: at least two branches, told apart by JSON kind."""
    assert error(text) == message


@pytest.mark.parametrize(("text", "message"), [
    # args-bad-boxed.err, type-bypass-bad-gen.err
    ("{ 'command': 'foo', 'data': {}, 'boxed': false }",
     "t.json:1: In command 'foo': 'boxed' of command 'foo' should only use true value"),
    ("{ 'command': 'foo', 'gen': true }",
     "t.json:1: In command 'foo': 'gen' of command 'foo' should only use false value"),
    # args-boxed-anon.err, args-boxed-empty.err, event-boxed-empty.err
    ("{ 'command': 'foo', 'data': { 'a': 'int' }, 'boxed': true }",
     "t.json:1: In command 'foo': 'data' for command 'foo' should be a type name"),
    ("{ 'struct': 'Empty', 'data': {} }\n{ 'command': 'foo', 'data': 'Empty', 'boxed': true }",
     "t.json:2: In command 'foo': Cannot use 'boxed' with empty type"),
    ("{ 'event': 'FOO', 'boxed': true }", "t.json:1: In event 'FOO': Use of 'boxed' requires 'data'"),
    # args-union.err: only a boxed command may take a union
    (ENUM + BASE + BRANCH_A +
     "{ 'union': 'U', 'base': 'Base', 'discriminator': 'kind', "
     "'data': { 'a': 'A', 'b': 'A' } }\n{ 'command': 'oops', 'data': 'U' }",
     "t.json:5: In command 'oops': 'data' for command 'oops' cannot use union type 'U'"),
])
def test_command_flags(text: str, message: str) -> None:
    """check_keys and QAPISchemaCommand.check: `gen` only false, `boxed` only true,
    and only with a non-empty named type (qapi-introspection.md §2, §5)."""
    assert error(text) == message


def test_boxed_union_command_is_accepted() -> None:
    """A boxed command takes a union as its arguments (blockdev-add)."""
    schema = build(ENUM + BASE + BRANCH_A +
                   "{ 'union': 'U', 'base': 'Base', 'discriminator': 'kind', "
                   "'data': { 'a': 'A', 'b': 'A' } }\n"
                   "{ 'command': 'add', 'data': 'U', 'boxed': true }")
    assert schema.commands["add"].arg_type is schema.lookup_type("U")


# --------------------------------------------------------------------------------------
# Entities (qapi-introspection.md §2)


def test_predefined_and_implicit_entities() -> None:
    """Builtins with their arrays, q_empty, QType; `q_obj_<cmd>-arg` for non-empty
    inline arguments only; `<T>List` for every `[T]`; a simple union's `<U>Kind`
    enum and shared `q_obj_<T>-wrapper` types (QAPISchema._def_predefineds,
    _make_implicit_object_type, _make_simple_variant, _def_union_type)."""
    schema = build(
        "{ 'struct': 'S', 'data': { 'l': ['S'] } }\n"
        "{ 'command': 'c', 'data': { 'a': 'int', '*b': 'str' }, 'returns': ['S'] }\n"
        "{ 'command': 'd', 'data': {} }\n"
        "{ 'union': 'U1', 'data': { 'x': 'S', 'y': ['int'] } }\n"
        "{ 'union': 'U2', 'data': { 'z': 'S' } }\n")
    assert isinstance(schema.lookup_type("str"), BuiltinType)
    assert isinstance(schema.lookup_type("uint8List"), ArrayType)
    assert schema.lookup_type("q_empty").is_implicit()
    assert schema.lookup_type("QType").values == (  # type: ignore[attr-defined]
        "none", "qnull", "qnum", "qstring", "qdict", "qlist", "qbool")
    arg = schema.commands["c"].arg_type
    assert isinstance(arg, ObjectType) and arg.name == "q_obj_c-arg"
    assert [(m.name, m.type.name, m.optional) for m in arg.members or ()] == [
        ("a", "int", False), ("b", "str", True)]
    assert schema.commands["c"].ret_type is schema.lookup_type("SList")
    assert schema.commands["d"].arg_type is None
    kind = schema.lookup_type("U1Kind")
    assert isinstance(kind, EnumType) and kind.values == ("x", "y") and kind.is_implicit()
    u1 = schema.lookup_type("U1")
    assert isinstance(u1, ObjectType) and u1.variants is not None
    assert [m.name for m in u1.members or ()] == ["type"]
    assert [(v.name, v.type.name) for v in u1.variants] == [
        ("x", "q_obj_S-wrapper"), ("y", "q_obj_intList-wrapper")]
    u2 = schema.lookup_type("U2")
    assert isinstance(u2, ObjectType) and u2.variants is not None
    assert u2.variants["z"].type is u1.variants["x"].type
    assert schema.counts() == {"commands": 2, "events": 0, "structs": 1, "enums": 0,
                               "unions": 2, "alternates": 0, "pragmas": 0}


def test_members_are_flattened() -> None:
    """An object's members are its base's (recursively) then its own; a flat
    union's inline base becomes `q_obj_<U>-base` and its tag is a base member."""
    schema = build(
        ENUM +
        "{ 'struct': 'B0', 'data': { 'z': 'int' } }\n"
        "{ 'struct': 'B1', 'base': 'B0', 'data': { 'y': 'int' } }\n"
        "{ 'struct': 'S', 'base': 'B1', 'data': { '*x': 'int' } }\n"
        "{ 'union': 'U', 'base': { 'kind': 'E', '*n': 'str' }, 'discriminator': 'kind', "
        "'data': { 'a': 'S', 'b': 'B0' } }\n")
    s = schema.lookup_type("S")
    assert isinstance(s, ObjectType)
    assert [m.name for m in s.members or ()] == ["z", "y", "x"]
    u = schema.lookup_type("U")
    assert isinstance(u, ObjectType) and u.variants is not None
    assert u.base is schema.lookup_type("q_obj_U-base")
    assert [m.name for m in u.members or ()] == ["kind", "n"]
    assert u.variants.tag_member is (u.members or ())[0]
    assert u.variants["a"].type is s


def test_alternate_entity() -> None:
    """An alternate's branches in definition order, tagged by QType."""
    schema = build("{ 'alternate': 'StrOrNull', 'data': { 's': 'str', 'n': 'null' } }")
    alt = schema.lookup_type("StrOrNull")
    assert isinstance(alt, AlternateType)
    assert [(v.name, v.type.name) for v in alt.variants] == [("s", "str"), ("n", "null")]
    assert alt.variants.tag_member is not None
    assert alt.variants.tag_member.type is schema.lookup_type("QType")


def test_legacy_dialect() -> None:
    """The 1.x spellings: `'type'` for struct, `'gen': 'no'`, an inline struct as a
    member type (dropped by QEMU 2.4, "qapi: Drop inline nested struct in
    query-version"), `'visitor'` for any value (QEMU commit d708cdbe "qapi: Unify
    type bypass and add tests" lists 'visitor', 'dict', '**'), a union without
    discriminator, and 2.0's union with an empty discriminator, which is an
    alternate; and 1.x's looser names."""
    schema = build(
        "{ 'type': 'VersionInfo', 'data': { 'qemu': { 'major': 'int', 'minor': 'int' }, "
        "'package': 'str' } }\n"
        "{ 'command': 'qom-get', 'data': { 'path': 'str' }, 'returns': 'visitor', "
        "'gen': 'no' }\n"
        "{ 'enum': 'Arch', 'data': [ 'x86_64', 'UUID' ] }\n"
        "{ 'union': 'Action', 'data': { 'snap': 'VersionInfo' } }\n"
        "{ 'union': 'Ref', 'discriminator': {}, 'data': { 'def': 'VersionInfo', "
        "'ref': 'str' } }\n", legacy=True)
    assert schema.legacy
    info = schema.lookup_type("VersionInfo")
    assert isinstance(info, ObjectType)
    qemu = info.member("qemu")
    assert qemu is not None and isinstance(qemu.type, ObjectType)
    assert qemu.type.name == "q_obj_VersionInfo-qemu-nested"
    assert [m.name for m in qemu.type.members or ()] == ["major", "minor"]
    qom_get = schema.commands["qom-get"]
    assert not qom_get.gen and qom_get.ret_type is schema.lookup_type("any")
    assert isinstance(schema.lookup_type("Ref"), AlternateType)
    assert schema.counts() == {"commands": 1, "events": 0, "structs": 1, "enums": 1,
                               "unions": 1, "alternates": 1, "pragmas": 0}
