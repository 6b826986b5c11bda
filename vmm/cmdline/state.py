"""The state of one run of QEMU 2.11's option handling, and how it reports.

Layer: vmm, pure (no I/O, no trio). Part of `vmm.cmdline`: `ParserState` holds what
vl.c's main() keeps in locals and globals while it reads the command line (the
QemuOpts store, the defaults, display flags, device configs, ...) and the reporting
every stage shares (`fail`, `report`, with the location QEMU prints). The option
handlers (`vmm.cmdline.handlers`) and the checks after the loop
(`vmm.cmdline.checks`) extend it; `vmm.cmdline.parse.Parser` combines them. The few
steps both of those take (a drive, a monitor, a global) live here.
"""

from __future__ import annotations

from collections.abc import Sequence

from schema.opts.cutils import byte_truncate, scan_set
from schema.opts.qemuopts import MutableOpts, OptsError, OptsStore
from vmm.cmdline.chardev import CompatError, chr_parse_compat
from vmm.cmdline.errors import CommandLineError, Diagnostic, Location
from vmm.cmdline.groups import GROUPS
from vmm.cmdline.model import (
    Action,
    Blockdev,
    Boot,
    CharPort,
    EmuOption,
    GlobalProperty,
    Memory,
    Monitor,
    ParsedOption,
    Sandbox,
    Smp,
)


class StopParsing(Exception):
    """The option loop ends early with an action (-version, -help, ...)."""

    def __init__(self, action: Action) -> None:
        super().__init__(action.value)
        self.action = action


class DeviceConfig:
    """vl.c struct device_config: a -serial/-parallel/-gdb/... kept for later."""

    __slots__ = ("default", "kind", "location", "spec")

    def __init__(self, kind: str, spec: str, location: Location, default: bool = False) -> None:
        self.kind = kind
        self.spec = spec
        self.location = location
        self.default = default


def opts_bool(opts: MutableOpts, key: str, default: bool) -> bool:
    """qemu_opt_get_bool on a declared bool parameter (its value was checked when set)."""
    value = opts.get(key)
    return default if value is None else value == "on"


class ParserState:
    """vl.c's state while it reads `argv` (without argv[0])."""

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
        self.device_configs: list[DeviceConfig] = []
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
    # steps several options take

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
