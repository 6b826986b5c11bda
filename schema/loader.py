"""Loading a schema persona, with a cache of the checked model for fast starts.

Entry point of the `schema` package for everyone else: `load_schema("2.11.50")`
returns a checked `Schema`. Parsing and checking the 2.11.50 schema costs a few tens
of milliseconds; a starting server cannot afford that every time, so the checked
model (without doc comments) and its introspection reply are pickled into a cache
file keyed by the schema files' names, sizes and modification times and by this
package's own source. Any change to either invalidates it. The cache is an
optimisation only: when it cannot be read or written, the schema is built afresh.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from schema.introspect import introspect
from schema.model import Schema
from schema.parser import parse_file

PACKAGE = Path(__file__).resolve().parent

PERSONAS: dict[str, str] = {
    # persona -> main schema file, relative to the package
    "2.11.50": "qapi/qapi-schema.json",
    "2.11.0": "qapi/persona-2.11.0.json",
}
DEFAULT_PERSONA = "2.11.50"
_CACHE_FORMAT = 1


def persona_path(persona: str) -> Path:
    try:
        return PACKAGE / PERSONAS[persona]
    except KeyError:
        raise ValueError(f"unknown schema persona {persona!r} "
                         f"(known: {', '.join(sorted(PERSONAS))})") from None


def default_cache_dir() -> Path:
    env = os.environ.get("QMP_EMULATOR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qmp-emulator"


def _code_stamp() -> str:
    digest = hashlib.sha256()
    for name in ("parser.py", "model.py", "introspect.py", "loader.py"):
        digest.update((PACKAGE / name).read_bytes())
    return digest.hexdigest()[:16]


def _files_stamp(files: tuple[str, ...]) -> list[tuple[str, int, int]]:
    out = []
    for f in files:
        st = os.stat(f)
        out.append((f, st.st_size, st.st_mtime_ns))
    return out


def load_schema(persona: str = DEFAULT_PERSONA, *, path: str | os.PathLike[str] | None = None,
                cache_dir: str | os.PathLike[str] | bool | None = None,
                with_docs: bool = False) -> Schema:
    """Load and check a schema persona (or the schema file at `path`).

    `cache_dir=False` disables the cache; None means `default_cache_dir()`.
    `with_docs=True` keeps doc comments (never cached).
    """
    main = Path(path) if path is not None else persona_path(persona)
    use_cache = cache_dir is not False and not with_docs
    cache_file: Path | None = None
    if use_cache:
        directory = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)  # type: ignore[arg-type]
        key = hashlib.sha256(f"{_CACHE_FORMAT}:{os.path.abspath(main)}".encode()).hexdigest()[:16]
        cache_file = directory / f"schema-{key}.pickle"
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
    display = _display_name(main)
    parsed = parse_file(main, display_name=display, with_docs=with_docs)
    schema = Schema.from_parsed(parsed)
    schema.source_files = tuple(os.path.abspath(p) for p in parsed.files)
    if cache_file is not None:
        _write_cache(cache_file, schema)
    return schema


def _display_name(main: Path) -> str:
    """Name schema files relative to the project root when they are ours."""
    try:
        return str(main.resolve().relative_to(PACKAGE.parent))
    except ValueError:
        return str(main)


def _read_cache(cache_file: Path) -> Schema | None:
    try:
        with open(cache_file, "rb") as f:
            header: dict[str, Any] = pickle.load(f)
            if header.get("code") != _code_stamp() or \
                    [tuple(x) for x in header.get("files", [])] != _files_stamp(
                        tuple(header.get("names", ()))):
                return None
            schema = pickle.load(f)
    except (OSError, EOFError, pickle.PickleError, AttributeError, ValueError, TypeError):
        return None
    return schema if isinstance(schema, Schema) else None


def _write_cache(cache_file: Path, schema: Schema) -> None:
    schema.introspection()  # cache the reply along with the model
    names = schema.source_files
    header = {"code": _code_stamp(), "names": names, "files": _files_stamp(names)}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10000))
        try:
            with open(tmp, "wb") as f:
                pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
                pickle.dump(schema, f, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            sys.setrecursionlimit(limit)
        os.replace(tmp, cache_file)
    except OSError:
        return


__all__ = ["DEFAULT_PERSONA", "PERSONAS", "default_cache_dir", "introspect", "load_schema",
           "persona_path"]
