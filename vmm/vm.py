"""The composition root: a Machine with its subsystems, command handlers, dispatcher and monitors.

`vmm` layer. `Vm.build` wires one machine together from values (options, a schema, a
catalogue, a clock), so a test, the server and, later, a process hosting many
machines all build VMs the same way and share nothing but those immutable values.
Each subsystem is a typed attribute here and is plugged into the Machine, whose hooks
it then follows (`vmm.machine.subsystem`); its command handlers join the dispatcher's
table, and its guest behaviours join `BEHAVIOURS`. What a plain start-up does not use
is loaded on first use: the guest's address spaces, the net clients and the display
below, the migration subsystem through `vmm.lazy` (a stand-in among the subsystems,
its handlers registered by name), and the block jobs (a stand-in
among the subsystems, their commands and transaction registered by name); `tests/test_layering.py` lists them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.commands import BlockCommands
from blockdev.device_backends import DeviceBackends
from blockdev.host import JOB_BEHAVIOURS, TRAY_BEHAVIOURS, WORKLOAD_BEHAVIOURS
from blockdev.layer import BlockLayer
from blockdev.nbd.commands import Nbd
from devices.board import BoardConfig
from devices.chardev.commands import ChardevCommands
from devices.chardev.model import Chardevs
from devices.chardev.ports import CHARDEV_BEHAVIOURS, GuestPorts
from devices.chardev.resolver import ChardevResolver
from devices.commands import DEVICE_BEHAVIOURS, DeviceCommands
from devices.cpus import Topology, cpu_type
from devices.display.commands import DisplayCommands, InputCommands
from devices.dump.commands import DumpCommands
from devices.machine_commands import (
    MACHINE_DEVICE_BEHAVIOURS,
    MachineDeviceCommands,
    MachineDevices,
)
from devices.machine_kinds import new_cpu, register_kinds
from devices.misc import MISC_BEHAVIOURS, GuestMisc, MiscCommands
from devices.net.commands import NetCommands
from devices.net.resolver import NET_BEHAVIOURS, NetdevResolver
from devices.qdev import Qdev, find_device_state
from migration.behaviours import RAM_BEHAVIOURS
from schema.catalog import Catalog
from schema.handlers import Behaviour, LazyOwner
from schema.model import Schema
from vmm.change import ChangeCommand
from vmm.hmp.state import HmpState
from vmm.lazy import (
    BACKUP_COMMANDS,
    BLOCK_JOB_COMMANDS,
    COMMIT_COMMANDS,
    MIGRATION_COMMANDS,
    MIRROR_COMMANDS,
    STREAM_COMMANDS,
    TRANSACTION_COMMANDS,
    LazySubsystem,
)
from vmm.machine.commands import CoreCommands, MonitorCommands
from vmm.machine.core import Clock, Machine, MachineOptions
from vmm.machine.guest import GUEST_BEHAVIOURS
from vmm.machine.trace import TraceEvents
from vmm.memdump import MemoryDumpCommands
from vmm.qmp.dispatch import Dispatcher, not_implemented
from vmm.qmp.monitor import HmpMonitor, MonitorHub, QmpMonitor

if TYPE_CHECKING:
    from blockdev.jobs.core import Jobs
    from devices.address_space import AddressSpaces
    from devices.display.console import Console
    from devices.display.vnc import VncDisplays, VncListen
    from devices.dump.elf import GuestBlock
    from devices.input import Input
    from devices.net.model import NetClients
    from migration.commands import Migration
    from migration.host import Disks
    from vmm.qtest import Qtest

# A request nests at most 1024 levels (the JSON reader's limit, schema.qobject), and
# what follows the nesting of a request recurses a few frames per level, as QEMU's C
# does (bdrv_open and bdrv_refresh_filename down a `file` chain, permission updates):
# the interpreter must allow that much, whatever limit the process started with.
RECURSION_FLOOR = 8 * 1024 + 1000

# Every guest behaviour of the subsystems composed here (the command line's
# --emu-behaviour names).
BEHAVIOURS: tuple[Behaviour, ...] = (*GUEST_BEHAVIOURS, *TRAY_BEHAVIOURS,
                                     *WORKLOAD_BEHAVIOURS, *JOB_BEHAVIOURS, *CHARDEV_BEHAVIOURS,
                                     *DEVICE_BEHAVIOURS, *MACHINE_DEVICE_BEHAVIOURS,
                                     *MISC_BEHAVIOURS, *RAM_BEHAVIOURS, *NET_BEHAVIOURS)


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


def open_chardev_host(ident: str, kind: str, data: dict[str, Any]) -> Any:
    """The chardevs' host side, loaded when the first chardev with one is opened."""
    from devices.chardev.hostio import open_host

    return open_host(ident, kind, data)


def error_report(text: str) -> None:
    """util/qemu-error.c error_report: the program's name, then the text, on stderr."""
    from vmm.server import progname

    sys.stderr.write(f"{progname()}: {text}\n")
    sys.stderr.flush()


class LazyNet:
    """The machine's net clients (`devices.net.model`), built and plugged into the
    Machine the first time a netdev or NIC needs them: a plain start-up has none."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self._net: NetClients | None = None

    def __call__(self) -> NetClients:
        if self._net is None:
            from devices.net.model import NetClients

            self._net = NetClients(host=LazyHostNet(), events=self._machine,
                                   behaviour=self._machine.behaviours.get,
                                   running=self._machine.runstate.running,
                                   call_later=self._machine.vm_call_later)
            self._machine.plug(self._net)
        return self._net


class LazyHostNet:
    """The netdevs' host side (`devices.net.hostnet`), loaded on first use."""

    def __getattr__(self, name: str) -> Any:
        from devices.net.hostnet import HostNet

        return getattr(HostNet(), name)


class Display:
    """The board's display adapter and input devices, and the VNC displays, each
    built the first time something uses it (a -vnc option, a display or input
    command, a device qdev adds): a plain start-up loads none of their models. The pc
    and q35 boards have a VGA (the first console; `-vga none` and `-nodefaults`
    leave none: vmm.startup.configure_display) and the i8042's PS/2 keyboard and
    mouse; `-machine none` has neither."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self.has_console = machine.board.firmware
        self._console: Console | None = None
        self._input: Input | None = None
        self._vnc: VncDisplays | None = None

    def console(self) -> Console | None:
        if not self.has_console:
            return None
        if self._console is None:
            from devices.display.console import Console

            self._console = Console()
        return self._console

    def input(self) -> Input:
        if self._input is None:
            from devices.input import Input

            self._input = Input()
            self._input.register_board(self._machine.board.firmware)
        return self._input

    def vnc(self) -> VncDisplays:
        if self._vnc is None:
            from devices.display.vnc import VncDisplays

            machine = self._machine
            self._vnc = VncDisplays(emit=machine.emit, wall=machine.clock.wall,
                                    name=machine.options.name, console=self.console,
                                    rng=machine.rng, edge_factory=_vnc_edge,
                                    on_input=lambda kind: self.input().deliver(kind))
            machine.plug(self._vnc)
        return self._vnc


def _new_jobs(block: BlockLayer) -> Jobs:
    """The machine's block jobs (`blockdev.jobs.core`), built with the first job
    command (an idle registry: no job, no timer)."""
    from blockdev.jobs.core import Jobs

    return Jobs(layer=block)


def _block_job_owners(block: BlockLayer, jobs: Callable[[], Jobs]) -> tuple[LazyOwner, ...]:
    """The block jobs' commands, and transaction, each owner loaded with its first
    command (a plain machine runs none)."""

    def job_commands() -> object:
        from blockdev.jobs.commands import BlockJobCommands

        return BlockJobCommands(jobs())

    def stream() -> object:
        from blockdev.jobs.stream import StreamCommands

        return StreamCommands(jobs())

    def commit() -> object:
        from blockdev.jobs.commit import CommitCommands

        return CommitCommands(jobs())

    def mirror() -> object:
        from blockdev.jobs.mirror import MirrorCommands

        return MirrorCommands(jobs())

    def backup() -> object:
        from blockdev.jobs.backup import BackupCommands

        return BackupCommands(jobs())

    def transactions() -> object:
        from blockdev.jobs.backup import backup_actions
        from blockdev.transaction import ACTIONS, Transactions

        return Transactions(block, not_implemented=not_implemented,
                            actions={**ACTIONS, **backup_actions(jobs())})

    return (LazyOwner(BLOCK_JOB_COMMANDS, job_commands),
            LazyOwner(TRANSACTION_COMMANDS, transactions),
            LazyOwner(MIRROR_COMMANDS, mirror), LazyOwner(STREAM_COMMANDS, stream),
            LazyOwner(COMMIT_COMMANDS, commit), LazyOwner(BACKUP_COMMANDS, backup))


def _block_migration_disks(block: BlockLayer) -> Disks:
    """The disks of a block migration, loaded with the first one."""
    from blockdev.block_migration import disks

    return disks(block)


def _dump_blocks(options: MachineOptions) -> list[GuestBlock]:
    """The guest's memory blocks a dump writes (loaded with the first dump)."""
    from devices.dump.elf import machine_blocks

    return machine_blocks(options.machine_type, options.ram_bytes)


def _vnc_edge(displays: VncDisplays) -> VncListen:
    """The VNC sockets, loaded when a display first listens (trio's socket layer)."""
    from devices.display.vnc_edge import VncEdge

    return VncEdge(displays)


class _UnattachedNumbers:
    """/machine/unattached/device[N] for the devices the board creates without a
    parent, in creation order (hw/core/qdev.c device_set_realized); the CPUs come
    first (pc_cpus_init). A placeholder until the QOM tree numbers them: it does
    not count the board's other unattached devices yet."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> str:
        path = f"/machine/unattached/device[{self.next}]"
        self.next += 1
        return path


def _machine_devices(machine: Machine, unattached: Callable[[], str]) -> MachineDevices:
    """The CPUs of -smp, the memory of -m and (later, by -device) the balloon."""
    options = machine.options
    topology = Topology(cpus=options.smp_cpus, sockets=options.smp_sockets,
                        cores=options.smp_cores, threads=options.smp_threads,
                        max_cpus=options.max_cpus)
    devices = MachineDevices.create(
        machine, topology=topology, machine_type=options.machine_type,
        cpu_type=cpu_type(options.machine_type, options.cpu_model),
        pc=machine.board.nmi,  # the PC boards (Board.of)
        boot_cpus=machine.board.vcpus, thread_id=options.pid, ram_size=options.ram_bytes,
        max_ram_size=max(options.max_ram_bytes, options.ram_bytes),
        slots=options.ram_slots, new_glib=options.new_glib, unattached_path=unattached)
    devices.wall = machine.clock.wall
    return devices


@attrs.define(kw_only=True)
class Vm:
    machine: Machine
    core: CoreCommands
    dispatcher: Dispatcher
    hub: MonitorHub
    block: BlockLayer
    lazy_jobs: LazySubsystem[Jobs]
    nbd: Nbd
    qdev: Qdev
    display: Display
    guest_memory: GuestMemory
    chardevs: Chardevs
    netdevs: NetCommands
    guest_ports: GuestPorts
    devices: MachineDevices
    misc: GuestMisc
    lazy_migration: LazySubsystem[Migration]

    @classmethod
    def build(cls, *, options: MachineOptions, schema: Schema, catalog: Catalog,
              clock: Clock) -> Vm:
        if sys.getrecursionlimit() < RECURSION_FLOOR:
            sys.setrecursionlimit(RECURSION_FLOOR)
        machine = Machine.create(schema=schema, catalog=catalog, options=options,
                                 clock=clock, behaviours=BEHAVIOURS)
        block = BlockLayer.create(machine)
        machine.plug(block)
        # built with the first block job command: a plain start-up runs no job
        lazy_jobs = LazySubsystem(lambda: _new_jobs(block))
        machine.plug(lazy_jobs)
        nbd = Nbd(block)
        machine.plug(nbd)
        memory = GuestMemory(machine)
        if options.accel == "qtest":
            memory()
        chardevs = Chardevs(opener=open_chardev_host, now=machine.now, report=error_report)
        machine.plug(chardevs)
        guest_ports = GuestPorts(behaviour=machine.behaviours.get)
        machine.plug(guest_ports)
        net = LazyNet(machine)

        def find_chardev(ident: str) -> tuple[str, str] | None:
            found = chardevs.find(ident)
            if found is None:
                return None
            addr = (found.backend.get("data") or {}).get("addr") or {}
            return found.kind, str(addr.get("type", ""))

        def fd_param(name: str) -> int:
            return dispatcher.monitor_fd_param(name)

        net_commands = NetCommands(net, schema, fd_param, find_chardev, error_report)
        qdev = Qdev(block=DeviceBackends(block), catalog=catalog, host=machine,
                    board=BoardConfig.of(options.machine_type, options.cpu_model,
                                         options.smp_cpus, options.ram_bytes))
        qdev.register_resolver("chardev", ChardevResolver(chardevs, guest_ports, machine))
        qdev.register_resolver("netdev", NetdevResolver(net))
        machine.device_lookup = lambda ident: find_device_state(qdev, ident)
        display = Display(machine)
        dumps = DumpCommands(machine, machine.fdsets, memory, lambda: _dump_blocks(options),
                             nr_cpus=machine.board.vcpus, plug=machine.plug)
        machine.dump_in_progress = dumps.in_progress
        unattached = _UnattachedNumbers()
        devices = _machine_devices(machine, unattached)
        machine.plug(devices)
        misc = GuestMisc(host=machine, behaviours=machine.behaviours,
                         os=options.accel != "qtest",
                         running=lambda: machine.runstate.running)
        machine.plug(misc)
        machine.nmi = misc.nmi
        register_kinds(qdev, devices, misc, [d["typename"] for d in
                                             catalog.cpu_definitions(options.accel)])
        core = CoreCommands(machine)
        screens = DisplayCommands(display.vnc, display.console, machine.clock.wall,
                                  machine.fdsets)

        def build_migration() -> Migration:
            from migration.commands import Migration
            from migration.files import LocalFiles
            from vmm.vmstate import BalloonSection, DevicesSection

            migration = Migration(host=machine, allow_exec=options.allow_exec_migration,
                                  files=LocalFiles())
            migration.block_inactivate = block.inactivate_all
            migration.block_activate = block.invalidate_cache_all
            migration.disks = lambda: _block_migration_disks(block)
            migration.add_section(DevicesSection(qdev))
            migration.add_section(BalloonSection(devices))
            migration.take_fd = dispatcher.take_monitor_fd
            return migration

        def migration_commands() -> object:
            from migration.commands import MigrationCommands

            return MigrationCommands(lazy_migration())

        # built with the first migration command (or -incoming): a plain start-up
        # does not load the migration subsystem
        lazy_migration = LazySubsystem(build_migration)
        machine.plug(lazy_migration)
        dispatcher = Dispatcher(machine, core, BlockCommands(block),
                                *_block_job_owners(block, lazy_jobs),
                                ChangeCommand(block, display.vnc),
                                MemoryDumpCommands(memory, machine.board.vcpus), screens, dumps,
                                InputCommands(display.input, lambda: machine.runstate.state in (
                                    "running", "suspended")),
                                DeviceCommands(qdev, machine, machine.behaviours),
                                MachineDeviceCommands(
                                    devices, unattached_path=unattached,
                                    new_cpu=lambda apic: new_cpu(qdev, devices.cpus.cpu_type,
                                                                 apic)),
                                MiscCommands(catalog),
                                nbd, ChardevCommands(chardevs), net_commands,
                                LazyOwner(MIGRATION_COMMANDS, migration_commands),
                                per_monitor=MonitorCommands)
        screens.get_fd = dumps.get_fd = dispatcher.monitor_get_fd
        if options.incoming is not None:
            lazy_migration().start_incoming(options.incoming)
        hub = MonitorHub(machine, dispatcher, core,
                         HmpState(block=block, vnc=display.vnc, input=display.input,
                                  memory=memory, net=net_commands, qdev=qdev))
        return cls(machine=machine, core=core, dispatcher=dispatcher, hub=hub, block=block,
                   lazy_jobs=lazy_jobs,
                   nbd=nbd, qdev=qdev, display=display, guest_memory=memory,
                   chardevs=chardevs, netdevs=net_commands, guest_ports=guest_ports,
                   devices=devices, misc=misc, lazy_migration=lazy_migration)

    @property
    def net(self) -> NetClients:
        return self.netdevs.net

    @property
    def jobs(self) -> Jobs:
        return self.lazy_jobs()

    @property
    def migration(self) -> Migration:
        return self.lazy_migration()

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
