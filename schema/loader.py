"""Loading a schema persona, with a cache of the checked model for fast starts.

Entry point of the `schema` package for everyone else: `load_schema("2.11.50")`
returns a checked `Schema`. Parsing and checking the 2.11.50 schema costs a few tens
of milliseconds; a starting server cannot afford that every time, so the checked
model (without doc comments) and its introspection reply are pickled into a cache
file keyed by the schema files' names, sizes and modification times and by this
package's own source. Any change to either invalidates it. The cache is an
optimisation only: when it cannot be read or written, the schema is built afresh.

A cache file is trusted only as far as it must be: it is read only from a directory
and a file the user owns that nobody else can write (opened without following
symbolic links), its header is JSON, and its body is unpickled by an unpickler that
can only build this package's own model classes and plain containers, so a planted
file cannot run code. It is written through an exclusive, no-follow temporary file
(mode 0600, in a directory created 0700). `QMP_EMULATOR_CACHE_DIR` moves it;
`QMP_EMULATOR_NO_CACHE=1` (or an empty `QMP_EMULATOR_CACHE_DIR`) turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import stat
import sys
from pathlib import Path
from typing import Any, NamedTuple

from schema.introspect import introspect
from schema.model import Schema

PACKAGE = Path(__file__).resolve().parent

class Persona(NamedTuple):
    """A schema the emulator can serve: its main file and the dialect it is in."""

    file: str  # relative to the package
    legacy: bool  # written for QEMU < 2.9's generator (see `schema.parser`)
    what: str


PERSONAS: dict[str, Persona] = {
    "2.11.50": Persona("qapi/qapi-schema.json", False,
                       "QEMU 2.11.50 (seed 002), the default"),
    "2.11.0": Persona("qapi/persona-2.11.0.json", False,
                      "QEMU 2.11.0: 2.11.50 plus x-debug-block-dirty-bitmap-sha256"),
    "2.1-block-core": Persona("qapi-2.1/block-core.json", True,
                              "qapi/block-core.json as split out for QEMU 2.1 (seed 001)"),
    "1.1-cgit": Persona("qapi-1.1/qapi-schema-cgit.json", True,
                        "QEMU 1.1 development, December 2011 (seed 003)"),
    "1.1-gitweb": Persona("qapi-1.1/qapi-schema-gitweb.json", True,
                          "QEMU 1.1 development, January 2012 (seed 000)"),
    "1.1-gitweb-gaps": Persona("qapi-1.1/qapi-schema-gitweb-gaps.json", True,
                               "QEMU 1.1 development, March 2012 (seed 004, repaired)"),
}
DEFAULT_PERSONA = "2.11.50"
_CACHE_FORMAT = 2


def persona_path(persona: str) -> Path:
    return PACKAGE / _persona(persona).file


def _persona(persona: str) -> Persona:
    try:
        return PERSONAS[persona]
    except KeyError:
        raise ValueError(f"unknown schema persona {persona!r} "
                         f"(known: {', '.join(sorted(PERSONAS))})") from None


def default_cache_dir() -> Path | None:
    """Where the schema cache lives, or None when the environment turns it off."""
    if os.environ.get("QMP_EMULATOR_NO_CACHE", "") not in ("", "0"):
        return None
    env = os.environ.get("QMP_EMULATOR_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qmp-emulator"


# The modules whose code decides what a cached model holds: the parser and the checks
# (which schemas load at all), the builder and the model (what is pickled), the
# introspection (its reply is cached along), this module (the cache's format).
STAMPED_MODULES = ("source.py", "parser.py", "checks.py", "build.py", "model.py",
                   "introspect.py", "loader.py")


def _code_stamp() -> str:
    digest = hashlib.sha256()
    for name in STAMPED_MODULES:
        digest.update((PACKAGE / name).read_bytes())
    return digest.hexdigest()[:16]


def _files_stamp(files: tuple[str, ...]) -> list[tuple[str, int, int]]:
    out = []
    for f in files:
        st = os.stat(f)
        out.append((f, st.st_size, st.st_mtime_ns))
    return out


def load_schema(persona: str = DEFAULT_PERSONA, *, path: str | os.PathLike[str] | None = None,
                legacy: bool | None = None,
                cache_dir: str | os.PathLike[str] | bool | None = None,
                with_docs: bool = False) -> Schema:
    """Load and check a schema persona (or the schema file at `path`).

    `legacy` picks the 1.x dialect; by default the persona's (for `path`: 2.11's).
    `cache_dir=False` disables the cache; None means `default_cache_dir()`.
    `with_docs=True` keeps doc comments in the model (such a model is never cached);
    they are checked either way.
    """
    if path is not None:
        main = Path(path)
        legacy = bool(legacy)
    else:
        entry = _persona(persona)
        main = PACKAGE / entry.file
        legacy = entry.legacy if legacy is None else legacy
    cache_file: Path | None = None
    if not with_docs and cache_dir is not False:
        if cache_dir is None or isinstance(cache_dir, bool):
            directory = default_cache_dir()
        else:
            directory = Path(cache_dir)
        if directory is not None:
            ident = f"{_CACHE_FORMAT}:{int(legacy)}:{os.path.abspath(main)}"
            key = hashlib.sha256(ident.encode()).hexdigest()[:16]
            cache_file = directory / f"schema-{key}.pickle"
            cached = _read_cache(cache_file)
            if cached is not None:
                return cached
    display = _display_name(main)
    # Doc comments take part in checking (doc-required, documented members, the
    # symbol a comment names) whether or not the caller wants to keep them.
    from schema.parser import parse_file  # only on a cache miss: a warm start skips it

    parsed = parse_file(main, display_name=display, with_docs=True, legacy=legacy)
    schema = Schema.from_parsed(parsed, legacy=legacy)
    if not with_docs:
        schema.drop_docs()
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


class _ModelUnpickler(pickle.Unpickler):
    """Builds only what a cached model is made of: this package's classes (and enums)
    and plain containers. Anything else a file names (os.system, builtins.eval, a
    class with a dangerous constructor) is refused before it is looked up."""

    _BUILTINS = frozenset({"set", "frozenset", "list", "dict", "tuple", "str", "int",
                           "float", "bool", "bytes", "bytearray", "object", "slice",
                           "complex", "range", "type"})

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in self._BUILTINS and name != "type":
            return super().find_class(module, name)
        if module == "copyreg" and name == "_reconstructor":
            return super().find_class(module, name)
        if (module == "schema" or module.startswith("schema.")) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"refused: {module}.{name}")


def _private(st: os.stat_result) -> bool:
    """Owned by this user, and nobody else may write it."""
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _read_cache(cache_file: Path) -> Schema | None:
    """The cached schema, or None if there is none that is current, intact and safe.

    Any failure counts as "no cache": a truncated or foreign file can make the
    unpickler raise almost anything (UnpicklingError, EOFError, KeyError for a
    class that moved, MemoryError, ...), and none of it may stop a start. A file in
    a directory someone else can write, or one that is not the user's own regular
    file, is not read at all.
    """
    try:
        if not _private(os.stat(cache_file.parent)):
            return None
        fd = os.open(cache_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not _private(st):
                return None
            header = json.loads(f.readline())
            if not isinstance(header, dict) or header.get("code") != _code_stamp() or \
                    header.get("files") != [list(x) for x in _files_stamp(
                        tuple(header.get("names", ())))]:
                return None
            schema = _ModelUnpickler(f).load()
    except Exception:
        return None
    return schema if isinstance(schema, Schema) else None


def _write_cache(cache_file: Path, schema: Schema) -> None:
    """Write the cache atomically: an exclusive, no-follow temporary file of our own
    (0600), then a rename; a cache that cannot be written is simply not written."""
    schema.introspection()  # cache the reply along with the model
    names = list(schema.source_files)
    header = {"code": _code_stamp(), "names": names,
              "files": [list(x) for x in _files_stamp(tuple(names))]}
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    try:
        cache_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.stat(cache_file.parent)):
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError:
        return  # whatever stands at the temporary name is not ours to touch
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            pickle.dump(schema, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)
    except (OSError, pickle.PicklingError, RecursionError):
        with contextlib.suppress(OSError):
            tmp.unlink()
    finally:
        sys.setrecursionlimit(limit)


__all__ = ["DEFAULT_PERSONA", "PERSONAS", "Persona", "default_cache_dir", "introspect",
           "load_schema", "persona_path"]
