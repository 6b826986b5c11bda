"""blockdev.c's DriveInfo: what a `-drive` remembers besides its BlockBackend.

A value module at the bottom of the pure `blockdev` layer (the graph's BlockBackends
keep one for legacy drives; `blockdev.drive` creates them; device models read them).
"""

from __future__ import annotations

import attrs


@attrs.define(kw_only=True)
class DriveInfo:
    """blockdev.c DriveInfo: what `-drive` remembers besides the BlockBackend."""

    type: str  # the if= name
    bus: int
    unit: int
    media_cd: bool = False
    auto_del: bool = False
    is_default: bool = False
    serial: str | None = None
    devaddr: str | None = None
    cyls: int = 0
    heads: int = 0
    secs: int = 0
    trans: str = "auto"
