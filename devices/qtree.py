"""`info qtree`: the qdev tree of a machine as QEMU 2.11's monitor prints it.

Pure formatting of the `devices` layer, a reader of `devices.qdev` (its buses and
devices), `devices.pci` (ids, BARs) and `devices.usb` (ports, product names)
[qdev-monitor.c hmp_info_qtree, qbus_print, qdev_print, qdev_print_props,
bus_print_dev; hw/core/sysbus.c sysbus_dev_print; hw/pci/pci.c pcibus_dev_print;
hw/isa/isa-bus.c isabus_dev_print; hw/usb/bus.c usb_bus_dev_print;
qapi/string-output-visitor.c (human mode); util/cutils.c size_to_str].

What the model computes (which devices and buses exist, their order, ids, PCI
addresses, USB ports, every property's value) is read from the Qdev. What is a
static fact of a device *class* in QEMU's source is tabled here with its source:
each class's qdev property list in its source order (`dc->props`, which qdev_print
walks from the device's own class up to, not including, `device`), the GPIO lines
realize creates, the MMIO regions a SysBus device maps, the fixed ISA irqs, and the
sizes of the option ROM files (pc-bios/, which size BAR 6).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from schema.errors import QMPError

if TYPE_CHECKING:
    from devices.qdev import Bus, Device, Qdev

# Each class's `dc->props`, in the order its Property array lists them (a class
# that sets none is absent: device_class_base_init does not inherit them).
_BLOCK = ("drive", "logical_block_size", "physical_block_size", "min_io_size",
          "opt_io_size", "discard_granularity", "write-cache", "share-rw")  # DEFINE_BLOCK_PROPERTIES
_IDE_DEV = (*_BLOCK, "rerror", "werror", "ver", "wwn", "serial", "model")  # DEFINE_IDE_DEV_PROPERTIES
_NIC = ("mac", "vlan", "netdev")  # DEFINE_NIC_PROPERTIES
_UHCI_COMPANION = ("masterbus", "firstport", "bandwidth", "maxframes")
QDEV_PROPS: dict[str, tuple[str, ...]] = {
    # hw/timer/hpet.c hpet_device_properties
    "hpet": ("timers", "msi", "hpet-intcap"),
    # hw/intc/ioapic.c ioapic_properties
    "ioapic": ("version",),
    # hw/pci-host/piix.c i440fx_props
    "i440FX-pcihost": ("pci-hole64-size", "short_root_bus", "x-pci-hole64-fix"),
    # hw/pci-host/q35.c q35_host_props, mch_props
    "q35-pcihost": ("MCFG", "pci-hole64-size", "short_root_bus", "below-4g-mem-size",
                    "above-4g-mem-size", "x-pci-hole64-fix"),
    "mch": ("extended-tseg-mbytes",),
    # hw/pci/pci.c pci_props
    "pci-device": ("addr", "romfile", "rombar", "multifunction", "command_serr_enable",
                   "x-pcie-lnksta-dllla", "x-pcie-extcap-init"),
    # hw/acpi/piix4.c piix4_pm_properties
    "PIIX4_PM": ("smb_io_base", "disable_s3", "disable_s4", "s4_val",
                 "acpi-pci-hotplug-with-bridge-support", "memory-hotplug-support"),
    # hw/isa/lpc_ich9.c ich9_lpc_properties
    "ICH9-LPC": ("noreboot", "x-smi-broadcast"),
    # hw/i2c/smbus_eeprom.c smbus_eeprom_properties (a pointer: never printed);
    # hw/i2c/core.c i2c_props
    "smbus-eeprom": ("data",),
    "i2c-slave": ("address",),
    # hw/block/fdc.c isa_fdc_properties, floppy_drive_properties
    "isa-fdc": ("iobase", "irq", "dma", "driveA", "driveB", "check_media_rate",
                "fdtypeA", "fdtypeB", "fallback"),
    "floppy": ("unit", *_BLOCK, "drive-type"),
    # hw/dma/i8257.c i8257_properties
    "i8257": ("base", "page-base", "pageh-base", "dshift"),
    # hw/char/parallel.c parallel_isa_properties; hw/char/serial-isa.c
    "isa-parallel": ("index", "iobase", "irq", "chardev"),
    "isa-serial": ("index", "iobase", "irq", "chardev", "wakeup"),
    # hw/audio/pcspk.c; hw/timer/i8254.c pit_properties; hw/timer/mc146818rtc.c
    "isa-pcspk": ("iobase", "migrate"),
    "isa-pit": ("iobase",),
    "mc146818rtc": ("base_year", "lost_tick_policy"),
    # hw/intc/i8259_common.c pic_properties_common
    "pic-common": ("iobase", "elcr_addr", "elcr_mask", "master"),
    # hw/i386/vmmouse.c vmmouse_properties (a pointer: never printed)
    "vmmouse": ("ps2_mouse",),
    # hw/net/e1000.c e1000_properties; hw/net/e1000e.c, rtl8139.c (NIC only)
    "e1000": (*_NIC, "autonegotiation", "mitigation", "extra_mac_registers"),
    "e1000-82544gc": (*_NIC, "autonegotiation", "mitigation", "extra_mac_registers"),
    "e1000-82545em": (*_NIC, "autonegotiation", "mitigation", "extra_mac_registers"),
    "rtl8139": _NIC,
    # hw/display/vga-pci.c vga_pci_properties, secondary_pci_properties
    "VGA": ("vgamem_mb", "mmio", "qemu-extended-regs"),
    "secondary-vga": ("vgamem_mb", "qemu-extended-regs"),
    # hw/ide/qdev.c ide_props, ide_hd_properties, ide_cd_properties
    "ide-device": ("unit",),
    "ide-cd": _IDE_DEV,
    "ide-drive": _IDE_DEV,
    "ide-hd": (*_IDE_DEV, "cyls", "heads", "secs", "bios-chs-trans", "rotation_rate"),
    # hw/nvram/fw_cfg.c fw_cfg_io_properties
    "fw_cfg_io": ("dma_enabled", "x-file-slots"),
    # hw/virtio/virtio-pci.c virtio_pci_properties and the proxies' own
    "virtio-pci": ("virtio-pci-bus-master-bug-migration", "disable-legacy",
                   "disable-modern", "migrate-extra", "modern-pio-notify", "x-disable-pcie",
                   "page-per-vq", "x-ignore-backend-features", "ats", "x-pcie-deverr-init",
                   "x-pcie-lnkctl-init", "x-pcie-pm-init"),
    "virtio-net-pci": ("ioeventfd", "vectors"),
    "virtio-blk-pci": ("class", "ioeventfd", "vectors"),
    "virtio-scsi-pci": ("ioeventfd", "vectors"),
    "virtio-serial-pci": ("ioeventfd", "vectors", "class"),
    "virtio-balloon-pci": ("class",),
    # hw/block/virtio-blk.c virtio_blk_properties (a Linux build has `scsi`)
    "virtio-blk-device": (*_BLOCK, "rerror", "werror", "cyls", "heads", "secs", "serial",
                          "config-wce", "scsi", "request-merging", "num-queues",
                          "iothread"),
    # hw/virtio/virtio.c virtio_properties (DEFINE_VIRTIO_COMMON_FEATURES)
    "virtio-device": ("indirect_desc", "event_idx", "notify_on_empty", "any_layout",
                      "iommu_platform"),
    # hw/net/virtio-net.c virtio_net_properties
    "virtio-net-device": (
        "csum", "guest_csum", "gso", "guest_tso4", "guest_tso6", "guest_ecn", "guest_ufo",
        "guest_announce", "host_tso4", "host_tso6", "host_ecn", "host_ufo", "mrg_rxbuf",
        "status", "ctrl_vq", "ctrl_rx", "ctrl_vlan", "ctrl_rx_extra", "ctrl_mac_addr",
        "ctrl_guest_offloads", "mq", *_NIC, "x-txtimer", "x-txburst", "tx",
        "rx_queue_size", "tx_queue_size", "host_mtu", "x-mtu-bypass-backend"),
    # hw/usb/bus.c usb_props; hw/usb/dev-hid.c; hw/usb/hcd-uhci.c (the companion
    # list for the controllers that cannot be hot-plugged)
    "usb-device": ("port", "serial", "full-path", "msos-desc"),
    "usb-tablet": ("usb_version", "display", "head"),
    "usb-mouse": ("usb_version",),
    "usb-kbd": ("usb_version", "display"),
    "piix3-usb-uhci": _UHCI_COMPANION,
    "piix4-usb-uhci": _UHCI_COMPANION,
    **{f"ich9-usb-uhci{n}": _UHCI_COMPANION for n in range(1, 7)},
    "vt82c686b-usb-uhci": ("bandwidth", "maxframes"),
}

# The named GPIO lists realize creates, as qdev_print lists them (newest name first):
# (name, gpio-in count, gpio-out count) [hw/timer/hpet.c hpet_realize (sysbus_init_irq
# makes "sysbus-irq"), hw/intc/ioapic.c, hw/i386/pc.c port92_initfn, hw/input/pckbd.c
# i8042_initfn, hw/timer/i8254_common.c, hw/timer/mc146818rtc.c, hw/intc/i8259_common.c
# (pic_common_realize), hw/isa/lpc_ich9.c ich9_lpc_initfn].
GPIOS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "hpet": (("", 2, 1), ("sysbus-irq", 0, 32)),
    "ioapic": (("", 24, 0),),
    "port92": (("a20", 0, 1),),
    "i8042": (("a20", 0, 1),),
    "isa-pit": (("", 1, 1),),
    "mc146818rtc": (("", 0, 1),),
    "isa-i8259": (("", 8, 1),),
    "ICH9-LPC": (("gsi", 0, 24),),
}

# SysBus MMIO regions (address, size) [hw/timer/hpet.c (HPET_BASE, HPET_LEN),
# hw/intc/ioapic.c (IO_APIC_DEFAULT_ADDRESS, 0x1000)].
SYSBUS_MMIO: dict[str, tuple[tuple[int, int], ...]] = {
    "hpet": ((0xFED00000, 0x400),),
    "ioapic": ((0xFEC00000, 0x1000),),
}

# ISA irqs a device takes that are not its `irq` property [hw/input/pckbd.c
# i8042_realizefn: the keyboard's 1 and the mouse's 12].
ISA_IRQS: dict[str, tuple[int, ...]] = {"i8042": (1, 12)}
# Devices whose `irq` property is the one ISA irq they take (isa_init_irq).
_ISA_IRQ_PROP = frozenset({"isa-fdc", "isa-serial", "isa-parallel"})

# Sizes of QEMU 2.11.0's option ROM files (pc-bios/), which BAR 6 rounds up to a
# power of two [hw/pci/pci.c pci_add_option_rom].
ROM_FILE_SIZES = {
    "efi-e1000.rom": 240128, "efi-e1000e.rom": 240128, "efi-eepro100.rom": 240128,
    "efi-ne2k_pci.rom": 238080, "efi-pcnet.rom": 238080, "efi-rtl8139.rom": 241664,
    "efi-virtio.rom": 242176, "efi-vmxnet3.rom": 236032, "vgabios-cirrus.bin": 38400,
    "vgabios-qxl.bin": 38912, "vgabios-stdvga.bin": 38912, "vgabios-virtio.bin": 38912,
    "vgabios-vmware.bin": 38912, "vgabios.bin": 38400,
}

# A legacy virtio PCI function's subsystem id is its virtio device id
# [hw/virtio/virtio-pci.c virtio_pci_device_plugged]; everything else keeps
# do_pci_register_device's Red Hat/QEMU default 1af4:1100.
_VIRTIO_SUBSYSTEM = {0x1000: 1, 0x1001: 2, 0x1002: 5, 0x1003: 3, 0x1004: 8, 0x1005: 4}

_INTS = frozenset({"uint4", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
                   "int32", "int64", "int"})
_STRINGS = frozenset({"str", "string"})


def size_to_str(val: int) -> str:
    """util/cutils.c size_to_str: three significant digits and a binary suffix."""
    suffixes = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
    _, exp = math.frexp(val / (1000.0 / 1024.0))
    i = int((exp - 1) / 10)  # C's division truncates toward zero
    return f"{val / (1 << (i * 10)):.3g} {suffixes[i]}B"


def print_value(type_: str, value: Any) -> str:
    """object_property_print with a human string output visitor: integers as
    `N (0xN)` (uint64 through int64, as 2.11's FIXME says), sizes as `N (X MiB)`,
    booleans, and strings and enums quoted."""
    if type_ == "bool" or isinstance(value, bool):
        return "true" if value else "false"
    if type_ == "size" and isinstance(value, int):
        return f"{value} ({size_to_str(value)})"
    if type_ in _INTS and isinstance(value, int):
        unsigned = value & 0xFFFFFFFFFFFFFFFF
        signed = unsigned - (1 << 64) if unsigned >> 63 else unsigned
        return f"{signed} (0x{unsigned:x})"
    if value is None:
        return "<null>"
    return f'"{value}"'


def _prop_value(dev: Device, name: str, links: frozenset[str] = frozenset()) -> str | None:
    """One line's value of qdev_print_props: the `legacy-<name>` string when the
    property has one, else the property printed; None when reading fails (QEMU
    skips the property). `links`: the type's link<> properties, which the model
    keeps only once set (unset, the link's getter gives "")."""
    node = dev.node
    if name in links and name not in node.props:
        return '""'
    try:
        legacy = node.props.get(f"legacy-{name}")
        if legacy is not None:
            return str(node.get(legacy.name))
        prop = node.props.get(name)
        if prop is None:
            return None
        return print_value(prop.type, node.get(name))
    except QMPError:
        return None


def _class_chain(qdev: Qdev, dev: Device) -> tuple[list[str], frozenset[str]]:
    """The device's class and its parents, up to (not including) `device`, and the
    names of the type's link<> properties."""
    from devices.qdev import type_info

    info = type_info(qdev.catalog, dev.typename) if qdev.catalog is not None else None
    chain = [dev.typename, *(info.ancestors if info is not None else ())]
    links = frozenset(name for name, (type_, _) in (info.props.items() if info else ())
                      if type_.startswith("link<"))
    return (chain[:chain.index("device")] if "device" in chain else chain), links


class _Printer:
    def __init__(self, qdev: Qdev) -> None:
        self.qdev = qdev
        self.lines: list[str] = []
        self.usb_buses = [b for b in qdev.buses if b.type == "usb-bus"]

    def out(self, indent: int, text: str) -> None:
        self.lines.append(" " * indent + text)

    def bus(self, bus: Bus, indent: int) -> None:
        """qbus_print: the bus, its type, its devices newest first."""
        self.out(indent, f"bus: {bus.name}")
        indent += 2
        self.out(indent, f"type {bus.type}")
        for dev in reversed(bus.devices):
            self.device(dev, indent)

    def device(self, dev: Device, indent: int) -> None:
        """qdev_print: GPIOs, each class's properties, the bus's lines, child buses
        (newest first)."""
        self.out(indent, f'dev: {dev.typename}, id "{dev.id or ""}"')
        indent += 2
        for name, n_in, n_out in GPIOS.get(dev.typename, ()):
            if n_in:
                self.out(indent, f'gpio-in "{name}" {n_in}')
            if n_out:
                self.out(indent, f'gpio-out "{name}" {n_out}')
        chain, links = _class_chain(self.qdev, dev)
        for cls in chain:
            for name in QDEV_PROPS.get(cls, ()):
                value = _prop_value(dev, name, links)
                if value is not None:
                    self.out(indent, f"{name} = {value or '<null>'}")
        if dev.bus is not None:
            self.bus_dev(dev.bus, dev, indent)
        for child in reversed(dev.buses):
            self.bus(child, indent)

    def bus_dev(self, bus: Bus, dev: Device, indent: int) -> None:
        """bus_print_dev: the bus class's print_dev."""
        if bus.type == "System":
            for addr, size in SYSBUS_MMIO.get(dev.typename, ()):
                self.out(indent, f"mmio {addr:016x}/{size:016x}")
        elif bus.type in ("PCI", "PCIE"):
            self.pci_dev(dev, indent)
        elif bus.type == "ISA":
            irqs = ISA_IRQS.get(dev.typename, ())
            if dev.typename in _ISA_IRQ_PROP and "irq" in dev.node.props:
                irq = dev.node.get("irq")
                irqs = (irq,) if isinstance(irq, int) else irqs
            if len(irqs) > 1:
                self.out(indent, f"isa irqs {irqs[0]},{irqs[1]}")
            elif irqs:
                self.out(indent, f"isa irq {irqs[0]}")
        elif bus.type == "usb-bus":
            from devices.usb import PRODUCT

            number = self.usb_buses.index(bus) if bus in self.usb_buses else 0
            port = dev.props.get("usb-port")
            attached = ", attached" if port else ""
            self.out(indent, f"addr {number}.0, port {port or '-'}, speed 12, name "
                             f"{PRODUCT.get(dev.typename, dev.typename)}{attached}")

    def pci_dev(self, dev: Device, indent: int) -> None:
        """pcibus_dev_print: class, address, ids, then every BAR of a non-zero size
        (unmapped under -S: PCI_BAR_UNMAPPED, the end wrapping around)."""
        from devices.pci import CLASS_DESC, PCI_IDS, PciIds

        ids = PCI_IDS.get(dev.typename, PciIds(0, 0, 0))
        desc = CLASS_DESC.get(ids.cls, f"Class {ids.cls:04x}")
        devfn = dev.props.get("addr", 0)
        devfn = devfn if isinstance(devfn, int) and devfn >= 0 else 0
        sub = _VIRTIO_SUBSYSTEM.get(ids.device, 0x1100) if ids.vendor == 0x1AF4 else 0x1100
        self.out(indent, f"class {desc}, addr 00:{devfn >> 3:02x}.{devfn & 7:x}, pci id "
                         f"{ids.vendor:04x}:{ids.device:04x} (sub 1af4:{sub:04x})")
        bars = [(n, kind, size) for n, kind, size, _pf, _w in ids.bars]
        rom = _rom_size(dev)
        if rom:
            bars.append((6, "memory", rom))
        unmapped = 0xFFFFFFFFFFFFFFFF
        for n, kind, size in sorted(bars):
            end = (unmapped + size - 1) & 0xFFFFFFFFFFFFFFFF
            self.out(indent, f"bar {n}: {'i/o' if kind == 'io' else 'mem'} at "
                             f"0x{unmapped:x} [0x{end:x}]")


def _rom_size(dev: Device) -> int:
    """pci_add_option_rom: BAR 6 when the device has a ROM file and rombar is on."""
    node = dev.node
    try:
        romfile = node.get("romfile") if "romfile" in node.props else ""
        rombar = node.get("rombar") if "rombar" in node.props else 1
    except QMPError:
        return 0
    if not romfile or not rombar or romfile not in ROM_FILE_SIZES:
        return 0
    size = ROM_FILE_SIZES[romfile]
    return 1 << (size - 1).bit_length()


def info_qtree(qdev: Qdev) -> str:
    """hmp_info_qtree: the main system bus and everything below it, one line each
    (LF ends; the monitor makes them CR LF)."""
    printer = _Printer(qdev)
    qdev.root  # noqa: B018 - builds the board's tree
    sysbus = next((b for b in qdev.buses if b.type == "System" and b.parent is None), None)
    if sysbus is None:
        printer.out(0, "bus: main-system-bus")
        printer.out(2, "type System")
    else:
        printer.bus(sysbus, 0)
    return "".join(line + "\n" for line in printer.lines)
