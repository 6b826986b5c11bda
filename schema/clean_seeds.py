"""Turn the seed documents (web captures of QEMU's schema) into QAPI schema files.

A build-time script of the `schema` package, run by hand when the seeds change; its
output is committed and a test proves it is current. The program itself only ever
reads the output.

    python -m schema.clean_seeds            # rewrite the output files
    python -m schema.clean_seeds --check    # exit 1 if any output file is stale

Seed 002 (QEMU 2.11.50) is one stream in which every `include` was expanded in place,
so the definitions of an included file repeat wherever it was included again. The
script keeps the first copy of every definition and refuses to continue unless each
repeat, doc comment included, is identical to it. It writes the result in QAPI's own
source syntax (single-quoted, one expression per doc comment) to `schema/qapi/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs

PACKAGE = Path(__file__).resolve().parent
SEEDS = PACKAGE / "seeds"

META_KEYS = ("enum", "struct", "union", "alternate", "command", "event", "type",
             "pragma", "include")


class SeedError(Exception):
    """A seed does not look the way the cleaner expects."""


@attrs.frozen
class Chunk:
    """One schema expression with the comment lines written just before it."""

    comments: tuple[str, ...]
    expr: dict[str, object]
    line: int

    @property
    def key(self) -> tuple[str, str]:
        meta = next(k for k in META_KEYS if k in self.expr)
        name = self.expr[meta]
        return meta, name if isinstance(name, str) else json.dumps(name)


# --------------------------------------------------------------------------------------
# Reading seed 002


def read_expanded_stream(text: str, *, banner_prefix: str = "##QEMU SPECIFICATION") -> list[Chunk]:
    """Cut an expanded schema stream into chunks of (comments, expression).

    Expressions are JSON objects starting at column 0; everything else must be a
    comment (`#...`) or blank, or the seed is not what we think it is.
    """
    lines = text.split("\n")
    if lines and lines[0] == "":
        lines = lines[1:]
        offset = 2
    else:
        offset = 1
    if not lines or not lines[0].startswith(banner_prefix):
        raise SeedError(f"seed does not start with the banner {banner_prefix!r}")
    lines = lines[1:]
    offset += 1
    decoder = json.JSONDecoder()
    chunks: list[Chunk] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("{"):
            source = "\n".join(lines[i:])
            expr, end = decoder.raw_decode(source)
            if not isinstance(expr, dict):
                raise SeedError(f"line {i + offset}: top-level value is not an object")
            consumed = source[:end].count("\n")
            tail = lines[i + consumed][len(source[:end].split("\n")[-1]):]
            if tail.strip():
                raise SeedError(f"line {i + consumed + offset}: junk after expression: {tail!r}")
            chunks.append(Chunk(comments=tuple(_trim_blank(pending)), expr=expr, line=i + offset))
            pending = []
            i += consumed + 1
            continue
        if line.startswith("#") or not line.strip():
            pending.append(line.rstrip())
        else:
            raise SeedError(f"line {i + offset}: neither comment nor expression: {line!r}")
        i += 1
    if any(p.strip() for p in pending):
        raise SeedError("comment lines after the last expression")
    return chunks


def _trim_blank(lines: list[str]) -> list[str]:
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def deduplicate(chunks: list[Chunk]) -> tuple[list[Chunk], int]:
    """Keep the first chunk of every definition; every repeat must be identical."""
    first: dict[tuple[str, str], Chunk] = {}
    kept: list[Chunk] = []
    repeats = 0
    for chunk in chunks:
        seen = first.get(chunk.key)
        if seen is None:
            first[chunk.key] = chunk
            kept.append(chunk)
            continue
        if seen.expr != chunk.expr or _doc_of(seen) != _doc_of(chunk):
            raise SeedError(
                f"line {chunk.line}: {chunk.key[0]} '{chunk.key[1]}' repeats the one at "
                f"line {seen.line} but differs from it"
            )
        repeats += 1
    return kept, repeats


def _doc_of(chunk: Chunk) -> tuple[str, ...]:
    return chunk.comments


MISSING_DOC = "# (This definition's documentation is missing from the seed capture.)"


def repair_doc(chunk: Chunk) -> tuple[Chunk, bool]:
    """Give back a doc comment whose opening lines the web capture lost.

    QEMU's parser rejects a `##` that closes a comment it never saw open, and the
    capture left exactly that in a few places: a lone `##` where a whole doc comment
    was, or the tail of one (`# Since: 1.3` / `##`). Reopen such a comment with `##`
    and the `# @name:` line it must start with, marking an empty one as lost.
    """
    lines = list(chunk.comments)
    meta, name = chunk.key
    if meta in ("pragma", "include") or sum(1 for line in lines if line == "##") % 2 == 0:
        return chunk, False
    close = max(i for i, line in enumerate(lines) if line == "##")
    start = close
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    tail = lines[start:close]
    opener = ["##", f"# @{name}:", "#"]
    if not tail:
        tail = [MISSING_DOC]
    elif tail[0] == "#":
        tail = tail[1:]
    lines[start:close] = [*opener, *tail]
    return attrs.evolve(chunk, comments=tuple(lines)), True


# --------------------------------------------------------------------------------------
# Writing QAPI source syntax


def qapi_literal(value: object) -> str:
    """One value in QAPI's single-quoted syntax, on one line."""
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[ " + ", ".join(qapi_literal(v) for v in value) + " ]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{qapi_literal(k)}: {qapi_literal(v)}"
                                for k, v in value.items()) + " }"
    raise SeedError(f"value {value!r} has no QAPI spelling")


def format_expr(expr: dict[str, object], width: int = 79) -> str:
    """Format a top-level expression the way QEMU's schema files are written."""
    return _format(expr, indent=0, width=width)


def _format(value: object, indent: int, width: int) -> str:
    flat = qapi_literal(value)
    if indent + len(flat) <= width or not isinstance(value, (dict, list)) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            key = qapi_literal(k) + ": "
            parts.append(key + _format(v, indent + 2 + len(key), width))
        return "{ " + (",\n" + pad).join(parts) + " }"
    # a list: fill lines with as many elements as fit
    items = [_format(v, indent + 2, width) for v in value]
    lines: list[str] = []
    current = ""
    for item in items:
        candidate = item if not current else current + ", " + item
        if current and ("\n" in item or indent + 2 + len(candidate) + 2 > width):
            lines.append(current + ",")
            current = item
        else:
            current = candidate
    lines.append(current)
    return "[ " + ("\n" + pad).join(lines) + " ]"


def render(chunks: list[Chunk], header: list[str]) -> str:
    out: list[str] = [*header, ""]
    for chunk in chunks:
        out.extend(chunk.comments)
        out.append(format_expr(chunk.expr))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------
# The seeds


@attrs.frozen
class Output:
    path: Path
    text: str
    summary: str


def clean_2_11_50() -> Output:
    seed = SEEDS / "002_581c7921fc28f697.txt"
    chunks = read_expanded_stream(seed.read_text(encoding="utf-8"))
    kept, repeats = deduplicate(chunks)
    repaired: list[str] = []
    for i, chunk in enumerate(kept):
        kept[i], fixed = repair_doc(chunk)
        if fixed:
            repaired.append(chunk.key[1])
    header = [
        "# -*- Mode: Python -*-",
        "#",
        "# QAPI schema of QEMU 2.11.50 (GPL-2.0-or-later, like QEMU).",
        f"# Generated by schema/clean_seeds.py from schema/seeds/{seed.name}:",
        f"# {len(chunks)} expressions in the seed, {repeats} verbatim repeats left by",
        "# expanded includes removed; doc comments whose opening the capture lost",
        f"# reopened ({', '.join(repaired)}).",
        "# Do not edit; edit the script and rerun it.",
    ]
    return Output(
        path=PACKAGE / "qapi" / "qapi-schema.json",
        text=render(kept, header),
        summary=f"{seed.name}: {len(chunks)} expressions, {repeats} repeats removed, "
                f"{len(kept)} kept, {len(repaired)} doc comments reopened",
    )


def outputs() -> Iterator[Output]:
    yield clean_2_11_50()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the output files are current")
    args = parser.parse_args(argv)
    stale = 0
    for out in outputs():
        current = out.path.read_text(encoding="utf-8") if out.path.exists() else None
        if args.check:
            if current != out.text:
                print(f"stale: {out.path.relative_to(PACKAGE.parent)}", file=sys.stderr)
                stale += 1
            continue
        if current != out.text:
            out.path.parent.mkdir(parents=True, exist_ok=True)
            out.path.write_text(out.text, encoding="utf-8")
        print(f"{out.path.relative_to(PACKAGE.parent)}: {out.summary}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
