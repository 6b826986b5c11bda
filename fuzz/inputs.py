"""What the fuzzing harness sends: byte-level inputs, schema-drawn commands, command
lines and disconnect stages.

Pure generators over a `random.Random` (and, for commands, the schema's Hypothesis
strategies, `schema.strategies`): nothing here touches a process or a socket
(`fuzz.harness` does). Every generator is deterministic for a given seed, so a
finding can be replayed with `--seed`.

Paths: a fuzzed command or command line may name files (pmemsave, snapshot
overlays, pid files, chardev files). The emulator writes real files, so every
absolute path an input carries is moved under the harness's sandbox directory
(`sandbox_paths`), and the target runs with the sandbox as its working directory:
a fuzzing run never writes outside it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from schema.model import Schema

# The JSON reader's limits (schema.qobject.streamer, QEMU's json-streamer.c).
MAX_NESTING = 1024
MAX_TOKEN = 64 << 20

# Commands the harness does not send: `quit` ends the target (the harness quits it
# itself at the end of a run).
EXCLUDED_COMMANDS = frozenset({"quit"})

# Commands that write as many bytes as they are asked to, as QEMU's do (pmemsave of
# 2^63 bytes fills the disk in QEMU too): their sizes are kept to a megabyte.
SIZE_CAPPED = {"memsave": "size", "pmemsave": "size", "dump-guest-memory": "length"}
SIZE_CAP = 1 << 20


def cap_sizes(name: str, args: dict[str, Any]) -> dict[str, Any]:
    member = SIZE_CAPPED.get(name)
    if member is None:
        return args
    value = args.get(member)
    if isinstance(value, int) and not isinstance(value, bool) and value > SIZE_CAP:
        return {**args, member: value % SIZE_CAP}
    return args


# Options a mutated command line never gets: they detach (-daemonize) or wait
# for a peer that never comes (-incoming); the harness cannot tell those from hangs.
EXCLUDED_OPTIONS = frozenset({"daemonize", "incoming"})


def sandbox_paths(value: Any, sandbox: str) -> Any:
    """`value` with every absolute path in its strings moved under `sandbox`
    (`/x` -> `SANDBOX/x`, `file:/x` -> `file:SANDBOX/x`)."""
    if isinstance(value, str):
        if value.startswith("/"):
            value = sandbox + value
        return value.replace(":/", ":" + sandbox + "/") if ":/" in value else value
    if isinstance(value, list):
        return [sandbox_paths(v, sandbox) for v in value]
    if isinstance(value, dict):
        return {k: sandbox_paths(v, sandbox) for k, v in value.items()}
    return value


# -- byte-level inputs -----------------------------------------------------------------


def _nest(rng: random.Random) -> bytes:
    """Nesting at and around the reader's limit, in arrays, objects or both."""
    depth = rng.choice([MAX_NESTING - 2, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1,
                        rng.randint(1, 2 * MAX_NESTING)])
    kind = rng.randrange(3)
    if kind == 0:
        return b"[" * depth + b"]" * depth
    if kind == 1:
        return b'{"a":' * depth + b"1" + b"}" * depth
    inner = b'{"execute":"query-status","id":' + b"[" * depth + b"]" * depth + b"}"
    return inner


def _garbage(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))


def _truncated(rng: random.Random) -> bytes:
    req = json.dumps({"execute": rng.choice(["query-status", "stop", "cont", "query-block"]),
                      "arguments": {"x": rng.random()}, "id": rng.randint(0, 9)}).encode()
    return req[:rng.randint(0, len(req))]


def _bad_utf8(rng: random.Random) -> bytes:
    bad = rng.choice([b"\xc0\x80", b"\xed\xa0\x80", b"\xf5\x80\x80\x80", b"\x80",
                      b"\xe2\x82", b"\xff\xfe", b"\x00"])
    return b'{"execute":"' + bad + b'","id":"' + bad + b'"}'


def _odd_json(rng: random.Random) -> bytes:
    atoms = [b"1e400", b"-0", b"9223372036854775808", b"-9223372036854775809",
             b"18446744073709551616", b"0x10", b"01", b"1.", b".5", b"nan", b"inf",
             b"true", b"null", b"'single'", b'"\\u0000"', b'"\\ud800"', b'"\\x41"',
             b"%d", b"%s", b'"a\x01b"', b"{}", b"[]", b'"execute"']
    parts = [rng.choice(atoms) for _ in range(rng.randint(1, 6))]
    seps = [b",", b":", b" ", b"", b"{", b"}", b"[", b"]"]
    return b"".join(p + rng.choice(seps) for p in parts)


def _flipped(rng: random.Random) -> bytes:
    data = bytearray(json.dumps({"execute": "query-status", "id": 1}).encode())
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _huge_token(rng: random.Random) -> bytes:
    """A token at or just past the 64 MiB limit: rare, it costs 64 MiB to send."""
    size = MAX_TOKEN + rng.choice([-1, 0, 1])
    kind = rng.randrange(3)
    if kind == 0:
        return b'"' + b"a" * size + b'"'
    if kind == 1:
        return b"1" * size + b" "
    return b" " * size


BYTE_GENERATORS: tuple[tuple[Callable[[random.Random], bytes], int], ...] = (
    (_garbage, 30), (_truncated, 20), (_nest, 10), (_bad_utf8, 15), (_odd_json, 20),
    (_flipped, 20),
)


def byte_inputs(rng: random.Random, *, huge_every: int = 50_000) -> Iterator[bytes]:
    gens = [g for g, w in BYTE_GENERATORS for _ in range(w)]
    n = 0
    while True:
        n += 1
        if huge_every and n % huge_every == 0:
            yield _huge_token(rng)
        else:
            yield rng.choice(gens)(rng)


# -- schema-drawn commands ---------------------------------------------------------------


class CommandPool:
    """Commands drawn from the schema: `(name, arguments, expected error or None)`,
    valid ones and near misses with the text QEMU's input visitor gives
    (schema.strategies). Drawing with Hypothesis costs about a millisecond, so the
    pool is drawn in rounds and sampled in between."""

    def __init__(self, schema: Schema, rng: random.Random) -> None:
        from schema.strategies import Strategies

        self.schema = schema
        self.rng = rng
        self.strategies = Strategies(schema)
        self.names = sorted(n for n, c in schema.commands.items()
                            if n not in EXCLUDED_COMMANDS)
        self.entries: list[tuple[str, dict[str, Any], str | None]] = []

    def refill(self, count: int) -> None:
        """Draw `count` more commands (half valid, half near misses)."""
        from hypothesis import HealthCheck, Phase, given, seed, settings
        from hypothesis import strategies as st

        drawn: list[tuple[str, dict[str, Any], str | None]] = []
        names = st.sampled_from(self.names)

        @seed(self.rng.getrandbits(64))
        @settings(max_examples=count, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.data())
        def draw(data: st.DataObject) -> None:
            name = data.draw(names)
            cmd = self.schema.commands[name]
            if cmd.arg_type is not None and data.draw(st.booleans()):
                args, error = data.draw(self.strategies.near_misses(cmd, depth=3))
                drawn.append((name, args, error))
            else:
                drawn.append((name, data.draw(self.strategies.arguments(cmd, depth=3)), None))

        draw()
        self.entries.extend(drawn)
        if len(self.entries) > 20 * count:
            del self.entries[: len(self.entries) - 20 * count]

    def sample(self) -> tuple[str, dict[str, Any], str | None]:
        return self.entries[self.rng.randrange(len(self.entries))]


# -- command lines -----------------------------------------------------------------------

_VALUES = ["", "x", "0", "1", "-1", "on", "off", "help", "?", "1k", "99999999999999999999",
           "id=a", "id=a,id=b", "a=b=c", ",,,", "file=/img", "driver=null-co",
           "if=none,id=d0,driver=null-co", "socket,id=c0,path=/s,server,nowait",
           "unix:/m,server,nowait", "pc", "q35", "none", "help", "128", "0x10", "1G",
           "tcp::0,server,nowait", "null,id=n0", "stdio", "user,id=n1", "/p",
           "secret,id=s0,data=x", "qtest", "virtio-net-pci,netdev=n1", "json:{}",
           '{"driver":"null-co","node-name":"a"}', "{", "[" * 600 + "]" * 600]


def command_lines(rng: random.Random, options: list[tuple[str, bool]]) -> Iterator[list[str]]:
    """Mutated command lines: a few options of QEMU's table with values drawn from
    `_VALUES` (or taken from another option), dropped, repeated or shuffled."""
    usable = [(n, a) for n, a in options if n not in EXCLUDED_OPTIONS]
    base = ["-nodefaults", "-display", "none", "-S"]
    while True:
        argv = list(base)
        for _ in range(rng.randint(1, 5)):
            name, has_arg = rng.choice(usable)
            argv.append("-" + name)
            if has_arg or rng.random() < 0.1:
                argv.append(rng.choice(_VALUES))
        mutation = rng.randrange(5)
        if mutation == 0 and len(argv) > 1:
            del argv[rng.randrange(len(argv))]
        elif mutation == 1:
            argv.insert(rng.randrange(len(argv) + 1), rng.choice(argv))
        elif mutation == 2:
            rng.shuffle(argv)
        yield argv


# -- disconnects -------------------------------------------------------------------------

# Where a client may vanish: before reading the greeting, right after it, in the
# middle of negotiation, with half a request sent, with a request sent and its
# reply unread, with events pending, and after a burst it never reads.
DISCONNECT_STAGES = ("connect", "greeting", "half-negotiation", "negotiated",
                     "half-request", "unread-reply", "unread-burst")
