"""The QMP commands of the QOM tree and of qdev: qom-list, qom-get, qom-set,
qom-list-types, device-list-properties, device_add, device_del, query-pci,
object-add, object-del.

`devices` layer, synchronous handlers over `devices.qdev`, `devices.qom`,
`devices.pci` and `devices.objects` [qmp.c qmp_qom_list, qmp_qom_get, qmp_qom_set,
qmp_qom_list_types, qmp_device_list_properties, qmp_object_add, qmp_object_del;
qdev-monitor.c qmp_device_add, qmp_device_del; hw/pci/pci.c qmp_query_pci;
util/qemu-option.c qemu_opts_from_qdict]. The guest's answer to a PCI/ACPI unplug
request is the named behaviours `device-unplug` (ack or never) and
`device-unplug-delay` (seconds of guest run time), declared here: the guest acts
only while the VM runs, so the request of a paused VM is answered after `cont`.
"""

from __future__ import annotations

from typing import Any

from devices.qdev import (
    Device,
    Qdev,
    QdevHost,
    UnplugStyle,
    complete_unplug,
    device_add,
    device_del,
    type_info,
)
from devices.qom import QomObject, resolve_path
from schema.errors import DeviceNotFound, GenericError
from schema.handlers import Behaviour, choice, qmp_command, seconds
from schema.opts.qemuopts import id_wellformed

UNPLUG = Behaviour(
    "device-unplug", "what the guest does with a PCI/ACPI unplug request (device_del)",
    choice("ack", "never"), os="ack", firmware="never")
UNPLUG_DELAY = Behaviour(
    "device-unplug-delay",
    "seconds of guest run time from an unplug request to the guest ejecting the device",
    seconds, os=0.2, firmware=0.2)
DEVICE_BEHAVIOURS = (UNPLUG, UNPLUG_DELAY)

# qmp_device_list_properties leaves these out
_HIDDEN = ("type", "realized", "hotpluggable", "hotplugged", "parent_bus")


def device_properties(catalog: Any, typename: str) -> list[dict[str, Any]]:
    """qmp_device_list_properties [qmp.c]: a device type's properties, or QEMU's error;
    `-device DRIVER,help` prints the same list [qdev-monitor.c qdev_device_help]."""
    info = type_info(catalog, typename)
    if info is None:
        raise DeviceNotFound(f"Device '{typename}' not found")
    if not info.is_a("device"):
        raise GenericError("Parameter 'typename' expects device")
    if info.abstract:
        raise GenericError("Parameter 'typename' expects non-abstract device type")
    recorded = catalog.all_device_properties().get(typename, [])
    return [dict(p) for p in recorded if p["name"] not in _HIDDEN and
            not p["name"].startswith("legacy-")]


def opt_text(value: Any) -> str | None:
    """qemu_opts_from_qdict_1: a string as is, a number as text, a bool as on/off;
    other JSON types are ignored (None)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        from schema.qobject.writer import format_qnum_double

        return format_qnum_double(value)
    if isinstance(value, str):
        return value
    return None


class DeviceCommands:
    """The QOM and qdev commands of one machine."""

    def __init__(self, qdev: Qdev, host: QdevHost, behaviours: Any) -> None:
        self.qdev = qdev
        self.host = host
        self.behaviours = behaviours
        self.pending: dict[Device, Any] = {}  # device -> the guest's eject timer

    # -- the tree ------------------------------------------------------------------

    def _object(self, path: str) -> QomObject:
        obj, _ambiguous = resolve_path(self.qdev.root, path)
        if obj is None:
            raise DeviceNotFound(f"Device '{path}' not found")
        return obj

    @qmp_command("qom-list")
    def qom_list(self, path: str) -> list[dict[str, str]]:
        """qmp_qom_list: ambiguous partial paths have their own text here."""
        obj, ambiguous = resolve_path(self.qdev.root, path)
        if obj is None:
            if ambiguous:
                raise GenericError(f"Path '{path}' is ambiguous")
            raise DeviceNotFound(f"Device '{path}' not found")
        return [{"name": p.name, "type": p.type} for p in obj.props.values()]

    @qmp_command("qom-get")
    def qom_get(self, path: str, property: str) -> Any:
        return self._object(path).get(property)

    @qmp_command("qom-set")
    def qom_set(self, path: str, property: str, value: Any) -> None:
        """qmp_qom_set: a qdev property of a realized device refuses in
        qdev_prop_set_after_realize's words."""
        obj = self._object(path)
        prop = obj.props.get(property)
        if prop is None:
            raise GenericError(f"Property '.{property}' not found")
        dev = self.qdev.device_at(obj)
        if dev is not None and prop.set is None and dev.realized:
            info = type_info(self.qdev.catalog, dev.typename)
            if info is not None and property in info.props and \
                    not prop.type.startswith(("link<", "child<")):
                if dev.id:
                    raise GenericError(f"Attempt to set property '{property}' on device "
                                       f"'{dev.id}' (type '{dev.typename}') after it was "
                                       "realized")
                raise GenericError(f"Attempt to set property '{property}' on anonymous "
                                   f"device (type '{dev.typename}') after it was realized")
        obj.set(property, value)

    @qmp_command("qom-list-types")
    def qom_list_types(self, implements: str | None = None,
                       abstract: bool = False) -> list[dict[str, Any]]:
        """qmp_qom_list_types: the types that are `implements` (or all), abstract
        ones only when asked; `abstract` appears only when true."""
        types = self.qdev.catalog.qom_type_list()
        parents = {t["name"]: t.get("parent") for t in types}
        out = []
        for t in types:
            if t.get("abstract") and not abstract:
                continue
            if implements is not None and not _is_a(parents, t["name"], implements):
                continue
            out.append(dict(t))
        return out

    @qmp_command("device-list-properties")
    def device_list_properties(self, typename: str) -> list[dict[str, Any]]:
        return device_properties(self.qdev.catalog, typename)

    # -- devices -------------------------------------------------------------------

    @qmp_command("device_add")
    def device_add(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """qmp_device_add: the arguments as QemuOpts of the `device` list (the id
        checked there), then qdev_device_add."""
        ident = arguments.get("id")
        if ident is not None:
            ident = opt_text(ident)
            if ident is None or not id_wellformed(ident):
                raise GenericError("Parameter 'id' expects an identifier")
            if self._id_taken(ident):
                raise GenericError(f"Duplicate ID '{ident}' for device")
        items = []
        for key, value in arguments.items():
            if key == "id":
                continue
            text = opt_text(value)
            if text is not None:
                items.append((key, text))
        device_add(self.qdev, items, ident)
        return {}

    def _id_taken(self, ident: str) -> bool:
        return any(d.id == ident for d in self.qdev.devices) or \
            self.qdev.container("/machine/peripheral").child(ident) is not None

    @qmp_command("device_del")
    def device_del(self, id: str) -> None:
        """qmp_device_del: at once (DEVICE_DELETED before the reply), or a request
        the guest answers by its behaviours; a repeated request while one is
        pending succeeds and changes nothing."""
        style = device_del(self.qdev, id)
        if style is not UnplugStyle.GUEST:
            return
        dev = _device(self.qdev, id)
        if dev is None or dev in self.pending:
            return
        if self.behaviours.get("device-unplug") != "ack":
            return
        delay = float(self.behaviours.get("device-unplug-delay"))
        self.pending[dev] = self.host.vm_call_later(delay, lambda: self._eject(dev))

    def _eject(self, dev: Device) -> None:
        """The guest ejects the device (the ACPI _EJ0 write: acpi_pcihp_eject_slot)."""
        self.pending.pop(dev, None)
        if dev in self.qdev.devices and dev.unplug_requested:
            complete_unplug(self.qdev, dev)

    # -- objects -------------------------------------------------------------------

    @qmp_command("object-add")
    def object_add(self, qom_type: str, id: str, props: Any = None) -> None:
        """qmp_object_add: `props` must be an object."""
        if props is not None and not isinstance(props, dict):
            raise GenericError("Invalid parameter type for 'props', expected: dict")
        self.qdev.objects.add(qom_type, id, props)

    @qmp_command("object-del")
    def object_del(self, id: str) -> None:
        self.qdev.objects.delete(id)

    @qmp_command("query-pci")
    def query_pci(self) -> list[dict[str, Any]]:
        from devices.pci import query_pci

        self.qdev.root  # noqa: B018 - builds the tree
        return query_pci(self.qdev.buses)


def _device(qdev: Qdev, ident: str) -> Device | None:
    from devices.qdev import find_device_state

    try:
        return find_device_state(qdev, ident)
    except GenericError:
        return None
    except DeviceNotFound:
        return None


def _is_a(parents: dict[str, str | None], name: str, ancestor: str) -> bool:
    seen: set[str] = set()
    cur: str | None = name
    while cur is not None and cur not in seen:
        if cur == ancestor:
            return True
        seen.add(cur)
        cur = parents.get(cur)
    return False
