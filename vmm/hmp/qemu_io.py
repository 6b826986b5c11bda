"""qemu-io's commands as HMP `qemu-io <device> "<command>"` runs them in 2.11
[qemu-io-cmds.c qemuio_command, hmp.c hmp_qemu_io].

`vmm` layer (HMP), loaded with the first `qemu-io` command. The requests go through
the block data path (`blockdev.io`) on the device's BlockBackend (or a temporary one
on a node). Where the text goes is QEMU's: qemu-io's printf output goes to the
process's stdout, its fprintf(stderr) to stderr (`Machine.stdout`/`Machine.stderr`),
and only error_report (a permission refused, map's failures) reaches the monitor.

The reports' times are the modelled time of a request (`blockdev.accounting`'s
latency, one per operation): no request takes real time here, and a report must be
deterministic.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from blockdev import io
from blockdev.accounting import LATENCY_NS
from blockdev.graph import Backend
from blockdev.image.lock import Perm
from schema.errors import GenericError
from schema.opts.cutils import Errno, qemu_strtosz, strtoll

if TYPE_CHECKING:
    from vmm.hmp.interpreter import Hmp

INT64_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
BDRV_REQUEST_MAX_BYTES = io.BDRV_REQUEST_MAX_BYTES


class _Usage(Exception):
    """qemuio_command_usage: the command's one-line usage."""


class _Out:
    def __init__(self, hmp: Hmp) -> None:
        machine = hmp.machine
        self.stdout: Callable[[str], None] = machine.stdout
        self.stderr: Callable[[str], None] = machine.stderr
        self.monitor = hmp.printf


# name, altname, args, oneline, argmin, argmax, write permission [cmdinfo_t]
_COMMANDS: dict[str, tuple[str | None, str, str, int, int, bool]] = {
    "read": ("r", "[-abCqv] [-P pattern [-s off] [-l len]] off len",
             "reads a number of bytes at a specified offset", 2, -1, False),
    "write": ("w", "[-bcCfquz] [-P pattern] off len",
              "writes a number of bytes at a specified offset", 2, -1, True),
    "aio_write": (None, "[-Cfiquz] [-P pattern] off len [len..]",
                  "asynchronously writes a number of bytes", 2, -1, True),
    "aio_flush": (None, "", "completes all outstanding aio requests", 0, 0, False),
    "flush": ("f", "", "flush all in-core file state to disk", 0, 0, False),
    "discard": ("d", "[-Cq] off len", "discards a number of bytes at a specified offset",
                2, -1, True),
    "map": (None, "", "prints the allocated areas of a file", 0, 0, False),
}


def _find(name: str) -> str | None:
    for cmd, (alt, *_rest) in _COMMANDS.items():
        if name == cmd or name == alt:
            return cmd
    return None


def qemuio_command(hmp: Hmp, blk: Backend, command: str) -> None:
    """qemuio_command: split on spaces, find the command, check its argument
    count, take the permission it needs, run it."""
    out = _Out(hmp)
    argv = [w for w in command.split(" ") if w]
    if not argv:
        return
    name = _find(argv[0])
    if name is None:
        out.stderr(f'command "{argv[0]}" not found\n')
        return
    _alt, args, oneline, argmin, argmax, write = _COMMANDS[name]
    nargs = len(argv) - 1
    if nargs < argmin or (argmax != -1 and nargs > argmax):
        cmd = argv[0]
        if argmax == -1:
            text = f"expected at least {argmin} arguments"
        elif argmin == argmax:
            text = f"expected {argmin} arguments"
        else:
            text = f"expected between {argmin} and {argmax} arguments"
        out.stderr(f"bad argument count {nargs} to {cmd}, {text}\n")
        return
    if write and blk.is_available() and not blk.perm & int(Perm.WRITE):
        try:
            _set_perm(hmp, blk)
        except GenericError as e:
            out.monitor(f"{e.desc}\n")
            return
    try:
        _RUN[name](out, blk, argv)
    except _Usage:
        out.stdout(f"{name} {args} -- {oneline}\n")


def _set_perm(hmp: Hmp, blk: Backend) -> None:
    from vmm.hmp.block import block_layer

    block_layer(hmp).blk_set_perm(blk, blk.perm | int(Perm.WRITE), blk.shared)


def _getopt(out: _Out, argv: list[str], spec: str) -> tuple[list[tuple[str, str]], list[str]]:
    """GNU getopt as qemu-io resets it (optind = 0): options may follow operands
    (they are permuted), `--` ends them; an unknown option or a missing argument
    is reported on stderr and gives the usage."""
    opts: list[tuple[str, str]] = []
    rest: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i + 1:]
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            i += 1
            continue
        j = 1
        while j < len(arg):
            c = arg[j]
            k = spec.find(c)
            if k < 0 or c == ":":
                out.stderr(f"qemu-system-x86_64: invalid option -- '{c}'\n")
                raise _Usage
            if k + 1 < len(spec) and spec[k + 1] == ":":
                if j + 1 < len(arg):
                    opts.append((c, arg[j + 1:]))
                elif i + 1 < len(argv):
                    i += 1
                    opts.append((c, argv[i]))
                else:
                    out.stderr(f"qemu-system-x86_64: option requires an argument -- '{c}'\n")
                    raise _Usage
                break
            opts.append((c, ""))
            j += 1
        i += 1
    return opts, rest


def _cvtnum(text: str) -> int:
    """cvtnum: qemu_strtosz (bytes by default); -EINVAL or -ERANGE."""
    err, value = qemu_strtosz(text)
    if err != Errno.OK:
        return -err.value
    if value > INT64_MAX:
        return -Errno.ERANGE.value
    return value


def _cvtnum_err(out: _Out, rc: int, arg: str) -> None:
    """print_cvtnum_err."""
    if rc == -Errno.EINVAL.value:
        out.stdout("Parsing error: non-numeric argument, or extraneous/unrecognized "
                   f"suffix -- {arg}\n")
    elif rc == -Errno.ERANGE.value:
        out.stdout(f"Parsing error: argument too large -- {arg}\n")
    else:
        out.stdout(f"Parsing error: {arg}\n")


def _pattern(out: _Out, arg: str) -> int:
    """parse_pattern: strtol base 0, one byte."""
    value, end, _overflow = strtoll(arg, 0)
    if value < 0 or value > 255 or end != len(arg):
        out.stdout(f"{arg} is not a valid pattern byte\n")
        return -1
    return value


def cvtstr(value: float) -> str:
    """cvtstr: binary units with three decimals, `.000` dropped."""
    units = ((60, " EiB"), (50, " PiB"), (40, " TiB"), (30, " GiB"), (20, " MiB"),
             (10, " KiB"))
    suffix, text = " bytes", f"{value:f}"
    for shift, unit in units:
        if value >= float(1 << shift):
            suffix, text = unit, f"{value / (1 << shift):.3f}"
            break
    if ".000" in text:
        return text[: text.index(".000")] + suffix
    return text + suffix


def _timestr(usec: int, cflag: bool) -> str:
    """timestr (no hours in a modelled request)."""
    sec, frac = divmod(usec, 1_000_000)
    if cflag or sec:
        return (f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}."
                f"{int(frac / 1_000_000 * 100):02d}")
    return f"0.{int(frac / 1_000_000 * 10000):04d} sec"


def print_report(out: _Out, op: str, offset: int, count: int, total: int, cnt: int,
                 cflag: bool) -> None:
    """print_report, with the modelled time of `cnt` requests."""
    usec = cnt * LATENCY_NS // 1000
    secs = usec / 1_000_000
    ts = _timestr(usec, cflag)
    if not cflag:
        out.stdout(f"{op} {total}/{count} bytes at offset {offset}\n")
        out.stdout(f"{cvtstr(float(total))}, {cnt} ops; {ts} "
                   f"({cvtstr(total / secs)}/sec and {cnt / secs:.4f} ops/sec)\n")
    else:
        out.stdout(f"{total},{cnt},{ts},{total / secs:.3f},{cnt / secs:.3f}\n")


def _off_len(out: _Out, rest: list[str], limit: int = BDRV_REQUEST_MAX_BYTES) -> \
        tuple[int, int] | None:
    offset = _cvtnum(rest[0])
    if offset < 0:
        _cvtnum_err(out, offset, rest[0])
        return None
    count = _cvtnum(rest[1])
    if count < 0:
        _cvtnum_err(out, count, rest[1])
        return None
    if count > limit:
        out.stdout(f"length cannot exceed {limit}, given {rest[1]}\n")
        return None
    return offset, count


def _pattern_option(out: _Out, opts: list[tuple[str, str]], default: int) -> int:
    """The last -P's byte (parse_pattern), or `default`; -1 after an error."""
    pattern = default
    for c, arg in opts:
        if c == "P":
            pattern = _pattern(out, arg)
            if pattern < 0:
                return -1
    return pattern


def _sector_aligned(out: _Out, offset: int, count: int) -> bool:
    """The -b/-c checks: offset and count in whole sectors."""
    if offset % 512:
        out.stdout(f"{offset} is not a sector-aligned value for 'offset'\n")
        return False
    if count % 512:
        out.stdout(f"{count} is not a sector-aligned value for 'count'\n")
        return False
    return True


def _dump_buffer(out: _Out, data: bytes, offset: int) -> None:
    """dump_buffer: 16 bytes a line, hex then isalnum characters."""
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i:i + 16]
        hexes = "".join(f"{b:02x} " for b in chunk)
        text = "".join(chr(b) if chr(b).isalnum() and b < 128 else "." for b in chunk)
        lines.append(f"{offset + i:08x}:  {hexes} {text}\n")
    out.stdout("".join(lines))


def read_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """read_f (-b, the VM state area, fails with ENOTSUP as on a driver without
    it)."""
    opts, rest = _getopt(out, argv, "bCl:pP:qs:v")
    flags = {c for c, _ in opts}
    pattern, pattern_offset, pattern_count = 0, 0, 0
    for c, arg in opts:
        if c in "ls":
            value = _cvtnum(arg)
            if value < 0:
                _cvtnum_err(out, value, arg)
                return
            if c == "l":
                pattern_count = value
            else:
                pattern_offset = value
        elif c == "P":
            pattern = _pattern(out, arg)
            if pattern < 0:
                return
    if len(rest) != 2:
        raise _Usage
    parsed = _off_len(out, rest)
    if parsed is None:
        return
    offset, count = parsed
    if "P" not in flags and ("l" in flags or "s" in flags):
        raise _Usage
    if "l" not in flags:
        pattern_count = count - pattern_offset
    if pattern_count < 0 or pattern_count + pattern_offset > count:
        out.stdout("pattern verification range exceeds end of read data\n")
        return
    if "b" in flags and not _sector_aligned(out, offset, count):
        return
    try:
        if "b" in flags:
            raise io.BlockIOError(errno_mod.ENOTSUP)
        data = io.blk_pread(blk, offset, count)
    except io.BlockIOError as e:
        out.stdout(f"read failed: {os.strerror(e.errno)}\n")
        return
    if "P" in flags:
        window = data[pattern_offset:pattern_offset + pattern_count]
        if window != bytes([pattern]) * pattern_count:
            out.stdout(f"Pattern verification failed at offset {offset + pattern_offset}, "
                       f"{pattern_count} bytes\n")
    if "q" in flags:
        return
    if "v" in flags:
        _dump_buffer(out, data, offset)
    print_report(out, "read", offset, count, count, 1, "C" in flags)


def write_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """write_f (plain, -z, -f, -u; -b and -c, the VM state area and compressed
    writes, fail with ENOTSUP as on a driver without them)."""
    opts, rest = _getopt(out, argv, "bcCfpP:quz")
    flags = {c for c, _ in opts}
    pattern = _pattern_option(out, opts, 0xCD)
    if pattern < 0:
        return
    if len(rest) != 2:
        raise _Usage
    if "b" in flags and "z" in flags:
        out.stdout("-b and -z cannot be specified at the same time\n")
        return
    if "f" in flags and ("b" in flags or "c" in flags):
        out.stdout("-f and -b or -c cannot be specified at the same time\n")
        return
    if "u" in flags and "z" not in flags:
        out.stdout("-u requires -z to be specified\n")
        return
    if "z" in flags and "P" in flags:
        out.stdout("-z and -P cannot be specified at the same time\n")
        return
    parsed = _off_len(out, rest)
    if parsed is None:
        return
    offset, count = parsed
    if ("b" in flags or "c" in flags) and not _sector_aligned(out, offset, count):
        return
    try:
        if count > INT_MAX:
            raise io.BlockIOError(Errno.ERANGE.value)
        if "b" in flags or "c" in flags:
            # bdrv_save_vmstate / compressed writes: no engine here has them
            raise io.BlockIOError(errno_mod.ENOTSUP)
        if "z" in flags:
            io.blk_pwrite_zeroes(blk, offset, count, may_unmap="u" in flags)
        else:
            io.blk_pwrite(blk, offset, bytes([pattern]) * count, fua="f" in flags)
    except io.BlockIOError as e:
        out.stdout(f"write failed: {os.strerror(e.errno)}\n")
        return
    if "q" in flags:
        return
    print_report(out, "wrote", offset, count, count, 1, "C" in flags)


def aio_write_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """aio_write_f: the request completes before the command returns (no request
    takes time here), accounted as a device's would be; several lengths make one
    vectored write."""
    opts, rest = _getopt(out, argv, "CfiqP:uz")
    flags = {c for c, _ in opts}
    for c, _arg in opts:
        if c == "i":
            out.stdout("injecting invalid write request\n")
            from blockdev import accounting

            accounting.invalid(blk, "write", 0)
            return
    pattern = _pattern_option(out, opts, 0xCD)
    if pattern < 0:
        return
    if len(rest) < 2:
        raise _Usage
    if "z" in flags and len(rest) != 2:
        out.stdout("-z supports only a single length parameter\n")
        return
    if "u" in flags and "z" not in flags:
        out.stdout("-u requires -z to be specified\n")
        return
    offset = _cvtnum(rest[0])
    if offset < 0:
        _cvtnum_err(out, offset, rest[0])
        return
    if "z" in flags:
        count = _cvtnum(rest[1])
        if count < 0:
            _cvtnum_err(out, count, rest[1])
            return
        try:
            io.blk_pwrite_zeroes(blk, offset, count, may_unmap="u" in flags)
        except io.BlockIOError as e:
            out.stdout(f"aio_write failed: {os.strerror(e.errno)}\n")
            return
        if "q" not in flags:
            print_report(out, "wrote", offset, count, count, 1, "C" in flags)
        return
    total = 0
    for arg in rest[1:]:
        n = _cvtnum(arg)
        if n < 0:
            _cvtnum_err(out, n, arg)
            from blockdev import accounting

            accounting.invalid(blk, "write", 0)
            return
        if n > INT_MAX:
            out.stdout(f"Argument '{arg}' exceeds maximum size {INT_MAX}\n")
            from blockdev import accounting

            accounting.invalid(blk, "write", 0)
            return
        total += n
    try:
        io.blk_pwrite(blk, offset, bytes([pattern]) * total, fua="f" in flags, account=True)
    except io.BlockIOError as e:
        out.stdout(f"aio_write failed: {os.strerror(e.errno)}\n")
        return
    if "q" not in flags:
        print_report(out, "wrote", offset, total, total, 1, "C" in flags)


def aio_flush_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """aio_flush_f: a flush accounted (block_acct_start/done), nothing outstanding."""
    from blockdev import accounting

    accounting.done(blk, "flush", 0, None, 0)


def flush_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """flush_f: blk_flush, its result ignored."""
    try:
        io.blk_flush(blk)
    except io.BlockIOError:
        pass


def discard_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """discard_f."""
    opts, rest = _getopt(out, argv, "Cq")
    flags = {c for c, _ in opts}
    if len(rest) != 2:
        raise _Usage
    parsed = _off_len(out, rest)
    if parsed is None:
        return
    offset, count = parsed
    try:
        io.blk_pdiscard(blk, offset, count)
    except io.BlockIOError as e:
        out.stdout(f"discard failed: {os.strerror(e.errno)}\n")
        return
    if "q" not in flags:
        print_report(out, "discard", offset, count, count, 1, "C" in flags)


def map_f(out: _Out, blk: Backend, argv: list[str]) -> None:
    """map_f / map_is_allocated: runs of bdrv_is_allocated on the top node."""
    try:
        remaining = io.blk_getlength(blk)
    except io.BlockIOError as e:
        out.monitor(f"Failed to query image length: {os.strerror(e.errno)}\n")
        return
    bs = blk.bs
    assert bs is not None
    offset = 0
    lines: list[str] = []
    while remaining:
        try:
            first, num = io.bdrv_is_allocated(bs, offset, min(remaining,
                                                              BDRV_REQUEST_MAX_BYTES))
            pos, left = offset + num, remaining - num
            while left > 0 and num:
                ret, n = io.bdrv_is_allocated(bs, pos, min(left, BDRV_REQUEST_MAX_BYTES))
                if ret != first or not n:
                    break
                num += n
                pos += n
                left -= n
        except io.BlockIOError as e:
            out.stdout("".join(lines))
            out.monitor(f"Failed to get allocation status: {os.strerror(e.errno)}\n")
            return
        if not num:
            out.stdout("".join(lines))
            out.monitor("Unexpected end of image\n")
            return
        state = "    allocated" if first else "not allocated"
        lines.append(f"{cvtstr(float(num))} (0x{num:x}) bytes {state} at offset "
                     f"{cvtstr(float(offset))} (0x{offset:x})\n")
        offset += num
        remaining -= num
    out.stdout("".join(lines))


_RUN: dict[str, Callable[[_Out, Backend, list[str]], None]] = {
    "read": read_f, "write": write_f, "aio_write": aio_write_f, "aio_flush": aio_flush_f,
    "flush": flush_f, "discard": discard_f, "map": map_f,
}
