"""quorum's data path: reads that vote, writes and flushes that count successes.

Pure part of the `blockdev` layer (`blockdev.drivers`), loaded by
`blockdev.drivers.dataio` on the first request to a quorum node [block/quorum.c].
Children are asked in their order; the events are QEMU's (QUORUM_REPORT_BAD for a
child that failed or disagreed, QUORUM_FAILURE when no version reaches the vote
threshold; both rate-limited by the Machine's event bus).
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable
from typing import Any

from blockdev.graph import Node
from blockdev.iotypes import BlockIOError, GenericIO

SECTOR = 512


def _emit(bs: Node, name: str, data: dict[str, Any]) -> None:
    host = getattr(bs, "host", None)
    if host is not None:
        host.emit(name, data)


def _sectors(offset: int, length: int) -> tuple[int, int]:
    start = offset // SECTOR
    end = (offset + length + SECTOR - 1) // SECTOR
    return start, end - start


def report_bad(bs: Node, op: str, offset: int, length: int, child: Node,
               err: int | None) -> None:
    """quorum_report_bad: `error` only for a failed request."""
    start, count = _sectors(offset, length)
    data: dict[str, Any] = {"type": op}
    if err:
        data["error"] = os.strerror(err)
    data.update({"node-name": child.node_name, "sector-num": start, "sectors-count": count})
    _emit(bs, "QUORUM_REPORT_BAD", data)


def report_failure(bs: Node, offset: int, length: int) -> None:
    """quorum_report_failure."""
    start, count = _sectors(offset, length)
    _emit(bs, "QUORUM_FAILURE", {"reference": bs.device_or_node_name(),
                                 "sector-num": start, "sectors-count": count})


def _children(bs: Node) -> list[Node]:
    return [c.bs for c in bs.state.extra["children"] if c.bs is not None]


def _winner(votes: list[tuple[Any, list[int]]]) -> tuple[Any, list[int]]:
    """quorum_get_vote_winner: versions newest first, the first with most votes."""
    best: tuple[Any, list[int]] | None = None
    for version in votes:
        if best is None or len(version[1]) > len(best[1]):
            best = version
    assert best is not None
    return best


def _count(votes: list[tuple[Any, list[int]]], value: Any, index: int) -> None:
    """quorum_count_vote: a new version goes to the head, items too."""
    for version in votes:
        if version[0] == value:
            version[1].insert(0, index)
            return
    votes.insert(0, (value, [index]))


def _vote_error(errors: list[tuple[int, int]]) -> int:
    """quorum_vote_error: the most frequent errno."""
    votes: list[tuple[Any, list[int]]] = []
    for index, err in errors:
        _count(votes, err, index)
    return int(_winner(votes)[0])


def quorum_read(io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
    """quorum_co_preadv: read-pattern fifo reads children in order until one
    answers; quorum reads them all and votes."""
    extra = bs.state.extra
    children = _children(bs)
    if extra.get("read-pattern", "quorum") == "fifo":
        last: BlockIOError | None = None
        for child in children:
            try:
                return io.bdrv_pread(child, offset, length)
            except BlockIOError as e:
                report_bad(bs, "read", offset, length, child, e.errno)
                last = e
        assert last is not None
        raise last
    results: list[bytes | None] = []
    errors: list[tuple[int, int]] = []
    for i, child in enumerate(children):
        try:
            results.append(io.bdrv_pread(child, offset, length))
        except BlockIOError as e:
            results.append(None)
            errors.append((i, e.errno))
            report_bad(bs, "read", offset, length, child, e.errno)
    threshold = int(extra["threshold"])
    good = [r for r in results if r is not None]
    if len(good) < threshold:
        report_failure(bs, offset, length)
        raise BlockIOError(_vote_error(errors) if errors else errno_mod.EIO)
    if all(r == good[0] for r in good):
        return good[0]
    votes: list[tuple[Any, list[int]]] = []
    for i, r in enumerate(results):
        if r is not None:
            _count(votes, r, i)
    value, items = _winner(votes)
    if len(items) < threshold:
        report_failure(bs, offset, length)
        raise BlockIOError(errno_mod.EIO)
    for version, indices in votes:
        if version == value:
            continue
        for i in indices:
            report_bad(bs, "read", offset, length, children[i], None)
    if extra.get("rewrite-corrupted"):
        for version, indices in votes:
            if version == value:
                continue
            for i in indices:
                try:
                    io.bdrv_pwrite(children[i], offset, value)
                except BlockIOError:
                    pass  # quorum_rewrite_entry ignores errors
    return bytes(value)


def quorum_write(io: GenericIO, bs: Node, offset: int, length: int,
                 fn: Callable[[Node], None]) -> None:
    """quorum_co_pwritev: every child; fewer successes than the threshold fail
    with the most frequent error (and QUORUM_FAILURE)."""
    children = _children(bs)
    errors: list[tuple[int, int]] = []
    for i, child in enumerate(children):
        try:
            fn(child)
        except BlockIOError as e:
            errors.append((i, e.errno))
            report_bad(bs, "write", offset, length, child, e.errno)
    if len(children) - len(errors) < int(bs.state.extra["threshold"]):
        report_failure(bs, offset, length)
        raise BlockIOError(_vote_error(errors) if errors else errno_mod.EIO)


def quorum_flush(io: GenericIO, bs: Node) -> None:
    """quorum_co_flush: failures reported as type flush, no QUORUM_FAILURE."""
    children = _children(bs)
    errors: list[tuple[int, int]] = []
    for i, child in enumerate(children):
        try:
            io.bdrv_flush(child)
        except BlockIOError as e:
            errors.append((i, e.errno))
            report_bad(bs, "flush", 0, 0, child, e.errno)
    if len(children) - len(errors) < int(bs.state.extra["threshold"]):
        raise BlockIOError(_vote_error(errors))
