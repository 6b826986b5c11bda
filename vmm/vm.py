"""The composition root: a Machine with its command handlers, dispatcher and monitors.

`vmm` layer. `Vm.build` wires one machine together from values (options, a schema, a
catalogue, a clock), so a test, the server and, later, a process hosting many
machines all build VMs the same way and share nothing but those immutable values.
"""

from __future__ import annotations

import attrs

from blockdev.commands import BlockCommands
from blockdev.device_backends import DeviceBackends
from blockdev.layer import BlockLayer
from devices.display.vnc import VncDisplays
from devices.qdev import Qdev
from schema.catalog import Catalog
from schema.model import Schema
from vmm.change import ChangeCommand
from vmm.machine.commands import CoreCommands
from vmm.machine.core import Clock, Machine, MachineOptions
from vmm.machine.trace import TraceEvents
from vmm.qmp.dispatch import Dispatcher
from vmm.qmp.monitor import HmpMonitor, MonitorHub, QmpMonitor


@attrs.define(kw_only=True)
class Vm:
    machine: Machine
    core: CoreCommands
    trace: TraceEvents
    dispatcher: Dispatcher
    hub: MonitorHub
    block: BlockLayer
    qdev: Qdev
    vnc: VncDisplays

    @classmethod
    def build(cls, *, options: MachineOptions, schema: Schema, catalog: Catalog,
              clock: Clock) -> Vm:
        machine = Machine.create(schema=schema, catalog=catalog, options=options,
                                 clock=clock)
        trace = TraceEvents()
        core = CoreCommands(machine, trace)
        block = BlockLayer.create(machine)
        machine.subsystems["block"] = block
        qdev = Qdev(block=DeviceBackends(block))
        vnc = VncDisplays()  # -vnc is not applied yet: no display, as QEMU without -vnc
        machine.on_cont(block.on_cont)
        machine.on_vm_start(lambda: machine.kick() if block.trays.pending else None)
        owners: list[object] = [core, BlockCommands(block), ChangeCommand(block, vnc)]
        owners.extend(machine.subsystems.values())
        dispatcher = Dispatcher(machine, *owners)
        hub = MonitorHub(machine, dispatcher, core)
        return cls(machine=machine, core=core, trace=trace, dispatcher=dispatcher, hub=hub,
                   block=block, qdev=qdev, vnc=vnc)

    def qmp_monitor(self, *, pretty: bool = False, name: str = "") -> QmpMonitor:
        return self.hub.qmp(pretty=pretty, name=name)

    def hmp_monitor(self, *, name: str = "") -> HmpMonitor:
        return self.hub.hmp(name=name)
