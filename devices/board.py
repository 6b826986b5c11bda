"""The boards: which kind a machine type is, and the devices a PC board creates for
the -drives of its interfaces.

Pure model of the `devices` layer [hw/i386/pc_piix.c pc_init1, hw/i386/pc.c
pc_basic_device_init, hw/ide/piix.c pci_piix3_ide_init, hw/scsi/lsi53c895a.c with
scsi_bus_legacy_handle_cmdline; q35 likewise through its AHCI]. `board_drives`
lists them from the block layer's -drive table (through `devices.backends`);
`create_board_devices` attaches them with `devices.qdev`. `board_kind` names the
board of a machine type (its chipset's ports are `devices.chipset`'s).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from devices.backends import DriveLike
from devices.blockdevs import BlockDevice
from devices.qdev import Qdev, attach_device


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


def create_board_devices(qdev: Qdev, *, first_unattached: int = 17) -> list[BlockDevice]:
    """Attach the board devices of `board_drives`, naming them
    /machine/unattached/device[N] from `first_unattached` on (a placeholder: the
    devices issue numbers them as the QOM tree does)."""
    devs = []
    n = first_unattached
    for bd in board_drives(qdev):
        devs.append(attach_device(qdev, bd.driver, {"drive": bd.drive},
                                  qom_path=f"/machine/unattached/device[{n}]"))
        n += 1
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
