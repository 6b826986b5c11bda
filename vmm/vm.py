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
from typing import TYPE_CHECKING

import attrs

from blockdev.commands import BlockCommands
from blockdev.device_backends import DeviceBackends
from blockdev.host import TRAY_BEHAVIOURS
from blockdev.layer import BlockLayer
from devices.display.vnc import VncDisplays
from devices.qdev import Qdev
from migration.commands import Migration, MigrationCommands
from migration.files import LocalFiles
from migration.ram import RAM_BEHAVIOURS
from schema.catalog import Catalog
from schema.handlers import Behaviour
from schema.model import Schema
from vmm.change import ChangeCommand
from vmm.hmp.state import HmpState
from vmm.machine.commands import CoreCommands, MonitorCommands
from vmm.machine.core import Clock, Machine, MachineOptions
from vmm.machine.guest import GUEST_BEHAVIOURS
from vmm.machine.trace import TraceEvents
from vmm.memdump import MemoryDumpCommands
from vmm.qmp.dispatch import Dispatcher
from vmm.qmp.monitor import HmpMonitor, MonitorHub, QmpMonitor

if TYPE_CHECKING:
    from devices.address_space import AddressSpaces
    from vmm.qtest import Qtest

# Every guest behaviour of the subsystems composed here (the command line's
# --emu-behaviour names).
BEHAVIOURS: tuple[Behaviour, ...] = (*GUEST_BEHAVIOURS, *TRAY_BEHAVIOURS, *RAM_BEHAVIOURS)


class GuestMemory:
    """The guest's address spaces (RAM, the I/O ports and the board's port devices),
    built the first time something reads or writes them: a qtest client, an HMP
    memory or port command, pmemsave, a port device of the command line. Until then
    RAM is all zeros and the devices are in their reset state, so nothing differs
    but the cost of loading them, which a plain start-up does not pay. Under the qtest
    accelerator they are built with the machine: the PIT's timer is part of what a
    qtest clock_step sees from the first step."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self._spaces: AddressSpaces | None = None

    def __call__(self) -> AddressSpaces:
        if self._spaces is None:
            from devices.chipset import build_address_spaces

            options = self._machine.options
            # The PIT's timer shows only in a qtest clock_step (devices.chipset).
            self._spaces = build_address_spaces(options.machine_type, options.ram_bytes,
                                                self._machine, pit=options.accel == "qtest")
            self._machine.plug(self._spaces)
            self._spaces.reset()  # the state the machine's last reset left them in
        return self._spaces


@attrs.define(kw_only=True)
class Vm:
    machine: Machine
    core: CoreCommands
    dispatcher: Dispatcher
    hub: MonitorHub
    block: BlockLayer
    qdev: Qdev
    vnc: VncDisplays
    guest_memory: GuestMemory
    migration: Migration

    @classmethod
    def build(cls, *, options: MachineOptions, schema: Schema, catalog: Catalog,
              clock: Clock) -> Vm:
        machine = Machine.create(schema=schema, catalog=catalog, options=options,
                                 clock=clock, behaviours=BEHAVIOURS)
        block = BlockLayer.create(machine)
        machine.plug(block)
        memory = GuestMemory(machine)
        if options.accel == "qtest":
            memory()
        qdev = Qdev(block=DeviceBackends(block))
        vnc = VncDisplays()  # -vnc is not applied yet: no display, as QEMU without -vnc
        core = CoreCommands(machine)
        migration = Migration(host=machine, allow_exec=options.allow_exec_migration,
                              files=LocalFiles())
        machine.plug(migration)
        dispatcher = Dispatcher(machine, core, BlockCommands(block), ChangeCommand(block, vnc),
                                MemoryDumpCommands(memory), MigrationCommands(migration),
                                per_monitor=MonitorCommands)
        migration.take_fd = dispatcher.take_monitor_fd
        if options.incoming is not None:
            migration.start_incoming(options.incoming)
        hub = MonitorHub(machine, dispatcher, core,
                         HmpState(block=block, vnc=vnc, memory=memory))
        return cls(machine=machine, core=core, dispatcher=dispatcher, hub=hub, block=block,
                   qdev=qdev, vnc=vnc, guest_memory=memory, migration=migration)

    @property
    def memory(self) -> AddressSpaces:
        return self.guest_memory()

    @property
    def trace(self) -> TraceEvents:
        return self.machine.trace

    def qmp_monitor(self, *, pretty: bool = False, name: str = "") -> QmpMonitor:
        return self.hub.qmp(pretty=pretty, name=name)

    def hmp_monitor(self, *, name: str = "") -> HmpMonitor:
        return self.hub.hmp(name=name)

    def qtest(self, *, log: Callable[[bytes], None] | None = None,
              stderr: Callable[[str], None] = lambda text: None) -> Qtest:
        """The qtest frontend of a -qtest chardev (`log`: the -qtest-log file); the
        protocol is loaded only when a command line asks for it."""
        from vmm.qtest import Qtest, board_devices

        return Qtest(machine=self.machine, memory=self.memory,
                     devices=board_devices(self.machine.options.machine_type), log=log,
                     stderr=stderr)

    def close(self) -> None:
        """At exit: the subsystems close their files and release their locks."""
        self.machine.close()
