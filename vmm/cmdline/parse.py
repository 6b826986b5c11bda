"""The option loop of QEMU 2.11's vl.c main(), from first word to parsed result.

Layer: vmm, pure (no I/O, no trio). Used through `vmm.cmdline`.

Structure follows vl.c:

1. A first pass looks every option up (`-foo: invalid option`,
   `-m: requires an argument`) and notes `-no-user-config`.
2. A second pass handles the options in order (`vmm.cmdline.handlers`); each error
   carries the location QEMU prints (the option and its argument as written).
3. After the loop, the checks vl.c makes before building the machine
   (`vmm.cmdline.checks`).

`Parser` combines those on the shared state (`vmm.cmdline.state`) and builds the
`CommandLine` value. What needs the host or the machine models (file descriptors,
files, accelerator availability, machine and device type names, chardev backends'
own options) is left to the layers that own them; the values they need are in the
result.
"""

from __future__ import annotations

from schema.opts.cutils import byte_truncate
from schema.opts.qemuopts import QemuOpts
from vmm.cmdline.checks import DEFAULT_RAM_SIZE, PostLoopChecks
from vmm.cmdline.handlers import FLAG_OPTIONS, HANDLERS, HD_OPTS, STRING_OPTIONS, OptionHandlers
from vmm.cmdline.model import (
    Action,
    Boot,
    CommandLine,
    DefaultDevices,
    Display,
    EmuOption,
    Memory,
    Monitor,
    ParsedOption,
    Rtc,
    Sandbox,
    Smp,
)
from vmm.cmdline.state import StopParsing, opts_bool
from vmm.cmdline.table import OPTIONS, OVERCOMMIT, QemuOption


class Parser(OptionHandlers, PostLoopChecks):
    """One run of vl.c's option handling over `argv` (without argv[0])."""

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
        except StopParsing as stop:
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
        handler = HANDLERS.get(name)
        if handler is not None:
            handler(self, arg)
            return
        if name in FLAG_OPTIONS:
            self.flags[FLAG_OPTIONS[name]] = True
        elif name in STRING_OPTIONS and arg is not None:
            self.strings[STRING_OPTIONS[name]] = arg

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
                debug_threads = opts_bool(opts, "debug-threads", False)
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
            defaults=DefaultDevices(**self.defaults),
            display=Display(
                type=self.display,
                options=tuple(self.display_options),
                rotate=self.rotate,
                **self.display_flags,
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
