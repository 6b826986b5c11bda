"""qcow2's data engine: guest reads and writes of an open qcow2 node, as QEMU 2.11's
block/qcow2.c, qcow2-cluster.c, qcow2-refcount.c and qcow2-cache.c do them.

Part of the real-file edge (`blockdev.image.formats`); `qcow2.py` reads and checks
the header at open, this module owns the bytes after that. The request path
(blockdev/io.py) drives a `Qcow2Data` through the `FormatData` contract of
`formats.base`; it reads the node's file child through a `FileView`.

What is reproduced:
- L1/L2 lookup (qcow2_get_cluster_offset) with runs of contiguous clusters, so a
  sequential read is one pread per contiguous host run; compressed clusters are
  inflated (qcow2_decompress_cluster, raw deflate with a 4 KiB window).
- Allocating writes (qcow2_alloc_cluster_offset: handle_copied, then handle_alloc
  for COW/unallocated runs, with a contiguous host range), the copy-on-write of
  partial clusters merged with the guest data into one write (perform_cow with
  merge_cow), and qcow2_alloc_cluster_link_l2 freeing the clusters it replaces.
  The old bytes of a COW region come from this node's own read path: its own
  clusters, else the backing reader given by `set_backing` (zeros without one).
- L2 tables shared with internal snapshots (no COPIED flag) are copied on write
  (get_cluster_table/l2_allocate); the L1 table grows as qcow2_grow_l1_table does.
- Refcounts of any width (refcount_order 0..6), refcount blocks allocated where they
  describe themselves, and a grown refcount table placed at the end of the image
  (alloc_refcount_block, qcow2_refcount_area); freed clusters go back to the
  allocator (free_cluster_index) and freed tables leave the caches.
- write_zeroes as block/io.c bdrv_co_do_pwrite_zeroes splits it (head, aligned
  middle, tail) and qcow2_co_pwrite_zeroes answers each piece (zero clusters on v3,
  -ENOTSUP and a zeroed buffer written otherwise); discard as bdrv_co_pdiscard +
  qcow2_co_pdiscard (whole clusters only; v3 leaves zero clusters, v2 unallocated).
- Caches: L2 tables and refcount blocks are kept in LRU caches of QEMU's default
  sizes (read_cache_sizes, or the `l2-cache-size`/`refcount-cache-size` options)
  and written back on eviction, flush and close; refcount blocks before L2 tables.
- Lazy refcounts (compat=1.1 `lazy_refcounts`, or the `lazy-refcounts` option):
  the dirty bit is set on disk before the first L2 update (qcow2_mark_dirty),
  refcount blocks are written only on eviction and close; close clears the dirty
  bit (qcow2_inactivate/qcow2_mark_clean).
- A dirty image opened read-write is repaired (qcow2_do_open's qcow2_check with
  BDRV_FIX_ERRORS|BDRV_FIX_LEAKS): refcounts are recomputed from the metadata and
  every wrong one rewritten, then the dirty bit is cleared.
- Corruption found on the way (an unaligned L2 or data offset, a zero cluster in a
  v2 image) fails the request with EIO and, on a writable node, sets the corrupt
  bit (qcow2_signal_corruption); `corruption` holds QEMU's message for the caller's
  BLOCK_IMAGE_CORRUPTED event (fatal), and later requests fail with ENOMEDIUM as
  QEMU's do once the node has lost its driver.

Encrypted images (LUKS, or the legacy AES a qemu-img would open) are read with
the passphrase of `DataContext.passphrase` (luks_data, aes); writing them answers
ENOTSUP. Not reproduced: bitmaps are not marked in use on a read-write open, and
the metadata overlap checks are not run (the allocator never places clusters
over metadata).
"""

from __future__ import annotations

import errno
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

from blockdev.image.formats.base import (
    BackingRead,
    BlockIOError,
    BlockStatus,
    DataContext,
    FileNode,
    FileView,
    FormatData,
    ImageError,
    OpenContext,
    read_only_engine_error,
)
from blockdev.image.formats.qcow2_check import (
    COMPRESSED,
    L1E_OFFSET_MASK,
    L2E_COMPRESSED_OFFSET_SIZE_MASK,
    L2E_OFFSET_MASK,
    NORMAL,
    QCOW_OFLAG_COMPRESSED,
    QCOW_OFLAG_COPIED,
    QCOW_OFLAG_ZERO,
    REFT_OFFSET_MASK,
    UNALLOCATED,
    ZERO_ALLOC,
    ZERO_PLAIN,
    cluster_type,
    expected_refcounts,
)

if TYPE_CHECKING:
    from blockdev.image.formats.luks_data import SectorCipher

# qcow2.h
QCOW_MAX_L1_SIZE = 0x2000000
QCOW_MAX_REFTABLE_SIZE = 0x800000
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
COMPAT_LAZY_REFCOUNTS = 1 << 0
AUTOCLEAR_MASK = 1 << 0
DEFAULT_L2_CACHE_BYTE_SIZE = 1048576
MIN_L2_CACHE_SIZE = 2
MIN_REFCOUNT_CACHE_SIZE = 4
DEFAULT_L2_REFCOUNT_SIZE_RATIO = 4

_HEADER = struct.Struct(">IIQIIQIIQQIIQ")
_HEADER_V3 = struct.Struct(">QQQII")
_OFF_INCOMPAT = 72
_OFF_L1 = 36  # l1_size (u32) then l1_table_offset (u64)
_OFF_REFTABLE = 48  # refcount_table_offset (u64) then clusters (u32)
_OFF_SIZE = 24

_BE64 = struct.Struct(">Q")


class _Corrupt(Exception):
    """qcow2_signal_corruption with fatal=true: the message, then -EIO."""


class _Cache:
    """qcow2-cache.c: tables of one cluster each, keyed by host offset, least
    recently used evicted first; dirty tables are written back on eviction and
    flush (qcow2_cache_do_get / qcow2_cache_write)."""

    def __init__(self, engine: Qcow2Data, capacity: int, *, l2: bool) -> None:
        self.engine = engine
        self.capacity = capacity
        self.l2 = l2
        self.tables: OrderedDict[int, bytearray] = OrderedDict()
        self.dirty: set[int] = set()

    def _make_room(self) -> None:
        while len(self.tables) >= self.capacity:
            victim = next(iter(self.tables))
            if victim in self.dirty:
                if self.l2 and self.engine._accurate_refcounts():
                    # qcow2_cache_set_dependency: new refcounts reach the disk
                    # before the L2 entries that use them.
                    self.engine.refcounts.write()
                self._write_one(victim)
            del self.tables[victim]

    def _write_one(self, offset: int) -> None:
        self.engine._pwrite(offset, bytes(self.tables[offset]))
        self.dirty.discard(offset)

    def get(self, offset: int) -> bytearray:
        table = self.tables.get(offset)
        if table is not None:
            self.tables.move_to_end(offset)
            return table
        self._make_room()
        table = bytearray(self.engine._pread(offset, self.engine.cluster_size))
        self.tables[offset] = table
        return table

    def get_empty(self, offset: int) -> bytearray:
        table = self.tables.get(offset)
        if table is None:
            self._make_room()
        table = bytearray(self.engine.cluster_size)
        self.tables[offset] = table
        self.tables.move_to_end(offset)
        return table

    def mark_dirty(self, offset: int) -> None:
        self.dirty.add(offset)

    def discard(self, offset: int) -> None:
        """qcow2_cache_discard: the cluster was freed; its table is dropped unwritten."""
        self.tables.pop(offset, None)
        self.dirty.discard(offset)

    def write(self) -> None:
        for offset in sorted(self.dirty):
            self._write_one(offset)


class _RefcountOps:
    """get_refcount_roN / set_refcount_roN for one refcount_order."""

    def __init__(self, order: int) -> None:
        self.bits = 1 << order
        self.max = (1 << self.bits) - 1
        if self.bits >= 8:
            self.width = self.bits // 8
            fmt = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}[self.width]
            self._st: struct.Struct | None = struct.Struct(fmt)
        else:
            self.width = 0
            self._st = None

    def get(self, block: bytearray, index: int) -> int:
        if self._st is not None:
            return int(self._st.unpack_from(block, index * self.width)[0])
        per_byte = 8 // self.bits
        shift = (index % per_byte) * self.bits
        return (block[index // per_byte] >> shift) & self.max

    def set(self, block: bytearray, index: int, value: int) -> None:
        if self._st is not None:
            self._st.pack_into(block, index * self.width, value)
            return
        per_byte = 8 // self.bits
        shift = (index % per_byte) * self.bits
        byte = block[index // per_byte] & ~(self.max << shift)
        block[index // per_byte] = byte | (value << shift)


class _Refcounts:
    """qcow2-refcount.c: the refcount table, its blocks (through a cache), and the
    cluster allocator."""

    def __init__(self, engine: Qcow2Data, table_offset: int, table_clusters: int,
                 order: int, cache_tables: int) -> None:
        self.e = engine
        self.ops = _RefcountOps(order)
        self.block_entries = engine.cluster_size * 8 // self.ops.bits
        self.table_offset = table_offset
        size = table_clusters * engine.cluster_size // 8
        raw = engine._pread(table_offset, size * 8)
        self.table = list(struct.unpack(f">{size}Q", raw)) if size else []
        self.cache = _Cache(engine, cache_tables, l2=False)
        self.free_cluster_index = 0

    def write(self) -> None:
        self.cache.write()

    def get(self, cluster_index: int) -> int:
        """qcow2_get_refcount."""
        t = cluster_index // self.block_entries
        if t >= len(self.table):
            return 0
        block_offset = self.table[t] & REFT_OFFSET_MASK
        if not block_offset:
            return 0
        if block_offset % self.e.cluster_size:
            raise _Corrupt(f"Refblock offset {block_offset:#x} unaligned "
                           f"(reftable index: {t:#x})")
        block = self.cache.get(block_offset)
        return self.ops.get(block, cluster_index % self.block_entries)

    def _block_for(self, cluster_index: int) -> tuple[int, bool]:
        """alloc_refcount_block: the block's offset, and whether one had to be
        allocated (QEMU's -EAGAIN: the caller searches free space again)."""
        cs = self.e.cluster_size
        t = cluster_index // self.block_entries
        if t < len(self.table) and self.table[t] & REFT_OFFSET_MASK:
            off = self.table[t] & REFT_OFFSET_MASK
            if off % cs:
                raise _Corrupt(f"Refblock offset {off:#x} unaligned (reftable index: {t:#x})")
            return off, False
        # The new block goes into the first free cluster; it describes itself
        # when it falls into its own range, else its refcount is set elsewhere.
        self.e.l2_cache.write()
        new_block = self._alloc_noref(1)
        if new_block == 0:
            raise _Corrupt("Preventing invalid allocation of refcount block at offset 0")
        if new_block // cs // self.block_entries == t:
            block = self.cache.get_empty(new_block)
            self.ops.set(block, (new_block // cs) % self.block_entries, 1)
        else:
            while self._update(new_block, cs, 1):
                pass
            self.cache.get_empty(new_block)
        self.cache.mark_dirty(new_block)
        self.cache.write()
        if t < len(self.table):
            self.e._pwrite(self.table_offset + 8 * t, _BE64.pack(new_block))
            self.table[t] = new_block
            return new_block, True
        # The table is full: new refcount structures at the end of the image.
        blocks_used = -(-max(cluster_index + 1, new_block // cs + 1) // self.block_entries)
        self._refcount_area(blocks_used * self.block_entries * cs, t, new_block)
        return new_block, True

    def _refcount_area(self, start_offset: int, new_index: int, new_block: int) -> None:
        """qcow2_refcount_area: a new refcount table (50 % larger than needed) and
        the refcount blocks that cover it, from `start_offset` on, describing
        themselves; then the header points at the new table and the old one is
        freed."""
        cs = self.e.cluster_size
        total = _refcount_metadata_blocks(start_offset // cs, cs, self.block_entries)
        if total > QCOW_MAX_REFTABLE_SIZE:
            raise BlockIOError(errno.EFBIG)
        area_index = (start_offset // cs) // self.block_entries
        table_size = total + -(-total // 2)
        per_cluster = cs // 8
        table_size = -(-table_size // per_cluster) * per_cluster
        table_clusters = table_size * 8 // cs
        if table_size > QCOW_MAX_REFTABLE_SIZE:
            raise BlockIOError(errno.EFBIG)
        new_table = (self.table + [0] * table_size)[:table_size]
        new_table[new_index] = new_block
        additional = sum(1 for i in range(area_index, total) if not new_table[i])
        table_offset = start_offset + additional * cs
        end_offset = table_offset + table_clusters * cs
        block_offset = start_offset
        for i in range(area_index, total):
            if new_table[i]:
                block = self.cache.get(new_table[i] & REFT_OFFSET_MASK)
                key = new_table[i] & REFT_OFFSET_MASK
            else:
                block = self.cache.get_empty(block_offset)
                key = block_offset
                new_table[i] = block_offset
                block_offset += cs
            self.cache.mark_dirty(key)
            first = i * self.block_entries * cs
            if first < end_offset:
                j = (start_offset - first) // cs if first < start_offset else 0
                end_index = min((end_offset - first) // cs, self.block_entries)
                for k in range(j, end_index):
                    self.ops.set(block, k, 1)
        self.cache.write()
        self.e._pwrite(table_offset, struct.pack(f">{table_size}Q", *new_table))
        self.e._pwrite(_OFF_REFTABLE, struct.pack(">QI", table_offset, table_clusters))
        old_offset, old_size = self.table_offset, len(self.table)
        self.table = new_table
        self.table_offset = table_offset
        self._update(old_offset, old_size * 8, -1)

    def _alloc_noref(self, nb: int) -> int:
        """alloc_clusters_noref: the first run of `nb` free clusters at or after
        free_cluster_index."""
        while True:
            start = self.free_cluster_index
            for _ in range(nb):
                idx = self.free_cluster_index
                self.free_cluster_index += 1
                if self.get(idx) != 0:
                    break
            else:
                return start * self.e.cluster_size

    def _update(self, offset: int, length: int, addend: int) -> bool:
        """update_refcount over whole clusters: True when a refcount block had to be
        allocated first (the caller retries its search; nothing was changed)."""
        if length <= 0:
            return False
        cs = self.e.cluster_size
        first = offset // cs
        last = (offset + length - 1) // cs
        if addend > 0:
            created = False
            for t in range(first // self.block_entries, last // self.block_entries + 1):
                _, new = self._block_for(max(first, t * self.block_entries))
                if new and t > first // self.block_entries:
                    # QEMU increments up to the missing block, then reverts: the
                    # reverted clusters lower free_cluster_index again.
                    self.free_cluster_index = min(self.free_cluster_index, first)
                created = created or new
            if created:
                return True
        for idx in range(first, last + 1):
            block_off, _ = self._block_for(idx)
            block = self.cache.get(block_off)
            bi = idx % self.block_entries
            value = self.ops.get(block, bi) + addend
            if value < 0 or value > self.ops.max:
                raise BlockIOError(errno.EINVAL)
            self.ops.set(block, bi, value)
            self.cache.mark_dirty(block_off)
            if value == 0:
                if idx < self.free_cluster_index:
                    self.free_cluster_index = idx
                self.cache.discard(idx * cs)
                self.e.l2_cache.discard(idx * cs)
        return False

    def alloc(self, size: int) -> int:
        """qcow2_alloc_clusters."""
        cs = self.e.cluster_size
        nb = -(-size // cs)
        while True:
            offset = self._alloc_noref(nb)
            if not self._update(offset, nb * cs, 1):
                return offset

    def alloc_at(self, offset: int, nb: int) -> int:
        """qcow2_alloc_clusters_at: how many of the `nb` clusters from `offset` are
        free, now allocated."""
        cs = self.e.cluster_size
        while True:
            i = 0
            while i < nb and self.get(offset // cs + i) == 0:
                i += 1
            if i == 0 or not self._update(offset, i * cs, 1):
                return i

    def free(self, offset: int, length: int) -> None:
        """qcow2_free_clusters."""
        self._update(offset, length, -1)

    def set_exact(self, cluster_index: int, value: int) -> None:
        """The repair's write of one corrected refcount."""
        block_off, _ = self._block_for(cluster_index)
        block = self.cache.get(block_off)
        self.ops.set(block, cluster_index % self.block_entries, value)
        self.cache.mark_dirty(block_off)


def _refcount_metadata_blocks(clusters: int, cluster_size: int, block_entries: int) -> int:
    """qcow2_refcount_metadata_size's refblock count for `clusters` data clusters
    plus the refcount structures themselves (with a table 50 % larger)."""
    table_entries = cluster_size // 8
    blocks = 0
    table = 0
    while True:
        new_blocks = -(-(clusters + blocks + table) // block_entries)
        new_table = -(-(new_blocks + -(-new_blocks // 2)) // table_entries)
        if new_blocks == blocks and new_table == table:
            return blocks
        blocks, table = new_blocks, new_table


class _L2Meta:
    """QCowL2Meta: one run of newly allocated clusters and its COW regions."""

    def __init__(self, alloc_offset: int, guest: int, nb: int, cow_start: int,
                 cow_end_offset: int, cow_end_bytes: int, keep_old: bool) -> None:
        self.alloc_offset = alloc_offset
        self.guest = guest
        self.nb = nb
        self.cow_start = cow_start
        self.cow_end_offset = cow_end_offset
        self.cow_end_bytes = cow_end_bytes
        self.keep_old = keep_old


class Qcow2Data:
    """One open qcow2 node's data engine (see the module docstring)."""

    def __init__(self, ctx: DataContext) -> None:
        self.file: FileView = ctx.file
        self.writable = ctx.writable
        self.backing: BackingRead | None = ctx.backing
        self.corruption: str | None = None
        self.broken = False  # after a fatal corruption (QEMU sets bs->drv = NULL)
        self.closed = False
        raw = self._pread(0, _HEADER.size + _HEADER_V3.size)
        (_magic, self.version, _bfo, _bfs, self.cluster_bits, self.size,
         self.crypt_method, self.l1_size, self.l1_table_offset, rt_offset,
         rt_clusters, self.nb_snapshots, self.snapshots_offset) = _HEADER.unpack_from(raw)
        if self.version >= 3:
            (self.incompatible, self.compatible, self.autoclear, self.refcount_order,
             self.header_length) = _HEADER_V3.unpack_from(raw, _HEADER.size)
        else:
            self.incompatible = self.compatible = self.autoclear = 0
            self.refcount_order = 4
            self.header_length = _HEADER.size
        self.cluster_size = 1 << self.cluster_bits
        self.l2_size = self.cluster_size // 8
        self.csize_shift = 62 - (self.cluster_bits - 8)
        self.csize_mask = (1 << (self.cluster_bits - 8)) - 1
        self.cluster_offset_mask = (1 << self.csize_shift) - 1
        l1_raw = self._pread(self.l1_table_offset, self.l1_size * 8) if self.l1_size else b""
        self.l1 = list(struct.unpack(f">{self.l1_size}Q", l1_raw))
        l2_bytes, rc_bytes = self._cache_sizes(ctx)
        self.l2_cache = _Cache(self, max(MIN_L2_CACHE_SIZE, l2_bytes // self.cluster_size),
                               l2=True)
        self.refcounts = _Refcounts(
            self, rt_offset, rt_clusters, self.refcount_order,
            max(MIN_REFCOUNT_CACHE_SIZE, rc_bytes // self.cluster_size))
        lazy = ctx.options.get("lazy-refcounts")
        if lazy is None:
            self.lazy_refcounts = bool(self.compatible & COMPAT_LAZY_REFCOUNTS)
        else:
            self.lazy_refcounts = lazy in (True, "on")
        if self.lazy_refcounts and self.version < 3:
            raise ImageError("Lazy refcounts require a qcow2 image with at least "
                             "qemu 1.1 compatibility level")
        self._cached_compressed: tuple[int, bytes] | None = None
        self.free_byte_offset = 0  # BDRVQcow2State.free_byte_offset (qcow2_alloc_bytes)
        self.cipher: SectorCipher | None = None
        self.physical_sectors = False
        if self.crypt_method:
            self._open_crypto(ctx)
        if self.writable:
            if self.autoclear & ~AUTOCLEAR_MASK:
                # qcow2_do_open clears unknown autoclear bits on a read-write open.
                self.autoclear &= AUTOCLEAR_MASK
                self._pwrite(_HEADER.size + 16, _BE64.pack(self.autoclear))
            if self.incompatible & INCOMPAT_DIRTY:
                try:
                    self._repair()
                except (BlockIOError, _Corrupt) as e:
                    raise ImageError(f"Could not repair dirty image: {e}") from None

    def _open_crypto(self, ctx: DataContext) -> None:
        """The cipher of an encrypted image (qcow2_do_open -> qcrypto_block_open):
        LUKS in the crypto header extension (sectors numbered by their host offset,
        crypt_physical_offset), or the legacy AES-128-CBC keyed by the first 16
        bytes of the password with plain64 IVs of guest sectors
        (crypto/block-qcow.c)."""
        from blockdev.image.formats import qcow2
        from blockdev.image.formats.luks_data import SectorCipher, unlock

        if ctx.passphrase is None:
            raise ImageError("Parameter 'encrypt.key-secret' is required for cipher")
        if self.crypt_method == 1:
            key = ctx.passphrase[:16].ljust(16, b"\0")
            self.cipher = SectorCipher("cbc", "plain64", None, key)
            return
        # The header reader wants a key secret to be named; the caller resolved it.
        octx = OpenContext(file=cast(FileNode, self.file), filename="", read_only=True,
                           key_secret="", system_emulator=False)
        header = qcow2.read_header(octx).header
        if header.crypto_header is None:
            raise ImageError(f"Missing CRYPTO header for crypt method {self.crypt_method}")
        self.cipher, _ = unlock(self.file, ctx.passphrase, base=header.crypto_header[0])
        self.physical_sectors = True

    def _cache_sizes(self, ctx: DataContext) -> tuple[int, int]:
        """read_cache_sizes: 1 MiB of L2 tables (no more than the disk needs),
        a quarter of that for refcount blocks, unless the options say otherwise."""
        l2 = _opt_size(ctx.options.get("l2-cache-size"))
        rc = _opt_size(ctx.options.get("refcount-cache-size"))
        max_l2 = -(-self.size // (self.cluster_size // 8)) if self.size else 0
        max_l2 = -(-max_l2 // self.cluster_size) * self.cluster_size
        if l2 is None and rc is None:
            l2 = min(DEFAULT_L2_CACHE_BYTE_SIZE, max(max_l2, 1))
            rc = l2 // DEFAULT_L2_REFCOUNT_SIZE_RATIO
        elif l2 is None:
            assert rc is not None
            l2 = rc * DEFAULT_L2_REFCOUNT_SIZE_RATIO
        elif rc is None:
            rc = l2 // DEFAULT_L2_REFCOUNT_SIZE_RATIO
        return l2, rc

    # --- file access ---------------------------------------------------------------

    def _pread(self, offset: int, size: int) -> bytes:
        try:
            return self.file.pread(offset, size)
        except OSError as e:
            raise BlockIOError(e.errno or errno.EIO) from None

    def _pwrite(self, offset: int, data: bytes) -> None:
        try:
            self.file.pwrite(offset, data)
        except OSError as e:
            raise BlockIOError(e.errno or errno.EIO) from None

    def _file_flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            raise BlockIOError(e.errno or errno.EIO) from None

    # --- the contract ----------------------------------------------------------------

    @property
    def length(self) -> int:
        return self.size

    def set_backing(self, read: BackingRead | None) -> None:
        self.backing = read

    def _guard(self, fn: Callable[[], object]) -> object:
        if self.broken:
            # bdrv_co_preadv/pwritev on a node without a driver: -ENOMEDIUM.
            raise BlockIOError(errno.ENOMEDIUM)
        try:
            return fn()
        except _Corrupt as e:
            self._signal_corruption(str(e))
            raise BlockIOError(errno.EIO, f"qcow2: Marking image as corrupt: {e}; "
                               f"further corruption events will be suppressed") from None

    def _signal_corruption(self, message: str) -> None:
        """qcow2_signal_corruption (fatal): the corrupt bit on a writable image,
        and no more writes."""
        if self.corruption is None:
            self.corruption = message
        self.broken = True
        if self.writable and not self.incompatible & INCOMPAT_CORRUPT and self.version >= 3:
            self.incompatible |= INCOMPAT_CORRUPT
            try:
                self._pwrite(_OFF_INCOMPAT, _BE64.pack(self.incompatible))
            except BlockIOError:
                pass

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """qcow2_co_get_block_status."""
        def run() -> BlockStatus:
            typ, host, n = self._get_cluster_offset(offset, length)
            status_offset = None
            if host and typ != COMPRESSED and not self.crypt_method:
                status_offset = host + offset % self.cluster_size
            if typ in (ZERO_PLAIN, ZERO_ALLOC):
                return BlockStatus(pnum=n, zero=True, offset=status_offset)
            if typ == UNALLOCATED:
                return BlockStatus(pnum=n)
            return BlockStatus(pnum=n, data=True, offset=status_offset)
        result = self._guard(run)
        assert isinstance(result, BlockStatus)
        return result

    def read(self, offset: int, length: int) -> bytes:
        result = self._guard(lambda: self._read(offset, length, backing=False))
        assert isinstance(result, bytes)
        return result

    def write(self, offset: int, data: bytes) -> None:
        self._check_writable()
        self._guard(lambda: self._write(offset, memoryview(bytes(data))))

    def write_compressed(self, offset: int, data: bytes) -> None:
        """qcow2_co_pwritev_compressed: one whole cluster (the image's last one may
        be short: zero-padded), stored deflated unless that saves nothing."""
        self._check_writable()
        self._guard(lambda: self._write_compressed(offset, bytes(data)))

    def write_zeroes(self, offset: int, length: int, *, unmap: bool) -> None:
        self._check_writable()
        self._guard(lambda: self._write_zeroes(offset, length, unmap))

    def discard(self, offset: int, length: int) -> None:
        self._check_writable()
        self._guard(lambda: self._discard(offset, length))

    def make_empty(self) -> None:
        """qcow2_make_empty, by its general path: every cluster of the disk is
        discarded in full (qcow2_cluster_discard with QCOW2_DISCARD_SNAPSHOT and
        full_discard), so that the image allocates nothing and reads fall through to
        its backing file. (2.11 takes make_completely_empty instead for a v3 image
        without snapshots or bitmaps, which also shrinks the file; what the image
        reads is the same.)"""
        self._check_writable()
        self._guard(lambda: self._cluster_discard(0, self.size, full=True))

    def flush(self) -> None:
        """bdrv_co_flush: qcow2_co_flush_to_os (L2 tables; refcount blocks unless
        lazy refcounts defer them), then the file's flush."""
        if not self.writable or self.closed:
            return
        if self._accurate_refcounts():
            self.refcounts.write()
        self.l2_cache.write()
        self._file_flush()

    def truncate(self, size: int) -> None:
        """qcow2_truncate (growing or shrinking, preallocation off): QEMU's
        refusals in its words, the L1 table grown exactly, or the cropped clusters
        discarded and their L1 entries dropped."""
        self._check_writable()
        if size % 512:
            raise BlockIOError(errno.EINVAL, "The new size must be a multiple of 512")
        if self.nb_snapshots:
            raise BlockIOError(errno.ENOTSUP, "Can't resize an image which has snapshots")
        if self.autoclear & AUTOCLEAR_MASK:
            raise BlockIOError(errno.ENOTSUP, "Can't resize an image which has bitmaps")

        def run() -> None:
            new_l1 = -(-size // (self.cluster_size * self.l2_size))
            if size < self.size:
                start = -(-size // self.cluster_size) * self.cluster_size
                self._cluster_discard(start, self.size - start, full=True)
                for i in range(new_l1, len(self.l1)):
                    l2_off = self.l1[i] & L1E_OFFSET_MASK
                    if l2_off:
                        self.l1[i] = 0
                        self._write_l1_entry(i)
                        self.l2_cache.discard(l2_off)
                        self.refcounts.free(l2_off, self.cluster_size)
            else:
                self._grow_l1(new_l1, exact=True)
            self._pwrite(_OFF_SIZE, _BE64.pack(size))
            self.size = size
        self._guard(run)

    def change_backing_file(self, backing_file: str | None, backing_fmt: str | None) -> None:
        """qcow2_change_backing_file: the backing file name (at most 1023 bytes) and
        its format extension in a header rewritten as qcow2_update_header writes it:
        the whole of cluster 0, ENOSPC when it does not fit."""
        from blockdev.image.formats import qcow2

        if not self.writable or self.closed:
            raise read_only_engine_error()
        name = None if backing_file is None else backing_file.encode("utf-8", "surrogateescape")
        if name is not None and len(name) > 1023:
            raise BlockIOError(errno.EINVAL)
        octx = OpenContext(file=cast(FileNode, self.file), filename="", read_only=True,
                           key_secret="", system_emulator=False)
        try:
            header = qcow2.read_header(octx).header
        except ImageError:
            raise BlockIOError(errno.EIO) from None
        header.backing_file = backing_file
        header.backing_format = backing_fmt
        header.incompatible_features = self.incompatible
        header.autoclear_features = self.autoclear
        try:
            cluster0 = header.pack()
        except OSError as e:
            raise BlockIOError(e.errno or errno.EIO) from None
        self._pwrite(0, cluster0)

    def close(self) -> None:
        """qcow2_close -> qcow2_inactivate: write back both caches, then clear the
        dirty bit (qcow2_mark_clean)."""
        if self.closed:
            return
        self.closed = True
        if not self.writable:
            return
        self.refcounts.write()
        self.l2_cache.write()
        self._file_flush()
        if self.incompatible & INCOMPAT_DIRTY:
            self.incompatible &= ~INCOMPAT_DIRTY
            self._pwrite(_OFF_INCOMPAT, _BE64.pack(self.incompatible))
            self._file_flush()

    # --- helpers -------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self.writable or self.closed:
            raise read_only_engine_error()
        if self.crypt_method:
            # QEMU writes encrypted images; the emulator does not (see `mapped`).
            raise BlockIOError(errno.ENOTSUP)

    def _accurate_refcounts(self) -> bool:
        """qcow2_need_accurate_refcounts: refcounts may lag behind only while the
        dirty bit is on disk."""
        return not self.incompatible & INCOMPAT_DIRTY

    def _mark_dirty(self) -> None:
        """qcow2_mark_dirty: the bit reaches the disk (and is flushed) first."""
        if self.incompatible & INCOMPAT_DIRTY:
            return
        self._pwrite(_OFF_INCOMPAT, _BE64.pack(self.incompatible | INCOMPAT_DIRTY))
        self._file_flush()
        self.incompatible |= INCOMPAT_DIRTY

    def _l2_entries(self, table: bytearray, index: int, count: int) -> tuple[int, ...]:
        return struct.unpack_from(f">{count}Q", table, index * 8)

    def _get_cluster_offset(self, offset: int, length: int) -> tuple[int, int, int]:
        """qcow2_get_cluster_offset: (cluster type, host cluster offset or 0, bytes
        from `offset` with that type and contiguous host clusters)."""
        cs = self.cluster_size
        in_cluster = offset % cs
        l1_span = cs * self.l2_size
        needed = min(length + in_cluster, l1_span - (offset % l1_span) + in_cluster)
        l1_index = offset // l1_span
        if l1_index >= len(self.l1) or not self.l1[l1_index] & L1E_OFFSET_MASK:
            return UNALLOCATED, 0, needed - in_cluster
        l2_offset = self.l1[l1_index] & L1E_OFFSET_MASK
        if l2_offset % cs:
            raise _Corrupt(f"L2 table offset {l2_offset:#x} unaligned "
                           f"(L1 index: {l1_index:#x})")
        table = self.l2_cache.get(l2_offset)
        l2_index = (offset // cs) % self.l2_size
        nb = -(-needed // cs)
        entries = self._l2_entries(table, l2_index, nb)
        first = entries[0]
        typ = cluster_type(first)
        if self.version < 3 and typ in (ZERO_PLAIN, ZERO_ALLOC):
            raise _Corrupt(f"Zero cluster entry found in pre-v3 image (L2 offset: "
                           f"{l2_offset:#x}, L2 index: {l2_index:#x})")
        host = 0
        if typ == COMPRESSED:
            c = 1
            host = first & L2E_COMPRESSED_OFFSET_SIZE_MASK
        elif typ in (ZERO_PLAIN, UNALLOCATED):
            c = 0
            while c < nb and cluster_type(entries[c]) == typ:
                c += 1
        else:
            mask = QCOW_OFLAG_ZERO | L2E_OFFSET_MASK | QCOW_OFLAG_COMPRESSED
            base = first & mask
            c = 0
            while c < nb and entries[c] & mask == base + c * cs:
                c += 1
            host = first & L2E_OFFSET_MASK
            if host % cs:
                raise _Corrupt(f"Cluster allocation offset {host:#x} unaligned (L2 "
                               f"offset: {l2_offset:#x}, L2 index: {l2_index:#x})")
        return typ, host, min(c * cs, needed) - in_cluster

    def _decompress(self, entry: int) -> bytes:
        """qcow2_decompress_cluster (one cluster kept, as s->cluster_cache)."""
        coffset = entry & self.cluster_offset_mask
        if self._cached_compressed and self._cached_compressed[0] == coffset:
            return self._cached_compressed[1]
        nb_csectors = ((entry >> self.csize_shift) & self.csize_mask) + 1
        sector_offset = coffset & 511
        csize = nb_csectors * 512 - sector_offset
        raw = self._pread(coffset - sector_offset, nb_csectors * 512)[sector_offset:]
        try:
            d = zlib.decompressobj(-12)
            out = d.decompress(raw[:csize], self.cluster_size)
        except zlib.error:
            raise BlockIOError(errno.EIO) from None
        if len(out) != self.cluster_size:
            raise BlockIOError(errno.EIO)
        self._cached_compressed = (coffset, out)
        return out

    def _read_encrypted(self, guest: int, host: int, n: int) -> bytes:
        """The sectors around [host, host+n) decrypted (qcow2_co_preadv with
        s->crypto; block/io.c aligns such requests to sectors)."""
        assert self.cipher is not None
        head = host % 512
        size = -(-(head + n) // 512) * 512
        raw = self._pread(host - head, size)
        sector = (host - head if self.physical_sectors else guest - head) // 512
        return self.cipher.decrypt(sector, raw)[head:head + n]

    def _read(self, offset: int, length: int, *, backing: bool) -> bytes:
        """qcow2_co_preadv; with `backing`, unallocated runs come from the backing
        reader (the node's own read path, as COW uses it)."""
        out = bytearray(length)
        pos = 0
        cs = self.cluster_size
        while pos < length:
            cur = offset + pos
            typ, host, n = self._get_cluster_offset(cur, length - pos)
            if typ == NORMAL and self.cipher is not None:
                out[pos:pos + n] = self._read_encrypted(cur, host + cur % cs, n)
            elif typ == NORMAL:
                out[pos:pos + n] = self._pread(host + cur % cs, n)
            elif typ == COMPRESSED:
                data = self._decompress(host)
                out[pos:pos + n] = data[cur % cs:cur % cs + n]
            elif typ == UNALLOCATED and backing and self.backing is not None:
                out[pos:pos + n] = self.backing(cur, n)
            pos += n
        return bytes(out)

    # --- L1/L2 tables ----------------------------------------------------------------

    def _write_l1_entry(self, index: int) -> None:
        """qcow2_write_l1_entry: the 512-byte sector of the L1 table holding it."""
        start = index & ~63
        count = min(64, len(self.l1) - start)
        buf = struct.pack(f">{count}Q", *self.l1[start:start + count]) + bytes(8 * (64 - count))
        self._pwrite(self.l1_table_offset + 8 * start, buf)

    def _grow_l1(self, min_size: int, *, exact: bool) -> None:
        """qcow2_grow_l1_table."""
        if min_size <= len(self.l1):
            return
        if min_size > (1 << 31) // 8:
            raise BlockIOError(errno.EFBIG)
        if exact:
            new_size = min_size
        else:
            new_size = max(1, len(self.l1))
            while min_size > new_size:
                new_size = -(-new_size * 3 // 2)
        if new_size > QCOW_MAX_L1_SIZE // 8:
            raise BlockIOError(errno.EFBIG)
        new_l1 = self.l1 + [0] * (new_size - len(self.l1))
        new_offset = self.refcounts.alloc(new_size * 8)
        self.refcounts.write()
        self._pwrite(new_offset, struct.pack(f">{new_size}Q", *new_l1))
        self._pwrite(_OFF_L1, struct.pack(">IQ", new_size, new_offset))
        old_offset, old_size = self.l1_table_offset, len(self.l1)
        self.l1, self.l1_table_offset, self.l1_size = new_l1, new_offset, new_size
        if old_size:
            self.refcounts.free(old_offset, old_size * 8)

    def _cluster_table(self, offset: int) -> tuple[int, bytearray, int]:
        """get_cluster_table: the L2 table for `offset` (allocated, or copied when
        shared), as (its host offset, its cache entry, the L2 index)."""
        cs = self.cluster_size
        l1_index = offset // (cs * self.l2_size)
        if l1_index >= len(self.l1):
            self._grow_l1(l1_index + 1, exact=False)
        entry = self.l1[l1_index]
        l2_offset = entry & L1E_OFFSET_MASK
        if l2_offset % cs:
            raise _Corrupt(f"L2 table offset {l2_offset:#x} unaligned (L1 index: {l1_index:#x})")
        if entry & QCOW_OFLAG_COPIED:
            table = self.l2_cache.get(l2_offset)
        else:
            new_offset = self.refcounts.alloc(cs)
            if new_offset == 0:
                raise _Corrupt("Preventing invalid allocation of L2 table at offset 0")
            self.refcounts.write()
            old = bytes(self.l2_cache.get(l2_offset)) if l2_offset else bytes(cs)
            table = self.l2_cache.get_empty(new_offset)
            table[:] = old
            self.l2_cache.mark_dirty(new_offset)
            self.l2_cache._write_one(new_offset)
            self.l1[l1_index] = new_offset | QCOW_OFLAG_COPIED
            self._write_l1_entry(l1_index)
            if l2_offset:
                self.refcounts.free(l2_offset, cs)
            l2_offset = new_offset
        return l2_offset, table, (offset // cs) % self.l2_size

    def _free_any(self, entry: int) -> None:
        """qcow2_free_any_clusters for one L2 entry."""
        typ = cluster_type(entry)
        if typ == COMPRESSED:
            nb_csectors = ((entry >> self.csize_shift) & self.csize_mask) + 1
            self.refcounts.free((entry & self.cluster_offset_mask) & ~511, nb_csectors * 512)
        elif typ in (NORMAL, ZERO_ALLOC):
            host = entry & L2E_OFFSET_MASK
            if host % self.cluster_size:
                self.corruption = self.corruption or f"Cannot free unaligned cluster {host:#x}"
            else:
                self.refcounts.free(host, self.cluster_size)

    # --- writes ----------------------------------------------------------------------

    def _handle_copied(self, guest: int, host: int, nbytes: int) -> tuple[int, int]:
        """handle_copied: (host offset of `guest`, bytes) of already allocated,
        unshared clusters, or (0, 0)."""
        cs = self.cluster_size
        nb = min(-(-(guest % cs + nbytes) // cs), self.l2_size - (guest // cs) % self.l2_size)
        _, table, l2_index = self._cluster_table(guest)
        entries = self._l2_entries(table, l2_index, nb)
        first = entries[0]
        if cluster_type(first) != NORMAL or not first & QCOW_OFLAG_COPIED:
            return 0, -1
        start = first & L2E_OFFSET_MASK
        if start % cs:
            raise _Corrupt(f"Data cluster offset {start:#x} unaligned (guest offset: {guest:#x})")
        if host and start != host - guest % cs:
            return 0, 0
        mask = QCOW_OFLAG_COPIED | QCOW_OFLAG_ZERO | L2E_OFFSET_MASK | QCOW_OFLAG_COMPRESSED
        keep = 0
        while keep < nb and entries[keep] & mask == (first & mask) + keep * cs:
            keep += 1
        return start + guest % cs, min(nbytes, keep * cs - guest % cs)

    def _handle_alloc(self, guest: int, host: int, nbytes: int) -> tuple[int, int, _L2Meta | None]:
        """handle_alloc: new clusters (or preallocated zero clusters) for a run of
        unallocated or COW clusters; (host offset of `guest`, bytes, its L2Meta)."""
        cs = self.cluster_size
        in_cluster = guest % cs
        nb = min(-(-(in_cluster + nbytes) // cs), self.l2_size - (guest // cs) % self.l2_size)
        _, table, l2_index = self._cluster_table(guest)
        entries = self._l2_entries(table, l2_index, nb)
        first = entries[0]
        if first & QCOW_OFLAG_COMPRESSED:
            nb = 1
        else:
            i = 0
            while i < nb:
                e = entries[i]
                if cluster_type(e) == NORMAL and e & QCOW_OFLAG_COPIED:
                    break
                i += 1
            nb = i
        alloc = 0
        keep_old = False
        if (cluster_type(first) == ZERO_ALLOC and first & QCOW_OFLAG_COPIED
                and (not host or (host - host % cs) == first & L2E_OFFSET_MASK)):
            start = first & L2E_OFFSET_MASK
            if start % cs:
                raise _Corrupt(f"Preallocated zero cluster offset {start:#x} unaligned "
                               f"(guest offset: {guest:#x})")
            mask = QCOW_OFLAG_COPIED | L2E_OFFSET_MASK | QCOW_OFLAG_COMPRESSED
            c = 0
            while c < nb and entries[c] & mask == (first & mask) + c * cs:
                c += 1
            nb = c
            alloc = start
            keep_old = True
        if not alloc:
            if host:
                nb = self.refcounts.alloc_at(host - host % cs, nb)
                if nb == 0:
                    return 0, 0, None
                alloc = host - host % cs
            else:
                alloc = self.refcounts.alloc(nb * cs)
            if alloc == 0:
                raise _Corrupt("Preventing invalid allocation at offset 0")
        requested = nbytes + in_cluster
        avail = nb * cs
        nb_bytes = min(requested, avail)
        meta = _L2Meta(alloc, guest - in_cluster, nb, in_cluster, nb_bytes,
                       avail - nb_bytes, keep_old)
        return alloc + in_cluster, min(nbytes, nb_bytes - in_cluster), meta

    def _alloc_cluster_offset(self, offset: int, nbytes: int) -> tuple[int, int, list[_L2Meta]]:
        """qcow2_alloc_cluster_offset: one contiguous host range for as much of
        the request as possible; (host offset, bytes, new allocations)."""
        start = offset
        remaining = nbytes
        host = 0
        first_host = 0
        metas: list[_L2Meta] = []
        while remaining:
            got_host, cur = self._handle_copied(start, host, remaining)
            if cur == 0:
                break
            if cur < 0:
                got_host, cur, meta = self._handle_alloc(start, host, remaining)
                if cur == 0:
                    break
                assert meta is not None
                metas.append(meta)
            if not first_host:
                first_host = got_host
            host = got_host + cur
            start += cur
            remaining -= cur
        return first_host, nbytes - remaining, metas

    def _write(self, offset: int, data: memoryview) -> None:
        """qcow2_co_pwritev."""
        self._cached_compressed = None
        pos = 0
        while pos < len(data):
            host, n, metas = self._alloc_cluster_offset(offset + pos, len(data) - pos)
            chunk = data[pos:pos + n]
            merged = None
            for m in metas:  # merge_cow
                if ((m.cow_start or m.cow_end_bytes)
                        and m.guest + m.cow_start == offset + pos
                        and m.guest + m.cow_end_offset == offset + pos + n):
                    merged = m
                    break
            if merged is not None:
                self._perform_cow(merged, chunk)
            else:
                self._pwrite(host, bytes(chunk))
            for m in metas:
                if m is not merged:
                    self._perform_cow(m, None)
                self._link_l2(m)
            pos += n

    def _write_compressed(self, offset: int, data: bytes) -> None:
        """qcow2_co_pwritev_compressed: raw deflate with a 4 KiB window and memLevel 9
        (deflateInit2(Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9)); data that does not
        shrink below a cluster is written as an ordinary cluster. The compressed
        bytes get space from qcow2_alloc_bytes and an L2 entry with the
        compressed flag and the sector count (qcow2_alloc_compressed_cluster_offset),
        which refuses a cluster that already has a host offset (EIO)."""
        cs = self.cluster_size
        nbytes = len(data)
        if offset % cs:
            raise BlockIOError(errno.EINVAL)
        if nbytes != cs:
            if nbytes > cs or offset + nbytes != self.size:
                raise BlockIOError(errno.EINVAL)
            data += bytes(cs - nbytes)
        z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 9)
        out = z.compress(data) + z.flush()
        if len(out) >= cs:
            self._write(offset, memoryview(data[:nbytes]))
            return
        self._cached_compressed = None
        l2_offset, table, l2_index = self._cluster_table(offset)
        if self._l2_entries(table, l2_index, 1)[0] & L2E_OFFSET_MASK:
            raise BlockIOError(errno.EIO)
        host = self._alloc_bytes(len(out))
        nb_csectors = ((host + len(out) - 1) >> 9) - (host >> 9)
        struct.pack_into(">Q", table, l2_index * 8,
                         host | QCOW_OFLAG_COMPRESSED | (nb_csectors << self.csize_shift))
        self.l2_cache.mark_dirty(l2_offset)
        self._pwrite(host, out)

    def _alloc_bytes(self, size: int) -> int:
        """qcow2_alloc_bytes: `size` bytes packed after the previous compressed
        cluster while its host cluster has room (each host cluster touched gains a
        reference), else from a new host cluster."""
        cs = self.cluster_size
        refcounts = self.refcounts
        offset = self.free_byte_offset
        if offset and refcounts.get(offset // cs) == refcounts.ops.max:
            offset = 0
        free_in_cluster = cs - offset % cs
        while True:
            if not offset or free_in_cluster < size:
                new_cluster = refcounts._alloc_noref(1)
                if new_cluster == 0:
                    raise _Corrupt("Preventing invalid allocation of compressed cluster "
                                   "at offset 0")
                if not offset or -(-offset // cs) * cs != new_cluster:
                    offset = new_cluster
                    free_in_cluster = cs
                else:
                    free_in_cluster += cs
            if not refcounts._update(offset, size, 1):
                break
            offset = 0  # a refcount block was allocated first (-EAGAIN): again
        self.free_byte_offset = 0 if (offset + size) % cs == 0 else offset + size
        return offset

    def _perform_cow(self, m: _L2Meta, data: memoryview | None) -> None:
        """perform_cow: the unchanged head and tail of the new clusters, read
        through this node (and its backing file), written with the guest data."""
        cs_start, end_off, end_bytes = m.cow_start, m.cow_end_offset, m.cow_end_bytes
        if not cs_start and not end_bytes:
            if data is not None:
                self._pwrite(m.alloc_offset, bytes(data))
            return
        head = self._read(m.guest, cs_start, backing=True) if cs_start else b""
        tail = self._read(m.guest + end_off, end_bytes, backing=True) if end_bytes else b""
        if data is not None:
            self._pwrite(m.alloc_offset, head + bytes(data) + tail)
            return
        if head:
            self._pwrite(m.alloc_offset, head)
        if tail:
            self._pwrite(m.alloc_offset + end_off, tail)

    def _link_l2(self, m: _L2Meta) -> None:
        """qcow2_alloc_cluster_link_l2."""
        if self.lazy_refcounts:
            self._mark_dirty()
        # The L2 cache depends on the refcount cache (qcow2_cache_set_dependency):
        # _Cache writes refcount blocks before any L2 table it writes back.
        l2_offset, table, l2_index = self._cluster_table(m.guest)
        old = self._l2_entries(table, l2_index, m.nb)
        struct.pack_into(f">{m.nb}Q", table, l2_index * 8, *(
            (m.alloc_offset + i * self.cluster_size) | QCOW_OFLAG_COPIED for i in range(m.nb)))
        self.l2_cache.mark_dirty(l2_offset)
        if not m.keep_old:
            for entry in old:
                if entry:
                    self._free_any(entry)

    # --- zero writes and discards ----------------------------------------------------

    def _write_zeroes(self, offset: int, length: int, unmap: bool) -> None:
        """bdrv_co_do_pwrite_zeroes's split by the cluster size; each piece to
        qcow2_co_pwrite_zeroes, a zeroed buffer where it answers -ENOTSUP."""
        cs = self.cluster_size
        head = offset % cs
        tail = (offset + length) % cs
        while length > 0:
            num = length
            if head:
                num = min(length, cs - head)
                head = (head + num) % cs
            elif tail and num > cs:
                num -= tail
            if not self._pwrite_zeroes(offset, num, unmap):
                chunk = 1 << 20
                done = 0
                while done < num:
                    k = min(chunk, num - done)
                    self._write(offset + done, memoryview(bytes(k)))
                    done += k
            offset += num
            length -= num

    def _is_zero(self, offset: int, length: int) -> bool:
        """is_zero: the range reads as zeros by its block status. Through the
        backing chain the emulator knows bytes, not status: an unallocated range
        counts as zero when the backing reader gives zeros for it."""
        length = min(length, self.size - offset)
        pos = offset
        while pos < offset + length:
            typ, _, n = self._get_cluster_offset(pos, offset + length - pos)
            if typ in (NORMAL, COMPRESSED):
                return False
            if typ == UNALLOCATED and self.backing is not None:
                if any(self.backing(pos, n)):
                    return False
            pos += n
        return True

    def _pwrite_zeroes(self, offset: int, length: int, unmap: bool) -> bool:
        """qcow2_co_pwrite_zeroes: False for -ENOTSUP."""
        cs = self.cluster_size
        head = offset % cs
        tail = (offset + length) % cs
        if offset + length == self.size:
            tail = 0
        if head or tail:
            if not (self._is_zero(offset - head, head)
                    and self._is_zero(offset + length, cs - tail if tail else 0)):
                return False
            offset -= head
            length = cs
            typ, _, _ = self._get_cluster_offset(offset, cs)
            if typ not in (UNALLOCATED, ZERO_PLAIN, ZERO_ALLOC):
                return False
        if self.version < 3:
            return False
        self._cached_compressed = None
        # qcow2_cluster_zeroize / zero_single_l2
        nb = -(-min(length, self.size - offset) // cs) if offset < self.size else 0
        for l2_offset, table, l2_index, entries in self._l2_runs(offset, nb):
            for i, old in enumerate(entries):
                typ = cluster_type(old)
                if typ == ZERO_PLAIN or (typ == ZERO_ALLOC and not unmap):
                    continue
                self.l2_cache.mark_dirty(l2_offset)
                if typ == COMPRESSED or unmap:
                    _BE64.pack_into(table, (l2_index + i) * 8, QCOW_OFLAG_ZERO)
                    self._free_any(old)
                else:
                    _BE64.pack_into(table, (l2_index + i) * 8, old | QCOW_OFLAG_ZERO)
        return True

    def _l2_runs(self, offset: int, nb: int) -> Iterator[tuple[int, bytearray, int,
                                                                tuple[int, ...]]]:
        """The L2 tables of `nb` clusters from `offset`, one table at a time (as
        zero_single_l2 and discard_single_l2 go): (table offset, table, first
        index, the entries)."""
        while nb > 0:
            l2_offset, table, l2_index = self._cluster_table(offset)
            n = min(nb, self.l2_size - l2_index)
            yield l2_offset, table, l2_index, self._l2_entries(table, l2_index, n)
            nb -= n
            offset += n * self.cluster_size

    def _discard(self, offset: int, length: int) -> None:
        """bdrv_co_pdiscard split by the cluster size; qcow2_co_pdiscard takes whole
        clusters (and the partial cluster that ends the image) and ignores the rest."""
        cs = self.cluster_size
        end = offset + length
        start = -(-offset // cs) * cs
        stop = end - end % cs
        if end == self.size and end % cs and end - end % cs >= start:
            stop = end
        if stop > start:
            self._cluster_discard(start, stop - start, full=False)

    def _cluster_discard(self, offset: int, length: int, *, full: bool) -> None:
        """qcow2_cluster_discard / discard_single_l2."""
        self._cached_compressed = None
        nb = -(-length // self.cluster_size)
        for l2_offset, table, l2_index, entries in self._l2_runs(offset, nb):
            for i, old in enumerate(entries):
                typ = cluster_type(old)
                if typ == UNALLOCATED and (full or self.backing is None):
                    continue
                if typ == ZERO_PLAIN and not full:
                    continue
                self.l2_cache.mark_dirty(l2_offset)
                new = QCOW_OFLAG_ZERO if not full and self.version >= 3 else 0
                _BE64.pack_into(table, (l2_index + i) * 8, new)
                self._free_any(old)

    # --- repair of a dirty image -----------------------------------------------------

    def _repair(self) -> None:
        """qcow2_check with BDRV_FIX_ERRORS | BDRV_FIX_LEAKS, as qcow2_do_open runs it
        on a dirty image opened read-write: every refcount recomputed from the
        metadata that references clusters, wrong ones rewritten (new refcount
        blocks placed past everything in use), COPIED flags set where the
        refcount is 1, then the dirty bit cleared."""
        rc = self.refcounts
        for _ in range(8):
            # A refcount block allocated while fixing is metadata too: count again
            # until nothing changes.
            expected = expected_refcounts(
                self.file, cluster_bits=self.cluster_bits, l1=self.l1,
                l1_table_offset=self.l1_table_offset, reftable=rc.table,
                reftable_offset=rc.table_offset,
                read_l2=lambda off: bytes(self.l2_cache.get(off)))
            top = max(expected) + 1 if expected else 1
            rc.free_cluster_index = max(rc.free_cluster_index, top)
            changed = False
            for idx in range(max(top, self._file_clusters())):
                want = expected.get(idx, 0)
                if rc.get(idx) != want:
                    rc.set_exact(idx, want)
                    changed = True
            if not changed:
                break
        self._fix_copied()
        rc.write()
        self.l2_cache.write()
        self._file_flush()
        self.incompatible &= ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT)
        self._pwrite(_OFF_INCOMPAT, _BE64.pack(self.incompatible))
        self._file_flush()
        rc.free_cluster_index = 0

    def _file_clusters(self) -> int:
        return -(-self.file.length // self.cluster_size)

    def _fix_copied(self) -> None:
        """check_oflag_copied with fix: the COPIED flag of L1 and L2 entries agrees
        with a refcount of 1."""
        cs = self.cluster_size
        for i, entry in enumerate(self.l1):
            l2_off = entry & L1E_OFFSET_MASK
            if not l2_off:
                continue
            want = (self.refcounts.get(l2_off // cs) == 1)
            if bool(entry & QCOW_OFLAG_COPIED) != want:
                self.l1[i] = l2_off | (QCOW_OFLAG_COPIED if want else 0)
                self._write_l1_entry(i)
            table = self.l2_cache.get(l2_off)
            entries = self._l2_entries(table, 0, self.l2_size)
            for j, e in enumerate(entries):
                typ = cluster_type(e)
                if typ not in (NORMAL, ZERO_ALLOC):
                    continue
                want = self.refcounts.get((e & L2E_OFFSET_MASK) // cs) == 1
                if bool(e & QCOW_OFLAG_COPIED) != want:
                    new = (e | QCOW_OFLAG_COPIED) if want else (e & ~QCOW_OFLAG_COPIED)
                    _BE64.pack_into(table, j * 8, new)
                    self.l2_cache.mark_dirty(l2_off)


def _opt_size(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    from schema.opts.qemuopts import OptsError, parse_size

    try:
        return parse_size("size", str(value))
    except OptsError as e:
        raise ImageError(e.message) from None


def open_data(ctx: DataContext) -> FormatData:
    return Qcow2Data(ctx)
