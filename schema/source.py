"""The values the schema parser produces: positions, errors, doc comments, expressions.

Part of the `schema` package's first stage, kept apart from the tokenizer in
`schema.parser` so that a server starting from the cached model (which refers to
these values) does not pay for compiling the parser's regular expressions.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The values below are NamedTuples, not attrs classes, to keep the package's import
# cheap for a starting server (see schema/model.py).


class SourceInfo(NamedTuple):
    """Where an expression starts, and the include chain that led there."""

    file: str
    line: int
    parent: SourceInfo | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def include_path(self) -> str:
        text = ""
        parent = self.parent
        while parent is not None:
            text = f"In file included from {parent.file}:{parent.line}:\n" + text
            parent = parent.parent
        return text


class QAPIError(Exception):
    """A schema file is malformed. `str()` gives QEMU-style `file:line: msg`."""

    def __init__(self, info: SourceInfo | None, msg: str, col: int | None = None,
                 context: str | None = None) -> None:
        super().__init__(msg)
        self.info = info
        self.msg = msg
        self.col = col
        self.context = context

    def __str__(self) -> str:
        if self.info is None:
            return self.msg
        loc = f"{self.info.file}:{self.info.line}"
        if self.col is not None:
            loc += f":{self.col}"
        context = f" In {self.context}:" if self.context else ""
        return f"{self.info.include_path()}{loc}:{context} {self.msg}"


class Doc(NamedTuple):
    """A `##` doc comment: its symbol, free text and per-member sections."""

    symbol: str | None
    body: str
    args: tuple[tuple[str, str], ...]
    sections: tuple[tuple[str, str], ...]
    info: SourceInfo

    def arg(self, name: str) -> str | None:
        return next((text for n, text in self.args if n == name), None)


class Expression(NamedTuple):
    """One top-level definition, as parsed (an ordered dict of plain values)."""

    expr: dict[str, Any]
    info: SourceInfo
    doc: Doc | None = None


class ParsedFiles(NamedTuple):
    """Everything read from a main schema file and what it includes."""

    exprs: tuple[Expression, ...]
    pragmas: tuple[tuple[str, Any, SourceInfo], ...]
    files: tuple[str, ...]


