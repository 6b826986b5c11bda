"""User-creatable QOM objects: object-add and object-del, and what other subsystems
look up among them (a secret for a LUKS image, an iothread for a device, a memory
backend for a DIMM, a throttle group).

Pure model of the `devices` layer [qom/object_interfaces.c user_creatable_add_type,
user_creatable_complete, user_creatable_del; backends/hostmem.c, hostmem-ram.c,
hostmem-file.c; iothread.c; crypto/secret.c; backends/rng-random.c, rng-egd.c;
block/throttle-groups.c; crypto/tlscredsanon.c, tlscredsx509.c; net/filter*.c;
net/colo-compare.c; backends/cryptodev-builtin.c; ui/input-linux.c]. An object is
a `devices.qom.QomObject` under `/objects` (the container appears on first use, as
container_get makes it), with the properties of its type; its values are checked as
the QOM setters check them and its `complete` runs the type's checks. Other
subsystems mark an object busy (`ObjectStore.use`) so that object-del refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from devices.qom import QomObject
from schema.errors import QERR_INVALID_PARAMETER_TYPE, GenericError

# (property, QOM type, default); the visitor type follows from the QOM type
_HOSTMEM: tuple[tuple[str, str, Any], ...] = (("size", "int", 0), ("merge", "bool", True), ("dump", "bool", True),
            ("prealloc", "bool", False), ("host-nodes", "int", []),
            ("policy", "HostMemPolicy", "default"))
_NETFILTER: tuple[tuple[str, str, Any], ...] = (("netdev", "str", ""), ("queue", "NetFilterDirection", "all"),
              ("status", "str", "on"))
_TLS: tuple[tuple[str, str, Any], ...] = (("dir", "string", ""), ("endpoint", "QCryptoTLSCredsEndpoint", "client"),
        ("verify-peer", "bool", True), ("loaded", "bool", False))
OBJECT_TYPES: dict[str, tuple[tuple[str, str, Any], ...]] = {
    "memory-backend-ram": _HOSTMEM,
    "memory-backend-file": (*_HOSTMEM, ("share", "bool", False),
                            ("discard-data", "bool", False), ("mem-path", "string", "")),
    "iothread": (("poll-max-ns", "int", 32768), ("poll-grow", "int", 0),
                 ("poll-shrink", "int", 0)),
    "secret": (("loaded", "bool", False), ("format", "QCryptoSecretFormat", "raw"),
               ("data", "string", ""), ("file", "string", ""), ("keyid", "string", ""),
               ("iv", "string", "")),
    "rng-random": (("opened", "bool", False), ("filename", "string", "/dev/random")),
    "rng-egd": (("opened", "bool", False), ("chardev", "string", "")),
    "throttle-group": tuple((n, "int", 0) for n in (
        "x-iops-total", "x-iops-read", "x-iops-write", "x-bps-total", "x-bps-read",
        "x-bps-write", "x-iops-total-max", "x-iops-read-max", "x-iops-write-max",
        "x-bps-total-max", "x-bps-read-max", "x-bps-write-max", "x-iops-size")) +
    tuple((n, "int", 1) for n in (
        "x-iops-total-max-length", "x-iops-read-max-length", "x-iops-write-max-length",
        "x-bps-total-max-length", "x-bps-read-max-length", "x-bps-write-max-length")) +
    (("limits", "ThrottleLimits", None),),
    "tls-creds-anon": _TLS,
    "tls-creds-x509": (*_TLS, ("sanity-check", "bool", True), ("passwordid", "str", "")),
    "filter-buffer": (*_NETFILTER, ("interval", "uint32", 0)),
    "filter-dump": (*_NETFILTER, ("file", "str", ""), ("maxlen", "uint32", 65536)),
    "filter-mirror": (*_NETFILTER, ("outdev", "str", ""), ("vnet_hdr_support", "bool",
                                                            False)),
    "filter-redirector": (*_NETFILTER, ("indev", "str", ""), ("outdev", "str", ""),
                          ("vnet_hdr_support", "bool", False)),
    "filter-rewriter": (*_NETFILTER, ("vnet_hdr_support", "bool", False)),
    "colo-compare": (("primary_in", "str", ""), ("secondary_in", "str", ""),
                     ("outdev", "str", ""), ("vnet_hdr_support", "bool", False)),
    "cryptodev-backend-builtin": (("queues", "uint32", 1),),
    "input-linux": (("evdev", "str", ""), ("grab_all", "bool", False),
                    ("repeat", "bool", False), ("grab-toggle", "GrabToggleKeys",
                                                "ctrl-ctrl")),
}
ENUMS = {"HostMemPolicy": ("default", "preferred", "bind", "interleave"),
         "NetFilterDirection": ("all", "rx", "tx"),
         "QCryptoSecretFormat": ("raw", "base64"),
         "QCryptoTLSCredsEndpoint": ("client", "server"),
         "GrabToggleKeys": ("ctrl-ctrl", "alt-alt", "meta-meta", "scrolllock",
                            "ctrl-scrolllock")}
_INT_LIMITS = {"uint32": (0, 0xFFFFFFFF), "int": (-(1 << 63), (1 << 63) - 1)}


def _check_value(name: str, type_: str, value: Any) -> Any:
    """The QObject input visitor's checks of a property's JSON value."""
    if type_ == "bool":
        if not isinstance(value, bool):
            raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "boolean"))
        return value
    if type_ in _INT_LIMITS:
        if name == "host-nodes":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "integer"))
        lo, hi = _INT_LIMITS[type_]
        if not lo <= value <= hi:
            raise GenericError(f"Parameter '{name}' expects {type_}_t")
        return value
    if type_ in ENUMS:
        if not isinstance(value, str):
            raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "string"))
        if value not in ENUMS[type_]:
            raise GenericError(f"Invalid parameter '{value}'")
        return value
    if type_ in ("str", "string"):
        if not isinstance(value, str):
            raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "string"))
        return value
    return value


def _complete(typename: str, values: dict[str, Any], given: set[str]) -> None:
    """user_creatable_complete: the type's own checks."""
    if typename.startswith("memory-backend-"):
        if "size" in given and values["size"] == 0:
            raise GenericError(f"Property '{typename}.size' doesn't take value '0'")
        if not values["size"]:
            raise GenericError("can't create backend with size 0")
        if typename == "memory-backend-file" and not values["mem-path"]:
            raise GenericError("mem-path property not set")
    elif typename == "secret":
        if "data" in given and "file" in given:
            raise GenericError("'file' and 'data' are mutually exclusive")
        if "data" not in given and "file" not in given:
            raise GenericError("Either 'file' or 'data' must be provided")
        values["loaded"] = True
    elif typename == "iothread":
        for name in ("poll-max-ns", "poll-grow", "poll-shrink"):
            if values[name] < 0:
                raise GenericError(f"{name} value must be in range [0, {(1 << 63) - 1}]")
    elif typename == "rng-egd":
        if not values["chardev"]:
            raise GenericError("Parameter 'chardev' expects a valid character device")
        values["opened"] = True
    elif typename == "rng-random":
        values["opened"] = True
    elif typename.startswith("filter-") or typename == "colo-compare":
        if typename != "colo-compare" and not values["netdev"]:
            raise GenericError("Parameter 'netdev' expects a network backend id")
        if typename == "filter-buffer" and not values["interval"]:
            raise GenericError("Parameter 'interval' expects a non-zero interval")


@attrs.define(eq=False)
class UserObject:
    """One object of /objects: its type, id, property values and QOM node."""

    typename: str
    id: str
    values: dict[str, Any]
    node: QomObject


@attrs.define(eq=False)
class ObjectStore:
    """The user-creatable objects of one machine. `root` gives the QOM root; the
    /objects container is made on first use."""

    root: Callable[[], QomObject]
    catalog: Any
    objects: dict[str, UserObject] = attrs.field(factory=dict)
    users: dict[str, set[str]] = attrs.field(factory=dict)  # id -> who uses it

    def container(self) -> QomObject:
        root = self.root()
        objs = root.child("objects")
        if objs is None:
            objs = root.add_child("objects", QomObject("container"))
        return objs

    def add(self, typename: str, ident: str, props: dict[str, Any] | None) -> UserObject:
        """user_creatable_add_type."""
        info = self.catalog.qom_type_index().get(typename)
        if info is None:
            raise GenericError(f"invalid object type: {typename}")
        if typename not in OBJECT_TYPES and not _user_creatable(self.catalog, typename):
            raise GenericError(f"object type '{typename}' isn't supported by object-add")
        if info.get("abstract"):
            raise GenericError(f"object type '{typename}' is abstract")
        table = {name: (type_, default) for name, type_, default in
                 OBJECT_TYPES.get(typename, ())}
        values = {name: default for name, (_type, default) in table.items()}
        given: set[str] = set()
        for name, value in (props or {}).items():
            if name not in table:
                raise GenericError(f"Property '.{name}' not found")
            values[name] = _check_value(name, table[name][0], value)
            given.add(name)
        node = QomObject(typename)
        for name, (type_, _default) in table.items():
            node.add_property(name, type_, get=_getter(values, name))
        self.container().add_child(ident, node)
        try:
            _complete(typename, values, given)
        except GenericError:
            node.unparent()
            raise
        obj = UserObject(typename=typename, id=ident, values=values, node=node)
        self.objects[ident] = obj
        return obj

    def delete(self, ident: str) -> None:
        """user_creatable_del."""
        if ident not in self.objects:
            raise GenericError(f"object '{ident}' not found")
        if self.users.get(ident):
            raise GenericError(f"object '{ident}' is in use, can not be deleted")
        self.objects.pop(ident).node.unparent()

    def get(self, ident: str, typename: str | None = None) -> UserObject | None:
        """The object `ident` (of type `typename` or one of its subtypes)."""
        obj = self.objects.get(ident)
        if obj is None or typename is None:
            return obj
        parents = self.catalog.qom_type_index()
        cur: str | None = obj.typename
        while cur is not None:
            if cur == typename:
                return obj
            cur = parents.get(cur, {}).get("parent")
        return None

    def use(self, ident: str, user: str) -> None:
        """Another subsystem uses the object (object-del then refuses it)."""
        self.users.setdefault(ident, set()).add(user)

    def release(self, ident: str, user: str) -> None:
        self.users.get(ident, set()).discard(user)


def _getter(values: dict[str, Any], name: str) -> Callable[[], Any]:
    return lambda: values[name]


# the abstract bases that implement TYPE_USER_CREATABLE
_CREATABLE_BASES = ("memory-backend", "rng-backend", "netfilter", "tls-creds",
                    "cryptodev-backend")


def _user_creatable(catalog: Any, typename: str) -> bool:
    """TYPE_USER_CREATABLE is implemented by the types of OBJECT_TYPES, their
    abstract bases, and their subtypes."""
    if typename in _CREATABLE_BASES:
        return True
    parents = catalog.qom_type_index()
    cur = parents.get(typename, {}).get("parent")
    while cur is not None:
        if cur in OBJECT_TYPES:
            return True
        cur = parents.get(cur, {}).get("parent")
    return False


def parse_opts_value(name: str, type_: str, text: str) -> Any:
    """The opts visitor's reading of a -object/object_add value given as text."""
    if type_ == "bool":
        from devices.props import parse_prop

        return parse_prop("", name, "bool", text)
    if type_ in _INT_LIMITS and name != "host-nodes":
        from schema.opts.cutils import Errno, qemu_strtoi64, qemu_strtosz

        if name == "size":
            err, size = qemu_strtosz(text)
            if err is not Errno.OK:
                raise GenericError(f"Parameter '{name}' expects a size value")
            return size
        err, value, _ = qemu_strtoi64(text)
        if err is not Errno.OK or not text:
            raise GenericError(f"Parameter '{name}' expects a number")
        return value
    return text


def props_from_opts(typename: str, items: list[tuple[str, str]]) -> dict[str, Any]:
    """user_creatable_add_opts: the options of -object (or HMP object_add) as
    property values of the type; unknown names stay text (object-add refuses them)."""
    table = {name: type_ for name, type_, _ in OBJECT_TYPES.get(typename, ())}
    return {name: parse_opts_value(name, table[name], text) if name in table else text
            for name, text in items}
