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
from devices.props import default_value, parse_prop, prop_bool
from devices.qom import QomObject
from schema.errors import (
    QERR_INVALID_PARAMETER,
    GenericError,
    QMPError,
)

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
    bus_index: int = -1  # its `child[N]` on the bus
    claims: dict[str, Any] = attrs.field(factory=dict)  # backends its properties took

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


# Device classes with dc->hotpluggable = false among the x86 ones [hw/display/vga-pci.c,
# cirrus_vga.c, vmware_vga.c, virtio-vga.c, virtio-gpu-pci.c; hw/ide/piix.c;
# hw/usb/hcd-uhci.c, hcd-ehci-pci.c, hcd-ohci.c; hw/acpi/piix4.c, vmgenid.c;
# hw/misc/vmcoreinfo.c; hw/i386/intel_iommu.c, amd_iommu.c;
# hw/pci-bridge/pci_expander_bridge.c; hw/ipmi/ipmi_bmc_*.c; hw/vfio/pci-quirks.c].
NOT_HOTPLUGGABLE = frozenset({
    "VGA", "secondary-vga", "cirrus-vga", "vmware-svga", "virtio-vga", "virtio-gpu-pci",
    "piix3-ide", "piix3-ide-xen", "piix4-ide", "usb-ehci", "ich9-usb-ehci1",
    "ich9-usb-ehci2", "pci-ohci", "piix3-usb-uhci", "piix4-usb-uhci",
    "vt82c686b-usb-uhci", "ich9-usb-uhci1", "ich9-usb-uhci2", "ich9-usb-uhci3",
    "ich9-usb-uhci4", "ich9-usb-uhci5", "ich9-usb-uhci6", "vmgenid", "vmcoreinfo",
    "intel-iommu", "amd-iommu", "pxb", "pxb-pcie", "ipmi-bmc-sim", "ipmi-bmc-extern",
    "PIIX4_PM", "vfio-pci-igd-lpc-bridge",
})


@attrs.define(kw_only=True, eq=False)
class Qdev:
    """The devices of one machine: the QOM tree they live in (built on first use from
    the board's plan), its buses, the registered device kinds and backend resolvers,
    and the per-machine counters of QOM's names.

    `host` and `catalog` are what the tree needs beyond the block layer; a Qdev made
    without them (a block-layer test) has only the block devices."""

    block: BlockBackends[Any]
    catalog: Any = None  # schema.catalog.Catalog
    host: QdevHost | None = None
    board: Any = None  # devices.board.BoardPlan, set by start-up
    anon_devices: int = 0
    kinds: dict[str, DeviceKind] = attrs.field(factory=dict)
    resolvers: dict[str, BackendResolver] = attrs.field(factory=dict)
    # the tree, built by `tree()`
    _root: QomObject | None = None
    devices: list[Device] = attrs.field(factory=list)
    buses: list[Bus] = attrs.field(factory=list)
    unattached_count: int = 0
    bus_ids: dict[str, int] = attrs.field(factory=dict)  # BusClass automatic_ids
    # qdev_hotplug: the machine is initialised (start-up clears it while it
    # creates the command line's devices)
    hotplug_done: bool = True
    # the block devices the board attached at start-up, by their QOM path
    board_block_devices: dict[str, BlockDevice] = attrs.field(factory=dict)
    # migration_is_idle's opposite, when a migration subsystem says so
    migration_active: Callable[[], bool] | None = None
    # the user-creatable objects (devices.objects.ObjectStore), made on first use
    _objects: Any = None
    mac_index: int = 0  # NICs that took a default MAC address (net.c)

    @property
    def objects(self) -> Any:
        """The machine's /objects (`devices.objects.ObjectStore`): what object-add
        made; other subsystems look secrets, iothreads and backends up here."""
        if self._objects is None:
            from devices.objects import ObjectStore

            self._objects = ObjectStore(root=lambda: self.root, catalog=self.catalog)
        return self._objects

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

    # -- the tree ------------------------------------------------------------------

    @property
    def root(self) -> QomObject:
        """The QOM root `/`, with the board's devices (built on first use)."""
        if self._root is None:
            from devices.board import build_tree

            self._root = QomObject("container")
            build_tree(self)
        return self._root

    @property
    def built(self) -> bool:
        return self._root is not None

    def container(self, path: str) -> QomObject:
        """container_get: the container at `path`, created on the way."""
        obj = self.root
        for part in path.strip("/").split("/"):
            nxt = obj.child(part)
            if nxt is None:
                from devices.qom import container

                nxt = obj.add_child(part, container())
            obj = nxt
        return obj

    def device_at(self, node: QomObject) -> Device | None:
        for dev in self.devices:
            if dev.node is node:
                return dev
        return None

    def bus_at(self, node: QomObject) -> Bus | None:
        for bus in self.buses:
            if bus.node is node:
                return bus
        return None

    def find_id(self, ident: str) -> Device | None:
        for dev in self.devices:
            if dev.id == ident:
                return dev
        return None

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
            owner = "virtio-blk-device" if kind.inner_path else driver
            raise GenericError(f"Property '{owner}.drive' can't find value '{drive}'")
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


# -- device types ------------------------------------------------------------------------

# qdev-monitor.c qdev_alias_table (the x86_64 entries)
ALIASES = {
    "e1000-82540em": "e1000", "ahci": "ich9-ahci", "lsi": "lsi53c895a",
    "virtio-9p": "virtio-9p-pci", "virtio-balloon": "virtio-balloon-pci",
    "virtio-blk": "virtio-blk-pci", "virtio-gpu": "virtio-gpu-pci",
    "virtio-input-host": "virtio-input-host-pci", "virtio-keyboard": "virtio-keyboard-pci",
    "virtio-mouse": "virtio-mouse-pci", "virtio-net": "virtio-net-pci",
    "virtio-rng": "virtio-rng-pci", "virtio-scsi": "virtio-scsi-pci",
    "virtio-serial": "virtio-serial-pci", "virtio-tablet": "virtio-tablet-pci",
}

# The bus a device's own buses are of, by the ancestry of the device (what each
# controller's realize creates: pci_bridge_initfn, usb_bus_new, scsi_bus_new,
# ide_bus_new, virtio_serial_device_realize, isa_bus_new, i2c_init_bus).
CHILD_BUSES: tuple[tuple[str, str, int], ...] = (
    ("base-pci-bridge", "PCI", 1),
    ("usb-host-controller", "usb-bus", 1),
)

# Bus types and the QOM types a bus of each is (object_dynamic_cast: a PCIE bus is a
# PCI bus).
BUS_ANCESTRY = {"PCIE": ("PCIE", "PCI", "bus"), "PCI": ("PCI", "bus"),
                "virtio-pci-bus": ("virtio-pci-bus", "virtio-bus", "bus")}


def bus_is_a(bus_type: str, wanted: str) -> bool:
    return wanted in BUS_ANCESTRY.get(bus_type, (bus_type, "bus"))


@attrs.frozen
class TypeInfo:
    """What qdev needs to know of a device type: its QOM ancestry, whether it is
    abstract, user-creatable (listed by -device help) and hotpluggable, the bus type
    it sits on, and its qdev properties (name -> (type, description))."""

    name: str
    ancestors: tuple[str, ...]
    abstract: bool
    user_creatable: bool
    hotpluggable: bool
    bus_type: str | None
    props: Mapping[str, tuple[str, str]]

    def is_a(self, typename: str) -> bool:
        return typename == self.name or typename in self.ancestors


def _ancestor_bus(ancestors: tuple[str, ...]) -> str | None:
    for parent, bus in (("pci-device", "PCI"), ("isa-device", "ISA"),
                        ("usb-device", "usb-bus"), ("scsi-device", "SCSI"),
                        ("ide-device", "IDE"), ("virtio-serial-port", "virtio-serial-bus"),
                        ("sys-bus-device", "System"), ("virtio-device", "virtio-bus"),
                        ("i2c-slave", "i2c-bus"), ("floppy", "floppy-bus")):
        if parent in ancestors:
            return bus
    return None



def type_info(catalog: Any, typename: str) -> TypeInfo | None:
    """The facts of a QOM type from the catalogue, or None for an unknown type."""
    types = catalog.qom_type_index()
    if typename not in types:
        return None
    chain: list[str] = []
    parent = types[typename].get("parent")
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = types.get(parent, {}).get("parent")
    helps = catalog.device_help()
    recorded = catalog.all_device_properties().get(typename, [])
    props = {p["name"]: (p["type"], p.get("description", "")) for p in recorded}
    bus = helps[typename][0] if typename in helps else _ancestor_bus(tuple(chain))
    if typename == "floppy":
        bus = "floppy-bus"
    return TypeInfo(name=typename, ancestors=tuple(chain),
                    abstract=bool(types[typename].get("abstract")),
                    user_creatable=typename in helps,
                    hotpluggable=typename not in NOT_HOTPLUGGABLE,
                    bus_type=bus or None, props=props)


# -- creating and removing devices -------------------------------------------------------

def new_bus(qdev: Qdev, parent: Device | None, bus_type: str, name: str | None = None, *,
            hotplug: bool = False, max_dev: int = 0, parent_node: QomObject | None = None,
            ) -> Bus:
    """qbus_create: a bus named `name`, or `<parent id>.<n>`, or `<type>.<n>` of the
    bus class's counter [hw/core/bus.c qbus_realize]."""
    if name is None:
        if parent is not None and parent.id:
            name = f"{parent.id}.{len(parent.buses)}"
        else:
            n = qdev.bus_ids.get(bus_type, 0)
            qdev.bus_ids[bus_type] = n + 1
            name = f"{bus_type.lower()}.{n}"
    node = QomObject(bus_type)
    bus = Bus(name=name, type=bus_type, node=node, parent=parent, hotplug=hotplug,
              max_dev=max_dev)
    bus.extra["next_index"] = 0
    owner = parent.node if parent is not None else parent_node
    if owner is not None:
        owner.add_child(name, node)
    if parent is not None:
        parent.buses.append(bus)
    _template_props(qdev, node, bus_type, "buses", node)
    node.add_property("realized", "bool", get=lambda: parent is not None or
                      bus.extra.get("realized", False))
    node.add_link("hotplug-handler", "hotplug-handler",
                  lambda: bus.extra["handler"].node if bus.extra.get("handler") else None)
    qdev.buses.append(bus)
    return bus


def _template_props(qdev: Qdev, node: QomObject, typename: str, section: str,
                    owner: QomObject, skip: frozenset[str] = frozenset()) -> bool:
    """Give `node` the recorded properties and internal objects of its type; False
    when the catalogue recorded no instance of the type."""
    if qdev.catalog is None:
        return False
    tmpl = template_of(qdev, section, typename)
    if tmpl is None:
        return False
    _apply_template(qdev, node, tmpl, owner, skip)
    return True


def template_of(qdev: Qdev, section: str, typename: str) -> Any:
    """The recorded template of a type (devices: the machine's board's, else the
    other board's)."""
    data = qdev.catalog.qom_templates()[section]
    if section != "devices":
        return data.get(typename)
    board = getattr(qdev.board, "kind", "i440fx")
    first, second = ("q35", "pc") if board == "q35" else ("pc", "q35")
    return data[first].get(typename, data[second].get(typename))


def _apply_template(qdev: Qdev, node: QomObject, tmpl: list[Any], owner: QomObject,
                    skip: frozenset[str] = frozenset()) -> None:
    for name, type_, spec in tmpl:
        if name in skip or name in node.props:
            continue
        if "child" in spec:
            child = QomObject(type_[6:-1])
            _apply_template(qdev, child, spec["child"], owner)
            node.add_child(name, child)
        elif "link" in spec:
            node.add_link(name, type_[5:-1], _link_target(qdev, owner, spec["link"]))
        elif "error" in spec:
            message = spec["error"]
            node.add_property(name, type_, get=_raiser(message))
        else:
            _value_property(node, name, type_, spec["value"])


def _raiser(message: str) -> Callable[[], Any]:
    def get() -> Any:
        raise GenericError(message)
    return get


def _value_property(node: QomObject, name: str, type_: str, value: Any) -> None:
    """A property with a value (a qdev property's setter refuses after realize:
    `devices.commands` says so in QEMU's words)."""
    node.add_property(name, type_, get=lambda: value)


def release_claims(qdev: Qdev, dev: Device) -> None:
    """release_chr/release_drive/release_netdev: give back what properties took."""
    for name, claimed in list(dev.claims.items()):
        resolver = qdev.resolvers.get(name)
        if resolver is not None:
            resolver.release(qdev, dev, name, claimed)
    dev.claims.clear()


def _link_target(qdev: Qdev, owner: QomObject, ref: str) -> Callable[[], QomObject | None]:
    """A recorded link: "" (unset), `@rel` below its owner, `#type:n/rest` below the
    n-th board device of a type, or an absolute path."""
    from devices.qom import resolve_abs

    def target() -> QomObject | None:
        if not ref:
            return None
        if ref.startswith("@"):
            return resolve_abs(owner, [p for p in ref[1:].split("/") if p])
        if ref.startswith("#"):
            head, _, rest = ref[1:].partition("/")
            typename, _, ordinal = head.rpartition(":")
            same = [d for d in qdev.devices if d.typename == typename and
                    d.node.parent is not None and d.node.parent.name == "unattached"]
            k = int(ordinal)
            if k >= len(same):
                return None
            return resolve_abs(same[k].node, [p for p in rest.split("/") if p])
        return resolve_abs(qdev.root, [p for p in ref.split("/") if p])

    return target


def new_device(qdev: Qdev, info: TypeInfo, *, ident: str | None, bus: Bus | None,
               parent: QomObject | None = None, name: str | None = None,
               user: bool = False, template: str | None = None) -> Device:
    """object_new + qdev_set_parent_bus + qdev_set_id: the device in the tree, not
    yet realized. `user`: created by -device/device_add (a peripheral);
    otherwise a board device (a named child of `parent`, or unattached at realize)."""
    node = QomObject(info.name)
    dev = Device(typename=info.name, id=ident, node=node, bus=bus)
    dev.hotplugged = qdev.hotplug_done
    if not _template_props(qdev, node, template or info.name, "devices", node,
                           frozenset({"parent_bus", "realized", "hotplugged"})):
        classes = _default_classes(qdev, info)
        for pname, (ptype, _desc) in info.props.items():
            if ptype.startswith(("child<", "link<")):
                continue
            _value_property(node, pname, ptype, default_value(classes, pname, ptype))
        if "vlan" in info.props and "netdev" in info.props:
            # DEFINE_NIC_PROPERTIES' vlan prints through legacy-vlan (print_vlan)
            _value_property(node, "legacy-vlan", "str", "")
    elif user:
        # a recorded instance's backends are the board's, not this device's: unset
        # until its own -device options name them (print_vlan: no hub peer)
        for pname in (*BACKEND_PROPS, "legacy-vlan"):
            prop = node.props.get(pname)
            if prop is not None and prop.type == "str":
                prop.get = lambda: ""
    if "hotpluggable" not in node.props:
        node.add_property("hotpluggable", "bool", get=lambda: info.hotpluggable and (
            dev.bus is None or dev.bus.hotplug))
    node.add_property("realized", "bool", get=lambda: dev.realized)
    node.add_property("hotplugged", "bool", get=lambda: dev.hotplugged)
    node.add_link("parent_bus", "bus", lambda: dev.bus.node if dev.bus else None)
    if bus is not None:
        _bus_add_child(bus, dev)
    if user:
        if ident:
            qdev.container("/machine/peripheral").add_child(ident, node)
        else:
            qdev.container("/machine/peripheral-anon").add_child(
                f"device[{qdev.anon_devices}]", node)
            qdev.anon_devices += 1
    elif parent is not None and name is not None:
        parent.add_child(name, node)
    return dev


def _default_classes(qdev: Qdev, info: TypeInfo) -> tuple[str, ...]:
    """Where a property's default is looked up: the type and its parents, then (a
    virtio proxy, whose virtio device's properties are aliased onto it) the virtio
    device's type and parents."""
    classes = (info.name, *info.ancestors)
    inner = inner_type(info.name)
    if inner != info.name and qdev.catalog is not None:
        inner_info = type_info(qdev.catalog, inner)
        if inner_info is not None:
            classes += (inner_info.name, *inner_info.ancestors)
    return classes


def _bus_add_child(bus: Bus, dev: Device) -> None:
    """bus_add_child: the bus's `child[N]` link (N from the bus's counter)."""
    index = bus.extra["next_index"]
    bus.extra["next_index"] = index + 1
    dev.bus_index = index
    bus.node.add_link(f"child[{index}]", dev.typename, lambda: dev.node)
    bus.devices.append(dev)


def _bus_remove_child(bus: Bus, dev: Device) -> None:
    bus.node.remove(f"child[{dev.bus_index}]")
    if dev in bus.devices:
        bus.devices.remove(dev)


def realize(qdev: Qdev, dev: Device) -> None:
    """device_set_realized: the kind's realize, then (no parent yet) the device goes
    to /machine/unattached/device[N]."""
    kind = qdev.kinds.get(dev.typename)
    if kind is not None:
        kind.realize(qdev, dev)
    if dev.node.parent is None:
        qdev.container("/machine/unattached").add_child(
            f"device[{qdev.unattached_count}]", dev.node)
        qdev.unattached_count += 1
    dev.realized = True
    qdev.devices.append(dev)


def discard(qdev: Qdev, dev: Device) -> None:
    """object_unparent of a device that failed before or in realize."""
    release_claims(qdev, dev)
    if dev.bus is not None:
        _bus_remove_child(dev.bus, dev)
    dev.node.unparent()






# -- -device / device_add ------------------------------------------------------------------

# Buses whose class limits how many devices they ever take (BusClass max_dev;
# qbus_is_full compares the bus's max_index, which removal does not lower).
BUS_MAX_DEV = {"IDE": 2, "floppy-bus": 2, "virtio-bus": 1, "virtio-serial-bus": 0}
# Bus types whose hotplug handler removes a device at once [hw/usb/bus.c
# usb_qdev_unplug... (qdev_simple_device_unplug_cb), hw/scsi/scsi-bus.c,
# hw/char/virtio-serial-bus.c]; PCI/PCIe wait for the guest [hw/acpi/pcihp.c,
# hw/pci/pcie.c].
SYNC_UNPLUG_BUSES = frozenset({"usb-bus", "SCSI", "virtio-serial-bus"})


def is_full(bus: Bus) -> bool:
    limit = BUS_MAX_DEV.get(bus.type, 0) or bus.max_dev
    return bool(limit) and bus.extra.get("next_index", 0) >= limit


def _children_newest_first(bus: Bus) -> list[Device]:
    return list(reversed(bus.devices))


def find_bus_recursive(bus: Bus, name: str | None, bus_type: str | None) -> Bus | None:
    """qbus_find_recursive: depth first, a bus's newest device first, each device's
    newest bus first; the first match that is not full, else the first match."""
    if name is not None:
        match = bus.name == name
    else:
        match = bus_is_a(bus.type, bus_type or "")
    if match and not is_full(bus):
        return bus
    pick = bus if match else None
    for dev in _children_newest_first(bus):
        for child in reversed(dev.buses):
            ret = find_bus_recursive(child, name, bus_type)
            if ret is not None and not is_full(ret):
                return ret
            if ret is not None and pick is None:
                pick = ret
    return pick


def _find_dev(bus: Bus, elem: str) -> Device | None:
    """qbus_find_dev: by id, then by type name, then by alias."""
    for dev in bus.devices:
        if dev.id == elem:
            return dev
    for dev in bus.devices:
        if dev.typename == elem:
            return dev
    for dev in bus.devices:
        if ALIASES.get(elem) == dev.typename:
            return dev
    return None


def find_bus(qdev: Qdev, sysbus: Bus, path: str) -> Bus:
    """qbus_find: a bus by name, or a path of device ids/types and bus names."""
    parts = path.split("/")
    if path.startswith("/"):
        bus = sysbus
        rest = [p for p in parts if p]
    else:
        first = parts[0]
        found = find_bus_recursive(sysbus, first, None)
        if found is None:
            raise GenericError(f"Bus '{first}' not found")
        bus = found
        rest = [p for p in parts[1:] if p]
    while rest:
        elem = rest.pop(0)
        dev = _find_dev(bus, elem)
        if dev is None:
            from schema.errors import DeviceNotFound

            raise DeviceNotFound(f"Device '{elem}' not found")
        if not rest:
            if len(dev.buses) == 1:
                bus = dev.buses[0]
                break
            if dev.buses:
                raise GenericError(f"Device '{elem}' has multiple child buses")
            raise GenericError(f"Device '{elem}' has no child bus")
        elem = rest.pop(0)
        for child in dev.buses:
            if child.name == elem:
                bus = child
                break
        else:
            raise GenericError(f"Bus '{elem}' not found")
    if is_full(bus):
        raise GenericError(f"Bus '{path}' is full")
    return bus


def device_class(qdev: Qdev, driver: str) -> TypeInfo:
    """qdev_get_device_class: the type (aliases resolved), with QEMU's refusals."""
    original = driver
    info = type_info(qdev.catalog, driver)
    if info is None and driver in ALIASES:
        driver = ALIASES[driver]
        info = type_info(qdev.catalog, driver)
    if info is None or not info.is_a("device"):
        if original != driver:
            raise GenericError(f"'{original}' (alias '{driver}') is not a valid device "
                               "model name")
        raise GenericError(f"'{driver}' is not a valid device model name")
    if info.abstract:
        raise GenericError("Parameter 'driver' expects non-abstract device type")
    if not info.user_creatable or (qdev.hotplug_done and not info.hotpluggable):
        raise GenericError("Parameter 'driver' expects pluggable device type")
    return info


def sysbus_of(qdev: Qdev) -> Bus:
    qdev.root  # noqa: B018 - builds the tree
    for bus in qdev.buses:
        if bus.type == "System":
            return bus
    raise GenericError("No 'System' bus found")


BACKEND_PROPS = ("drive", "chardev", "netdev")


def device_add(qdev: Qdev, items: list[tuple[str, str]], ident: str | None) -> Device:
    """qdev_device_add: `items` are the QemuOpts of the device (driver, bus and the
    properties, in order); `ident` its id (already checked by the caller)."""
    opts = dict(items)
    driver = opts.get("driver")
    if driver is None:
        raise GenericError("Parameter 'driver' is missing")
    info = device_class(qdev, driver)
    sysbus = sysbus_of(qdev)
    bus: Bus | None = None
    path = opts.get("bus")
    if path is not None:
        bus = find_bus(qdev, sysbus, path)
        if info.bus_type is None or not bus_is_a(bus.type, info.bus_type):
            raise GenericError(f"Device '{opts['driver']}' can't go on {bus.type} bus")
    elif info.bus_type is not None:
        bus = find_bus_recursive(sysbus, None, info.bus_type)
        if bus is None or is_full(bus):
            raise GenericError(f"No '{info.bus_type}' bus found for device "
                               f"'{opts['driver']}'")
    if qdev.hotplug_done and bus is not None and not bus.hotplug:
        raise GenericError(f"Bus '{bus.name}' does not support hotplugging")
    if qdev.migration_active is not None and qdev.migration_active():
        raise GenericError("device_add not allowed while migrating")
    dev = new_device(qdev, info, ident=ident, bus=bus, user=True)
    try:
        for name, value in items:
            if name in ("driver", "bus"):
                continue
            set_property(qdev, dev, info, name, value)
        realize_user_device(qdev, dev, info)
    except QMPError:
        discard(qdev, dev)
        raise
    return dev


def set_property(qdev: Qdev, dev: Device, info: TypeInfo, name: str, value: str) -> None:
    """set_property / object_property_parse of one -device option."""
    if name not in info.props and name not in dev.node.props:
        raise GenericError(f"Property '.{name}' not found")
    type_, desc = info.props.get(name, ("str", ""))
    owner = info.name
    inner = inner_type(info.name)
    if inner != info.name:
        inner_info = type_info(qdev.catalog, inner)
        if inner_info is not None and name in inner_info.props:
            owner = inner  # a virtio proxy forwards it to its virtio device
    parsed = parse_prop(owner, name, type_, value, desc,
                        dev_id=(dev.id or "") if owner == info.name else "")
    if name in BACKEND_PROPS and name in qdev.resolvers and dev.typename not in DEVICE_KINDS:
        claimed = qdev.resolvers[name].claim(qdev, dev, inner_type(info.name), name, value)
        dev.claims[name] = claimed
    dev.props[name] = parsed
    prop = dev.node.props.get(name)
    if prop is not None:
        prop.get = lambda: parsed
    else:
        dev.node.add_property(name, type_, get=lambda: parsed)


def inner_type(typename: str) -> str:
    """The virtio device a virtio PCI proxy forwards its properties to
    (`virtio-blk-pci` -> `virtio-blk-device`): QEMU's texts name it."""
    if typename.startswith("virtio-") and typename.endswith("-pci"):
        return typename[:-4] + "-device"
    return typename


def realize_user_device(qdev: Qdev, dev: Device, info: TypeInfo) -> None:
    """device_set_realized of a -device/device_add device: its PCI address or USB
    port, its kind's realize (a block device: its drive), a virtio proxy's
    backend child, and the buses a controller creates."""
    bus = dev.bus
    if "mac" in info.props and info.props["mac"][1].startswith("Ethernet 6-byte") and \
            "mac" not in dev.props:
        # net.c qemu_macaddr_default_if_unset: 52:54:00:12:34:56 + a machine-wide count
        mac = f"52:54:00:12:34:{(0x56 + qdev.mac_index) & 0xFF:02x}"
        qdev.mac_index += 1
        dev.props["mac"] = mac
        if "mac" in dev.node.props:
            dev.node.props["mac"].get = lambda: mac
    if bus is not None and bus.type in ("PCI", "PCIE"):
        from devices.pci import assign_devfn, check_multifunction, occupy

        devfn = assign_devfn(dev, bus, dev.props.get("addr"))
        check_multifunction(dev, bus, devfn, bool(dev.props.get("multifunction")))
        occupy(dev, bus, devfn)
    if bus is not None and bus.type == "usb-bus":
        from devices.usb import claim_port

        try:
            claim_port(qdev, dev, bus)
        except GenericError:
            _vacate(dev)
            raise
    try:
        if dev.typename in DEVICE_KINDS:
            props = {k: v for k, v in dev.props.items() if isinstance(v, str)}
            props.update({k: ("on" if v else "off") for k, v in dev.props.items()
                          if isinstance(v, bool)})
            if dev.id:
                props["id"] = dev.id
            dev.state = attach_device(qdev, dev.typename, props, qom_path=dev.path)
        kind = qdev.kinds.get(dev.typename)
        if kind is not None:
            kind.realize(qdev, dev)
    except QMPError:
        _vacate(dev)
        raise
    if info.name.startswith("virtio-") and info.name.endswith("-pci"):
        # virtio_pci_bus_new, then the proxy's realize puts its virtio device there
        vbus = new_bus(qdev, dev, "virtio-pci-bus", "virtio-bus", hotplug=False)
        vbus.extra["realized"] = True
        inner = type_info(qdev.catalog, inner_type(info.name))
        if inner is not None:
            backend = new_device(qdev, inner, ident=None, bus=vbus, parent=dev.node,
                                 name="virtio-backend")
            # the proxy's properties are aliases of its virtio device's
            # (qdev_alias_all_properties): what -device set is the device's value
            for pname, value in dev.props.items():
                prop = backend.node.props.get(pname)
                if pname in inner.props and prop is not None:
                    backend.props[pname] = value
                    prop.get = lambda value=value: value
            backend.realized = True
            qdev.devices.append(backend)
    for bus_type, count in _controller_buses(info):
        for _ in range(count):
            child = new_bus(qdev, dev, bus_type, None, hotplug=True)
            child.extra["realized"] = True
            if bus_type == "usb-bus":
                from devices.usb import setup_usb_bus

                setup_usb_bus(child, dev.typename)
    dev.realized = True
    qdev.devices.append(dev)


def _controller_buses(info: TypeInfo) -> list[tuple[str, int]]:
    """The buses a user-created controller makes in realize."""
    if info.is_a("usb-host-controller") or ("usb" in info.name and info.bus_type == "PCI"):
        return [("usb-bus", 1)]
    if info.name == "usb-hub":
        return []
    if info.name in ("virtio-scsi-pci", "lsi53c895a", "lsi53c810", "megasas",
                     "megasas-gen2", "mptsas1068", "pvscsi", "am53c974", "dc390"):
        return [("SCSI", 1)]
    if info.name == "virtio-serial-pci":
        return [("virtio-serial-bus", 1)]
    if info.name in ("pci-bridge", "pci-bridge-seat"):
        return [("PCI", 1)]
    if info.name in ("pcie-root-port", "ioh3420", "xio3130-downstream", "x3130-upstream",
                     "i82801b11-bridge", "pcie-pci-bridge"):
        return [("PCIE" if info.name != "i82801b11-bridge" else "PCI", 1)]
    if info.name in ("ich9-ahci",):
        return [("IDE", 6)]
    if info.name in ("piix3-ide", "piix4-ide", "isa-ide"):
        return [("IDE", 2)]
    return []


def _vacate(dev: Device) -> None:
    if dev.bus is not None and dev.bus.type in ("PCI", "PCIE"):
        from devices.pci import vacate

        vacate(dev, dev.bus)
    if dev.bus is not None and dev.bus.type == "usb-bus":
        from devices.usb import release_port

        release_port(dev, dev.bus)


# -- device_del ---------------------------------------------------------------------------

def find_device_state(qdev: Qdev, ident: str) -> Device:
    """qdev-monitor.c find_device_state: an id under /machine/peripheral, or an
    absolute QOM path."""
    from devices.qom import resolve_path
    from schema.errors import DeviceNotFound

    if ident.startswith("/"):
        obj, _ = resolve_path(qdev.root, ident)
    else:
        obj = qdev.container("/machine/peripheral").child(ident)
    if obj is None:
        raise DeviceNotFound(f"Device '{ident}' not found")
    dev = qdev.device_at(obj)
    if dev is None:
        raise GenericError(f"{ident} is not a hotpluggable device")
    return dev


def device_del(qdev: Qdev, ident: str) -> UnplugStyle:
    """qmp_device_del / qdev_unplug: refuse as QEMU refuses, then remove at once or
    ask the guest (the caller paces the guest's answer)."""
    dev = find_device_state(qdev, ident)
    bus = dev.bus
    if bus is not None and not bus.hotplug:
        raise GenericError(f"Bus '{bus.name}' does not support hotplugging")
    info = type_info(qdev.catalog, dev.typename)
    if info is not None and not info.hotpluggable:
        raise GenericError(f"Device '{dev.typename}' does not support hotplugging")
    if qdev.migration_active is not None and qdev.migration_active():
        raise GenericError("device_del not allowed while migrating")
    if dev.typename in DEVICE_KINDS and isinstance(dev.state, BlockDevice):
        mark_auto_del(qdev, dev.state)
    kind = qdev.kinds.get(dev.typename)
    if kind is not None:
        style = kind.unplug_request(qdev, dev)
    elif bus is not None and bus.type in SYNC_UNPLUG_BUSES:
        style = UnplugStyle.NOW
    else:
        style = UnplugStyle.GUEST
    if style is UnplugStyle.NOW:
        complete_unplug(qdev, dev)
    else:
        dev.unplug_requested = True
    return style


def complete_unplug(qdev: Qdev, dev: Device) -> list[dict[str, Any]]:
    """The device goes: its children first (a controller's devices, a proxy's
    virtio backend), each with its DEVICE_DELETED, then itself [hw/core/qdev.c
    device_unparent, device_finalize]. Returns the events' data in order."""
    events: list[dict[str, Any]] = []
    for child_bus in list(dev.buses):
        for child in list(child_bus.devices):
            events.extend(complete_unplug(qdev, child))
    kind = qdev.kinds.get(dev.typename)
    if kind is not None:
        kind.unrealize(qdev, dev)
    if isinstance(dev.state, BlockDevice):
        detach_device(qdev, dev.state)
    release_claims(qdev, dev)
    _vacate(dev)
    if dev.bus is not None:
        _bus_remove_child(dev.bus, dev)
    path = dev.path
    dev.node.unparent()
    for bus in dev.buses:
        if bus in qdev.buses:
            qdev.buses.remove(bus)
    if dev in qdev.devices:
        qdev.devices.remove(dev)
    dev.realized = False
    data: dict[str, Any] = {"path": path}
    if dev.id:
        data = {"device": dev.id, "path": path}
    events.append(data)
    if qdev.host is not None:
        qdev.host.emit("DEVICE_DELETED", data)
    return events
