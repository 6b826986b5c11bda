"""Identifiers of the block layer: well-formed names and QEMU's generated node names.

Pure helper of `blockdev` [util/id.c]. Device names, node names, job IDs and qdev IDs
all follow `id_wellformed` (QEMU's, from `schema.opts`, re-exported here). Nodes opened without a name get `#block<N><RR>`: N a
per-process counter that also advances when the name is later rejected, RR two random
decimal digits (`g_random_int_range(0, 100)`). The random source is injected, so tests
and a seeded emulator reproduce a run exactly.
"""

from __future__ import annotations

import random

import attrs

from schema.opts.qemuopts import id_wellformed

__all__ = ["NameGenerator", "id_wellformed"]


@attrs.define(kw_only=True)
class NameGenerator:
    """id_generate(ID_BLOCK): one counter per process (here: per block layer)."""

    counter: int = 0
    rng: random.Random = attrs.Factory(random.Random)

    def generate(self) -> str:
        rnd = self.rng.randrange(0, 100)
        name = f"#block{self.counter}{rnd:02d}"
        self.counter += 1
        return name
