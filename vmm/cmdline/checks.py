"""The checks vl.c's main() makes after its option loop, before it builds the machine.

Layer: vmm, pure (no I/O, no trio). Part of `vmm.cmdline`: `PostLoopChecks` adds to
the parser's state (`vmm.cmdline.state`) what runs once every option is read:
memory size, sandbox, add-fd, `-d`, smp topology, default devices, boot order,
`-append`/`-initrd` without `-kernel`, monitors, serial and parallel ports, VGA and
watchdog. These print without a location unless QEMU restores the location of the
option group instance concerned.
"""

from __future__ import annotations

from schema.opts.cutils import UINT64_MAX, to_c_int, to_c_unsigned
from schema.opts.qemuopts import OptsError, is_help_option, parse_bool, parse_number, parse_size
from vmm.cmdline.chardev import CompatError, chr_parse_compat
from vmm.cmdline.errors import CommandLineError, Diagnostic
from vmm.cmdline.groups import GROUPS
from vmm.cmdline.model import Action, Boot, CharPort, Memory, Monitor, Sandbox, Smp
from vmm.cmdline.state import DeviceConfig, ParserState, opts_bool

#: hw/i386/pc.c: every x86 machine type defaults to 128 MiB.
DEFAULT_RAM_SIZE = 128 << 20
MAX_SERIAL_PORTS = 4
MAX_PARALLEL_PORTS = 3
MAX_VIRTIO_CONSOLES = 1

#: vl.c default_list: a -device/-global of these drivers drops a default.
DEFAULT_DRIVERS = {
    "isa-serial": "serial",
    "isa-parallel": "parallel",
    "isa-fdc": "floppy",
    "floppy": "floppy",
    "ide-cd": "cdrom",
    "ide-hd": "cdrom",
    "ide-drive": "cdrom",
    "scsi-cd": "cdrom",
    "scsi-hd": "cdrom",
    "virtio-serial-pci": "virtcon",
    "virtio-serial": "virtcon",
    "VGA": "vga",
    "isa-vga": "vga",
    "cirrus-vga": "vga",
    "isa-cirrus-vga": "vga",
    "vmware-svga": "vga",
    "qxl-vga": "vga",
    "virtio-vga": "vga",
}

#: hw/watchdog: x86_64 models, in the order `-watchdog help` lists them.
WATCHDOG_MODELS = (("ib700", "iBASE 700"), ("i6300esb", "Intel 6300ESB"))

#: vl.c vga_interfaces[]: option name, human name, available on x86_64.
VGA_INTERFACES = (
    ("none", None, True),
    ("std", "standard VGA", True),
    ("cirrus", "Cirrus VGA", True),
    ("vmware", "VMWare SVGA", True),
    ("virtio", "Virtio VGA", True),
    ("qxl", "QXL VGA", True),
    ("tcx", "TCX framebuffer", False),
    ("cg3", "CG3 framebuffer", False),
    ("xenfb", None, True),
)

#: util/log.c qemu_log_items (names only).
LOG_ITEMS = (
    "out_asm",
    "in_asm",
    "op",
    "op_opt",
    "op_ind",
    "int",
    "exec",
    "cpu",
    "mmu",
    "pcall",
    "cpu_reset",
    "unimp",
    "guest_errors",
    "page",
    "nochain",
)


class PostLoopChecks(ParserState):
    """vl.c main() between the option loop and machine creation."""

    def finish(self) -> Action:
        self.set_memory_options()
        self.check_sandbox()
        self.check_add_fd()
        log = self.strings.get("log_items")
        if log is not None and not _log_mask_valid(log):
            return Action.LOG_USAGE
        if self.list_data_dirs:
            return Action.LIST_DATA_DIRS
        self.smp = self.smp_parse()
        self.default_devices()
        self.check_boot()
        self.check_monitors()
        self.char_ports()
        if self.vga_model is not None:
            self.select_vgahw(self.vga_model)
        if self.watchdog is not None:
            self.select_watchdog(self.watchdog)
        return Action.RUN

    def set_memory_options(self) -> None:
        """vl.c set_memory_options (default RAM size: 128 MiB)."""
        opts = self.store.find("memory", None)
        if opts is None:
            opts = self.store.create(GROUPS["memory"], None, False, ())
        loc = opts.location
        size = 0
        mem_str = opts.get("size")
        if mem_str is not None:
            if not mem_str:
                raise self.fail("missing 'size' option value", location=loc)
            size = parse_size("size", mem_str)
            if "0" <= mem_str[-1] <= "9":
                legacy = size
                size = (size << 20) & UINT64_MAX
                if size >> 20 != legacy:
                    raise self.fail("too large 'size' option value", location=loc)
        if size == 0:
            size = DEFAULT_RAM_SIZE
        ram_size = ((size + 8191) & UINT64_MAX) // 8192 * 8192
        self.store.opt_set_typed(opts, "size", str(ram_size))
        max_ram = ram_size
        slots = 0
        maxmem_str = opts.get("maxmem")
        slots_str = opts.get("slots")
        if maxmem_str is not None and slots_str is not None:
            max_ram = parse_size("maxmem", maxmem_str)
            slots = parse_number("slots", slots_str)
            if max_ram < ram_size:
                raise self.fail(
                    f"invalid value of -m option maxmem: maximum memory size (0x{max_ram:x}) "
                    f"must be at least the initial memory size (0x{ram_size:x})",
                    location=loc,
                )
            if max_ram > ram_size:
                if not slots:
                    raise self.fail(
                        "invalid value of -m option: maxmem was specified, "
                        "but no hotplug slots were specified",
                        location=loc,
                    )
            elif slots:
                raise self.fail(
                    f"invalid value of -m option maxmem: memory slots were specified but "
                    f"maximum memory size (0x{max_ram:x}) is equal to the initial memory "
                    f"size (0x{ram_size:x})",
                    location=loc,
                )
        elif (maxmem_str is None) != (slots_str is None):
            missing = "maxmem" if slots_str is not None else "slots"
            raise self.fail(f"invalid -m option value: missing '{missing}' option", location=loc)
        self.memory = Memory(ram_size, max_ram, slots)

    def check_sandbox(self) -> None:
        """vl.c parse_sandbox (seccomp is compiled in; nothing is installed here)."""
        result = Sandbox()
        for opts in self.store.instances["sandbox"]:
            enable = opts_bool(opts, "enable", False)
            values: dict[str, str | None] = {}
            if enable:
                for key, allowed in (
                    ("obsolete", ("allow", "deny")),
                    ("elevateprivileges", ("deny", "children", "allow")),
                    ("spawn", ("deny", "allow")),
                    ("resourcecontrol", ("deny", "allow")),
                ):
                    value = opts.get(key)
                    if value is not None and value not in allowed:
                        raise self.fail(f"invalid argument for {key}", location=opts.location)
                    values[key] = value
            result = Sandbox(enable, **values)
        self.sandbox = result

    def check_add_fd(self) -> None:
        """vl.c parse_add_fd, up to where it needs the descriptor itself."""
        for opts in self.store.instances["add-fd"]:
            fd_str = opts.get("fd")
            fd = to_c_int(parse_number("fd", fd_str)) if fd_str is not None else -1
            set_str = opts.get("set")
            fdset = parse_number("set", set_str) if set_str is not None else -1
            if fdset > (1 << 63) - 1:
                fdset -= 1 << 64
            if fd < 0:
                raise self.fail(
                    "fd option is required and must be non-negative", location=opts.location
                )
            if fd <= 2:
                raise self.fail("fd cannot be a standard I/O stream", location=opts.location)
            if fdset < 0:
                raise self.fail(
                    "set option is required and must be non-negative", location=opts.location
                )

    def smp_parse(self) -> Smp:
        """vl.c smp_parse (unsigned 32-bit arithmetic, as in C)."""
        opts = self.store.find("smp-opts", None)
        if opts is None:
            return Smp()

        def num(key: str, default: int) -> int:
            value = opts.get(key) if opts is not None else None
            return to_c_unsigned(parse_number(key, value)) if value is not None else default

        u = to_c_unsigned
        cpus, sockets, cores, threads = (
            num("cpus", 0),
            num("sockets", 0),
            num("cores", 0),
            num("threads", 0),
        )
        if cpus == 0 or sockets == 0:
            sockets = sockets or 1
            cores = cores or 1
            threads = threads or 1
            if cpus == 0:
                cpus = u(cores * threads * sockets)
        elif cores == 0:
            threads = threads or 1
            divisor = u(sockets * threads)
            cores = (cpus // divisor if divisor else 0) or 1
        elif threads == 0:
            divisor = u(cores * sockets)
            threads = (cpus // divisor if divisor else 0) or 1
        elif u(sockets * cores * threads) < cpus:
            raise self.fail(
                f"cpu topology: sockets ({sockets}) * cores ({cores}) * threads ({threads}) "
                f"< smp_cpus ({cpus})"
            )
        max_cpus = num("maxcpus", cpus)
        if max_cpus < cpus:
            raise self.fail("maxcpus must be equal to or greater than smp")
        if u(sockets * cores * threads) > max_cpus:
            raise self.fail(
                f"cpu topology: sockets ({sockets}) * cores ({cores}) * threads ({threads}) "
                f"> maxcpus ({max_cpus})"
            )
        return Smp(cpus, sockets, cores, threads, max_cpus)

    def default_devices(self) -> None:
        """vl.c: default_driver_check, has_defaults, -nographic's redirections."""
        for group in ("device", "global"):
            for opts in self.store.instances[group]:
                flag = DEFAULT_DRIVERS.get(opts.get("driver") or "")
                if flag is not None:
                    self.defaults[flag] = False
        if not self.has_defaults:
            for flag in ("serial", "parallel", "virtcon", "floppy", "cdrom", "sdcard"):
                self.defaults[flag] = False
        # x86 machines have neither virtio consoles nor sclp by default.
        self.defaults["virtcon"] = False
        if not self.has_defaults:
            self.defaults["monitor"] = self.defaults["net"] = self.defaults["vga"] = False
        d = self.defaults
        nographic = self.display_flags["nographic"]
        if self.flags.get("daemonize"):
            if nographic and (d["parallel"] or d["serial"] or d["monitor"] or d["virtcon"]):
                raise self.fail("-nographic cannot be used with -daemonize")
            if self.display == "curses":
                raise self.fail("curses display cannot be used with -daemonize")
        if nographic:
            if d["parallel"]:
                self.add_default_port("parallel", "null")
            if d["serial"] and d["monitor"]:
                self.add_default_port("serial", "mon:stdio")
            else:
                if d["serial"]:
                    self.add_default_port("serial", "stdio")
                if d["monitor"]:
                    self.monitor_parse("stdio", "readline", False)
        else:
            if d["serial"]:
                self.add_default_port("serial", "vc:80Cx24C")
            if d["parallel"]:
                self.add_default_port("parallel", "vc:80Cx24C")
            if d["monitor"]:
                self.monitor_parse("vc:80Cx24C", "readline", False)
        display_remote = self.spice_count + (1 if self.store.instances["vnc"] else 0)
        shown = self.display
        if shown == "default" and not display_remote:
            shown = "gtk"
        f = self.display_flags
        if (f["no_frame"] or f["alt_grab"] or f["ctrl_grab"]) and shown != "sdl":
            self.report(
                "-no-frame, -alt-grab and -ctrl-grab are only valid for SDL, ignoring option"
            )
        if f["no_quit"] and shown not in ("gtk", "sdl"):
            self.report("-no-quit is only valid for GTK and SDL, ignoring option")
        if d["net"]:
            # vl.c: qemu_opts_set(net, NULL, "type", "nic"), then "user".
            for kind in ("nic", "user"):
                self.store.set(GROUPS["net"], "type", kind, ())

    def add_default_port(self, kind: str, spec: str) -> None:
        self.device_configs.append(DeviceConfig(kind, spec, (), default=True))

    def check_boot(self) -> None:
        opts = self.store.find("boot-opts", None)
        boot = Boot()
        if opts is not None:
            for key in ("order", "once"):
                value = opts.get(key)
                if value is not None:
                    _validate_bootdevices(self, value)
            menu = opts.get("menu")
            boot = Boot(
                order=opts.get("order"),
                once=opts.get("once"),
                menu=None if menu is None else parse_bool("menu", menu),
                strict=opts_bool(opts, "strict", False),
                splash=opts.get("splash"),
                splash_time=opts.get("splash-time"),
                reboot_timeout=opts.get("reboot-timeout"),
            )
        self.boot = boot
        machine = self.store.find("machine", None)
        kernel = machine.get("kernel") if machine else None
        append = machine.get("append") if machine else None
        initrd = machine.get("initrd") if machine else None
        if kernel is None and append:
            raise self.fail("-append only allowed with -kernel option")
        if kernel is None and initrd is not None:
            raise self.fail("-initrd only allowed with -kernel option")

    def chardev_ids(self) -> set[str]:
        ids = set()
        for opts in self.store.instances["chardev"]:
            if opts.id is not None:
                ids.add(opts.id)
                if opts_bool(opts, "mux", False):
                    ids.add(f"{opts.id}-base")
        return ids

    def check_monitors(self) -> None:
        """vl.c mon_init_func for every -mon (and -qmp/-monitor) instance."""
        ids = self.chardev_ids()
        monitors = []
        for opts in self.store.instances["mon"]:
            mode = opts.get("mode")
            if mode is None:
                mode = "readline"
            if mode not in ("readline", "control"):
                raise self.fail(f'unknown monitor mode "{mode}"', location=opts.location)
            pretty = opts_bool(opts, "pretty", False)
            if opts_bool(opts, "default", False):
                self.report(
                    "option 'default' does nothing and is deprecated", location=opts.location
                )
            chardev = opts.get("chardev")
            if chardev is None or chardev not in ids:
                shown = "(null)" if chardev is None else chardev
                raise self.fail(f'chardev "{shown}" not found', location=opts.location)
            monitors.append(Monitor(chardev, mode, pretty, opts.id, opts.location))
        self.monitors = monitors

    def char_ports(self) -> None:
        """vl.c serial_parse, parallel_parse, virtcon_parse, debugcon_parse."""
        ids = self.chardev_ids()
        ports: dict[str, list[CharPort]] = {
            "serial": [],
            "parallel": [],
            "virtcon": [],
            "debugcon": [],
        }
        limits = {
            "serial": (MAX_SERIAL_PORTS, "too many serial ports", "serial device"),
            "parallel": (MAX_PARALLEL_PORTS, "too many parallel ports", "parallel device"),
            "virtcon": (MAX_VIRTIO_CONSOLES, "too many virtio consoles", "virtio console"),
        }
        monitors = self.monitors if self.monitors is not None else []
        for kind in ("serial", "parallel", "virtcon", "debugcon"):
            for conf in self.device_configs:
                if conf.kind != kind:
                    continue
                spec, loc = conf.spec, conf.location
                if kind != "debugcon" and spec == "none":
                    continue
                index = len(ports[kind])
                if kind == "debugcon":
                    label = "debugcon"
                else:
                    limit, too_many, _ = limits[kind]
                    if index == limit:
                        raise self.fail(too_many, location=loc)
                    label = f"{kind}{index}"
                earlier: list[Diagnostic] = []
                chardev = None
                chardev_id: str | None = None
                if spec.startswith("chardev:"):
                    if spec[8:] in ids:
                        chardev_id = spec[8:]
                else:
                    try:
                        opts = chr_parse_compat(self.store, GROUPS["chardev"], label, spec, loc)
                    except CompatError as exc:
                        if exc.reported is not None:
                            earlier.append(self.diag(exc.reported.message, exc.reported.hint, loc))
                    else:
                        self.store.delete(opts)
                        if label in ids:
                            earlier.append(
                                self.diag(
                                    f"attempt to add duplicate property '{label}' to object "
                                    "(type 'container')",
                                    location=loc,
                                )
                            )
                        else:
                            chardev = opts.freeze()
                            chardev_id = label
                            ids.add(label)
                            if opts_bool(opts, "mux", False):
                                ids.add(f"{label}-base")
                                monitors.append(Monitor(label, "readline", False, None, loc))
                if chardev_id is None:
                    if kind == "debugcon":
                        # vl.c debugcon_parse exits without a message of its own.
                        last = earlier[-1] if earlier else Diagnostic("", prefixed=False)
                        raise CommandLineError(last, 1, (*self.warnings, *earlier[:-1]))
                    raise self.fail(
                        f"could not connect {limits[kind][2]} to character backend '{spec}'",
                        location=loc,
                        earlier=earlier,
                    )
                ports[kind].append(
                    CharPort(kind, spec, index, chardev_id, chardev, loc, conf.default)
                )
                if kind == "virtcon":
                    bus = self.store.create(GROUPS["device"], None, False, loc)
                    self.store.opt_set(bus, "driver", "virtio-serial")
                    dev = self.store.create(GROUPS["device"], None, False, loc)
                    self.store.opt_set(dev, "driver", "virtconsole")
                    self.store.opt_set(dev, "chardev", label)
                elif kind == "debugcon":
                    try:
                        dev = self.store.create(GROUPS["device"], "debugcon", True, loc)
                    except OptsError:
                        raise self.fail("already have a debugcon device", location=loc) from None
                    self.store.opt_set(dev, "driver", "isa-debugcon")
                    self.store.opt_set(dev, "chardev", "debugcon")
        self.ports = ports

    def select_vgahw(self, p: str) -> None:
        """vl.c select_vgahw (a prefix match, then ,retrace=dumb|precise)."""
        for name, human, available in VGA_INTERFACES:
            if p.startswith(name):
                if not available:
                    raise self.fail(f"{human} not available")
                rest = p[len(name) :]
                break
        else:
            raise self.fail(f"unknown vga type: {p}")
        while rest:
            if rest.startswith(",retrace="):
                rest = rest[9:]
                for method in ("dumb", "precise"):
                    if rest.startswith(method):
                        rest = rest[len(method) :]
                        break
                else:
                    raise self.fail(f"unknown vga type: {p}")
            else:
                raise self.fail(f"unknown vga type: {p}")

    def select_watchdog(self, p: str) -> None:
        """hw/watchdog/watchdog.c select_watchdog (it prints with fprintf)."""
        listing = "".join(f"\t{name}\t{desc}\n" for name, desc in WATCHDOG_MODELS)
        if is_help_option(p):
            raise self.fail(listing, location=(), exit_status=0, prefixed=False)
        if not any(name.lower() == p.lower() for name, _ in WATCHDOG_MODELS):
            raise self.fail(
                "Unknown -watchdog device. Supported devices are:\n" + listing,
                location=(),
                prefixed=False,
            )
        opts = self.store.create(GROUPS["device"], None, False, ())
        self.store.opt_set(opts, "driver", p)


def _validate_bootdevices(parser: ParserState, devices: str) -> None:
    """bootdevice.c validate_bootdevices."""
    seen = 0
    for ch in devices:
        if not ("a" <= ch <= "p"):
            raise parser.fail(f"Invalid boot device '{ch}'")
        bit = 1 << (ord(ch) - ord("a"))
        if seen & bit:
            raise parser.fail(f"Boot device '{ch}' was given twice")
        seen |= bit


def _log_mask_valid(items: str) -> bool:
    """util/log.c qemu_str_to_log_mask (trace:PATTERN accepted)."""
    parts = items.split(",") if items else []
    if not parts:
        return False
    for part in parts:
        if part == "all" or part in LOG_ITEMS:
            continue
        if part.startswith("trace:") and len(part) > 6:
            continue
        return False
    return True
