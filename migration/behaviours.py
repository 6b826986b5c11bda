"""The guest behaviours a migration reads: how fast the running guest dirties its RAM
and how much of it is not zero (the command line's --emu-behaviour names).

Pure declarations of the `migration` layer, apart from the RAM model that reads them
(`migration.ram`, which re-exports them), so that the composition root (`vmm.vm`,
`BEHAVIOURS`) declares them without loading that model at start-up.
"""

from __future__ import annotations

import math
from typing import Any

from schema.handlers import Behaviour, BehaviourError, non_negative

_rate = non_negative("pages per second")


def _fraction(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0 <= number <= 1:
        raise BehaviourError("expects a fraction between 0 and 1")
    return number


DIRTY_RATE = Behaviour(
    "migration-dirty-rate",
    "pages per second the running guest writes to (what a migration must send again)",
    _rate, os=256.0, firmware=0.0)
RAM_USED = Behaviour(
    "migration-ram-used",
    "the fraction of guest RAM that is not zero (sent as whole pages by a migration)",
    _fraction, os=0.05, firmware=0.001)

RAM_BEHAVIOURS = (DIRTY_RATE, RAM_USED)
