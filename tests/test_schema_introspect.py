"""`query-qmp-schema`: QEMU 2.11's introspection reply, byte for byte.

qapi-introspection.md §1-4 (scripts/qapi-introspect.py at v2.11.0) and
qmp-protocol.md §13 (the QDict member order). Ground truth is the reply of a real
QEMU 2.11.0 in schema/data/qemu-2.11.0-x86_64-probe.replies (libvirt's recording).

The real wire codec lives in `vmm`; the tiny serializer here only applies the two
rules that matter for this reply: compact separators and QDict member order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from schema import load_schema
from schema.qobject import qdict_order

RECORDING = Path(__file__).resolve().parent.parent / "schema" / "data" / \
    "qemu-2.11.0-x86_64-probe.replies"

# qapi-introspection.md §1
VALUE_SHA256 = "55d2b001eba9ab58986e9f9810498eb28154c084a2628622094609192fcca674"
LINE_SHA256 = "555c998593e3e1dff64e0af910fd917c1841af9ef3766c58139add930cabceec"
MISSING_IN_2_11_50 = "x-debug-block-dirty-bitmap-sha256"


def serialise(value: Any, *, reorder: bool = True) -> str:
    """Compact JSON as QEMU writes it: `, ` and `: `, objects in QDict order (or, with
    `reorder=False`, in the order the dict already has)."""
    if isinstance(value, dict):
        keys = qdict_order(value) if reorder else list(value)
        return "{" + ", ".join(f"{json.dumps(k)}: {serialise(value[k], reorder=reorder)}"
                               for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(serialise(v, reorder=reorder) for v in value) + "]"
    return json.dumps(value)


@cache
def recorded_reply() -> list[dict[str, Any]]:
    """The `return` of query-qmp-schema in the recording, keys in recorded order."""
    text = RECORDING.read_text(encoding="utf-8")
    messages = [json.loads(chunk) for chunk in text.split("\n\n") if chunk.strip()]
    for i, message in enumerate(messages):
        if message.get("execute") == "query-qmp-schema":
            reply = messages[i + 1]
            assert reply["id"] == message["id"]
            return reply["return"]  # type: ignore[no-any-return]
    raise AssertionError("no query-qmp-schema in the recording")


def test_persona_2_11_0_is_byte_identical_to_qemu() -> None:
    """The 2.11.0 persona's reply, serialised with the QDict rule, is the recorded
    reply byte for byte, and has the SHA-256 qapi-introspection.md §1 gives for the
    value and for the whole reply line."""
    schema = load_schema("2.11.0", cache_dir=False)
    ours = serialise(schema.introspection())
    recorded = serialise(recorded_reply(), reorder=False)
    assert ours == recorded
    assert len(ours) == 101_360
    assert hashlib.sha256(ours.encode()).hexdigest() == VALUE_SHA256
    line = '{"return": ' + ours + "}\r\n"
    assert len(line) == 101_374
    assert hashlib.sha256(line.encode()).hexdigest() == LINE_SHA256


def test_recording_obeys_the_qdict_rule() -> None:
    """The recorded key order is what qdict_order gives for sorted insertion
    (qapi-introspection.md §4: the generator writes keys sorted)."""
    def check(value: Any) -> None:
        if isinstance(value, dict):
            assert list(value) == qdict_order(sorted(value))
            for v in value.values():
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)

    check(recorded_reply())


def test_reply_shape_of_2_11_0() -> None:
    """qapi-introspection.md §1: 672 entries = 156 commands, 37 events, 6 builtins,
    68 enums, 61 arrays, 340 objects, 4 alternates; builtins str, any, int, bool,
    number, null in first-use order; `q_empty` is "17"; verbatim entries of §4."""
    reply = load_schema("2.11.0", cache_dir=False).introspection()
    kinds = Counter(e["meta-type"] for e in reply)
    assert kinds == {"command": 156, "event": 37, "builtin": 6, "enum": 68, "array": 61,
                     "object": 340, "alternate": 4}
    assert [e["name"] for e in reply if e["meta-type"] == "builtin"] == [
        "str", "any", "int", "bool", "number", "null"]
    by_name = {e["name"]: e for e in reply}
    assert serialise(by_name["POWERDOWN"]) == \
        '{"name": "POWERDOWN", "meta-type": "event", "arg-type": "17"}'
    assert serialise(by_name["query-cpus"]) == (
        '{"name": "query-cpus", "ret-type": "[125]", "meta-type": "command", '
        '"arg-type": "17"}')
    assert serialise(by_name["83"]) == (
        '{"name": "83", "members": [{"name": "command-line", "type": "str"}, '
        '{"name": "cpu-index", "default": null, "type": "int"}], "meta-type": "object"}')
    assert serialise(by_name["238"]) == (
        '{"name": "238", "tag": "type", "variants": [{"case": "key", "type": "327"}, '
        '{"case": "btn", "type": "328"}, {"case": "rel", "type": "329"}, '
        '{"case": "abs", "type": "329"}], "members": [{"name": "type", "type": "326"}], '
        '"meta-type": "object"}')
    assert serialise(by_name["239"]) == \
        '{"name": "239", "members": [{"type": "str"}, {"type": "null"}], "meta-type": "alternate"}'
    assert serialise(by_name["[int]"]) == \
        '{"name": "[int]", "element-type": "int", "meta-type": "array"}'


# --------------------------------------------------------------------------------------
# 2.11.50 against the recording, name-independently


def canonical_forms(reply: list[dict[str, Any]]) -> dict[str, Any]:
    """For every entry, a form that does not depend on the masked type numbers.

    Each command, event and type is the root of a graph whose edges (member types,
    variant types, element types, argument and return types) are ordered. A
    depth-first walk from the root numbers the types in the order it meets them;
    the list of their shapes, references replaced by those numbers, is the same for
    two roots exactly when the graphs are the same. Builtins keep their names.
    """
    entries = {e["name"]: e for e in reply}

    def shape(name: str, refs: list[str]) -> Any:
        e = entries[name]
        meta = e["meta-type"]
        ref = refs.append
        if meta == "builtin":
            return ("builtin", e["name"], e["json-type"])
        if meta == "enum":
            return ("enum", tuple(e["values"]))
        if meta == "array":
            ref(e["element-type"])
            return ("array",)
        if meta == "alternate":
            for m in e["members"]:
                ref(m["type"])
            return ("alternate", len(e["members"]))
        if meta == "object":
            members = []
            for m in e["members"]:
                ref(m["type"])
                members.append((m["name"], "default" in m, m.get("default")))
            variants = []
            for v in e.get("variants", ()):
                ref(v["type"])
                variants.append(v["case"])
            return ("object", tuple(members), e.get("tag"), tuple(variants))
        if meta == "command":
            ref(e["arg-type"])
            ref(e["ret-type"])
            return ("command", e["name"])
        assert meta == "event"
        ref(e["arg-type"])
        return ("event", e["name"])

    def canon(root: str) -> Any:
        number: dict[str, int] = {}
        out: list[Any] = []

        def visit(name: str) -> int:
            if name in number:
                return number[name]
            number[name] = len(number)
            slot = len(out)
            out.append(None)
            refs: list[str] = []
            form = shape(name, refs)
            out[slot] = (form, tuple(visit(r) for r in refs))
            return number[name]

        visit(root)
        return tuple(out)

    return {name: canon(name) for name in entries}


def test_2_11_50_differs_from_2_11_0_by_one_command() -> None:
    """The seed's own reply, with masked names resolved to what they denote, is
    the recorded 2.11.0 reply minus `x-debug-block-dirty-bitmap-sha256` and the one
    type only it used (its return type, an object with one member `sha256`)
    (qapi-introspection.md §1: "the result will differ from the 2.11.0 ground
    truth exactly where the schemas differ")."""
    ours = load_schema("2.11.50", cache_dir=False).introspection()
    theirs = recorded_reply()
    our_forms = canonical_forms(ours)
    their_forms = canonical_forms(theirs)

    def named(forms: dict[str, Any], reply: list[dict[str, Any]]) -> dict[str, Any]:
        return {e["name"]: forms[e["name"]] for e in reply
                if e["meta-type"] in ("command", "event")}

    our_named, their_named = named(our_forms, ours), named(their_forms, theirs)
    differing = sorted(n for n in our_named.keys() & their_named.keys()
                       if our_named[n] != their_named[n])
    assert differing == []
    assert sorted(their_named.keys() - our_named.keys()) == [MISSING_IN_2_11_50]
    assert sorted(our_named.keys() - their_named.keys()) == []

    def types(forms: dict[str, Any], reply: list[dict[str, Any]]) -> Counter[Any]:
        return Counter(forms[e["name"]] for e in reply
                       if e["meta-type"] not in ("command", "event"))

    extra_in_recording = types(their_forms, theirs) - types(our_forms, ours)
    extra_in_ours = types(our_forms, ours) - types(their_forms, theirs)
    assert extra_in_ours == Counter()
    assert list(extra_in_recording.elements()) == [
        ((("object", (("sha256", False, None),), None, ()), (1,)),
         (("builtin", "str", "string"), ())),
    ]
    assert len(theirs) - len(ours) == 2


@pytest.mark.parametrize("persona", ["2.11.50", "2.11.0"])
def test_type_numbers_are_dense_and_defined(persona: str) -> None:
    """Masked names are "0", "1", ... without gaps, and every name a reply uses is
    defined in it (qapi-introspection.md §3)."""
    reply = load_schema(persona, cache_dir=False).introspection()
    names = {e["name"] for e in reply}
    numbers = [int(e["name"]) for e in reply if e["name"].isdigit()]
    assert sorted(numbers) == list(range(len(numbers)))
    for e in reply:
        for key in ("arg-type", "ret-type", "element-type"):
            if key in e:
                assert e[key] in names
        for m in [*e.get("members", ()), *e.get("variants", ())]:
            assert m["type"] in names


def test_introspection_is_computed_once() -> None:
    """A schema value computes its reply once and hands out the same list."""
    schema = load_schema("2.11.50", cache_dir=False)
    assert schema.introspection() is schema.introspection()
