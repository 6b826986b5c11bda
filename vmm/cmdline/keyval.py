"""`-blockdev`'s argument: dotted keyval syntax or a JSON object.

Layer: vmm, pure (no I/O, no trio). Used by `vmm.cmdline` for `-blockdev`;
the nested value it returns is what the block layer's QAPI visitor reads.

QEMU 2.11 (qobject_input_visitor_new_str) treats an argument starting with
`{` as JSON (qobject/json-lexer.c, json-streamer.c, json-parser.c) and
anything else as keyval (util/keyval.c) with the implied key `driver`.
Keyval leaves are strings (the keyval visitor converts them by type later);
JSON leaves are typed. Both parsers are reproduced with their messages:

* keyval: `Invalid parameter 'a..b'`, `Expected '=' after parameter 'x'`,
  `Parameters 'a.*' used inconsistently`, `Parameter 'a.0' missing`,
  `Parameter 'x' is too long`; numeric fragments build lists.
* JSON: QEMU's JSON dialect (single-quoted strings allowed), fed through
  its streamer, which hands the parser one top-level value at a time; the
  *last* value wins, the *first* error sticks, and an error is reported
  only if the last value is missing (`JSON parse error, <why>`, or just
  `JSON parse error` when the lexer rejected a token or the input ended
  inside a value). A last value that is not an object makes QEMU abort.

QEMU's QDict iterates in hash order, so when a keyval argument has two
independent listing errors QEMU may report the other one first; here the
first in argument order is reported.
"""

from __future__ import annotations

from typing import TypeAlias

from schema.jsontypes import JSONValue
from vmm.cmdline.cutils import UINT64_MAX, byte_len, strtod, strtoll, strtoull, to_bytes

KeyvalValue: TypeAlias = "str | KeyvalDict | KeyvalList"
KeyvalDict: TypeAlias = "dict[str, KeyvalValue]"
KeyvalList: TypeAlias = "list[KeyvalValue]"

INT_MAX = (1 << 31) - 1


class KeyvalError(Exception):
    """A keyval or JSON syntax error; `message` is QEMU's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JSONAbort(Exception):
    """QEMU would fail an assertion and abort; `message` is glibc's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------
# keyval (util/keyval.c)


def _is_alpha(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_alnum(ch: str) -> bool:
    return _is_alpha(ch) or ("0" <= ch <= "9")


def _parse_qapi_name(text: str, pos: int) -> int:
    """qapi/qapi-util.c parse_qapi_name (complete=false): length or -1."""
    p = pos
    n = len(text)
    if p < n and text[p] == "_":
        p += 1
        if p >= n or text[p] != "_":
            return -1
        p += 1
        while p < n and (_is_alnum(text[p]) or text[p] in "-."):
            p += 1
        if p >= n or text[p] != "_":
            return -1
        p += 1
    if p >= n or not _is_alpha(text[p]):
        return -1
    p += 1
    while p < n and (_is_alnum(text[p]) or text[p] in "-_"):
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


def _listify(cur: KeyvalDict, key_of_cur: list[str]) -> KeyvalValue:
    """keyval_listify: dicts whose keys are all indexes become lists."""
    has_index = has_member = False
    for k, v in list(cur.items()):
        if _key_to_index(k, whole=True)[0] >= 0:
            has_index = True
        else:
            has_member = True
        if isinstance(v, dict):
            val = _listify(v, [*key_of_cur, k])
            if val is not v:
                cur[k] = val
    prefix = "".join(f"{k}." for k in key_of_cur)
    if has_index and has_member:
        raise KeyvalError(f"Parameters '{prefix}*' used inconsistently")
    if not has_index:
        return cur
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
    _listify(qdict, [])
    return qdict


# --------------------------------------------------------------------------
# JSON (qobject/json-lexer.c, json-streamer.c, json-parser.c)

# Lexer states; 0 is the error state, as in QEMU's table.
(
    IN_ERROR,
    IN_DQ_UCODE3,
    IN_DQ_UCODE2,
    IN_DQ_UCODE1,
    IN_DQ_UCODE0,
    IN_DQ_STRING_ESCAPE,
    IN_DQ_STRING,
    IN_SQ_UCODE3,
    IN_SQ_UCODE2,
    IN_SQ_UCODE1,
    IN_SQ_UCODE0,
    IN_SQ_STRING_ESCAPE,
    IN_SQ_STRING,
    IN_ZERO,
    IN_DIGITS,
    IN_DIGIT,
    IN_EXP_E,
    IN_MANTISSA,
    IN_MANTISSA_DIGITS,
    IN_NONZERO_NUMBER,
    IN_NEG_NONZERO_NUMBER,
    IN_KEYWORD,
    IN_ESCAPE,
    IN_ESCAPE_L,
    IN_ESCAPE_LL,
    IN_ESCAPE_I,
    IN_ESCAPE_I6,
    IN_ESCAPE_I64,
    IN_WHITESPACE,
    IN_START,
) = range(30)

# Token types (numbered above every state).
(
    JSON_LCURLY,
    JSON_RCURLY,
    JSON_LSQUARE,
    JSON_RSQUARE,
    JSON_COLON,
    JSON_COMMA,
    JSON_INTEGER,
    JSON_FLOAT,
    JSON_KEYWORD,
    JSON_STRING,
    JSON_ESCAPE,
    JSON_SKIP,
    JSON_ERROR,
) = range(100, 113)

_EMITTED = {
    JSON_LCURLY,
    JSON_RCURLY,
    JSON_LSQUARE,
    JSON_RSQUARE,
    JSON_COLON,
    JSON_COMMA,
    JSON_ESCAPE,
    JSON_INTEGER,
    JSON_FLOAT,
    JSON_KEYWORD,
    JSON_STRING,
}


def _build_table() -> dict[int, list[int]]:
    t: dict[int, list[int]] = {state: [IN_ERROR] * 256 for state in range(IN_START + 1)}

    def chars(state: int, spec: str | bytes | range, target: int) -> None:
        codes = (
            spec if isinstance(spec, range) else [c if isinstance(c, int) else ord(c) for c in spec]
        )
        for c in codes:
            t[state][c] = target

    def terminal(state: int, token: int) -> None:
        chars(state, range(0x80), token)

    hexdigits = "0123456789abcdefABCDEF"
    for quote, ucode, escape, string in (
        (
            '"',
            (IN_DQ_UCODE0, IN_DQ_UCODE1, IN_DQ_UCODE2, IN_DQ_UCODE3),
            IN_DQ_STRING_ESCAPE,
            IN_DQ_STRING,
        ),
        (
            "'",
            (IN_SQ_UCODE0, IN_SQ_UCODE1, IN_SQ_UCODE2, IN_SQ_UCODE3),
            IN_SQ_STRING_ESCAPE,
            IN_SQ_STRING,
        ),
    ):
        chars(ucode[3], hexdigits, string)
        chars(ucode[2], hexdigits, ucode[3])
        chars(ucode[1], hexdigits, ucode[2])
        chars(ucode[0], hexdigits, ucode[1])
        chars(escape, "bfnrt/\\'\"", string)
        chars(escape, "u", ucode[0])
        chars(string, range(1, 0xC0), string)
        chars(string, range(0xC2, 0xF5), string)
        chars(string, "\\", escape)
        chars(string, quote, JSON_STRING)

    digits = "0123456789"
    terminal(IN_ZERO, JSON_INTEGER)
    chars(IN_ZERO, digits, IN_ERROR)
    chars(IN_ZERO, ".", IN_MANTISSA)
    terminal(IN_DIGITS, JSON_FLOAT)
    chars(IN_DIGITS, digits, IN_DIGITS)
    chars(IN_DIGIT, digits, IN_DIGITS)
    chars(IN_EXP_E, "-+", IN_DIGIT)
    chars(IN_EXP_E, digits, IN_DIGITS)
    terminal(IN_MANTISSA_DIGITS, JSON_FLOAT)
    chars(IN_MANTISSA_DIGITS, digits, IN_MANTISSA_DIGITS)
    chars(IN_MANTISSA_DIGITS, "eE", IN_EXP_E)
    chars(IN_MANTISSA, digits, IN_MANTISSA_DIGITS)
    terminal(IN_NONZERO_NUMBER, JSON_INTEGER)
    chars(IN_NONZERO_NUMBER, digits, IN_NONZERO_NUMBER)
    chars(IN_NONZERO_NUMBER, "eE", IN_EXP_E)
    chars(IN_NONZERO_NUMBER, ".", IN_MANTISSA)
    chars(IN_NEG_NONZERO_NUMBER, "0", IN_ZERO)
    chars(IN_NEG_NONZERO_NUMBER, "123456789", IN_NONZERO_NUMBER)
    terminal(IN_KEYWORD, JSON_KEYWORD)
    chars(IN_KEYWORD, "abcdefghijklmnopqrstuvwxyz", IN_KEYWORD)
    terminal(IN_WHITESPACE, JSON_SKIP)
    chars(IN_WHITESPACE, " \t\r\n", IN_WHITESPACE)
    chars(IN_ESCAPE_LL, "du", JSON_ESCAPE)
    chars(IN_ESCAPE_L, "du", JSON_ESCAPE)
    chars(IN_ESCAPE_L, "l", IN_ESCAPE_LL)
    chars(IN_ESCAPE_I64, "du", JSON_ESCAPE)
    chars(IN_ESCAPE_I6, "4", IN_ESCAPE_I64)
    chars(IN_ESCAPE_I, "6", IN_ESCAPE_I6)
    chars(IN_ESCAPE, "dipsuf", JSON_ESCAPE)
    chars(IN_ESCAPE, "l", IN_ESCAPE_L)
    chars(IN_ESCAPE, "I", IN_ESCAPE_I)
    start = t[IN_START]
    for ch, target in (
        ('"', IN_DQ_STRING),
        ("'", IN_SQ_STRING),
        ("0", IN_ZERO),
        ("-", IN_NEG_NONZERO_NUMBER),
        ("{", JSON_LCURLY),
        ("}", JSON_RCURLY),
        ("[", JSON_LSQUARE),
        ("]", JSON_RSQUARE),
        (",", JSON_COMMA),
        (":", JSON_COLON),
        ("%", IN_ESCAPE),
    ):
        start[ord(ch)] = target
    chars(IN_START, "123456789", IN_NONZERO_NUMBER)
    chars(IN_START, "abcdefghijklmnopqrstuvwxyz", IN_KEYWORD)
    chars(IN_START, " \t\r\n", IN_WHITESPACE)
    return t


_TABLE = _build_table()

Token = tuple[int, bytes]


def _lex(data: bytes) -> list[Token]:
    """json_lexer_feed + json_lexer_flush: the token stream, errors included."""
    tokens: list[Token] = []
    state = IN_START
    token = bytearray()

    def feed(ch: int, flush: bool) -> None:
        nonlocal state
        while True:
            new = _TABLE[state][ch]
            consumed = _TABLE[state][0] != new
            if consumed:
                token.append(ch)
            if new in _EMITTED:
                tokens.append((new, bytes(token)))
                token.clear()
                new = IN_START
            elif new == JSON_SKIP:
                token.clear()
                new = IN_START
            elif new == IN_ERROR:
                tokens.append((JSON_ERROR, bytes(token)))
                token.clear()
                state = IN_START
                return
            state = new
            if consumed or flush:
                return

    for ch in data:
        feed(ch, False)
    if state != IN_START:
        feed(0, True)
    return tokens


class _Parser:
    """json-parser.c over one token list handed over by the streamer."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.err: str | None = None

    def error(self, message: str) -> None:
        self.err = f"JSON parse error, {message}"

    def _require(self, line: int, func: str) -> None:
        if self.pos >= len(self.tokens):
            raise JSONAbort(
                f"qobject/json-parser.c:{line}: {func}: "
                "Assertion `!g_queue_is_empty(ctxt->buf)' failed."
            )

    def peek(self) -> Token:
        self._require(238, "parser_context_peek_token")
        return self.tokens[self.pos]

    def pop(self) -> Token:
        self._require(231, "parser_context_pop_token")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def value(self) -> tuple[bool, JSONValue]:
        kind = self.peek()[0]
        if kind == JSON_LCURLY:
            return self.object()
        if kind == JSON_LSQUARE:
            return self.array()
        if kind == JSON_ESCAPE:
            # Interpolation (%d, %s, ...) exists only for QEMU's own callers.
            return False, None
        if kind in (JSON_INTEGER, JSON_FLOAT, JSON_STRING):
            return self.literal()
        if kind == JSON_KEYWORD:
            return self.keyword()
        self.error("expecting value")
        return False, None

    def pair(self, out: dict[str, JSONValue]) -> bool:
        ok, key = self.value()
        if not ok or not isinstance(key, str):
            self.error("key is not a string in object")
            return False
        if self.pop()[0] != JSON_COLON:
            self.error("missing : in object pair")
            return False
        ok, value = self.value()
        if not ok:
            self.error("Missing value in dict")
            return False
        out[key] = value
        return True

    def object(self) -> tuple[bool, JSONValue]:
        self.pop()
        out: dict[str, JSONValue] = {}
        if self.peek()[0] == JSON_RCURLY:
            self.pop()
            return True, out
        if not self.pair(out):
            return False, None
        kind = self.pop()[0]
        while kind != JSON_RCURLY:
            if kind != JSON_COMMA:
                self.error("expected separator in dict")
                return False, None
            if not self.pair(out):
                return False, None
            kind = self.pop()[0]
        return True, out

    def array(self) -> tuple[bool, JSONValue]:
        self.pop()
        out: list[JSONValue] = []
        if self.peek()[0] == JSON_RSQUARE:
            self.pop()
            return True, out
        ok, item = self.value()
        if not ok:
            self.error("expecting value")
            return False, None
        out.append(item)
        kind = self.pop()[0]
        while kind != JSON_RSQUARE:
            if kind != JSON_COMMA:
                self.error("expected separator in list")
                return False, None
            ok, item = self.value()
            if not ok:
                self.error("expecting value")
                return False, None
            out.append(item)
            kind = self.pop()[0]
        return True, out

    def keyword(self) -> tuple[bool, JSONValue]:
        text = self.pop()[1].decode("ascii")
        if text == "true":
            return True, True
        if text == "false":
            return True, False
        if text == "null":
            return True, None
        self.error(f"invalid keyword '{text}'")
        return False, None

    def literal(self) -> tuple[bool, JSONValue]:
        kind, raw = self.pop()
        if kind == JSON_STRING:
            return self.string(raw)
        text = raw.decode("ascii")
        if kind == JSON_INTEGER:
            # QNum: int64 if it fits, else uint64, else a double.
            value, _, overflow = strtoll(text, 10)
            if not overflow:
                return True, value
            if not text.startswith("-"):
                uvalue, _, overflow = strtoull(text, 10)
                if not overflow and uvalue <= UINT64_MAX:
                    return True, uvalue
        return True, strtod(text)[0]

    def string(self, raw: bytes) -> tuple[bool, JSONValue]:
        """qstring_from_escaped_str (a \\u0000 escape appends nothing)."""
        quote = raw[0]
        out = bytearray()
        i = 1
        n = len(raw)
        simple = {
            ord('"'): b'"',
            ord("'"): b"'",
            ord("\\"): b"\\",
            ord("/"): b"/",
            ord("b"): b"\b",
            ord("f"): b"\f",
            ord("n"): b"\n",
            ord("r"): b"\r",
            ord("t"): b"\t",
        }
        while i < n and raw[i] != quote:
            if raw[i] == ord("\\"):
                i += 1
                ch = raw[i] if i < n else 0
                if ch in simple:
                    out += simple[ch]
                    i += 1
                elif ch == ord("u"):
                    i += 1
                    code = 0
                    for k in range(4):
                        digit = chr(raw[i]) if i < n else ""
                        if not digit or digit not in "0123456789abcdefABCDEF":
                            self.error("invalid hex escape sequence in string")
                            return False, None
                        code |= int(digit, 16) << ((3 - k) * 4)
                        i += 1
                    out += _wchar_to_utf8(code)
                else:
                    self.error("invalid escape sequence in string")
                    return False, None
            else:
                out.append(raw[i])
                i += 1
        return True, out.decode("utf-8", "surrogateescape")


def _wchar_to_utf8(code: int) -> bytes:
    if code == 0:
        return b""
    if code <= 0x7F:
        return bytes([code])
    if code <= 0x7FF:
        return bytes([0xC0 | (code >> 6) & 0x1F, 0x80 | (code & 0x3F)])
    return bytes([0xE0 | (code >> 12) & 0x0F, 0x80 | (code >> 6) & 0x3F, 0x80 | (code & 0x3F)])


def qobject_from_json(text: str) -> tuple[JSONValue | None, bool, str | None]:
    """qobject_from_json: (last value, whether there was one, first error)."""
    result: JSONValue | None = None
    have_result = False
    first_error: str | None = None
    brace = bracket = 0
    pending: list[Token] = []
    for token in _lex(to_bytes(text)):
        kind = token[0]
        if kind == JSON_LCURLY:
            brace += 1
        elif kind == JSON_RCURLY:
            brace -= 1
        elif kind == JSON_LSQUARE:
            bracket += 1
        elif kind == JSON_RSQUARE:
            bracket -= 1
        pending.append(token)
        if kind == JSON_ERROR:
            batch: list[Token] | None = None
        elif brace < 0 or bracket < 0 or (brace == 0 and bracket == 0):
            batch = pending
        else:
            continue
        brace = bracket = 0
        pending = []
        if batch is None:
            result, have_result = None, False
            continue
        parser = _Parser(batch)
        have_result, result = parser.value()
        if not have_result:
            result = None
        if first_error is None:
            first_error = parser.err
    return result, have_result, first_error


def parse_json_object(text: str) -> dict[str, JSONValue]:
    """The JSON half of qobject_input_visitor_new_str."""
    result, have_result, error = qobject_from_json(text)
    if not have_result:
        raise KeyvalError(error or "JSON parse error")
    if not isinstance(result, dict):
        raise JSONAbort(
            "qapi/qobject-input-visitor.c:733: qobject_input_visitor_new_str: "
            "Assertion `args' failed."
        )
    return result
