"""The schema parser: QAPI syntax, doc comments, includes, pragmas, the 1.x dialect.

Every expected message is QEMU 2.11's wording, from scripts/qapi.py at v2.11.0
(`QAPISchemaParser`, `QAPIDoc`, `QAPIParseError`); the same texts appear in QEMU's
own tests/qapi-schema/*.err, whose names are given where a test mirrors one. The
inputs are written here. Positions are `file:line:col` for syntax errors (column
counted by QAPIParseError's rule) and `file:line` for the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schema.model import Schema
from schema.parser import QAPIError, parse_file, parse_text


def parse_error(text: str, *, legacy: bool = False) -> str:
    with pytest.raises(QAPIError) as info:
        Schema.from_parsed(parse_text(text, "t.json", legacy=legacy), legacy=legacy)
    return str(info.value)


# --------------------------------------------------------------------------------------
# Syntax (QAPISchemaParser.accept / get_members / get_values / get_expr)


@pytest.mark.parametrize(("text", "message"), [
    # missing-colon.err
    ("{ 'command' 'foo' }", 't.json:1:13: Expected ":"'),
    # missing-comma-object.err: the error sits on the next key, a line further down
    ("{ 'enum': 'E'\n  'data': [] }", 't.json:2:3: Expected "," or "}"'),
    # missing-comma-list.err
    ("{ 'enum': 'E', 'data': [ 'a' 'b' ] }", 't.json:1:30: Expected "," or "]"'),
    # trailing-comma-object.err
    ("{ 'enum': 'E', }", "t.json:1:16: Expected string"),
    # trailing-comma-list.err
    ("{ 'enum': 'E', 'data': [ 'a', ] }",
     't.json:1:31: Expected "{", "[", string, boolean or "null"'),
    # leading-comma-list.err
    ("{ 'enum': 'E', 'data': [ , 'a' ] }",
     't.json:1:26: Expected "{", "[", "]", string, boolean or "null"'),
    # leading-comma-object.err
    ("{ , 'enum': 'E' }", 't.json:1:3: Expected string or "}"'),
    # unclosed-string.err: the position of the opening quote
    ("{ 'enum': 'E\n", "t.json:1:11: Missing terminating \"'\""),
    # funny-char.err
    ("{ 'enum': 'E'; }", 't.json:1:14: Stray ";"'),
    # 'true' must be spelled out; a prefix of it is a stray letter
    ("{ 'enum': tru }", 't.json:1:11: Stray "t"'),
    # non-objects.err
    ("[ 'a' ]", 't.json:1:1: Expected "{"'),
    # duplicate-key.err: reported once the value's first token is read
    ("{ 'enum': 'E', 'enum': 'F' }", 't.json:1:24: Duplicate key "enum"'),
    # unknown-escape.err, escape-too-big.err
    ("{ 'enum': 'a\\x' }", "t.json:1:11: Unknown escape \\x"),
    ("{ 'enum': 'a\\u0080' }",
     "t.json:1:11: For now, \\u escape only supports non-zero values up to \\u007f"),
])
def test_syntax_errors(text: str, message: str) -> None:
    """QAPISchemaParser's syntax errors, each with its line and column."""
    assert parse_error(text) == message


def test_short_unicode_escape_is_an_error_not_a_crash() -> None:
    """escape-too-short.err: `\\u` with fewer than 4 hex digits.

    (Fixed: the parser used to die with a Python ValueError here.)
    """
    assert parse_error("{ 'enum': 'a\\u12' }") == \
        "t.json:1:11: \\u escape needs 4 hex digits"


def test_error_at_end_of_input_points_past_the_last_line() -> None:
    """QAPISchemaParser.accept stops on the final newline without counting it, so
    an error at the end of input is reported on the last line, past its text.

    (Fixed: it used to be reported at column 1 of a line after the last.)
    """
    assert parse_error("{ 'enum': 'E'") == 't.json:1:14: Expected "," or "}"'
    assert parse_error("{ 'enum': 'E'\n\n") == 't.json:2:1: Expected "," or "}"'
    assert parse_error("##\n# @foo:\n#") == \
        "t.json:3:2: Documentation comment must end with '##'"


def test_tab_column_rule() -> None:
    """QAPIParseError advances the column over a tab with `(col + 7) % 8 + 1`,
    which takes column 1 to 1; reproduced as is."""
    assert parse_error("\t{ 'enum' 'E' }") == 't.json:1:10: Expected ":"'


def test_values_and_comments() -> None:
    """Strings, booleans, null, nesting and `#` comments anywhere on a line."""
    parsed = parse_text(
        "{ 'command': 'c', # a comment\n"
        "  'data': { 'a': ['str'], 'b': 'b\\'q\\u0041' }, 'gen': false }\n", "t.json")
    (e,) = parsed.exprs
    assert e.expr == {"command": "c", "data": {"a": ["str"], "b": "b'qA"}, "gen": False}
    assert str(e.info) == "t.json:1"


# --------------------------------------------------------------------------------------
# Doc comments (QAPIDoc)

DEF = "{ 'struct': 'foo', 'data': { 'a': 'int' } }\n"


@pytest.mark.parametrize(("text", "message"), [
    # doc-invalid-start.err
    ("## x\n# @foo:\n##\n" + DEF,
     "t.json:1:1: Junk after '##' at start of documentation comment"),
    # doc-invalid-end2.err
    ("##\n# @foo:\n## x\n" + DEF,
     "t.json:3:1: Junk after '##' at end of documentation comment"),
    # doc-missing-space.err
    ("##\n# @foo:\n#\n#text\n##\n" + DEF, "t.json:4:1: Missing space after #"),
    # doc-missing-colon.err
    ("##\n# @foo\n##\n" + DEF, "t.json:2:1: Line should end with :"),
    # doc-empty-symbol.err
    ("##\n# @:\n##\n" + DEF, "t.json:2:1: Invalid name"),
    # doc-empty-arg.err
    ("##\n# @foo:\n# @:\n##\n" + DEF, "t.json:3:1: Invalid parameter name"),
    # doc-duplicated-arg.err
    ("##\n# @foo:\n# @a: one\n# @a: two\n##\n" + DEF,
     "t.json:4:1: 'a' parameter name duplicated"),
    # doc-duplicated-return.err, doc-duplicated-since.err
    ("##\n# @foo:\n# Since: 1\n# Since: 2\n##\n" + DEF,
     "t.json:4:1: Duplicated 'Since' section"),
    # doc-empty-section.err: noticed when the comment closes
    ("##\n# @foo:\n# @a: x\n# Note:\n##\n" + DEF, "t.json:5:1: Empty doc section 'Note'"),
    # doc-interleaved-section.err
    ("##\n# @foo:\n# Since: 2.11\n# @a: x\n##\n" + DEF,
     "t.json:4:1: '@a:' can't follow 'Since' section"),
    # doc-invalid-section.err
    ("##\n# = Title\n# @foo: bar\n##\n" + DEF,
     "t.json:3:1: '@foo:' not allowed in free-form documentation"),
    # QAPIDoc._append_freeform's last rule, a semantic error at the comment's start
    ("##\n# @foo:\n# @a: #optional x\n##\n" + DEF, "t.json:1: Please drop the #optional tag"),
    # doc-no-symbol.err
    ("##\n# Just text.\n##\n" + DEF, "t.json:1: Expression documentation required"),
    # doc-missing-expr.err, doc-before-include.err
    ("##\n# @foo:\n##\n", "t.json:1: Documentation for 'foo' is not followed by the definition"),
    ("##\n# @foo:\n##\n{ 'pragma': { 'doc-required': true } }\n" + DEF,
     "t.json:1: Documentation for 'foo' is not followed by the definition"),
    # doc-bad-symbol.err (check_exprs)
    ("##\n# @food:\n##\n" + DEF,
     "t.json:4: In struct 'foo': Definition of 'foo' follows documentation for 'food'"),
    # doc-bad-command-arg.err (QAPIDoc.check, at the comment)
    ("##\n# @foo:\n# @a: x\n# @b: y\n##\n" + DEF,
     "t.json:1: In struct 'foo': The following documented members are not in the "
     "declaration: b"),
    # doc-missing.err (pragma doc-required)
    ("{ 'pragma': { 'doc-required': true } }\n" + DEF,
     "t.json:2: In struct 'foo': Expression missing documentation comment"),
])
def test_doc_comment_errors(text: str, message: str) -> None:
    """QAPIDoc's rules for `##` comments (strict since QEMU 2.9).

    (Fixed: the doc reader used to skip the section rules and the
    documented-member check, and misread a repeated `@a:` as a stray comment.)
    """
    assert parse_error(text) == message


def test_returns_section_error_points_at_the_comment() -> None:
    """doc-invalid-return.err: QAPIDoc.check_expr reports at the doc comment.

    (Fixed: it used to point at the definition.)
    """
    assert parse_error("##\n# @foo:\n#\n# Returns: x\n##\n" + DEF) == \
        "t.json:1: In struct 'foo': 'Returns:' is only valid for commands"


def test_doc_comment_structure() -> None:
    """A doc comment's symbol, body, member sections and named sections; a blank
    line then unindented text ends a member's section (QAPIDoc._append_freeform)."""
    parsed = parse_text(
        "##\n# @foo:\n#\n# Body text.\n#\n# @a: first\n#      continued\n#\n"
        "# After the members.\n#\n# Since: 2.11\n##\n" + DEF, "t.json")
    doc = parsed.exprs[0].doc
    assert doc is not None
    assert doc.symbol == "foo"
    assert doc.body == "Body text."
    assert doc.args == (("a", "first\ncontinued"),)
    assert doc.sections == (("", "After the members."), ("Since", "2.11"))
    assert doc.arg("a") == "first\ncontinued"
    assert str(doc.info) == "t.json:1"


def test_docs_can_be_left_out() -> None:
    """`with_docs=False` (what the loader uses) parses the comments but keeps none."""
    parsed = parse_text("##\n# @foo:\n##\n" + DEF, "t.json", with_docs=False)
    assert parsed.exprs[0].doc is None


# --------------------------------------------------------------------------------------
# Includes (QAPISchemaParser._include)


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


def test_include_loop(tmp_path: Path) -> None:
    """include-cycle.err: a loop is reported at the include that closes it, with
    the chain of includes that led there (error_path)."""
    write(tmp_path, {"a.json": "{ 'include': 'b.json' }\n",
                     "b.json": "\n{ 'include': 'a.json' }\n"})
    with pytest.raises(QAPIError) as info:
        parse_file(tmp_path / "a.json", display_name="a.json")
    assert str(info.value) == ("In file included from a.json:1:\n"
                               "b.json:2: Inclusion loop for a.json")


def test_include_self(tmp_path: Path) -> None:
    """include-self-cycle.err"""
    write(tmp_path, {"a.json": "{ 'include': 'a.json' }\n"})
    with pytest.raises(QAPIError) as info:
        parse_file(tmp_path / "a.json", display_name="a.json")
    assert str(info.value) == "a.json:1: Inclusion loop for a.json"


def test_include_missing_file(tmp_path: Path) -> None:
    """include-no-file.err: the OS error's text, then the name as written."""
    write(tmp_path, {"a.json": "{ 'include': 'nope.json' }\n"})
    with pytest.raises(QAPIError) as info:
        parse_file(tmp_path / "a.json", display_name="a.json")
    assert str(info.value) == "a.json:1: No such file or directory: nope.json"


def test_include_error_inside_included_file(tmp_path: Path) -> None:
    """include-nested-err.err: an error in an included file names the include."""
    write(tmp_path, {"a.json": "\n{ 'include': 'b.json' }\n",
                     "b.json": "{ 'enum' 'E' }\n"})
    with pytest.raises(QAPIError) as info:
        parse_file(tmp_path / "a.json", display_name="a.json")
    assert str(info.value) == 'In file included from a.json:2:\nb.json:1:10: Expected ":"'


@pytest.mark.parametrize(("text", "message"), [
    ("{ 'include': 'b.json', 'x': 'y' }", "t.json:1: Invalid 'include' directive"),
    ("{ 'include': ['b.json'] }", "t.json:1: Value of 'include' must be a string"),
])
def test_include_directive_errors(tmp_path: Path, text: str, message: str) -> None:
    """include-extra-junk.err, include-non-file.err"""
    write(tmp_path, {"t.json": text})
    with pytest.raises(QAPIError) as info:
        parse_file(tmp_path / "t.json", display_name="t.json")
    assert str(info.value) == message


def test_repeated_include_is_read_once(tmp_path: Path) -> None:
    """A file included again is skipped (QAPISchemaParser._include,
    previously_included), so its definitions are not duplicated."""
    write(tmp_path, {"a.json": "{ 'include': 'b.json' }\n{ 'include': 'sub/c.json' }\n",
                     "b.json": "{ 'enum': 'E', 'data': [] }\n"})
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", {"c.json": "{ 'include': '../b.json' }\n"
                                       "{ 'struct': 'S', 'data': { 'e': 'E' } }\n"})
    parsed = parse_file(tmp_path / "a.json", display_name="a.json")
    assert [e.expr.get("enum") or e.expr.get("struct") for e in parsed.exprs] == ["E", "S"]
    assert str(parsed.exprs[1].info) == "sub/c.json:2"
    assert parsed.exprs[1].info.parent is not None
    assert str(parsed.exprs[1].info.parent) == "a.json:2"
    assert len(parsed.files) == 3


# --------------------------------------------------------------------------------------
# Pragmas (QAPISchemaParser._pragma)


@pytest.mark.parametrize(("text", "message"), [
    ("{ 'pragma': { 'doc-required': 'yes' } }", "t.json:1: Pragma 'doc-required' must be boolean"),
    ("{ 'pragma': { 'returns-whitelist': 'x' } }",
     "t.json:1: Pragma returns-whitelist must be a list of strings"),
    ("{ 'pragma': { 'name-case-whitelist': [ true ] } }",
     "t.json:1: Pragma name-case-whitelist must be a list of strings"),
    ("{ 'pragma': { 'bogus': true } }", "t.json:1: Unknown pragma 'bogus'"),
    ("{ 'pragma': [ 'x' ] }", "t.json:1: Value of 'pragma' must be a dictionary"),
    ("{ 'pragma': {}, 'x': 'y' }", "t.json:1: Invalid 'pragma' directive"),
])
def test_pragma_errors(text: str, message: str) -> None:
    """pragma-doc-required-crap.err, pragma-returns-whitelist-crap.err,
    pragma-name-case-whitelist-crap.err, pragma-non-dict.err,
    pragma-extra-junk.err"""
    assert parse_error(text) == message


def test_pragma_whitelists() -> None:
    """returns-whitelist.err: only whitelisted commands may return a non-object;
    name-case-whitelist lets a type's members use upper case."""
    plain = "{ 'command': 'c', 'returns': 'int' }\n"
    assert parse_error(plain) == \
        "t.json:1: In command 'c': 'returns' for command 'c' cannot use built-in type 'int'"
    pragma = ("{ 'pragma': { 'returns-whitelist': [ 'c' ], "
              "'name-case-whitelist': [ 'S' ] } }\n")
    schema = Schema.from_parsed(parse_text(
        pragma + plain + "{ 'struct': 'S', 'data': { 'A': 'int' } }\n", "t.json"))
    assert schema.commands["c"].ret_type is schema.lookup_type("int")
    assert schema.pragmas == {"returns-whitelist": ["c"], "name-case-whitelist": ["S"]}


# --------------------------------------------------------------------------------------
# The 1.x dialect (legacy=True)


def test_legacy_commas_are_optional() -> None:
    """QEMU 1.1's parser (scripts/qapi.py `parse` at v1.1) skipped a ',' if there was
    one: members and elements need none, and a trailing one is fine. Its own schema
    relies on it (NewImageMode, BlockdevAction in March 2012)."""
    text = ("{ 'enum': 'NewImageMode'\n  'data': [ 'existing' 'absolute-paths', ] }\n"
            "{ 'type': 'S', 'data': { 'm': 'NewImageMode', }, }\n")
    schema = Schema.from_parsed(parse_text(text, "t.json", legacy=True), legacy=True)
    assert schema.counts()["enums"] == 1
    assert parse_error(text) == 't.json:2:3: Expected "," or "}"'


def test_legacy_doc_comments_are_only_comments() -> None:
    """Before QEMU 2.9 nothing parsed `##` blocks, and the 1.x files break every rule
    the later reader enforces; in the legacy dialect none of them is an error."""
    text = ("##\n# @NameInfo\n#\n#no space\n## \n{ 'type': 'NameInfo', 'data': {} }\n"
            "# @orphan:\n#\n# closed but never opened\n##\n"
            "{ 'command': 'query-name', 'returns': 'NameInfo' }\n"
            "##\n# @dangling:\n##\n")
    schema = Schema.from_parsed(parse_text(text, "t.json", legacy=True), legacy=True)
    assert schema.commands["query-name"].ret_type is schema.lookup_type("NameInfo")
    doc = schema.lookup_type("NameInfo").doc
    assert doc is not None and doc.symbol == "NameInfo"
    assert parse_error(text) == "t.json:2:1: Line should end with :"
