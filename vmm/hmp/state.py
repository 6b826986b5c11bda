"""What the human monitors of one machine share, kept apart from the interpreter.

`vmm` layer, pure. monitor.c keeps some HMP state in statics (the last memory dump
format, the log mask); here it belongs to the machine, and the composition root
(`vmm.vm`) creates it without loading the interpreter, which is imported on the
first use of a human monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from blockdev.layer import BlockLayer
    from devices.address_space import AddressSpaces
    from devices.display.vnc import VncDisplays
    from devices.qdev import Qdev


@attrs.define(kw_only=True)
class DumpFormat:
    """monitor.c's default_fmt_format and default_fmt_size: the last format given to
    a `/` argument, which a later one without a format reuses (per machine: QEMU
    keeps them in statics)."""

    format: str = "x"
    size: int = 4


@attrs.define(kw_only=True)
class HmpState:
    """What every human monitor of one machine shares: what monitor.c keeps in
    statics (the last memory dump format, the log mask) and the subsystems HMP
    reaches beyond the QMP command table (as hmp.c calls block-layer functions)."""

    block: BlockLayer | None = None
    vnc: VncDisplays | None = None
    memory: Callable[[], AddressSpaces] | None = None  # built on first use
    qdev: Qdev | None = None  # the devices (info usb, usb_add/usb_del, info qtree)
    # savevm's RAM, by the vmstate image's snapshot it belongs to (kept alive here).
    vm_states: dict[int, tuple[object, dict[int, bytes]]] = attrs.Factory(dict)
    formats: DumpFormat = attrs.Factory(DumpFormat)
    log_items: tuple[str, ...] = ()
