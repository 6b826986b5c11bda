"""`change`: the one command that spans the block layer and the display.

Composition in the `vmm` layer [qmp.c qmp_change, qmp_change_vnc,
qmp_change_vnc_listen]. `change vnc ...` goes to the VNC displays
(`devices.display.vnc`): `password`/`passwd` sets the password (the argument is
required), anything else is a new `-vnc` option string for the display `default`
(no `id=`, parsed as ui/vnc.c vnc_parse parses -vnc). Any other device name is
blockdev-change-medium with the target as file name and `arg` as format
(`blockdev.media.change_medium`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from blockdev import media
from blockdev.layer import BlockLayer
from schema.errors import QERR_MISSING_PARAMETER, GenericError
from schema.handlers import qmp_command
from schema.opts.qemuopts import OptsError, OptsStore
from vmm.cmdline import GROUPS

if TYPE_CHECKING:
    from devices.display.vnc import VncDisplays


class ChangeCommand:
    """The `change` handler of one machine."""

    def __init__(self, block: BlockLayer, vnc: Callable[[], VncDisplays]) -> None:
        self.block = block
        self.vnc = vnc  # built on first use

    @qmp_command("change")
    def change(self, device: str, target: str, arg: str | None = None) -> None:
        """qmp.c qmp_change: VNC, or blockdev-change-medium by device name."""
        if device == "vnc":
            self._change_vnc(target, arg)
            return
        media.change_medium(self.block, device, None, target, arg, None)

    def _change_vnc(self, target: str, arg: str | None) -> None:
        """qmp_change_vnc."""
        if target in ("passwd", "password"):
            if arg is None:
                raise GenericError(QERR_MISSING_PARAMETER % "password")
            self.vnc().set_password(arg)
            return
        # qmp_change_vnc_listen
        if "id=" in target:
            raise GenericError("id not supported")
        vnc = GROUPS["vnc"]
        try:
            opts = OptsStore({"vnc": vnc}).parse(vnc, target, True, ())
        except OptsError as err:
            raise GenericError(err.message) from None
        self.vnc().reopen("default", opts.freeze().as_dict())
