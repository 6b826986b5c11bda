"""The block devices of QEMU's command line: -blockdev, -drive, default drives, -device.

Composition in the `vmm` layer: it feeds the values `vmm.cmdline` parsed to the block
layer's entry points (`blockdev.drive`) and to qdev (`devices.board`, `devices.qdev`)
in the order vl.c's configure_blockdev and machine init use: every -blockdev, then
every -drive, then the machine's default drives (a CD-ROM at index 2 of the
default interface, a floppy, an SD card), then the devices the board creates for
its interfaces' drives, then each -device with a drive (followed by those that
`if=virtio` drives imply). A failure is QEMU's message at the option's location;
the program prints it and exits 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from blockdev.drive import add_blockdev, add_drive, drive_get, if_max_devs
from blockdev.layer import BlockLayer
from devices.blockdevs import DEVICE_KINDS
from devices.board import create_board_devices
from devices.qdev import Qdev, attach_device
from schema.errors import QMPError
from schema.model import Schema
from vmm.cmdline import CommandLine, CommandLineError, Diagnostic, Location

# vl.c CDROM_OPTS, FD_OPTS, SD_OPTS with the interface and index drive_add adds.
DEFAULT_DRIVES = {
    "cdrom": ("ide", (("media", "cdrom"), ("index", "2"))),
    "floppy": ("floppy", (("if", "floppy"), ("index", "0"))),
    "sdcard": ("sd", (("if", "sd"), ("index", "0"))),
}


def _fail(err: QMPError, location: Location) -> CommandLineError:
    return CommandLineError(Diagnostic(err.desc, location=location))


def configure_block(layer: BlockLayer, qdev: Qdev, cl: CommandLine, schema: Schema,
                    machine_type: str) -> None:
    """Build the block graph and attach block devices as QEMU's start-up does."""
    for bdo in cl.blockdevs:
        try:
            add_blockdev(layer, bdo.options, keyval=not bdo.json, schema=schema)
        except QMPError as err:
            raise _fail(err, bdo.location) from None
    # hw/i386/pc_q35.c: units_per_default_bus = 1 (one disk per AHCI port)
    units = 1 if "q35" in machine_type else 0
    implied: list[tuple[tuple[tuple[str, str], ...], Location]] = []
    for drive in cl.drives:
        try:
            result = add_drive(layer, _with_id(drive.id, drive.items),
                               units_per_default_bus=units)
        except QMPError as err:
            raise _fail(err, drive.location) from None
        if result.implied_device is not None:
            implied.append((result.implied_device, drive.location))
    defaults = cl.defaults
    wanted = {"cdrom": defaults.cdrom,
              # hw/i386/pc_q35.c sets no_floppy on every q35 machine type
              "floppy": defaults.floppy and "q35" not in machine_type,
              "sdcard": defaults.sdcard}
    for kind, (iface, opts) in DEFAULT_DRIVES.items():
        if not wanted[kind] or _has_index(layer, iface, opts, units):
            continue
        try:
            add_drive(layer, opts, is_default=True, units_per_default_bus=units)
        except QMPError as err:
            raise _fail(err, ()) from None
    try:
        create_board_devices(qdev)
    except QMPError as err:
        raise _fail(err, ()) from None
    devices: list[tuple[Sequence[tuple[str, str]], Location]] = [
        (_with_id(d.id, d.items), d.location) for d in cl.devices]
    devices.extend(implied)
    for items, location in devices:
        props = dict(items)
        driver = props.get("driver")
        if driver is None or driver not in DEVICE_KINDS:
            continue  # not a block device: the devices issue builds it
        try:
            attach_device(qdev, driver, props)
        except QMPError as err:
            raise _fail(err, location) from None


def _with_id(ident: str | None, items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """QemuOpts keep `id=` apart from the other options; the block layer wants it back."""
    return [("id", ident), *items] if ident is not None else list(items)


def _has_index(layer: BlockLayer, iface: str, opts: tuple[tuple[str, str], ...],
               units_per_default_bus: int) -> bool:
    """drive_get_by_index: a -drive already took this interface and index."""
    index = int(dict(opts)["index"])
    max_devs = if_max_devs(iface, "ide", units_per_default_bus)
    bus, unit = divmod(index, max_devs) if max_devs else (0, index)
    return drive_get(layer, iface, bus, unit) is not None
