"""What each of QEMU 2.11's options does as vl.c's option loop meets it.

Layer: vmm, pure (no I/O, no trio). Part of `vmm.cmdline`: `OptionHandlers` adds to
the parser's state (`vmm.cmdline.state`) one method per option with its own logic
(`opt_<name>`), and `HANDLERS` maps every option name to its handler, most of them
made by small factories (an option group to parse, a machine property to set, a
message to report). Options whose only effect is a flag or a remembered argument
are listed in `FLAG_OPTIONS` and `STRING_OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable

from schema.opts.cutils import mktimegm, qemu_strtou64, scan_int, scan_set, strtoll, to_c_int
from schema.opts.keyval import JSONAbort, KeyvalError, parse_json_or_keyval
from schema.opts.qemuopts import MutableOpts, OptsError, is_help_option
from vmm.cmdline.errors import Diagnostic
from vmm.cmdline.groups import GROUPS
from vmm.cmdline.model import Action, Blockdev, GlobalProperty
from vmm.cmdline.state import DeviceConfig, ParserState, StopParsing, opts_bool

#: blockdev.c if_name[] for the interfaces drive_add() is given.
IF_FLOPPY, IF_PFLASH, IF_MTD, IF_SD = "floppy", "pflash", "mtd", "sd"
HD_OPTS = "media=disk"
CDROM_OPTS = "media=cdrom"

#: qapi/run-state.json WatchdogAction.
WATCHDOG_ACTIONS = ("reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi")

#: vl.c MAX_OPTION_ROMS.
MAX_OPTION_ROMS = 16

#: What -accel help (or a bad -accel) prints before QEMU exits 0.
ACCEL_HELP = "Possible accelerators: kvm, xen, hax, tcg\n"


class OptionHandlers(ParserState):
    """The options' own logic, in vl.c's words (one method per option)."""

    # ------------------------------------------------------------------
    # block options

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
        # qobject_input_visitor_new_str: JSON if it starts with '{', else keyval.
        try:
            options, keyval = parse_json_or_keyval(arg, "driver")
        except KeyvalError as exc:
            raise self.fail(exc.message) from None
        except JSONAbort as exc:
            # QEMU fails an assertion and aborts (SIGABRT).
            raise self.fail(exc.message, location=(), exit_status=134) from None
        self.blockdevs.append(Blockdev(options, not keyval, self.loc))

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
        self.mem_lock = opts_bool(opts, "mem-lock", False)
        self.cpu_pm = opts_bool(opts, "cpu-pm", False)

    def opt_realtime(self, arg: str | None) -> None:
        assert arg is not None
        opts = self.parse_opts("realtime", arg, False)
        self.mem_lock = opts_bool(opts, "mlock", True)

    def opt_msg(self, arg: str | None) -> None:
        assert arg is not None
        opts = self.parse_opts("msg", arg, False)
        self.timestamp = opts_bool(opts, "timestamp", True)

    def opt_global(self, arg: str | None) -> None:
        """qdev-monitor.c qemu_global_option."""
        assert arg is not None
        self.global_option(arg)

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
    # monitors

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
        self.device_configs.append(DeviceConfig("usb", arg, self.loc))

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
        readonly = opts_bool(opts, "readonly", False)
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


# ----------------------------------------------------------------------
# helpers


def _ascii_lower(text: str) -> str:
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


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


# ----------------------------------------------------------------------
# the handler table


Handler = Callable[[OptionHandlers, str | None], None]


def _arg(arg: str | None) -> str:
    assert arg is not None
    return arg


def _machine(params: str) -> Handler:
    def handler(parser: OptionHandlers, arg: str | None) -> None:
        parser.machine_opts(params)

    return handler


def _machine_key(key: str) -> Handler:
    def handler(parser: OptionHandlers, arg: str | None) -> None:
        parser.machine_set(key, _arg(arg))

    return handler


def _group(group: str, permit_abbrev: bool) -> Handler:
    def handler(parser: OptionHandlers, arg: str | None) -> None:
        parser.parse_opts(group, _arg(arg), permit_abbrev)

    return handler


def _report(message: str, warning: bool = False) -> Handler:
    def handler(parser: OptionHandlers, arg: str | None) -> None:
        parser.report(message, warning=warning)

    return handler


def _stop(action: Action) -> Handler:
    def handler(parser: OptionHandlers, arg: str | None) -> None:
        raise StopParsing(action)

    return handler


def _unsupported(parser: OptionHandlers, arg: str | None) -> None:
    # The Xen options: this emulator is built without Xen (xen_available()).
    raise parser.fail("Option not supported for this target")


def _display(flag: str = "", display: str | None = None) -> Handler:
    def handler(parser: OptionHandlers, arg: str | None) -> None:
        if flag:
            parser.display_flags[flag] = True
        if display is not None:
            parser.display = display

    return handler


def _drive(iface: str | None, index: int, optstr: str) -> Handler:
    """vl.c -hdb/-hdc/-hdd/-cdrom/-fda/-fdb/-mtdblock/-sd/-pflash."""

    def handler(parser: OptionHandlers, arg: str | None) -> None:
        parser.drive_add(iface, index, _arg(arg), optstr)

    return handler


def _device_config(kind: str, default_flag: str | None = None) -> Handler:
    """vl.c add_device_config (+ dropping the matching default device)."""

    def handler(parser: OptionHandlers, arg: str | None) -> None:
        spec = _arg(arg)
        parser.device_configs.append(DeviceConfig(kind, spec, parser.loc))
        if default_flag is not None:
            parser.defaults[default_flag] = False
            if spec.startswith("mon:"):
                parser.defaults["monitor"] = False

    return handler


def _net(group: str) -> Handler:
    """vl.c -netdev/-net via net/net.c net_client_parse."""

    def handler(parser: OptionHandlers, arg: str | None) -> None:
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


def _gdb(parser: OptionHandlers, arg: str | None) -> None:
    parser.device_configs.append(
        DeviceConfig("gdb", "tcp::1234" if arg is None else arg, parser.loc)
    )


def _cpu(parser: OptionHandlers, arg: str | None) -> None:
    parser.cpu_model = arg


def _vga(parser: OptionHandlers, arg: str | None) -> None:
    parser.vga_model = arg
    parser.defaults["vga"] = False


def _stop_cpus(parser: OptionHandlers, arg: str | None) -> None:
    parser.autostart = False


def _nodefaults(parser: OptionHandlers, arg: str | None) -> None:
    parser.has_defaults = False


def _portrait(parser: OptionHandlers, arg: str | None) -> None:
    parser.rotate = 90


def _localtime(parser: OptionHandlers, arg: str | None) -> None:
    parser.rtc_utc = False


def _log_items(parser: OptionHandlers, arg: str | None) -> None:
    parser.strings["log_items"] = _arg(arg)


def _no_kvm_pit_reinjection(parser: OptionHandlers, arg: str | None) -> None:
    parser.report("deprecated, replaced by -global kvm-pit.lost_tick_policy=discard", warning=True)
    parser.builtin_globals.append(GlobalProperty("kvm-pit", "lost_tick_policy", "discard"))


def _rtc_td_hack(parser: OptionHandlers, arg: str | None) -> None:
    parser.builtin_globals.append(GlobalProperty("mc146818rtc", "lost_tick_policy", "slew"))


def _only_migratable(parser: OptionHandlers, arg: str | None) -> None:
    parser.flags["only_migratable"] = True
    parser.global_option("migration.only-migratable=true")


HANDLERS: dict[str, Handler] = {
    "h": _stop(Action.HELP),
    "help": _stop(Action.HELP),
    "version": _stop(Action.VERSION),
    "audio-help": _stop(Action.AUDIO_HELP),
    "no-kvm-irqchip": _machine("kernel_irqchip=off"),
    "cpu": _cpu,
    "hda": OptionHandlers.opt_hda,
    "hdb": _drive(None, 1, HD_OPTS),
    "hdc": _drive(None, 2, HD_OPTS),
    "hdd": _drive(None, 3, HD_OPTS),
    "blockdev": OptionHandlers.opt_blockdev,
    "drive": _group("drive", False),
    "set": OptionHandlers.opt_set,
    "global": OptionHandlers.opt_global,
    "mtdblock": _drive(IF_MTD, -1, ""),
    "sd": _drive(IF_SD, -1, ""),
    "pflash": _drive(IF_PFLASH, -1, ""),
    "hdachs": OptionHandlers.opt_hdachs,
    "numa": _group("numa", True),
    "display": OptionHandlers.opt_display,
    "nographic": OptionHandlers.opt_nographic,
    "curses": _display(display="curses"),
    "portrait": _portrait,
    "rotate": OptionHandlers.opt_rotate,
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
    "tpmdev": OptionHandlers.opt_tpmdev,
    "d": _log_items,
    "L": OptionHandlers.opt_l,
    "bios": _machine_key("firmware"),
    "S": _stop_cpus,
    "vga": _vga,
    "echr": OptionHandlers.opt_echr,
    "monitor": OptionHandlers.opt_monitor,
    "qmp": OptionHandlers.opt_qmp,
    "qmp-pretty": OptionHandlers.opt_qmp_pretty,
    "mon": OptionHandlers.opt_mon,
    "chardev": _group("chardev", True),
    "fsdev": _group("fsdev", True),
    "virtfs": OptionHandlers.opt_virtfs,
    "virtfs_synth": OptionHandlers.opt_virtfs_synth,
    "serial": _device_config("serial", "serial"),
    "parallel": _device_config("parallel", "parallel"),
    "virtioconsole": _device_config("virtcon", "virtcon"),
    "debugcon": _device_config("debugcon"),
    "usbdevice": OptionHandlers.opt_usbdevice,
    "watchdog": OptionHandlers.opt_watchdog,
    "watchdog-action": OptionHandlers.opt_watchdog_action,
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
    "accel": OptionHandlers.opt_accel,
    "usb": _machine("usb=on"),
    "device": _group("device", True),
    "smp": _group("smp-opts", True),
    "vnc": OptionHandlers.opt_vnc,
    "balloon": OptionHandlers.opt_balloon,
    "uuid": OptionHandlers.opt_uuid,
    "option-rom": OptionHandlers.opt_option_rom,
    "tdf": _report("ignoring deprecated option", warning=True),
    "name": _group("name", True),
    "localtime": _localtime,
    "startdate": OptionHandlers.opt_startdate,
    "rtc": OptionHandlers.opt_rtc,
    "tb-size": OptionHandlers.opt_tb_size,
    "icount": _group("icount", True),
    "incoming": OptionHandlers.opt_incoming,
    "only-migratable": _only_migratable,
    "nodefaults": _nodefaults,
    "xen-domid": _unsupported,
    "xen-create": _unsupported,
    "xen-attach": _unsupported,
    "xen-domid-restrict": _unsupported,
    "trace": OptionHandlers.opt_trace,
    "spice": OptionHandlers.opt_spice,
    "sandbox": _group("sandbox", True),
    "add-fd": _group("add-fd", False),
    "object": _group("object", True),
    "realtime": OptionHandlers.opt_realtime,
    "msg": OptionHandlers.opt_msg,
    "dump-vmstate": OptionHandlers.opt_dump_vmstate,
    "overcommit": OptionHandlers.opt_overcommit,
    "s": _gdb,
    "gdb": _gdb,
}


#: Options whose only effect is a flag.
FLAG_OPTIONS = {
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
STRING_OPTIONS = {
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
