"""The QOM object tree of one machine: objects, their properties, child<> and link<>.

Pure model of the `devices` layer [qom/object.c object_property_add,
object_property_add_child, object_property_add_link, object_get_canonical_path,
object_resolve_path_type, object_property_get/set; qom/container.c]. Every object
has a `type` property (read-only string) first; a child<T> property owns its child,
a link<T> property names another object by its canonical path. Path lookup is
QEMU's: absolute paths follow child<> and link<> properties from the root, partial
paths match anywhere below it and may be ambiguous. The values of `qom-get` are
whatever the property's getter returns (JSON-able); errors are QEMU's texts
(`Property '.x' not found`, `Insufficient permission to perform this operation`).
`devices.qdev` puts its devices and buses here; `devices.board` builds a board's
tree; `devices.commands` serves qom-list/qom-get/qom-set from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from schema.errors import GenericError

Getter = Callable[[], Any]
Setter = Callable[[Any], None]

PERMISSION_DENIED = "Insufficient permission to perform this operation"


@attrs.define(eq=False)
class Property:
    """One property of an object: its name, its type's name, getter and setter
    (None: not readable/writable), and for child<>/link<> the object."""

    name: str
    type: str
    get: Getter | None = None
    set: Setter | None = None
    child: QomObject | None = None  # child<>: the owned object
    link: Callable[[], QomObject | None] | None = None  # link<>: the target


@attrs.define(eq=False)
class QomObject:
    """An object of the tree: its type name, its parent and name there, and its
    properties in the order they were added."""

    typename: str
    parent: QomObject | None = None
    name: str = ""
    props: dict[str, Property] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if "type" not in self.props:
            self.props["type"] = Property("type", "string", get=lambda: self.typename)

    # -- building ------------------------------------------------------------------

    def add(self, prop: Property) -> Property:
        """object_property_add: a name is taken once."""
        if prop.name in self.props:
            raise GenericError(f"attempt to add duplicate property '{prop.name}' to object "
                               f"(type '{self.typename}')")
        self.props[prop.name] = prop
        return prop

    def add_property(self, name: str, type_: str, get: Getter | None = None,
                     set: Setter | None = None) -> Property:
        return self.add(Property(name, type_, get=get, set=set))

    def add_value(self, name: str, type_: str, value: Any) -> Property:
        """A read-only property with a fixed value."""
        return self.add(Property(name, type_, get=lambda: value))

    def add_child(self, name: str, child: QomObject) -> QomObject:
        """object_property_add_child (a name ending in `[*]` takes the first free
        index)."""
        if name.endswith("[*]"):
            name = self.free_name(name[:-3])
        self.add(Property(name, f"child<{child.typename}>", child=child,
                          get=lambda: child.path()))
        child.parent = self
        child.name = name
        return child

    def free_name(self, base: str) -> str:
        n = 0
        while f"{base}[{n}]" in self.props:
            n += 1
        return f"{base}[{n}]"

    def add_link(self, name: str, type_: str, target: Callable[[], QomObject | None],
                 set: Setter | None = None) -> Property:
        """object_property_add_link: its value is the target's canonical path, or ""."""

        def get() -> str:
            obj = target()
            return obj.path() if obj is not None else ""

        return self.add(Property(name, f"link<{type_}>", get=get, set=set, link=target))

    def remove(self, name: str) -> None:
        """object_property_del (a child is unparented with it)."""
        prop = self.props.pop(name, None)
        if prop is not None and prop.child is not None:
            prop.child.parent = None

    def unparent(self) -> None:
        """object_unparent: leave the parent's child<> property."""
        if self.parent is not None:
            self.parent.remove(self.name)

    # -- reading -------------------------------------------------------------------

    def children(self) -> Iterator[QomObject]:
        for prop in list(self.props.values()):
            if prop.child is not None:
                yield prop.child

    def child(self, name: str) -> QomObject | None:
        prop = self.props.get(name)
        return prop.child if prop is not None else None

    def root(self) -> QomObject:
        obj = self
        while obj.parent is not None:
            obj = obj.parent
        return obj

    def path(self) -> str:
        """object_get_canonical_path."""
        parts: list[str] = []
        obj: QomObject | None = self
        while obj is not None and obj.parent is not None:
            parts.append(obj.name)
            obj = obj.parent
        return "/" + "/".join(reversed(parts))

    def walk(self) -> Iterator[QomObject]:
        """Every object below (and including) this one, depth first."""
        stack = [self]
        while stack:
            obj = stack.pop()
            yield obj
            stack.extend(reversed(list(obj.children())))

    def get(self, name: str) -> Any:
        """object_property_get."""
        prop = self.props.get(name)
        if prop is None:
            raise GenericError(f"Property '.{name}' not found")
        if prop.get is None:
            raise GenericError(PERMISSION_DENIED)
        return prop.get()

    def set(self, name: str, value: Any) -> None:
        """object_property_set."""
        prop = self.props.get(name)
        if prop is None:
            raise GenericError(f"Property '.{name}' not found")
        if prop.set is None:
            raise GenericError(PERMISSION_DENIED)
        prop.set(value)


def container(name: str = "") -> QomObject:
    """container_get's objects: type `container`, nothing but children."""
    return QomObject("container", name=name)


def _step(obj: QomObject, part: str) -> QomObject | None:
    prop = obj.props.get(part)
    if prop is None:
        return None
    if prop.child is not None:
        return prop.child
    if prop.link is not None:
        return prop.link()
    return None


def resolve_abs(obj: QomObject, parts: list[str]) -> QomObject | None:
    """object_resolve_abs_path: follow child<> and link<> properties."""
    for part in parts:
        nxt = _step(obj, part)
        if nxt is None:
            return None
        obj = nxt
    return obj


def resolve_path(root: QomObject, path: str) -> tuple[QomObject | None, bool]:
    """object_resolve_path: (object, ambiguous). An absolute path from the root, a
    partial one matched from every object of the tree (object_resolve_partial_path:
    two matches are ambiguous even when they are the same object)."""
    parts = [p for p in path.split("/") if p]
    if path.startswith("/"):
        return resolve_abs(root, parts), False
    found: QomObject | None = None
    for obj in root.walk():
        hit = resolve_abs(obj, parts)
        if hit is None:
            continue
        if found is not None:
            return None, True
        found = hit
    return found, False
