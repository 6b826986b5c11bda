"""HMP `info qtree` (qdev-monitor.c hmp_info_qtree).

`vmm` layer, loaded with the HMP interpreter: it prints what `devices.qtree`
formats from the machine's qdev model (imported on first use, so a plain start-up
does not load it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmm.hmp.commands import Args

if TYPE_CHECKING:
    from vmm.hmp.interpreter import Hmp


def hmp_info_qtree(hmp: Hmp, args: Args) -> None:
    """hmp_info_qtree: qbus_print of the main system bus."""
    qdev = hmp.state.qdev
    if qdev is None:
        hmp.printf("bus: main-system-bus\n  type System\n")
        return
    from devices.qtree import info_qtree

    hmp.printf(info_qtree(qdev))
