"""The two hash orders QEMU 2.11's JSON handling exposes, as pure functions.

* `qdict_order`: the member order of every JSON object QEMU writes, and the order in
  which it walks a received object (its QDict is a 512-bucket hash table, each bucket a
  list with new keys in front). `../shared/reference/qmp-protocol.md` §13.
* `GHashTable`: GLib's open-addressing hash table, which QEMU's input visitor fills with
  an object's keys and empties as it consumes members; the first key left over is the
  one `Parameter '...' is unexpected` names. `qapi-introspection.md` §6.6.

Part of `schema.qobject` (QEMU's JSON dialect): the writer (`schema.qobject.writer`)
orders members with `qdict_order`, the argument visitor (`schema.visitor`) names the
unexpected member with `first_unexpected`, and the block layer walks option QDicts in
`qdict_order`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from schema.jsontypes import qemu_bytes


def qdict_hash(key: bytes) -> int:
    """QEMU's `tdb_hash` of a key's bytes (unsigned 32-bit) [qobject/qdict.c tdb_hash]."""
    value = (0x238F13AF * len(key)) & 0xFFFFFFFF
    for i, b in enumerate(key):
        value = (value + (b << (i * 5 % 24))) & 0xFFFFFFFF
    return (1103515243 * value + 12345) & 0xFFFFFFFF


@lru_cache(maxsize=8192)
def qdict_bucket(key: str) -> int:
    """The QDict bucket (0..511) that `key` lands in [include/qapi/qmp/qdict.h]."""
    return qdict_hash(qemu_bytes(key)) % 512


def qdict_order(keys: Iterable[str]) -> list[str]:
    """The order in which QEMU iterates a QDict whose keys were inserted in this order.

    Buckets ascending; within a bucket the most recently inserted key first. A key
    given twice keeps the position of its first insertion, as `qdict_put_obj` replaces
    the value in place. (Reference note qmp-protocol.md §13.)
    """
    return list(qdict_order_tuple(tuple(dict.fromkeys(keys))))


@lru_cache(maxsize=4096)
def qdict_order_tuple(keys: tuple[str, ...]) -> tuple[str, ...]:
    bucket = qdict_bucket
    decorated = sorted((bucket(k), -i, k) for i, k in enumerate(keys))
    return tuple(k for _, _, k in decorated)


_PRIMES = (1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749,
           65521, 131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213)


def g_str_hash(key: str) -> int:
    """GLib's g_str_hash (djb2 over signed chars), modulo 2**32."""
    h = 5381
    for b in qemu_bytes(key):
        h = (h * 33 + (b - 256 if b >= 128 else b)) & 0xFFFFFFFF
    return h


class GHashTable:
    """GLib's string-keyed GHashTable, enough of it to know its iteration order.

    `new_glib` selects GLib >= 2.60 (hash multiplied by 11, in-place resize, 4/3 growth)
    instead of GLib <= 2.58 (rebuild, doubling). Nothing else differs for our purpose.
    """

    def __init__(self, new_glib: bool = False) -> None:
        self.new = new_glib
        self._set_shift(3)
        self.hashes = [0] * self.size  # 0 empty, 1 tombstone, >= 2 a live key's hash
        self.keys: list[str | None] = [None] * self.size
        self.live = 0
        self.occupied = 0

    def _set_shift(self, shift: int) -> None:
        self.size = 1 << shift
        self.mod = _PRIMES[shift]
        self.mask = self.size - 1

    def _start(self, h: int) -> int:
        return ((h * 11) & 0xFFFFFFFF) % self.mod if self.new else h % self.mod

    def _find(self, key: str) -> tuple[int, int]:
        h = max(g_str_hash(key), 2)
        i = self._start(h)
        step = 0
        tomb = None
        while self.hashes[i] != 0:
            if self.hashes[i] == h and self.keys[i] == key:
                return i, h
            if self.hashes[i] == 1 and tomb is None:
                tomb = i
            step += 1
            i = (i + step) & self.mask
        return (i if tomb is None else tomb), h

    def insert(self, key: str) -> None:
        i, h = self._find(key)
        if self.hashes[i] > 1:
            return
        was_empty = self.hashes[i] == 0
        self.hashes[i], self.keys[i] = h, key
        self.live += 1
        if was_empty:
            self.occupied += 1
            self._maybe_resize()

    def remove(self, key: str) -> None:
        i, _ = self._find(key)
        if self.hashes[i] > 1:
            self.hashes[i], self.keys[i] = 1, None
            self.live -= 1
            self._maybe_resize()

    def _maybe_resize(self) -> None:
        if (self.size > 4 * self.live and self.size > 8) or \
                self.size <= self.occupied + self.occupied // 16:
            self._resize()

    def _resize(self) -> None:
        old = self.size
        want = int(self.live * 1.333) if self.new else self.live * 2
        self._set_shift(max(want.bit_length(), 3))
        if not self.new:
            hashes, keys = self.hashes, self.keys
            self.hashes, self.keys = [0] * self.size, [None] * self.size
            for i in range(old):
                if hashes[i] > 1:
                    j = self._start(hashes[i])
                    step = 0
                    while self.hashes[j]:
                        step += 1
                        j = (j + step) & self.mask
                    self.hashes[j], self.keys[j] = hashes[i], keys[i]
        else:
            if self.size > old:
                self.hashes += [0] * (self.size - old)
                self.keys += [None] * (self.size - old)
            done = [False] * max(old, self.size)
            for i in range(old):
                if self.hashes[i] <= 1:
                    self.hashes[i] = 0
                    continue
                if done[i]:
                    continue
                h, key = self.hashes[i], self.keys[i]
                self.hashes[i], self.keys[i] = 0, None
                while True:
                    j = self._start(h)
                    step = 0
                    while done[j]:
                        step += 1
                        j = (j + step) & self.mask
                    done[j] = True
                    oh, okey = self.hashes[j], self.keys[j]
                    self.hashes[j], self.keys[j] = h, key
                    if oh <= 1:
                        break
                    h, key = oh, okey
            self.hashes, self.keys = self.hashes[:self.size], self.keys[:self.size]
        self.occupied = self.live

    def first(self) -> str | None:
        for i in range(self.size):
            if self.hashes[i] > 1:
                return self.keys[i]
        return None


def first_unexpected(keys: Iterable[str], consumed: Iterable[str], *,
                     new_glib: bool = False) -> str | None:
    """The key QEMU's input visitor reports as unexpected, or None if none is left.

    `keys` are the object's keys in QDict order; `consumed` the members the visitor
    took, in visiting order.
    """
    table = GHashTable(new_glib)
    for key in keys:
        table.insert(key)
    for key in consumed:
        table.remove(key)
    return table.first()
