"""Parse QAPI schema files into expressions that remember where they came from.

First stage of the `schema` package (parse → check → model → readers). It knows the
syntax only: QAPI's JSON-like language with `#` comments and `##` doc comments,
`include` and `pragma` directives, with QEMU 2.11's rules and messages
(scripts/qapi.py QAPISchemaParser, QAPIDoc). Both quote styles are read.

`legacy=True` reads files written for QEMU before 2.9 (the 1.x schemas and 2.1's
block-core.json) the way QEMU read them then: `##` blocks are plain comments that
happen to document (nothing about them is an error), and, as QEMU 1.1's parser did,
commas between members and elements are optional. What the expressions mean,
including the 1.x spellings, is `schema.model`'s business.

Errors read `file:line:col: message` like QEMU's `scripts/qapi.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from schema.source import Doc, Expression, ParsedFiles, QAPIError, SourceInfo

__all__ = ["Doc", "Expression", "ParsedFiles", "QAPIError", "SourceInfo", "parse_file",
           "parse_text"]


_TOKEN = re.compile(
    r"""
      (?P<nl>\n)
    | (?P<ws>[ \t\r\f\v]+)
    | (?P<comment>\#[^\n]*)
    | (?P<punct>[{}:,\[\]])
    | '(?P<sq>(?:[^'\\\n]|\\.)*)'
    | "(?P<dq>(?:[^"\\\n]|\\.)*)"
    | (?P<kw>true|false|null)
    | (?P<bad>.)
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "\\": "\\", "/": "/", "'": "'", '"': '"'}


class _Tokens:
    """A token stream over one file's text, with line and column tracking."""

    def __init__(self, text: str, fname: str, parent: SourceInfo | None,
                 legacy: bool = False) -> None:
        # QEMU 1.x's parser took "," as optional between members and elements and
        # let a trailing one pass; its 1.1 schema relies on both (NewImageMode,
        # BlockdevAction). The 2013 rewrite ("qapi.py: Fix schema parser to check
        # syntax systematically") made them errors, and so are they here unless
        # `legacy`.
        self.lenient_commas = legacy
        if not text.endswith("\n"):
            text += "\n"
        self.text = text
        self.fname = fname
        self.parent = parent
        self.line = 1
        self.line_start = 0
        self._it = _TOKEN.finditer(text)
        self.kind = ""
        self.val: Any = None
        self.pos = 0
        self.advance()

    def error(self, msg: str) -> QAPIError:
        col = 1
        for ch in self.text[self.line_start:self.pos]:
            col = (col + 7) % 8 + 1 if ch == "\t" else col + 1
        return QAPIError(SourceInfo(self.fname, self.line, self.parent), msg, col=col)

    def info(self) -> SourceInfo:
        return SourceInfo(self.fname, self.line, self.parent)

    def advance(self, keep_comments: bool = False) -> None:
        """Move to the next significant token; `#` comments are kept on request."""
        for m in self._it:
            group = m.lastgroup
            self.pos = m.start()
            if group == "nl":
                if m.end() == len(self.text):
                    # The end of input sits on the final newline, as in QEMU's
                    # accept(): errors there point past the last line's text.
                    break
                self.line += 1
                self.line_start = m.end()
                continue
            if group == "ws":
                continue
            if group == "comment":
                if keep_comments or m.group().startswith("##"):
                    self.kind, self.val = "#", m.group()
                    return
                continue
            if group == "punct":
                self.kind, self.val = m.group(), None
                return
            if group in ("sq", "dq"):
                self.kind = "'"
                self.val = self._unescape(m.group(group))
                return
            if group == "kw":
                word = m.group()
                self.kind = "kw"
                self.val = {"true": True, "false": False, "null": None}[word]
                return
            ch = m.group()
            if ch in "'\"":
                raise self.error("Missing terminating \"'\"")
            raise self.error(f'Stray "{ch}"')
        self.kind, self.val = "", None

    def _unescape(self, raw: str) -> str:
        if "\\" not in raw:
            return raw

        def one(m: re.Match[str]) -> str:
            esc = m.group(1)
            if esc[0] == "u" and len(esc) == 5:
                value = int(esc[1:], 16)
                if not value or value > 0x7F:
                    raise self.error("For now, \\u escape only supports non-zero "
                                     "values up to \\u007f")
                return chr(value)
            if esc in _SIMPLE_ESCAPES:
                return _SIMPLE_ESCAPES[esc]
            if esc == "u":
                raise self.error("\\u escape needs 4 hex digits")
            raise self.error(f"Unknown escape \\{esc}")

        return _ESCAPE.sub(one, raw)


def _is_value_start(tok: _Tokens) -> bool:
    return tok.kind in ("{", "[", "'", "kw")


def _get_expr(tok: _Tokens, nested: bool) -> Any:
    if tok.kind != "{" and not nested:
        raise tok.error('Expected "{"')
    if tok.kind == "{":
        tok.advance()
        return _get_members(tok)
    if tok.kind == "[":
        tok.advance()
        return _get_values(tok)
    if tok.kind in ("'", "kw"):
        val = tok.val
        tok.advance()
        return val
    raise tok.error('Expected "{", "[", string, boolean or "null"')


def _get_members(tok: _Tokens) -> dict[str, Any]:
    expr: dict[str, Any] = {}
    if tok.kind == "}":
        tok.advance()
        return expr
    if tok.kind != "'":
        raise tok.error('Expected string or "}"')
    while True:
        key = tok.val
        tok.advance()
        if tok.kind != ":":
            raise tok.error('Expected ":"')
        tok.advance()
        if key in expr:
            raise tok.error(f'Duplicate key "{key}"')
        expr[key] = _get_expr(tok, True)
        if tok.kind == "}":
            tok.advance()
            return expr
        if tok.lenient_commas:
            if tok.kind == ",":
                tok.advance()
            if tok.kind == "}":
                tok.advance()
                return expr
            if tok.kind != "'":
                raise tok.error('Expected string or "}"')
            continue
        if tok.kind != ",":
            raise tok.error('Expected "," or "}"')
        tok.advance()
        if tok.kind != "'":
            raise tok.error("Expected string")


def _get_values(tok: _Tokens) -> list[Any]:
    values: list[Any] = []
    if tok.kind == "]":
        tok.advance()
        return values
    if not _is_value_start(tok):
        raise tok.error('Expected "{", "[", "]", string, boolean or "null"')
    while True:
        values.append(_get_expr(tok, True))
        if tok.kind == "]":
            tok.advance()
            return values
        if tok.lenient_commas:
            if tok.kind == ",":
                tok.advance()
            if tok.kind == "]":
                tok.advance()
                return values
            continue
        if tok.kind != ",":
            raise tok.error('Expected "," or "]"')
        tok.advance()


_SECTION_NAMES = ("Returns:", "Since:", "Note:", "Notes:", "Example:", "Examples:", "TODO:")


class _DocReader:
    """The rules QEMU 2.11 applies to a doc comment, line by line (scripts/qapi.py
    QAPIDoc): an optional `@symbol:` first line, free text, `@member:` sections,
    then named sections (`Returns:`, `Since:`, ...). A section is a name and its
    lines; the free text before anything else is the unnamed body.
    """

    def __init__(self, tok: _Tokens, info: SourceInfo) -> None:
        self.tok = tok
        self.info = info
        self.symbol: str | None = None
        self.body: list[str] = []
        self.args: dict[str, list[str]] = {}
        self.sections: list[tuple[str, list[str]]] = []
        # The section lines go to: its name (None for the body), whether it is a
        # member's section, and its lines; None once it has been closed.
        self.name: str | None = None
        self.is_arg = False
        self.lines: list[str] | None = self.body

    def append(self, comment: str) -> None:
        line = comment[1:]
        if not line:
            self._freeform(line)
            return
        if line[0] != " ":
            raise self.tok.error("Missing space after #")
        line = line[1:]
        if self.symbol:
            self._symbol_line(line)
        elif not self.body and line.startswith("@"):
            if not line.endswith(":"):
                raise self.tok.error("Line should end with :")
            self.symbol = line[1:-1]
            if not self.symbol:
                raise self.tok.error("Invalid name")
        else:
            self._freeform(line)

    def _symbol_line(self, line: str) -> None:
        word = line.split(" ", 1)[0]
        if word.startswith("@") and word.endswith(":"):
            line = line[len(word) + 1:]
            self._start_arg(word[1:-1])
        elif word in _SECTION_NAMES:
            line = line[len(word) + 1:]
            self._start_section(word[:-1])
        self._freeform(line)

    def _start_arg(self, name: str) -> None:
        if not name:
            raise self.tok.error("Invalid parameter name")
        if name in self.args:
            raise self.tok.error(f"'{name}' parameter name duplicated")
        if self.sections:
            raise self.tok.error(f"'@{name}:' can't follow '{self.sections[0][0]}' section")
        self._end_section()
        self.name, self.is_arg, self.lines = name, True, []
        self.args[name] = self.lines

    def _start_section(self, name: str = "") -> None:
        if name in ("Returns", "Since") and any(n == name for n, _ in self.sections):
            raise self.tok.error(f"Duplicated '{name}' section")
        self._end_section()
        self.name, self.is_arg, self.lines = name, False, []
        self.sections.append((name, self.lines))

    def _end_section(self) -> None:
        if self.lines is not None and self.name and not "\n".join(self.lines).strip():
            raise self.tok.error(f"Empty doc section '{self.name}'")
        self.lines = None

    def _freeform(self, line: str) -> None:
        in_arg = self.is_arg
        assert self.lines is not None
        if in_arg and self.lines and not self.lines[-1] and line and not line[0].isspace():
            # A blank line then unindented text ends a member's section.
            self._start_section()
            assert self.lines is not None
        if in_arg or not self.name or not self.name.startswith("Example"):
            line = line.strip()
        m = re.match(r"(@\S+:)", line)
        if m:
            raise self.tok.error(f"'{m.group(1)}' not allowed in free-form documentation")
        if self.is_arg and "#optional" in line:
            raise QAPIError(self.info, "Please drop the #optional tag")
        self.lines.append(line)

    def finish(self) -> Doc:
        self._end_section()
        return Doc(
            symbol=self.symbol,
            body="\n".join(self.body).strip(),
            args=tuple((n, "\n".join(t).strip()) for n, t in self.args.items()),
            sections=tuple((n, "\n".join(t).strip()) for n, t in self.sections),
            info=self.info,
        )


def _get_doc(tok: _Tokens) -> Doc:
    """Read a `##` ... `##` doc comment (the current token is its opening line)."""
    info = tok.info()
    if tok.val != "##":
        raise tok.error("Junk after '##' at start of documentation comment")
    reader = _DocReader(tok, info)
    tok.advance(keep_comments=True)
    while tok.kind == "#":
        line: str = tok.val
        if line.startswith("##"):
            if line != "##":
                raise tok.error("Junk after '##' at end of documentation comment")
            doc = reader.finish()
            tok.advance()
            return doc
        reader.append(line)
        tok.advance(keep_comments=True)
    raise tok.error("Documentation comment must end with '##'")


def _get_legacy_doc(tok: _Tokens) -> Doc:
    """Read a `##` comment block of a 1.x-era file, which QEMU then read as comments.

    QEMU learnt to parse doc comments in 2.9; before that `##` blocks were a
    convention nobody checked, and the real files break it (a `##` missing at one
    end, `## ` with a trailing blank, `# @Name` without its colon). So nothing here
    is an error: the block runs to the next line starting with `##` or to the next
    expression, its symbol is the `@name` of its first line if it has one, and
    `@member:` lines become argument sections. It is only ever documentation.
    """
    info = tok.info()
    lines: list[str] = []
    tok.advance(keep_comments=True)
    while tok.kind == "#":
        line: str = tok.val
        if line.startswith("##"):
            tok.advance()
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
        tok.advance(keep_comments=True)
    symbol: str | None = None
    if lines and lines[0].startswith("@"):
        symbol = lines.pop(0)[1:].rstrip().rstrip(":") or None
    body: list[str] = []
    args: list[tuple[str, list[str]]] = []
    current = body
    for text in lines:
        word = text.split(" ", 1)[0]
        if word.startswith("@") and word.endswith(":") and len(word) > 2:
            current = []
            args.append((word[1:-1], current))
            text = text[len(word) + 1:]
        current.append(text)
    return Doc(symbol=symbol, body="\n".join(body).strip(),
               args=tuple((n, "\n".join(t).strip()) for n, t in args), sections=(),
               info=info)


def parse_file(path: str | os.PathLike[str], *, display_name: str | None = None,
               with_docs: bool = True, legacy: bool = False) -> ParsedFiles:
    """Parse a main schema file and, recursively, the files it includes.

    Doc comments are always read (and their syntax checked); `with_docs=False`
    leaves them off the expressions, and so out of the model's checks too.

    `display_name` is how the file is named in positions (default: the path as
    given); included files are named relative to it, as QEMU names them. A file
    included a second time is skipped, as QEMU skips it. `legacy` reads doc
    comments the 1.x way (see `_get_legacy_doc`).
    """
    state = _State(with_docs, legacy)
    state.parse_file(Path(path), display_name or os.fspath(path), None, ())
    return ParsedFiles(tuple(state.exprs), tuple(state.pragmas), tuple(state.seen))


def parse_text(text: str, fname: str = "<string>", *, with_docs: bool = True,
               legacy: bool = False) -> ParsedFiles:
    """Parse schema text that includes nothing (for tests)."""
    state = _State(with_docs, legacy)
    state.parse_stream(_Tokens(text, fname, None, legacy), None, ())
    return ParsedFiles(tuple(state.exprs), tuple(state.pragmas), (fname,))


class _State:
    def __init__(self, with_docs: bool, legacy: bool) -> None:
        self.with_docs = with_docs
        self.legacy = legacy
        self.exprs: list[Expression] = []
        self.pragmas: list[tuple[str, Any, SourceInfo]] = []
        self.seen: list[str] = []

    def parse_file(self, path: Path, fname: str, parent: SourceInfo | None,
                   chain: tuple[str, ...]) -> None:
        absolute = os.path.abspath(path)
        self.seen.append(absolute)
        text = path.read_text(encoding="utf-8")
        self.parse_stream(_Tokens(text, fname, parent, self.legacy), path,
                          (*chain, absolute))

    def parse_stream(self, tok: _Tokens, path: Path | None, chain: tuple[str, ...]) -> None:
        doc: Doc | None = None
        while tok.kind:
            info = tok.info()
            if tok.kind == "#":
                if self.legacy:
                    doc = _get_legacy_doc(tok)
                    continue
                _reject_expr_doc(doc)
                doc = _get_doc(tok)
                continue
            expr = _get_expr(tok, False)
            if self.legacy and ("include" in expr or "pragma" in expr):
                doc = None
            if "include" in expr:
                _reject_expr_doc(doc)
                if len(expr) != 1:
                    raise QAPIError(info, "Invalid 'include' directive")
                include = expr["include"]
                if not isinstance(include, str):
                    raise QAPIError(info, "Value of 'include' must be a string")
                if path is None:
                    raise QAPIError(info, "'include' is not possible in schema text")
                self.include(include, info, path, chain)
            elif "pragma" in expr:
                _reject_expr_doc(doc)
                if len(expr) != 1:
                    raise QAPIError(info, "Invalid 'pragma' directive")
                pragma = expr["pragma"]
                if not isinstance(pragma, dict):
                    raise QAPIError(info, "Value of 'pragma' must be a dictionary")
                for name, value in pragma.items():
                    self.pragmas.append((name, value, info))
            else:
                if doc is not None and doc.symbol is None and not self.legacy:
                    raise QAPIError(doc.info, "Expression documentation required")
                self.exprs.append(Expression(expr, info, doc if self.with_docs else None))
            doc = None
        if not self.legacy:
            _reject_expr_doc(doc)

    def include(self, include: str, info: SourceInfo, path: Path,
                chain: tuple[str, ...]) -> None:
        target = path.parent / include
        absolute = os.path.abspath(target)
        if absolute in chain:
            raise QAPIError(info, f"Inclusion loop for {include}")
        if absolute in self.seen:
            return
        if not target.is_file():
            try:
                target.open(encoding="utf-8").close()
            except OSError as e:
                raise QAPIError(info, f"{e.strerror}: {include}") from None
        display = os.path.join(os.path.dirname(info.file), include)
        self.parse_file(target, display, info, chain)


def _reject_expr_doc(doc: Doc | None) -> None:
    if doc is not None and doc.symbol is not None:
        raise QAPIError(doc.info, f"Documentation for '{doc.symbol}' is not followed "
                                  "by the definition")
