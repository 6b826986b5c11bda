"""The boards: which kind a machine type is, the devices a PC board creates, in
QEMU's order, and the QOM tree they make.

Pure model of the `devices` layer [hw/i386/pc_piix.c pc_init1, hw/i386/pc_q35.c
pc_q35_init, hw/i386/pc.c pc_basic_device_init, pc_vga_init, pc_nic_init,
pc_cpus_init, hw/ide/piix.c pci_piix3_ide_init, hw/isa/lpc_ich9.c,
hw/acpi/piix4.c piix4_pm_init, hw/i2c/smbus_eeprom.c smbus_eeprom_init,
hw/scsi/lsi53c895a.c with scsi_bus_legacy_handle_cmdline; hw/core/qdev.c
device_set_realized numbers the devices without a parent]. `BoardConfig` is what the
command line decides (-nodefaults, -serial, -vga, -net, -usb, -smp, -m);
`board_steps` lists the devices in creation order (cheap: start-up numbers the
board's block devices with it); `build_tree` makes the QOM tree of
`devices.qdev`/`devices.qom` from it on first use. `board_drives` lists the devices
for the -drives of the board's interfaces (through `devices.backends`);
`create_board_devices` attaches them with `devices.qdev`. `board_kind` names the
board of a machine type (its chipset's ports are `devices.chipset`'s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from devices.backends import DriveLike
from devices.blockdevs import BlockDevice
from devices.qdev import (
    Bus,
    Device,
    Qdev,
    attach_device,
    new_bus,
    new_device,
    realize,
    template_of,
    type_info,
)


@attrs.frozen
class BoardDrive:
    """A device the board creates for an `if=` drive (pc: IDE, floppy, SCSI)."""

    drive: str
    driver: str
    bus: int
    unit: int


_BOARD_INTERFACES: tuple[tuple[str, Callable[[DriveLike], str]], ...] = (
    ("floppy", lambda d: "floppy"),
    ("ide", lambda d: "ide-cd" if d.media_cd else "ide-hd"),
    ("scsi", lambda d: "scsi-cd" if d.media_cd else "scsi-hd"),
)


def board_drives(qdev: Qdev) -> list[BoardDrive]:
    """The devices pc_init1 creates for the -drives of its interfaces, in its order:
    floppies (pc_basic_device_init), then IDE (pci_piix3_ide_init), then SCSI
    (the lsi controller's legacy drives)."""
    out: list[BoardDrive] = []
    drives = qdev.block.legacy_drives()
    for iface, pick in _BOARD_INTERFACES:
        for name, d in sorted((nd for nd in drives if nd[1].type == iface),
                              key=lambda nd: (nd[1].bus, nd[1].unit)):
            out.append(BoardDrive(drive=name, driver=pick(d), bus=d.bus, unit=d.unit))
    return out


def create_board_devices(qdev: Qdev) -> list[BlockDevice]:
    """Attach the board devices of `board_drives`, each named
    /machine/unattached/device[N] with the N the board's creation order gives it
    (`board_steps`); the QOM tree, built later, finds them by that path."""
    devs = []
    config = qdev.board if isinstance(qdev.board, BoardConfig) else BoardConfig()
    drives = board_drives(qdev)
    numbers = unattached_numbers(board_steps(config, drives))
    for i, bd in enumerate(drives):
        path = f"/machine/unattached/device[{numbers.get(('drive', i), 0)}]"
        dev = attach_device(qdev, bd.driver, {"drive": bd.drive}, qom_path=path)
        qdev.board_block_devices[path] = dev
        devs.append(dev)
    return devs


def board_kind(machine_type: str) -> str:
    """`none`, `isapc`, `q35` or `i440fx` for a machine type name."""
    if machine_type == "none":
        return "none"
    if machine_type == "isapc":
        return "isapc"
    if "q35" in machine_type:
        return "q35"
    return "i440fx"


# -- the board's devices -------------------------------------------------------------

SERIAL_IO = ((0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3))  # hw/char/serial-isa.c
PARALLEL_IO = ((0x378, 7), (0x278, 7), (0x3BC, 7))  # hw/char/parallel.c
VGA_TYPES = {"std": "VGA", "cirrus": "cirrus-vga", "vmware": "vmware-svga",
             "virtio": "virtio-vga", "qxl": "qxl-vga"}


@attrs.frozen
class Nic:
    """A NIC of `-net nic` (nd_table): its model, the netdev it peers with, its MAC."""

    model: str = "e1000"
    netdev: str = "hub0port0"
    mac: str = "52:54:00:12:34:56"


@attrs.frozen
class BoardConfig:
    """What the command line decides about the board's own devices."""

    kind: str = "i440fx"  # board_kind
    machine_type: str = "pc-i440fx-2.11"  # the resolved machine type name
    defaults: bool = True  # not -nodefaults (picks the recorded machine wiring)
    cpu_type: str = "qemu64-x86_64-cpu"
    cpus: int = 1
    ram_bytes: int = 128 << 20
    serials: tuple[str, ...] = ()  # chardev ids of -serial, in order
    parallels: tuple[str, ...] = ()
    vga: str | None = None  # -vga model (std, cirrus, ...) or None
    nics: tuple[Nic, ...] = ()
    usb: bool = False  # -usb / -machine usb=on
    hpet: bool = True

    @classmethod
    def of(cls, machine_type: str, cpu_model: str | None, cpus: int, ram_bytes: int,
           **devices: Any) -> BoardConfig:
        """The board of a machine type, with the CPUs and RAM of the options and
        the default devices `devices` names (none: a -nodefaults board)."""
        return cls(kind=board_kind(machine_type), machine_type=machine_type,
                   cpu_type=f"{cpu_model or 'qemu64'}-x86_64-cpu", cpus=max(cpus, 1),
                   ram_bytes=ram_bytes, defaults=bool(devices.pop("defaults", False)),
                   **devices)


@attrs.frozen
class Step:
    """One device the board creates: its type, where it goes (`name` under the
    `parent` step's node or the machine (-1); unattached when `name` is None), the
    bus it sits on (`bus`: (step, n-th bus of that step), or "sysbus"), its
    properties, the buses it creates ((type, name or None)), and, for a device of a
    -drive, the index of that drive in `board_drives`."""

    typename: str
    bus: tuple[int, int] | str | None = None
    name: str | None = None
    parent: int = -1
    props: tuple[tuple[str, Any], ...] = ()
    buses: tuple[tuple[str, str | None], ...] = ()
    drive: int | None = None
    hotplug_handler_of: tuple[int, int] | None = None  # PIIX4_PM handles pci.0


def board_steps(config: BoardConfig, drives: list[BoardDrive]) -> list[Step]:
    """The devices of the board in creation order (pc_init1 / pc_q35_init)."""
    if config.kind not in ("i440fx", "q35"):
        return []
    steps: list[Step] = []

    def add(step: Step) -> int:
        steps.append(step)
        return len(steps) - 1

    q35 = config.kind == "q35"
    add(Step(config.cpu_type, props=(("apic-id", 0),)))
    add(Step("kvmvapic", bus="sysbus"))
    for n in range(1, config.cpus):
        add(Step(config.cpu_type, props=(("apic-id", n),)))
    add(Step("fw_cfg_io", bus="sysbus", name="fw_cfg"))
    if q35:
        host = add(Step("q35-pcihost", bus="sysbus", name="q35",
                        buses=(("PCIE", "pcie.0"),)))
        add(Step("mch", bus=(host, 0), name="mch", parent=host, props=(("addr", 0),)))
        add(Step("ioapic", bus="sysbus", name="ioapic", parent=host))
        isa = add(Step("ICH9-LPC", bus=(host, 0), props=(("addr", 0xF8),),
                       buses=(("ISA", "isa.0"),)))
    else:
        host = add(Step("i440FX-pcihost", bus="sysbus", name="i440fx",
                        buses=(("PCI", "pci.0"),)))
        add(Step("i440FX", bus=(host, 0), props=(("addr", 0),)))
        isa = add(Step("PIIX3", bus=(host, 0), props=(("addr", 8),),
                       buses=(("ISA", "isa.0"),)))
        add(Step("ioapic", bus="sysbus", name="ioapic", parent=host))
    pci = (host, 0)
    add(Step("isa-i8259", bus=(isa, 0)))
    add(Step("isa-i8259", bus=(isa, 0), props=(("master", False), ("iobase", 0xA0),
                                                ("elcr_addr", 0x4D1), ("elcr_mask", 0xDE))))
    if config.vga and not q35:
        add(Step(VGA_TYPES.get(config.vga, "VGA"), bus=pci))
    if config.hpet:
        add(Step("hpet", bus="sysbus"))
    for typename in ("mc146818rtc", "isa-pit", "isa-pcspk"):
        add(Step(typename, bus=(isa, 0)))
    for i, chardev in enumerate(config.serials[:len(SERIAL_IO)]):
        add(Step("isa-serial", bus=(isa, 0), props=(
            ("index", i), ("iobase", SERIAL_IO[i][0]), ("irq", SERIAL_IO[i][1]),
            ("chardev", chardev))))
    for i, chardev in enumerate(config.parallels[:len(PARALLEL_IO)]):
        add(Step("isa-parallel", bus=(isa, 0), props=(
            ("index", i), ("iobase", PARALLEL_IO[i][0]), ("irq", PARALLEL_IO[i][1]),
            ("chardev", chardev))))
    for typename in ("i8042", "vmport", "vmmouse", "port92"):
        add(Step(typename, bus=(isa, 0)))
    add(Step("i8257", bus=(isa, 0)))
    add(Step("i8257", bus=(isa, 0), props=(("dshift", 1), ("base", 0xC0),
                                            ("page-base", 0x88))))
    if not q35:
        fdc = add(Step("isa-fdc", bus=(isa, 0), buses=(("floppy-bus", None),)))
        for i, bd in enumerate(drives):
            if bd.driver == "floppy":
                add(Step("floppy", bus=(fdc, 0), drive=i,
                         props=(("unit", bd.unit), ("drive", bd.drive))))
        _nics(config, pci, add)
        ide = add(Step("piix3-ide", bus=pci, props=(("addr", 9),),
                       buses=(("IDE", None), ("IDE", None))))
        _ide_drives(drives, ide, 2, add)
        if config.usb:
            add(Step("piix3-usb-uhci", bus=pci, props=(("addr", 10),),
                     buses=(("usb-bus", None),)))
        pm = add(Step("PIIX4_PM", bus=pci, props=(("addr", 11),),
                      buses=(("i2c-bus", "i2c"),), hotplug_handler_of=pci))
    else:
        ahci = add(Step("ich9-ahci", bus=pci, props=(("addr", 0xFA),),
                        buses=tuple(("IDE", None) for _ in range(6))))
        _ide_drives(drives, ahci, 1, add)
        pm = add(Step("ICH9 SMB", bus=pci, props=(("addr", 0xFB),),
                      buses=(("i2c-bus", "i2c"),)))
    for i in range(8):
        add(Step("smbus-eeprom", bus=(pm, 0), props=(("address", 0x50 + i),)))
    if q35:
        if config.vga:
            add(Step(VGA_TYPES.get(config.vga, "VGA"), bus=pci))
        _nics(config, pci, add)
        if config.usb:
            add(Step("ich9-usb-uhci1", bus=pci, buses=(("usb-bus", None),)))
    return steps


def _nics(config: BoardConfig, pci: tuple[int, int], add: Callable[[Step], int]) -> None:
    for nic in config.nics:
        add(Step(nic.model, bus=pci, props=(("mac", nic.mac), ("netdev", nic.netdev))))


def _ide_drives(drives: list[BoardDrive], controller: int, units: int,
                add: Callable[[Step], int]) -> None:
    """ide_create_drive for each IDE drive: bus index/units, unit index%units."""
    for i, bd in enumerate(drives):
        if bd.driver in ("ide-hd", "ide-cd"):
            add(Step(bd.driver, bus=(controller, bd.bus), drive=i,
                     props=(("unit", bd.unit), ("drive", bd.drive))))


def unattached_numbers(steps: list[Step]) -> dict[tuple[str, int], int]:
    """The /machine/unattached/device[N] number of every step without a name (by
    ("step", index)) and of every drive's device (by ("drive", drive index))."""
    out: dict[tuple[str, int], int] = {}
    n = 0
    for i, step in enumerate(steps):
        if step.name is None:
            out[("step", i)] = n
            if step.drive is not None:
                out[("drive", step.drive)] = n
            n += 1
    return out


def build_tree(qdev: Qdev) -> None:
    """The QOM tree of the board: the machine object, its containers, the main
    system bus and every device of `board_steps` with its buses, in QEMU's order."""
    from devices.qom import QomObject, container

    root = qdev.root
    config = qdev.board if isinstance(qdev.board, BoardConfig) else None
    board = "pc" if config is None or config.kind != "q35" else "q35"
    variant = f"{board}-{'defaults' if config is None or config.defaults else 'nodefaults'}"
    mtype = f"{config.machine_type if config else 'pc-i440fx-2.11'}-machine"
    machine = QomObject(mtype)
    root.add_child("machine", machine)
    root.add_child("chardevs", container())
    if qdev.catalog is None or config is None or config.kind not in ("i440fx", "q35"):
        for name in ("peripheral", "peripheral-anon", "unattached"):
            machine.add_child(name, container())
        return
    from devices.qdev import _apply_template

    tmpl = qdev.catalog.qom_templates()["boards"][variant]["machine"]
    _apply_template(qdev, machine, tmpl, machine)
    unattached = machine.child("unattached")
    assert unattached is not None
    _ram_sizes(unattached, config.ram_bytes)
    sysbus = new_bus(qdev, None, "System", "main-system-bus")
    unattached.add_child("sysbus", sysbus.node)
    sysbus.node.name = "sysbus"
    made: list[Device] = []
    drives = board_drives(qdev) if qdev.block is not None else []
    for step in board_steps(config, drives):
        made.append(_make(qdev, step, made, sysbus, machine))


def _make(qdev: Qdev, step: Step, made: list[Device], sysbus: Bus, machine: Any) -> Device:
    info = type_info(qdev.catalog, step.typename)
    assert info is not None, step.typename
    bus: Bus | None
    if step.bus == "sysbus":
        bus = sysbus
    elif isinstance(step.bus, tuple):
        bus = made[step.bus[0]].buses[step.bus[1]]
    else:
        bus = None
    parent = None
    if step.name is not None:
        parent = machine if step.parent < 0 else made[step.parent].node
    template = None
    if step.name is None:
        k = sum(1 for d in made if d.typename == step.typename and d.node.parent is not None
                and d.node.parent.name == "unattached")
        if k and template_of(qdev, "devices", f"{step.typename}#{k}") is not None:
            template = f"{step.typename}#{k}"
    dev = new_device(qdev, info, ident=None, bus=bus, parent=parent, name=step.name,
                     template=template)
    dev.hotplugged = False
    for name, value in step.props:
        dev.props[name] = value
        _override(dev, name, value)
    if step.drive is not None:
        dev.state = qdev.board_block_devices.get(
            f"/machine/unattached/device[{qdev.unattached_count}]")
    realize(qdev, dev)
    for bus_type, bus_name in step.buses:
        child = new_bus(qdev, dev, bus_type, bus_name, hotplug=bus_type == "usb-bus")
        child.extra["realized"] = True
        if bus_type == "usb-bus":
            from devices.usb import setup_usb_bus

            setup_usb_bus(child, dev.typename)
    if step.hotplug_handler_of is not None:
        target = made[step.hotplug_handler_of[0]].buses[step.hotplug_handler_of[1]]
        target.extra["handler"] = dev
        target.hotplug = True
    if dev.typename in ("i440FX-pcihost", "q35-pcihost"):
        from devices.pci import setup_root_bus

        setup_root_bus(dev.buses[0])
    if bus is not None and bus.type in ("PCI", "PCIE"):
        from devices.pci import plug_pci

        plug_pci(dev, bus, step_addr=dict(step.props).get("addr"))
    return dev


def _override(dev: Device, name: str, value: Any) -> None:
    """A board-set property: its value replaces the type's recorded one."""
    prop = dev.node.props.get(name)
    if prop is not None:
        prop.get = lambda: value
    else:
        dev.node.add_property(name, "str", get=lambda: value)


def _ram_sizes(unattached: Any, ram_bytes: int) -> None:
    """pc.ram is the whole RAM; ram-below-4g the part under the PCI hole
    [hw/i386/pc.c pc_memory_init; pc_piix.c lowmem 0xe0000000, q35 0xb0000000]."""
    for name in ("pc.ram[0]", "ram-below-4g[0]"):
        region = unattached.child(name)
        if region is not None and "size" in region.props:
            size = ram_bytes if name == "pc.ram[0]" else min(ram_bytes, 0xE0000000)
            region.props["size"].get = lambda size=size: size
