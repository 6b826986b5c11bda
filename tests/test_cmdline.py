"""QEMU 2.11's command line (vmm.cmdline): syntax, semantics and exact errors.

Each error test pins one message QEMU 2.11.0 prints, with the location
prefix it prints (`-m 12x: ...`), and names the QEMU function it comes
from. Sources: vl.c, util/qemu-option.c, util/keyval.c, qobject/json-*.c,
chardev/char.c, monitor.c, qdev-monitor.c, util/qemu-config.c, ui/vnc.c,
hw/watchdog/watchdog.c, bootdevice.c of QEMU 2.11.0.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmm.cmdline import (
    Action,
    CommandLine,
    CommandLineError,
    EmuOption,
    action_output,
    help_text,
    parse_command_line,
    version_text,
)
from vmm.cmdline.table import OPTIONS
from vmm.startup import configure_block

PROG = "qemu-system-x86_64"


def parse(*argv: str, extra: tuple[EmuOption, ...] = ()) -> CommandLine:
    return parse_command_line(list(argv), extra_options=extra)


def error(*argv: str, extra: tuple[EmuOption, ...] = ()) -> CommandLineError:
    with pytest.raises(CommandLineError) as info:
        parse(*argv, extra=extra)
    return info.value


def nd(*argv: str) -> CommandLine:
    """Parse with -nodefaults, as management tools do."""
    return parse("-nodefaults", *argv)


# ---------------------------------------------------------------------------
# option lookup (vl.c lookup_opt)


def test_unknown_option() -> None:
    """vl.c lookup_opt: error_report("invalid option") at the word's location."""
    assert str(error("-foo")) == "-foo: invalid option"


def test_unknown_double_dash_option_keeps_its_spelling() -> None:
    """vl.c lookup_opt prints the word as written, `--` included."""
    assert str(error("--frobnicate")) == "--frobnicate: invalid option"


def test_bare_dashes_are_invalid_options() -> None:
    """vl.c lookup_opt: `-` and `--` name the empty option, which does not exist."""
    assert str(error("--")) == "--: invalid option"
    assert str(error("-")) == "-: invalid option"


def test_missing_argument() -> None:
    """vl.c lookup_opt: error_report("requires an argument")."""
    assert str(error("-m")) == "-m: requires an argument"


def test_missing_argument_double_dash() -> None:
    """vl.c lookup_opt treats --m as -m, and prints --m."""
    assert str(error("-S", "--m")) == "--m: requires an argument"


def test_option_of_another_target() -> None:
    """vl.c main: "Option not supported for this target" (-g is PPC/SPARC only)."""
    assert str(error("-g", "800x600")) == "-g 800x600: Option not supported for this target"


def test_xen_options_are_unsupported() -> None:
    """vl.c main: -xen-* need xen_available(), which this emulator is not."""
    assert str(error("-xen-domid", "1")) == "-xen-domid 1: Option not supported for this target"


def test_first_pass_checks_every_option_before_version() -> None:
    """vl.c main: the first pass looks every option up before -version runs."""
    assert str(error("-version", "-foo")) == "-foo: invalid option"


def test_double_dash_spelling() -> None:
    """vl.c lookup_opt: "Treat --foo the same as -foo"."""
    cmd = parse("--m", "512", "--nodefaults", "--S")
    assert cmd.memory.ram_size == 512 << 20
    assert cmd.nodefaults and not cmd.autostart


def test_version_stops_the_second_pass() -> None:
    """vl.c main: -version prints and exits before later options are handled."""
    cmd = parse("-version", "-m", "12x")
    assert cmd.action is Action.VERSION


def test_error_before_version_wins() -> None:
    """vl.c main handles options in order: -m 12x fails before -version runs."""
    assert str(error("-m", "12x", "-version")).startswith("-m 12x: ")


# ---------------------------------------------------------------------------
# QemuOpts syntax (util/qemu-option.c)


def test_comma_escaping_in_values() -> None:
    """get_opt_value: ',,' is a literal comma."""
    (dev,) = nd("-device", "e1000,romfile=a,,b,,,id=n0").devices
    assert dev.get("romfile") == "a,b,"
    assert dev.id == "n0"


def test_comma_escaping_in_implied_value() -> None:
    """opts_do_parse: the implied first value is read with get_opt_value too."""
    assert nd("-machine", "pc,,x").machine_type == "pc,x"


@pytest.mark.parametrize(
    ("option", "arg", "group", "key"),
    [
        ("-machine", "pc", "machine", "type"),
        ("-M", "q35", "machine", "type"),
        ("-netdev", "user,id=n", "netdev", "type"),
        ("-net", "nic", "net", "type"),
        ("-chardev", "null,id=c", "chardev", "backend"),
        ("-accel", "tcg", "accel", "accel"),
        ("-m", "512", "memory", "size"),
        ("-smp", "2", "smp-opts", "cpus"),
        ("-boot", "cd", "boot-opts", "order"),
        ("-device", "e1000", "device", "driver"),
        ("-object", "secret,id=s,data=x", "object", "qom-type"),
        ("-name", "vm", "name", "guest"),
        ("-sandbox", "on", "sandbox", "enable"),
        ("-mon", "c", "mon", "chardev"),
        ("-vnc", ":0", "vnc", "vnc"),
        ("-numa", "node", "numa", "type"),
        ("-fw_cfg", "opt/x,string=y", "fw_cfg", "name"),
        ("-icount", "auto", "icount", "shift"),
        ("-option-rom", "x.rom", "option-rom", "romfile"),
        ("-fsdev", "local,id=f,path=/x,security_model=none", "fsdev", "fsdriver"),
        ("-tpmdev", "passthrough,id=t", "tpmdev", "type"),
        ("-acpitable", "/x", "acpi", "data"),
    ],
)
def test_implied_keys(option: str, arg: str, group: str, key: str) -> None:
    """QemuOptsList.implied_opt_name of each group (opts_do_parse firstname)."""
    extra = ("-chardev", "null,id=c") if option == "-mon" else ()
    cmd = nd(*extra, option, arg)
    instances = cmd.group(group)
    assert instances, group
    first = arg.split(",")[0]
    expected = first.split("=", 1)[1] if "=" in first else first
    assert instances[-1].get_all(key)[0] == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9_.-]{0,15}", fullmatch=True).filter(
                lambda k: k != "id" and not k.startswith("no")
            ),
            st.text(max_size=40).filter(lambda v: "id=" not in v and "\x00" not in v),
        ),
        max_size=6,
    )
)
def test_escaped_values_round_trip(pairs: list[tuple[str, str]]) -> None:
    """get_opt_value: doubling every comma gives back any value, in order."""
    arg = ",".join(["e1000", *(f"{k}={v.replace(',', ',,')}" for k, v in pairs)])
    (dev,) = nd("-device", arg).devices
    assert dev.items == (("driver", "e1000"), *pairs)


def test_drive_has_no_implied_key() -> None:
    """blockdev.c drive_def: qemu_opts_parse_noisily(..., false): a bare word is a flag."""
    (drive,) = nd("-drive", "foo.qcow2").drives
    assert drive.items == (("foo.qcow2", "on"),)


def test_flags_and_no_prefix() -> None:
    """opts_do_parse: `key` means on, `nokey` means off (`nodelay` sets delay)."""
    (chardev,) = nd("-chardev", "socket,id=c,path=/s,server,nowait,nodelay").chardevs
    assert chardev.items == (
        ("backend", "socket"),
        ("path", "/s"),
        ("server", "on"),
        ("wait", "off"),
        ("delay", "off"),
    )


def test_no_prefix_of_an_unknown_key() -> None:
    """opts_do_parse strips "no", then opt_set rejects the rest: Invalid parameter."""
    assert str(error("-chardev", "null,id=c,nosuch")) == (
        "-chardev null,id=c,nosuch: Invalid parameter 'such'"
    )


def test_id_is_not_a_pair() -> None:
    """opts_do_parse skips "id"; opts_parse finds it textually (`id=` or `,id=`)."""
    (obj,) = nd("-object", "id=s0,qom-type=secret,data=x").objects
    assert obj.id == "s0"
    assert obj.keys() == ("qom-type", "data")


def test_id_found_inside_an_escaped_value() -> None:
    """opts_parse uses strstr(params, ",id="), which also matches after ',,'."""
    (dev,) = nd("-device", "e1000,romfile=a,,id=b").devices
    assert dev.id == "b"
    assert dev.get("romfile") == "a,id=b"


def test_last_value_wins() -> None:
    """qemu_opt_find searches from the end; all pairs are kept in order."""
    (dev,) = nd("-device", "e1000,mac=1,mac=2").devices
    assert dev.get("mac") == "2"
    assert dev.get_all("mac") == ("1", "2")


def test_machine_options_merge() -> None:
    """qemu_machine_opts.merge_lists: repeated -machine add to one instance."""
    cmd = nd("-machine", "pc", "-machine", "accel=kvm", "-M", "q35,usb=off")
    assert len(cmd.group("machine")) == 1
    assert cmd.machine_type == "q35"
    assert cmd.machine.get("usb") == "off"
    assert cmd.accelerators == ("kvm",)


def test_smp_memory_boot_merge() -> None:
    """qemu_smp_opts/qemu_mem_opts/qemu_boot_opts are merge_lists too."""
    cmd = nd(
        "-smp",
        "4",
        "-smp",
        "sockets=2",
        "-m",
        "1G",
        "-m",
        "slots=2,maxmem=4G",
        "-boot",
        "c",
        "-boot",
        "menu=on",
    )
    assert cmd.smp.cpus == 4 and cmd.smp.sockets == 2 and cmd.smp.cores == 2
    assert cmd.memory.max_ram_size == 4 << 30 and cmd.memory.slots == 2
    assert cmd.boot.order == "c" and cmd.boot.menu is True


def test_groups_with_empty_lists_accept_anything() -> None:
    """opt_set: opts_accepts_any() for -device, -drive, -netdev, -object, -machine."""
    cmd = nd(
        "-device", "e1000,frob=1",
        "-drive", "if=none,id=d,weird.key=x",
        "-netdev", "user,id=n,zzz=1",
        "-object", "memory-backend-ram,id=m,size=1G,xyz=2",
        "-machine", "pc,nonsense=on",
    )  # fmt: skip
    assert cmd.devices[0].get("frob") == "1"
    assert cmd.drives[0].get("weird.key") == "x"


def test_undeclared_key() -> None:
    """util/qemu-option.c opt_set: QERR_INVALID_PARAMETER."""
    assert str(error("-chardev", "socket,id=a,foo=bar")) == (
        "-chardev socket,id=a,foo=bar: Invalid parameter 'foo'"
    )


def test_chardev_fd_is_accepted_as_qemu_2_12_does() -> None:
    """2.11's qemu_chardev_opts has no `fd` (the probe agrees), but the project takes
    2.12's `-chardev socket,fd=N` (a listening socket passed in by a parent process),
    which management tools that pre-open the monitor socket rely on."""
    cl = parse_command_line(["-chardev", "socket,id=a,fd=3,server,nowait"])
    assert cl.chardevs[0].get("fd") == "3"


def test_bad_bool() -> None:
    """util/qemu-option.c parse_option_bool: QERR_INVALID_PARAMETER_VALUE."""
    assert str(error("-chardev", "socket,id=a,server=yes")) == (
        "-chardev socket,id=a,server=yes: Parameter 'server' expects 'on' or 'off'"
    )


def test_bad_number() -> None:
    """util/qemu-option.c parse_option_number: "a number"."""
    assert str(error("-smp", "abc")) == "-smp abc: Parameter 'cpus' expects a number"


def test_number_too_large() -> None:
    """util/qemu-option.c parse_option_number: ERANGE from qemu_strtou64."""
    assert str(error("-chardev", "null,id=a,to=99999999999999999999")) == (
        "-chardev null,id=a,to=99999999999999999999: "
        "Value '99999999999999999999' is too large for parameter 'to'"
    )


def test_numbers_are_c_numbers() -> None:
    """qemu_strtou64 base 0: hex and octal; strtoull negates "-1" without error."""
    (a,) = nd("-chardev", "socket,id=a,port=1,to=0x10,reconnect=-1").chardevs
    assert a.get_number("to", 0) == 16
    assert a.get_number("reconnect", 0) == 2**64 - 1


def test_bad_size_with_hint() -> None:
    """util/qemu-option.c parse_option_size: message plus the suffix hint."""
    err = error("-m", "12x")
    assert str(err) == "-m 12x: Parameter 'size' expects a non-negative number below 2^64"
    assert err.hint == (
        "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
        "and exabytes, respectively.\n"
    )
    assert err.render(PROG) == f"{PROG}: {err}\n{err.hint}"


def test_negative_size() -> None:
    """util/qemu-option.c parse_option_size: ERANGE ("out of range")."""
    assert str(error("-m", "-1")) == "-m -1: Value '-1' is out of range for parameter 'size'"


def test_infinite_size_is_out_of_range() -> None:
    """util/cutils.c do_strtosz: strtod reads `inf`, which is not below 2**64, so the
    error is ERANGE and parse_option_size says `out of range` (not `expects ...`)."""
    assert str(error("-m", "inf")) == "-m inf: Value 'inf' is out of range for parameter 'size'"
    assert str(error("-m", "16E")) == "-m 16E: Value '16E' is out of range for parameter 'size'"


def test_fractional_size_needs_a_suffix() -> None:
    """util/cutils.c do_strtosz: a fraction without a multiplier is EINVAL."""
    assert str(error("-m", "1.5")).endswith(
        "Parameter 'size' expects a non-negative number below 2^64"
    )
    assert nd("-m", "1.5G").memory.ram_size == 3 << 29


def test_bad_id() -> None:
    """util/qemu-option.c qemu_opts_create: id_wellformed, with a hint."""
    err = error("-chardev", "socket,id=1x")
    assert str(err) == "-chardev socket,id=1x: Parameter 'id' expects an identifier"
    assert (
        err.hint
        == "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
    )


def test_duplicate_id() -> None:
    """util/qemu-option.c qemu_opts_create: "Duplicate ID '%s' for %s"."""
    err = error("-chardev", "null,id=a", "-chardev", "null,id=a")
    assert str(err) == "-chardev null,id=a: Duplicate ID 'a' for chardev"


def test_duplicate_id_names_the_group() -> None:
    """The QemuOptsList name is printed: device, netdev, object, ..."""
    assert str(error("-device", "e1000,id=x", "-device", "e1000,id=x")) == (
        "-device e1000,id=x: Duplicate ID 'x' for device"
    )


# ---------------------------------------------------------------------------
# memory (vl.c set_memory_options)


@pytest.mark.parametrize(
    ("arg", "size"),
    [
        ("512", 512 << 20),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("2048M", 2 << 30),
        ("size=2048M", 2 << 30),
        ("1024k", 1 << 20),
        ("0", 128 << 20),
        ("1k", 8192),
        ("0x10", 16 << 20),
        ("1T", 1 << 40),
    ],
)
def test_memory_sizes(arg: str, size: int) -> None:
    """set_memory_options: suffix-less means MiB, 0 means the default, 8 KiB aligned."""
    assert nd("-m", arg).memory.ram_size == size


def test_default_memory() -> None:
    """hw/i386/pc.c: default_ram_size is 128 MiB."""
    assert nd().memory.ram_size == 128 << 20


def test_memory_hotplug() -> None:
    """set_memory_options: maxmem and slots together."""
    mem = nd("-m", "1G,slots=4,maxmem=8G").memory
    assert (mem.ram_size, mem.max_ram_size, mem.slots) == (1 << 30, 8 << 30, 4)


def test_memory_too_large() -> None:
    """set_memory_options: the MiB conversion overflows."""
    assert str(error("-m", "99999999999999")) == "-m 99999999999999: too large 'size' option value"


def test_maxmem_below_size() -> None:
    """set_memory_options: maxmem smaller than the initial size."""
    assert str(error("-m", "1G,slots=2,maxmem=512M")) == (
        "-m 1G,slots=2,maxmem=512M: invalid value of -m option maxmem: maximum memory size "
        "(0x20000000) must be at least the initial memory size (0x40000000)"
    )


def test_slots_without_room() -> None:
    """set_memory_options: slots given but maxmem equals the size."""
    assert str(error("-m", "1G,slots=2,maxmem=1G")) == (
        "-m 1G,slots=2,maxmem=1G: invalid value of -m option maxmem: memory slots were "
        "specified but maximum memory size (0x40000000) is equal to the initial memory size "
        "(0x40000000)"
    )


def test_maxmem_without_slots() -> None:
    """set_memory_options: maxmem above the size with slots=0."""
    assert str(error("-m", "1G,maxmem=2G,slots=0")) == (
        "-m 1G,maxmem=2G,slots=0: invalid value of -m option: maxmem was specified, "
        "but no hotplug slots were specified"
    )


def test_maxmem_alone() -> None:
    """set_memory_options: one of maxmem/slots missing."""
    assert str(error("-m", "1G,maxmem=2G")) == (
        "-m 1G,maxmem=2G: invalid -m option value: missing 'slots' option"
    )


def test_memory_error_location_is_the_first_m() -> None:
    """qemu_opts_create saves the location when the merged instance is created."""
    assert str(error("-m", "1G", "-m", "slots=2")) == (
        "-m 1G: invalid -m option value: missing 'maxmem' option"
    )


# ---------------------------------------------------------------------------
# smp (vl.c smp_parse)


@pytest.mark.parametrize(
    ("arg", "topology"),
    [
        ("1", (1, 1, 1, 1, 1)),
        ("4", (4, 1, 1, 1, 4)),
        ("4,sockets=2", (4, 2, 2, 1, 4)),
        ("4,sockets=2,cores=2,threads=1", (4, 2, 2, 1, 4)),
        ("8,cores=2,sockets=2", (8, 2, 2, 2, 8)),
        ("sockets=2,cores=2,threads=2", (8, 2, 2, 2, 8)),
        ("2,maxcpus=8", (2, 1, 1, 1, 8)),
    ],
)
def test_smp_topology(arg: str, topology: tuple[int, int, int, int, int]) -> None:
    """smp_parse: missing values computed, preferring sockets over cores over threads."""
    smp = nd("-smp", arg).smp
    assert (smp.cpus, smp.sockets, smp.cores, smp.threads, smp.max_cpus) == topology


def test_smp_topology_too_small() -> None:
    """smp_parse: sockets * cores * threads < cpus (no location: after the loop)."""
    assert str(error("-smp", "4,sockets=1,cores=1,threads=1")) == (
        "cpu topology: sockets (1) * cores (1) * threads (1) < smp_cpus (4)"
    )


def test_smp_maxcpus_below_cpus() -> None:
    """smp_parse: maxcpus < cpus."""
    assert str(error("-smp", "2,maxcpus=1")) == "maxcpus must be equal to or greater than smp"


def test_smp_topology_too_large() -> None:
    """smp_parse: sockets * cores * threads > maxcpus."""
    assert str(error("-smp", "4,sockets=2,cores=2,threads=2")) == (
        "cpu topology: sockets (2) * cores (2) * threads (2) > maxcpus (4)"
    )


# ---------------------------------------------------------------------------
# scalar options


def test_uuid() -> None:
    """vl.c -uuid: qemu_uuid_parse; the value is kept lower-case (qemu_uuid_unparse)."""
    assert nd("-uuid", "5C2D2F4E-1F2A-4C5E-9D7B-0A1B2C3D4E5F").uuid == (
        "5c2d2f4e-1f2a-4c5e-9d7b-0a1b2c3d4e5f"
    )


def test_bad_uuid() -> None:
    """vl.c -uuid: "failed to parse UUID string: wrong format"."""
    assert str(error("-uuid", "5c2d2f4e-1f2a-4c5e-9d7b-0a1b2c3d4e5")) == (
        "-uuid 5c2d2f4e-1f2a-4c5e-9d7b-0a1b2c3d4e5: failed to parse UUID string: wrong format"
    )


def test_name_forms() -> None:
    """qemu_name_opts: implied guest, process, debug-threads; merged across -name."""
    assert nd("-name", "vm1").name == "vm1"
    cmd = nd("-name", "guest=vm1,debug-threads=on", "-name", "process=qemu-vm1")
    assert (cmd.name, cmd.process_name, cmd.debug_threads) == ("vm1", "qemu-vm1", True)


def test_accelerators() -> None:
    """-enable-kvm is -machine accel=kvm; -accel sets machine accel; ':' lists them."""
    assert nd().accelerators == ("tcg",)
    assert nd("-enable-kvm").accelerators == ("kvm",)
    assert nd("-machine", "accel=kvm:tcg").accelerators == ("kvm", "tcg")
    cmd = nd("-accel", "tcg,thread=multi")
    assert cmd.accelerators == ("tcg",) and cmd.accel_thread == "multi"
    assert nd("-enable-kvm", "-no-kvm").accelerators == ("tcg",)


def test_accel_help() -> None:
    """vl.c -accel help: error_printf of the list, exit(0)."""
    err = error("-accel", "help")
    assert err.exit_status == 0
    assert err.render(PROG) == "Possible accelerators: kvm, xen, hax, tcg\n"


def test_accel_bad_parameter_lists_accelerators() -> None:
    """vl.c -accel: a parse error is reported, then the list, and exit(0)."""
    err = error("-accel", "foo=bar")
    assert err.exit_status == 0
    assert err.render(PROG) == (
        f"{PROG}: -accel foo=bar: Invalid parameter 'foo'\nPossible accelerators: kvm, xen, hax, tcg\n"
    )


def test_scalar_flags() -> None:
    """vl.c main: plain flags and string options."""
    cmd = nd(
        "-S", "-no-shutdown", "-no-reboot", "-daemonize", "-pidfile", "/run/p",
        "-cpu", "host", "-vga", "std", "-k", "fr", "-mem-path", "/hp", "-mem-prealloc",
        "-no-hpet", "-no-acpi", "-D", "/log", "-d", "int,cpu", "-singlestep", "-snapshot",
        "-incoming", "defer", "-L", "/fw", "-bios", "bios.bin", "-kernel", "vmlinuz",
        "-initrd", "initrd.img", "-append", "console=ttyS0", "-watchdog-action", "pause",
    )  # fmt: skip
    assert not cmd.autostart and cmd.no_shutdown and cmd.no_reboot and cmd.daemonize
    assert (cmd.pidfile, cmd.cpu_model, cmd.vga, cmd.keyboard_layout) == (
        "/run/p",
        "host",
        "std",
        "fr",
    )
    assert cmd.mem_path == "/hp" and cmd.mem_prealloc and cmd.no_hpet and cmd.no_acpi
    assert (cmd.log_file, cmd.log_items, cmd.incoming) == ("/log", "int,cpu", "defer")
    assert cmd.singlestep and cmd.snapshot and cmd.data_dirs == ("/fw",)
    assert (cmd.bios, cmd.kernel, cmd.initrd, cmd.append) == (
        "bios.bin",
        "vmlinuz",
        "initrd.img",
        "console=ttyS0",
    )
    assert cmd.watchdog_action == "pause"


def test_realtime_and_overcommit() -> None:
    """vl.c -realtime mlock=; -overcommit (QEMU 3.1 syntax) mem-lock=, cpu-pm=."""
    assert nd("-realtime", "mlock=on").mem_lock
    assert not nd("-realtime", "mlock=off").mem_lock
    cmd = nd("-overcommit", "mem-lock=on,cpu-pm=on")
    assert cmd.mem_lock and cmd.cpu_pm


def test_overcommit_bad_parameter() -> None:
    """QEMU 3.1 qemu_overcommit_opts has mem-lock and cpu-pm only."""
    assert str(error("-overcommit", "foo=1")) == "-overcommit foo=1: Invalid parameter 'foo'"


def test_msg_timestamp_marks_later_messages() -> None:
    """util/qemu-error.c vreport: -msg timestamp=on prefixes later messages."""
    err = error("-msg", "timestamp=on", "-m", "x")
    assert err.diagnostic.timestamp
    assert err.render(PROG, "2018-01-01T00:00:00Z").startswith(
        f"2018-01-01T00:00:00Z {PROG}: -m x: "
    )
    assert not error("-m", "x", "-msg", "timestamp=on").diagnostic.timestamp
    assert nd("-msg", "timestamp=on").msg_timestamp


def test_sandbox() -> None:
    """vl.c parse_sandbox: libvirt's usual settings."""
    sandbox = nd(
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    ).sandbox
    assert sandbox.enable and sandbox.spawn == "deny"


def test_sandbox_bad_value() -> None:
    """vl.c parse_sandbox: "invalid argument for %s", at the -sandbox location."""
    assert str(error("-sandbox", "on,obsolete=foo")) == (
        "-sandbox on,obsolete=foo: invalid argument for obsolete"
    )


def test_rtc() -> None:
    """vl.c configure_rtc: base utc/localtime/date, clock, driftfix."""
    assert nd().rtc.base == "utc"
    assert nd("-rtc", "base=localtime,clock=vm,driftfix=slew").rtc.clock == "vm"
    rtc = nd("-rtc", "base=2006-06-17T16:01:21").rtc
    assert (rtc.base, rtc.start_date) == ("date", 1150560081)
    assert nd("-rtc", "base=2006-06-17").rtc.start_date == 1150502400
    assert nd("-localtime").rtc.base == "localtime"


def test_rtc_date_that_mktimegm_calls_an_error() -> None:
    """vl.c configure_rtc_date_offset: mktimegm() == -1 is taken as failure."""
    assert str(error("-rtc", "base=1969-12-31T23:59:59")) == (
        "-rtc base=1969-12-31T23:59:59: invalid date format"
    )


def test_rtc_bad_clock() -> None:
    """vl.c configure_rtc: "invalid option value '%s'"."""
    assert str(error("-rtc", "clock=foo")) == "-rtc clock=foo: invalid option value 'foo'"


def test_rtc_bad_date() -> None:
    """vl.c configure_rtc_date_offset: message and the formats on the next line."""
    err = error("-rtc", "base=now")
    assert str(err) == "-rtc base=now: invalid date format"
    assert err.hint == "valid formats: '2006-06-17T16:01:21' or '2006-06-17'\n"


def test_watchdog() -> None:
    """hw/watchdog/watchdog.c select_watchdog: a device with the name as given."""
    cmd = nd("-watchdog", "i6300esb")
    assert cmd.watchdog == "i6300esb"
    assert cmd.devices[-1].get("driver") == "i6300esb"


def test_two_watchdogs() -> None:
    """vl.c -watchdog: "only one watchdog option may be given"."""
    assert str(error("-watchdog", "ib700", "-watchdog", "ib700")) == (
        "-watchdog ib700: only one watchdog option may be given"
    )


def test_unknown_watchdog() -> None:
    """hw/watchdog/watchdog.c select_watchdog: fprintf of the models, exit 1."""
    err = error("-watchdog", "foo")
    assert err.render(PROG) == (
        "Unknown -watchdog device. Supported devices are:\n\tib700\tiBASE 700\n\ti6300esb\tIntel 6300ESB\n"
    )


def test_unknown_watchdog_action() -> None:
    """vl.c -watchdog-action: "unknown -watchdog-action parameter"."""
    assert str(error("-watchdog-action", "explode")) == (
        "-watchdog-action explode: unknown -watchdog-action parameter"
    )


def test_boot_options() -> None:
    """qemu_boot_opts: order, once, menu, strict, ..."""
    boot = nd("-boot", "order=dc,once=n,menu=on,strict=on,splash-time=5").boot
    assert (boot.order, boot.once, boot.menu, boot.strict, boot.splash_time) == (
        "dc",
        "n",
        True,
        True,
        "5",
    )


def test_invalid_boot_device() -> None:
    """bootdevice.c validate_bootdevices: no location (after the loop)."""
    assert str(error("-boot", "order=cz")) == "Invalid boot device 'z'"


def test_boot_device_twice() -> None:
    """bootdevice.c validate_bootdevices: "Boot device '%c' was given twice"."""
    assert str(error("-boot", "once=cdc")) == "Boot device 'c' was given twice"


def test_append_without_kernel() -> None:
    """vl.c main: "-append only allowed with -kernel option"."""
    assert str(error("-append", "quiet")) == "-append only allowed with -kernel option"


def test_initrd_without_kernel() -> None:
    """vl.c main: "-initrd only allowed with -kernel option"."""
    assert str(error("-initrd", "i")) == "-initrd only allowed with -kernel option"


def test_nographic_with_daemonize() -> None:
    """vl.c main: -nographic needs the default ports redirected to -daemonize."""
    assert str(error("-nographic", "-daemonize")) == "-nographic cannot be used with -daemonize"
    assert parse("-nodefaults", "-nographic", "-daemonize").daemonize


def test_add_fd_keeps_its_settings() -> None:
    """vl.c qemu_add_fd_opts: fd, set, opaque."""
    assert nd("-add-fd", "fd=5,set=1,opaque=x").add_fds[0].get("opaque") == "x"


def test_add_fd_without_fd() -> None:
    """vl.c parse_add_fd: "fd option is required and must be non-negative"."""
    assert str(error("-add-fd", "set=2")) == (
        "-add-fd set=2: fd option is required and must be non-negative"
    )


def test_add_fd_standard_stream() -> None:
    """vl.c parse_add_fd: "fd cannot be a standard I/O stream"."""
    assert str(error("-add-fd", "fd=2,set=1")) == (
        "-add-fd fd=2,set=1: fd cannot be a standard I/O stream"
    )


def test_add_fd_without_set() -> None:
    """vl.c parse_add_fd: "set option is required and must be non-negative"."""
    assert str(error("-add-fd", "fd=5")) == (
        "-add-fd fd=5: set option is required and must be non-negative"
    )


def test_set_option() -> None:
    """util/qemu-config.c qemu_set_option: -set group.id.arg=value."""
    cmd = nd("-device", "e1000,id=n0", "-set", "device.n0.mac=52:54:00:00:00:01")
    assert cmd.devices[0].get("mac") == "52:54:00:00:00:01"


def test_set_unparsable() -> None:
    """util/qemu-config.c qemu_set_option: can't parse: "%s"."""
    assert str(error("-set", "foo")) == '-set foo: can\'t parse: "foo"'


def test_set_unknown_group() -> None:
    """util/qemu-config.c find_list: "There is no option group '%s'"."""
    assert str(error("-set", "nogroup.x.y=z")) == (
        "-set nogroup.x.y=z: There is no option group 'nogroup'"
    )


def test_set_unknown_id() -> None:
    """util/qemu-config.c qemu_set_option: there is no %s "%s" defined."""
    assert str(error("-set", "device.nodev.x=y")) == (
        '-set device.nodev.x=y: there is no device "nodev" defined'
    )


def test_global_forms() -> None:
    """qdev-monitor.c qemu_global_option: driver.prop=value or key=value form."""
    cmd = nd("-global", "isa-fdc.driveA=x", "-global", "driver=e1000,property=mac,value=1")
    assert [g.items for g in cmd.globals] == [
        (("driver", "isa-fdc"), ("property", "driveA"), ("value", "x")),
        (("driver", "e1000"), ("property", "mac"), ("value", "1")),
    ]


def test_global_bad_form() -> None:
    """qdev-monitor.c qemu_global_option falls back to QemuOpts, which rejects it."""
    assert str(error("-global", "foo")) == "-global foo: Invalid parameter 'foo'"


def test_vga_unknown() -> None:
    """vl.c select_vgahw: "unknown vga type: %s" (no location)."""
    assert str(error("-vga", "foo")) == "unknown vga type: foo"


def test_vga_other_target() -> None:
    """vl.c select_vgahw: TCX exists only on SPARC."""
    assert str(error("-vga", "tcx")) == "TCX framebuffer not available"


def test_display() -> None:
    """vl.c select_display and -nographic."""
    assert nd("-display", "none").display.type == "none"
    assert nd("-display", "sdl,frame=off,gl=on").display.options == (("frame", "off"), ("gl", "on"))
    cmd = nd("-nographic")
    assert cmd.display.nographic and cmd.display.type == "none"
    assert cmd.machine.get("graphics") == "off"


def test_display_unknown() -> None:
    """vl.c select_display: "unknown display type"."""
    assert str(error("-display", "foo")) == "-display foo: unknown display type"


def test_display_bad_sdl_option() -> None:
    """vl.c select_display: "invalid SDL option string"."""
    assert (
        str(error("-display", "sdl,frame=maybe"))
        == "-display sdl,frame=maybe: invalid SDL option string"
    )


def test_display_vnc_needs_argument() -> None:
    """vl.c select_display: "VNC requires a display argument vnc=<display>"."""
    assert (
        str(error("-display", "vnc"))
        == "-display vnc: VNC requires a display argument vnc=<display>"
    )


def test_vnc_ids() -> None:
    """ui/vnc.c vnc_auto_assign_id: default, then vnc2, vnc3, ..."""
    cmd = nd("-vnc", "127.0.0.1:0", "-display", "vnc=:1", "-vnc", ":2,id=mine", "-vnc", ":3")
    assert [(v.id, v.get("vnc")) for v in cmd.vnc] == [
        ("default", "127.0.0.1:0"),
        ("vnc2", ":1"),
        ("mine", ":2"),
        ("vnc3", ":3"),
    ]


def test_deprecation_warnings_are_kept() -> None:
    """vl.c prints these with error_report/warn_report and carries on."""
    cmd = nd("-usbdevice", "tablet", "-no-kvm-pit")
    assert [w.text for w in cmd.warnings] == [
        "-usbdevice tablet: '-usbdevice' is deprecated, please use '-device usb-...' instead",
        "-no-kvm-pit: warning: ignoring deprecated option",
    ]
    assert cmd.machine.get("usb") == "on"


def test_warnings_precede_the_error() -> None:
    """A later error still follows the warnings QEMU already printed."""
    err = error("-tdf", "-m", "x")
    assert err.render(PROG).startswith(f"{PROG}: -tdf: warning: ignoring deprecated option\n")


def test_rotate_angle() -> None:
    """vl.c -rotate: "only 90, 180, 270 deg rotation is available"."""
    assert str(error("-rotate", "45")) == "-rotate 45: only 90, 180, 270 deg rotation is available"


def test_tb_size() -> None:
    """vl.c -tb-size: qemu_strtoul fails, "Invalid argument to -tb-size"."""
    assert str(error("-tb-size", "x")) == "-tb-size x: Invalid argument to -tb-size"


def test_hdachs_format() -> None:
    """vl.c -hdachs: "invalid physical CHS format"."""
    assert str(error("-hdachs", "1,2")) == "-hdachs 1,2: invalid physical CHS format"


def test_option_rom_without_file() -> None:
    """vl.c -option-rom: "Option ROM file is not specified"."""
    assert str(error("-option-rom", "bootindex=1")) == (
        "-option-rom bootindex=1: Option ROM file is not specified"
    )


def test_balloon_argument() -> None:
    """vl.c balloon_parse fails: "unknown -balloon argument %s"."""
    assert str(error("-balloon", "foo")) == "-balloon foo: unknown -balloon argument foo"


def test_dump_vmstate_twice() -> None:
    """vl.c -dump-vmstate: "only one '-dump-vmstate' option may be given"."""
    assert str(error("-dump-vmstate", "a", "-dump-vmstate", "b")) == (
        "-dump-vmstate b: only one '-dump-vmstate' option may be given"
    )


def test_balloon_bad_device_options() -> None:
    """vl.c balloon_parse: the QemuOpts error, then "unknown -balloon argument"."""
    err = error("-balloon", "virtio,id=1x")
    assert [d.text for d in err.diagnostics] == [
        "-balloon virtio,id=1x: Parameter 'id' expects an identifier",
        "-balloon virtio,id=1x: unknown -balloon argument virtio,id=1x",
    ]


def test_tpmdev_help() -> None:
    """tpm.c tpm_display_backend_drivers on stderr, then vl.c exit(1)."""
    err = error("-tpmdev", "help")
    assert err.exit_status == 1
    assert err.render(PROG) == (
        "Supported TPM types (choose only one):\n"
        " passthrough   Passthrough TPM backend driver\n"
        "    emulator   TPM emulator backend driver\n\n"
    )


def test_watchdog_help() -> None:
    """hw/watchdog/watchdog.c select_watchdog: -watchdog help lists, exit status 0."""
    err = error("-watchdog", "help")
    assert err.exit_status == 0
    assert err.render(PROG) == "\tib700\tiBASE 700\n\ti6300esb\tIntel 6300ESB\n"


def test_accel_without_name_lists_accelerators() -> None:
    """vl.c -accel: no accel= after parsing means help, exit(0)."""
    err = error("-accel", "thread=multi")
    assert (err.exit_status, err.render(PROG)) == (0, "Possible accelerators: kvm, xen, hax, tcg\n")


def test_display_bad_gtk_option() -> None:
    """vl.c select_display: "invalid GTK option string"."""
    assert (
        str(error("-display", "gtk,gl=maybe")) == "-display gtk,gl=maybe: invalid GTK option string"
    )


def test_sdl_only_flags_warn() -> None:
    """vl.c main: -no-frame/-alt-grab/-ctrl-grab need SDL (error_report, not fatal)."""
    assert [w.text for w in nd("-no-frame").warnings] == [
        "-no-frame, -alt-grab and -ctrl-grab are only valid for SDL, ignoring option"
    ]
    assert nd("-no-frame", "-display", "sdl").warnings == ()


def test_no_quit_warns() -> None:
    """vl.c main: "-no-quit is only valid for GTK and SDL, ignoring option"."""
    assert [w.text for w in nd("-no-quit", "-display", "none").warnings] == [
        "-no-quit is only valid for GTK and SDL, ignoring option"
    ]


def test_hdachs_deprecation() -> None:
    """vl.c -hdachs always reports its deprecation; it sets the first image's geometry."""
    cmd = nd("disk.img", "-hdachs", "100,16,63,lba")
    assert [w.text for w in cmd.warnings] == [
        "-hdachs 100,16,63,lba: '-hdachs' is deprecated, please use "
        "'-device ide-hd,cyls=c,heads=h,secs=s,...' instead"
    ]
    assert cmd.drives[0].as_dict() == {
        "media": "disk",
        "index": "0",
        "file": "disk.img",
        "cyls": "100",
        "heads": "16",
        "secs": "63",
        "trans": "lba",
    }


def test_net_channel_deprecation() -> None:
    """net/slirp.c net_slirp_parse_legacy: -net channel is reported and kept aside."""
    cmd = nd("-net", "channel,10.0.2.100:1234,chardev:c")
    assert [w.text for w in cmd.warnings] == [
        "-net channel,10.0.2.100:1234,chardev:c: The '-net channel' option is deprecated. "
        "Please use '-netdev user,guestfwd=...' instead."
    ]
    assert cmd.nets == ()


def test_debugcon_failure_is_silent() -> None:
    """vl.c debugcon_parse: exit(1) with nothing printed when the backend is unknown."""
    err = error("-debugcon", "foo")
    assert err.render(PROG) == "" and err.exit_status == 1


def test_monitor_id_taken() -> None:
    """vl.c monitor_parse: qemu_opts_create(mon, label, 1, &error_fatal)."""
    err = error("-chardev", "null,id=c", "-mon", "c,id=compat_monitor0", "-qmp", "stdio")
    assert str(err) == "-qmp stdio: Duplicate ID 'compat_monitor0' for mon"


def test_virtfs() -> None:
    """vl.c -virtfs: an fsdev (id from mount_tag) and a virtio-9p-pci device."""
    cmd = nd("-virtfs", "local,path=/srv,mount_tag=share,security_model=none")
    (fsdev,) = cmd.group("fsdev")
    assert fsdev.id == "share" and fsdev.get("fsdriver") == "local"
    assert cmd.devices[0].items == (
        ("driver", "virtio-9p-pci"),
        ("fsdev", "share"),
        ("mount_tag", "share"),
    )


def test_virtfs_usage() -> None:
    """vl.c -virtfs: "Usage: -virtfs fsdriver,mount_tag=tag"."""
    assert str(error("-virtfs", "local,path=/x")) == (
        "-virtfs local,path=/x: Usage: -virtfs fsdriver,mount_tag=tag"
    )


def test_virtfs_duplicate() -> None:
    """vl.c -virtfs: "duplicate or invalid fsdev id: %s"."""
    err = error("-virtfs", "local,mount_tag=t", "-virtfs", "local,mount_tag=t")
    assert str(err) == "-virtfs local,mount_tag=t: duplicate or invalid fsdev id: t"


def test_virtfs_synth_twice() -> None:
    """vl.c -virtfs_synth: "duplicate option: virtfs_synth"."""
    assert str(error("-virtfs_synth", "-virtfs_synth")) == (
        "-virtfs_synth: duplicate option: virtfs_synth"
    )


def test_disk_image_and_drive_shortcuts() -> None:
    """vl.c: a bare word is drive_add(IF_DEFAULT, 0, ..., "media=disk"), -cdrom index 2, ..."""
    cmd = nd("disk.img", "-hdb", "b.img", "-cdrom", "cd.iso", "-fda", "fd.img", "-pflash", "fw.fd")
    assert [d.items for d in cmd.drives] == [
        (("media", "disk"), ("index", "0"), ("file", "disk.img")),
        (("media", "disk"), ("index", "1"), ("file", "b.img")),
        (("media", "cdrom"), ("index", "2"), ("file", "cd.iso")),
        (("if", "floppy"), ("index", "0"), ("file", "fd.img")),
        (("if", "pflash"), ("file", "fw.fd")),
    ]


def test_disk_image_location_is_left_over_from_the_first_pass() -> None:
    """vl.c: a bare image before any option is added while the location is still
    the last one the first pass looked up; later drive errors are printed there."""
    (drive,) = parse("disk.img", "-nodefaults", "-m", "512").drives
    assert drive.location == ("-m", "512")
    (drive,) = parse("-nodefaults", "disk.img", "-m", "512").drives
    assert drive.location == ("-nodefaults",)


def test_default_devices() -> None:
    """vl.c: without -nodefaults, a vc serial/parallel/monitor and -net nic -net user."""
    cmd = parse()
    assert [(p.kind, p.chardev_id, p.spec, p.default) for p in (*cmd.serials, *cmd.parallels)] == [
        ("serial", "serial0", "vc:80Cx24C", True),
        ("parallel", "parallel0", "vc:80Cx24C", True),
    ]
    assert [(m.chardev, m.mode) for m in cmd.monitors] == [("compat_monitor0", "readline")]
    assert [n.get("type") for n in cmd.nets] == ["nic", "user"]


def test_default_devices_dropped_by_devices() -> None:
    """vl.c default_driver_check: -device isa-serial drops the default serial port."""
    cmd = parse("-device", "isa-serial", "-net", "none")
    assert not cmd.serials and cmd.parallels
    assert not cmd.defaults.serial and not cmd.defaults.net


def test_nographic_redirections() -> None:
    """vl.c: -nographic muxes serial and monitor on stdio, parallel to null."""
    cmd = parse("-nographic")
    assert cmd.serials[0].chardev is not None
    assert cmd.serials[0].chardev.items == (("mux", "on"), ("signal", "off"), ("backend", "stdio"))
    assert cmd.parallels[0].chardev is not None
    assert cmd.parallels[0].chardev.get("backend") == "null"
    assert [(m.chardev, m.mode) for m in cmd.monitors] == [("serial0", "readline")]


def test_all_chardevs_in_creation_order() -> None:
    """vl.c: -chardev and monitor chardevs first, then serial, parallel, ... ports."""
    cmd = nd("-parallel", "null", "-serial", "pty", "-chardev", "null,id=c", "-qmp", "stdio")
    assert [c.id for c in cmd.all_chardevs()] == ["c", "compat_monitor0", "serial0", "parallel0"]


def test_nodefaults() -> None:
    """vl.c has_defaults = 0: no default ports, monitor or NICs."""
    cmd = nd()
    assert not (cmd.serials or cmd.parallels or cmd.monitors or cmd.nets)


# ---------------------------------------------------------------------------
# monitors (vl.c monitor_parse, mon_init_func)


def test_qmp_creates_control_monitor() -> None:
    """vl.c monitor_parse: -qmp makes chardev compat_monitorN and a control monitor."""
    cmd = nd("-qmp", "unix:/tmp/qmp.sock,server,nowait")
    (chardev,) = cmd.chardevs
    assert chardev.id == "compat_monitor0"
    assert chardev.items == (
        ("backend", "socket"),
        ("path", "/tmp/qmp.sock"),
        ("server", "on"),
        ("wait", "off"),
    )
    (mon,) = cmd.monitors
    assert (mon.chardev, mon.mode, mon.pretty, mon.control) == (
        "compat_monitor0",
        "control",
        False,
        True,
    )


def test_monitor_kinds_and_numbering() -> None:
    """-monitor is readline, -qmp-pretty is pretty control; the index counts monitors."""
    cmd = nd(
        "-monitor", "stdio", "-qmp-pretty", "tcp:localhost:4444,server,nowait", "-monitor", "none"
    )
    assert [(m.chardev, m.mode, m.pretty) for m in cmd.monitors] == [
        ("compat_monitor0", "readline", False),
        ("compat_monitor1", "control", True),
    ]


def test_mon_option() -> None:
    """monitor.c qemu_mon_opts: -mon chardev=ID,mode=control,pretty=on."""
    cmd = nd(
        "-chardev",
        "socket,id=charmonitor,path=/m,server,nowait",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control,pretty=on",
    )
    (mon,) = cmd.monitors
    assert (mon.id, mon.chardev, mon.mode, mon.pretty) == (
        "monitor",
        "charmonitor",
        "control",
        True,
    )


def test_mon_default_is_deprecated() -> None:
    """vl.c mon_init_func: "option 'default' does nothing and is deprecated"."""
    cmd = nd("-chardev", "null,id=c", "-mon", "c,default")
    assert [w.text for w in cmd.warnings] == [
        "-mon c,default: option 'default' does nothing and is deprecated"
    ]


def test_monitor_on_named_chardev() -> None:
    """vl.c monitor_parse: `chardev:ID` uses an existing chardev, mon id = ID."""
    cmd = nd("-chardev", "pty,id=hmp", "-monitor", "chardev:hmp")
    assert [(m.id, m.chardev, m.mode) for m in cmd.monitors] == [("hmp", "hmp", "readline")]


def test_unknown_monitor_mode() -> None:
    """vl.c mon_init_func: unknown monitor mode "%s"."""
    err = error("-chardev", "null,id=c", "-mon", "chardev=c,mode=bogus")
    assert str(err) == '-mon chardev=c,mode=bogus: unknown monitor mode "bogus"'


def test_monitor_chardev_not_found() -> None:
    """vl.c mon_init_func: chardev "%s" not found."""
    assert str(error("-mon", "chardev=nope")) == '-mon chardev=nope: chardev "nope" not found'


def test_monitor_without_chardev() -> None:
    """vl.c mon_init_func: qemu_chr_find(NULL), printed by glibc as (null)."""
    assert str(error("-mon", "mode=control")) == '-mon mode=control: chardev "(null)" not found'


def test_monitor_parse_error() -> None:
    """vl.c monitor_parse: "parse error: %s" when qemu_chr_parse_compat fails."""
    assert str(error("-qmp", "foo:bar")) == "-qmp foo:bar: parse error: foo:bar"


def test_monitor_parse_error_after_option_error() -> None:
    """chardev/char.c qemu_chr_parse_compat reports the bad option first."""
    err = error("-qmp", "tcp:h:1,bogus")
    assert err.render(PROG) == (
        f"{PROG}: -qmp tcp:h:1,bogus: Invalid parameter 'bogus'\n"
        f"{PROG}: -qmp tcp:h:1,bogus: parse error: tcp:h:1,bogus\n"
    )


def test_monitor_label_taken() -> None:
    """qemu_chr_parse_compat: the generated id collides with a -chardev id."""
    err = error("-chardev", "null,id=compat_monitor0", "-qmp", "stdio")
    assert [d.text for d in err.diagnostics] == [
        "-qmp stdio: Duplicate ID 'compat_monitor0' for chardev",
        "-qmp stdio: parse error: stdio",
    ]


# ---------------------------------------------------------------------------
# legacy chardev syntax (chardev/char.c qemu_chr_parse_compat)


@pytest.mark.parametrize(
    ("spec", "items"),
    [
        ("null", (("backend", "null"),)),
        ("pty", (("backend", "pty"),)),
        ("stdio", (("backend", "stdio"),)),
        ("msmouse", (("backend", "msmouse"),)),
        ("wctablet", (("backend", "wctablet"),)),
        ("braille", (("backend", "braille"),)),
        ("testdev", (("backend", "testdev"),)),
        ("vc", (("backend", "vc"),)),
        ("vc:800x600", (("backend", "vc"), ("width", "800"), ("height", "600"))),
        ("vc:80Cx24C", (("backend", "vc"), ("cols", "80"), ("rows", "24"))),
        ("con:", (("backend", "console"),)),
        ("COM1", (("backend", "serial"), ("path", "COM1"))),
        ("file:/tmp/out", (("backend", "file"), ("path", "/tmp/out"))),
        ("pipe:/tmp/p", (("backend", "pipe"), ("path", "/tmp/p"))),
        (
            "tcp:127.0.0.1:4444,server,nowait",
            (
                ("backend", "socket"),
                ("host", "127.0.0.1"),
                ("port", "4444"),
                ("server", "on"),
                ("wait", "off"),
            ),
        ),
        ("tcp::4444", (("backend", "socket"), ("host", ""), ("port", "4444"))),
        (
            "telnet::4444,server",
            (
                ("backend", "socket"),
                ("host", ""),
                ("port", "4444"),
                ("server", "on"),
                ("telnet", "on"),
            ),
        ),
        ("tn3270:h:23", (("backend", "socket"), ("host", "h"), ("port", "23"), ("tn3270", "on"))),
        ("udp:1.2.3.4:5", (("backend", "udp"), ("host", "1.2.3.4"), ("port", "5"))),
        (
            "udp::4555@:4556",
            (
                ("backend", "udp"),
                ("host", ""),
                ("port", "4555"),
                ("localaddr", ""),
                ("localport", "4556"),
            ),
        ),
        (
            "unix:/tmp/s,server,nowait",
            (("backend", "socket"), ("path", "/tmp/s"), ("server", "on"), ("wait", "off")),
        ),
        ("/dev/parport0", (("backend", "parallel"), ("path", "/dev/parport0"))),
        ("/dev/ttyS0", (("backend", "serial"), ("path", "/dev/ttyS0"))),
        ("mon:stdio", (("mux", "on"), ("signal", "off"), ("backend", "stdio"))),
        ("mon:pty", (("mux", "on"), ("backend", "pty"))),
    ],
)
def test_legacy_chardev_forms(spec: str, items: tuple[tuple[str, str], ...]) -> None:
    """qemu_chr_parse_compat: each legacy form and the -chardev options it becomes."""
    (port,) = nd("-serial", spec).serials
    assert port.chardev_id == "serial0"
    assert port.chardev is not None and port.chardev.id == "serial0"
    assert port.chardev.items == items


@pytest.mark.parametrize("spec", ["foo", "tcp:host", "udp:h", "vc:abc", "tcp:" + "h" * 65 + ":1"])
def test_legacy_chardev_failures(spec: str) -> None:
    """vl.c serial_parse: "could not connect serial device to character backend"."""
    assert str(error("-serial", spec)) == (
        f"-serial {spec}: could not connect serial device to character backend '{spec}'"
    )


def test_serial_chardev_reference() -> None:
    """chardev/char.c qemu_chr_new_noreplay: `chardev:ID` names an existing chardev."""
    (port,) = nd("-chardev", "pty,id=s0", "-serial", "chardev:s0").serials
    assert (port.chardev_id, port.chardev) == ("s0", None)
    assert str(error("-serial", "chardev:nope")) == (
        "-serial chardev:nope: could not connect serial device to character backend 'chardev:nope'"
    )


def test_serial_mon_prefix_creates_monitor() -> None:
    """qemu_chr_new_noreplay: a mux chardev gets a readline monitor; no default one."""
    cmd = parse("-serial", "mon:stdio", "-nodefaults")
    assert [(m.chardev, m.mode) for m in cmd.monitors] == [("serial0", "readline")]
    assert [m.chardev for m in parse("-serial", "mon:stdio").monitors] == ["serial0"]


def test_too_many_serial_ports() -> None:
    """vl.c serial_parse: MAX_SERIAL_PORTS is 4; "none" takes no index."""
    assert len(nd(*["-serial", "null"] * 4, "-serial", "none").serials) == 4
    assert str(error(*["-serial", "null"] * 5)) == "-serial null: too many serial ports"


def test_parallel_ports() -> None:
    """vl.c parallel_parse: parallelN labels, at most 3."""
    cmd = nd("-parallel", "file:/p", "-parallel", "null")
    assert [p.chardev_id for p in cmd.parallels] == ["parallel0", "parallel1"]
    assert str(error(*["-parallel", "null"] * 4)) == "-parallel null: too many parallel ports"


def test_virtioconsole_and_debugcon() -> None:
    """vl.c virtcon_parse / debugcon_parse: chardevs and their devices."""
    cmd = nd("-virtioconsole", "pty", "-debugcon", "file:/d")
    assert [p.chardev_id for p in (*cmd.virtconsoles, *cmd.debugcons)] == ["virtcon0", "debugcon"]
    assert [d.get("driver") for d in cmd.devices] == [
        "virtio-serial",
        "virtconsole",
        "isa-debugcon",
    ]


# ---------------------------------------------------------------------------
# -blockdev (util/keyval.c, qobject/json-parser.c)


def test_blockdev_keyval_nesting() -> None:
    """keyval_parse: dotted keys nest, implied key `driver`, values stay strings."""
    (bd,) = nd("-blockdev", "qcow2,node-name=d0,file.driver=file,file.filename=/x,,y.img").blockdevs
    assert not bd.json
    assert bd.options == {
        "driver": "qcow2",
        "node-name": "d0",
        "file": {"driver": "file", "filename": "/x,y.img"},
    }


def test_blockdev_keyval_lists() -> None:
    """keyval_listify: numeric fragments make lists, in index order."""
    (bd,) = nd("-blockdev", "driver=quorum,children.1=b,children.0=a,vote-threshold=1").blockdevs
    assert bd.options["children"] == ["a", "b"]


def test_blockdev_keyval_last_value_wins() -> None:
    """keyval_parse_put: a repeated leaf is replaced."""
    (bd,) = nd("-blockdev", "driver=file,filename=a,filename=b").blockdevs
    assert bd.options["filename"] == "b"


def test_blockdev_json() -> None:
    """qobject_input_visitor_new_str: '{' means JSON, with typed values."""
    (bd,) = nd(
        "-blockdev", "{'driver': 'file', 'filename': '/x', 'read-only': true, 'x': [1, 2.5, null]}"
    ).blockdevs
    assert bd.json
    assert bd.options == {
        "driver": "file",
        "filename": "/x",
        "read-only": True,
        "x": [1, 2.5, None],
    }


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("driver=x,foo", "Expected '=' after parameter 'foo'"),
        ("driver=x,a..b=1", "Invalid parameter 'a..b'"),
        ("=x", "Invalid parameter ''"),
        ("driver=x,a=1,a.b=2", "Parameters 'a.*' used inconsistently"),
        ("driver=x,a.b=1,a=2", "Parameters 'a.*' used inconsistently"),
        ("driver=x,a.0=1,a.b=2", "Parameters 'a.*' used inconsistently"),
        ("driver=x,a.1=x", "Parameter 'a.0' missing"),
        ("driver=x," + "k" * 128 + "=1", "Parameter '" + "k" * 128 + "' is too long"),
        ("driver=x,a." + "k" * 128 + "=1", "Parameter fragment '" + "k" * 128 + "' is too long"),
    ],
)
def test_blockdev_keyval_errors(arg: str, message: str) -> None:
    """util/keyval.c keyval_parse_one / keyval_parse_put / keyval_listify."""
    assert str(error("-blockdev", arg)) == f"-blockdev {arg}: {message}"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ('{"driver":"x",}', "JSON parse error, key is not a string in object"),
        ('{"driver" "x"}', "JSON parse error, missing : in object pair"),
        ('{"driver":}', "JSON parse error, Missing value in dict"),
        ('{"a":1 "b":2}', "JSON parse error, expected separator in dict"),
        ('{"a":[1 2]}', "JSON parse error, Missing value in dict"),
        ("{}[1 2]", "JSON parse error, expected separator in list"),
        ('{"a":tru}', "JSON parse error, Missing value in dict"),
        ("{} tru", "JSON parse error, invalid keyword 'tru'"),
        ('{"a":1}}', "JSON parse error, expecting value"),
        ('{"a":01}', "JSON parse error, expecting value"),
        ("{", "JSON parse error"),
        ('{"a":"\x01"', "JSON parse error"),
    ],
)
def test_blockdev_json_errors(arg: str, message: str) -> None:
    """qobject/json-parser.c parse_error (the outermost call's words win); plain
    "JSON parse error" when the lexer failed or the input ended inside a value."""
    assert str(error("-blockdev", arg)) == f"-blockdev {arg}: {message}"


def test_blockdev_json_nested_past_the_limit() -> None:
    """json-streamer.c: past MAX_NESTING (1024 open braces and brackets) the streamer
    drops what it collected without a message and reads the rest afresh; the first
    stray `]` then fails with `expecting value`, the first error qobject_from_json
    keeps: QEMU prints it at the option and exits 1 (no Python RecursionError)."""
    arg = '{"driver":"null-co","node-name":"a","x":' + "[" * 1200 + "]" * 1200 + "}"
    err = error("-blockdev", arg)
    assert err.exit_status == 1
    assert str(err) == f"-blockdev {arg}: JSON parse error, expecting value"


def test_blockdev_json_nested_to_the_limit() -> None:
    """json-streamer.c MAX_NESTING: 1024 open braces and brackets are allowed."""
    arg = '{"driver":"null-co","x":' + "[" * 1023 + "]" * 1023 + "}"
    (bd,) = nd("-blockdev", arg).blockdevs
    value = bd.options["x"]
    for _ in range(1022):
        assert isinstance(value, list)
        [value] = value
    assert value == []


def test_blockdev_keyval_key_of_many_fragments() -> None:
    """util/keyval.c: a key may have as many fragments as the argument has room for;
    keyval_listify walks them all (here without Python recursion)."""
    (bd,) = nd("-blockdev", "driver=null-co," + "a." * 5000 + "0=x").blockdevs
    value = bd.options["a"]
    for _ in range(4999):
        value = value["a"]
    assert value == ["x"]


def test_program_exits_1_on_json_nested_past_the_limit(tmp_path) -> None:
    """The same, through the real program: QEMU's message on stderr, status 1."""
    from tests.test_program import program

    arg = '{"driver":"null-co","node-name":"a","x":' + "[" * 1200 + "]" * 1200 + "}"
    proc = subprocess.run([*program(), "-nodefaults", "-blockdev", arg], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, QMP_EMULATOR_CACHE_DIR=str(tmp_path)))
    assert proc.returncode == 1
    assert proc.stderr.endswith(f": -blockdev {arg}: JSON parse error, expecting value\n")
    assert "Traceback" not in proc.stderr


def blockdev_error(vm_factory, arg: str) -> str:
    """What the program prints when the block layer takes `-blockdev arg`: the visitor
    runs on the parsed options (vl.c: visit_type_BlockdevOptions, &error_fatal)."""
    cl = parse("-nodefaults", "-blockdev", arg)
    vm = vm_factory(start=False)
    with pytest.raises(CommandLineError) as info:
        configure_block(vm.vm.block, vm.vm.qdev, cl, vm.machine.schema, "pc-i440fx-2.11")
    return info.value.render(PROG)


@pytest.mark.parametrize("size", ["1_000", "0o17", "inf", "1k"])
def test_blockdev_keyval_integer_member(vm_factory, size: str) -> None:
    """qobject_input_type_int64_keyval: null-co's `size` is an int, read by
    qemu_strtoi64 (base 0) over the whole string, so Python literals (`1_000`, `0o17`),
    `inf` and size suffixes fail: `Parameter 'size' expects integer`, at the option."""
    arg = f"driver=null-co,node-name=a,size={size}"
    assert blockdev_error(vm_factory, arg) == \
        f"{PROG}: -blockdev {arg}: Parameter 'size' expects integer\n"


def test_blockdev_keyval_conversions(vm_factory) -> None:
    """qobject_input_visitor_new_keyval: strings become the member's type, C syntax
    (`0x1000`) included; a bool is `on`/`off` only."""
    arg = "driver=null-co,node-name=a,size=0x1000,read-only=yes"
    assert blockdev_error(vm_factory, arg) == \
        f"{PROG}: -blockdev {arg}: Parameter 'read-only' expects 'on' or 'off'\n"
    arg = "driver=raw,node-name=a,file.driver=null-co,file.size=x"
    assert blockdev_error(vm_factory, arg) == \
        f"{PROG}: -blockdev {arg}: Parameter 'file.size' expects integer\n"
    cl = parse("-nodefaults", "-blockdev", "driver=null-co,node-name=n,size=0x1000")
    vm = vm_factory(start=False)
    configure_block(vm.vm.block, vm.vm.qdev, cl, vm.machine.schema, "pc-i440fx-2.11")
    vm.machine.start()
    [node] = vm.talk().execute("query-named-block-nodes")["return"]
    assert node["image"]["virtual-size"] == 4096


def test_blockdev_json_last_object_wins() -> None:
    """qobject_from_jsonv keeps the streamer's last value; an earlier error is ignored."""
    (bd,) = nd("-blockdev", '{]{"driver":"null-co"}').blockdevs
    assert bd.options == {"driver": "null-co"}


def test_blockdev_json_non_object_aborts() -> None:
    """qobject_input_visitor_new_str: assert(args) fails when the last value is no object."""
    err = error("-blockdev", '{"driver":"x"} 5')
    assert err.exit_status == 134
    assert str(err) == (
        "qapi/qobject-input-visitor.c:733: qobject_input_visitor_new_str: Assertion `args' failed."
    )


# ---------------------------------------------------------------------------
# emulator-only options


EMU = (
    EmuOption("strict", takes_value=False, help="reject what QEMU would reject later"),
    EmuOption("guest-powerdown", choices=("shutdown", "ignore"), help="what ACPI powerdown does"),
)


def test_emu_options() -> None:
    """--emu-<name>[=value]: flags, values, and values as the next argument."""
    cmd = parse("--emu-strict", "--emu-guest-powerdown=ignore", "-nodefaults", extra=EMU)
    assert cmd.emu == {"strict": "on", "guest-powerdown": "ignore"}
    assert parse("-emu-guest-powerdown", "shutdown", extra=EMU).emu == {
        "guest-powerdown": "shutdown"
    }


def test_emu_option_unknown() -> None:
    """Unknown emulator options read like vl.c lookup_opt's "invalid option"."""
    assert str(error("--emu-nope", extra=EMU)) == "--emu-nope: invalid option"


def test_emu_option_bad_choice() -> None:
    """A value outside the declared choices, worded like QERR_INVALID_PARAMETER_VALUE."""
    assert str(error("--emu-guest-powerdown=off", extra=EMU)) == (
        "--emu-guest-powerdown=off: Parameter 'emu-guest-powerdown' expects one of shutdown, ignore"
    )


def test_emu_option_missing_value() -> None:
    """A valued emulator option at the end, like vl.c lookup_opt's message."""
    assert str(error("--emu-guest-powerdown", extra=EMU)) == (
        "--emu-guest-powerdown: requires an argument"
    )


def test_emu_flag_value() -> None:
    """An emulator flag takes only on/off, like parse_option_bool."""
    assert str(error("--emu-strict=maybe", extra=EMU)) == (
        "--emu-strict=maybe: Parameter 'emu-strict' expects 'on' or 'off'"
    )


def test_version_text() -> None:
    """vl.c version(): QEMU_VERSION QEMU_PKGVERSION and QEMU_COPYRIGHT."""
    assert version_text() == (
        "QEMU emulator version 2.11.0 (v2.11.0)\n"
        "Copyright (c) 2003-2017 Fabrice Bellard and the QEMU Project developers\n"
    )
    assert action_output(parse("-version")) == (version_text(), 0)


def test_help_text() -> None:
    """vl.c help(): version, usage, headings (2.11.0's stray ':' lines), options."""
    cmd = parse("-h", "-m", "x")
    assert cmd.action is Action.HELP
    text, status = action_output(cmd, "qemu-kvm", EMU) or ("", 1)
    assert status == 0
    assert text.startswith(version_text() + "usage: qemu-kvm [options] [disk_image]\n\n")
    assert "\n:\nBlock device options:\n" in text
    assert "\n-qmp dev        QMP monitor on character device 'dev'\n" in text
    assert "\n--emu-strict    reject what QEMU would reject later\n" in text
    assert "-g WxH" not in text and "-prom-env" not in text
    assert text.endswith("More information on the QEMU project at <https://qemu.org>.\n")
    assert action_output(parse("-help")) == (help_text(), 0)


def test_help_lists_every_option_with_help() -> None:
    """Every x86_64 option that QEMU documents appears in the help text."""
    text = help_text()
    for opt in OPTIONS.values():
        if opt.help and opt.target:
            assert opt.help in text


def test_log_usage() -> None:
    """util/log.c qemu_str_to_log_mask fails: vl.c prints the items, exit(1)."""
    cmd = parse("-nodefaults", "-d", "int,nonsense")
    assert cmd.action is Action.LOG_USAGE
    text, status = action_output(cmd) or ("", 0)
    assert status == 1 and text.startswith("Log items (comma separated):\nout_asm")
    assert nd("-d", "int,trace:virtio*").action is Action.RUN


# ---------------------------------------------------------------------------
# whole command lines


LIBVIRT = (
    "-name guest=vm1,debug-threads=on -S "
    "-object secret,id=masterKey0,format=raw,file=/var/lib/libvirt/qemu/domain-1-vm1/master-key.aes "
    "-machine pc-i440fx-2.11,accel=kvm,usb=off,dump-guest-core=off -cpu host -m 1024 "
    "-realtime mlock=off -smp 1,sockets=1,cores=1,threads=1 "
    "-uuid 0f6c1a2e-5b3d-4c7e-9a8b-1c2d3e4f5a6b -no-user-config -nodefaults "
    "-chardev socket,id=charmonitor,path=/var/lib/libvirt/qemu/domain-1-vm1/monitor.sock,server,nowait "
    "-mon chardev=charmonitor,id=monitor,mode=control -rtc base=utc -no-shutdown -boot strict=on "
    "-device piix3-usb-uhci,id=usb,bus=pci.0,addr=0x1.0x2 "
    "-drive file=/var/lib/libvirt/images/vm1.qcow2,format=qcow2,if=none,id=drive-virtio-disk0 "
    "-device virtio-blk-pci,scsi=off,bus=pci.0,addr=0x3,drive=drive-virtio-disk0,id=virtio-disk0,bootindex=1 "
    "-netdev tap,fd=26,id=hostnet0 "
    "-device virtio-net-pci,netdev=hostnet0,id=net0,mac=52:54:00:11:22:33,bus=pci.0,addr=0x2 "
    "-chardev pty,id=charserial0 -device isa-serial,chardev=charserial0,id=serial0 "
    "-vnc 127.0.0.1:0 -device cirrus-vga,id=video0,bus=pci.0,addr=0x4 "
    "-device virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x5 "
    "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny "
    "-msg timestamp=on"
)


def test_libvirt_command_line() -> None:
    """A command line as libvirt 4.x generates it for QEMU 2.11 parses completely."""
    cmd = parse_command_line(LIBVIRT.split())
    assert cmd.action is Action.RUN and cmd.warnings == ()
    assert (cmd.name, cmd.debug_threads, cmd.autostart) == ("vm1", True, False)
    assert (cmd.machine_type, cmd.accelerators, cmd.cpu_model) == (
        "pc-i440fx-2.11",
        ("kvm",),
        "host",
    )
    assert cmd.memory.ram_size == 1 << 30 and cmd.smp.cpus == 1 and not cmd.mem_lock
    assert cmd.uuid == "0f6c1a2e-5b3d-4c7e-9a8b-1c2d3e4f5a6b"
    assert cmd.no_user_config and cmd.nodefaults and cmd.no_shutdown and cmd.boot.strict
    assert [(m.id, m.chardev, m.mode) for m in cmd.monitors] == [
        ("monitor", "charmonitor", "control")
    ]
    assert [c.id for c in cmd.chardevs] == ["charmonitor", "charserial0"]
    assert [d.id for d in cmd.devices] == [
        "usb",
        "virtio-disk0",
        "net0",
        "serial0",
        "video0",
        "balloon0",
    ]
    assert cmd.drives[0].id == "drive-virtio-disk0" and cmd.netdevs[0].get("fd") == "26"
    assert cmd.objects[0].id == "masterKey0" and cmd.vnc[0].get("vnc") == "127.0.0.1:0"
    assert cmd.sandbox.enable and cmd.msg_timestamp and cmd.rtc.base == "utc"
    assert not (cmd.serials or cmd.nets) and cmd.options[0].name == "name"


#: A plausible argument for each option of the table (None: takes none).
SAMPLE_ARGS: dict[str, str | None] = {
    "machine": "pc", "M": "pc", "cpu": "qemu64", "accel": "tcg", "smp": "2", "numa": "node",
    "add-fd": "fd=3,set=1", "set": "machine.x.y=z", "global": "e1000.mac=x", "boot": "c",
    "m": "256", "mem-path": "/hp", "k": "en-us", "soundhw": "ac97", "balloon": "virtio",
    "device": "e1000", "name": "vm", "uuid": "0f6c1a2e-5b3d-4c7e-9a8b-1c2d3e4f5a6b",
    "fda": "f.img", "fdb": "f.img", "hda": "h.img", "hdb": "h.img", "hdc": "h.img", "hdd": "h.img",
    "cdrom": "c.iso", "blockdev": "null-co,node-name=n", "drive": "if=none", "mtdblock": "m.img",
    "sd": "s.img", "pflash": "p.img", "hdachs": "100,16,63", "fsdev": "local,id=f,path=/x",
    "virtfs": "local,path=/x,mount_tag=t", "usbdevice": "tablet", "display": "none",
    "spice": "port=5900", "rotate": "90", "vga": "std", "vnc": ":0", "acpitable": "file=/t",
    "smbios": "type=1", "tftp": "/t", "bootp": "/b", "redir": "tcp:1::2", "smb": "/s",
    "netdev": "user,id=n", "net": "nic", "chardev": "null,id=c2", "iscsi": "user=u", "bt": "hci",
    "tpmdev": "passthrough,id=t", "kernel": "k", "append": "a", "initrd": "i", "dtb": "d",
    "fw_cfg": "opt/x,string=y", "serial": "null", "parallel": "null", "monitor": "null",
    "qmp": "null", "qmp-pretty": "null", "mon": "c", "debugcon": "null", "pidfile": "/p",
    "realtime": "mlock=off", "gdb": "tcp::1234", "d": "int", "D": "/l", "dfilter": "0x0..0x100",
    "L": "/fw", "bios": "b", "loadvm": "s", "option-rom": "r.rom", "clock": "x",
    "startdate": "now", "rtc": "base=utc", "icount": "auto", "watchdog": "ib700",
    "watchdog-action": "none", "echr": "0x14", "virtioconsole": "null", "tb-size": "64",
    "incoming": "defer", "chroot": "/c", "runas": "nobody", "sandbox": "off",
    "readconfig": "/r", "writeconfig": "/w", "trace": "enable=x", "qtest": "null",
    "qtest-log": "/q", "msg": "timestamp=on", "dump-vmstate": "/v", "object": "secret,id=s,data=x",
}  # fmt: skip


@pytest.mark.parametrize(
    "name", sorted(n for n, o in OPTIONS.items() if o.target and not n.startswith("xen"))
)
def test_every_option_is_accepted(name: str) -> None:
    """Every x86_64 option of qemu-options.hx is recognised and kept in order."""
    opt = OPTIONS[name]
    arg = SAMPLE_ARGS.get(name)
    assert (arg is not None) == opt.has_arg, name
    argv = ["-chardev", "null,id=c", "-nodefaults", f"-{name}"] + ([arg] if arg is not None else [])
    if name in ("initrd", "append"):
        argv += ["-kernel", "k"]
    if name == "set":
        argv = ["-machine", "pc,id=x", *argv]
    cmd = parse_command_line(argv)
    assert name in [o.name for o in cmd.options]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [*sorted(OPTIONS), "overcommit", "emu-strict", "emu-guest-powerdown"]
            ).map(lambda n: "-" + n),
            st.text(
                alphabet=st.sampled_from(list("abc01=,.:{}[]\"'-_ xmkKGnoidevlu@/\\")), max_size=24
            ),
            st.text(max_size=8),
        ),
        max_size=12,
    )
)
def test_only_command_line_errors_escape(argv: list[str]) -> None:
    """parse_command_line raises nothing but CommandLineError, whatever argv is."""
    try:
        parse_command_line(argv, extra_options=EMU)
    except CommandLineError as err:
        assert isinstance(err.render(PROG), str)
