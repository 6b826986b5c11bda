"""The hooks every subsystem offers the Machine that owns it.

`vmm` layer, pure. A subsystem (the block layer, later devices, chardevs, netdevs,
migration) is one object the Machine holds as a typed attribute and lists in
`Machine.subsystems`; the Machine calls the same hooks on each, in that order, where
QEMU's main loop and cpus.c call their handlers. A subsystem never imports `vmm`: it
satisfies `Subsystem` structurally (mypy checks it where the Vm is composed), and
declares what it needs from the Machine in its own `host.py`.

The hooks and their QEMU counterparts:
- `reset()`: qemu_system_reset's device reset (`qemu_devices_reset`), before the RESET
  event; also the silent reset of start-up and of a wake-up from S3.
- `before_cont()`: qmp_cont's work before the VM starts (block: io-status reset); a
  QMPError it raises is the reply of `cont` and nothing else happens.
- `vm_start()` / `vm_stop()`: vm_state_notify after RESUME / STOP (the VM's run
  state changed between running and not).
- `next_deadline()` / `run_due(now)`: the subsystem's timers, on the host's monotonic
  clock in seconds (`math.inf`: none). The Machine kicks its driver after every run
  state change, so a deadline may depend on the run state.
- `close()`: bdrv_close_all and friends, when the process exits.
"""

from __future__ import annotations

from typing import Protocol


class Subsystem(Protocol):
    def reset(self) -> None: ...

    def before_cont(self) -> None: ...

    def vm_start(self) -> None: ...

    def vm_stop(self) -> None: ...

    def next_deadline(self) -> float: ...

    def run_due(self, now: float) -> None: ...

    def close(self) -> None: ...
