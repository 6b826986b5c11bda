"""HMP commands of the machine core, in the manner of hmp.c and monitor.c.

`vmm` layer. Each function is one command of `vmm.hmp.table`: it reads the parsed
arguments, calls QMP handlers by schema name (`hmp.qmp("query-status")`) as hmp.c
calls the qmp_* functions, and prints what QEMU 2.11 prints (the QEMU function is
named in each docstring). A QMP command without a handler yet raises the dispatcher's
"not implemented" GenericError, which the interpreter prints as hmp_handle_error
does; an HMP command with no QMP counterpart whose subsystem is not modelled raises
`HmpNotImplemented` naming itself. The block layer's commands are `vmm.hmp.block`,
the VM snapshots `vmm.hmp.savevm`, the guest memory and port commands
`vmm.hmp.memory`.
"""

from __future__ import annotations

from typing import Any

from schema.errors import GenericError, QMPError
from schema.model import EnumType
from schema.opts.cutils import strtoull
from schema.opts.qemuopts import OptsError, OptsStore
from vmm.cmdline.groups import GROUPS
from vmm.hmp.args import ArgumentError
from vmm.hmp.interpreter import Hmp, HmpNotImplemented

Args = dict[str, Any]

# util/log.c qemu_log_items: (name, help), in QEMU's order.
LOG_ITEMS = (
    ("out_asm", "show generated host assembly code for each compiled TB"),
    ("in_asm", "show target assembly code for each compiled TB"),
    ("op", "show micro ops for each compiled TB"),
    ("op_opt", "show micro ops after optimization"),
    ("op_ind", "show micro ops before indirect lowering"),
    ("int", "show interrupts/exceptions in short format"),
    ("exec", "show trace before each executed TB (lots of logs)"),
    ("cpu", "show CPU registers before entering a TB (lots of logs)"),
    ("mmu", "log MMU-related activities"),
    ("pcall", "x86 only: show protected mode far calls/returns/exceptions"),
    ("cpu_reset", "show CPU state before CPU resets"),
    ("unimp", "log unimplemented functionality"),
    ("guest_errors", "log when the guest OS does something invalid (eg accessing a\n"
                     "non-existent register)"),
    ("page", "dump pages at beginning of user mode emulation"),
    ("nochain", "do not chain compiled TBs so that \"exec\" and \"cpu\" show\n"
                "complete traces"),
)

# target/i386/monitor.c monitor_defs: the `$name`s an expression may read.
X86_REGISTERS = frozenset(
    "eax ecx edx ebx esp sp ebp fp esi edi r8 r9 r10 r11 r12 r13 r14 r15 eflags eip pc"
    .split() + [f"{seg}{part}" for seg in ("cs", "ds", "es", "ss", "fs", "gs")
                for part in ("", ".base", ".limit")])


def enum_values(hmp: Hmp, name: str) -> tuple[str, ...]:
    """The values of the schema enum `name` (QEMU's <Enum>_lookup)."""
    typ = hmp.machine.schema.lookup_type(name)
    assert isinstance(typ, EnumType)
    return typ.values


def qapi_enum_parse(hmp: Hmp, enum: str, value: str) -> str:
    """qapi/qapi-util.c qapi_enum_parse with an error pointer."""
    if value not in enum_values(hmp, enum):
        raise GenericError(f"invalid parameter value: {value}")
    return value


def has_cpu(hmp: Hmp) -> bool:
    """mon_get_cpu() finds a CPU: the machine has vCPUs."""
    return hmp.machine.board.vcpus > 0


# -- hooks of the argument parser --------------------------------------------------------


def monitor_register(hmp: Hmp, name: str) -> int | None:
    """monitor.c get_monitor_def: a register of the monitor's CPU (None: "unknown
    register"). The emulator has no CPU state, so a register that QEMU knows is not
    implemented."""
    if not has_cpu(hmp) or name not in X86_REGISTERS:
        return None
    raise HmpNotImplemented(f"${name}")


def parse_group_opts(group: str, text: str) -> dict[str, Any]:
    """An `O` argument: qemu_opts_parse_noisily (implied key allowed) of option group
    `group`, then qemu_opts_to_qdict. Errors are printed as error_report_err prints
    them. (The instance is deleted at once, as monitor.c does, so only ids the same
    line repeats are duplicates here.)"""
    lst = GROUPS[group]
    store = OptsStore(GROUPS)
    try:
        opts = store.parse(lst, text, True, ())
    except OptsError as err:
        raise ArgumentError(f"{err.message}\n{err.hint}") from None
    out: dict[str, Any] = {}
    if opts.id is not None:
        out["id"] = opts.id
    for key, value in opts.items:
        out[key] = value
    return out


# -- help, run state ----------------------------------------------------------------------


def hmp_help(hmp: Hmp, args: Args) -> None:
    """monitor.c do_help_cmd."""
    hmp.help(args.get("name"))


def hmp_info_help(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_help: `info` alone lists the info subcommands."""
    hmp.help("info")


def hmp_quit(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_quit."""
    hmp.qmp("quit")


def hmp_stop(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_stop."""
    hmp.qmp("stop")


def hmp_cont(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_cont."""
    hmp.qmp("cont")


def hmp_system_wakeup(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_system_wakeup."""
    hmp.qmp("system_wakeup")


def hmp_system_reset(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_system_reset."""
    hmp.qmp("system_reset")


def hmp_system_powerdown(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_system_powerdown."""
    hmp.qmp("system_powerdown")


def hmp_nmi(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_nmi."""
    hmp.qmp("inject-nmi")


def hmp_singlestep(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_singlestep: sets what query-status reports as `singlestep`."""
    option = args.get("option")
    if option is None or option == "on":
        hmp.machine.runstate.singlestep = True
    elif option == "off":
        hmp.machine.runstate.singlestep = False
    else:
        hmp.printf(f"unexpected option {option}\n")


def hmp_watchdog_action(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_watchdog_action -> watchdog.c select_watchdog_action (the name
    in ASCII lower case)."""
    action = args["action"]
    lowered = "".join(c.lower() if c.isascii() else c for c in action)
    if lowered not in enum_values(hmp, "WatchdogAction"):
        hmp.printf(f"Unknown watchdog action '{action}'\n")
        return
    hmp.qmp("watchdog-set-action", action=lowered)


def hmp_gdbserver(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_gdbserver -> gdbstub.c gdbserver_start. `none` with no stub
    running only says so; a stub on a chardev is not modelled."""
    device = args.get("device") or "tcp::1234"
    if not has_cpu(hmp):
        hmp.printf("gdbstub: meaningless to attach gdb to a machine without any CPU.\n")
        hmp.printf(f"Could not open gdbserver on device '{device}'\n")
        return
    if device != "none":
        raise HmpNotImplemented("gdbserver")
    hmp.printf("Disabled gdbserver\n")


def hmp_boot_set(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_boot_set -> bootdevice.c qemu_boot_set (validate_bootdevices,
    then the PC's set_boot_dev; the RTC's CMOS bytes it writes are not modelled)."""
    order = args["bootdevice"]
    try:
        if not hmp.machine.board.firmware:
            raise GenericError("no function defined to set boot device list for this "
                               "architecture")
        seen = set()
        for ch in order:
            if not "a" <= ch <= "p":
                raise GenericError(f"Invalid boot device '{_c(ch)}'")
            if ch in seen:
                raise GenericError(f"Boot device '{ch}' was given twice")
            seen.add(ch)
        if len(order.encode("utf-8", "surrogateescape")) > 3:
            raise GenericError("Too many boot devices for PC")
        for ch in order:
            if ch not in "abcdn":
                raise GenericError(f"Invalid boot device for PC: '{ch}'")
    except GenericError as err:
        hmp.report(err)
        return
    hmp.printf(f"boot device list now set to {order}\n")


def _c(text: str) -> str:
    """`%c` of the first byte of `text`."""
    raw = text.encode("utf-8", "surrogateescape")[:1]
    return raw.decode("utf-8", "surrogateescape")


# -- printing values ------------------------------------------------------------------------


def printc(value: int) -> str:
    """monitor.c monitor_printc: a character constant, escaped (`value` is the C int
    it receives)."""
    c = _c_int(value)
    special = {ord("'"): "\\'", ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r"}
    if c in special:
        body = special[c]
    elif 32 <= c <= 126:
        body = chr(c)
    else:
        body = f"\\x{c & 0xFFFFFFFF:02x}"
    return f"'{body}'"


def hmp_print(hmp: Hmp, args: Args) -> None:
    """monitor.c do_print (the value is a 64-bit hwaddr)."""
    fmt = args["format"]
    val = args["val"] & (2**64 - 1)
    if fmt == "o":
        text = f"0{val:o}" if val else "0"
    elif fmt == "x":
        text = f"0x{val:x}" if val else "0"
    elif fmt == "u":
        text = str(val)
    elif fmt == "c":
        text = printc(val)
    else:  # d, and the formats print has no use for
        text = str(val - 2**64 if val >> 63 else val)
    hmp.printf(text + "\n")


# -- identity ----------------------------------------------------------------------------


def hmp_info_status(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_status."""
    info = hmp.qmp("query-status")
    text = "VM status: " + ("running" if info["running"] else "paused")
    if info["singlestep"]:
        text += " (single step mode)"
    if not info["running"] and info["status"] != "paused":
        text += f" ({info['status']})"
    hmp.printf(text + "\n")


def hmp_info_version(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_version."""
    v = hmp.qmp("query-version")
    q = v["qemu"]
    hmp.printf(f"{q['major']}.{q['minor']}.{q['micro']}{v['package']}\n")


def hmp_info_name(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_name: nothing without -name."""
    name = hmp.qmp("query-name").get("name")
    if name is not None:
        hmp.printf(f"{name}\n")


def hmp_info_uuid(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_uuid."""
    hmp.printf(hmp.qmp("query-uuid")["UUID"] + "\n")


def hmp_info_kvm(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_kvm."""
    info = hmp.qmp("query-kvm")
    if info["present"]:
        hmp.printf("kvm support: " + ("enabled" if info["enabled"] else "disabled") + "\n")
    else:
        hmp.printf("kvm support: not compiled\n")


def hmp_info_vm_generation_id(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_vm_generation_id."""
    hmp.printf(hmp.qmp("query-vm-generation-id")["guid"] + "\n")


def hmp_info_iothreads(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_iothreads."""
    for info in hmp.qmp("query-iothreads"):
        hmp.printf(f"{info['id']}:\n"
                   f"  thread_id={info['thread-id']}\n"
                   f"  poll-max-ns={info['poll-max-ns']}\n"
                   f"  poll-grow={info['poll-grow']}\n"
                   f"  poll-shrink={info['poll-shrink']}\n")


def hmp_info_history(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_history: this monitor's readline history (a
    human-monitor-command's monitor has none)."""
    if hmp.readline is None:
        return
    for i, line in enumerate(hmp.readline.history):
        hmp.printf(f"{i}: '{line}'\n")


def hmp_info_profile(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_profile of a build without CONFIG_PROFILER."""
    hmp.printf("Internal profiler not compiled\n")


def hmp_info_capture(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_capture: no audio capture runs (wavcapture is not
    implemented), so the list is empty."""


def hmp_info_registers(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_registers: "No CPU available" without one (-a prints a
    header per CPU; there are none); the CPU state is not modelled."""
    if args.get("cpustate_all"):
        if has_cpu(hmp):
            raise HmpNotImplemented("info registers")
        return
    if not has_cpu(hmp):
        hmp.printf("No CPU available\n")
        return
    raise HmpNotImplemented("info registers")


def hmp_info_cpustats(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_cpustats (x86 has no statistics to dump)."""
    if not has_cpu(hmp):
        hmp.printf("No CPU available\n")


def not_modelled(name: str) -> Any:
    """An HMP command whose subsystem is not modelled and that has no QMP command."""

    def handler(hmp: Hmp, args: Args) -> None:
        raise HmpNotImplemented(name)

    handler.__name__ = "hmp_" + name.replace(" ", "_").replace("-", "_")
    handler.__doc__ = f"`{name}`: not modelled yet."
    return handler


def via_qmp(command: str, /, **members: str) -> Any:
    """An HMP command that only runs QMP command `name` with the HMP arguments
    `members` names (QMP member in snake_case -> HMP argument key; absent optional
    arguments are left out), and prints nothing unless it fails."""

    def handler(hmp: Hmp, args: Args) -> None:
        hmp.qmp(command, **{param: args[key] for param, key in members.items() if key in args})

    handler.__name__ = "hmp_" + command.replace("-", "_")
    handler.__doc__ = f"hmp.c: qmp {command}"
    return handler


def info_via_qmp(query: str, info: str, /, **members: str) -> Any:
    """An `info` subcommand whose QMP query has no handler yet: hmp.c calls the
    query first, so its "not implemented" error is what this prints (its text from
    the query's result comes with the subsystem)."""

    def handler(hmp: Hmp, args: Args) -> None:
        hmp.qmp(query, **{param: args[key] for param, key in members.items() if key in args})
        raise HmpNotImplemented(f"info {info}")

    handler.__name__ = "hmp_info_" + info.replace("-", "_")
    handler.__doc__ = f"`info {info}`: hmp.c with qmp {query}."
    return handler


def hmp_stopcapture(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_stopcapture: no capture runs, so no index names one."""


# -- tracing and logging --------------------------------------------------------------


def hmp_trace_event(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_trace_event."""
    vcpu = args.get("vcpu")
    if vcpu is not None and _c_int(vcpu) < 0:
        hmp.printf("argument vcpu must be positive")
        return
    hmp.qmp("trace-event-set-state", args["name"], args["option"], ignore_unavailable=True,
            vcpu=None if vcpu is None else _c_int(vcpu))


def hmp_info_trace_events(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_info_trace_events."""
    name = args.get("name", "*")
    vcpu = args.get("vcpu")
    if vcpu is not None and _c_int(vcpu) < 0:
        hmp.printf("argument vcpu must be positive")
        return
    for ev in hmp.qmp("trace-event-get-state", name,
                      vcpu=None if vcpu is None else _c_int(vcpu)):
        hmp.printf(f"{ev['name']} : state {1 if ev['state'] == 'enabled' else 0}\n")


def _c_int(value: int) -> int:
    """qdict_get_try_int into a C int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def print_log_items(hmp: Hmp) -> None:
    """monitor.c help_cmd for `log`: the log items."""
    hmp.printf("Log items (comma separated):\n")
    hmp.printf(f"{'none':<10} remove all logs\n")
    for name, text in LOG_ITEMS:
        hmp.printf(f"{name:<10} {text}\n")


def hmp_log(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_log -> util/log.c qemu_str_to_log_mask: `none`, `all`, item
    names and `trace:PATTERN` (which enables trace events, as the log backend's
    trace_enable_events does); an unknown item prints the list of items. Nothing the
    emulator runs writes these logs."""
    items = args["items"]
    if items == "none":
        hmp.state.log_items = ()
        return
    names = [name for name, _ in LOG_ITEMS]
    chosen: list[str] = []
    for part in items.split(","):
        if part == "all":
            chosen.extend(names)
        elif part.startswith("trace:") and len(part) > 6:
            _enable_trace_events(hmp, part[6:])  # at once, as QEMU parses the list
            chosen.append("trace")
        elif part in names:
            chosen.append(part)
        else:
            hmp.help("log")
            return
    hmp.state.log_items = tuple(dict.fromkeys(chosen))


def hmp_logfile(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_logfile -> util/log.c qemu_set_log_filename: one `%d` (the pid)
    at most, else its error. Opening the log (the log trace backend always has one)
    is not modelled."""
    filename = args["filename"]
    at = filename.find("%")
    if at >= 0 and (filename[at + 1:at + 2] != "d" or "%" in filename[at + 2:]):
        raise GenericError(f"Bad logfile format: {filename}")
    raise HmpNotImplemented("logfile")


def _enable_trace_events(hmp: Hmp, line: str) -> None:
    """trace/control.c trace_enable_events / do_trace_enable_events (`help` lists the
    events on QEMU's stderr, not on the monitor)."""
    if line in ("help", "?"):
        return
    enable = not line.startswith("-")
    name = line if enable else line[1:]
    pattern = "*" in name
    try:
        events = hmp.qmp("trace-event-get-state", name)
    except QMPError:
        events = []
    if not pattern:
        if not events:
            hmp.printf(f"WARNING: trace event '{name}' does not exist\n")
            return
        if events[0]["state"] == "unavailable":
            hmp.printf(f"WARNING: trace event '{name}' is not traceable\n")
            return
    if events:
        hmp.qmp("trace-event-set-state", name, enable, ignore_unavailable=True)


# -- fds --------------------------------------------------------------------------------


def hmp_getfd(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_getfd -> monitor.c qmp_getfd on this monitor's chardev: the
    descriptors that came with the last data it read (chardev/char-socket.c
    tcp_get_msgfds takes the first and closes the others)."""
    try:
        hmp.qmp("getfd", args["fdname"])
    finally:
        hmp.session.fds.drop_received()


def hmp_closefd(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_closefd."""
    hmp.qmp("closefd", args["fdname"])


# -- input, devices, objects -----------------------------------------------------------


def hmp_sendkey(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_sendkey: the key names (QKeyCode) and numbers are checked, then
    send-key."""
    keys: str = args["keys"]
    qcodes = enum_values(hmp, "QKeyCode")
    values: list[dict[str, Any]] = []
    while True:
        sep = keys.find("-")
        name = keys if sep < 0 else keys[:sep]
        if name == "<":
            name = "less"
        if name.startswith("0x"):
            number, end, _overflow = strtoull(name, 0)
            if end != len(name):
                hmp.printf(f"invalid parameter: {name}\n")
                return
            values.append({"type": "number", "data": _c_int(number)})
        else:
            if name not in qcodes:
                hmp.printf(f"invalid parameter: {name}\n")
                return
            values.append({"type": "qcode", "data": name})
        if sep < 0:
            break
        keys = keys[sep + 1:]
    hold = args.get("hold-time")
    hmp.qmp("send-key", values, hold_time=None if hold is None else _c_int(hold))


def hmp_device_add(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_device_add: the QemuOpts of the line, as device_add's arguments."""
    hmp.qmp("device_add", dict(args))


def hmp_netdev_add(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_netdev_add: the options as netdev_add's."""
    hmp.qmp("netdev_add", dict(args))


def hmp_object_add(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_object_add -> user_creatable_add_opts: the values are read by the
    opts visitor (text to the property's type), then added as object-add adds."""
    from devices.objects import props_from_opts

    typename = args.get("qom-type")
    props = props_from_opts(str(typename), [(k, str(v)) for k, v in args.items()
                                            if k not in ("qom-type", "id")])
    hmp.qmp("object-add", typename, args.get("id"), props=props or None)


def hmp_qom_list(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_qom_list: no path prints the root."""
    path = args.get("path")
    if path is None:
        hmp.printf("/\n")
        return
    for prop in hmp.qmp("qom-list", path):
        hmp.printf(f"{prop['name']} ({prop['type']})\n")


def hmp_qom_set(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_qom_set: the value as text (object_property_parse)."""
    hmp.qmp("qom-set", args["path"], args["property"], args["value"])


def hmp_info_qom_tree(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_qom_tree / print_qom_composition: `/name (type)` for the object
    and, two columns further in, each child (in property order; QEMU's is GLib hash
    order)."""
    qdev = hmp.state.qdev
    if qdev is None:
        return
    from devices.qom import resolve_path

    path = args.get("path")
    if path is not None:
        obj, _ = resolve_path(qdev.root, path)
        if obj is None:
            hmp.printf(f"Path '{path}' could not be resolved.\n")
            return
    else:
        obj = qdev.root.child("machine")
        if obj is None:
            return
    stack = [(obj, 0)]
    while stack:
        node, indent = stack.pop()
        name = "" if node.parent is None else node.name
        hmp.printf(f"{' ' * indent}/{name} ({node.typename})\n")
        stack.extend((child, indent + 2) for child in reversed(list(node.children())))


def hmp_info_pci(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_pci / hmp_info_pci_device."""
    for bus in hmp.qmp("query-pci"):
        for dev in bus["devices"]:
            hmp.printf(f"  Bus {dev['bus']:2}, device {dev['slot']:3}, function "
                       f"{dev['function']}:\n    ")
            cls = dev["class_info"]
            hmp.printf(cls["desc"] if "desc" in cls else f"Class {cls['class']:04}")
            hmp.printf(f": PCI device {dev['id']['vendor']:04x}:{dev['id']['device']:04x}\n")
            if "irq" in dev:
                hmp.printf(f"      IRQ {dev['irq']}.\n")
            for region in dev["regions"]:
                addr = region["address"] & 0xFFFFFFFFFFFFFFFF
                end = (addr + region["size"] - 1) & 0xFFFFFFFFFFFFFFFF
                hmp.printf(f"      BAR{region['bar']}: ")
                if region["type"] == "io":
                    hmp.printf(f"I/O at 0x{addr:04x} [0x{end:04x}].\n")
                else:
                    bits = 64 if region.get("mem_type_64") else 32
                    pref = " prefetchable" if region.get("prefetch") else ""
                    hmp.printf(f"{bits} bit{pref} memory at 0x{addr:08x} [0x{end:08x}].\n")
            hmp.printf(f'      id "{dev["qdev_id"]}"\n')


def hmp_info_usb(hmp: Hmp, args: Args) -> None:
    """hw/usb/bus.c hmp_info_usb: every used port of every USB bus (the device's
    USB address is the one the guest gave it: 0 until it does)."""
    qdev = hmp.state.qdev
    buses = [b for b in qdev.buses if b.type == "usb-bus"] if qdev is not None else []
    if not buses:
        hmp.printf("USB support not enabled\n")
        return
    from devices.usb import PRODUCT

    for number, bus in enumerate(buses):
        for port, dev in bus.extra.get("used", {}).items():
            ident = f", ID: {dev.id}" if dev.id else ""
            hmp.printf(f"  Device {number}.0, Port {port}, Speed 12 Mb/s, Product "
                       f"{PRODUCT.get(dev.typename, dev.typename)}{ident}\n")


def hmp_usb_add(hmp: Hmp, args: Args) -> None:
    """vl.c usb_device_add (hmp_usb_add): `tablet`, `mouse`, `keyboard` and the other
    legacy names become a device on the first USB bus; the error is printed."""
    from devices.qdev import QMPError, device_add

    qdev = hmp.state.qdev
    legacy = {"tablet": "usb-tablet", "mouse": "usb-mouse", "keyboard": "usb-kbd",
              "wacom-tablet": "usb-wacom-tablet", "braille": "usb-braille"}
    name = args["devname"]
    driver = legacy.get(name)
    hmp.printf("usb_add is deprecated, please use device_add instead\n")
    if qdev is None or driver is None or not getattr(qdev.board, "usb", False):
        hmp.printf(f"could not add USB device '{name}'\n")  # machine_usb() is off
        return
    try:
        device_add(qdev, [("driver", driver)], None)
    except QMPError:
        hmp.printf(f"could not add USB device '{name}'\n")


def hmp_usb_del(hmp: Hmp, args: Args) -> None:
    """vl.c usb_device_del: `bus.addr` of a USB device (the guest gives the
    addresses; none has been given here, so none matches)."""
    hmp.printf("usb_del is deprecated, please use device_del instead\n")
    hmp.printf(f"could not delete USB device '{args['devname']}'\n")


def hmp_acl(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_acl_* -> find_acl: access control lists exist only for a VNC
    server with `acl`, and there is no display."""
    hmp.printf(f"acl: unknown list '{args['aclname']}'\n")


# -- migration (not modelled yet: each reaches its QMP command) ------------------------


def hmp_migrate_continue(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_migrate_continue."""
    hmp.qmp("migrate-continue", qapi_enum_parse(hmp, "MigrationStatus", args["state"]))


def hmp_migrate_set_capability(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_migrate_set_capability."""
    cap = qapi_enum_parse(hmp, "MigrationCapability", args["capability"])
    hmp.qmp("migrate-set-capabilities", [{"capability": cap, "state": args["state"]}])


def hmp_client_migrate_info(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_client_migrate_info."""
    hmp.qmp("client_migrate_info", args["protocol"], args["hostname"],
            port=args.get("port"), tls_port=args.get("tls-port"),
            cert_subject=args.get("cert-subject"))


def hmp_dump_guest_memory(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_dump_guest_memory."""
    kinds = [k for k in ("zlib", "lzo", "snappy") if args.get(k)]
    if len(kinds) > 1:
        raise GenericError("only one of '-z|-l|-s' can be set")
    fmt = {"zlib": "kdump-zlib", "lzo": "kdump-lzo", "snappy": "kdump-snappy"}.get(
        kinds[0] if kinds else "", "elf")
    hmp.qmp("dump-guest-memory", bool(args.get("paging")), "file:" + args["filename"],
            detach=bool(args.get("detach")), begin=args.get("begin"),
            length=args.get("length"), format=fmt)


def hmp_ringbuf_read(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_ringbuf_read: control characters escaped."""
    data = hmp.qmp("ringbuf-read", args["device"], _c_int(args["size"]) & 0xFFFFFFFF)
    out = []
    for ch in data:
        if ch == "\\":
            out.append("\\\\")
        elif (ord(ch) < 0x20 and ch not in "\n\t") or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    hmp.printf("".join(out) + "\n")


def hmp_mce(hmp: Hmp, args: Args) -> None:
    """target/i386/monitor.c hmp_mce: the CPU is looked up first."""
    cpu = _c_int(args["cpu_index"])
    if not 0 <= cpu < hmp.machine.board.vcpus:
        return
    raise HmpNotImplemented("mce")
