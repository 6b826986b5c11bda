"""Golden transcripts: read, replay against the real server, compare, regenerate.

The format is described in tests/golden/README.md. In short: a header of
`key: value` lines (the command line, where the expected behaviour comes from,
how to run it), then steps: `>` sends bytes, `@` directives connect, close, move
virtual time or expect an exit, and the `<` lines after a step are what each
client must have received because of it, CR LF framed, timestamps masked as `T`.

Two ways to replay:

- `replay_in_process`: the emulator's trio server (`vmm.server.Server`) on real
  unix/TCP sockets, in this process, on trio's MockClock. Time moves only at
  `@ +SECONDS`; after every step the runner waits until every task is blocked, so
  "what the client received" is exact, including "nothing".
- `replay_program`: the stand-alone program (`python -m vmm`) on a listening
  socket the runner binds and passes in with `fd=`; it checks every expected line
  in order (it cannot prove that nothing else arrives, and has no virtual time).

`QMP_EMU_REGEN_GOLDEN=1` rewrites each file's expected lines from what the
in-process replay produced (files with a `recorded:` header are never rewritten:
their lines come from a real QEMU).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import trio
import trio.testing

from tests import emulator

GOLDEN_DIR = Path(__file__).parent / "golden"
REGEN_ENV = "QMP_EMU_REGEN_GOLDEN"
HEADER_KEYS = ("command-line", "source", "runs", "recorded", "xfail", "setup")
SETUP_TOOLS = ("qemu-img",)  # what a `setup:` line may run (to make image files)
RUN_MODES = ("server", "program")
DEFAULT_MONITOR = "compat_monitor0"  # the chardev id QEMU gives `-qmp`'s first monitor
PROGRAM_TIMEOUT = 60.0  # a hang guard for the program replay, never a timing assertion

_TIMESTAMP = re.compile(rb'\{"seconds": -?\d+, "microseconds": -?\d+\}')
_PRETTY_TIMESTAMP = re.compile(
    rb'\{\r\n *"seconds": -?\d+,\r\n *"microseconds": -?\d+\r\n *\}')
_LINE = re.compile(r"^(?P<client>[A-Za-z0-9_]*)(?P<kind>[<>])(?P<flag>[$!]?)(?: (?P<text>.*))?$")
EOF = "EOF"
DIR = b"{dir}"  # stands for the scratch directory in sent and received bytes


class GoldenError(Exception):
    """A transcript file that does not follow the format; names the file and line."""


class Mismatch(AssertionError):
    """What the emulator wrote differs from the transcript."""


def mask(data: bytes, directory: Path | None = None) -> bytes:
    """Timestamps as the reference notes write them: `T` (compact and pretty); the
    transcript's scratch directory as `{dir}`."""
    data = _PRETTY_TIMESTAMP.sub(b"T", _TIMESTAMP.sub(b"T", data))
    if directory is not None:
        data = data.replace(str(directory).encode(), DIR)
    return data


def _with_dir(data: bytes, directory: Path) -> bytes:
    return data.replace(DIR, str(directory).encode())


# -- the $-escapes ---------------------------------------------------------------------------

_NAMED = {b"\\": "\\\\", b"\r": "\\r", b"\n": "\\n", b"\t": "\\t"}
_UNNAMED = {"\\": b"\\", "r": b"\r", "n": b"\n", "t": b"\t"}


def unescape(text: str, where: str) -> bytes:
    """`\\xHH`, `\\r`, `\\n`, `\\t`, `\\\\`; every other character as UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt in _UNNAMED:
            out += _UNNAMED[nxt]
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raise GoldenError(f"{where}: bad escape {text[i:i + 4]!r}")
    return bytes(out)


def escape(data: bytes) -> str:
    """The inverse of `unescape`, keeping printable ASCII as it is (but a trailing space)."""
    parts: list[str] = []
    for i, byte in enumerate(data):
        b = bytes([byte])
        if b in _NAMED:
            parts.append(_NAMED[b])
        elif 0x20 <= byte < 0x7F and not (byte == 0x20 and i == len(data) - 1):
            parts.append(chr(byte))
        else:
            parts.append(f"\\x{byte:02x}")
    return "".join(parts)


# -- the file --------------------------------------------------------------------------------


@attrs.frozen
class Expect:
    """What one client must receive: bytes (masked) or the end of the stream."""

    client: str
    data: bytes = b""
    eof: bool = False

    def render(self, current: str) -> str:
        who = "" if self.client == current else self.client
        if self.eof:
            return f"{who}<! {EOF}"
        if self.data.endswith(b"\r\n"):
            body = self.data[:-2]
            if all(0x20 <= b < 0x7F for b in body) and not body.endswith(b" "):
                return f"{who}< {body.decode()}"
        return f"{who}<$ {escape(self.data)}"


@attrs.define(kw_only=True)
class Step:
    """A send or a directive, with what every client receives because of it."""

    lineno: int
    kind: str          # "send", "connect", "close", "time", "exit", "client"
    client: str = ""   # the client it acts on (send, connect, close, client)
    data: bytes = b""  # send: the bytes
    arg: str = ""      # connect: the chardev id; time: seconds; exit: status
    expects: list[Expect] = attrs.Factory(list)
    current: str = ""  # the current client after this step (for rendering)


@attrs.define(kw_only=True)
class Transcript:
    path: Path
    header: dict[str, str]
    steps: list[Step]
    lines: list[str]
    roles: list[tuple[str, int]]  # per line: ("header"|"step"|"expect"|"other", step index)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.header["command-line"])

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.header.get("runs", "server").split())

    @property
    def recorded(self) -> bool:
        return "recorded" in self.header

    def setup(self, directory: Path) -> None:
        """Run the header's `setup:` commands (`;`-separated) in `directory`."""
        for command in self.header.get("setup", "").split(";"):
            words = [w.replace("{dir}", str(directory)) for w in shlex.split(command)]
            if not words:
                continue
            if words[0] not in SETUP_TOOLS:
                raise GoldenError(f"{self.path}: setup may run {', '.join(SETUP_TOOLS)}, "
                                  f"not {words[0]!r}")
            subprocess.run(words, cwd=directory, check=True, capture_output=True)

    @property
    def uses_time(self) -> bool:
        return any(s.kind == "time" for s in self.steps)


def parse(path: Path) -> Transcript:
    lines = path.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header: dict[str, str] = {}
    roles: list[tuple[str, int]] = []
    steps: list[Step] = []
    current = ""
    clients: set[str] = set()
    i = 0
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if not line.startswith("#"):
            key, sep, value = line.partition(":")
            if not sep or key not in HEADER_KEYS:
                raise GoldenError(f"{path}:{i + 1}: header line {line!r}: expected one of "
                                  f"{', '.join(HEADER_KEYS)}")
            header[key] = value.strip()
        roles.append(("header", -1))
        i += 1
    for key in ("command-line", "source"):
        if key not in header:
            raise GoldenError(f"{path}: header lacks '{key}:'")
    if "xfail" in header and "recorded" not in header:
        raise GoldenError(f"{path}: xfail: belongs on a recorded transcript only")
    for mode in header.get("runs", "server").split():
        if mode not in RUN_MODES:
            raise GoldenError(f"{path}: runs: {mode!r} is not one of {', '.join(RUN_MODES)}")
    for lineno in range(i + 1, len(lines) + 1):
        line = lines[lineno - 1]
        where = f"{path}:{lineno}"
        if not line.strip() or line.startswith("#"):
            roles.append(("other", len(steps) - 1))
            continue
        if line.startswith("@"):
            step = _directive(line[1:].strip(), lineno, where, current, clients)
            current = step.current
            steps.append(step)
            roles.append(("step", len(steps) - 1))
            continue
        m = _LINE.match(line)
        if m is None:
            raise GoldenError(f"{where}: not a step, an expectation or a comment: {line!r}")
        who = m["client"] or current
        if who not in clients:
            raise GoldenError(f"{where}: no client {who or '(none connected yet)'!r}")
        text = m["text"] or ""
        if m["kind"] == ">":
            if m["flag"] == "!":
                raise GoldenError(f"{where}: '>!' means nothing")
            data = unescape(text, where) if m["flag"] == "$" else text.encode()
            steps.append(Step(lineno=lineno, kind="send", client=who, data=data,
                              current=current))
            roles.append(("step", len(steps) - 1))
            continue
        if not steps:
            raise GoldenError(f"{where}: an expectation before any step")
        if m["flag"] == "!":
            if text != EOF:
                raise GoldenError(f"{where}: '<!' takes only {EOF}")
            expect = Expect(client=who, eof=True)
        elif m["flag"] == "$":
            expect = Expect(client=who, data=unescape(text, where))
        else:
            expect = Expect(client=who, data=text.encode() + b"\r\n")
        steps[-1].expects.append(expect)
        roles.append(("expect", len(steps) - 1))
    transcript = Transcript(path=path, header=header, steps=steps, lines=lines, roles=roles)
    if "program" in transcript.modes and transcript.uses_time:
        raise GoldenError(f"{path}: '@ +SECONDS' needs virtual time: runs: server only")
    return transcript


def _directive(text: str, lineno: int, where: str, current: str, clients: set[str]) -> Step:
    words = text.split()
    if not words:
        raise GoldenError(f"{where}: empty directive")
    verb, args = words[0], words[1:]
    if verb.startswith("+"):
        try:
            seconds = float(verb[1:])
        except ValueError:
            raise GoldenError(f"{where}: '@ +SECONDS' wants a number: {verb!r}") from None
        if not (math.isfinite(seconds) and seconds >= 0) or args:
            raise GoldenError(f"{where}: '@ +SECONDS' wants one non-negative number")
        return Step(lineno=lineno, kind="time", arg=verb[1:], current=current)
    if verb == "connect":
        if len(args) not in (1, 2):
            raise GoldenError(f"{where}: '@ connect NAME [CHARDEV]'")
        name = args[0]
        if name in clients:
            raise GoldenError(f"{where}: client {name!r} exists already")
        clients.add(name)
        return Step(lineno=lineno, kind="connect", client=name,
                    arg=args[1] if len(args) == 2 else DEFAULT_MONITOR, current=name)
    if verb in ("close", "client"):
        name = args[0] if args else current
        if len(args) > 1 or name not in clients:
            raise GoldenError(f"{where}: '@ {verb} NAME' names no client: {args}")
        if verb == "close":
            clients.discard(name)
            after = current if name != current else ""
            return Step(lineno=lineno, kind="close", client=name, current=after)
        return Step(lineno=lineno, kind="client", client=name, current=name)
    if verb == "exit":
        if len(args) != 1 or not args[0].isdigit():
            raise GoldenError(f"{where}: '@ exit STATUS'")
        return Step(lineno=lineno, kind="exit", arg=args[0], current=current)
    raise GoldenError(f"{where}: unknown directive {verb!r}")


def transcripts() -> Iterator[Transcript]:
    for path in sorted(GOLDEN_DIR.glob("*.golden")):
        yield parse(path)


def regenerating() -> bool:
    return os.environ.get(REGEN_ENV, "") not in ("", "0")


# -- comparing -------------------------------------------------------------------------------


def _render(expects: list[Expect], current: str) -> str:
    return "\n".join(e.render(current) for e in expects) or "(nothing)"


def _check(t: Transcript, step: Step, got: list[Expect]) -> None:
    if _per_client(got) != _per_client(step.expects):
        raise Mismatch(f"{t.path}:{step.lineno}: after this step expected\n"
                       f"{_render(step.expects, step.current)}\n"
                       f"but the emulator wrote\n{_render(got, step.current)}")


def _per_client(expects: list[Expect]) -> dict[str, list[Expect]]:
    """Each client's expectations in canonical form (one CR LF framed chunk each),
    whatever order the file lists the clients in and however it wrapped `<$` lines."""
    blobs: dict[str, list[tuple[bytes, bool]]] = {}
    for e in expects:
        runs = blobs.setdefault(e.client, [])
        if not e.eof and runs and not runs[-1][1]:
            runs[-1] = (runs[-1][0] + e.data, False)
        else:
            runs.append((e.data, e.eof))
    return {client: [x for data, eof in runs for x in _split(client, data, eof)]
            for client, runs in blobs.items()}


def _split(client: str, data: bytes, eof: bool) -> list[Expect]:
    """Cut what one client received into CR LF framed chunks (and the end, if any)."""
    if eof:
        return [Expect(client=client, eof=True)]
    out: list[Expect] = []
    while data:
        end = data.find(b"\r\n")
        chunk, data = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
        out.append(Expect(client=client, data=chunk))
    return out


def rewrite(t: Transcript, actual: list[list[Expect]]) -> None:
    """Replace each step's expectation lines by what the emulator wrote."""
    out: list[str] = []
    placed: set[int] = set()
    for line, (role, index) in zip(t.lines, t.roles, strict=True):
        if role == "expect":
            if index not in placed:
                placed.add(index)
                out.extend(e.render(t.steps[index].current) for e in actual[index])
            continue
        out.append(line)
        if role == "step" and not t.steps[index].expects:
            placed.add(index)
            out.extend(e.render(t.steps[index].current) for e in actual[index])
    t.path.write_text("\n".join(out) + "\n")


# -- in-process replay on the MockClock -------------------------------------------------------


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False  # by us
        self.eof = False     # by the server

    def take(self) -> tuple[bytes, bool]:
        """Everything the kernel holds for us now, and whether the server closed."""
        data = b""
        if self.closed or self.eof:
            return data, False
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return data, False
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                return data, True
            data += chunk


def _argv_with_monitor(argv: list[str], directory: Path) -> list[str]:
    argv = [a.replace("{dir}", str(directory)) for a in argv]
    if not any(a in ("-qmp", "-mon", "-monitor") for a in argv):
        argv += ["-qmp", f"unix:{directory}/qmp.sock,server,nowait"]
    if "--emu-strict" not in argv:
        argv.append("--emu-strict")
    return argv


_settle = emulator.settle


async def _advance(clock: trio.testing.MockClock, seconds: float) -> None:
    """Move virtual time, stopping at each deadline on the way so that every timer
    runs at its own time (as it would with a real clock)."""
    target = trio.current_time() + seconds
    for _ in range(100_000):
        await _settle()
        ahead = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if trio.current_time() + ahead > target:
            break
        clock.jump(max(ahead, 0.0))
    else:
        raise RuntimeError("virtual time does not settle: a timer re-arms itself at once")
    clock.jump(max(target - trio.current_time(), 0.0))
    await _settle()


async def replay_in_process(t: Transcript, clock: trio.testing.MockClock,
                            directory: Path) -> list[list[Expect]]:
    """Replay on the in-process server; return what each step produced.

    Raises Mismatch at the first step whose output differs (unless regenerating).
    """
    regen = regenerating() and not t.recorded
    t.setup(directory)
    built = emulator.build_from_argv(_argv_with_monitor(t.argv, directory),
                                     emulator.mock_clock())
    exit_status: list[int] = []
    actual: list[list[Expect]] = []
    clients: dict[str, _Client] = {}
    order: list[str] = []
    failure: Mismatch | GoldenError | None = None
    async with trio.open_nursery() as nursery:
        _, addresses = await emulator.serve(nursery, built.vm, built.monitors,
                                            exited=exit_status.append, qtest=built.qtest)
        built.start()
        where = {a.chardev: a for a in addresses}
        try:
            for step in t.steps:
                if step.kind == "send":
                    await _send(clients[step.client].sock, _with_dir(step.data, directory))
                elif step.kind == "connect" and step.arg.startswith("unix:"):
                    # A raw client of a socket that is not a chardev (a VNC display).
                    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    raw.connect(_with_dir(step.arg[5:].encode(), directory).decode())
                    raw.setblocking(False)
                    clients[step.client] = _Client(raw)
                    order.append(step.client)
                elif step.kind == "connect":
                    if step.arg not in where:
                        raise GoldenError(f"{t.path}:{step.lineno}: no chardev {step.arg!r}; "
                                          f"there are {sorted(where)}")
                    clients[step.client] = _Client(_connect(where[step.arg]))
                    order.append(step.client)
                elif step.kind == "close":
                    client = clients.pop(step.client)
                    client.closed = True
                    client.sock.close()
                    order.remove(step.client)
                elif step.kind == "time":
                    await _advance(clock, float(step.arg))
                await _settle()
                if step.kind == "exit":
                    if exit_status != [int(step.arg)]:
                        seen = f"it exited with {exit_status[0]}" if exit_status else \
                            "it is still running"
                        raise Mismatch(f"{t.path}:{step.lineno}: expected the emulator to "
                                       f"have exited with status {step.arg}; {seen}")
                got: list[Expect] = []
                for name in order:
                    data, eof = clients[name].take()
                    got += _split(name, mask(data, directory), False)
                    if eof:
                        got.append(Expect(client=name, eof=True))
                actual.append(got)
                if not regen:
                    _check(t, step, got)
        except (Mismatch, GoldenError) as err:
            failure = err  # raised outside the nursery, not inside an ExceptionGroup
        for client in clients.values():
            client.sock.close()
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return actual


def _connect(address: emulator.BoundAddress) -> socket.socket:
    family = {"unix": socket.AF_UNIX, "inet": socket.AF_INET,
              "inet6": socket.AF_INET6}[address.family]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect(address.address)  # a listening socket: the kernel completes it at once
    sock.setblocking(False)
    return sock


async def _send(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await _settle()  # the server reads while we wait
            continue
        view = view[sent:]


# -- the stand-alone program ---------------------------------------------------------------


def replay_program(t: Transcript, directory: Path) -> None:
    """Replay on `python -m vmm`: each expected line must arrive, in order."""
    if any(a in ("-qmp", "-mon", "-monitor", "-chardev") for a in t.argv):
        raise GoldenError(f"{t.path}: the program replay adds its own monitor; "
                          f"give the command line without one")
    t.setup(directory)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / "program.sock"))
    listener.listen(8)
    fd = listener.fileno()
    argv = [a.replace("{dir}", str(directory)) for a in t.argv] + [
        "-chardev", f"socket,id={DEFAULT_MONITOR},fd={fd},server,nowait",
        "-mon", f"chardev={DEFAULT_MONITOR},mode=control", "--emu-strict"]
    proc = subprocess.Popen([*emulator.program_command(), *argv], pass_fds=(fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=emulator.program_env(directory / "cache"), cwd=directory)
    listener.close()
    clients: dict[str, tuple[socket.socket, bytearray]] = {}
    try:
        for step in t.steps:
            if step.kind == "connect":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(PROGRAM_TIMEOUT)
                sock.connect(str(directory / "program.sock"))
                clients[step.client] = (sock, bytearray())
            elif step.kind == "send":
                clients[step.client][0].sendall(_with_dir(step.data, directory))
            elif step.kind == "close":
                clients.pop(step.client)[0].close()
            elif step.kind == "exit":
                status = proc.wait(timeout=PROGRAM_TIMEOUT)
                if status != int(step.arg):
                    raise Mismatch(f"{t.path}:{step.lineno}: exit status {status}, "
                                   f"expected {step.arg}")
            for expect in step.expects:
                sock, buf = clients[expect.client]
                _receive(t, step, sock, buf, expect, directory)
    finally:
        for sock, _ in clients.values():
            sock.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=PROGRAM_TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()


def _receive(t: Transcript, step: Step, sock: socket.socket, buf: bytearray,
             expect: Expect, directory: Path) -> None:
    """Read until `expect` is complete at the front of `buf`, then consume it."""
    def fail(why: str) -> Mismatch:
        return Mismatch(f"{t.path}:{step.lineno}: expected "
                        f"{expect.render(expect.client)!r}, {why}: {bytes(buf)!r}")

    while True:
        if expect.eof:
            if buf:
                raise fail("but more output came first")
        else:
            size = _prefix_size(bytes(buf), expect.data)
            if size is not None:
                if mask(bytes(buf[:size]), directory) != expect.data:
                    raise fail("got")
                del buf[:size]
                return
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise fail(f"nothing more came in {PROGRAM_TIMEOUT} s") from None
        if not chunk:
            if expect.eof:
                return
            raise fail("but the connection ended after")
        buf += chunk


def _prefix_size(buf: bytes, expected: bytes) -> int | None:
    """How many bytes of `buf` stand for `expected` (the same number of CR LF framed
    lines, then the unterminated tail); None while they have not all arrived."""
    pos = 0
    for _ in range(expected.count(b"\r\n")):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        pos = end + 2
    tail = len(expected) - (expected.rfind(b"\r\n") + 2 if b"\r\n" in expected else 0)
    return pos + tail if len(buf) >= pos + tail else None
