"""The qtest protocol: QEMU's test-harness interface, one line per command.

`vmm` layer, synchronous and free of I/O: a `Qtest` is the frontend of the `-qtest`
chardev as `QmpMonitor` is of a `-qmp` one (bytes in through `feed`, replies out
through `outbox`; the server in `vmm.server` moves them). It sits in `vmm` beside the
monitors because, like them, it drives the whole machine: the virtual clock
(`Machine.warp_vm_clock`) and the guest's address spaces (`devices.address_space`).

It answers as QEMU 2.11's qtest.c does (qtest_process_inbuf, qtest_process_command):

- lines end at a newline; words are separated by single spaces (g_strsplit, so two
  spaces make an empty word); a NUL byte hides every newline after it (strchr);
- numbers are strtoul/strtoull/strtoll with base 0 (`schema.opts.cutils`), the
  whole word or nothing;
- replies: `OK`, `OK VALUE`, `FAIL Unknown command '<word>'`, `FAIL Unknown device`,
  `FAIL IRQ intercept already enabled`, `ERR invalid argument size`;
- a missing or malformed argument fails one of qtest.c's g_assert()s: GLib prints
  `**` and `ERROR:qtest.c:<line>:qtest_process_command: assertion failed: (<expr>)`
  on stderr and QEMU aborts. Here the message goes to `stderr` and the Machine's
  `exit_code` becomes -SIGABRT, which the program turns into death by SIGABRT
  (the source path GLib prints is the build's; this says `qtest.c`);
- `clock_step` and `clock_set` exist only under the qtest accelerator
  (qtest_enabled()); `-qtest` does not select it in 2.11 (vl.c), `-machine
  accel=qtest` does;
- main-loop requests a command makes (a reset through port 0xcf9, S3 through
  PM1a_CNT, a power-off after a clock step) are carried out after the batch of
  lines one read delivered, so their events follow the replies.

The log (`-qtest-log FILE`; stderr without the option; nothing for `none`) gets
QEMU's lines: `[I <time>] OPENED`, `[R +<elapsed>] <words>` for each command,
`[S +<elapsed>] <reply>` for each reply, `[I +<elapsed>] CLOSED`, times from the
wall clock relative to the last connection (qtest_get_time).

Not modelled: asynchronous `IRQ raise N`/`IRQ lower N` lines (nothing in the model
raises interrupts). `irq_intercept_in/out` resolve QOM paths among the board devices
the emulator knows (the IOAPIC); other paths are unknown devices.
"""

from __future__ import annotations

import base64
import math
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from devices.address_space import AddressSpaces
from devices.board import board_kind
from schema.opts.cutils import Errno, qemu_strtoi64, qemu_strtou64
from vmm.machine.fds import close_quietly
from vmm.qmp.monitor import take_from

if TYPE_CHECKING:
    from vmm.machine.core import Machine

INT64 = 1 << 64


class QtestAbort(Exception):
    """A g_assert() of qtest_process_command failed: QEMU prints this and aborts."""

    def __init__(self, line: int, expr: str) -> None:
        self.message = (f"**\nERROR:qtest.c:{line}:qtest_process_command: "
                        f"assertion failed: ({expr})\n")
        super().__init__(self.message)


def _nothing() -> None:
    pass


def _to_int64(value: int) -> int:
    value %= INT64
    return value - INT64 if value >= INT64 // 2 else value


def _hex2nib(ch: int) -> int:
    """qtest.c hex2nib: -1 for anything that is not a hex digit."""
    if 0x30 <= ch <= 0x39:
        return ch - 0x30
    if 0x61 <= ch <= 0x66:
        return ch - 0x61 + 10
    if 0x41 <= ch <= 0x46:
        return ch - 0x41 + 10
    return -1


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# GLib's mime_base64_rank: the alphabet, '=' ranks 0, anything else is skipped.
_B64_RANK = {c: i for i, c in enumerate(_B64)} | {ord("="): 0}


def glib_base64_decode(text: bytes) -> bytes:
    """g_base64_decode_inplace as GLib decodes: characters outside the alphabet are
    skipped, every 4 characters give 3 bytes less one per '=' among the last two,
    and an incomplete group at the end gives nothing."""
    out = bytearray()
    value = 0
    count = 0
    last = [0, 0]
    for c in text:
        rank = _B64_RANK.get(c)
        if rank is None:
            continue
        last[1], last[0] = last[0], c
        value = ((value << 6) | rank) & 0xFFFFFFFF
        count += 1
        if count == 4:
            out.append((value >> 16) & 0xFF)
            if last[1] != ord("="):
                out.append((value >> 8) & 0xFF)
            if last[0] != ord("="):
                out.append(value & 0xFF)
            count = 0
    return bytes(out)


def resolve_path(devices: Sequence[str], path: str) -> str | None:
    """object_resolve_path among `devices` (canonical paths): an absolute path
    (empty components ignored), or a partial one matching the end of exactly one
    path (an ambiguous partial path resolves to nothing)."""
    parts = [p for p in path.split("/") if p]
    if path.startswith("/"):
        for dev in devices:
            if [p for p in dev.split("/") if p] == parts:
                return dev
        return None
    if not parts:
        return None
    found = [d for d in devices if [p for p in d.split("/") if p][-len(parts):] == parts]
    return found[0] if len(found) == 1 else None


def board_devices(machine_type: str) -> tuple[str, ...]:
    """The QOM paths of the board devices qtest can intercept the IRQs of: the
    IOAPIC, a child of the PCI host (hw/i386/pc.c ioapic_init_gsi)."""
    kind = board_kind(machine_type)
    if kind == "i440fx":
        return ("/machine/i440fx/ioapic",)
    if kind == "q35":
        return ("/machine/q35/ioapic",)
    return ()


@attrs.define(kw_only=True, eq=False)
class Qtest:
    """The qtest frontend of one chardev."""

    machine: Machine
    memory: AddressSpaces
    devices: Sequence[str] = ()
    # qtest_log_fp: None for `-qtest-log none` (or a file that could not be opened)
    log: Callable[[bytes], None] | None = None
    stderr: Callable[[str], None] = lambda text: None
    outbox: bytearray = attrs.Factory(bytearray)
    inbuf: bytearray = attrs.Factory(bytearray)   # kept across connections, as QEMU's
    is_connected: bool = False
    dropped: bool = False  # the monitors' slow-client flag; qtest never sets it
    on_output: Callable[[], None] = _nothing
    opened: bool = False
    start_us: int = 0
    irq_intercept: str | None = None

    # -- the chardev's events (qtest_event) ---------------------------------------

    def connect(self) -> None:
        self.is_connected = True
        self.opened = True
        self.start_us = self._wall_us()
        if self.log is not None:
            sec, usec = divmod(self.start_us, 1_000_000)
            self.log(f"[I {sec}.{usec:06d}] OPENED\n".encode())

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        self.is_connected = False
        self.opened = False
        self.outbox.clear()
        if self.log is not None:
            self.log(f"[I +{self._elapsed()}] CLOSED\n".encode())

    def take_output(self, limit: int | None = None) -> bytes:
        return take_from(self.outbox, limit)

    # -- input (qtest_read, qtest_process_inbuf) ---------------------------------

    def feed(self, data: bytes, fds: list[int] | None = None) -> None:
        """Process every complete line, then let the main loop run."""
        for fd in fds or ():
            close_quietly(fd)  # tcp_chr_recv keeps them; qtest never takes one
        self.inbuf += data
        while True:
            nul = self.inbuf.find(0)
            end = self.inbuf.find(b"\n", 0, nul if nul >= 0 else len(self.inbuf))
            if end < 0:
                break
            line = bytes(self.inbuf[:end])
            del self.inbuf[:end + 1]
            try:
                self.process(line.split(b" ") if line else [])
            except QtestAbort as abort:
                self.stderr(abort.message)
                self.machine.exit_code = -int(signal.SIGABRT)
                self.machine.kick()
                return
        self.machine.process_requests()

    # -- output -------------------------------------------------------------------

    def _wall_us(self) -> int:
        return math.floor(self.machine.clock.wall() * 1_000_000)

    def _elapsed(self) -> str:
        sec, usec = divmod(self._wall_us() - self.start_us, 1_000_000)
        return f"{sec}.{usec:06d}"

    def _send(self, text: bytes, *, prefix: bool = True) -> None:
        """qtest_send_prefix + do_qtest_send: the reply, and its copy in the log."""
        logging = self.log is not None and self.opened
        if prefix and logging:
            assert self.log is not None
            self.log(f"[S +{self._elapsed()}] ".encode())
        if self.is_connected:
            self.outbox += text
            self.on_output()
        if logging:
            assert self.log is not None
            self.log(text)

    def _log_send(self, text: str) -> None:
        """qtest_log_send: a line for the log only."""
        if self.log is not None and self.opened:
            self.log(f"[S +{self._elapsed()}] {text}".encode())

    # -- commands (qtest_process_command) -----------------------------------------

    def process(self, words: list[bytes]) -> None:
        """One command line, split into words."""
        if self.log is not None:
            self.log(f"[R +{self._elapsed()}]".encode() +
                     b"".join(b" " + w for w in words) + b"\n")
        if not words:
            raise QtestAbort(282, "command")
        command = words[0]
        handler = _COMMANDS.get(command)
        if handler is None or (handler.needs_qtest_accel and
                               self.machine.options.accel != "qtest"):
            self._send(b"FAIL Unknown command '" + command + b"'\n")
            return
        handler.run(self, words)

    def _intercept(self, words: list[bytes]) -> None:
        _need(words, 1, 288, "words[1]")
        dev = resolve_path(self.devices, words[1].decode("utf-8", "surrogateescape"))
        if dev is None:
            self._send(b"FAIL Unknown device\n")
            return
        if self.irq_intercept is not None:
            self._send(b"OK\n" if self.irq_intercept == dev
                       else b"FAIL IRQ intercept already enabled\n")
            return
        self.irq_intercept = dev
        self._send(b"OK\n")

    def _out(self, words: list[bytes]) -> None:
        _need(words, 2, 337, "words[1] && words[2]")
        addr = _number(words[1], 339)
        value = _number(words[2], 341)
        if addr > 0xFFFF:
            raise QtestAbort(342, "addr <= 0xffff")
        size = _SIZES[words[0][3:4]]
        self.memory.port_write(addr, value & ((1 << (size * 8)) - 1), size)
        self._send(b"OK\n")

    def _in(self, words: list[bytes]) -> None:
        _need(words, 1, 360, "words[1]")
        addr = _number(words[1], 362)
        if addr > 0xFFFF:
            raise QtestAbort(363, "addr <= 0xffff")
        value = self.memory.port_read(addr, _SIZES[words[0][2:3]])
        self._send(f"OK 0x{value:04x}\n".encode())

    def _write_n(self, words: list[bytes]) -> None:
        _need(words, 2, 382, "words[1] && words[2]")
        addr = _number(words[1], 384)
        value = _number(words[2], 386)
        size = _SIZES[words[0][5:6]]
        self.memory.write(addr, (value & ((1 << (size * 8)) - 1)).to_bytes(size, "little"))
        self._send(b"OK\n")

    def _read_n(self, words: list[bytes]) -> None:
        _need(words, 1, 414, "words[1]")
        addr = _number(words[1], 416)
        value = int.from_bytes(self.memory.read(addr, _SIZES[words[0][4:5]]), "little")
        self._send(f"OK 0x{value:016x}\n".encode())

    def _read(self, words: list[bytes]) -> None:
        _need(words, 2, 442, "words[1] && words[2]")
        addr = _number(words[1], 444)
        length = _number(words[2], 446)
        if not length:
            raise QtestAbort(448, "len")  # "We'd send garbage to libqtest if len is 0"
        self._send(b"OK 0x" + self.memory.read(addr, length).hex().encode() + b"\n")

    def _b64read(self, words: list[bytes]) -> None:
        _need(words, 2, 469, "words[1] && words[2]")
        addr = _number(words[1], 471)
        length = _number(words[2], 473)
        self._send(b"OK " + base64.b64encode(self.memory.read(addr, length)) + b"\n")

    def _write(self, words: list[bytes]) -> None:
        _need(words, 3, 489, "words[1] && words[2] && words[3]")
        addr = _number(words[1], 491)
        length = _number(words[2], 493)
        text = words[3]
        if len(text) < 3:
            self._send(b"ERR invalid argument size\n", prefix=False)
            return
        data = bytearray(length)  # the bytes the hex digits leave out are zeros
        for i in range(min(length, (len(text) - 2) // 2)):
            hi = _hex2nib(text[i * 2 + 2])
            lo = _hex2nib(text[i * 2 + 3])
            data[i] = ((hi << 4) & 0xFF | lo) & 0xFF
        self.memory.write(addr, bytes(data))
        self._send(b"OK\n")

    def _memset(self, words: list[bytes]) -> None:
        _need(words, 3, 521, "words[1] && words[2] && words[3]")
        addr = _number(words[1], 523)
        length = _number(words[2], 525)
        pattern = _number(words[3], 527)
        if length:
            self.memory.fill(addr, length, pattern & 0xFF)
        self._send(b"OK\n")

    def _b64write(self, words: list[bytes]) -> None:
        _need(words, 3, 545, "words[1] && words[2] && words[3]")
        addr = _number(words[1], 547)
        length = _number(words[2], 549)
        if len(words[3]) < 3:
            self._send(b"ERR invalid argument size\n", prefix=False)
            return
        data = glib_base64_decode(words[3])
        if len(data) != length:
            self._log_send(f"b64write: data length mismatch (told {length}, "
                           f"found {len(data)})\n")
            data = data[:length]
        self.memory.write(addr, data)
        self._send(b"OK\n")

    def _endianness(self, words: list[bytes]) -> None:
        self._send(b"OK little\n")

    def _clock_step(self, words: list[bytes]) -> None:
        """With an argument: that many ns; without: to the next virtual deadline
        (qemu_clock_deadline_ns_all: -1, no move, when there is none)."""
        machine = self.machine
        if len(words) > 1:
            ns = _signed(words[1], 600)
        else:
            ns = machine.vm_deadline_ns()
        self._warp(_to_int64(machine.vm_clock_ns() + ns))

    def _clock_set(self, words: list[bytes]) -> None:
        _need(words, 1, 612, "words[1]")
        self._warp(_signed(words[1], 614))

    def _warp(self, target: int) -> None:
        """cpus.c qtest_clock_warp: forward only, the virtual timers due on the way
        run at their deadlines; the reply is the clock."""
        clock = self.machine.warp_vm_clock(target)
        self._send(f"OK {clock}\n".encode())


def _need(words: list[bytes], index: int, line: int, expr: str) -> None:
    if len(words) <= index:
        raise QtestAbort(line, expr)


def _number(word: bytes, line: int) -> int:
    """qemu_strtoul / qemu_strtou64 with base 0 and no end pointer (unsigned long
    is 64 bits on x86_64 hosts)."""
    err, value, _ = qemu_strtou64(word.decode("latin-1"))
    if err is not Errno.OK:
        raise QtestAbort(line, "ret == 0")
    return value


def _signed(word: bytes, line: int) -> int:
    err, value, _ = qemu_strtoi64(word.decode("latin-1"))
    if err is not Errno.OK:
        raise QtestAbort(line, "ret == 0")
    return value


_SIZES = {b"b": 1, b"w": 2, b"l": 4, b"q": 8}


@attrs.frozen
class _Command:
    run: Callable[[Qtest, list[bytes]], None]
    needs_qtest_accel: bool = False


_COMMANDS: dict[bytes, _Command] = {
    b"irq_intercept_out": _Command(Qtest._intercept),
    b"irq_intercept_in": _Command(Qtest._intercept),
    **{b"out" + s: _Command(Qtest._out) for s in (b"b", b"w", b"l")},
    **{b"in" + s: _Command(Qtest._in) for s in (b"b", b"w", b"l")},
    **{b"write" + s: _Command(Qtest._write_n) for s in (b"b", b"w", b"l", b"q")},
    **{b"read" + s: _Command(Qtest._read_n) for s in (b"b", b"w", b"l", b"q")},
    b"read": _Command(Qtest._read),
    b"b64read": _Command(Qtest._b64read),
    b"write": _Command(Qtest._write),
    b"memset": _Command(Qtest._memset),
    b"b64write": _Command(Qtest._b64write),
    b"endianness": _Command(Qtest._endianness),
    b"clock_step": _Command(Qtest._clock_step, needs_qtest_accel=True),
    b"clock_set": _Command(Qtest._clock_set, needs_qtest_accel=True),
}
