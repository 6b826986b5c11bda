"""From QEMU's command line to machine options and monitors (vmm/config.py).

Pins what vl.c decides after parsing: the machine type (machine_parse), the CPU
model check (cpu_parse_cpu_model), the monitors each -qmp/-mon/-monitor creates and
the chardev each sits on, and the emulator's own --emu-* options.
"""

from __future__ import annotations

import pytest

from devices.chardev.model import ChardevSpec
from vmm.cmdline import CommandLineError, parse_command_line
from vmm.config import EMU_OPTIONS, ConfigError, build_config


def config(*argv: str, catalog=None):
    from schema.catalog import Catalog

    return build_config(parse_command_line(list(argv), extra_options=EMU_OPTIONS),
                        catalog or Catalog.load())


def test_machine_alias_resolves_to_its_versioned_type(catalog) -> None:
    """vl.c find_machine: `pc` is the alias of pc-i440fx-2.11, `q35` of pc-q35-2.11."""
    assert config("-machine", "pc", catalog=catalog).options.machine_type == "pc-i440fx-2.11"
    assert config("-M", "q35", catalog=catalog).options.machine_type == "pc-q35-2.11"
    assert config(catalog=catalog).options.machine_type == "pc-i440fx-2.11"  # the default


def test_unsupported_machine_type(catalog) -> None:
    """vl.c machine_parse: `unsupported machine type` at the -machine option's location,
    then the hint line."""
    with pytest.raises(CommandLineError) as info:
        config("-machine", "foo", catalog=catalog)
    assert info.value.render("qemu-system-x86_64") == (
        "qemu-system-x86_64: -machine foo: unsupported machine type\n"
        "Use -machine help to list supported machines\n")


def test_unknown_cpu_model(catalog) -> None:
    """target/i386 via cpu_parse_cpu_model: `unable to find CPU model 'X'`."""
    with pytest.raises(CommandLineError) as info:
        config("-cpu", "Bogus,+vmx", catalog=catalog)
    assert info.value.render("qemu-system-x86_64") == (
        "qemu-system-x86_64: unable to find CPU model 'Bogus'\n")
    assert config("-cpu", "Skylake-Client,+vmx", catalog=catalog).options.cpu_model == \
        "Skylake-Client,+vmx"


def test_monitors_and_their_chardevs(catalog) -> None:
    """-qmp unix:...,server,nowait -> a control monitor on a listening socket; -monitor
    -> readline; -mon chardev=X,mode=control,pretty=on on an explicit chardev; QEMU's
    default wait=on for server sockets."""
    cfg = config("-nodefaults",
                 "-qmp", "unix:/tmp/a.sock,server,nowait",
                 "-monitor", "tcp:127.0.0.1:4444,server,nowait",
                 "-chardev", "socket,id=c,path=/tmp/c.sock,server",
                 "-mon", "chardev=c,mode=control,pretty=on", catalog=catalog)
    assert [(m.mode, m.pretty) for m in cfg.monitors] == [
        ("control", False), ("readline", False), ("control", True)]
    a, b, c = (m.chardev for m in cfg.monitors)
    assert (a.path, a.server, a.wait) == ("/tmp/a.sock", True, False)
    assert (b.host, b.port, b.server, b.wait) == ("127.0.0.1", "4444", True, False)
    assert c == ChardevSpec(id="c", backend="socket", path="/tmp/c.sock", server=True, wait=True)


def test_machine_options_follow_the_command_line(catalog) -> None:
    """-S, -name, -uuid, -m, -smp, -enable-kvm, -no-shutdown, -no-reboot, -incoming,
    -watchdog-action feed the machine."""
    cfg = config("-S", "-name", "guest=vm1,debug-threads=on", "-uuid",
                 "c7a5fdbd-cdaf-9455-926a-d65c16db1809", "-m", "1G", "-smp", "2",
                 "-enable-kvm", "-no-shutdown", "-no-reboot", "-incoming", "defer",
                 "-watchdog-action", "pause", catalog=catalog)
    o = cfg.options
    assert (o.start_paused, o.name, o.uuid, o.ram_bytes, o.smp_cpus, o.accel) == (
        True, "vm1", "c7a5fdbd-cdaf-9455-926a-d65c16db1809", 1 << 30, 2, "kvm")
    assert (o.no_shutdown, o.no_reboot, o.incoming, o.watchdog_action) == (
        True, True, "defer", "pause")


def test_emulator_options(catalog) -> None:
    """The --emu-* options QEMU does not have."""
    cfg = config("--emu-persona=2.11.0", "--emu-strict", "--emu-glib=2.74",
                 "--emu-guest-powerdown=ignore", "--emu-guest-powerdown-delay", "2.5",
                 "--emu-package=", catalog=catalog)
    o = cfg.options
    assert cfg.persona == "2.11.0"
    assert (o.strict, o.new_glib, o.guest_profile, o.package) == (True, True, "os", "")
    assert o.behaviours == (("powerdown", "ignore"), ("powerdown-delay", 2.5))
    with pytest.raises(ConfigError, match=r"^--emu-guest-powerdown-delay: expects a "
                                          r"non-negative number of seconds$"):
        config("--emu-guest-powerdown-delay=soon", catalog=catalog)


def test_guest_profile_and_behaviours(catalog) -> None:
    """--emu-guest picks the profile; --emu-behaviour=NAME=VALUE (repeatable) and the
    older --emu-guest-powerdown* options override behaviours in command-line order."""
    cfg = config("--emu-guest=firmware", "--emu-behaviour=powerdown=shutdown",
                 "--emu-guest-powerdown-delay=1", "--emu-behaviour", "powerdown-delay=2",
                 "--emu-behaviour=firmware-reboot=off", catalog=catalog)
    o = cfg.options
    assert o.guest_profile == "firmware"
    assert o.behaviours == (("powerdown", "shutdown"), ("powerdown-delay", 1.0),
                            ("powerdown-delay", 2.0), ("firmware-reboot", False))


@pytest.mark.parametrize(("arg", "message"), [
    ("--emu-behaviour=powerdown", "--emu-behaviour: expects NAME=VALUE"),
    ("--emu-behaviour=nosuch=1", "--emu-behaviour: unknown behaviour 'nosuch' (known: "
                                 "balloon-rate, balloon-stats, block-job-bandwidth, "
                                 "cdrom-eject-delay, cdrom-eject-request, cpu-hotplug, "
                                 "cpu-ost, cpu-ost-delay, device-unplug, "
                                 "device-unplug-delay, "
                                 "firmware-reboot, firmware-reboot-delay, guest-agent, "
                                 "guest-workload, guest-workload-pattern, "
                                 "guest-workload-rate, guest-workload-request, memory-ost, "
                                 "memory-ost-delay, migration-dirty-rate, migration-ram-used, "
                                 "nic-driver, nmi, panic, panic-delay, powerdown, "
                                 "powerdown-delay, serial-console, watchdog, "
                                 "watchdog-timeout)"),
    ("--emu-behaviour=powerdown=later", "--emu-behaviour: powerdown: expects one of "
                                        "shutdown, ignore"),
    ("--emu-behaviour=powerdown-delay=-1", "--emu-behaviour: powerdown-delay: expects a "
                                           "non-negative number of seconds"),
    ("--emu-behaviour=firmware-reboot=yes", "--emu-behaviour: firmware-reboot: expects "
                                            "'on' or 'off'"),
])
def test_bad_behaviours_are_refused(catalog, arg: str, message: str) -> None:
    """Each refusal names the option and what the behaviour expects."""
    with pytest.raises(ConfigError) as refused:
        config(arg, catalog=catalog)
    assert str(refused.value) == message


def test_unknown_guest_profile_is_refused(catalog) -> None:
    """--emu-guest takes os or firmware only."""
    with pytest.raises(CommandLineError):
        config("--emu-guest=linux", catalog=catalog)


def test_stdio_monitor_cannot_be_daemonized(catalog) -> None:
    """chardev/char-stdio.c: `cannot use stdio with -daemonize`."""
    with pytest.raises(ConfigError, match=r"^cannot use stdio with -daemonize$"):
        config("-daemonize", "-qmp", "stdio", catalog=catalog)


@pytest.mark.parametrize(("props", "message"), [
    ("poll-max-ns=x", "Parameter 'poll-max-ns' expects an int64 value"),
    ("poll-shrink=1_000", "Parameter 'poll-shrink' expects an int64 value"),
    ("poll-grow=0o17", "Parameter 'poll-grow' expects an int64 value"),
    ("poll-grow=9223372036854775808", "Parameter 'poll-grow' expects an int64 value"),
    ("poll-grow=-1", "poll-grow value must be in range [0, 9223372036854775807]"),
])
def test_iothread_property_errors(catalog, props: str, message: str) -> None:
    """-object goes through the OptsVisitor (qapi/opts-visitor.c opts_type_int64:
    strtoll base 0 over the whole value, outside a list `an int64 value`), then
    iothread.c iothread_set_poll_param's range check; QEMU reports either at the
    -object option (user_creatable_add_opts_foreach)."""
    arg = f"iothread,id=io1,{props}"
    with pytest.raises(CommandLineError) as info:
        config("-object", arg, catalog=catalog)
    assert info.value.render("qemu-system-x86_64") == \
        f"qemu-system-x86_64: -object {arg}: {message}\n"


def test_iothread_numbers_in_c_syntax(catalog) -> None:
    """opts_type_int64 reads numbers as strtoll with base 0: hex and octal prefixes."""
    cfg = config("-object", "iothread,id=io1,poll-max-ns=0x10,poll-grow=010", catalog=catalog)
    assert cfg.options.iothreads == (("io1", 16, 8, 0),)


def test_iothreads_from_object_options(vm_factory, catalog) -> None:
    """iothread.c: -object iothread,id=X[,poll-max-ns=..] is listed by query-iothreads
    in creation order, with IOTHREAD_POLL_MAX_NS_DEFAULT (32768) when not given."""
    cfg = config("-object", "iothread,id=io1", "-object", "iothread,id=io2,poll-max-ns=100,"
                 "poll-grow=2,poll-shrink=3", catalog=catalog)
    vm = vm_factory(iothreads=cfg.options.iothreads, pid=cfg.options.pid)
    reply = vm.talk().execute("query-iothreads")["return"]
    assert reply == [
        {"id": "io1", "thread-id": cfg.options.pid, "poll-max-ns": 32768, "poll-grow": 0,
         "poll-shrink": 0},
        {"id": "io2", "thread-id": cfg.options.pid, "poll-max-ns": 100, "poll-grow": 2,
         "poll-shrink": 3}]
