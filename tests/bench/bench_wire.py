"""Benchmark of the QMP wire codec (not a test; prints figures).

Run from the repository root:

    python -m tests.bench.bench_wire

Figures: decoding a pipelined stream of 5000 `{"execute":"query-status","id":N}` requests
(fed at once, in 4 KiB reads, and one request per read), encoding the matching replies,
and encoding a ~100 kB reply shaped like `query-qmp-schema`'s. Real QEMU serves about
6000 query-status round trips a second; the codec's share of that budget is what matters.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from schema.jsontypes import JSONValue
from vmm.qmp.wire import MessageDecoder, encode

REQUESTS = 5000


def best_of(repeat: int, func: Callable[[], object]) -> float:
    """The fastest of `repeat` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def request_stream() -> bytes:
    return b"".join(b'{"execute":"query-status","id":%d}\n' % i for i in range(REQUESTS))


def schema_like_reply() -> JSONValue:
    """About 100 kB of introspection-shaped data: objects, commands, enums, arrays."""
    entities: list[JSONValue] = []
    i = 0
    while True:
        entities.append(
            {
                "name": f"{i}",
                "meta-type": "object",
                "members": [
                    {"name": f"member-{j}", "type": str(j % 7), "default": None} for j in range(4)
                ],
                "tag": "type",
                "variants": [{"case": "file", "type": str(i + 1)}],
            }
        )
        entities.append(
            {
                "name": f"query-thing-{i}",
                "meta-type": "command",
                "arg-type": "0",
                "ret-type": str(i),
            }
        )
        entities.append({"name": f"e{i}", "meta-type": "enum", "values": ["a", "bb", "ccc", "on"]})
        entities.append({"name": f"[{i}]", "element-type": str(i), "meta-type": "array"})
        i += 1
        if len(encode(entities)) >= 100_000 or i > 10_000:
            break
    return {"return": entities, "id": "libvirt-42"}


def main() -> None:
    stream = request_stream()
    chunks_4k = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    per_request = stream.splitlines(keepends=True)

    def decode_all(chunks: list[bytes]) -> None:
        decoder = MessageDecoder()
        count = 0
        for chunk in chunks:
            count += len(decoder.feed(chunk))
        assert count == REQUESTS

    print(f"decode {REQUESTS} query-status requests ({len(stream)} bytes):")
    for label, chunks in (
        ("one feed", [stream]),
        ("4 KiB feeds", chunks_4k),
        ("one feed per request", per_request),
    ):
        seconds = best_of(5, lambda chunks=chunks: decode_all(chunks))
        print(
            f"  {label:22} {seconds * 1e3:8.2f} ms  {REQUESTS / seconds:10.0f} msg/s"
            f"  {seconds / REQUESTS * 1e6:6.2f} us/msg"
        )

    replies: list[JSONValue] = [
        {"return": {"running": True, "singlestep": False, "status": "running"}, "id": i}
        for i in range(REQUESTS)
    ]

    def encode_replies() -> None:
        for reply in replies:
            encode(reply)

    seconds = best_of(5, encode_replies)
    print(f"encode {REQUESTS} query-status replies:")
    print(
        f"  {'':22} {seconds * 1e3:8.2f} ms  {REQUESTS / seconds:10.0f} msg/s"
        f"  {seconds / REQUESTS * 1e6:6.2f} us/msg"
    )

    schema = schema_like_reply()
    size = len(encode(schema))
    runs = 50
    seconds = best_of(3, lambda: [encode(schema) for _ in range(runs)]) / runs
    print(f"encode a schema-like reply ({size} bytes):")
    print(f"  compact                {seconds * 1e3:8.2f} ms  {size / seconds / 1e6:8.1f} MB/s")
    seconds = best_of(3, lambda: [encode(schema, pretty=True) for _ in range(10)]) / 10
    print(f"  pretty                 {seconds * 1e3:8.2f} ms")
    data = encode(schema)
    seconds = best_of(3, lambda: [MessageDecoder().feed(data) for _ in range(10)]) / 10
    print(f"decode that reply:       {seconds * 1e3:8.2f} ms  {size / seconds / 1e6:8.1f} MB/s")


if __name__ == "__main__":
    main()
