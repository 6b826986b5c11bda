"""HMP's chardev and network commands [hmp.c hmp_info_chardev, hmp_chardev_add,
hmp_chardev_change; net/net.c hmp_info_network; net/slirp.c hmp_hostfwd_*].

`vmm` layer: each function runs the QMP command hmp.c calls (through the dispatcher)
and prints what QEMU 2.11 prints. The option string of chardev-add/-change is read
as `-chardev` is (`devices.chardev.model.backend_from_opts`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schema.errors import GenericError
from schema.opts.qemuopts import OptsError, OptsStore
from vmm.cmdline.groups import GROUPS

if TYPE_CHECKING:
    from vmm.hmp.commands import Args
    from vmm.hmp.interpreter import Hmp


def hmp_info_chardev(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_chardev: "<label>: filename=<filename>" per chardev."""
    for info in hmp.qmp("query-chardev"):
        hmp.printf(f"{info['label']}: filename={info['filename']}\n")


def _chardev_backend(hmp: Hmp, text: str) -> tuple[str, dict[str, Any]]:
    from devices.chardev.model import backend_from_opts

    store = OptsStore(GROUPS)
    try:
        opts = store.parse(GROUPS["chardev"], text, True, ())
    except OptsError as err:
        hmp.printf(f"{err.message}\n{err.hint}")
        raise GenericError("Parsing chardev args failed") from None
    frozen = opts.freeze()
    return frozen.id or "", backend_from_opts(frozen)


def hmp_chardev_add(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_chardev_add: the options as -chardev reads them, then
    qemu_chr_new_from_opts."""
    ident, backend = _chardev_backend(hmp, args["args"])
    hmp.qmp("chardev-add", ident, backend)


def hmp_chardev_change(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_chardev_change: the options may not carry an id of their own."""
    ident, backend = _chardev_backend(hmp, args["args"])
    if ident:
        raise GenericError("Unexpected 'id' parameter")
    hmp.qmp("chardev-change", args["id"], backend)
