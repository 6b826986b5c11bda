"""The option loop of QEMU 2.11's vl.c main(), and the checks right after it.

Layer: vmm, pure (no I/O, no trio). Used through `vmm.cmdline`.

Structure follows vl.c:

1. A first pass looks every option up (`-foo: invalid option`,
   `-m: requires an argument`) and notes `-no-user-config`.
2. A second pass handles the options in order; each error carries the
   location QEMU prints (the option and its argument as written).
3. After the loop, the checks vl.c makes before building the machine:
   memory size, sandbox, add-fd, `-d`, smp topology, default devices,
   boot order, `-append`/`-initrd` without `-kernel`, monitors, serial and
   parallel ports, VGA and watchdog. These print without a location unless
   QEMU restores the location of the option group instance concerned.

What needs the host or the machine models (file descriptors, files,
accelerator availability, machine and device type names, chardev
backends' own options) is left to the layers that own them; the values
they need are in the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vmm.cmdline.chardev import CompatError, chr_parse_compat
from vmm.cmdline.cutils import (
    UINT64_MAX,
    byte_truncate,
    qemu_strtou64,
    scan_int,
    scan_set,
    strtoll,
    to_c_int,
    to_c_unsigned,
)
from vmm.cmdline.errors import CommandLineError, Diagnostic, Location
from vmm.cmdline.groups import GROUPS
from vmm.cmdline.keyval import JSONAbort, KeyvalError, keyval_parse, parse_json_object
from vmm.cmdline.model import (
    Action,
    Blockdev,
    Boot,
    CharPort,
    CommandLine,
    DefaultDevices,
    Display,
    EmuOption,
    GlobalProperty,
    Memory,
    Monitor,
    ParsedOption,
    Rtc,
    Sandbox,
    Smp,
)
from vmm.cmdline.qemuopts import (
    MutableOpts,
    OptsError,
    OptsStore,
    QemuOpts,
    is_help_option,
    parse_bool,
    parse_number,
    parse_size,
)
from vmm.cmdline.table import OPTIONS, OVERCOMMIT, QemuOption

#: hw/i386/pc.c: every x86 machine type defaults to 128 MiB.
DEFAULT_RAM_SIZE = 128 << 20
MAX_SERIAL_PORTS = 4
MAX_PARALLEL_PORTS = 3
MAX_VIRTIO_CONSOLES = 1
MAX_OPTION_ROMS = 16

#: blockdev.c if_name[] for the interfaces drive_add() is given.
IF_FLOPPY, IF_PFLASH, IF_MTD, IF_SD = "floppy", "pflash", "mtd", "sd"
HD_OPTS = "media=disk"
CDROM_OPTS = "media=cdrom"

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

#: qapi/run-state.json WatchdogAction.
WATCHDOG_ACTIONS = ("reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi")

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

ACCEL_HELP = "Possible accelerators: kvm, xen, hax, tcg\n"


class _Stop(Exception):
    """The option loop ends early with an action (-version, -help, ...)."""

    def __init__(self, action: Action) -> None:
        super().__init__(action.value)
        self.action = action


class _DeviceConfig:
    """vl.c struct device_config: a -serial/-parallel/-gdb/... kept for later."""

    __slots__ = ("default", "kind", "location", "spec")

    def __init__(self, kind: str, spec: str, location: Location, default: bool = False) -> None:
        self.kind = kind
        self.spec = spec
        self.location = location
        self.default = default


def mktimegm(year: int, mon: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """util/cutils.c mktimegm with C's truncating division (struct tm fields)."""

    def cdiv(a: int, b: int) -> int:
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q

    y = year + 1900
    m = mon + 1
    d = mday
    if m < 3:
        m += 12
        y -= 1
    days = d + cdiv(153 * m - 457, 5) + 365 * y + cdiv(y, 4) - cdiv(y, 100) + cdiv(y, 400) - 719469
    t = (86400 * days) & UINT64_MAX
    t = t - (1 << 64) if t >> 63 else t
    return t + 3600 * hour + 60 * minute + sec


class Parser:
    """One run of vl.c's option handling over `argv` (without argv[0])."""

    def __init__(self, argv: Sequence[str], extra_options: Sequence[EmuOption]) -> None:
        self.argv = list(argv)
        self.extra = {opt.name: opt for opt in extra_options}
        self.store = OptsStore(GROUPS)
        self.loc: Location = ()
        self.timestamp = False
        self.warnings: list[Diagnostic] = []
        self.options: list[ParsedOption] = []
        self.emu: dict[str, str] = {}
        self.emu_options: list[tuple[str, str]] = []
        self.device_configs: list[_DeviceConfig] = []
        self.trace: list[MutableOpts] = []
        self.blockdevs: list[Blockdev] = []
        self.builtin_globals: list[GlobalProperty] = []
        self.monitor_device_index = 0
        self.hda_opts: MutableOpts | None = None
        self.cyls = self.heads = self.secs = 0
        self.translation = "auto"
        self.nb_option_roms = 0
        self.memory: Memory | None = None
        self.smp: Smp | None = None
        self.sandbox: Sandbox | None = None
        self.boot: Boot | None = None
        self.monitors: list[Monitor] | None = None
        self.ports: dict[str, list[CharPort]] = {}
        # vl.c globals
        self.autostart = True
        self.has_defaults = True
        self.defaults = {
            "serial": True,
            "parallel": True,
            "virtcon": True,
            "monitor": True,
            "floppy": True,
            "cdrom": True,
            "sdcard": True,
            "vga": True,
            "net": True,
        }
        self.userconfig = True
        self.cpu_model: str | None = None
        self.vga_model: str | None = None
        self.display = "default"
        self.display_options: list[tuple[str, str]] = []
        self.display_flags = {
            "nographic": False,
            "full_screen": False,
            "no_frame": False,
            "alt_grab": False,
            "ctrl_grab": False,
            "no_quit": False,
            "show_cursor": False,
        }
        self.rotate = 0
        self.spice_count = 0
        self.flags: dict[str, bool] = {}
        self.strings: dict[str, str] = {}
        self.data_dirs: list[str] = []
        self.list_data_dirs = False
        self.watchdog: str | None = None
        self.watchdog_action = "reset"
        self.mem_lock = False
        self.cpu_pm = False
        self.rtc_utc = True
        self.rtc_date: int | None = None
        self.rtc_now = False
        self.rtc_clock = "host"
        self.rtc_driftfix = "none"
        self.dump_vmstate: str | None = None

    # ------------------------------------------------------------------
    # reporting

    def diag(
        self, message: str, hint: str = "", location: Location | None = None, prefixed: bool = True
    ) -> Diagnostic:
        return Diagnostic(
            message,
            self.loc if location is None else location,
            hint,
            prefixed=prefixed,
            timestamp=self.timestamp,
        )

    def fail(
        self,
        message: str,
        hint: str = "",
        location: Location | None = None,
        exit_status: int = 1,
        earlier: Sequence[Diagnostic] = (),
        prefixed: bool = True,
    ) -> CommandLineError:
        return CommandLineError(
            self.diag(message, hint, location, prefixed),
            exit_status,
            (*self.warnings, *earlier),
        )

    def report(self, message: str, location: Location | None = None, warning: bool = False) -> None:
        """error_report()/warn_report() that does not stop QEMU."""
        d = self.diag(message, location=location)
        self.warnings.append(
            Diagnostic(d.message, d.location, timestamp=d.timestamp, warning=warning)
        )

    def opts_fail(self, exc: OptsError, location: Location | None = None) -> CommandLineError:
        return self.fail(exc.message, exc.hint, location)

    def parse_opts(
        self, group: str, arg: str, permit_abbrev: bool, location: Location | None = None
    ) -> MutableOpts:
        """qemu_opts_parse_noisily() followed by exit(1) on failure."""
        try:
            return self.store.parse(GROUPS[group], arg, permit_abbrev, self.loc)
        except OptsError as exc:
            raise self.opts_fail(exc, location) from None

    def machine_opts(self, params: str) -> None:
        """qemu_opts_parse_noisily(machine, ...) whose failure QEMU ignores."""
        try:
            self.store.parse(GROUPS["machine"], params, False, self.loc)
        except OptsError as exc:
            self.report(exc.message)

    def machine_set(self, key: str, value: str) -> None:
        """qemu_opts_set(machine, NULL, key, value)."""
        self.store.set(GROUPS["machine"], key, value, self.loc)

    # ------------------------------------------------------------------
    # option lookup (vl.c lookup_opt)

    def lookup(self, i: int) -> tuple[QemuOption | EmuOption, str | None, int]:
        word = self.argv[i]
        self.loc = (word,)
        name = word[2:] if word.startswith("--") else word[1:]
        if name.startswith("emu-"):
            return self.lookup_emu(i, name[4:])
        opt = OVERCOMMIT if name == OVERCOMMIT.name else OPTIONS.get(name)
        if opt is None:
            raise self.fail("invalid option")
        if not opt.has_arg:
            return opt, None, i + 1
        if i + 1 >= len(self.argv):
            raise self.fail("requires an argument")
        self.loc = (word, self.argv[i + 1])
        return opt, self.argv[i + 1], i + 2

    def lookup_emu(self, i: int, name: str) -> tuple[EmuOption, str | None, int]:
        key, eq, value = name.partition("=")
        opt = self.extra.get(key)
        if opt is None:
            raise self.fail("invalid option")
        if not opt.takes_value:
            if eq and value not in ("on", "off"):
                raise self.fail(f"Parameter 'emu-{key}' expects 'on' or 'off'")
            return opt, (value if eq else "on"), i + 1
        if eq:
            return opt, value, i + 1
        if i + 1 >= len(self.argv):
            raise self.fail("requires an argument")
        self.loc = (self.argv[i], self.argv[i + 1])
        return opt, self.argv[i + 1], i + 2

    # ------------------------------------------------------------------
    # the two passes

    def run(self) -> CommandLine:
        i = 0
        while i < len(self.argv):
            if not self.argv[i].startswith("-"):
                i += 1
                continue
            opt, _, i = self.lookup(i)
            if isinstance(opt, QemuOption) and opt.name in ("nodefconfig", "no-user-config"):
                self.userconfig = False
        # The second pass starts where the first one left the location.
        i = 0
        try:
            while i < len(self.argv):
                word = self.argv[i]
                if not word.startswith("-"):
                    self.hda_opts = self.drive_add(None, 0, word, HD_OPTS)
                    i += 1
                    continue
                opt, arg, i = self.lookup(i)
                if isinstance(opt, EmuOption):
                    self.handle_emu(opt, arg)
                    continue
                if not opt.target:
                    raise self.fail("Option not supported for this target")
                self.options.append(ParsedOption(opt.name, arg, self.loc))
                self.handle(opt.name, arg)
            self.loc = ()
            action = self.finish()
        except _Stop as stop:
            return self.result(stop.action)
        return self.result(action)

    def handle_emu(self, opt: EmuOption, arg: str | None) -> None:
        assert arg is not None
        if opt.choices and arg not in opt.choices:
            choices = ", ".join(opt.choices)
            raise self.fail(f"Parameter 'emu-{opt.name}' expects one of {choices}")
        self.emu[opt.name] = arg
        self.emu_options.append((opt.name, arg))

    def handle(self, name: str, arg: str | None) -> None:
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, arg)
            return
        if name in _FLAG_OPTIONS:
            self.flags[_FLAG_OPTIONS[name]] = True
        elif name in _STRING_OPTIONS and arg is not None:
            self.strings[_STRING_OPTIONS[name]] = arg

    # ------------------------------------------------------------------
    # block options

    def drive_add(
        self, iface: str | None, index: int, file: str | None, optstr: str
    ) -> MutableOpts:
        """blockdev.c drive_add."""
        opts = self.parse_opts("drive", optstr, False)
        if iface is not None:
            self.store.opt_set(opts, "if", iface)
        if index >= 0:
            self.store.opt_set(opts, "index", str(index))
        if file is not None:
            self.store.opt_set(opts, "file", file)
        return opts

    def opt_hda(self, arg: str | None) -> None:
        assert arg is not None
        if self.cyls == 0:
            optstr = HD_OPTS
        else:
            trans = {"lba": ",trans=lba", "none": ",trans=none"}.get(self.translation, "")
            optstr = f"{HD_OPTS},cyls={self.cyls},heads={self.heads},secs={self.secs}{trans}"
        self.drive_add(None, 0, arg, optstr)

    def opt_blockdev(self, arg: str | None) -> None:
        assert arg is not None
        # qobject_input_visitor_new_str: JSON if it starts with '{'.
        try:
            if arg.startswith("{"):
                blockdev = Blockdev(parse_json_object(arg), True, self.loc)
            else:
                blockdev = Blockdev(keyval_parse(arg, "driver"), False, self.loc)
        except KeyvalError as exc:
            raise self.fail(exc.message) from None
        except JSONAbort as exc:
            # QEMU fails an assertion and aborts (SIGABRT).
            raise self.fail(exc.message, location=(), exit_status=134) from None
        self.blockdevs.append(blockdev)

    def opt_hdachs(self, arg: str | None) -> None:
        """vl.c -hdachs c,h,s[,t] (deprecated; sets the first disk image's geometry)."""
        assert arg is not None

        def number(p: int, low: int, high: int) -> tuple[int, int]:
            value, end, _ = strtoll(arg[p:], 0)
            value = to_c_int(value)
            if value < low or value > high:
                raise self.fail("invalid physical CHS format")
            return value, p + end

        cyls, p = number(0, 1, 16383)
        if arg[p : p + 1] != ",":
            raise self.fail("invalid physical CHS format")
        heads, p = number(p + 1, 1, 16)
        if arg[p : p + 1] != ",":
            raise self.fail("invalid physical CHS format")
        secs, p = number(p + 1, 1, 63)
        translation = self.translation
        if arg[p : p + 1] == ",":
            translation = arg[p + 1 :]
            if translation not in ("large", "rechs", "none", "lba", "auto"):
                raise self.fail("invalid physical CHS format")
        elif p < len(arg):
            raise self.fail("invalid physical CHS format")
        self.cyls, self.heads, self.secs, self.translation = cyls, heads, secs, translation
        if self.hda_opts is not None:
            for key, value in (("cyls", cyls), ("heads", heads), ("secs", secs)):
                self.store.opt_set_typed(self.hda_opts, key, str(value))
            if translation in ("large", "rechs", "lba", "none"):
                self.store.opt_set(self.hda_opts, "trans", translation)
        self.report(
            "'-hdachs' is deprecated, please use '-device ide-hd,cyls=c,heads=h,secs=s,...' instead"
        )

    # ------------------------------------------------------------------
    # machine, memory, cpus

    def opt_accel(self, arg: str | None) -> None:
        assert arg is not None
        try:
            opts: MutableOpts | None = self.store.parse(GROUPS["accel"], arg, True, self.loc)
        except OptsError as exc:
            # QEMU reports the error, then finds no accelerator, lists them
            # and exits with status 0.
            first = self.diag(exc.message, exc.hint)
            raise self.fail(
                ACCEL_HELP, location=(), exit_status=0, earlier=[first], prefixed=False
            ) from None
        accel = opts.get("accel") if opts is not None else None
        if accel is None or is_help_option(accel):
            raise self.fail(ACCEL_HELP, location=(), exit_status=0, prefixed=False)
        machine = self.store.create(GROUPS["machine"], None, False, self.loc)
        self.store.opt_set(machine, "accel", accel)

    def opt_uuid(self, arg: str | None) -> None:
        assert arg is not None
        if not _uuid_valid(arg):
            raise self.fail("failed to parse UUID string: wrong format")
        self.strings["uuid"] = arg.lower()

    def opt_overcommit(self, arg: str | None) -> None:
        # QEMU 3.1 vl.c: -overcommit mem-lock=on|off,cpu-pm=on|off.
        assert arg is not None
        opts = self.parse_opts("overcommit", arg, False)
        self.mem_lock = _opts_bool(opts, "mem-lock", False)
        self.cpu_pm = _opts_bool(opts, "cpu-pm", False)

    def opt_realtime(self, arg: str | None) -> None:
        assert arg is not None
        opts = self.parse_opts("realtime", arg, False)
        self.mem_lock = _opts_bool(opts, "mlock", True)

    def opt_msg(self, arg: str | None) -> None:
        assert arg is not None
        opts = self.parse_opts("msg", arg, False)
        self.timestamp = _opts_bool(opts, "timestamp", True)

    def opt_global(self, arg: str | None) -> None:
        """qdev-monitor.c qemu_global_option."""
        assert arg is not None
        self.global_option(arg)

    def global_option(self, arg: str) -> None:
        driver, i = scan_set(arg, 0, 63, ".=", negate=True)
        if driver is not None and arg[i : i + 1] == ".":
            prop, j = scan_set(arg, i + 1, 63, "=", negate=True)
            if prop is not None and arg[j : j + 1] == "=":
                opts = self.store.create(GROUPS["global"], None, False, self.loc)
                self.store.opt_set(opts, "driver", driver)
                self.store.opt_set(opts, "property", prop)
                self.store.opt_set(opts, "value", arg[j + 1 :])
                return
        self.parse_opts("global", arg, False)

    def opt_set(self, arg: str | None) -> None:
        """util/qemu-config.c qemu_set_option: -set group.id.arg=value."""
        assert arg is not None
        group, i = scan_set(arg, 0, 63, ".", negate=True)
        ident = key = None
        if group is not None and arg[i : i + 1] == ".":
            ident, i = scan_set(arg, i + 1, 63, ".", negate=True)
            if ident is not None and arg[i : i + 1] == ".":
                key, i = scan_set(arg, i + 1, 63, "=", negate=True)
        if group is None or ident is None or key is None or arg[i : i + 1] != "=":
            raise self.fail(f'can\'t parse: "{arg}"')
        lst = self.store.find_list(group)
        if lst is None or lst.extension:
            raise self.fail(f"There is no option group '{group}'")
        opts = self.store.find(lst.name, ident)
        if opts is None:
            raise self.fail(f'there is no {lst.name} "{ident}" defined')
        try:
            self.store.opt_set(opts, key, arg[i + 1 :])
        except OptsError as exc:
            raise self.opts_fail(exc) from None

    # ------------------------------------------------------------------
    # display

    def opt_display(self, arg: str | None) -> None:
        """vl.c select_display."""
        assert arg is not None
        self.display = self.select_display(arg)

    def select_display(self, p: str) -> str:
        def settings(rest: str, allowed: tuple[str, ...], what: str) -> list[tuple[str, str]]:
            out = []
            while rest:
                for key in allowed:
                    prefix = f",{key}="
                    if rest.startswith(prefix):
                        rest = rest[len(prefix) :]
                        value = (
                            "on"
                            if rest.startswith("on")
                            else "off"
                            if rest.startswith("off")
                            else None
                        )
                        if value is None:
                            raise self.fail(f"invalid {what} option string")
                        out.append((key, value))
                        rest = rest[len(value) :]
                        break
                else:
                    raise self.fail(f"invalid {what} option string")
            return out

        if p.startswith("sdl"):
            self.display_options = settings(
                p[3:], ("frame", "alt_grab", "ctrl_grab", "window_close", "gl"), "SDL"
            )
            return "sdl"
        if p.startswith("vnc"):
            if p[3:4] == "=":
                self.vnc_parse(p[4:])
                return "default"
            raise self.fail("VNC requires a display argument vnc=<display>")
        if p.startswith("egl-headless"):
            return "egl-headless"
        if p.startswith("curses"):
            return "curses"
        if p.startswith("gtk"):
            self.display_options = settings(p[3:], ("grab_on_hover", "gl"), "GTK")
            return "gtk"
        if p.startswith("none"):
            return "none"
        raise self.fail("unknown display type")

    def opt_nographic(self, arg: str | None) -> None:
        self.machine_opts("graphics=off")
        self.display_flags["nographic"] = True
        self.display = "none"

    def opt_rotate(self, arg: str | None) -> None:
        assert arg is not None
        value = to_c_int(strtoll(arg, 10)[0])
        if value not in (0, 90, 180, 270):
            raise self.fail("only 90, 180, 270 deg rotation is available")
        self.rotate = value

    def vnc_parse(self, arg: str) -> None:
        """ui/vnc.c vnc_parse: ids default, vnc2, vnc3... when none is given."""
        opts = self.parse_opts("vnc", arg, True)
        if opts.id is None:
            ident = "default"
            n = 2
            while self.store.find("vnc", ident) is not None:
                ident = f"vnc{n}"
                n += 1
            opts.id = ident

    def opt_vnc(self, arg: str | None) -> None:
        assert arg is not None
        self.vnc_parse(arg)

    def opt_spice(self, arg: str | None) -> None:
        assert arg is not None
        self.parse_opts("spice", arg, False)
        self.spice_count += 1

    # ------------------------------------------------------------------
    # chardevs and monitors

    def monitor_parse(self, spec: str, mode: str, pretty: bool) -> None:
        """vl.c monitor_parse."""
        if spec.startswith("chardev:"):
            label = byte_truncate(spec[8:], 31)
        else:
            label = f"compat_monitor{self.monitor_device_index}"
            try:
                chr_parse_compat(self.store, GROUPS["chardev"], label, spec, self.loc)
            except CompatError as exc:
                earlier = (
                    [self.diag(exc.reported.message, exc.reported.hint)] if exc.reported else []
                )
                raise self.fail(f"parse error: {spec}", earlier=earlier) from None
        try:
            opts = self.store.create(GROUPS["mon"], label, True, self.loc)
        except OptsError as exc:
            raise self.opts_fail(exc) from None
        self.store.opt_set(opts, "mode", mode)
        self.store.opt_set(opts, "chardev", label)
        self.store.opt_set_typed(opts, "pretty", "on" if pretty else "off")
        self.monitor_device_index += 1

    def opt_monitor(self, arg: str | None) -> None:
        assert arg is not None
        self.defaults["monitor"] = False
        if not arg.startswith("none"):
            self.monitor_parse(arg, "readline", False)

    def opt_qmp(self, arg: str | None) -> None:
        assert arg is not None
        self.monitor_parse(arg, "control", False)
        self.defaults["monitor"] = False

    def opt_qmp_pretty(self, arg: str | None) -> None:
        assert arg is not None
        self.monitor_parse(arg, "control", True)
        self.defaults["monitor"] = False

    def opt_mon(self, arg: str | None) -> None:
        assert arg is not None
        self.parse_opts("mon", arg, True)
        self.defaults["monitor"] = False

    # ------------------------------------------------------------------
    # networking, devices, objects

    def opt_balloon(self, arg: str | None) -> None:
        """vl.c balloon_parse."""
        assert arg is not None
        if arg == "none":
            return
        if arg.startswith("virtio"):
            if arg[6:7] == ",":
                try:
                    opts = self.store.parse(GROUPS["device"], arg[7:], False, self.loc)
                except OptsError as exc:
                    first = self.diag(exc.message, exc.hint)
                    raise self.fail(f"unknown -balloon argument {arg}", earlier=[first]) from None
            else:
                opts = self.store.create(GROUPS["device"], None, False, self.loc)
            self.store.opt_set(opts, "driver", "virtio-balloon")
            return
        raise self.fail(f"unknown -balloon argument {arg}")

    def opt_usbdevice(self, arg: str | None) -> None:
        assert arg is not None
        self.report("'-usbdevice' is deprecated, please use '-device usb-...' instead")
        self.machine_opts("usb=on")
        self.device_configs.append(_DeviceConfig("usb", arg, self.loc))

    def opt_watchdog(self, arg: str | None) -> None:
        if self.watchdog is not None:
            raise self.fail("only one watchdog option may be given")
        self.watchdog = arg

    def opt_watchdog_action(self, arg: str | None) -> None:
        assert arg is not None
        action = _ascii_lower(arg)
        if action not in WATCHDOG_ACTIONS:
            raise self.fail("unknown -watchdog-action parameter")
        self.watchdog_action = action

    def opt_option_rom(self, arg: str | None) -> None:
        assert arg is not None
        if self.nb_option_roms >= MAX_OPTION_ROMS:
            raise self.fail("too many option ROMs")
        opts = self.parse_opts("option-rom", arg, True)
        if opts.get("romfile") is None:
            raise self.fail("Option ROM file is not specified")
        self.nb_option_roms += 1

    def opt_virtfs(self, arg: str | None) -> None:
        """vl.c -virtfs: an fsdev plus a virtio-9p-pci device."""
        assert arg is not None
        opts = self.parse_opts("virtfs", arg, True)
        tag = opts.get("mount_tag")
        if opts.get("fsdriver") is None or tag is None:
            raise self.fail("Usage: -virtfs fsdriver,mount_tag=tag")
        try:
            fsdev = self.store.create(GROUPS["fsdev"], opts.id or tag, True, self.loc)
        except OptsError:
            raise self.fail(f"duplicate or invalid fsdev id: {tag}") from None
        writeout = opts.get("writeout")
        if writeout is not None:
            self.store.opt_set(fsdev, "writeout", writeout)
        for key in ("fsdriver", "path", "security_model", "socket", "sock_fd"):
            value = opts.get(key)
            if value is not None:
                self.store.opt_set(fsdev, key, value)
        readonly = _opts_bool(opts, "readonly", False)
        self.store.opt_set_typed(fsdev, "readonly", "on" if readonly else "off")
        device = self.store.create(GROUPS["device"], None, False, self.loc)
        self.store.opt_set(device, "driver", "virtio-9p-pci")
        self.store.opt_set(device, "fsdev", fsdev.id or "")
        self.store.opt_set(device, "mount_tag", tag)

    def opt_virtfs_synth(self, arg: str | None) -> None:
        try:
            fsdev = self.store.create(GROUPS["fsdev"], "v_synth", True, self.loc)
        except OptsError:
            raise self.fail("duplicate option: virtfs_synth") from None
        self.store.opt_set(fsdev, "fsdriver", "synth")
        device = self.store.create(GROUPS["device"], None, False, self.loc)
        self.store.opt_set(device, "driver", "virtio-9p-pci")
        self.store.opt_set(device, "fsdev", "v_synth")
        self.store.opt_set(device, "mount_tag", "v_synth")

    def opt_tpmdev(self, arg: str | None) -> None:
        assert arg is not None
        if arg == "help":
            # tpm.c tpm_display_backend_drivers, then exit(1).
            raise self.fail(
                "Supported TPM types (choose only one):\n"
                " passthrough   Passthrough TPM backend driver\n"
                "    emulator   TPM emulator backend driver\n\n",
                location=(),
                prefixed=False,
            )
        self.parse_opts("tpmdev", arg, True)

    def opt_trace(self, arg: str | None) -> None:
        """trace/control.c trace_opt_parse: the opts live only while parsed."""
        assert arg is not None
        opts = self.parse_opts("trace", arg, True)
        self.store.delete(opts)
        self.trace.append(opts)

    def opt_rtc(self, arg: str | None) -> None:
        """vl.c configure_rtc, at once for each -rtc."""
        assert arg is not None
        opts = self.parse_opts("rtc", arg, False)
        base = opts.get("base")
        if base is not None:
            if base == "utc":
                self.rtc_utc = True
            elif base == "localtime":
                self.rtc_utc = False
            else:
                self.rtc_date_offset(base, legacy=False)
        clock = opts.get("clock")
        if clock is not None:
            if clock not in ("host", "rt", "vm"):
                raise self.fail(f"invalid option value '{clock}'")
            self.rtc_clock = clock
        driftfix = opts.get("driftfix")
        if driftfix is not None:
            if driftfix == "slew":
                self.builtin_globals.append(
                    GlobalProperty("mc146818rtc", "lost_tick_policy", "slew")
                )
            elif driftfix != "none":
                raise self.fail(f"invalid option value '{driftfix}'")
            self.rtc_driftfix = driftfix

    def rtc_date_offset(self, startdate: str, legacy: bool) -> None:
        """vl.c configure_rtc_date_offset."""
        if startdate == "now" and legacy:
            self.rtc_now = True
            self.rtc_date = None
            return
        fields = _scan_date(startdate)
        if fields is None or mktimegm(*fields) == -1:
            raise self.fail(
                "invalid date format", "valid formats: '2006-06-17T16:01:21' or '2006-06-17'\n"
            )
        self.rtc_now = False
        self.rtc_date = mktimegm(*fields)

    def opt_startdate(self, arg: str | None) -> None:
        assert arg is not None
        self.rtc_date_offset(arg, legacy=True)

    def opt_tb_size(self, arg: str | None) -> None:
        assert arg is not None
        if qemu_strtou64(arg)[0].value:
            raise self.fail("Invalid argument to -tb-size")

    def opt_echr(self, arg: str | None) -> None:
        assert arg is not None
        if strtoll(arg, 0)[1] == 0:
            # vl.c prints this with printf and carries on.
            self.warnings.append(Diagnostic("Bad argument to echr\n", prefixed=False, stdout=True))

    def opt_dump_vmstate(self, arg: str | None) -> None:
        if self.dump_vmstate is not None:
            raise self.fail("only one '-dump-vmstate' option may be given")
        self.dump_vmstate = arg

    def opt_l(self, arg: str | None) -> None:
        assert arg is not None
        if is_help_option(arg):
            self.list_data_dirs = True
        else:
            self.data_dirs.append(arg)

    def opt_incoming(self, arg: str | None) -> None:
        assert arg is not None
        self.strings["incoming"] = arg

    # ------------------------------------------------------------------
    # after the loop

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
            enable = _opts_bool(opts, "enable", False)
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
        self.device_configs.append(_DeviceConfig(kind, spec, (), default=True))

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
                strict=_opts_bool(opts, "strict", False),
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
                if _opts_bool(opts, "mux", False):
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
            pretty = _opts_bool(opts, "pretty", False)
            if _opts_bool(opts, "default", False):
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
                            if _opts_bool(opts, "mux", False):
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

    # ------------------------------------------------------------------
    # the result

    def result(self, action: Action) -> CommandLine:
        store = self.store
        groups = {name: store.frozen(name) for name in store.instances}
        groups["trace"] = tuple(opts.freeze() for opts in self.trace)
        machine = store.find("machine", None)
        guest = process = None
        debug_threads = False
        # vl.c parse_name runs for every instance; the last one decides.
        for opts in store.instances["name"]:
            guest = opts.get("guest")
            process = opts.get("process") or process
            if opts.get("debug-threads") is not None:
                debug_threads = _opts_bool(opts, "debug-threads", False)
        accel_opts = store.find("accel", None)
        monitors = self.monitors
        if monitors is None:
            monitors = [
                Monitor(
                    o.get("chardev") or "",
                    o.get("mode") or "readline",
                    o.get("pretty") == "on",
                    o.id,
                    o.location,
                )
                for o in store.instances["mon"]
            ]
        d = self.defaults
        f = self.display_flags
        rtc_date = self.rtc_date
        return CommandLine(
            action=action,
            options=tuple(self.options),
            emu=dict(self.emu),
            emu_options=tuple(self.emu_options),
            warnings=tuple(self.warnings),
            groups=groups,
            name=guest,
            process_name=process,
            debug_threads=debug_threads,
            uuid=self.strings.get("uuid"),
            memory=self.memory or Memory(DEFAULT_RAM_SIZE, DEFAULT_RAM_SIZE),
            smp=self.smp or Smp(),
            machine=machine.freeze() if machine is not None else QemuOpts("machine"),
            accelerators=_accelerators(machine.get("accel") if machine else None),
            accel_thread=accel_opts.get("thread") if accel_opts else None,
            cpu_model=self.cpu_model,
            autostart=self.autostart,
            nodefaults=not self.has_defaults,
            no_user_config=not self.userconfig,
            defaults=DefaultDevices(
                serial=d["serial"],
                parallel=d["parallel"],
                monitor=d["monitor"],
                net=d["net"],
                vga=d["vga"],
                floppy=d["floppy"],
                cdrom=d["cdrom"],
                sdcard=d["sdcard"],
                virtcon=d["virtcon"],
            ),
            display=Display(
                type=self.display,
                options=tuple(self.display_options),
                nographic=f["nographic"],
                full_screen=f["full_screen"],
                no_frame=f["no_frame"],
                alt_grab=f["alt_grab"],
                ctrl_grab=f["ctrl_grab"],
                no_quit=f["no_quit"],
                show_cursor=f["show_cursor"],
                rotate=self.rotate,
            ),
            vga=self.vga_model,
            vnc=groups["vnc"],
            spice=groups["spice"],
            keyboard_layout=self.strings.get("keyboard_layout"),
            daemonize=self.flags.get("daemonize", False),
            pidfile=self.strings.get("pidfile"),
            chroot=self.strings.get("chroot"),
            runas=self.strings.get("runas"),
            no_shutdown=self.flags.get("no_shutdown", False),
            no_reboot=self.flags.get("no_reboot", False),
            incoming=self.strings.get("incoming"),
            loadvm=self.strings.get("loadvm"),
            only_migratable=self.flags.get("only_migratable", False),
            boot=self.boot or Boot(),
            rtc=Rtc(
                base="date" if rtc_date is not None else ("utc" if self.rtc_utc else "localtime"),
                start_date=rtc_date,
                start_now=self.rtc_now,
                clock=self.rtc_clock,
                driftfix=self.rtc_driftfix,
            ),
            msg_timestamp=self.timestamp,
            mem_lock=self.mem_lock,
            cpu_pm=self.cpu_pm,
            sandbox=self.sandbox or Sandbox(),
            watchdog=self.watchdog,
            watchdog_action=self.watchdog_action,
            mem_path=self.strings.get("mem_path"),
            qtest=self.strings.get("qtest"),
            qtest_log=self.strings.get("qtest_log"),
            mem_prealloc=self.flags.get("mem_prealloc", False),
            data_dirs=tuple(self.data_dirs),
            no_hpet=self.flags.get("no_hpet", False),
            no_acpi=self.flags.get("no_acpi", False),
            log_file=self.strings.get("log_file"),
            log_items=self.strings.get("log_items"),
            singlestep=self.flags.get("singlestep", False),
            snapshot=self.flags.get("snapshot", False),
            gdb=tuple(c.spec for c in self.device_configs if c.kind == "gdb"),
            usb_devices=tuple(c.spec for c in self.device_configs if c.kind == "usb"),
            bt=tuple(c.spec for c in self.device_configs if c.kind == "bt"),
            builtin_globals=tuple(self.builtin_globals),
            chardevs=groups["chardev"],
            monitors=tuple(monitors),
            serials=tuple(self.ports.get("serial", ())),
            parallels=tuple(self.ports.get("parallel", ())),
            virtconsoles=tuple(self.ports.get("virtcon", ())),
            debugcons=tuple(self.ports.get("debugcon", ())),
            drives=groups["drive"],
            blockdevs=tuple(self.blockdevs),
            devices=groups["device"],
            netdevs=groups["netdev"],
            nets=groups["net"],
            objects=groups["object"],
            globals=groups["global"],
            add_fds=groups["add-fd"],
            trace=groups["trace"],
        )


# ----------------------------------------------------------------------
# helpers


def _ascii_lower(text: str) -> str:
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def _opts_bool(opts: MutableOpts, key: str, default: bool) -> bool:
    value = opts.get(key)
    return default if value is None else value == "on"


def _safe_bool(value: str | None) -> bool:
    return value == "on"


def _uuid_valid(text: str) -> bool:
    """util/uuid.c qemu_uuid_is_valid."""
    if len(text) != 36:
        return False
    for i, ch in enumerate(text):
        if i in (8, 13, 18, 23):
            if ch != "-":
                return False
        elif ch not in "0123456789abcdefABCDEF":
            return False
    return True


def _scan_ints(text: str, separators: str) -> list[int]:
    """sscanf with `%d<sep>%d<sep>...%d`: the values converted before a mismatch."""
    values: list[int] = []
    pos = 0
    for k in range(len(separators) + 1):
        if k:
            if text[pos : pos + 1] != separators[k - 1]:
                break
            pos += 1
        value, pos = scan_int(text, pos)
        if value is None:
            break
        values.append(value)
    return values


def _scan_date(text: str) -> tuple[int, int, int, int, int, int] | None:
    """vl.c: `%d-%d-%dT%d:%d:%d`, else `%d-%d-%d` (as struct tm: year-1900, month-1)."""
    full = _scan_ints(text, "--T::")
    if len(full) == 6:
        y, mo, d, h, mi, sec = full
        return y - 1900, mo - 1, d, h, mi, sec
    short = _scan_ints(text, "--")
    if len(short) == 3:
        y, mo, d = short
        return y - 1900, mo - 1, d, 0, 0, 0
    return None


def _validate_bootdevices(parser: Parser, devices: str) -> None:
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


def _accelerators(accel: str | None) -> tuple[str, ...]:
    """accel/accel.c configure_accelerator's walk over `accel=a:b:c`."""
    if accel is None:
        return ("tcg",)
    names = []
    p = 0
    while p < len(accel):
        if accel[p] == ":":
            p += 1
        end = accel.find(":", p)
        end = len(accel) if end < 0 else end
        names.append(byte_truncate(accel[p:end], 9))
        p = end
    return tuple(names)


Handler = Callable[[Parser, str | None], None]


def _arg(arg: str | None) -> str:
    assert arg is not None
    return arg


def _machine(params: str) -> Handler:
    def handler(parser: Parser, arg: str | None) -> None:
        parser.machine_opts(params)

    return handler


def _machine_key(key: str) -> Handler:
    def handler(parser: Parser, arg: str | None) -> None:
        parser.machine_set(key, _arg(arg))

    return handler


def _group(group: str, permit_abbrev: bool) -> Handler:
    def handler(parser: Parser, arg: str | None) -> None:
        parser.parse_opts(group, _arg(arg), permit_abbrev)

    return handler


def _report(message: str, warning: bool = False) -> Handler:
    def handler(parser: Parser, arg: str | None) -> None:
        parser.report(message, warning=warning)

    return handler


def _stop(action: Action) -> Handler:
    def handler(parser: Parser, arg: str | None) -> None:
        raise _Stop(action)

    return handler


def _unsupported(parser: Parser, arg: str | None) -> None:
    # The Xen options: this emulator is built without Xen (xen_available()).
    raise parser.fail("Option not supported for this target")


def _display(flag: str = "", display: str | None = None) -> Handler:
    def handler(parser: Parser, arg: str | None) -> None:
        if flag:
            parser.display_flags[flag] = True
        if display is not None:
            parser.display = display

    return handler


def _drive(iface: str | None, index: int, optstr: str) -> Handler:
    """vl.c -hdb/-hdc/-hdd/-cdrom/-fda/-fdb/-mtdblock/-sd/-pflash."""

    def handler(parser: Parser, arg: str | None) -> None:
        parser.drive_add(iface, index, _arg(arg), optstr)

    return handler


def _device_config(kind: str, default_flag: str | None = None) -> Handler:
    """vl.c add_device_config (+ dropping the matching default device)."""

    def handler(parser: Parser, arg: str | None) -> None:
        spec = _arg(arg)
        parser.device_configs.append(_DeviceConfig(kind, spec, parser.loc))
        if default_flag is not None:
            parser.defaults[default_flag] = False
            if spec.startswith("mon:"):
                parser.defaults["monitor"] = False

    return handler


def _net(group: str) -> Handler:
    """vl.c -netdev/-net via net/net.c net_client_parse."""

    def handler(parser: Parser, arg: str | None) -> None:
        spec = _arg(arg)
        parser.defaults["net"] = False
        if group == "net" and spec.startswith("channel,"):
            # net/slirp.c net_slirp_parse_legacy keeps it for the slirp stack.
            parser.report(
                "The '-net channel' option is deprecated. "
                "Please use '-netdev user,guestfwd=...' instead."
            )
            parser.strings["net_channel"] = spec[8:]
            return
        parser.parse_opts(group, spec, True)

    return handler


def _gdb(parser: Parser, arg: str | None) -> None:
    parser.device_configs.append(
        _DeviceConfig("gdb", "tcp::1234" if arg is None else arg, parser.loc)
    )


def _cpu(parser: Parser, arg: str | None) -> None:
    parser.cpu_model = arg


def _vga(parser: Parser, arg: str | None) -> None:
    parser.vga_model = arg
    parser.defaults["vga"] = False


def _stop_cpus(parser: Parser, arg: str | None) -> None:
    parser.autostart = False


def _nodefaults(parser: Parser, arg: str | None) -> None:
    parser.has_defaults = False


def _portrait(parser: Parser, arg: str | None) -> None:
    parser.rotate = 90


def _localtime(parser: Parser, arg: str | None) -> None:
    parser.rtc_utc = False


def _log_items(parser: Parser, arg: str | None) -> None:
    parser.strings["log_items"] = _arg(arg)


def _no_kvm_pit_reinjection(parser: Parser, arg: str | None) -> None:
    parser.report("deprecated, replaced by -global kvm-pit.lost_tick_policy=discard", warning=True)
    parser.builtin_globals.append(GlobalProperty("kvm-pit", "lost_tick_policy", "discard"))


def _rtc_td_hack(parser: Parser, arg: str | None) -> None:
    parser.builtin_globals.append(GlobalProperty("mc146818rtc", "lost_tick_policy", "slew"))


def _only_migratable(parser: Parser, arg: str | None) -> None:
    parser.flags["only_migratable"] = True
    parser.global_option("migration.only-migratable=true")


_HANDLERS: dict[str, Handler] = {
    "h": _stop(Action.HELP),
    "help": _stop(Action.HELP),
    "version": _stop(Action.VERSION),
    "audio-help": _stop(Action.AUDIO_HELP),
    "no-kvm-irqchip": _machine("kernel_irqchip=off"),
    "cpu": _cpu,
    "hda": Parser.opt_hda,
    "hdb": _drive(None, 1, HD_OPTS),
    "hdc": _drive(None, 2, HD_OPTS),
    "hdd": _drive(None, 3, HD_OPTS),
    "blockdev": Parser.opt_blockdev,
    "drive": _group("drive", False),
    "set": Parser.opt_set,
    "global": Parser.opt_global,
    "mtdblock": _drive(IF_MTD, -1, ""),
    "sd": _drive(IF_SD, -1, ""),
    "pflash": _drive(IF_PFLASH, -1, ""),
    "hdachs": Parser.opt_hdachs,
    "numa": _group("numa", True),
    "display": Parser.opt_display,
    "nographic": Parser.opt_nographic,
    "curses": _display(display="curses"),
    "portrait": _portrait,
    "rotate": Parser.opt_rotate,
    "kernel": _machine_key("kernel"),
    "initrd": _machine_key("initrd"),
    "append": _machine_key("append"),
    "dtb": _machine_key("dtb"),
    "cdrom": _drive(None, 2, CDROM_OPTS),
    "boot": _group("boot-opts", True),
    "fda": _drive(IF_FLOPPY, 0, ""),
    "fdb": _drive(IF_FLOPPY, 1, ""),
    "netdev": _net("netdev"),
    "net": _net("net"),
    "iscsi": _group("iscsi", False),
    "tftp": _report("The -tftp option is deprecated. Please use '-netdev user,tftp=...' instead."),
    "bootp": _report(
        "The -bootp option is deprecated. Please use '-netdev user,bootfile=...' instead."
    ),
    "redir": _report(
        "The -redir option is deprecated. Please use '-netdev user,hostfwd=...' instead."
    ),
    "smb": _report("The -smb option is deprecated. Please use '-netdev user,smb=...' instead."),
    "bt": _device_config("bt"),
    "m": _group("memory", True),
    "tpmdev": Parser.opt_tpmdev,
    "d": _log_items,
    "L": Parser.opt_l,
    "bios": _machine_key("firmware"),
    "S": _stop_cpus,
    "vga": _vga,
    "echr": Parser.opt_echr,
    "monitor": Parser.opt_monitor,
    "qmp": Parser.opt_qmp,
    "qmp-pretty": Parser.opt_qmp_pretty,
    "mon": Parser.opt_mon,
    "chardev": _group("chardev", True),
    "fsdev": _group("fsdev", True),
    "virtfs": Parser.opt_virtfs,
    "virtfs_synth": Parser.opt_virtfs_synth,
    "serial": _device_config("serial", "serial"),
    "parallel": _device_config("parallel", "parallel"),
    "virtioconsole": _device_config("virtcon", "virtcon"),
    "debugcon": _device_config("debugcon"),
    "usbdevice": Parser.opt_usbdevice,
    "watchdog": Parser.opt_watchdog,
    "watchdog-action": Parser.opt_watchdog_action,
    "full-screen": _display("full_screen"),
    "no-frame": _display("no_frame"),
    "alt-grab": _display("alt_grab"),
    "ctrl-grab": _display("ctrl_grab"),
    "no-quit": _display("no_quit"),
    "show-cursor": _display("show_cursor"),
    "sdl": _display(display="sdl"),
    "rtc-td-hack": _rtc_td_hack,
    "acpitable": _group("acpi", True),
    "smbios": _group("smbios", False),
    "fw_cfg": _group("fw_cfg", True),
    "enable-kvm": _machine("accel=kvm"),
    "enable-hax": _machine("accel=hax"),
    "M": _group("machine", True),
    "machine": _group("machine", True),
    "no-kvm": _machine("accel=tcg"),
    "no-kvm-pit": _report("ignoring deprecated option", warning=True),
    "no-kvm-pit-reinjection": _no_kvm_pit_reinjection,
    "accel": Parser.opt_accel,
    "usb": _machine("usb=on"),
    "device": _group("device", True),
    "smp": _group("smp-opts", True),
    "vnc": Parser.opt_vnc,
    "balloon": Parser.opt_balloon,
    "uuid": Parser.opt_uuid,
    "option-rom": Parser.opt_option_rom,
    "tdf": _report("ignoring deprecated option", warning=True),
    "name": _group("name", True),
    "localtime": _localtime,
    "startdate": Parser.opt_startdate,
    "rtc": Parser.opt_rtc,
    "tb-size": Parser.opt_tb_size,
    "icount": _group("icount", True),
    "incoming": Parser.opt_incoming,
    "only-migratable": _only_migratable,
    "nodefaults": _nodefaults,
    "xen-domid": _unsupported,
    "xen-create": _unsupported,
    "xen-attach": _unsupported,
    "xen-domid-restrict": _unsupported,
    "trace": Parser.opt_trace,
    "spice": Parser.opt_spice,
    "sandbox": _group("sandbox", True),
    "add-fd": _group("add-fd", False),
    "object": _group("object", True),
    "realtime": Parser.opt_realtime,
    "msg": Parser.opt_msg,
    "dump-vmstate": Parser.opt_dump_vmstate,
    "overcommit": Parser.opt_overcommit,
    "s": _gdb,
    "gdb": _gdb,
}

#: Options whose only effect is a flag.
_FLAG_OPTIONS = {
    "snapshot": "snapshot",
    "no-fd-bootchk": "no_fd_bootchk",
    "mem-prealloc": "mem_prealloc",
    "singlestep": "singlestep",
    "win2k-hack": "win2k_hack",
    "no-acpi": "no_acpi",
    "no-hpet": "no_hpet",
    "no-reboot": "no_reboot",
    "no-shutdown": "no_shutdown",
    "daemonize": "daemonize",
    "enable-fips": "enable_fips",
}

#: Options whose only effect is to remember their argument (the last one counts).
_STRING_OPTIONS = {
    "k": "keyboard_layout",
    "mem-path": "mem_path",
    "D": "log_file",
    "dfilter": "dfilter",
    "pidfile": "pidfile",
    "loadvm": "loadvm",
    "chroot": "chroot",
    "runas": "runas",
    "readconfig": "readconfig",
    "writeconfig": "writeconfig",
    "qtest": "qtest",
    "qtest-log": "qtest_log",
    "soundhw": "soundhw",
}
