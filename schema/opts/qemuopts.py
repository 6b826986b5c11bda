"""QemuOpts: QEMU's `key=value,...` option groups, as util/qemu-option.c parses them.

Part of `schema.opts` (QEMU's option syntax), over `schema.opts.cutils`. The command
line (`vmm.cmdline`) parses every option group with `OptsStore`; its frozen `QemuOpts`
values are what it hands to the subsystems that build chardevs, drives, devices and
netdevs. The block layer picks a driver's options out of a flat QDict with `absorb`
(qemu_opts_absorb_qdict), so `-drive` strings and `blockdev-add` typed values are
checked with the same messages.

The rules reproduced here (qemu_opts_parse / opts_do_parse / opt_set /
qemu_opts_create in QEMU 2.11):

* `key=value` pairs separated by `,`; in a value `,,` stands for one comma.
  Keys are cut to 127 bytes and values to 1023 bytes (QEMU's buffers).
* An element without `=` is a flag: `key` means `key=on`, `nokey` means
  `key=off` (any key starting with "no" — `nowait` sets `wait`,
  `nodelay` sets `delay`).
* If the option permits it, the first element without `=` is the value of
  the group's implied key (`-machine pc` is `type=pc`).
* `id=` is looked for textually (`id=` at the start or `,id=` anywhere)
  before parsing, checked with `id_wellformed`, and never stored as a pair.
* Groups that merge (`-machine`, `-m`, `-smp`, `-boot`, `-name`, ...) add to
  one instance; other groups reject a second instance with the same id.
* Groups with a declared parameter list reject other keys and check the
  declared types (bool, number, size); groups with an empty list accept
  anything (`-device`, `-drive`, `-netdev`, `-object`, ...).
* Typed values: bool is `on`/`off` only, number is qemu_strtou64 (base 0, `-1`
  wraps), size is qemu_strtosz (suffixes k/M/G/T/P/E, powers of 1024) [parse_option_bool,
  parse_option_number, parse_option_size].
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from schema.errors import QERR_INVALID_PARAMETER, QERR_INVALID_PARAMETER_VALUE, GenericError
from schema.opts.cutils import (
    Errno,
    byte_truncate,
    c_isalnum,
    c_isalpha,
    qemu_strtosz,
    qemu_strtou64,
    strtoll,
)
from schema.qobject import format_qnum_double, qdict_order

#: The command-line words an option came from (QEMU's Location), for messages.
Location = tuple[str, ...]


class OptType(enum.Enum):
    """QemuOptType, named as `query-command-line-options` names them."""

    STRING = "string"
    BOOL = "boolean"
    NUMBER = "number"
    SIZE = "size"


def _opt_type(value: OptType | str) -> OptType:
    """An OptType, also from the short names the block layer's tables use."""
    if isinstance(value, OptType):
        return value
    return OptType("boolean" if value == "bool" else value)


@attrs.frozen
class OptParam:
    """A QemuOptDesc: a parameter's name and type (`OptType`, or its value, or "bool")."""

    name: str
    type: OptType = attrs.field(default=OptType.STRING, converter=_opt_type)
    help: str = ""


@attrs.frozen
class OptsList:
    """A QemuOptsList: one option group's name, syntax and parameters."""

    name: str
    params: tuple[OptParam, ...] = ()
    implied: str | None = None
    merge: bool = False
    #: Not a QEMU 2.11 group (accepted for management tools' sake).
    extension: bool = False

    @property
    def accepts_any(self) -> bool:
        return not self.params

    def param(self, name: str) -> OptParam | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


class OptsError(GenericError):
    """An `Error *` from util/qemu-option.c: `message` (and `desc`), plus the hint QEMU
    appends on the command line (never sent over QMP)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


ID_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
SIZE_HINT = (
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
    "and exabytes, respectively.\n"
)


def id_wellformed(ident: str) -> bool:
    """util/id.c id_wellformed: a letter, then letters, digits, '-', '.', '_'."""
    if not ident or not c_isalpha(ident[0]):
        return False
    return all(c_isalnum(ch) or ch in "-._" for ch in ident[1:])


def is_help_option(value: str) -> bool:
    return value in ("help", "?")


def parse_bool(name: str, value: str) -> bool:
    """parse_option_bool: `on` or `off`."""
    if value == "on":
        return True
    if value == "off":
        return False
    raise OptsError(QERR_INVALID_PARAMETER_VALUE % (name, "'on' or 'off'"))


def parse_number(name: str, value: str) -> int:
    """parse_option_number: qemu_strtou64 base 0 on the whole value."""
    err, number, _ = qemu_strtou64(value)
    if err is Errno.ERANGE:
        raise OptsError(f"Value '{value}' is too large for parameter '{name}'")
    if err is not Errno.OK:
        raise OptsError(QERR_INVALID_PARAMETER_VALUE % (name, "a number"))
    return number


def parse_size(name: str, value: str) -> int:
    """parse_option_size: qemu_strtosz, suffixes k/M/G/T/P/E (powers of 1024)."""
    err, size = qemu_strtosz(value)
    if err is Errno.ERANGE:
        raise OptsError(f"Value '{value}' is out of range for parameter '{name}'")
    if err is not Errno.OK:
        raise OptsError(QERR_INVALID_PARAMETER_VALUE % (name, "a non-negative number below 2^64"),
                        SIZE_HINT)
    return size


def parse_value(param: OptParam, value: str) -> str | bool | int:
    """qemu_opt_parse: the typed value of one option, or QEMU's error."""
    if param.type is OptType.BOOL:
        return parse_bool(param.name, value)
    if param.type is OptType.NUMBER:
        return parse_number(param.name, value)
    if param.type is OptType.SIZE:
        return parse_size(param.name, value)
    return value


def get_opt_name(params: str, pos: int, delim: str) -> tuple[str, int]:
    """get_opt_name with QEMU's 128-byte buffer."""
    end = params.find(delim, pos)
    if end < 0:
        end = len(params)
    return byte_truncate(params[pos:end], 127), end


def get_opt_value(params: str, pos: int) -> tuple[str, int]:
    """get_opt_value with QEMU's 1024-byte buffer: stops at a single ','."""
    out: list[str] = []
    n = len(params)
    while pos < n:
        if params[pos] == ",":
            if pos + 1 >= n or params[pos + 1] != ",":
                break
            pos += 1
        out.append(params[pos])
        pos += 1
    return byte_truncate("".join(out), 1023), pos


@attrs.frozen
class QemuOpts:
    """One parsed instance of an option group, pairs in the order given.

    Values stay strings; a key may repeat and the last one counts
    (`qemu_opt_get` searches from the end). `location` is the command-line
    words that created the instance, for the subsystem's error messages.
    """

    group: str
    id: str | None = None
    items: tuple[tuple[str, str], ...] = ()
    location: Location = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        for name, value in reversed(self.items):
            if name == key:
                return value
        return default

    def get_all(self, key: str) -> tuple[str, ...]:
        return tuple(value for name, value in self.items if name == key)

    def has(self, key: str) -> bool:
        return any(name == key for name, _ in self.items)

    def keys(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for name, _ in self.items:
            seen.setdefault(name, None)
        return tuple(seen)

    def as_dict(self) -> dict[str, str]:
        """Last value of each key, keys in order of first appearance."""
        return {key: value for key in self.keys() if (value := self.get(key)) is not None}

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.get(key)
        return default if value is None else parse_bool(key, value)

    def get_number(self, key: str, default: int) -> int:
        value = self.get(key)
        return default if value is None else parse_number(key, value)

    def get_size(self, key: str, default: int) -> int:
        value = self.get(key)
        return default if value is None else parse_size(key, value)

    @property
    def location_text(self) -> str:
        return " ".join(self.location)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)


class MutableOpts:
    """A QemuOpts under construction (the parser's private state)."""

    __slots__ = ("id", "items", "list", "location")

    def __init__(self, lst: OptsList, ident: str | None, location: Location) -> None:
        self.list = lst
        self.id = ident
        self.items: list[tuple[str, str]] = []
        self.location = location

    def get(self, key: str) -> str | None:
        for name, value in reversed(self.items):
            if name == key:
                return value
        return None

    def freeze(self) -> QemuOpts:
        return QemuOpts(self.list.name, self.id, tuple(self.items), self.location)


class OptsStore:
    """All option groups' instances, as QEMU's `vm_config_groups` holds them."""

    def __init__(self, lists: Mapping[str, OptsList]) -> None:
        self.lists = dict(lists)
        self.instances: dict[str, list[MutableOpts]] = {name: [] for name in lists}

    def find_list(self, name: str) -> OptsList | None:
        return self.lists.get(name)

    def find(self, group: str, ident: str | None) -> MutableOpts | None:
        """qemu_opts_find: the first instance whose id equals `ident`."""
        for opts in self.instances[group]:
            if opts.id == ident:
                return opts
        return None

    def create(
        self, lst: OptsList, ident: str | None, fail_if_exists: bool, location: Location
    ) -> MutableOpts:
        """qemu_opts_create."""
        if ident is not None:
            if not id_wellformed(ident):
                raise OptsError("Parameter 'id' expects an identifier", ID_HINT)
            found = self.find(lst.name, ident)
            if found is not None:
                if fail_if_exists and not lst.merge:
                    raise OptsError(f"Duplicate ID '{ident}' for {lst.name}")
                return found
        elif lst.merge:
            found = self.find(lst.name, None)
            if found is not None:
                return found
        opts = MutableOpts(lst, ident, location)
        self.instances[lst.name].append(opts)
        return opts

    def delete(self, opts: MutableOpts) -> None:
        self.instances[opts.list.name].remove(opts)

    def opt_set(self, opts: MutableOpts, name: str, value: str, prepend: bool = False) -> None:
        """opt_set: reject undeclared keys, check the declared type, store."""
        param = opts.list.param(name)
        if param is None and not opts.list.accepts_any:
            raise OptsError(QERR_INVALID_PARAMETER % name)
        if param is not None:
            parse_value(param, value)
        if prepend:
            opts.items.insert(0, (name, value))
        else:
            opts.items.append((name, value))

    def opt_set_typed(self, opts: MutableOpts, name: str, value: str) -> None:
        """qemu_opt_set_bool / qemu_opt_set_number: no type check, key check only."""
        if opts.list.param(name) is None and not opts.list.accepts_any:
            raise OptsError(QERR_INVALID_PARAMETER % name)
        opts.items.append((name, value))

    def do_parse(
        self, opts: MutableOpts, params: str, firstname: str | None, prepend: bool = False
    ) -> None:
        """opts_do_parse."""
        p = 0
        n = len(params)
        while p < n:
            pe = params.find("=", p)
            pc = params.find(",", p)
            if pe < 0 or (0 <= pc < pe):
                if p == 0 and firstname is not None:
                    option = firstname
                    value, p = get_opt_value(params, p)
                else:
                    option, p = get_opt_name(params, p, ",")
                    if option.startswith("no"):
                        option, value = option[2:], "off"
                    else:
                        value = "on"
            else:
                option, p = get_opt_name(params, p, "=")
                p += 1
                value, p = get_opt_value(params, p)
            if option != "id":
                self.opt_set(opts, option, value, prepend)
            if p >= n or params[p] != ",":
                break
            p += 1

    def parse(
        self,
        lst: OptsList,
        params: str,
        permit_abbrev: bool,
        location: Location,
        defaults: bool = False,
    ) -> MutableOpts:
        """opts_parse (qemu_opts_parse / qemu_opts_set_defaults)."""
        firstname = lst.implied if permit_abbrev else None
        ident: str | None = None
        if params.startswith("id="):
            ident, _ = get_opt_value(params, 3)
        else:
            at = params.find(",id=")
            if at >= 0:
                ident, _ = get_opt_value(params, at + 4)
        opts = self.create(lst, ident, not defaults, location)
        try:
            self.do_parse(opts, params, firstname, defaults)
        except OptsError:
            self.delete(opts)
            raise
        return opts

    def set(self, lst: OptsList, name: str, value: str, location: Location) -> MutableOpts:
        """qemu_opts_set: into the id-less instance (created if needed)."""
        opts = self.create(lst, None, True, location)
        self.opt_set(opts, name, value)
        return opts

    def frozen(self, group: str) -> tuple[QemuOpts, ...]:
        return tuple(opts.freeze() for opts in self.instances[group])


# --- QDicts into QemuOpts [qemu_opts_absorb_qdict, qemu_opts_from_qdict_1] -------------


def qobject_as_opt_string(value: Any) -> str | None:
    """qemu_opts_from_qdict_1's reading of one QDict value: a QString as is, a QNum
    printed (qnum_to_string), a QBool as on/off; None for what it does not copy (null,
    nested objects and lists)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_qnum_double(value)
    return None


@attrs.define
class AbsorbedOpts:
    """The QemuOpts `absorb` filled: typed values, and the strings they were parsed from."""

    values: dict[str, Any] = attrs.Factory(dict)
    raw: dict[str, str] = attrs.Factory(dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values


def absorb(params: Iterable[OptParam], options: dict[str, Any]) -> AbsorbedOpts:
    """qemu_opts_absorb_qdict: take every option `params` declares out of the flat QDict
    `options`, walking it in QDict order, and parse it by its type; the first bad value
    raises (and stays in `options`, as do the ones not reached). A value of a type
    qemu_opts_from_qdict_1 does not copy is dropped silently, and so is `id`."""
    by_name = {p.name: p for p in params}
    opts = AbsorbedOpts()
    for key in qdict_order(list(options)):
        param = by_name.get(key)
        if param is None:
            continue
        text = qobject_as_opt_string(options[key]) if key != "id" else None
        if text is not None:
            opts.values[key] = parse_value(param, text)
            opts.raw[key] = text
        del options[key]
    return opts


# --- OptsVisitor scalars [qapi/opts-visitor.c] ------------------------------------------


def opts_visitor_int64(name: str, value: str) -> int:
    """opts_type_int64 outside a list: strtoll base 0 over the whole value, no overflow."""
    number, end, overflow = strtoll(value, 0)
    if overflow or end == 0 or end != len(value):
        raise OptsError(QERR_INVALID_PARAMETER_VALUE % (name, "an int64 value"))
    return number
