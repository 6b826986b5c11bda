"""`python -m vmm`: the same entry as the `qmp-emulator` console script (`vmm.launch`)."""

from vmm.launch import run

run()
