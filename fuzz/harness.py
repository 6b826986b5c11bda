"""The fuzzing harness: drives the installed program with every kind of input and
counts what went wrong.

The I/O edge of `fuzz` (processes, sockets, timeouts on the real clock). A target is
one emulator process started as a user starts it (`qmp-emulator --emu-strict ...`,
so that any internal error ends it), with two QMP monitors on unix sockets in a
sandbox directory that is also its working directory: one for the commands and the
byte-level inputs, one for disconnects and liveness probes. What counts as a
finding:

- crash: the target exited when nothing asked it to (under --emu-strict an internal
  error exits with status 1), or a command line ended with a status other than
  QEMU's 0 and 1;
- hang: no reply within `timeout` seconds (the reply to an input, or to the probe
  that follows it);
- traceback: a Python traceback on the target's stderr;
- schema violation: a reply or event the schema does not allow (schema.output);
- internal error: an error reply naming an internal error.

Near misses whose error text differs from the one QEMU's visitor gives are counted
too (`near-miss texts`), but they are a fidelity measure, not a failure.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from fuzz.inputs import (
    DISCONNECT_STAGES,
    CommandPool,
    byte_inputs,
    cap_sizes,
    command_lines,
    sandbox_paths,
)
from schema.model import Schema
from schema.output import OutputMismatch, check_event, check_return
from schema.qobject import from_json

KINDS = ("bytes", "commands", "disconnects", "cmdline")
FAILURES = ("crashes", "hangs", "tracebacks", "schema violations", "internal errors")


@attrs.define
class Counts:
    inputs: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(KINDS, 0))
    crashes: int = 0
    hangs: int = 0
    tracebacks: int = 0
    schema_violations: int = 0
    internal_errors: int = 0
    near_miss_texts: int = 0
    peak_rss_kib: int = 0
    examples: list[str] = attrs.Factory(list)

    def failures(self) -> int:
        return (self.crashes + self.hangs + self.tracebacks + self.schema_violations
                + self.internal_errors)

    def note(self, what: str, detail: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(f"{what}: {detail[:300]}")

    def report(self) -> str:
        lines = [f"inputs: {sum(self.inputs.values())} (" +
                 ", ".join(f"{k} {v}" for k, v in self.inputs.items()) + ")"]
        for name in FAILURES:
            lines.append(f"{name}: {getattr(self, name.replace(' ', '_'))}")
        lines.append(f"near-miss texts differing: {self.near_miss_texts}")
        lines.append(f"peak RSS: {self.peak_rss_kib / 1024:.1f} MiB")
        lines += [f"  {e}" for e in self.examples]
        return "\n".join(lines)


class Hang(Exception):
    pass


class Gone(Exception):
    """The target closed the connection or exited."""


class Connection:
    """A blocking QMP client with a deadline per read."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                return
            except (ConnectionRefusedError, BlockingIOError) as e:
                # the chardev's backlog (listen(fd, 1), as QEMU's) is full while the
                # server is still with the previous client: QEMU refuses the same way
                if time.monotonic() >= deadline:
                    self.sock.close()
                    raise Hang(f"not accepted: {e}") from None
                time.sleep(0.001)
            except OSError as e:
                self.sock.close()
                raise Gone(str(e)) from None

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise Hang("send blocked") from None
        except OSError as e:
            raise Gone(str(e)) from None

    def line(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise Hang("no reply") from None
            except OSError as e:
                raise Gone(str(e)) from None
            if not data:
                raise Gone("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            value = json.loads(line)
        except (RecursionError, ValueError):
            parsed = from_json(line)  # iterative: an echoed id nests 1 023 deep
            if not parsed.ok:
                raise ValueError(f"not JSON: {line[:80]!r}") from None
            value = parsed.value
        if not isinstance(value, dict):
            raise ValueError(f"not a JSON object: {line[:80]!r}")
        return value

    def negotiate(self) -> None:
        self.line()
        self.send(b'{"execute":"qmp_capabilities"}\n')
        while "return" not in self.line():
            pass

    def close(self, *, reset: bool = False) -> None:
        if reset:  # an abrupt close: RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.sock.close()


class Target:
    """One emulator process under test, in the sandbox."""

    def __init__(self, program: list[str], sandbox: Path, counts: Counts,
                 timeout: float) -> None:
        self.program = program
        self.sandbox = sandbox
        self.counts = counts
        self.timeout = timeout
        self.main = sandbox / "main.sock"
        self.aux = sandbox / "aux.sock"
        self.stderr_path = sandbox / "stderr.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_seen = 0

    def start(self) -> None:
        for path in (self.main, self.aux):
            path.unlink(missing_ok=True)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [*self.program, "--emu-strict", "-nodefaults", "-display", "none",
                 "-no-shutdown", "-qmp", f"unix:{self.main},server,nowait",
                 "-qmp", f"unix:{self.aux},server,nowait"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                cwd=self.sandbox)
        deadline = time.monotonic() + max(self.timeout, 30.0)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.counts.crashes += 1
                self.counts.note("crash", f"start-up exited {self.proc.returncode}")
                raise Gone("exited at start-up")
            if self.aux.exists() and self.main.exists():
                return
            time.sleep(0.01)
        self.counts.hangs += 1
        raise Hang("never listened")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample(self) -> None:
        """Peak RSS so far, and any new traceback on stderr."""
        if self.proc is None:
            return
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        self.counts.peak_rss_kib = max(self.counts.peak_rss_kib, kib)
        except OSError:
            pass
        with open(self.stderr_path, "rb") as f:
            f.seek(self.stderr_seen)
            new = f.read()
        self.stderr_seen += len(new)
        if b"Traceback" in new:
            self.counts.tracebacks += new.count(b"Traceback (most recent call last)")
            self.counts.note("traceback", new[-600:].decode(errors="replace"))
        if b"internal error" in new:
            self.counts.internal_errors += new.count(b"internal error")
            self.counts.note("internal error", new[-300:].decode(errors="replace"))

    def probe(self) -> None:
        """The target still serves: query-status on the auxiliary monitor."""
        conn = Connection(self.aux, self.timeout)
        try:
            conn.negotiate()
            conn.send(b'{"execute":"query-status","id":"probe"}\n')
            while conn.line().get("id") != "probe":
                pass
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.alive():
            try:
                conn = Connection(self.aux, self.timeout)
                conn.negotiate()
                conn.send(b'{"execute":"quit"}\n')
                conn.close()
            except (Gone, Hang, ValueError):
                pass
            try:
                self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.counts.hangs += 1
                self.counts.note("hang", "quit did not end the target")
                self.proc.kill()
                self.proc.wait()
        self.sample()
        self.proc = None


class Fuzzer:
    def __init__(self, program: list[str], schema: Schema, *, seed: int,
                 timeout: float, sandbox: Path) -> None:
        self.program = program
        self.schema = schema
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.sandbox = sandbox
        self.counts = Counts()
        self.target = Target(program, sandbox, self.counts, timeout)
        self._pool: CommandPool | None = None
        self._bytes = byte_inputs(self.rng)
        self._cmdlines: Iterator[list[str]] | None = None

    # -- targets --------------------------------------------------------------------

    def _ensure_target(self) -> None:
        if not self.target.alive():
            if self.target.proc is not None:
                code = self.target.proc.returncode
                self.target.sample()
                self.counts.crashes += 1
                self.counts.note("crash", f"target exited {code}")
                self.target.proc = None
            self.target.start()

    def _connect(self) -> Connection:
        self._ensure_target()
        conn = Connection(self.target.main, self.timeout)
        conn.negotiate()
        return conn

    def _failed(self, kind: str, err: Exception, what: str) -> None:
        if isinstance(err, Hang):
            self.counts.hangs += 1
            self.counts.note("hang", f"{kind}: {what}")
            if self.target.proc is not None:
                self.target.proc.kill()
                self.target.proc.wait()
                self.target.proc = None
        # Gone: _ensure_target counts the crash when it restarts the target

    # -- checks ---------------------------------------------------------------------

    def _check(self, reply: dict[str, Any], name: str | None,
               expected: str | None = None) -> None:
        if "event" in reply:
            event = self.schema.events.get(reply["event"])
            try:
                if event is None:
                    raise OutputMismatch("event", f"unknown event {reply['event']}")
                check_event(event, reply.get("data"))
            except OutputMismatch as e:
                self.counts.schema_violations += 1
                self.counts.note("schema violation", f"{reply['event']}: {e}")
            return
        if "error" in reply:
            desc = str(reply["error"].get("desc", ""))
            if "internal error" in desc:
                self.counts.internal_errors += 1
                self.counts.note("internal error", f"{name}: {desc}")
            elif (expected is not None and desc != expected
                  and reply["error"].get("class") != "CommandNotFound"):
                # (a command of the schema this target does not have, such as s390's
                # dump-skeys, is CommandNotFound before its arguments are looked at)
                self.counts.near_miss_texts += 1
            return
        if "return" in reply and name is not None and name in self.schema.commands:
            try:
                check_return(self.schema.commands[name], reply["return"])
            except OutputMismatch as e:
                self.counts.schema_violations += 1
                self.counts.note("schema violation", f"{name}: {e}")

    # -- kinds ----------------------------------------------------------------------

    def run_commands(self, n: int) -> None:
        """`n` schema-drawn commands in pipelined sequences of 1-25."""
        if self._pool is None:
            self._pool = CommandPool(self.schema, self.rng)
        pool = self._pool
        sandbox = str(self.sandbox)
        done = 0
        conn: Connection | None = None
        while done < n:
            if len(pool.entries) < 500 or self.rng.random() < 0.002:
                pool.refill(500)
            batch = [pool.sample() for _ in range(min(self.rng.randint(1, 25), n - done))]
            try:
                if conn is None:
                    conn = self._connect()
                data = b"".join(
                    json.dumps({"execute": name,
                                "arguments": sandbox_paths(cap_sizes(name, args), sandbox),
                                "id": i}).encode() + b"\n"
                    for i, (name, args, _) in enumerate(batch))
                conn.send(data)
                waiting = set(range(len(batch)))
                while waiting:
                    reply = conn.line()
                    ident = reply.get("id")
                    if isinstance(ident, int) and ident in waiting:
                        waiting.discard(ident)
                        self._check(reply, batch[ident][0], batch[ident][2])
                    else:
                        self._check(reply, None)
            except (Hang, Gone) as err:
                self._failed("commands", err, ", ".join(b[0] for b in batch))
                if conn is not None:
                    conn.close()
                conn = None
            done += len(batch)
            self.counts.inputs["commands"] += len(batch)
        if conn is not None:
            conn.close()
        self.target.sample()

    def run_bytes(self, n: int) -> None:
        """`n` byte-level inputs, each followed by 0xFF (which resets QEMU's JSON
        lexer in any state) and a probe request whose reply must come back; sent in
        pipelined batches of up to 20."""
        conn: Connection | None = None
        done = 0
        while done < n:
            batch = [next(self._bytes) for _ in range(min(20, n - done))]
            base = self.counts.inputs["bytes"]
            try:
                if conn is None:
                    conn = self._connect()
                conn.send(b"".join(
                    data + b"\n\xff\n" + b'{"execute":"query-status","id":"sync-%d"}\n' % (base + i)
                    for i, data in enumerate(batch)))
                expect = base
                while expect < base + len(batch):
                    reply = conn.line()
                    if reply.get("id") == f"sync-{expect}":
                        self._check(reply, "query-status")
                        expect += 1
                    else:
                        self._check(reply, None)
            except (Hang, Gone) as err:
                self._failed("bytes", err, " | ".join(repr(d[:40]) for d in batch))
                if conn is not None:
                    conn.close()
                conn = None
            except ValueError as err:  # a line that is not JSON
                self.counts.schema_violations += 1
                self.counts.note("schema violation", f"bytes: not JSON: {err}")
            done += len(batch)
            self.counts.inputs["bytes"] += len(batch)
        if conn is not None:
            conn.close()
        self.target.sample()

    def run_disconnects(self, n: int) -> None:
        """`n` clients that vanish at some stage; the target must keep serving."""
        for k in range(n):
            stage = DISCONNECT_STAGES[self.rng.randrange(len(DISCONNECT_STAGES))]
            try:
                self._ensure_target()
                conn = Connection(self.target.aux, self.timeout)
                if stage != "connect":
                    conn.line()
                if stage == "half-negotiation":
                    conn.send(b'{"execute":"qmp_capa')
                elif stage in ("negotiated", "half-request", "unread-reply", "unread-burst"):
                    conn.send(b'{"execute":"qmp_capabilities"}\n')
                    conn.line()
                    if stage == "half-request":
                        conn.send(b'{"execute":"query-block","argu')
                    elif stage == "unread-reply":
                        conn.send(b'{"execute":"stop"}{"execute":"cont"}')
                    elif stage == "unread-burst":
                        conn.send(b'{"execute":"query-qmp-schema"}' * 3)
                conn.close(reset=self.rng.random() < 0.5)
                if k % 10 == 9:
                    self.target.probe()
            except (Hang, Gone) as err:
                self._failed("disconnects", err, stage)
            self.counts.inputs["disconnects"] += 1
        self.target.sample()

    def run_cmdlines(self, n: int) -> None:
        """`n` mutated command lines, each its own process: it must refuse the line
        with status 1, or start (then `quit` ends it with 0), in QEMU's manner."""
        if self._cmdlines is None:
            from vmm.cmdline.table import OPTIONS

            self._cmdlines = command_lines(
                self.rng, [(name, opt.has_arg) for name, opt in OPTIONS.items()])
        sandbox = str(self.sandbox)
        for _ in range(n):
            argv = [sandbox_paths(a, sandbox) for a in next(self._cmdlines)]
            self._one_cmdline(argv)
            self.counts.inputs["cmdline"] += 1

    def _one_cmdline(self, argv: list[str]) -> None:
        sock = self.sandbox / "cl.sock"
        sock.unlink(missing_ok=True)
        proc = subprocess.Popen([*self.program, *argv, "-qmp", f"unix:{sock},server,nowait"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=self.sandbox)
        assert proc.stderr is not None
        err = b""
        deadline = time.monotonic() + self.timeout
        greeted = False
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stderr], [], [], 0.02)
            if ready:
                err += os.read(proc.stderr.fileno(), 1 << 16)
            if b"waiting for connection" in err:
                greeted = True  # a server,wait chardev: QEMU waits too
                break
            if sock.exists():
                try:
                    conn = Connection(sock, self.timeout)
                    conn.negotiate()
                    conn.send(b'{"execute":"quit"}\n')
                    conn.close()
                    greeted = True
                    break
                except (Gone, Hang, ValueError):
                    pass
        try:
            _, rest = proc.communicate(timeout=self.timeout if greeted else 1.0)
            err += rest
        except subprocess.TimeoutExpired:
            proc.kill()
            _, rest = proc.communicate()
            err += rest
            if b"waiting for connection" not in err and not greeted:
                self.counts.hangs += 1
                self.counts.note("hang", f"cmdline: {argv}")
            return
        if b"Traceback" in err:
            self.counts.tracebacks += 1
            self.counts.note("traceback", f"cmdline {argv}: {err[-400:].decode(errors='replace')}")
        elif proc.returncode not in (0, 1) and not greeted:
            self.counts.crashes += 1
            self.counts.note("crash", f"cmdline {argv}: exit {proc.returncode}")


def run(program: list[str], schema: Schema, *, inputs: int, seconds: float | None,
        kinds: tuple[str, ...], seed: int, timeout: float,
        sandbox: Path | None = None, progress: bool = False) -> Counts:
    """Fuzz until `inputs` inputs have been sent (or `seconds` have passed), in
    rounds that mix the kinds; return the counts."""
    own = sandbox is None
    box = Path(tempfile.mkdtemp(prefix="qmp-fuzz-")) if sandbox is None else sandbox
    fuzzer = Fuzzer(program, schema, seed=seed, timeout=timeout, sandbox=box)
    weights = {"bytes": 150, "commands": 800, "disconnects": 40, "cmdline": 2}
    start = time.monotonic()
    try:
        while sum(fuzzer.counts.inputs.values()) < inputs:
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            for kind in kinds:
                left = inputs - sum(fuzzer.counts.inputs.values())
                if left <= 0:
                    break
                share = max(1, min(weights[kind], left))
                getattr(fuzzer, {"bytes": "run_bytes", "commands": "run_commands",
                                 "disconnects": "run_disconnects",
                                 "cmdline": "run_cmdlines"}[kind])(share)
            if progress:
                total = sum(fuzzer.counts.inputs.values())
                print(f"\r{total} inputs, {fuzzer.counts.failures()} failures, "
                      f"{time.monotonic() - start:.0f} s", end="", file=sys.stderr, flush=True)
    finally:
        fuzzer.target.stop()
        if progress:
            print(file=sys.stderr)
        if own:
            shutil.rmtree(box, ignore_errors=True)
    return fuzzer.counts


def main(argv: list[str] | None = None) -> int:
    import argparse
    import shlex

    from schema.loader import load_schema

    parser = argparse.ArgumentParser(
        prog="qmp-emulator-fuzz",
        description="Fuzz the installed qmp-emulator and count what breaks.")
    parser.add_argument("--inputs", type=int, default=10_000,
                        help="how many inputs to send in total (default 10000)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds, whatever the count")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds without a reply that count as a hang")
    parser.add_argument("--program", default=None,
                        help="the emulator's command (default: qmp-emulator next to "
                             "this interpreter, else python -m vmm)")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}")
    if args.program:
        program = shlex.split(args.program)
    else:
        script = Path(sys.executable).parent / "qmp-emulator"
        program = [str(script)] if script.exists() else [sys.executable, "-m", "vmm"]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}", file=sys.stderr)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    counts = run(program, load_schema(), inputs=args.inputs, seconds=args.seconds,
                 kinds=kinds, seed=seed, timeout=args.timeout, progress=True)
    print(counts.report())
    return 1 if counts.failures() else 0
