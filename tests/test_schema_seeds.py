"""The seeds become schema files that load: schema/clean_seeds.py and the personas.

What each seed is: shared/seeds/README.md (copied to schema/seeds/README.md); the
counts for 2.11.50 are the README's. Run with `-s` to see the counts per seed.
"""

from __future__ import annotations

import pytest

from schema import PERSONAS, load_schema
from schema.clean_seeds import (
    SEEDS,
    SeedError,
    deduplicate,
    fill_gaps,
    main,
    outputs,
    read_cgit_page,
    read_expanded_stream,
    read_mail_patch,
    read_numbered_page,
)

# persona -> (seed, counts)
EXPECTED = {
    "2.11.50": ("002", {"commands": 155, "events": 37, "structs": 200, "enums": 79,
                        "unions": 22, "alternates": 4, "pragmas": 1}),
    "2.11.0": ("002 + persona file", {"commands": 156, "events": 37, "structs": 201,
                                      "enums": 79, "unions": 22, "alternates": 4,
                                      "pragmas": 1}),
    "2.1-block-core": ("001", {"commands": 18, "events": 0, "structs": 26, "enums": 10,
                               "unions": 2, "alternates": 1, "pragmas": 0}),
    "1.1-cgit": ("003", {"commands": 39, "events": 0, "structs": 26, "enums": 2,
                         "unions": 0, "alternates": 0, "pragmas": 0}),
    "1.1-gitweb": ("000", {"commands": 47, "events": 0, "structs": 27, "enums": 2,
                           "unions": 0, "alternates": 0, "pragmas": 0}),
    "1.1-gitweb-gaps": ("004", {"commands": 53, "events": 0, "structs": 29, "enums": 3,
                                "unions": 1, "alternates": 0, "pragmas": 0}),
}


def test_every_persona_is_tested() -> None:
    assert set(EXPECTED) == set(PERSONAS)


@pytest.mark.parametrize("persona", sorted(EXPECTED))
def test_persona_loads_with_its_counts(persona: str) -> None:
    """Every seed loads, doc comments included (so QEMU 2.11's doc rules hold for
    the 2.11 files), and has the definitions it should: for 2.11.50 the seed
    README's 155 commands, 37 events, 200 structs, 79 enums, 22 unions, 4
    alternates and one pragma; 2.11.0 has one command and its return type more."""
    seed, expected = EXPECTED[persona]
    schema = load_schema(persona, cache_dir=False, with_docs=True)
    counts = schema.counts()
    print(f"\nseed {seed} as persona {persona}: " +
          ", ".join(f"{v} {k}" for k, v in counts.items()))
    assert counts == expected
    assert schema.legacy == PERSONAS[persona].legacy


def test_cleaned_files_are_current() -> None:
    """`python -m schema.clean_seeds --check` passes: the committed files are what
    the script makes of the seeds, and each legacy file loads."""
    assert main(["--check"]) == 0


def test_cleaned_files_say_what_was_done() -> None:
    """Each output starts with a header naming its seed; the legacy ones say how
    their lines map to the original's."""
    for out in outputs():
        head = out.text.split("\n", 20)
        assert any("schema/seeds/" in line for line in head), out.path
        if out.legacy:
            assert any(line.startswith("# (Line N of the original is line N+")
                       for line in head), out.path


# --------------------------------------------------------------------------------------
# Seed 002: an expanded include stream

STREAM = '''
##QEMU SPECIFICATION VERSION:  2.11.50

##
# @Color:
#
# Since: 1.0
##
{
  "enum": "Color",
  "data": ["red", "green"]
}

##
# @Color:
#
# Since: 1.0
##
{
  "enum": "Color",
  "data": %s
}
'''


def test_repeats_identical_to_the_first_are_dropped() -> None:
    chunks = read_expanded_stream(STREAM % '["red", "green"]')
    kept, repeats = deduplicate(chunks)
    assert (len(kept), repeats) == (1, 1)
    assert kept[0].expr == {"enum": "Color", "data": ["red", "green"]}
    assert kept[0].line == 9


def test_a_repeat_that_differs_is_refused() -> None:
    """Expanded includes repeat definitions verbatim; a repeat that differs means
    the stream is not what the cleaner thinks it is, and it stops."""
    chunks = read_expanded_stream(STREAM % '["red", "blue"]')
    with pytest.raises(SeedError, match=r"line 19: enum 'Color' repeats the one at line 9 "
                                        r"but differs from it"):
        deduplicate(chunks)


def test_a_repeat_with_another_doc_comment_is_refused() -> None:
    """The doc comment is part of what must repeat verbatim."""
    head, _, tail = (STREAM % '["red", "green"]').rpartition("# Since: 1.0")
    with pytest.raises(SeedError, match=r"line 19: enum 'Color' repeats .* differs"):
        deduplicate(read_expanded_stream(head + "# Since: 1.1" + tail))


def test_stream_noise_is_refused() -> None:
    with pytest.raises(SeedError, match="banner"):
        read_expanded_stream("{}\n")
    with pytest.raises(SeedError, match="neither comment nor expression"):
        read_expanded_stream("##QEMU SPECIFICATION VERSION: x\nstray text\n")


# --------------------------------------------------------------------------------------
# The 1.x-era captures


def test_gitweb_lines_lose_number_and_nbsp() -> None:
    page = "title\nsubject\n[repo] / file\n1 #\u00a0a\u00a0b\n2\n3 {\u00a0'x':\u00a0'y'\u00a0}"
    assert read_numbered_page(page, noise=3) == {1: "# a b", 2: "", 3: "{ 'x': 'y' }"}
    with pytest.raises(SeedError, match="line number 2 after 3"):
        read_numbered_page("a\nb\nc\n3 x\n2 y", noise=3)


def test_cgit_needs_as_many_lines_as_numbers() -> None:
    assert read_cgit_page("a\nb\nc\n1\n2\n# x\n{}", noise=3) == ["# x", "{}"]
    with pytest.raises(SeedError, match="2 line numbers but 1 source lines"):
        read_cgit_page("a\nb\nc\n1\n2\n# x", noise=3)


def test_gap_filling_rule() -> None:
    """The text-free lines a gitweb capture dropped come back by where they sat."""
    numbered = {
        1: "# Title",
        # 2: blank (before a '##')
        3: "##",
        4: "# @foo:",
        # 5: '#'
        6: "# Some text.",
        # 7: closing '##' before the expression
        8: "{ 'command': 'foo' }",
        # 9, 10: blank, then the opening '##' of the next doc comment
        11: "# @bar:",
        # 12: '##'
        13: "{ 'command': 'bar' }",
        # 14: a lone gap before a doc line: QEMU's file had no '##' there
        15: "# @baz:",
        # 16: '##'
        17: "{ 'command': 'baz' }",
    }
    lines, counts = fill_gaps(numbered)
    assert lines == ["# Title", "", "##", "# @foo:", "#", "# Some text.", "##",
                     "{ 'command': 'foo' }", "", "##", "# @bar:", "##",
                     "{ 'command': 'bar' }", "", "# @baz:", "##", "{ 'command': 'baz' }"]
    assert counts == {"": 3, "#": 1, "##": 4}


def test_seed_004_repairs() -> None:
    """Seed 004's restored file: where the capture dropped a doc comment's '##'
    they are back, and where QEMU's own file lacked one it still does."""
    out = next(o for o in outputs() if o.path.name == "qapi-schema-gitweb-gaps.json")
    lines = out.text.split("\n")
    i = lines.index("{ 'type': 'NameInfo', 'data': {'*name': 'str'} }")
    assert lines[i - 9:i] == [
        "##", "# @NameInfo:", "#", "# Guest name information.", "#",
        "# @name: #optional The name of the guest", "#", "# Since 0.14.0", "##"]
    j = lines.index("# @block_stream:")
    assert lines[j - 1] == ""


def test_mail_patch_reader() -> None:
    patch = ("subject\nSigned-off-by: x\ndiff --git a/q/f.json b/q/f.json\nindex 1..2 100644\n"
             "--- a/q/f.json\n+++ b/q/f.json\n@@ -4,1 +4,3 @@\n# context\n+{ 'x': 'y' }\n+")
    assert read_mail_patch(patch) == ("q/f.json", 4, 3, ["# context", "{ 'x': 'y' }", ""])
    with pytest.raises(SeedError, match="no 'diff --git' line"):
        read_mail_patch("just mail\n")


def test_seed_files_are_the_shared_ones() -> None:
    """The package carries the seeds it cleans (shared/seeds, copied verbatim)."""
    names = sorted(p.name for p in SEEDS.glob("*.txt"))
    assert [n[:3] for n in names] == ["000", "001", "002", "003", "004"]
