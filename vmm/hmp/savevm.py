"""VM snapshots on the block layer's internal snapshots: savevm, loadvm, delvm, info snapshots.

`vmm` layer, composing the block layer and the Machine as QEMU 2.11's
migration/savevm.c (save_snapshot, load_snapshot, hmp_savevm, hmp_loadvm,
hmp_delvm, hmp_info_snapshots) composes block/snapshot.c's bdrv_all_* functions
(reproduced here: `all_can_snapshot`, `find_vmstate_bs`, ...) over bdrv_next's nodes
(the BlockBackends' roots, then the monitor's own nodes). A VM snapshot is an
internal snapshot of the same name on every writable image that can take one; the
first of them (the "vmstate" image) also records the size of the VM state.

The VM state itself is what the emulator models of a machine: its RAM
(`devices.address_space`) and its virtual clock (QEMU_CLOCK_VIRTUAL, which loadvm
puts back, as cpus.c's vmstate_timers does); it is kept with the vmstate image's
snapshot (`HmpState.vm_states`). Its recorded size is that of the RAM part of the
migration stream QEMU would write (migration/ram.c: a zero page is an 8-byte page
header and one byte, any other page its header and its 4096 bytes) plus the
stream's header and end mark; the device sections are not modelled. Unlike the
block layer's internal snapshots (written into qcow2 images, blockdev.snapshot),
they live in the emulator's model of each image only: image files are not
rewritten.
"""

from __future__ import annotations

import time
from typing import Any

from blockdev.graph import Node
from blockdev.image.formats.facts import SnapshotInfo
from blockdev.layer import BlockLayer
from blockdev.snapshot import can_snapshot, snapshot_list
from schema.errors import GenericError
from schema.opts.cutils import byte_truncate, strtoull
from vmm.hmp.block import block_layer, snapshot_line
from vmm.hmp.commands import Args
from vmm.hmp.interpreter import Hmp
from vmm.machine.clock import RunningVirtualClock

QCOW_MAX_SNAPSHOTS = 65536
TARGET_PAGE_SIZE = 4096
_STREAM_HEADER = 8  # QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION
_ZERO_PAGE = 9      # save_page_header (8 bytes) + the zero byte
_NORMAL_PAGE = 8 + TARGET_PAGE_SIZE


def vm_state_size(ram_bytes: int, nonzero_pages: int = 0) -> int:
    """The size of the VM state savevm records for `ram_bytes` of RAM of which
    `nonzero_pages` pages hold something."""
    pages = ram_bytes // TARGET_PAGE_SIZE
    return (_STREAM_HEADER + (pages - nonzero_pages) * _ZERO_PAGE
            + nonzero_pages * _NORMAL_PAGE + 1)


# -- block/snapshot.c's bdrv_all_* -----------------------------------------------------------


def device_name(bs: Node) -> str:
    """bdrv_get_device_name."""
    return bs.device_name()


def snapshot_find(bs: Node, name: str) -> SnapshotInfo | None:
    """bdrv_snapshot_find: the first snapshot whose id or name is `name`."""
    return next((sn for sn in snapshot_list(bs) if name in (sn.id, sn.name)), None)


def all_can_snapshot(layer: BlockLayer) -> Node | None:
    """bdrv_all_can_snapshot: the first writable image that cannot take a snapshot."""
    for bs in layer.bdrv_next_roots():
        if bs.is_inserted() and not bs.read_only and not can_snapshot(bs):
            return bs
    return None


def find_vmstate_bs(layer: BlockLayer) -> Node | None:
    """bdrv_all_find_vmstate_bs: the first image that can take a snapshot."""
    return next((bs for bs in layer.bdrv_next_roots() if can_snapshot(bs)), None)


def all_find_snapshot(layer: BlockLayer, name: str) -> Node | None:
    """bdrv_all_find_snapshot: the first snapshot-capable image without `name`."""
    for bs in layer.bdrv_next_roots():
        if can_snapshot(bs) and snapshot_find(bs, name) is None:
            return bs
    return None


def delete_by_id_or_name(bs: Node, name: str) -> None:
    """bdrv_snapshot_delete_by_id_or_name: the snapshot with that id, else the one
    with that name (qcow2_snapshot_delete)."""
    snaps = snapshot_list(bs)
    sn = next((s for s in snaps if s.id == name), None)
    if sn is None:
        sn = next((s for s in snaps if s.name == name), None)
    if sn is not None:
        snaps.remove(sn)


def all_delete_snapshot(layer: BlockLayer, name: str) -> None:
    """bdrv_all_delete_snapshot (qcow2 deletes the model's snapshots without error)."""
    for bs in layer.bdrv_next_roots():
        if can_snapshot(bs) and snapshot_find(bs, name) is not None:
            delete_by_id_or_name(bs, name)


def _new_id(bs: Node) -> str:
    """qcow2-snapshot.c find_new_snapshot_id: one more than the largest (strtoul) id."""
    ids = [strtoull(sn.id, 10)[0] for sn in snapshot_list(bs)]
    return str(max(ids, default=0) + 1)


def all_create_snapshot(layer: BlockLayer, vmstate_bs: Node, name: str, date_sec: int,
                        date_nsec: int, vm_clock_ns: int, state_size: int,
                        ) -> tuple[Node | None, SnapshotInfo | None]:
    """bdrv_all_create_snapshot (qcow2_snapshot_create on each image): the first image
    that failed (a full snapshot table) or None, and the vmstate image's snapshot."""
    created = None
    for bs in layer.bdrv_next_roots():
        if bs is not vmstate_bs and not can_snapshot(bs):
            continue
        snaps = snapshot_list(bs)
        if len(snaps) >= QCOW_MAX_SNAPSHOTS:
            return bs, created
        sn = SnapshotInfo(
            id=_new_id(bs), name=name,
            vm_state_size=state_size if bs is vmstate_bs else 0,
            date_sec=date_sec, date_nsec=date_nsec,
            vm_clock_sec=vm_clock_ns // 1_000_000_000,
            vm_clock_nsec=vm_clock_ns % 1_000_000_000)
        snaps.append(sn)
        if bs is vmstate_bs:
            created = sn
    return None, created


def all_goto_snapshot(layer: BlockLayer, name: str) -> None:
    """bdrv_all_goto_snapshot: every snapshot-capable image goes back to `name` (the
    emulator does not model the images' data, so only bdrv_snapshot_goto's checks
    are left)."""
    for bs in layer.bdrv_next_roots():
        if not can_snapshot(bs):
            continue
        try:
            if bs.bitmaps:
                raise GenericError("Device has active dirty bitmaps")
            if snapshot_find(bs, name) is None:
                raise GenericError("Failed to load snapshot: No such file or directory")
        except GenericError as err:
            raise GenericError(f"Could not load snapshot '{name}' on '{device_name(bs)}': "
                               f"{err.desc}") from None


# -- migration/savevm.c ----------------------------------------------------------------------


def _check_can_snapshot(layer: BlockLayer) -> None:
    """save_snapshot's and load_snapshot's first check (bdrv_all_can_snapshot)."""
    bad = all_can_snapshot(layer)
    if bad is not None:
        raise GenericError(f"Device '{device_name(bad)}' is writable but does not support "
                           "snapshots")


def save_snapshot(hmp: Hmp, name: str | None) -> None:
    """savevm.c save_snapshot."""
    layer = block_layer(hmp)
    machine = hmp.machine
    _check_can_snapshot(layer)
    if name is not None:
        all_delete_snapshot(layer, name)
    bs = find_vmstate_bs(layer)
    if bs is None:
        raise GenericError("No block device can accept snapshots")
    was_running = machine.runstate.running
    machine.vm_stop("save-vm")
    spaces = hmp.state.memory
    ram = spaces().memory.ram.pages() if spaces is not None else {}
    wall = machine.clock.wall()
    date_sec = int(wall)
    date_nsec = int((wall - date_sec) * 1_000_000) * 1000  # gettimeofday's microseconds
    if name is not None:
        old = snapshot_find(bs, name)
        sn_name = old.name if old is not None else name
    else:
        sn_name = time.strftime("vm-%Y%m%d%H%M%S", time.localtime(date_sec))
    try:
        failed, created = all_create_snapshot(
            layer, bs, byte_truncate(sn_name, 255), date_sec, date_nsec,
            machine.vm_clock_ns(), vm_state_size(machine.options.ram_bytes, len(ram)))
        if created is not None:
            hmp.state.vm_states[id(created)] = (created, ram)
        if failed is not None:
            raise GenericError(f"Error while creating snapshot on '{device_name(failed)}'")
    finally:
        if was_running:
            machine.vm_start()


def load_snapshot(hmp: Hmp, name: str) -> None:
    """savevm.c load_snapshot: the images go back to the snapshot, the machine resets
    silently, then the VM state (RAM, the virtual clock) is loaded."""
    layer = block_layer(hmp)
    machine = hmp.machine
    _check_can_snapshot(layer)
    missing = all_find_snapshot(layer, name)
    if missing is not None:
        raise GenericError(f"Device '{device_name(missing)}' does not have the requested "
                           f"snapshot '{name}'")
    bs = find_vmstate_bs(layer)
    if bs is None:
        raise GenericError("No block device supports snapshots")
    sn = snapshot_find(bs, name)
    assert sn is not None
    if sn.vm_state_size == 0:
        raise GenericError("This is a disk-only snapshot. Revert to it  offline using "
                           "qemu-img")
    all_goto_snapshot(layer, name)
    machine.system_reset("none")
    saved = hmp.state.vm_states.get(id(sn))
    if saved is not None and saved[0] is sn and hmp.state.memory is not None:
        hmp.state.memory().memory.ram.restore(saved[1])
    clock = machine.vm_clock
    if isinstance(clock, RunningVirtualClock) and clock.started_at is None:
        clock.offset_ns = sn.vm_clock_sec * 1_000_000_000 + sn.vm_clock_nsec


def hmp_savevm(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_savevm."""
    save_snapshot(hmp, args.get("name"))


def hmp_loadvm(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_loadvm: the VM stops (restore-vm) and runs again only if the load
    succeeded and it ran before."""
    machine = hmp.machine
    was_running = machine.runstate.running
    machine.vm_stop("restore-vm")
    load_snapshot(hmp, args["name"])
    if was_running:
        machine.vm_start()


def hmp_delvm(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_delvm (a name no image has is no error)."""
    all_delete_snapshot(block_layer(hmp), args["name"])


def hmp_info_snapshots(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_snapshots: the snapshots every image has (loadable), then each
    image's others."""
    layer = block_layer(hmp)
    bs = find_vmstate_bs(layer)
    if bs is None:
        hmp.printf("No available block device supports snapshots\n")
        return
    table = snapshot_list(bs)
    images: list[tuple[str, list[dict[str, Any]]]] = []
    for bs1 in layer.bdrv_next_roots():
        if can_snapshot(bs1):
            snaps = [sn.as_qapi() for sn in snapshot_list(bs1)]
            if snaps:
                images.append((device_name(bs1), snaps))
    if not images:
        hmp.printf("There is no snapshot available.\n")
        return
    loadable: list[dict[str, Any]] = []
    for sn in table:
        if all_find_snapshot(layer, sn.name) is None:
            loadable.append(sn.as_qapi())
            for _image, snaps in images:
                snaps[:] = [s for s in snaps if s["name"] != sn.name]
    hmp.printf("List of snapshots present on all disks:\n")
    if loadable:
        hmp.printf(snapshot_line(None) + "\n")
        for entry in loadable:
            hmp.printf(snapshot_line({**entry, "id": "--"}) + "\n")
    else:
        hmp.printf("None\n")
    for image, snaps in images:
        if not snaps:
            continue
        hmp.printf(f"\nList of partial (non-loadable) snapshots on '{image}':\n")
        hmp.printf(snapshot_line(None) + "\n")
        for entry in snaps:
            hmp.printf(snapshot_line(entry) + "\n")
