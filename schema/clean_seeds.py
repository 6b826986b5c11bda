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

The other seeds are already QAPI source, wrapped in a web page: three renderings of
`qapi-schema.json` from the QEMU 1.1 development cycle (gitweb pages with a line
number before every line, one of them with lines missing; a cgit page with the line
numbers in a column of their own) and a 2014 mail patch that creates
`qapi/block-core.json` (QEMU 2.1). The script strips the page around the text and
keeps the text line for line, so that a position in the output is a position in
QEMU's file shifted by the header; every repair it makes is listed in that header.
Each output is parsed and checked with this package's own parser and model before it
is written.
"""

from __future__ import annotations

import argparse
import json
import re
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
    legacy: bool = False  # 1.x-era source, parsed and checked after writing


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


# --------------------------------------------------------------------------------------
# The 1.x-era seeds: QAPI source inside a web page

NBSP = "\u00a0"
_NUMBERED = re.compile(r"^(\d+)(?: (.*))?$")


def read_numbered_page(text: str, *, noise: int) -> dict[int, str]:
    """Line number -> text of a gitweb page: `noise` page lines, then `N text` lines.

    gitweb writes every blank of the source as a non-breaking space (U+00A0); they
    become plain blanks again. The numbers must increase; gaps are the caller's
    business.
    """
    lines = text.replace(NBSP, " ").split("\n")
    numbered: dict[int, str] = {}
    last = 0
    for i, line in enumerate(lines[noise:], start=noise + 1):
        m = _NUMBERED.match(line)
        if m is None:
            raise SeedError(f"line {i}: not a numbered source line: {line!r}")
        number = int(m.group(1))
        if number <= last:
            raise SeedError(f"line {i}: line number {number} after {last}")
        numbered[number] = m.group(2) or ""
        last = number
    return numbered


def read_cgit_page(text: str, *, noise: int) -> list[str]:
    """The source lines of a cgit page: `noise` page lines, a column of bare line
    numbers 1..N, then the N source lines."""
    lines = text.replace(NBSP, " ").split("\n")[noise:]
    count = 0
    while count < len(lines) and lines[count] == str(count + 1):
        count += 1
    source = lines[count:]
    if count == 0 or len(source) != count:
        raise SeedError(f"{count} line numbers but {len(source)} source lines")
    return source


def _is_comment(line: str) -> bool:
    return line.startswith("#")


def _is_doc_symbol(line: str) -> bool:
    return re.fullmatch(r"# @[^ :]+:?", line.rstrip()) is not None


def fill_gaps(numbered: dict[int, str]) -> tuple[list[str], dict[str, int]]:
    """Restore the lines a capture dropped, from where they sat.

    The capture lost lines without losing their numbers, and (as far as the
    surviving text tells) only lines without text: blank lines, bare `#`s, and
    `##`s that open or close a doc comment. Which one follows from the lines around
    the gap:

    * between two comment lines: `#` (a blank line if a `##` follows);
    * between a comment and the expression it documents: the closing `##`, then
      blank lines;
    * between an expression (or the file's start) and a doc comment's `# @name:`
      line: blank lines, then the opening `##` -- except that a gap of a single line
      is a blank line, as in the two places where QEMU's file itself opens a doc
      comment without `##`;
    * anywhere else (between expressions, before a plain comment): blank lines.
    """
    last = max(numbered)
    out: list[str] = []
    counts = {"": 0, "#": 0, "##": 0}
    n = 1
    while n <= last:
        if n in numbered:
            out.append(numbered[n])
            n += 1
            continue
        end = n
        while end not in numbered:
            end += 1
        size = end - n
        before = out[-1] if out else ""
        after = numbered[end]
        if before and _is_comment(before) and _is_comment(after):
            gap = [""] * size if after.startswith("##") else ["#"] * size
        elif before and _is_comment(before):
            gap = ["##"] + [""] * (size - 1)
        elif _is_doc_symbol(after) and size > 1:
            gap = [""] * (size - 1) + ["##"]
        else:
            gap = [""] * size
        for line in gap:
            counts[line] += 1
        out.extend(gap)
        n = end
    return out, counts


def read_mail_patch(text: str) -> tuple[str, int, int, list[str]]:
    """The new file of a one-hunk mail patch: (path, first line, promised line
    count, lines as captured). Mail headers and the diff header are dropped, `+`
    markers stripped; context lines came through without their leading blank."""
    lines = text.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("diff --git "))
    except StopIteration:
        raise SeedError("no 'diff --git' line") from None
    path = lines[start].split(" b/", 1)[1]
    hunk = next((i for i in range(start, len(lines)) if lines[i].startswith("@@ ")), None)
    if hunk is None or not lines[start + 3].startswith("+++ b/"):
        raise SeedError("the diff header is not 'diff', 'index', '---', '+++', '@@'")
    m = re.match(r"^@@ -\d+(?:,\d+)? \+(\d+),(\d+) @@", lines[hunk])
    if m is None:
        raise SeedError(f"bad hunk header {lines[hunk]!r}")
    body = [line[1:] if line.startswith("+") else line for line in lines[hunk + 1:]]
    if any(line.startswith(("@@ ", "diff --git ")) for line in body):
        raise SeedError("more than one hunk")
    return path, int(m.group(1)), int(m.group(2)), body


def check_source(path: Path) -> str:
    """Parse and check a legacy schema file as it is on disk; return its counts."""
    from schema.model import Schema
    from schema.parser import parse_file

    schema = Schema.from_parsed(parse_file(path, legacy=True), legacy=True)
    return ", ".join(f"{v} {k}" for k, v in schema.counts().items())


def _legacy_output(path: Path, header: list[str], source: list[str], summary: str,
                   first_line: int = 1) -> Output:
    """An output that is QAPI source kept line for line behind `header`.

    `first_line` is the line number the first source line has in QEMU's file.
    """
    while source and not source[-1].strip():
        source = source[:-1]
    shift = len(header) + 1 - (first_line - 1)
    body = [*header, f"# (Line N of the original is line N{shift:+d} here.)", *source]
    return Output(path=path, text="\n".join(body) + "\n", summary=summary, legacy=True)


LEGACY_DIR = PACKAGE / "qapi-1.1"
BLOCK_CORE_DIR = PACKAGE / "qapi-2.1"


def clean_1_1_gitweb() -> Output:
    """Seed 000: gitweb page of qapi-schema.json at "blockdev: make image streaming
    safe across hotplug" (January 2012). Complete: the file ended with
    block_job_cancel then."""
    seed = SEEDS / "000_10e431f9ef46a1c5.txt"
    numbered = read_numbered_page(seed.read_text(encoding="utf-8"), noise=3)
    last = max(numbered)
    if len(numbered) != last:
        raise SeedError(f"{seed.name}: {last - len(numbered)} lines missing")
    source = [numbered[n] for n in range(1, last + 1)]
    # Blank lines inside a comment block (a comment line on either side, and not
    # just before a '##' that opens the next one): the page lost a '# '.
    emptied = [n for n in range(2, last) if not source[n - 1] and
               _is_comment(source[n - 2]) and _is_comment(source[n]) and
               not source[n].startswith("##")]
    subject = seed.read_text(encoding="utf-8").split("\n", 2)[1]
    header = [
        "# -*- Mode: Python -*-",
        "#",
        "# qapi-schema.json of QEMU 1.1 in development (1.0.50), as of the commit",
        f"# \"{subject}\" (January 2012);",
        "# GPL-2.0-or-later, like QEMU.",
        f"# Generated by schema/clean_seeds.py from schema/seeds/{seed.name},",
        "# a gitweb page: page header (3 lines) and line numbers removed,",
        "# non-breaking spaces turned back into blanks. All "
        f"{last} lines are present;",
        "# the last definition, block_job_cancel, is complete. Comment lines that",
        f"# came through empty ({', '.join(map(str, emptied))}) are left so. Nothing else "
        "repaired.",
        "# Do not edit; edit the script and rerun it.",
    ]
    return _legacy_output(LEGACY_DIR / "qapi-schema-gitweb.json", header, source,
                          f"{seed.name}: {last} lines, none missing")


def clean_1_1_cgit() -> Output:
    """Seed 003: cgit page of qapi-schema.json blob dc92a791 (December 2011)."""
    seed = SEEDS / "003_c22b64b39107d0c6.txt"
    text = seed.read_text(encoding="utf-8")
    blob = re.search(r"^blob: ([0-9a-f]{40})", text, re.M)
    if blob is None:
        raise SeedError(f"{seed.name}: no blob id in the page header")
    source = read_cgit_page(text, noise=3)
    header = [
        "# -*- Mode: Python -*-",
        "#",
        "# qapi-schema.json of QEMU 1.1 in development (1.0.50), git blob",
        f"# {blob.group(1)} (December 2011); GPL-2.0-or-later, like QEMU.",
        f"# Generated by schema/clean_seeds.py from schema/seeds/{seed.name},",
        f"# a cgit page: page header (3 lines) and the column of {len(source)} line",
        "# numbers removed. All lines present; nothing repaired.",
        "# Do not edit; edit the script and rerun it.",
    ]
    return _legacy_output(LEGACY_DIR / "qapi-schema-cgit.json", header, source,
                          f"{seed.name}: {len(source)} lines")


def clean_1_1_gitweb_gaps() -> Output:
    """Seed 004: gitweb page of qapi-schema.json blob ace55f39 (March 2012), with
    every line that had no text left out."""
    seed = SEEDS / "004_a97b5d59bb1b5e42.txt"
    text = seed.read_text(encoding="utf-8")
    blob = re.search(r"^blob([0-9a-f]{40})$", text, re.M)
    if blob is None:
        raise SeedError(f"{seed.name}: no blob id in the page header")
    numbered = read_numbered_page(text, noise=3)
    source, counts = fill_gaps(numbered)
    missing = len(source) - len(numbered)
    header = [
        "# -*- Mode: Python -*-",
        "#",
        "# qapi-schema.json of QEMU 1.1 in development (1.0.50), git blob",
        f"# {blob.group(1)} (March 2012); GPL-2.0-or-later, like QEMU.",
        f"# Generated by schema/clean_seeds.py from schema/seeds/{seed.name},",
        "# a gitweb page: page header (3 lines) and line numbers removed,",
        "# non-breaking spaces turned back into blanks.",
        f"# REPAIRED: the capture dropped {missing} of the {len(source)} lines, as far as",
        "# can be told all without text (every expression is whole, no sentence",
        "# breaks off). Each was put back, by where it sat: between comment lines",
        "# '#' (a blank line before '##'); between a doc comment and its expression",
        "# the closing '##'; before a '# @name:' line after an expression, blank",
        "# lines and the opening '##' (a lone missing line there is a blank: the file",
        "# opened two doc comments without '##', block_stream's as seed 000 shows too).",
        "# Restored: "
        f"{counts['#']} '#', {counts['##']} '##', {counts['']} blank lines.",
        "# No line with text was added or changed.",
        "# Do not edit; edit the script and rerun it.",
    ]
    return _legacy_output(LEGACY_DIR / "qapi-schema-gitweb-gaps.json", header, source,
                          f"{seed.name}: {len(numbered)} lines captured, {missing} restored "
                          f"({counts['#']} '#', {counts['##']} '##', {counts['']} blank)")


def clean_2_1_block_core() -> Output:
    """Seed 001: the mail patch that created qapi/block-core.json (QEMU 2.1)."""
    seed = SEEDS / "001_3a274e25780667b4.txt"
    text = seed.read_text(encoding="utf-8")
    subject = text.split("\n", 1)[0]
    path, first, promised, source = read_mail_patch(text)
    if path != "qapi/block-core.json":
        raise SeedError(f"{seed.name}: patch creates {path}, not qapi/block-core.json")
    header = [
        "# -*- Mode: Python -*-",
        "#",
        "# qapi/block-core.json of QEMU 2.1 as created by the 2014 patch",
        f"# \"{subject}\"; GPL-2.0-or-later, like QEMU.",
        f"# Generated by schema/clean_seeds.py from schema/seeds/{seed.name}:",
        "# mail headers, diff header and hunk header removed, '+' markers stripped.",
        f"# The hunk holds the file from its line {first} on; lines 1-{first - 1} (the file's",
        "# own header comment) are not in the seed and are not made up here.",
        f"# The hunk promises {promised} lines, the capture holds {len(source)}: it lost",
        f"# {promised - len(source)} of the hunk's 3 context lines (the text-free one, presumably the",
        f"# blank line {first}) and squeezed every run of blanks into one (indentation",
        "# is gone); both left so, QAPI does not care.",
        "# It includes common.json, which is not in the seed: see common.json here.",
        "# Do not edit; edit the script and rerun it.",
    ]
    return _legacy_output(BLOCK_CORE_DIR / "block-core.json", header, source,
                          f"{seed.name}: {len(source)} of {promised} lines",
                          first_line=first + promised - len(source))


def outputs() -> Iterator[Output]:
    yield clean_2_11_50()
    yield clean_1_1_cgit()
    yield clean_1_1_gitweb()
    yield clean_1_1_gitweb_gaps()
    yield clean_2_1_block_core()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the output files are current")
    args = parser.parse_args(argv)
    stale = 0
    written = list(outputs())
    for out in written:
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
    if stale:
        return 1
    from schema.parser import QAPIError

    for out in written:
        if not out.legacy:
            continue
        try:
            counts = check_source(out.path)
        except (QAPIError, OSError) as e:
            print(f"{out.path.relative_to(PACKAGE.parent)} does not load: {e}",
                  file=sys.stderr)
            return 1
        if not args.check:
            print(f"  loads: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
