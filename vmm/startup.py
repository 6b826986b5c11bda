"""QEMU's command line applied to a machine, in the order of vl.c's main().

Composition in the `vmm` layer, pure (the sockets are the server's). vl.c builds a
machine in this order, and so does this module:

1. the machine options (machine type, memory, CPUs, accelerator; here also the
   emulator's own settings) and the initial `-object`s: `create_vm`;
2. the chardevs and the monitors on them: the edge's part (`vmm.server` binds and, for
   `server,wait`, waits for a client before anything below happens);
3. the block devices, fed to the block layer's entry points (`blockdev.drive`) and to
   qdev (`devices.board`, `devices.qdev`): every -blockdev, every -drive, the
   machine's default drives (a CD-ROM at index 2 of the default interface, a floppy,
   an SD card), the devices the board creates for its interfaces' drives, each
   -device with a drive (then those that `if=virtio` drives imply), and the
   port devices the address spaces model (`-device pvpanic`, `-device ib700`,
   `-watchdog ib700`): `configure_devices`;
4. the machine starts: a silent system reset, then a VM start unless -S, or the wait
   for an incoming migration (`Machine.start`).

`build_vm(argv, clock=...)` runs all of it but the chardevs, from a command-line list
(tests attach their monitors to the Vm it returns). A refused option is QEMU's message
at the option's location, raised as CommandLineError (or ConfigError); the program
prints it and exits 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from blockdev.drive import add_blockdev, add_drive, drive_get, if_max_devs
from blockdev.layer import BlockLayer
from devices.board import BoardConfig, Nic, board_kind, create_board_devices
from devices.qdev import Qdev, device_add
from schema.catalog import Catalog
from schema.errors import QMPError
from schema.loader import load_schema
from schema.model import Schema
from schema.opts.cutils import Errno, qemu_strtoi64
from vmm.cmdline import (
    Action,
    CommandLine,
    CommandLineError,
    Diagnostic,
    Location,
    QemuOpts,
    parse_command_line,
)
from vmm.config import EMU_OPTIONS, Config, build_config
from vmm.machine.clock import Clock
from vmm.vm import Vm

# vl.c CDROM_OPTS, FD_OPTS, SD_OPTS with the interface and index drive_add adds.
DEFAULT_DRIVES = {
    "cdrom": ("ide", (("media", "cdrom"), ("index", "2"))),
    "floppy": ("floppy", (("if", "floppy"), ("index", "0"))),
    "sdcard": ("sd", (("if", "sd"), ("index", "0"))),
}


def _fail(err: QMPError, location: Location) -> CommandLineError:
    return CommandLineError(Diagnostic(err.desc, location=location))


def build_vm(argv: Sequence[str], *, clock: Clock, schema: Schema | None = None,
             catalog: Catalog | None = None, start: bool = True) -> Vm:
    """The Vm `qmp-emulator ARGV` runs, without its chardevs (a test's entry point).

    `schema` and `catalog` default to the persona the command line asks for and the
    recorded catalogue; pass them to share one loaded copy between many machines.
    """
    cl = parse_command_line(list(argv), extra_options=EMU_OPTIONS)
    if cl.action is not Action.RUN:
        raise ValueError(f"{' '.join(argv)!r} does not run a machine ({cl.action})")
    catalog = Catalog.load() if catalog is None else catalog
    config = build_config(cl, catalog)
    schema = load_schema(config.persona) if schema is None else schema
    vm = create_vm(config, schema=schema, catalog=catalog, clock=clock)
    if start:
        finish(vm, cl)
    else:
        configure_devices(vm, cl)
    return vm


def create_vm(config: Config, *, schema: Schema, catalog: Catalog, clock: Clock) -> Vm:
    """vl.c up to the chardevs: the machine of the options, and the initial -objects
    (iothreads are part of the options: query-iothreads lists them)."""
    return Vm.build(options=config.options, schema=schema, catalog=catalog, clock=clock)


def configure_chardevs(vm: Vm, cl: CommandLine) -> None:
    """vl.c's chardev_init_func for every -chardev the monitors and qtest do not sit
    on (those the server opens), then the -serial ports' chardevs with a serial port
    frontend each (serial_hds_add), then net_init_clients for -netdev."""
    from devices.chardev.model import backend_from_opts

    taken = {mon.chardev for mon in cl.monitors}
    if cl.qtest is not None:
        taken.add(cl.qtest[8:] if cl.qtest.startswith("chardev:") else "qtest")
    for opts in cl.chardevs:
        if opts.id in taken:
            continue
        try:
            if opts.get_bool("mux", False):
                # qemu_chr_new_from_opts: the backend as "<id>-base", a mux on top
                vm.chardevs.create(f"{opts.id}-base", backend_from_opts(opts))
                vm.chardevs.create(opts.id, {"type": "mux",
                                             "data": {"chardev": f"{opts.id}-base"}})
            else:
                vm.chardevs.create(opts.id, backend_from_opts(opts))
        except QMPError as err:
            raise _fail(err, opts.location) from None
    for port in cl.serials:
        if port.chardev is None or port.chardev_id in taken:
            continue
        try:
            vm.chardevs.create(port.chardev_id, backend_from_opts(port.chardev))
        except QMPError as err:
            raise CommandLineError(Diagnostic(
                f"{err.desc}\ncould not connect serial device to character backend "
                f"'{port.spec}'", location=port.location)) from None
        vm.guest_ports.add_serial(vm.chardevs, port.chardev_id)
    commands = vm.netdevs
    for opts in cl.netdevs:
        try:
            created = commands.store.create(commands.store.lists["netdev"], opts.id, True,
                                            opts.location)
            created.items.extend(item for item in opts.items if item[0] != "id")
            commands.add_from_opts(opts.id, list(created.items))
        except QMPError as err:
            raise _fail(err, opts.location) from None


def configure_devices(vm: Vm, cl: CommandLine) -> None:
    """vl.c from the chardevs up to machine start: the chardevs and netdevs, the
    board's devices (its QOM tree is built when first needed), -object, the block
    devices, then -device; the display last."""
    configure_add_fds(vm, cl)
    configure_chardevs(vm, cl)
    vm.qdev.board = board_config(vm, cl)
    vm.qdev.hotplug_done = False
    configure_objects(vm, cl)
    configure_block(vm.block, vm.qdev, cl, vm.machine.schema, vm.machine.options.machine_type)
    configure_port_devices(vm, cl)
    vm.qdev.hotplug_done = True  # qdev_machine_creation_done
    configure_display(vm, cl)


def configure_add_fds(vm: Vm, cl: CommandLine) -> None:
    """vl.c parse_add_fd over every -add-fd (its option checks were the parser's),
    then cleanup_add_fd: the inherited descriptors are closed, their duplicates stay
    in the fd sets for `file=/dev/fdset/N`."""
    from vmm.machine.fds import close_quietly

    for opts in cl.add_fds:
        try:
            vm.machine.fdsets.add_inherited(opts.get_number("fd", -1), opts.get_number("set", -1),
                                            opts.get("opaque"))
        except QMPError as err:
            raise _fail(err, opts.location) from None
    for opts in cl.add_fds:
        close_quietly(opts.get_number("fd", -1))


def configure_objects(vm: Vm, cl: CommandLine) -> None:
    """-object: vl.c object_create (user_creatable_add_opts), before the devices."""
    if not cl.objects:
        return
    from devices.objects import props_from_opts

    for opts in cl.objects:
        typename = opts.get("qom-type")
        if typename is None or opts.id is None:
            continue  # the option parser already refused it
        items = [(k, v) for k, v in opts if k != "qom-type"]
        try:
            vm.qdev.objects.add(typename, opts.id, props_from_opts(typename, items))
        except QMPError as err:
            raise _fail(err, opts.location) from None


def board_config(vm: Vm, cl: CommandLine) -> BoardConfig:
    """What the command line decides about the board's devices (vl.c: the default
    serial/parallel ports, -vga, the NICs of -net nic on the hub of their vlan)."""
    options = vm.machine.options
    nics: list[Nic] = []
    ports: dict[str, int] = {}
    for net in cl.nets:
        vlan = net.get("vlan") or "0"
        port = ports.get(vlan, 0)
        ports[vlan] = port + 1
        if net.get("type") == "nic":
            mac = net.get("macaddr") or f"52:54:00:12:34:{0x56 + vm.qdev.mac_index:02x}"
            vm.qdev.mac_index += 0 if net.get("macaddr") else 1
            nics.append(Nic(model=net.get("model") or "e1000",
                            netdev=net.get("netdev") or f"hub{vlan}port{port}", mac=mac))
    vga = cl.vga if cl.vga is not None else ("std" if cl.defaults.vga else None)
    if vga == "none":
        vga = None
    return BoardConfig.of(options.machine_type, options.cpu_model, options.smp_cpus,
                          options.ram_bytes, defaults=not cl.nodefaults,
                          serials=tuple(p.chardev_id for p in cl.serials),
                          parallels=tuple(p.chardev_id for p in cl.parallels),
                          vga=vga, nics=tuple(nics),
                          usb=cl.machine.get("usb") in ("on", "yes", "true") or
                          any(o.name == "usb" for o in cl.options))


def finish(vm: Vm, cl: CommandLine) -> None:
    """What follows the chardevs: the devices, then the machine starts."""
    configure_devices(vm, cl)
    vm.machine.start()


def configure_block(layer: BlockLayer, qdev: Qdev, cl: CommandLine, schema: Schema,
                    machine_type: str) -> None:
    """Build the block graph and attach block devices as QEMU's start-up does."""
    for bdo in cl.blockdevs:
        try:
            add_blockdev(layer, bdo.options, keyval=not bdo.json, schema=schema)
        except QMPError as err:
            raise _fail(err, bdo.location) from None
    # hw/i386/pc_q35.c: units_per_default_bus = 1 (one disk per AHCI port)
    units = 1 if "q35" in machine_type else 0
    implied: list[tuple[tuple[tuple[str, str], ...], Location]] = []
    for drive in cl.drives:
        try:
            result = add_drive(layer, _with_id(drive.id, drive.items),
                               units_per_default_bus=units)
        except QMPError as err:
            raise _fail(err, drive.location) from None
        if result.implied_device is not None:
            implied.append((result.implied_device, drive.location))
    defaults = cl.defaults
    wanted = {"cdrom": defaults.cdrom,
              # hw/i386/pc_q35.c sets no_floppy on every q35 machine type
              "floppy": defaults.floppy and "q35" not in machine_type,
              "sdcard": defaults.sdcard}
    for kind, (iface, opts) in DEFAULT_DRIVES.items():
        if not wanted[kind] or _has_index(layer, iface, opts, units):
            continue
        try:
            add_drive(layer, opts, is_default=True, units_per_default_bus=units)
        except QMPError as err:
            raise _fail(err, ()) from None
    try:
        create_board_devices(qdev)
    except QMPError as err:
        raise _fail(err, ()) from None
    devices: list[tuple[Sequence[tuple[str, str]], Location]] = [
        (_with_id(d.id, d.items), d.location) for d in cl.devices]
    devices.extend(implied)
    for items, location in devices:
        props = dict(items)
        driver = props.get("driver")
        if driver is None or driver in ("pvpanic", "ib700"):
            continue  # configure_port_devices
        try:
            device_add(qdev, [(k, v) for k, v in items if k != "id"], props.get("id"))
        except QMPError as err:
            raise _fail(err, location) from None


def configure_port_devices(vm: Vm, cl: CommandLine) -> None:
    """The -device models that are ports of the address spaces (hw/misc/pvpanic.c,
    hw/watchdog/wdt_ib700.c); ISA devices, so `-machine none` has no bus for them
    (qdev-monitor.c qdev_device_add). Other properties are not read yet: the
    devices issue gives these devices their QOM presence."""
    for opts in cl.devices:
        driver = opts.get("driver")
        if driver not in ("pvpanic", "ib700"):
            continue
        if board_kind(vm.machine.options.machine_type) == "none":
            raise CommandLineError(Diagnostic(f"No 'ISA' bus found for device '{driver}'",
                                              location=opts.location))
        from devices.chipset import add_ib700, add_pvpanic
        from devices.misc import Ib700Watchdog

        if driver == "pvpanic":
            add_pvpanic(vm.memory, vm.machine, _uint16_property(opts, "ioport", 0x505))
            vm.misc.pvpanic = True
        else:
            vm.misc.add_watchdog(Ib700Watchdog(add_ib700(vm.memory, vm.machine)))


def configure_display(vm: Vm, cl: CommandLine) -> None:
    """The display adapter (`-vga none`, or no default VGA, leaves no console), then
    vl.c's vnc_init_func for every -vnc: the display opens, or the program exits
    with "Failed to start VNC server: ..." at that option."""
    if cl.vga == "none" or (cl.vga is None and not cl.defaults.vga):
        vm.display.has_console = False
    for opts in cl.vnc:
        vnc = vm.display.vnc()
        ident = opts.id or "default"
        display = vnc.init(ident, {name: opts.get(name) or "" for name in opts.keys()})
        try:
            vnc.open(display)
        except QMPError as err:
            raise CommandLineError(Diagnostic(f"Failed to start VNC server: {err.desc}",
                                              location=opts.location)) from None
        for text in vnc.printed:
            sys.stderr.write(text)
        vnc.printed.clear()


def _uint16_property(opts: QemuOpts, name: str, default: int) -> int:
    """A uint16 qdev property from its string (qapi/string-input-visitor.c
    parse_type_int64, then qapi-visit-core.c visit_type_uintN's range check)."""
    text = opts.get(name)
    if text is None:
        return default
    err, value, _ = qemu_strtoi64(text)
    if err is not Errno.OK or not text:
        raise CommandLineError(Diagnostic(
            f"Parameter '{name}' expects an int64 value or range", location=opts.location))
    if not 0 <= value <= 0xFFFF:
        raise CommandLineError(Diagnostic(f"Parameter '{name}' expects uint16_t",
                                          location=opts.location))
    return value


def _with_id(ident: str | None, items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """QemuOpts keep `id=` apart from the other options; the block layer wants it back."""
    return [("id", ident), *items] if ident is not None else list(items)


def _has_index(layer: BlockLayer, iface: str, opts: tuple[tuple[str, str], ...],
               units_per_default_bus: int) -> bool:
    """drive_get_by_index: a -drive already took this interface and index."""
    index = int(dict(opts)["index"])
    max_devs = if_max_devs(iface, "ide", units_per_default_bus)
    bus, unit = divmod(index, max_devs) if max_devs else (0, index)
    return drive_get(layer, iface, bus, unit) is not None
