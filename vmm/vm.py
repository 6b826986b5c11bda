"""The composition root: a Machine with its subsystems, command handlers, dispatcher and monitors.

`vmm` layer. `Vm.build` wires one machine together from values (options, a schema, a
catalogue, a clock), so a test, the server and, later, a process hosting many
machines all build VMs the same way and share nothing but those immutable values.
Each subsystem is a typed attribute here and is plugged into the Machine, whose hooks
it then follows (`vmm.machine.subsystem`); its command handlers join the dispatcher's
table, and its guest behaviours join `BEHAVIOURS`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from blockdev.commands import BlockCommands
from blockdev.device_backends import DeviceBackends
from blockdev.host import TRAY_BEHAVIOURS
from blockdev.layer import BlockLayer
from devices.address_space import AddressSpaces
from devices.chipset import build_address_spaces
from devices.display.vnc import VncDisplays
from devices.qdev import Qdev
from schema.catalog import Catalog
from schema.handlers import Behaviour
from schema.model import Schema
from vmm.change import ChangeCommand
from vmm.hmp.interpreter import HmpState
from vmm.machine.commands import CoreCommands, MonitorCommands
from vmm.machine.core import Clock, Machine, MachineOptions
from vmm.machine.guest import GUEST_BEHAVIOURS
from vmm.machine.trace import TraceEvents
from vmm.memdump import MemoryDumpCommands
from vmm.qmp.dispatch import Dispatcher
from vmm.qmp.monitor import HmpMonitor, MonitorHub, QmpMonitor
from vmm.qtest import Qtest, board_devices

# Every guest behaviour of the subsystems composed here (the command line's
# --emu-behaviour names).
BEHAVIOURS: tuple[Behaviour, ...] = (*GUEST_BEHAVIOURS, *TRAY_BEHAVIOURS)


@attrs.define(kw_only=True)
class Vm:
    machine: Machine
    core: CoreCommands
    dispatcher: Dispatcher
    hub: MonitorHub
    block: BlockLayer
    qdev: Qdev
    vnc: VncDisplays
    memory: AddressSpaces

    @classmethod
    def build(cls, *, options: MachineOptions, schema: Schema, catalog: Catalog,
              clock: Clock) -> Vm:
        machine = Machine.create(schema=schema, catalog=catalog, options=options,
                                 clock=clock, behaviours=BEHAVIOURS)
        block = BlockLayer.create(machine)
        machine.plug(block)
        # The PIT's timer shows only in a qtest clock_step (devices.chipset).
        memory = build_address_spaces(options.machine_type, options.ram_bytes, machine,
                                      pit=options.accel == "qtest")
        machine.plug(memory)
        qdev = Qdev(block=DeviceBackends(block))
        vnc = VncDisplays()  # -vnc is not applied yet: no display, as QEMU without -vnc
        core = CoreCommands(machine)
        dispatcher = Dispatcher(machine, core, BlockCommands(block), ChangeCommand(block, vnc),
                                MemoryDumpCommands(memory), per_monitor=MonitorCommands)
        hub = MonitorHub(machine, dispatcher, core,
                         HmpState(block=block, vnc=vnc, memory=memory))
        return cls(machine=machine, core=core, dispatcher=dispatcher, hub=hub, block=block,
                   qdev=qdev, vnc=vnc, memory=memory)

    @property
    def trace(self) -> TraceEvents:
        return self.machine.trace

    def qmp_monitor(self, *, pretty: bool = False, name: str = "") -> QmpMonitor:
        return self.hub.qmp(pretty=pretty, name=name)

    def hmp_monitor(self, *, name: str = "") -> HmpMonitor:
        return self.hub.hmp(name=name)

    def qtest(self, *, log: Callable[[bytes], None] | None = None,
              stderr: Callable[[str], None] = lambda text: None) -> Qtest:
        """The qtest frontend of a -qtest chardev (`log`: the -qtest-log file)."""
        return Qtest(machine=self.machine, memory=self.memory,
                     devices=board_devices(self.machine.options.machine_type), log=log,
                     stderr=stderr)

    def close(self) -> None:
        """At exit: the subsystems close their files and release their locks."""
        self.machine.close()
