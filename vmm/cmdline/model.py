"""The parsed command line, as frozen values.

Layer: vmm, pure (no I/O, no trio). Built by `vmm.cmdline.parse`, read by
the rest of `vmm` (the Machine's construction, the chardev/monitor/server
setup) and handed in parts to the subsystems: `drives`/`blockdevs` to the
block layer, `devices` to the device models, `chardevs` to the chardev
layer, `netdevs`/`nets` to networking.

Option groups stay as `QemuOpts` (id, key/value strings in order, and the
command-line words that created them, for the subsystem's own error
messages, which QEMU prefixes with that location). Settings QEMU decides
while parsing (`vl.c` main) are typed fields.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from schema.jsontypes import JSONValue
from vmm.cmdline.errors import Diagnostic, Location
from vmm.cmdline.keyval import KeyvalDict
from vmm.cmdline.qemuopts import QemuOpts


class Action(enum.Enum):
    """What the program does after parsing.

    QEMU stops reading its arguments at `-version`, `-help`, `-audio-help`;
    `-L help` and an invalid `-d` list are found after parsing. All of these
    print to stdout; `vmm.cmdline.action_output` gives the text.
    """

    RUN = "run"
    VERSION = "version"
    HELP = "help"
    AUDIO_HELP = "audio-help"
    LIST_DATA_DIRS = "list-data-dirs"
    LOG_USAGE = "log-usage"


@attrs.frozen
class EmuOption:
    """An emulator-only long option, `--emu-<name>[=<value>]`.

    Flags (`takes_value=False`) are `on` when given bare and also accept
    `=on`/`=off`; valued options take `=<value>` or the next argument.
    """

    name: str
    takes_value: bool = True
    choices: tuple[str, ...] = ()
    help: str = ""
    metavar: str = "value"


@attrs.frozen
class ParsedOption:
    """One QEMU option as written, in command-line order."""

    name: str
    arg: str | None
    location: Location


@attrs.frozen
class Memory:
    """`-m` after vl.c set_memory_options (bytes)."""

    ram_size: int
    max_ram_size: int
    slots: int = 0


@attrs.frozen
class Smp:
    """`-smp` after vl.c smp_parse."""

    cpus: int = 1
    sockets: int = 1
    cores: int = 1
    threads: int = 1
    max_cpus: int = 1


@attrs.frozen
class Boot:
    """`-boot` (boot-opts); `order`/`once` were checked by validate_bootdevices."""

    order: str | None = None
    once: str | None = None
    menu: bool | None = None
    strict: bool = False
    splash: str | None = None
    splash_time: str | None = None
    reboot_timeout: str | None = None


@attrs.frozen
class Rtc:
    """`-rtc`, `-localtime`, `-startdate` (vl.c configure_rtc).

    `base` is "utc", "localtime" or "date"; for "date", `start_date` is
    the start in seconds since the epoch (as mktimegm computes it) and the
    running emulator derives the offset from its own clock. `start_now`
    is `-startdate now`.
    """

    base: str = "utc"
    start_date: int | None = None
    start_now: bool = False
    clock: str = "host"
    driftfix: str = "none"


@attrs.frozen
class Display:
    """Display settings; `type` is "default" when none was chosen.

    QEMU then picks GTK (with a graphical build) unless VNC or SPICE is
    configured; `options` holds the `,key=value` settings of sdl/gtk.
    """

    type: str = "default"
    options: tuple[tuple[str, str], ...] = ()
    nographic: bool = False
    full_screen: bool = False
    no_frame: bool = False
    alt_grab: bool = False
    ctrl_grab: bool = False
    no_quit: bool = False
    show_cursor: bool = False
    rotate: int = 0


@attrs.frozen
class Sandbox:
    enable: bool = False
    obsolete: str | None = None
    elevateprivileges: str | None = None
    spawn: str | None = None
    resourcecontrol: str | None = None


@attrs.frozen
class DefaultDevices:
    """Which of QEMU's default devices remain (vl.c has_defaults/default_*).

    serial/parallel/monitor defaults are already materialised in
    `serials`, `parallels` and `monitors`; the others are for the machine
    and block layers (default CD-ROM, floppy, SD card, VGA, and the
    `-net nic -net user` pair already added to `nets`).
    """

    serial: bool = True
    parallel: bool = True
    monitor: bool = True
    net: bool = True
    vga: bool = True
    floppy: bool = True
    cdrom: bool = True
    sdcard: bool = True
    virtcon: bool = False


@attrs.frozen
class Monitor:
    """A monitor QEMU creates: from `-mon`, `-qmp`, `-monitor`, or a `mon:` port."""

    chardev: str
    mode: str = "readline"
    pretty: bool = False
    id: str | None = None
    location: Location = ()

    @property
    def control(self) -> bool:
        return self.mode == "control"


@attrs.frozen
class CharPort:
    """A `-serial`, `-parallel`, `-virtioconsole` or `-debugcon` backend.

    `chardev_id` is the chardev the port uses: the generated label
    (`serial0`, `parallel1`, `virtcon0`, `debugcon`) whose options are in
    `chardev`, or the id named by `chardev:ID` (then `chardev` is None).
    """

    kind: str
    spec: str
    index: int
    chardev_id: str
    chardev: QemuOpts | None = None
    location: Location = ()
    default: bool = False


@attrs.frozen
class Blockdev:
    """A `-blockdev`: the nested options, JSON-typed or keyval strings."""

    options: Mapping[str, JSONValue] | KeyvalDict
    json: bool
    location: Location = ()


@attrs.frozen
class GlobalProperty:
    """A compat global registered by an option rather than by `-global`."""

    driver: str
    property: str
    value: str


@attrs.frozen
class CommandLine:
    """Everything `qemu-system-x86_64 <argv>` would set up from its arguments."""

    action: Action = Action.RUN
    options: tuple[ParsedOption, ...] = ()
    emu: Mapping[str, str] = attrs.field(factory=dict)  # the last value of each
    emu_options: tuple[tuple[str, str], ...] = ()  # every --emu-* (name, value), in order
    warnings: tuple[Diagnostic, ...] = ()
    groups: Mapping[str, tuple[QemuOpts, ...]] = attrs.field(factory=dict)

    name: str | None = None
    process_name: str | None = None
    debug_threads: bool = False
    uuid: str | None = None
    memory: Memory = Memory(128 << 20, 128 << 20)
    smp: Smp = Smp()
    machine: QemuOpts = attrs.field(factory=lambda: QemuOpts("machine"))
    accelerators: tuple[str, ...] = ("tcg",)
    accel_thread: str | None = None
    cpu_model: str | None = None
    autostart: bool = True
    nodefaults: bool = False
    no_user_config: bool = False
    defaults: DefaultDevices = DefaultDevices()
    display: Display = Display()
    vga: str | None = None
    vnc: tuple[QemuOpts, ...] = ()
    spice: tuple[QemuOpts, ...] = ()
    keyboard_layout: str | None = None
    daemonize: bool = False
    pidfile: str | None = None
    chroot: str | None = None
    runas: str | None = None
    no_shutdown: bool = False
    no_reboot: bool = False
    incoming: str | None = None
    loadvm: str | None = None
    only_migratable: bool = False
    boot: Boot = Boot()
    rtc: Rtc = Rtc()
    msg_timestamp: bool = False
    mem_lock: bool = False
    cpu_pm: bool = False
    sandbox: Sandbox = Sandbox()
    watchdog: str | None = None
    watchdog_action: str = "reset"
    mem_path: str | None = None
    qtest: str | None = None       # -qtest CHARDEV (legacy chardev syntax)
    qtest_log: str | None = None   # -qtest-log FILE
    mem_prealloc: bool = False
    data_dirs: tuple[str, ...] = ()
    no_hpet: bool = False
    no_acpi: bool = False
    log_file: str | None = None
    log_items: str | None = None
    singlestep: bool = False
    snapshot: bool = False
    gdb: tuple[str, ...] = ()
    usb_devices: tuple[str, ...] = ()
    bt: tuple[str, ...] = ()
    builtin_globals: tuple[GlobalProperty, ...] = ()

    chardevs: tuple[QemuOpts, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    serials: tuple[CharPort, ...] = ()
    parallels: tuple[CharPort, ...] = ()
    virtconsoles: tuple[CharPort, ...] = ()
    debugcons: tuple[CharPort, ...] = ()
    drives: tuple[QemuOpts, ...] = ()
    blockdevs: tuple[Blockdev, ...] = ()
    devices: tuple[QemuOpts, ...] = ()
    netdevs: tuple[QemuOpts, ...] = ()
    nets: tuple[QemuOpts, ...] = ()
    objects: tuple[QemuOpts, ...] = ()
    globals: tuple[QemuOpts, ...] = ()
    add_fds: tuple[QemuOpts, ...] = ()
    trace: tuple[QemuOpts, ...] = ()

    @property
    def machine_type(self) -> str | None:
        return self.machine.get("type")

    @property
    def kernel(self) -> str | None:
        return self.machine.get("kernel")

    @property
    def initrd(self) -> str | None:
        return self.machine.get("initrd")

    @property
    def append(self) -> str | None:
        return self.machine.get("append")

    @property
    def bios(self) -> str | None:
        return self.machine.get("firmware")

    def all_chardevs(self) -> tuple[QemuOpts, ...]:
        """Every chardev QEMU creates from the command line, in its order.

        First `-chardev` and the monitors' `compat_monitorN` (vl.c
        chardev_init_func), then the ports' own: serial, parallel, virtio
        console, debugcon (serial_parse, parallel_parse, ...).
        """
        ports = (*self.serials, *self.parallels, *self.virtconsoles, *self.debugcons)
        return self.chardevs + tuple(p.chardev for p in ports if p.chardev is not None)

    def group(self, name: str) -> tuple[QemuOpts, ...]:
        """Every instance of an option group, e.g. `group("numa")`."""
        return self.groups.get(name, ())
