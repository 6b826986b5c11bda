"""How the dump and display commands word the errors of the files they name.

Part of the pure `devices.dump` package. They open files through util/osdep.c's
qemu_open (`schema.osdep.Opener`, which the Machine's fd sets satisfy).
"""

from __future__ import annotations

import os


def strerror(err: OSError) -> str:
    """The text strerror(3) gives for the error's errno."""
    return os.strerror(err.errno or 0)
