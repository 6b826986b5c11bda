"""qdev: devices, buses, realize and unplug, and the hooks device models plug into.

Pure model of the `devices` layer [hw/core/qdev.c device_set_realized,
qdev_unplug; hw/core/bus.c qbus_realize; qdev-monitor.c qdev_device_add,
qmp_device_del; hw/core/qdev-properties-system.c parse_drive and release_drive,
hw/ide/qdev.c ide_dev_initfn, hw/block/virtio-blk.c, hw/scsi/scsi-disk.c,
hw/block/fdc.c, hw/block/block.c blkconf_apply_backend_options].

The extension point other device models plug into (`DeviceKind`): a device type's
model is told when an instance is realized, unrealized and asked to unplug; it sees
the `Device` (its type, id, QOM node, bus and parsed properties) and may keep its own
state in `Device.state`. Kinds are registered per machine (`Qdev.register`), so
`device_add pc-dimm` or a CPU type reaches its model; every other type gets the
generic behaviour of its bus. What a property names elsewhere (`chardev=`,
`netdev=`, `drive=`) is claimed and released through a `BackendResolver` registered
under the property's name, which raises QEMU's "can't find value" and "in use"
errors. `UnplugStyle` says whether a device goes at once (USB, SCSI, virtio-serial
ports: DEVICE_DELETED before the reply) or when the guest ejects it (PCI/ACPI).

`attach_device` is `-device`/`device_add` of a block device model of
`devices.blockdevs.DEVICE_KINDS`: its properties, its `drive`, and realize with
QEMU's checks and texts; `detach_device` and `mark_auto_del` are its unplug. Errors
raise `GenericError` with QEMU's message.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from devices.backends import BlockBackends
from devices.blockdevs import DEVICE_KINDS, BlockDevice, scsi_hd_removable
from devices.qom import QomObject
from schema.errors import QERR_INVALID_PARAMETER, QERR_INVALID_PARAMETER_TYPE, GenericError

# The qapi enums of the block device properties: BlockdevOnError (rerror, werror)
# and OnOffAuto (write-cache).
ON_ERROR = ("report", "ignore", "enospc", "stop", "auto")
ON_OFF_AUTO = ("auto", "on", "off")


class UnplugStyle(enum.Enum):
    """How a device leaves (hw/core/qdev.c qdev_unplug: the hotplug handler's
    unplug or unplug_request)."""

    NOW = "now"  # removed during device_del: DEVICE_DELETED before the reply
    GUEST = "guest"  # the guest ejects it (ACPI/PCIe), paced by the unplug behaviours
    DEFERRED = "deferred"  # the kind itself calls Qdev.complete_unplug later


@attrs.define(eq=False)
class Bus:
    """A qbus: its name, its type (`PCI`, `PCIE`, `ISA`, `usb-bus`, `IDE`, `SCSI`,
    `System`, `virtio-serial-bus`, ...), the device it belongs to, its QOM node
    (a child of that device), the devices on it in plug order, and whether it has a
    hotplug handler."""

    name: str
    type: str
    node: QomObject
    parent: Device | None = None
    hotplug: bool = False
    max_dev: int = 0  # 0: unlimited
    devices: list[Device] = attrs.field(factory=list)
    # PCI: slot/function -> device, and the lowest devfn free for auto-assignment
    # (devices.pci fills these)
    extra: dict[str, Any] = attrs.field(factory=dict)

    def is_full(self) -> bool:
        return bool(self.max_dev) and len(self.devices) >= self.max_dev


@attrs.define(eq=False)
class Device:
    """A device instance: its type, `id` (None: anonymous), QOM node, the bus it
    sits on, its parsed qdev properties, the buses it owns, and its model's state."""

    typename: str
    id: str | None
    node: QomObject
    bus: Bus | None = None
    props: dict[str, Any] = attrs.field(factory=dict)
    buses: list[Bus] = attrs.field(factory=list)
    hotplugged: bool = False
    realized: bool = False
    unplug_requested: bool = False
    state: Any = None  # the DeviceKind's own model of this instance

    @property
    def path(self) -> str:
        return self.node.path()


class DeviceKind(Protocol):
    """The model of a device type, at the points of qdev's life cycle.

    `realize` raises GenericError with QEMU's text to refuse the device (nothing of
    it stays in the tree); `unrealize` releases what realize took; `unplug_request`
    is device_del's question to the device's hotplug handler: it raises QEMU's
    refusal, or says how the device leaves."""

    def realize(self, qdev: Qdev, dev: Device) -> None: ...

    def unrealize(self, qdev: Qdev, dev: Device) -> None: ...

    def unplug_request(self, qdev: Qdev, dev: Device) -> UnplugStyle: ...


class BackendResolver(Protocol):
    """A property that names a backend (`chardev=`, `netdev=`, `drive=`): `claim`
    finds it and takes it for the device, raising QEMU's texts
    (`Property '<type>.<prop>' can't find value '<v>'`, the "in use" errors);
    `release` gives it back when the device goes (or its realize fails)."""

    def claim(self, qdev: Qdev, dev: Device, owner_type: str, prop: str,
              value: str) -> Any: ...

    def release(self, qdev: Qdev, dev: Device, prop: str, claimed: Any) -> None: ...


class QdevHost(Protocol):
    """What qdev needs from the Machine: events, the guest's behaviours, and the
    virtual clock (a guest acts only while the VM runs)."""

    def emit(self, name: str, data: dict[str, Any] | None = None) -> Any: ...

    def vm_call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...


@attrs.define(kw_only=True, eq=False)
class Qdev:
    """The devices of one machine: its block devices, the registered device kinds
    and backend resolvers, and the per-machine counters of QOM's names."""

    block: BlockBackends[Any]
    anon_devices: int = 0
    kinds: dict[str, DeviceKind] = attrs.field(factory=dict)
    resolvers: dict[str, BackendResolver] = attrs.field(factory=dict)

    def register(self, typename: str, kind: DeviceKind) -> None:
        """Make `kind` the model of every device of type `typename`."""
        self.kinds[typename] = kind

    def register_resolver(self, prop: str, resolver: BackendResolver) -> None:
        """Make `resolver` claim the backends named by property `prop`."""
        self.resolvers[prop] = resolver

    def next_anon_path(self) -> str:
        """/machine/peripheral-anon/device[N] for a device without id (qdev-monitor.c
        qdev_set_id: a global counter, never reused)."""
        path = f"/machine/peripheral-anon/device[{self.anon_devices}]"
        self.anon_devices += 1
        return path


def prop_bool(name: str, value: str) -> bool:
    """A boolean qdev property set from a -device string: object_property_parse's
    string input visitor (qapi/string-input-visitor.c parse_type_bool), which takes
    on/yes/true and off/no/false in any case."""
    word = value.lower()
    if word in ("on", "yes", "true"):
        return True
    if word in ("off", "no", "false"):
        return False
    raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "boolean"))


def prop_enum(value: str, choices: tuple[str, ...]) -> str:
    """An enum qdev property set from a -device string (qdev-properties.c set_enum,
    qapi-visit-core.c input_type_enum): one of the enum's names, case-sensitive."""
    if value not in choices:
        raise GenericError(QERR_INVALID_PARAMETER % value)
    return value


def attach_device(qdev: Qdev, driver: str, props: Mapping[str, str], *,
                  qom_path: str | None = None) -> BlockDevice:
    """A block device's properties, its `drive=` (parse_drive) and realize."""
    kind = DEVICE_KINDS.get(driver)
    if kind is None:
        raise GenericError(f"'{driver}' is not a block device model known to the block "
                           "layer")
    if driver == "scsi-hd" and props.get("removable") is not None and \
            prop_bool("removable", props["removable"]):
        kind = scsi_hd_removable()
    ident = props.get("id")
    if qom_path is None:
        qom_path = f"/machine/peripheral/{ident}" if ident else qdev.next_anon_path()
    dev = BlockDevice(kind=kind, id=ident, qom_path=qom_path)
    if "rerror" in props:
        dev.rerror = prop_enum(props["rerror"], ON_ERROR)
    if "werror" in props:
        dev.werror = prop_enum(props["werror"], ON_ERROR)
    if "share-rw" in props:
        dev.share_rw = prop_bool("share-rw", props["share-rw"])
    if "write-cache" in props:
        dev.wce = prop_enum(props["write-cache"], ON_OFF_AUTO)
    block = qdev.block
    drive = props.get("drive")
    blk = None
    created = False
    if drive:
        blk = block.by_name(drive)
        if blk is None:
            blk = block.new_on_node(drive)
            created = blk is not None
        if blk is None:
            raise GenericError(f"Property '{driver}.drive' can't find value '{drive}'")
        if block.is_attached(blk):
            if created:
                block.unref(blk)
            d = block.legacy_drive(blk)
            if d is not None and d.type != "none":
                raise GenericError(f"Drive '{drive}' is already in use because it has been "
                                   "automatically connected to another device (did you "
                                   "need 'if=none' in the drive options?)")
            raise GenericError(f"Drive '{drive}' is already in use by another device")
    try:
        return _realize(qdev, dev, blk, created)
    except GenericError:
        if created and blk is not None:
            block.unref(blk)
        raise


def _realize(qdev: Qdev, dev: BlockDevice, blk: Any, created: bool) -> BlockDevice:
    block = qdev.block
    kind = dev.kind
    if blk is None:
        if kind.driver in ("ide-cd", "scsi-cd", "floppy") or kind.tray or \
                kind.driver == "sd-card":
            blk = block.new_empty()
            created = True
        elif kind.driver in ("ide-hd", "ide-drive"):
            raise GenericError("No drive specified")
        else:
            raise GenericError("drive property not set")
    if kind.needs_media and not blk.is_inserted():
        raise GenericError("Device needs media, but drive is empty")
    if kind.rejects_readonly and blk.is_read_only():
        raise GenericError("Can't use a read-only drive")
    if not kind.error_options:
        if blk.on_write_error != "enospc" and block.legacy_drive(blk) is not None:
            raise GenericError("fdc doesn't support drive option werror")
        if blk.on_read_error != "report":
            raise GenericError("fdc doesn't support drive option rerror")
    readonly = kind.readonly if kind.readonly is not None else blk.is_read_only()
    block.attach_dev(blk, dev, readonly=readonly, resizable=kind.resizable,
                     share_rw=dev.share_rw)
    if dev.wce == "on":
        blk.enable_write_cache = True
    elif dev.wce == "off":
        blk.enable_write_cache = False
    if dev.rerror != "auto":
        blk.on_read_error = dev.rerror
    if dev.werror != "auto":
        blk.on_write_error = dev.werror
    if created:
        block.unref(blk)  # the device keeps the only reference
    if kind.iostatus:
        block.iostatus_enable(blk)
    return dev


def detach_device(qdev: Qdev, dev: BlockDevice) -> None:
    """Unplugging: release_drive (blockdev_auto_del, blk_detach_dev)."""
    qdev.block.detach_dev(dev)


def mark_auto_del(qdev: Qdev, dev: BlockDevice) -> None:
    """blockdev_mark_auto_del: a device_del'ed device takes its -drive with it."""
    qdev.block.mark_auto_del(dev)
