"""keyval: QEMU's dotted `key=value,...` syntax, and the option argument that is keyval or
a JSON object.

Part of `schema.opts` (QEMU's option syntax). `keyval_parse` reproduces util/keyval.c:
dotted keys build nested objects, numeric fragments build lists, every leaf is a
string (the argument visitor's keyval mode, `schema.visitor`, converts leaves by
their member's type). Its messages: `Invalid parameter 'a..b'`, `Expected '=' after
parameter 'x'`, `Parameters 'a.*' used inconsistently`, `Parameter 'a.0' missing`,
`Parameter 'x' is too long`.

`parse_json_or_keyval` is the reading half of qobject_input_visitor_new_str
(qapi/qobject-input-visitor.c), which `-blockdev` and `-object` use: an argument
starting with `{` is read as JSON by `schema.qobject.from_json` (QEMU's dialect and
limits; the *last* value wins, the *first* error sticks, an error is reported only
if the last value is missing: `JSON parse error, <why>`, or just `JSON parse error`
when the streamer dropped the input without a message); anything else is keyval with
an implied key. A last JSON value that is not an object makes QEMU abort.

QEMU's QDict iterates in hash order, so when a keyval argument has two independent
listing errors QEMU may report the other one first; here the first in argument order
is reported.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from schema.errors import GenericError
from schema.jsontypes import JSONValue
from schema.opts.cutils import byte_len, c_isalnum, c_isalpha
from schema.qobject import from_json

KeyvalValue: TypeAlias = "str | KeyvalDict | KeyvalList"
KeyvalDict: TypeAlias = "dict[str, KeyvalValue]"
KeyvalList: TypeAlias = "list[KeyvalValue]"

INT_MAX = (1 << 31) - 1


class KeyvalError(GenericError):
    """A keyval or JSON syntax error; `message` (and `desc`) is QEMU's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JSONAbort(Exception):
    """QEMU would fail an assertion and abort; `message` is glibc's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _parse_qapi_name(text: str, pos: int) -> int:
    """qapi/qapi-util.c parse_qapi_name (complete=false): length or -1."""
    p = pos
    n = len(text)
    if p < n and text[p] == "_":
        p += 1
        if p >= n or text[p] != "_":
            return -1
        p += 1
        while p < n and (c_isalnum(text[p]) or text[p] in "-."):
            p += 1
        if p >= n or text[p] != "_":
            return -1
        p += 1
    if p >= n or not c_isalpha(text[p]):
        return -1
    p += 1
    while p < n and (c_isalnum(text[p]) or text[p] in "-_"):
        p += 1
    return p - pos


def _key_to_index(text: str, pos: int = 0, whole: bool = False) -> tuple[int, int]:
    """key_to_index: (index or -1, end). Leading digits only, capped at INT_MAX."""
    if pos >= len(text) or not ("0" <= text[pos] <= "9"):
        return -1, pos
    end = pos
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if whole and end != len(text):
        return -1, end
    value = int(text[pos:end])
    return (value if value <= INT_MAX else INT_MAX), end


def _put(cur: KeyvalDict, key_in_cur: str, value: str | None, errkey: str) -> KeyvalValue:
    """keyval_parse_put."""
    old = cur.get(key_in_cur)
    if old is not None:
        if isinstance(old, str) != (value is not None):
            raise KeyvalError(f"Parameters '{errkey}.*' used inconsistently")
        if value is None:
            return old
        new: KeyvalValue = value
    else:
        new = value if value is not None else {}
    cur[key_in_cur] = new
    return new


def _parse_one(qdict: KeyvalDict, params: str, start: int, implied_key: str | None) -> int:
    """keyval_parse_one: parse one KEY=VALUE at `start`, return the next position."""
    n = len(params)
    length = 0
    while start + length < n and params[start + length] not in "=,":
        length += 1
    implied = (
        bool(implied_key) and length > 0 and (start + length >= n or params[start + length] != "=")
    )
    if implied:
        assert implied_key is not None
        key, kpos, kend = implied_key, 0, len(implied_key)
    else:
        key, kpos, kend = params, start, start + length

    cur = qdict
    frag = kpos
    key_in_cur = ""
    while True:
        index, end = _key_to_index(key, frag) if frag != kpos else (-1, frag)
        if frag != kpos and index >= 0:
            flen = end - frag
        else:
            flen = max(_parse_qapi_name(key[:kend], frag), 0)
        if not flen or (frag + flen < kend and key[frag + flen] != "."):
            raise KeyvalError(f"Invalid parameter '{key[kpos:kend]}'")
        if byte_len(key[frag : frag + flen]) >= 128:
            what = " fragment" if frag != kpos or frag + flen != kend else ""
            raise KeyvalError(f"Parameter{what} '{key[frag : frag + flen]}' is too long")
        if frag != kpos:
            nxt = _put(cur, key_in_cur, None, key[kpos : frag - 1])
            assert isinstance(nxt, dict)
            cur = nxt
        key_in_cur = key[frag : frag + flen]
        frag += flen
        if frag >= kend or key[frag] != ".":
            break
        frag += 1

    if implied:
        s = start
    else:
        if frag >= n or params[frag] != "=":
            raise KeyvalError(f"Expected '=' after parameter '{params[kpos:frag]}'")
        s = frag + 1

    value: list[str] = []
    while s < n:
        if params[s] == ",":
            s += 1
            if s >= n or params[s] != ",":
                break
        value.append(params[s])
        s += 1
    _put(cur, key_in_cur, "".join(value), key[kpos:kend])
    return s


def _listify(root: KeyvalDict) -> None:
    """keyval_listify: every dict whose keys are all indexes becomes a list, innermost
    first. QEMU recurses; this walk keeps its own stack (a key may have as many
    fragments as an argument has bytes)."""
    # Open dicts: (the dict, its (key, value) pairs still to look at, has an index
    # key, has a member key, the key of the child being listified).
    stack: list[list[Any]] = [[root, iter(list(root.items())), False, False, None]]
    while stack:
        frame = stack[-1]
        for k, v in frame[1]:
            if _key_to_index(k, whole=True)[0] >= 0:
                frame[2] = True
            else:
                frame[3] = True
            if isinstance(v, dict):
                frame[4] = k
                stack.append([v, iter(list(v.items())), False, False, None])
                break
        else:
            stack.pop()
            prefix = "".join(f"{f[4]}." for f in stack)
            value = _as_list(frame[0], frame[2], frame[3], prefix)
            if value is not None and stack:  # the root's keys are names, never indexes
                parent = stack[-1]
                parent[0][parent[4]] = value


def _as_list(cur: KeyvalDict, has_index: bool, has_member: bool,
             prefix: str) -> KeyvalList | None:
    """The list a dict of index keys stands for; None if it has none."""
    if has_index and has_member:
        raise KeyvalError(f"Parameters '{prefix}*' used inconsistently")
    if not has_index:
        return None
    nelt = len(cur) + 1
    elt: list[KeyvalValue | None] = [None] * nelt
    max_index = -1
    for k, v in cur.items():
        index = _key_to_index(k, whole=True)[0]
        max_index = max(max_index, index)
        if index >= nelt - 1:
            continue
        elt[index] = v
    out: KeyvalList = []
    for i in range(min(nelt, max_index + 1)):
        item = elt[i]
        if item is None:
            raise KeyvalError(f"Parameter '{prefix}{i}' missing")
        out.append(item)
    return out


def keyval_parse(params: str, implied_key: str | None = None) -> KeyvalDict:
    """util/keyval.c keyval_parse."""
    qdict: KeyvalDict = {}
    s = 0
    while s < len(params):
        s = _parse_one(qdict, params, s, implied_key)
        implied_key = None
    _listify(qdict)
    return qdict


def parse_json_or_keyval(text: str, implied_key: str) -> tuple[dict[str, JSONValue] | KeyvalDict,
                                                                bool]:
    """The object qobject_input_visitor_new_str visits, and whether it came from keyval
    (its leaves are then all strings, for the visitor's keyval mode)."""
    if not text.startswith("{"):
        return keyval_parse(text, implied_key), True
    parsed = from_json(text)
    if not parsed.ok:
        raise KeyvalError(parsed.error or "JSON parse error")
    if not isinstance(parsed.value, dict):
        raise JSONAbort(
            "qapi/qobject-input-visitor.c:733: qobject_input_visitor_new_str: "
            "Assertion `args' failed."
        )
    return parsed.value, False
