"""HMP commands of the machine core (hmp.c, monitor.c): their texts and effects.

Each test names the QEMU 2.11 function whose output it pins. A command whose
subsystem is not modelled answers its QMP command's "not implemented" GenericError
through hmp_handle_error (or, without a QMP command, the same text naming itself).
"""

from __future__ import annotations

import array
import os
import socket

import pytest
import trio

from tests import emulator
from tests.test_hmp_help import hmp
from vmm.qmp.dispatch import not_implemented


def test_identity(vm_factory) -> None:
    """hmp.c hmp_info_version, hmp_info_name, hmp_info_uuid, hmp_info_kvm."""
    vm = vm_factory(name="guest1", uuid="AB9F6A32-0000-4000-8000-000000000001")
    assert hmp(vm, "info version") == "2.11.0 (v2.11.0)\r\n"
    assert hmp(vm, "info name") == "guest1\r\n"
    assert hmp(vm, "info uuid") == "ab9f6a32-0000-4000-8000-000000000001\r\n"
    assert hmp(vm, "info kvm") == "kvm support: disabled\r\n"
    assert hmp(vm_factory(), "info name") == ""


def test_info_status_and_singlestep(vm_factory) -> None:
    """hmp.c hmp_info_status; monitor.c hmp_singlestep sets what query-status
    reports (`singlestep`)."""
    vm = vm_factory()
    assert hmp(vm, "info status") == "VM status: running\r\n"
    assert hmp(vm, "singlestep") == ""
    assert hmp(vm, "info status") == "VM status: running (single step mode)\r\n"
    assert hmp(vm, "singlestep sometimes") == "unexpected option sometimes\r\n"
    assert hmp(vm, "singlestep off") == ""
    assert hmp(vm, "stop") == ""
    assert hmp(vm, "info status") == "VM status: paused\r\n"
    assert hmp(vm_factory(start_paused=True), "info status") == (
        "VM status: paused (prelaunch)\r\n")


def test_run_state_commands(vm_factory) -> None:
    """hmp.c hmp_stop, hmp_cont (its error through hmp_handle_error), hmp_nmi."""
    vm = vm_factory()
    talk = vm.talk()
    assert talk.execute("human-monitor-command", {"command-line": "stop"}) == {"return": ""}
    assert talk.execute("human-monitor-command", {"command-line": "c"}) == {"return": ""}
    assert hmp(vm, "nmi") == ""
    none = vm_factory(machine_type="none")
    assert hmp(none, "nmi") == "this feature or command is not currently supported\r\n"


def test_trace_events(vm_factory) -> None:
    """monitor.c hmp_info_trace_events (`NAME : state N`) and hmp_trace_event, with
    qmp_trace_event_set_state's errors."""
    vm = vm_factory()
    assert hmp(vm, "info trace-events handle_qmp_command") == (
        "handle_qmp_command : state 0\r\n")
    assert hmp(vm, "trace-event handle_qmp_command on") == ""
    assert hmp(vm, "info trace-events handle_*_command") == (
        "handle_qmp_command : state 1\r\nhandle_hmp_command : state 0\r\n")
    assert hmp(vm, "trace-event nosuch on") == 'unknown event "nosuch"\r\n'
    assert hmp(vm, "info trace-events x 0x80000000") == "argument vcpu must be positive"
    assert hmp(vm, "trace-event x on 0x80000000") == "argument vcpu must be positive"
    assert hmp(vm, "info trace-events nosuch") == 'unknown event "nosuch"\r\n'
    assert len(hmp(vm, "info trace-events").split("\r\n")) == 2138 + 1


def test_log(vm_factory) -> None:
    """monitor.c hmp_log -> qemu_str_to_log_mask: an unknown item prints the log
    items (help_cmd "log"); `trace:` enables trace events as it goes."""
    vm = vm_factory()
    assert hmp(vm, "log none") == ""
    assert hmp(vm, "log in_asm,int") == ""
    assert hmp(vm, "log all") == ""
    assert hmp(vm, "log bogus") == hmp(vm, "help log")
    assert hmp(vm, "log trace:handle_hmp_command") == ""
    assert hmp(vm, "info trace-events handle_hmp_command") == (
        "handle_hmp_command : state 1\r\n")
    assert hmp(vm, "log trace:-handle_hmp_command") == ""
    assert hmp(vm, "info trace-events handle_hmp_command") == (
        "handle_hmp_command : state 0\r\n")
    assert hmp(vm, "log trace:nosuch") == "WARNING: trace event 'nosuch' does not exist\r\n"


def test_logfile_format(vm_factory) -> None:
    """util/log.c qemu_set_log_filename: `%d` once, nothing else after a `%`."""
    vm = vm_factory()
    assert hmp(vm, "logfile qemu-%s.log") == "Bad logfile format: qemu-%s.log\r\n"
    assert hmp(vm, "logfile q-%d-%d") == "Bad logfile format: q-%d-%d\r\n"
    assert hmp(vm, "logfile q-%d") == not_implemented("logfile") + "\r\n"


def test_watchdog_action(vm_factory) -> None:
    """monitor.c hmp_watchdog_action -> select_watchdog_action (case-insensitive)."""
    vm = vm_factory()
    assert hmp(vm, "watchdog_action PAUSE") == ""
    assert vm.machine.watchdog_action == "pause"
    assert hmp(vm, "watchdog_action explode") == "Unknown watchdog action 'explode'\r\n"


def test_cpu_and_cpu_less_machines(vm_cmdline) -> None:
    """hmp.c hmp_cpu (qemu_get_cpu); monitor.c hmp_info_registers / cpustats and
    gdbstub.c gdbserver_start without a CPU."""
    pc = vm_cmdline("-machine", "pc", "-smp", "2", "-S")
    assert hmp(pc, "cpu 1") == ""
    assert hmp(pc, "cpu 2") == "invalid CPU index\r\n"
    assert hmp(pc, "gdbserver none") == "Disabled gdbserver\r\n"
    assert hmp(pc, "info cpustats") == ""
    none = vm_cmdline("-machine", "none", "-S")
    assert hmp(none, "cpu 0") == "invalid CPU index\r\n"
    assert hmp(none, "info registers") == "No CPU available\r\n"
    assert hmp(none, "info registers -a") == ""
    assert hmp(none, "info cpustats") == "No CPU available\r\n"
    assert hmp(none, "gdbserver") == (
        "gdbstub: meaningless to attach gdb to a machine without any CPU.\r\n"
        "Could not open gdbserver on device 'tcp::1234'\r\n")


def test_boot_set(vm_cmdline) -> None:
    """monitor.c hmp_boot_set -> qemu_boot_set: validate_bootdevices, then the PC's
    set_boot_dev; `-machine none` registers no handler."""
    pc = vm_cmdline("-machine", "pc", "-S")
    assert hmp(pc, "boot_set dc") == "boot device list now set to dc\r\n"
    assert hmp(pc, "boot_set z") == "Invalid boot device 'z'\r\n"
    assert hmp(pc, "boot_set cc") == "Boot device 'c' was given twice\r\n"
    assert hmp(pc, "boot_set abcd") == "Too many boot devices for PC\r\n"
    assert hmp(pc, "boot_set e") == "Invalid boot device for PC: 'e'\r\n"
    none = vm_cmdline("-machine", "none", "-S")
    assert hmp(none, "boot_set c") == (
        "no function defined to set boot device list for this architecture\r\n")


def test_small_infos(vm_factory) -> None:
    """hmp.c hmp_info_iothreads, hmp_info_vm_generation_id (and its error),
    monitor.c hmp_info_profile without CONFIG_PROFILER, hmp_info_vnc without a
    display, hmp_info_capture and stopcapture with no capture, hmp_qom_list without a
    path, the acl commands without a VNC acl."""
    vm = vm_factory(iothreads=(("io0", 32768, 0, 0),), pid=4242,
                    vmgenid_guid="324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb87")
    assert hmp(vm, "info iothreads") == (
        "io0:\r\n  thread_id=4242\r\n  poll-max-ns=32768\r\n  poll-grow=0\r\n"
        "  poll-shrink=0\r\n")
    assert hmp(vm, "info vm-generation-id") == "324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb87\r\n"
    assert hmp(vm_factory(), "info vm-generation-id") == "VM Generation ID device not found\r\n"
    assert hmp(vm, "info profile") == "Internal profiler not compiled\r\n"
    assert hmp(vm, "info vnc") == "None\r\n"
    assert hmp(vm, "info capture") == ""
    assert hmp(vm, "stopcapture 0") == ""
    assert hmp(vm, "qom-list") == "/\r\n"
    assert hmp(vm, "acl_show vnc.username") == "acl: unknown list 'vnc.username'\r\n"
    assert hmp(vm, "acl_add vnc.x fred allow 1") == "acl: unknown list 'vnc.x'\r\n"
    assert hmp(vm, "mouse_button 0") == ""


def test_argument_checks_before_the_qmp_command(vm_factory) -> None:
    """What hmp.c checks itself comes before the QMP command's (here: not
    implemented) answer: hmp_sendkey's key names, qapi_enum_parse of
    hmp_migrate_set_capability/_parameter/_continue, hmp_dump_guest_memory's formats,
    hmp_nbd_server_start's -w, hmp_chardev_add's options."""
    vm = vm_factory()
    assert hmp(vm, "sendkey ctrl-alt-bogus") == "invalid parameter: bogus\r\n"
    assert hmp(vm, "sendkey 0x1g") == "invalid parameter: 0x1g\r\n"
    assert hmp(vm, "sendkey ctrl-alt-f1") == ""  # ui/input-legacy.c qmp_send_key
    assert hmp(vm, "migrate_set_capability bogus on") == (
        "invalid parameter value: bogus\r\n")
    assert hmp(vm, "migrate_set_capability xbzrle on") == ""
    assert hmp(vm, "migrate_set_parameter bogus 1") == "invalid parameter value: bogus\r\n"
    assert hmp(vm, "migrate_continue bogus") == "invalid parameter value: bogus\r\n"
    assert hmp(vm, "dump-guest-memory -z -l f") == "only one of '-z|-l|-s' can be set\r\n"
    assert hmp(vm, "nbd_server_start -w localhost:10809") == (
        "-w only valid together with -a\r\n")
    assert hmp(vm, "chardev-add socket,id=c,bogus=1") == (
        "Invalid parameter 'bogus'\r\nParsing chardev args failed\r\n")


@pytest.mark.parametrize(("line", "text"), [
    ("info block-jobs", "No active jobs\r\n"),
    ("block_job_pause d", "Block job 'd' not found\r\n"),
])
def test_block_job_commands_without_jobs(vm_factory, line: str, text: str) -> None:
    """hmp.c hmp_info_block_jobs and hmp_block_job_pause with no job: the QMP
    command's error, printed as hmp_handle_error prints any error."""
    assert hmp(vm_factory(), line) == text


@pytest.mark.parametrize(("line", "name"), [
    ("info mtree", "info mtree"), ("info registers", "info registers"),
    ("wavcapture /tmp/a.wav", "wavcapture"), ("gdbserver tcp::1234", "gdbserver"),
    ("logfile /tmp/log", "logfile"), ("p $eax", "$eax"),
])
def test_hmp_only_commands_of_missing_subsystems(vm_factory, line: str, name: str) -> None:
    """Without a QMP command: the same text, naming the HMP command."""
    assert hmp(vm_factory(), line) == not_implemented(name) + "\r\n"


def test_getfd_over_qmp_has_no_descriptor(vm_factory) -> None:
    """qmp_human_monitor_command's monitor has no chardev, so qmp_getfd finds no
    descriptor (monitor.c)."""
    vm = vm_factory()
    assert hmp(vm, "getfd x") == "No file descriptor supplied via SCM_RIGHTS\r\n"
    assert hmp(vm, "closefd x") == "File descriptor named 'x' not found\r\n"


def _typed(mon, text: str, fds: list[int] | None = None) -> str:
    """What a readline monitor writes back for `text` (echo and output)."""
    mon.feed(text.encode(), fds)
    return mon.take_output().decode()


def test_getfd_on_a_readline_monitor(vm_factory) -> None:
    """monitor.c qmp_getfd on a -monitor chardev: the descriptor that came with the
    line (SCM_RIGHTS) is named; the others of that message are closed
    (char-socket.c tcp_get_msgfds); closefd closes it."""
    vm = vm_factory()
    mon = vm.vm.hmp_monitor()
    mon.connect()
    mon.take_output()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        out = _typed(mon, "getfd myfd\r", fds=[r1, r2])
        assert out.endswith("\r\n(qemu) ")
        assert "No file descriptor" not in out
        assert mon.hmp.session.fds.named == {"myfd": r1}
        with pytest.raises(OSError):
            os.fstat(r2)  # closed with the message's other descriptors
        out = _typed(mon, "getfd again\r")
        assert "No file descriptor supplied via SCM_RIGHTS\r\n" in out
        out = _typed(mon, "closefd myfd\r")
        assert out.endswith("\r\n(qemu) ") and "not found" not in out
        with pytest.raises(OSError):
            os.fstat(r1)
        assert "File descriptor named 'myfd' not found\r\n" in _typed(mon, "closefd myfd\r")
    finally:
        for fd in (w1, w2):
            os.close(fd)


def test_info_history(vm_factory) -> None:
    """monitor.c hmp_info_history: this monitor's readline history, the command
    itself included (readline adds a line before running it); none over QMP."""
    vm = vm_factory()
    mon = vm.vm.hmp_monitor()
    mon.connect()
    _typed(mon, "info name\r")
    _typed(mon, "stop\r")
    _typed(mon, "info name\r")
    out = _typed(mon, "info history\r")
    assert out.endswith("0: 'stop'\r\n1: 'info name'\r\n2: 'info history'\r\n(qemu) ")
    assert hmp(vm, "info history") == ""


def test_change_vnc_password_prompts_on_a_terminal(vm_factory) -> None:
    """hmp.c hmp_change -> monitor_read_password: on a readline monitor the next line
    is the password (echoed as stars, kept out of the history), then the prompt is
    back; human-monitor-command's monitor cannot prompt."""
    vm = vm_factory()
    assert hmp(vm, "change vnc password") == "terminal does not support password prompting\r\n"
    assert hmp(vm, "change vnc password x y z") == (
        "change: extraneous characters at the end of line\r\n"
        'Try "help change" for more information\r\n')
    assert hmp(vm, "change vnc :1 x read-only") == (
        "Parameter 'read-only-mode' is invalid for VNC\r\n")
    mon = vm.vm.hmp_monitor()
    mon.connect()
    mon.take_output()
    assert _typed(mon, "change vnc password\r").endswith("\r\nPassword: ")
    assert _typed(mon, "ab") == "*\x1b[K\x1b[D**\x1b[K"
    assert _typed(mon, "\r") == "\r\n(qemu) "
    assert "ab" not in _typed(mon, "info history\r")


async def test_getfd_over_a_monitor_socket(schema, catalog, tmp_path, nursery,
                                           mock_clock) -> None:
    """The same through the server: a -monitor on a unix socket receives the
    descriptor sent (SCM_RIGHTS) with `getfd`'s line; the number it holds is this
    process's, and closefd closes it."""
    vm = emulator.build_vm(schema, catalog, emulator.mock_clock())
    vm.machine.start()
    path = tmp_path / "hmp.sock"
    await emulator.serve(nursery, vm, [emulator.unix_monitor(path, mode="readline")])
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(str(path))

    async def until_prompt() -> bytes:
        out = b""
        while not out.endswith(b"(qemu) "):
            out += await sock.recv(65536)
        return out

    await until_prompt()
    r, w = os.pipe()
    try:
        await sock.sendmsg([b"getfd passed\r"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                  array.array("i", [r]))])
        assert b"No file descriptor" not in await until_prompt()
        (held,) = [m.hmp.session.fds.named["passed"] for m in vm.hub.monitors]
        os.write(w, b"x")
        assert os.read(held, 1) == b"x"  # the emulator holds a copy of our read end
        await sock.send(b"closefd passed\r")
        assert b"not found" not in await until_prompt()
        with pytest.raises(OSError):
            os.fstat(held)
    finally:
        os.close(r)
        os.close(w)
        sock.close()
