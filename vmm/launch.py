"""The console script's entry: signals are caught before anything else is loaded.

Entry point of the `vmm` layer (`qmp-emulator`, and `python -m vmm` through
`vmm.__main__`); the program itself is `vmm.program`. QEMU installs its termination handler at the start of main
(os-posix.c os_setup_signal_handling, from vl.c), so SIGINT, SIGTERM or SIGHUP at
any moment of start-up ends QEMU the same way: it finishes starting, says
"terminating on signal N" and exits 0. Loading the emulator (trio, the schema, the
catalogue) takes a noticeable fraction of a second, during which Python would turn
SIGINT into a KeyboardInterrupt traceback and SIGTERM into a silent death. So this
module imports nothing of the emulator before it has put handlers in place that
remember the signal; `vmm.program` handles a remembered signal once it serves, as
it handles one that comes later.
"""

from __future__ import annotations

import gc
import signal
import sys
from types import FrameType

TERMINATING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class EarlySignals:
    """The terminating signals received before the server listens for them."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def _remember(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    @classmethod
    def install(cls) -> EarlySignals:
        early = cls()
        for signum in TERMINATING_SIGNALS:
            signal.signal(signum, early._remember)
        return early


# While the program loads, the collector's youngest generation is collected every
# this many allocations rather than every 700: loading creates a few hundred
# thousand objects that live as long as the process, and each pass over them finds
# little to free. Not off altogether: attrs' first draft of every class is garbage
# that a disabled collector would leave to grow the heap (+1.6 MiB RSS).
LOADING_THRESHOLD = 20000


def run() -> None:
    early = EarlySignals.install()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], LOADING_THRESHOLD), *thresholds[1:])
    from vmm.program import main

    sys.exit(main(early_signals=early, gc_thresholds=thresholds))
