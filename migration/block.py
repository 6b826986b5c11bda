"""Block migration: the disks' contents copied through the migration stream.

Pure model of the `migration` layer, QEMU 2.11's migration/block.c (the `blk`/`inc`
arguments of `migrate`, HMP `migrate -b`/`-i`, the `block` capability and the
`block-incremental` parameter). It reaches the disks only through
`migration.host.Disks`/`Disk` (`blockdev.block_migration` implements them on the
block layer's data path); `migration.commands` drives it from the migration's
iterations and loads it on the first migration that needs it.

The source [init_blk_migration, set_dirty_tracking, block_save_iterate,
block_save_complete, block_save_pending, mig_save_device_bulk,
mig_save_device_dirty]:

- every node bdrv_next returns that is not read-only is migrated, in that order, by
  its device name; each gets an anonymous dirty bitmap of BLOCK_SIZE granularity and
  an op blocker ("block device is in use by migration") for the migration's length;
- the bulk phase sends each device's chunks (1 MiB, aligned) in turn, resetting the
  chunk's dirty bits as it reads it; with `block-incremental` (a shared base) chunks
  the top image does not allocate are skipped (bdrv_is_allocated); a progress record
  follows whenever the percentage changes;
- then the dirty phase sends chunks written since (the guest, HMP qemu-io, an NBD
  client), one per device and step, and the completion sends every dirty chunk
  left, then `100 %`;
- `block_save_pending` keeps the migration iterating until the bulk is done.

query-migrate's `disk` [migration/migration.c populate_disk_info,
blk_mig_bytes_transferred/_remaining/_total] exists while the device list does (from
the setup to the completion or the cleanup), with `transferred` counted as QEMU counts
it: the sectors before the cursor of each device's bulk phase.

The destination [block_load] writes each chunk into the device of that name (taking
its image over first, blk_invalidate_cache) cluster by cluster, all-zero clusters as
zero writes that may unmap, and prints QEMU's progress lines on stdout.

Each record's payload is block.c's own: a big-endian 64-bit `sector << 9 | flags`,
then for a device block the name's length (one byte), the name and the data read
(the whole chunk, unless it is a zero block).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable

import attrs

from migration.host import Disk, Disks
from migration.stream import LoadError
from schema.errors import GenericError

BLOCK_SIZE = 1 << 20
SECTOR = 512
CHUNK_SECTORS = BLOCK_SIZE // SECTOR
FLAG_DEVICE_BLOCK = 0x01
FLAG_EOS = 0x02
FLAG_PROGRESS = 0x04
FLAG_ZERO_BLOCK = 0x08
MAX_IS_ALLOCATED_SEARCH = 65536 * SECTOR
BLOCKER = "block device is in use by migration"
# The savevm section id of "block": vl.c registers cpu_ticks_init's "timer" (0), then
# blk_mig_init's "block" (1), then ram_mig_init's "ram" (2).
SECTION_ID = 1


def _header(sector: int, flags: int) -> bytes:
    return struct.pack(">Q", (sector << 9) | flags)


def progress_payload(percent: int) -> bytes:
    return _header(percent, FLAG_PROGRESS)


@attrs.define(kw_only=True, eq=False)
class DevState:
    """BlkMigDevState: one migrated device and its cursors."""

    disk: Disk
    name: str
    shared_base: bool
    total_sectors: int
    bulk_completed: bool = False
    cur_sector: int = 0
    cur_dirty: int = 0
    completed_sectors: int = 0

    def chunk_cost(self) -> int:
        """What one device block puts on the wire (blk_send)."""
        return 8 + 1 + len(self.name.encode()) + BLOCK_SIZE


@attrs.define(kw_only=True, eq=False)
class BlockSave:
    """The source's block_mig_state for one migration."""

    devices: list[DevState] = attrs.Factory(list)
    zero_blocks: bool = False
    prev_progress: int = -1
    bulk_completed: bool = False
    active: bool = True  # the device list exists (blk_mig_active)
    # init_blk_migration met a node without sectors: it returned before giving any
    # device its BlockBackend, so every read fails (ENOMEDIUM) and the migration too
    unattached: bool = False

    @classmethod
    def setup(cls, disks: Disks, *, incremental: bool, zero_blocks: bool) -> BlockSave:
        """block_save_setup: init_blk_migration, then set_dirty_tracking."""
        save = cls(zero_blocks=zero_blocks)
        for disk in disks.migratable():
            length = disk.length()
            if length <= 0:
                save.unattached = True
                break
            save.devices.append(DevState(disk=disk, name=disk.name, shared_base=incremental,
                                         total_sectors=length // SECTOR))
        for dev in save.devices:
            if not save.unattached:
                dev.disk.block_ops(BLOCKER)
        for dev in save.devices:
            dev.disk.dirty_start(BLOCK_SIZE)
        return save

    # -- statistics (query-migrate's `disk`) ---------------------------------------

    def bytes_transferred(self) -> int:
        return sum(d.completed_sectors for d in self.devices) * SECTOR

    def bytes_total(self) -> int:
        return sum(d.total_sectors for d in self.devices) * SECTOR

    def bytes_remaining(self) -> int:
        return self.bytes_total() - self.bytes_transferred()

    def stats(self) -> dict[str, int | float]:
        """populate_disk_info: the three counters, the rest of MigrationStats zero."""
        return {"transferred": self.bytes_transferred(), "remaining": self.bytes_remaining(),
                "total": self.bytes_total(), "duplicate": 0, "skipped": 0, "normal": 0,
                "normal-bytes": 0, "dirty-pages-rate": 0, "mbps": 0, "dirty-sync-count": 0,
                "postcopy-requests": 0, "page-size": 0}

    # -- the migration thread's questions -------------------------------------------

    def pending(self, max_size: float) -> float:
        """block_save_pending: the dirty bytes; during the bulk phase at least one
        block more than `max_size`, so the migration cannot complete yet."""
        pending: float = sum(d.disk.dirty_count() for d in self.devices)
        if pending <= max_size and not self.bulk_completed:
            pending = max_size + BLOCK_SIZE
        return pending

    def cost_left(self) -> int:
        """Wire bytes of what is still to send (the caller's next wake-up)."""
        cost = 0
        for d in self.devices:
            if not d.bulk_completed:
                left = d.total_sectors - (d.cur_sector // CHUNK_SECTORS * CHUNK_SECTORS)
                cost += -(-left // CHUNK_SECTORS) * d.chunk_cost()
            cost += d.disk.dirty_count() // BLOCK_SIZE * d.chunk_cost()
        return cost

    # -- sending ---------------------------------------------------------------------

    def _send(self, dev: DevState, sector: int, nr_sectors: int) -> tuple[bytes, int]:
        """Read a chunk and make its record (blk_send): (payload, wire cost). With
        `zero-blocks`, an all-zero chunk goes as its header alone."""
        if self.unattached:
            raise OSError(errno.ENOMEDIUM, os.strerror(errno.ENOMEDIUM))
        data = dev.disk.pread(sector * SECTOR, nr_sectors * SECTOR)
        name = dev.name.encode()
        if self.zero_blocks and not any(data):
            head = _header(sector, FLAG_DEVICE_BLOCK | FLAG_ZERO_BLOCK)
            return head + bytes([len(name)]) + name, 9 + len(name)
        head = _header(sector, FLAG_DEVICE_BLOCK)
        return head + bytes([len(name)]) + name + data, dev.chunk_cost()

    def _bulk_device(self, dev: DevState, out: list[bytes]) -> tuple[bool, int]:
        """mig_save_device_bulk: (device finished, wire bytes)."""
        cur = dev.cur_sector
        total = dev.total_sectors
        if dev.shared_base:
            while cur < total:
                allocated, count = dev.disk.is_allocated(cur * SECTOR, MAX_IS_ALLOCATED_SEARCH)
                if allocated or count < SECTOR:
                    break
                cur += count // SECTOR
        if cur >= total:
            dev.cur_sector = dev.completed_sectors = total
            return True, 0
        dev.completed_sectors = cur
        cur -= cur % CHUNK_SECTORS
        nr = min(CHUNK_SECTORS, total - cur)
        payload, cost = self._send(dev, cur, nr)
        dev.disk.dirty_reset(cur * SECTOR, nr * SECTOR)
        out.append(payload)
        dev.cur_sector = cur + nr
        return dev.cur_sector >= total, cost

    def _bulk_step(self, out: list[bytes]) -> tuple[bool, int]:
        """blk_mig_save_bulked_block: one step of the first unfinished device, then
        the progress record if the percentage moved; (anything left, wire bytes)."""
        completed = 0
        more = False
        cost = 0
        for dev in self.devices:
            if not dev.bulk_completed:
                done, cost = self._bulk_device(dev, out)
                dev.bulk_completed = done
                completed += dev.completed_sectors
                more = True
                break
            completed += dev.completed_sectors
        total = sum(d.total_sectors for d in self.devices)
        progress = completed * 100 // total if total else 100
        if progress != self.prev_progress:
            self.prev_progress = progress
            out.append(progress_payload(progress))
            cost += 8
        return more, cost

    def _dirty_device(self, dev: DevState, out: list[bytes]) -> tuple[bool, int]:
        """mig_save_device_dirty: the next dirty chunk from the cursor; (the cursor
        reached the end, wire bytes)."""
        sector = dev.cur_dirty
        while sector < dev.total_sectors:
            if dev.disk.dirty_get(sector * SECTOR):
                nr = min(CHUNK_SECTORS, dev.total_sectors - sector)
                dev.disk.dirty_reset(sector * SECTOR, nr * SECTOR)
                payload, cost = self._send(dev, sector, nr)
                out.append(payload)
                dev.cur_dirty = sector + nr
                return dev.cur_dirty >= dev.total_sectors, cost
            sector += CHUNK_SECTORS
            dev.cur_dirty = sector
        return True, 0

    def _dirty_step(self, out: list[bytes]) -> tuple[bool, int]:
        """blk_mig_save_dirty_block: a chunk from each device in turn until one has
        more; (every cursor at its end, wire bytes)."""
        spent = 0
        for dev in self.devices:
            done, cost = self._dirty_device(dev, out)
            spent += cost
            if not done:
                return False, spent
        return True, spent

    def _reset_dirty_cursors(self) -> None:
        for dev in self.devices:
            dev.cur_dirty = 0

    def _next_cost(self) -> int:
        """The wire bytes the next step may send (0: it sends no chunk)."""
        if not self.bulk_completed:
            dev = next((d for d in self.devices if not d.bulk_completed), None)
        else:
            dev = next((d for d in self.devices if d.disk.dirty_count()), None)
        return dev.chunk_cost() if dev is not None else 0

    def iterate(self, budget: float) -> tuple[list[bytes], int]:
        """block_save_iterate: bulk steps, then dirty chunks, while `budget` wire
        bytes allow; (payloads, wire bytes)."""
        out: list[bytes] = []
        spent = 0
        self._reset_dirty_cursors()
        while spent + self._next_cost() <= budget:
            if not self.bulk_completed:
                more, cost = self._bulk_step(out)
                if not more:
                    self.bulk_completed = True
                spent += cost
            else:
                done, cost = self._dirty_step(out)
                spent += cost
                if done:
                    break
        return out, spent

    def complete(self) -> tuple[list[bytes], int]:
        """block_save_complete: every dirty chunk left, `100 %`, then the device list
        goes (block_migration_cleanup_bmds)."""
        out: list[bytes] = []
        spent = 0
        self._reset_dirty_cursors()
        while True:
            done, cost = self._dirty_step(out)
            spent += cost
            if done:
                break
        out.append(progress_payload(100))
        self.cleanup()
        return out, spent + 8

    def cleanup(self) -> None:
        """block_migration_cleanup_bmds: the bitmaps and blockers go."""
        if not self.active:
            return
        self.active = False
        for dev in self.devices:
            dev.disk.dirty_stop()
        for dev in self.devices:
            if not self.unattached:
                dev.disk.unblock_ops()
        self.devices = []


@attrs.define(kw_only=True, eq=False)
class BlockLoad:
    """The destination's block_load, record by record."""

    disks: Disks
    stdout: Callable[[str], None]
    stderr: Callable[[str], None]
    report: Callable[[str], None]
    banner_printed: bool = False
    prev: Disk | None = None
    prev_name: str = ""
    total_sectors: int = 0
    cluster_size: int = BLOCK_SIZE

    def _fail(self, err: int) -> LoadError:
        return LoadError(f"error while loading state section id {SECTION_ID}(block)",
                         f"load of migration failed: {os.strerror(err)}")

    def load(self, payload: bytes) -> None:
        """One record; raises LoadError with QEMU's lines (a line QEMU writes with
        fprintf goes to stderr at once, without the program's name)."""
        if len(payload) < 8:
            raise self._fail(errno.EIO)
        (addr,) = struct.unpack(">Q", payload[:8])
        flags = addr & (SECTOR - 1)
        sector = addr >> 9
        if flags & FLAG_DEVICE_BLOCK:
            self._device_block(payload, sector, flags)
        elif flags & FLAG_PROGRESS:
            if not self.banner_printed:
                self.stdout("Receiving block device images\n")
                self.banner_printed = True
            self.stdout(f"Completed {sector} %" + ("\n" if sector == 100 else "\r"))
        elif not flags & FLAG_EOS:
            self.stderr(f"Unknown block migration flags: {f'{flags:#x}' if flags else '0'}\n")
            raise self._fail(errno.EINVAL)

    def _device_block(self, payload: bytes, sector: int, flags: int) -> None:
        if len(payload) < 9 or len(payload) < 9 + payload[8]:
            raise self._fail(errno.EIO)
        name_len = payload[8]
        name = payload[9:9 + name_len].decode(errors="replace")
        data = payload[9 + name_len:]
        disk = self.disks.by_name(name)
        if disk is None:
            self.stderr(f"Error unknown block device {name}\n")
            raise self._fail(errno.EINVAL)
        if self.prev is None or name != self.prev_name:
            self.prev, self.prev_name = disk, name
            self.total_sectors = disk.length() // SECTOR
            if self.total_sectors <= 0:
                self.report(f"Error getting length of block device {name}")
                raise self._fail(errno.EINVAL)
            try:
                disk.activate()
            except GenericError as err:
                self.report(err.desc)
                raise self._fail(errno.EINVAL) from None
            cluster = disk.cluster_size()
            self.cluster_size = cluster if 0 < cluster <= BLOCK_SIZE and \
                BLOCK_SIZE % cluster == 0 else BLOCK_SIZE
        nr_sectors = min(CHUNK_SECTORS, self.total_sectors - sector)
        try:
            if nr_sectors < 0:  # past the device's end: blk_check_byte_request
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            if flags & FLAG_ZERO_BLOCK:
                disk.pwrite_zeroes(sector * SECTOR, nr_sectors * SECTOR)
                return
            # The source sends a whole BLOCK_SIZE buffer whatever it read; the
            # destination writes it whole, cluster by cluster [block_load].
            buf = data[:BLOCK_SIZE].ljust(BLOCK_SIZE, b"\0")
            size = self.cluster_size
            for i in range(BLOCK_SIZE // size):
                at = sector * SECTOR + i * size
                piece = buf[i * size:(i + 1) * size]
                if not any(piece):
                    disk.pwrite_zeroes(at, size)
                else:
                    disk.pwrite(at, piece)
        except OSError as err:
            raise self._fail(err.errno or errno.EIO) from None
