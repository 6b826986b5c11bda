"""The loader and its cache of the checked model (schema/loader.py).

The cache is an optimisation only (the loader's docstring): a warm load must give
the same model as a cold one, any change to a schema file must invalidate it, and a
cache file that cannot be read or makes no sense must be ignored, never fatal.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

import schema.loader as loader
from schema import PERSONAS, Schema, load_schema
from schema.model import AlternateType, ArrayType, Command, EnumType, Event, ObjectType
from schema.parser import QAPIError


def signature(schema: Schema) -> Any:
    """Everything a model says, as plain data, so two models can be compared."""
    rows: list[Any] = []
    for name, ent in schema.entities.items():
        row: list[Any] = [type(ent).__name__, name, None if ent.info is None else str(ent.info)]
        if isinstance(ent, ObjectType):
            row += [[(m.name, m.type.name, m.optional) for m in ent.members or ()],
                    None if ent.variants is None else (
                        ent.variants.tag_member.name if ent.variants.tag_member else None,
                        [(v.name, v.type.name) for v in ent.variants])]
        elif isinstance(ent, EnumType):
            row += [ent.values, ent.prefix]
        elif isinstance(ent, ArrayType):
            row += [ent.element.name]
        elif isinstance(ent, AlternateType):
            row += [[(v.name, v.type.name) for v in ent.variants]]
        elif isinstance(ent, Command):
            row += [ent.arg_type and ent.arg_type.name, ent.ret_type and ent.ret_type.name,
                    ent.gen, ent.success_response, ent.boxed]
        elif isinstance(ent, Event):
            row += [ent.arg_type and ent.arg_type.name, ent.boxed]
        rows.append(row)
    return rows, schema.pragmas, schema.legacy, schema.counts(), schema.introspection()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every schema file the loader parses (i.e. every cache miss)."""
    import schema.parser

    calls: list[str] = []
    real = schema.parser.parse_file

    def spy(path: Any, **kwargs: Any) -> Any:
        calls.append(os.fspath(path))
        return real(path, **kwargs)

    monkeypatch.setattr(schema.parser, "parse_file", spy)  # the loader imports it lazily
    return calls


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("schema-*.pickle"))


@pytest.mark.parametrize("persona", ["2.11.50", "2.1-block-core"])
def test_warm_load_gives_the_same_model(tmp_path: Path, parses: list[str],
                                        persona: str) -> None:
    """A cold load writes the cache; a warm one reads it instead of parsing and
    gives the same model, introspection reply included."""
    cold = load_schema(persona, cache_dir=tmp_path)
    assert len(parses) == 1 and len(cache_files(tmp_path)) == 1
    warm = load_schema(persona, cache_dir=tmp_path)
    assert len(parses) == 1
    assert warm is not cold
    assert signature(warm) == signature(cold)
    assert signature(warm) == signature(load_schema(persona, cache_dir=False))


def copy_persona(tmp_path: Path) -> Path:
    """The 2.11.0 persona and the file it includes, copied where the test may edit."""
    target = tmp_path / "schema"
    target.mkdir()
    for name in ("persona-2.11.0.json", "qapi-schema.json"):
        shutil.copy(loader.PACKAGE / "qapi" / name, target / name)
    return target / "persona-2.11.0.json"


def test_touching_a_schema_file_invalidates(tmp_path: Path, parses: list[str]) -> None:
    """The cache is keyed by every file's size and modification time: a new mtime
    on the main file, or a change of size in an included file, means a reparse."""
    main = copy_persona(tmp_path)
    cache = tmp_path / "cache"
    load_schema(path=main, cache_dir=cache)
    load_schema(path=main, cache_dir=cache)
    assert len(parses) == 1
    st = main.stat()
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load_schema(path=main, cache_dir=cache)
    assert len(parses) == 2
    load_schema(path=main, cache_dir=cache)
    assert len(parses) == 2
    included = main.parent / "qapi-schema.json"
    mtime = included.stat().st_mtime_ns
    with open(included, "a", encoding="utf-8") as f:
        f.write("\n{ 'command': 'x-test-added' }\n")
    os.utime(included, ns=(mtime, mtime))  # same mtime, another size
    schema = load_schema(path=main, cache_dir=cache)
    assert len(parses) == 3
    assert "x-test-added" in schema.commands


def test_deleted_include_invalidates(tmp_path: Path) -> None:
    """A cached file that is gone is a miss, and then the load's own error."""
    main = copy_persona(tmp_path)
    cache = tmp_path / "cache"
    load_schema(path=main, cache_dir=cache)
    (main.parent / "qapi-schema.json").unlink()
    with pytest.raises(QAPIError, match=r"No such file or directory: qapi-schema\.json"):
        load_schema(path=main, cache_dir=cache)


CORRUPT = {
    "garbage": b"\x00\x01not a pickle at all",
    "empty": b"",
    "truncated": None,  # filled in below from a real cache file
    "not a dict": pickle.dumps(["code", "files"]),
    "missing class": b"cno_such_module_for_this_test\nThing\n.",
    "stale code": pickle.dumps({"code": "0" * 16, "names": (), "files": []}),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_cache_is_ignored(tmp_path: Path, parses: list[str], kind: str) -> None:
    """Whatever is in the cache file, a load still works: it parses afresh and
    writes a good cache over the bad one.

    (Fixed: a cache naming a module that does not exist used to raise
    ModuleNotFoundError out of load_schema.)
    """
    load_schema(cache_dir=tmp_path)
    (cache_file,) = cache_files(tmp_path)
    good = cache_file.read_bytes()
    bad = CORRUPT[kind]
    cache_file.write_bytes(good[: len(good) // 2] if bad is None else bad)
    schema = load_schema(cache_dir=tmp_path)
    assert schema.counts()["commands"] == 155
    assert len(parses) == 2
    load_schema(cache_dir=tmp_path)
    assert len(parses) == 2


def test_unreadable_and_unwritable_cache_is_ignored(tmp_path: Path,
                                                    parses: list[str]) -> None:
    """A cache path that cannot be opened (here: a directory stands where the file
    should be) is neither read nor written, and the load still works.

    (Fixed: the failed write used to leave its temporary file behind.)
    """
    load_schema(cache_dir=tmp_path)
    (cache_file,) = cache_files(tmp_path)
    cache_file.unlink()
    cache_file.mkdir()
    assert load_schema(cache_dir=tmp_path).counts()["commands"] == 155
    assert load_schema(cache_dir=tmp_path).counts()["commands"] == 155
    assert len(parses) == 3
    assert cache_file.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_file.name]


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """QMP_EMULATOR_CACHE_DIR, else $XDG_CACHE_HOME/qmp-emulator, else
    ~/.cache/qmp-emulator."""
    monkeypatch.setenv("QMP_EMULATOR_CACHE_DIR", str(tmp_path / "a"))
    assert loader.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("QMP_EMULATOR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert loader.default_cache_dir() == tmp_path / "b" / "qmp-emulator"
    load_schema("1.1-cgit")
    assert len(cache_files(tmp_path / "b" / "qmp-emulator")) == 1


def test_docs_are_never_cached(tmp_path: Path, parses: list[str]) -> None:
    schema = load_schema(cache_dir=tmp_path, with_docs=True)
    assert schema.commands["query-status"].doc is not None
    assert cache_files(tmp_path) == []
    assert load_schema(cache_dir=tmp_path).commands["query-status"].doc is None


def test_personas() -> None:
    """Unknown personas are refused with the list of known ones; positions name
    the package's files relative to the project root."""
    with pytest.raises(ValueError, match=r"unknown schema persona '9.9' \(known: 1.1-cgit"):
        load_schema("9.9", cache_dir=False)
    schema = load_schema("2.11.0", cache_dir=False)
    info = schema.commands["x-debug-block-dirty-bitmap-sha256"].info
    assert info is not None and info.file == "schema/qapi/persona-2.11.0.json"
    assert str(schema.commands["query-status"].info).startswith("schema/qapi/qapi-schema.json:")
    assert all((loader.PACKAGE / p.file).is_file() for p in PERSONAS.values())


def test_docs_are_checked_even_when_not_kept(tmp_path: Path) -> None:
    """The doc rules hold whether or not the caller keeps the comments: a
    doc-required schema with its comments loads, and a comment naming the wrong
    symbol is refused, with or without docs.

    (Fixed: without docs, every expression of a doc-required schema was said to
    miss its comment, and mismatched symbols went unnoticed.)
    """
    good = tmp_path / "good.json"
    good.write_text("{ 'pragma': { 'doc-required': true } }\n##\n# @foo:\n##\n"
                    "{ 'struct': 'foo', 'data': {} }\n", encoding="utf-8")
    assert load_schema(path=good, cache_dir=False).counts()["structs"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text("##\n# @food:\n##\n{ 'struct': 'foo', 'data': {} }\n", encoding="utf-8")
    for with_docs in (False, True):
        with pytest.raises(QAPIError, match="follows documentation for 'food'"):
            load_schema(path=bad, cache_dir=False, with_docs=with_docs)


def test_every_module_a_cold_load_runs_is_in_the_code_stamp() -> None:
    """The cache is keyed by the source of the modules that decide what it holds: a
    cold load (parse, check, build, introspect) runs only modules the stamp covers
    (besides the package's own `__init__` and the error classes), so a change to any
    of them invalidates every cache; a module added to that path must join the stamp."""
    import subprocess
    import sys

    code = ("import sys, schema; s = schema.load_schema(cache_dir=False); s.introspection(); "
            "print(' '.join(m for m in sys.modules if m.startswith('schema.')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=Path(loader.__file__).parent.parent).stdout
    ran = {name.split(".", 1)[1] + ".py" for name in out.split()}
    assert ran - {"errors.py"} <= set(loader.STAMPED_MODULES)
    assert all((loader.PACKAGE / name).is_file() for name in loader.STAMPED_MODULES)


class _Planted:
    """What a planted cache holds: unpickling it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _plant(cache_file: Path, marker: Path) -> None:
    """A cache file whose header is current and whose body runs a command."""
    header = cache_file.read_bytes().split(b"\n", 1)[0]
    cache_file.write_bytes(header + b"\n" + pickle.dumps(_Planted(marker)))


def test_planted_cache_cannot_run_code(tmp_path: Path, parses: list[str]) -> None:
    """Issue 13 defect 7: a cache file someone planted (current header, a body that
    calls os.system when unpickled) runs nothing: the unpickler builds only the
    schema package's classes; the load parses afresh."""
    cache = tmp_path / "cache"
    load_schema(cache_dir=cache)
    (cache_file,) = cache_files(cache)
    marker = tmp_path / "ran"
    _plant(cache_file, marker)
    assert load_schema(cache_dir=cache).counts()["commands"] == 155
    assert not marker.exists()
    assert len(parses) == 2


def test_cache_in_a_directory_others_can_write_is_not_read(tmp_path: Path,
                                                           parses: list[str]) -> None:
    """Defect 7: a cache directory another user can write is never read from (nor
    written to): whatever is in it may be planted."""
    cache = tmp_path / "cache"
    load_schema(cache_dir=cache)
    cache.chmod(0o777)
    load_schema(cache_dir=cache)
    assert len(parses) == 2
    cache.chmod(0o700)
    load_schema(cache_dir=cache)
    assert len(parses) == 2  # the good cache is read again


def test_symlinked_cache_file_is_not_followed(tmp_path: Path, parses: list[str]) -> None:
    """Defect 7: the cache file is opened without following a symbolic link."""
    cache = tmp_path / "cache"
    load_schema(cache_dir=cache)
    (cache_file,) = cache_files(cache)
    real = tmp_path / "elsewhere.pickle"
    cache_file.rename(real)
    cache_file.symlink_to(real)
    load_schema(cache_dir=cache)
    assert len(parses) == 2


def test_temporary_file_is_exclusive_and_private(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 7: the cache is written through a temporary file created exclusively
    and without following links (a link planted at its name is not written through),
    with mode 0600, in a directory created 0700."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    ident = f"{loader._CACHE_FORMAT}:0:{os.path.abspath(loader.persona_path('2.11.50'))}"
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    (cache / f"schema-{key}.pickle.{os.getpid()}.tmp").symlink_to(victim)
    load_schema(cache_dir=cache)
    assert victim.read_bytes() == b"precious"
    assert cache_files(cache) == []  # not written this time
    (cache / f"schema-{key}.pickle.{os.getpid()}.tmp").unlink()
    fresh = tmp_path / "fresh" / "sub"
    load_schema(cache_dir=fresh)
    (written,) = cache_files(fresh)
    assert written.stat().st_mode & 0o777 == 0o600
    assert fresh.stat().st_mode & 0o777 == 0o700


def test_cache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 parses: list[str]) -> None:
    """Defect 7: QMP_EMULATOR_NO_CACHE=1, or an empty QMP_EMULATOR_CACHE_DIR, turns
    the cache off: nothing is read or written."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("QMP_EMULATOR_NO_CACHE", "1")
    assert loader.default_cache_dir() is None
    load_schema()
    load_schema()
    assert len(parses) == 2
    monkeypatch.delenv("QMP_EMULATOR_NO_CACHE")
    monkeypatch.setenv("QMP_EMULATOR_CACHE_DIR", "")
    assert loader.default_cache_dir() is None
    load_schema()
    assert len(parses) == 3
    assert not (tmp_path / "xdg").exists()
