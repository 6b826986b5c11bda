"""The qtest protocol of `-qtest`, through the pure frontend (`vmm.qtest.Qtest`).

Every expectation is QEMU 2.11.0's qtest.c: qtest_process_command (the commands, their
replies and their g_assert()s, cited by the line of qtest.c the message names),
qtest_process_inbuf (lines and words), qtest_event and the qtest_log_* functions
(the log); cpus.c qtest_clock_warp and qemu-timer.c qemu_clock_deadline_ns_all (the
virtual clock under `-machine accel=qtest`); vl.c main_loop_should_exit (requests a
command makes are carried out after the replies of the batch).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from devices.chardev.model import ChardevSpec
from vmm.cmdline import CommandLineError, parse_command_line
from vmm.config import QtestSpec, qtest_config
from vmm.qtest import Qtest, glib_base64_decode, resolve_path

SECOND = 1_000_000_000
QTEST = ("-machine", "pc,accel=qtest")


class Client:
    """One qtest client on a VmHarness, with the log and stderr captured."""

    def __init__(self, harness: Any, *, log: bool = True) -> None:
        self.harness = harness
        self.log = bytearray()
        self.stderr: list[str] = []
        self.qtest: Qtest = harness.vm.qtest(log=self.log.extend if log else None,
                                             stderr=self.stderr.append)
        self.qtest.connect()

    def send(self, data: bytes | str) -> bytes:
        self.qtest.feed(data.encode() if isinstance(data, str) else data)
        return self.qtest.take_output()

    def ask(self, line: str) -> str:
        return self.send(line + "\n").decode()


@pytest.fixture
def qtest(vm_cmdline):
    def make(*argv: str, log: bool = True) -> Client:
        return Client(vm_cmdline(*(argv or QTEST)), log=log)

    return make


# -- the commands ---------------------------------------------------------------------------


def test_endianness(qtest) -> None:
    """x86_64 is not TARGET_WORDS_BIGENDIAN."""
    assert qtest().ask("endianness") == "OK little\n"


def test_port_io(qtest) -> None:
    """outb/outw/outl write, inb/inw/inl read and answer "OK 0x%04x"; an unassigned
    port reads all ones of the access size."""
    c = qtest()
    assert c.ask("inb 0x80") == "OK 0x00ff\n"
    assert c.ask("inw 0x80") == "OK 0xffff\n"
    assert c.ask("inl 0x80") == "OK 0xffffffff\n"
    assert c.ask("inb 0x64") == "OK 0x0018\n"  # the keyboard controller after reset
    assert c.ask("outb 0x92 0x2") == "OK\n"
    assert c.ask("inb 0x92") == "OK 0x0002\n"
    assert c.ask("outw 0x604 0x0001") == "OK\n"
    assert c.ask("inw 0x604") == "OK 0x0001\n"
    assert c.ask("outl 0x604 0xffff0000") == "OK\n"  # cut at the region: 0x0000
    assert c.ask("inw 0x604") == "OK 0x0000\n"
    assert c.ask("outb 0x92 0x1fe") == "OK\n"  # cpu_outb takes a uint8_t
    assert c.ask("inb 0x92") == "OK 0x00fe\n"


def test_memory_words(qtest) -> None:
    """writeb/w/l/q store little-endian (tswap on a little-endian target is nothing),
    readb/w/l/q answer "OK 0x%016" PRIx64; values are truncated to the size."""
    c = qtest()
    assert c.ask("writeq 0x1000 0x0102030405060708") == "OK\n"
    assert c.ask("readb 0x1000") == "OK 0x0000000000000008\n"
    assert c.ask("readw 0x1000") == "OK 0x0000000000000708\n"
    assert c.ask("readl 0x1004") == "OK 0x0000000001020304\n"
    assert c.ask("writew 0x1000 0x12345") == "OK\n"
    assert c.ask("readq 0x1000") == "OK 0x0102030405062345\n"
    assert c.ask("writel 0x2000 -1") == "OK\n"  # strtoull negates: 2^64 - 1
    assert c.ask("readq 0x2000") == "OK 0x00000000ffffffff\n"
    assert c.ask("readq 0xfffffffffffffff0") == "OK 0x0000000000000000\n"  # unassigned


def test_read_and_write(qtest) -> None:
    """read answers "OK 0x" and two hex digits per byte; write takes SIZE bytes from
    hex digits after a two-character prefix, zeros where the digits run out, and a
    non-hex digit is hex2nib's -1."""
    c = qtest()
    assert c.ask("write 0x100 4 0xa1b2") == "OK\n"
    assert c.ask("read 0x100 5") == "OK 0xa1b2000000\n"
    assert c.ask("write 0x100 2 ..0f") == "OK\n"  # the prefix is not checked
    assert c.ask("read 0x100 2") == "OK 0x0f00\n"
    assert c.ask("write 0x100 2 0xzzg1") == "OK\n"  # (-1 << 4) | -1, then 0xf0 | 1
    assert c.ask("read 0x100 2") == "OK 0xfff1\n"
    assert c.ask("write 0x100 1 0x123456") == "OK\n"  # more digits than bytes
    assert c.ask("read 0x100 2") == "OK 0x12f1\n"


def test_write_with_too_short_data(qtest) -> None:
    """`ERR invalid argument size` (sent without the log's prefix), and no write."""
    c = qtest()
    assert c.ask("write 0x100 1 0x") == "ERR invalid argument size\n"
    assert c.ask("b64write 0x100 1 AA") == "ERR invalid argument size\n"


def test_b64read_and_b64write(qtest) -> None:
    """g_base64_encode of the bytes (an empty string for 0 bytes); b64write decodes as
    GLib does and writes min(told, decoded) bytes."""
    c = qtest()
    assert c.ask("b64write 0x10 3 AQID") == "OK\n"
    assert c.ask("b64read 0x10 4") == "OK AQIDAA==\n"
    assert c.ask("b64read 0x10 0") == "OK \n"
    assert c.ask("b64write 0x10 1 BAUG") == "OK\n"  # decoded 3, told 1
    assert c.ask("read 0x10 3") == "OK 0x040203\n"
    assert c.ask("b64write 0x10 5 BwgJ") == "OK\n"  # decoded 3, told 5
    assert c.ask("read 0x10 4") == "OK 0x07080900\n"


@pytest.mark.parametrize(("text", "decoded"), [
    (b"AQID", b"\x01\x02\x03"),
    (b"AQI=", b"\x01\x02"),
    (b"AQ==", b"\x01"),
    (b"AQ", b""),              # an incomplete group gives nothing
    (b"A Q*I\nD", b"\x01\x02\x03"),  # outside the alphabet: skipped
    (b"AQ=D", b"\x01\x03"),  # a group whose third character is "=" drops its middle byte
    (b"AQIDBA", b"\x01\x02\x03"),
])
def test_glib_base64_decoding(text: bytes, decoded: bytes) -> None:
    """GLib gbase64.c g_base64_decode_step (checked against libglib-2.0 2.74)."""
    assert glib_base64_decode(text) == decoded


def test_memset(qtest) -> None:
    """memset writes SIZE copies of the value's low byte; a size of 0 writes nothing."""
    c = qtest()
    assert c.ask("memset 0x200 3 0x1aa") == "OK\n"
    assert c.ask("memset 0x203 0 0x11") == "OK\n"
    assert c.ask("read 0x1ff 5") == "OK 0x00aaaaaa00\n"


def test_unknown_commands(qtest) -> None:
    """`FAIL Unknown command '<word 0>'`, raw; rtas exists only on ppc64; a leading
    space makes an empty command word; CR is part of the word."""
    c = qtest()
    assert c.ask("frobnicate 1 2") == "FAIL Unknown command 'frobnicate'\n"
    assert c.ask("rtas get-time-of-day 0 0 0 0") == "FAIL Unknown command 'rtas'\n"
    assert c.ask(" endianness") == "FAIL Unknown command ''\n"
    assert c.send(b"endianness\r\n") == b"FAIL Unknown command 'endianness\r'\n"
    assert c.send(b"\xff\xfe\n") == b"FAIL Unknown command '\xff\xfe'\n"


def test_irq_intercept(qtest) -> None:
    """object_resolve_path (absolute or an unambiguous partial path); the first
    intercepted device stays: another gets `FAIL IRQ intercept already enabled`,
    the same one OK again; an unknown path `FAIL Unknown device`."""
    c = qtest()
    assert c.ask("irq_intercept_in nothing") == "FAIL Unknown device\n"
    assert c.ask("irq_intercept_in ioapic") == "OK\n"
    assert c.ask("irq_intercept_out //machine/i440fx//ioapic/") == "OK\n"
    assert c.qtest.irq_intercept == "/machine/i440fx/ioapic"


def test_resolve_path() -> None:
    devices = ("/machine/i440fx/ioapic", "/machine/q35/ioapic", "/machine/x/disk")
    assert resolve_path(devices, "ioapic") is None  # ambiguous
    assert resolve_path(devices, "q35/ioapic") == "/machine/q35/ioapic"
    assert resolve_path(devices, "disk") == "/machine/x/disk"
    assert resolve_path(devices, "/disk") is None
    assert resolve_path(devices, "") is None


def test_irq_intercept_on_q35_and_none(qtest) -> None:
    assert qtest("-machine", "q35,accel=qtest").ask(
        "irq_intercept_in /machine/q35/ioapic") == "OK\n"
    assert qtest("-machine", "none,accel=qtest").ask(
        "irq_intercept_in ioapic") == "FAIL Unknown device\n"


# -- lines and words -------------------------------------------------------------------------


def test_lines_across_reads_and_several_per_read(qtest) -> None:
    """qtest_process_inbuf: complete lines only, all of those in the buffer."""
    c = qtest()
    assert c.send("endia") == b""
    assert c.send("nness\nendianness\nendi") == b"OK little\nOK little\n"
    assert c.send("anness\n") == b"OK little\n"


def test_a_nul_byte_hides_later_newlines(qtest) -> None:
    """strchr() stops at a NUL: no line after it is ever complete."""
    c = qtest()
    assert c.send(b"endianness\nend\x00x\nendianness\n") == b"OK little\n"
    assert c.send(b"endianness\n") == b""


def test_the_buffer_outlives_a_connection(qtest) -> None:
    """The input buffer is the chardev frontend's: a partial line survives the client."""
    c = qtest()
    c.send("endian")
    c.qtest.disconnect()
    c.qtest.connect()
    assert c.send("ness\n") == b"OK little\n"


def test_descriptors_sent_along_are_closed(qtest) -> None:
    c = qtest()
    r, w = os.pipe()
    try:
        c.qtest.feed(b"endianness\n", [r])
        with pytest.raises(OSError):
            os.fstat(r)
    finally:
        os.close(w)


# -- the assertions --------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "where", "expr"), [
    ("", 282, "command"),
    ("irq_intercept_in", 288, "words[1]"),
    ("outb 0x80", 337, "words[1] && words[2]"),
    ("outb x 1", 339, "ret == 0"),
    ("outb  0x80 1", 339, "ret == 0"),  # two spaces: an empty word
    ("outw 0x80 1x", 341, "ret == 0"),
    ("outl 0x10000 1", 342, "addr <= 0xffff"),
    ("inb", 360, "words[1]"),
    ("inw 0x", 362, "ret == 0"),
    ("inl 65536", 363, "addr <= 0xffff"),
    ("writeb 0", 382, "words[1] && words[2]"),
    ("writeq 0 99999999999999999999", 386, "ret == 0"),  # ERANGE
    ("readq", 414, "words[1]"),
    ("readb 08", 416, "ret == 0"),  # octal
    ("read 0", 442, "words[1] && words[2]"),
    ("read 0 0", 448, "len"),
    ("b64read 0", 469, "words[1] && words[2]"),
    ("write 0 1", 489, "words[1] && words[2] && words[3]"),
    ("memset 0 1 z", 527, "ret == 0"),
    ("b64write 0 1", 545, "words[1] && words[2] && words[3]"),
    ("clock_step 1.5", 600, "ret == 0"),
    ("clock_set", 612, "words[1]"),
    ("clock_set 9223372036854775808", 614, "ret == 0"),
])
def test_a_failed_assertion_aborts(qtest, line: str, where: int, expr: str) -> None:
    """A g_assert() of qtest_process_command: GLib prints `**` and the ERROR line on
    stderr and QEMU aborts (SIGABRT): nothing more is answered."""
    c = qtest()
    assert c.send(line + "\nendianness\n") == b""
    assert c.stderr == [f"**\nERROR:qtest.c:{where}:qtest_process_command: "
                        f"assertion failed: ({expr})\n"]
    assert c.harness.machine.exit_code == -signal.SIGABRT


# -- the virtual clock -----------------------------------------------------------------------


def test_clock_commands_need_the_qtest_accelerator(qtest) -> None:
    """qtest_enabled(): with -qtest alone (2.11's vl.c keeps tcg) clock_step and
    clock_set are unknown commands."""
    c = qtest("-machine", "pc")
    assert c.ask("clock_step") == "FAIL Unknown command 'clock_step'\n"
    assert c.ask("clock_set 5") == "FAIL Unknown command 'clock_set'\n"
    assert c.ask("endianness") == "OK little\n"


def test_the_clock_moves_only_when_the_client_moves_it(qtest) -> None:
    """QEMU_CLOCK_VIRTUAL under accel=qtest: host time does not move it; clock_step
    NS adds, clock_set goes forward only, a negative step does nothing, and every
    reply is the clock."""
    c = qtest()
    c.harness.tick(10)
    assert c.ask("clock_step 1000") == "OK 1000\n"
    assert c.ask("clock_set 500") == "OK 1000\n"
    assert c.ask("clock_set 0x10000") == "OK 65536\n"
    assert c.ask("clock_step -5") == "OK 65536\n"
    assert c.ask("clock_step 9223372036854775807") == "OK 65536\n"  # wraps negative
    assert c.harness.machine.vm_clock_ns() == 65536


def test_a_bare_clock_step_goes_to_the_next_deadline(qtest) -> None:
    """Without an argument: qemu_clock_deadline_ns_all(QEMU_CLOCK_VIRTUAL), -1 (no
    move) without timers (-machine none has no device). The simulated guest powers
    off 0.5 s of guest time after the power button; the SHUTDOWN follows the step's
    reply."""
    c = qtest("-machine", "none,accel=qtest", "-no-shutdown")
    talk = c.harness.talk()
    assert c.ask("clock_step") == "OK 0\n"
    talk.send('{"execute":"system_powerdown"}')
    talk.pending()
    seen: list[str] = []
    c.harness.machine.events.subscribe(lambda e: seen.append(e.name))
    c.qtest.on_output = lambda: seen.append("reply")
    assert c.ask("clock_step") == f"OK {SECOND // 2}\n"
    assert seen == ["reply", "SHUTDOWN", "STOP"]
    assert c.ask("clock_step") == f"OK {SECOND // 2}\n"  # stopped: no deadline


@pytest.mark.parametrize("machine", ["pc", "q35", "isapc"])
def test_a_pc_steps_to_the_pit(qtest, machine: str) -> None:
    """A PC's only virtual timer after a reset is the PIT's channel 0 (mode 3, count
    0x10000, reloaded at the reset: i8254_common.c pit_reset_common and
    pit_get_next_transition_time): every 32768 ticks of 1.193182 MHz, and 1 ns
    later again where the conversion to ns rounded down (pit_irq_timer passes the
    deadline as the current time)."""
    c = qtest("-machine", f"{machine},accel=qtest", "--emu-behaviour=firmware-reboot=off")
    steps = [c.ask("clock_step") for _ in range(5)]
    assert steps == ["OK 27462700\n", "OK 27462701\n", "OK 54925401\n", "OK 54925402\n",
                     "OK 82388101\n"]
    assert c.ask("clock_step 1000000000") == "OK 1082388101\n"
    assert c.ask("clock_step") == "OK 1098508023\n"
    c.harness.talk().execute("system_reset")  # the count reloads: 27462700 ns on
    assert c.ask("clock_step") == f"OK {1098508023 + 27462700}\n"


def test_timers_run_at_their_deadlines_and_not_while_stopped(qtest) -> None:
    """qtest_clock_warp: each timer due runs at its own deadline; a stopped VM's
    clock still moves, but its timers wait (the clock is disabled)."""
    c = qtest("-machine", "none,accel=qtest")
    machine = c.harness.machine
    seen: list[int] = []
    for t in (300, 100, 200):
        machine.vm_call_at(t, lambda: seen.append(machine.vm_clock_ns()))
    assert c.ask("clock_step 250") == "OK 250\n"
    assert seen == [100, 200]
    c.harness.talk().execute("stop")
    assert c.ask("clock_step 100") == "OK 350\n"
    assert seen == [100, 200]
    c.harness.talk().execute("cont")
    c.harness.tick(0)  # the main loop runs the timer that fell due meanwhile
    assert seen == [100, 200, 350]
    assert c.ask("clock_step") == "OK 350\n"


# -- guest actions through ports ---------------------------------------------------------------


@pytest.mark.parametrize(("line", "events"), [
    ("outb 0xcf9 0x6", ["RESET"]),
    ("outb 0x64 0xfe", ["RESET"]),
    ("outb 0x92 0x1", ["RESET"]),
    ("outw 0x604 0x2400", ["SUSPEND"]),
    ("outw 0x604 0x2800", ["SUSPEND_DISK", "SHUTDOWN", "STOP"]),
    ("outw 0x604 0x2000", ["SHUTDOWN", "STOP"]),
])
def test_guest_actions_follow_the_reply(qtest, line: str, events: list[str]) -> None:
    """The device asks the main loop (qemu_system_*_request); the loop runs after the
    chardev handler returned, so the reply goes first. SUSPEND_DISK is sent from the
    write itself (hw/acpi/core.c acpi_pm1_cnt_write), before the reply."""
    c = qtest("-machine", "pc,accel=qtest", "-no-shutdown")
    seen: list[str] = []
    c.harness.machine.events.subscribe(lambda e: seen.append(e.name))
    c.qtest.on_output = lambda: seen.append("reply")
    assert c.ask(line) == "OK\n"
    if events[0] == "SUSPEND_DISK":
        assert seen == ["SUSPEND_DISK", "reply", *events[1:]]
    else:
        assert seen == ["reply", *events]


def test_a_reset_request_waits_for_the_whole_batch(qtest) -> None:
    """All lines of one read are answered before the main loop resets the machine."""
    c = qtest()
    c.send("outb 0x92 0x2\n")
    seen: list[str] = []
    c.harness.machine.events.subscribe(lambda e: seen.append(e.name))
    assert c.send("outb 0x92 0x3\ninb 0x92\n") == b"OK\nOK 0x0003\n"
    assert seen == ["RESET"]
    assert c.ask("inb 0x92") == "OK 0x0002\n"


# -- the log -------------------------------------------------------------------------------------


def test_log(qtest) -> None:
    """qtest_event and the qtest_log_* functions: OPENED with the wall-clock time,
    then each command ([R]) and reply ([S]) with the time since OPENED, replies
    without a prefix (ERR) as they are, b64write's length mismatch, CLOSED."""
    c = qtest()
    c.harness.tick(1.5)
    c.ask("endianness")
    c.ask("write 0 1 0x")
    c.ask("b64write 0 1 AQID")
    c.harness.tick(0.000001)
    c.qtest.disconnect()
    assert c.log.decode().splitlines() == [
        "[I 1510000000.250000] OPENED",
        "[R +1.500000] endianness",
        "[S +1.500000] OK little",
        "[R +1.500000] write 0 1 0x",
        "ERR invalid argument size",
        "[R +1.500000] b64write 0 1 AQID",
        "[S +1.500000] b64write: data length mismatch (told 1, found 3)",
        "[S +1.500000] OK",
        "[I +1.500001] CLOSED",
    ]


def test_no_log(qtest) -> None:
    """-qtest-log none: qtest_log_fp stays NULL."""
    c = qtest(log=False)
    assert c.ask("endianness") == "OK little\n"
    assert c.log == b""



# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "spec"), [
    (["-qtest", "unix:/tmp/q,nowait", "-qtest-log", "/dev/null"],
     QtestSpec(arg="unix:/tmp/q,nowait", log="/dev/null",
               chardev=ChardevSpec(id="qtest", backend="socket", path="/tmp/q",
                                   server=False, wait=False))),
    (["-qtest", "unix:/tmp/q,server,nowait"],
     QtestSpec(arg="unix:/tmp/q,server,nowait",
               chardev=ChardevSpec(id="qtest", backend="socket", path="/tmp/q",
                                   server=True, wait=False))),
    (["-qtest", "null", "-qtest-log", "none"], QtestSpec(arg="null", chardev=None, log="none")),
    (["-chardev", "socket,id=c,path=/tmp/c,server,nowait", "-qtest", "chardev:c"],
     QtestSpec(arg="chardev:c", chardev=ChardevSpec(id="c", backend="socket", path="/tmp/c",
                                                    server=True, wait=False))),
])
def test_qtest_chardev(argv: list[str], spec: QtestSpec) -> None:
    """qtest_init: qemu_chr_new("qtest", ARG) in the legacy chardev syntax (or an
    existing chardev, `chardev:ID`); -qtest-log names the log."""
    assert qtest_config(parse_command_line(argv)) == spec


@pytest.mark.parametrize(("argv", "messages"), [
    (["-qtest", "bogus"], ['Failed to initialize device for qtest: "bogus"']),
    (["-qtest", "unix:/tmp/q,frob=1"],
     ["Invalid parameter 'frob'", 'Failed to initialize device for qtest: "unix:/tmp/q,frob=1"']),
    (["-chardev", "null,id=qtest", "-qtest", "null"],
     ["Duplicate ID 'qtest' for chardev", 'Failed to initialize device for qtest: "null"']),
    (["-qtest", "chardev:none"], ['Failed to initialize device for qtest: "chardev:none"']),
])
def test_qtest_chardev_errors(argv: list[str], messages: list[str]) -> None:
    """qemu_chr_new returns NULL (after chardev/char.c reported why, if it did):
    `Failed to initialize device for qtest: "ARG"` through error_fatal, exit 1."""
    with pytest.raises(CommandLineError) as err:
        qtest_config(parse_command_line(argv))
    assert [d.text for d in err.value.diagnostics] == messages
    assert err.value.exit_status == 1


def test_qtest_alone_keeps_the_running_clock(vm_cmdline) -> None:
    """2.11's vl.c: -qtest does not pick the qtest accelerator (configure_accelerator
    defaults to tcg), so the virtual clock runs with the VM."""
    vm = vm_cmdline("-machine", "pc", "-qtest", "null")
    vm.tick(1)
    assert vm.machine.vm_clock_ns() == SECOND
