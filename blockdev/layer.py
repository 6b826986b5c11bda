"""The block layer of one machine: its registries and the operations on its graph.

Pure model of the `blockdev` layer (real files are reached only through
`blockdev.image.io`). It reproduces QEMU 2.11's block.c and block-backend.c where
QMP can observe them:

* registries in QEMU's orders: named nodes in name-assignment order
  (graph_bdrv_states), all BlockBackends in creation order (block_backends), the
  monitor's BlockBackends (monitor_block_backends) and the monitor-owned nodes of
  blockdev-add (monitor_bdrv_states);
* edges with permissions (`attach_child`, `replace_node`, `append`), reference
  counting and deletion (closing files releases their locks);
* BlockBackends (`blk_*`), and the three name resolvers of block.md §1.3;
* the machine's hooks (reset, deadlines: trays and the guest workload, `cont`).

Below it: the graph's objects (`blockdev.graph`), the drivers (`blockdev.drivers`),
`bdrv_open` (`blockdev.open`, reached through `open`/`open_child`), and the media
and guest I/O models (`blockdev.media`, `blockdev.guest_io`), which each declare the
narrow part of the layer they use. Above it, thin layers: the commands
(`blockdev.commands`), queries (`blockdev.query`), snapshots (`blockdev.snapshot`)
and the command line (`blockdev.drive`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

from blockdev import graph as g
from blockdev import guest_io, media
from blockdev import open as bdrv
from blockdev.bitmaps import DirtyBitmap
from blockdev.device_ops import BlockDevOps
from blockdev.graph import Backend, Child, Node, OpenFlags, Reason
from blockdev.host import BlockHost
from blockdev.image.io import FileHandle, ImageIO
from blockdev.image.lock import Perm
from blockdev.media import TrayScheduler
from blockdev.names import NameGenerator, id_wellformed
from blockdev.options import Flat
from blockdev.throttle import ThrottleGroups
from blockdev.workload import GuestWorkload
from schema.errors import DeviceNotFound, GenericError


@attrs.define(kw_only=True, eq=False)
class BlockLayer:
    """All block state of one machine."""

    host: BlockHost
    io: ImageIO = attrs.Factory(ImageIO)
    names: NameGenerator = attrs.Factory(NameGenerator)
    nodes: list[Node] = attrs.Factory(list)
    # graph_bdrv_states by name: bdrv_find_node without a walk of every node
    node_index: dict[str, Node] = attrs.Factory(dict)
    backends: list[Backend] = attrs.Factory(list)
    monitor_backends: list[Backend] = attrs.Factory(list)
    monitor_nodes: list[Node] = attrs.Factory(list)
    devices: list[BlockDevOps] = attrs.Factory(list)  # attached (blk_attach_dev)
    throttle_groups: ThrottleGroups = attrs.Factory(ThrottleGroups)
    network_size: int = 1 << 30
    tls_creds: Callable[[str], bool] = lambda _id: False
    secrets: Callable[[str], bool] = lambda _id: False
    trays: TrayScheduler = attrs.Factory(TrayScheduler)
    workload: GuestWorkload = attrs.Factory(GuestWorkload)
    medium_listeners: list[Callable[[Backend], None]] = attrs.Factory(list)
    # The NBD server's in-process connections (blockdev.nbd.commands.Nbd sets it).
    nbd_local: Callable[[dict[str, Any]], Any] = lambda server: None

    @classmethod
    def create(cls, host: BlockHost, *, seed: int | None = None) -> BlockLayer:
        return cls(host=host, names=NameGenerator(rng=random.Random(seed)),
                   io=ImageIO(opener=host))

    def has_tls_creds(self, ident: str) -> bool:
        return self.tls_creds(ident)

    def nbd_loopback(self, server: dict[str, Any]) -> Any:
        return self.nbd_local(server)

    # == the machine's hooks (vmm.machine.subsystem.Subsystem, structurally) ====================

    def reset(self) -> None:
        """qemu_system_reset: the attached devices reset (CD-ROM drives unlock and
        close their trays silently), and pending guest tray reactions are dropped.
        The devices' reset goes through here until qdev resets its own tree."""
        for dev in self.devices:
            dev.reset()
        self.trays.pending.clear()

    def close(self) -> None:
        self.close_all()

    def close_all(self) -> None:
        """bdrv_close_all at exit: media removed, monitor-owned nodes dropped, so every
        file is closed and its locks released."""
        for blk in list(self.backends):
            if blk.root is not None:
                self.blk_remove_bs(blk)
        for bs in list(self.monitor_nodes):
            self.monitor_nodes.remove(bs)
            bs.monitor_owned = False
            self.unref(bs)

    def inactivate_all(self) -> None:
        """bdrv_inactivate_all (the source of a migration, before its last device
        state): every BlockBackend drops its permissions (blk_root_inactivate), then
        each node is marked inactive top-down and its permissions updated, so a file
        node still active below an inactive format node releases the lock bytes of
        what it no longer needs, before it becomes inactive itself and stops locking
        [block.c bdrv_inactivate_recurse, block/file-posix.c raw_handle_perm_lock].
        The destination can then take the images; `invalidate_cache_all` takes them
        back if the migration fails."""
        for blk in self.backends:
            if not blk.disable_perm and blk.root is not None:
                g.child_try_set_perm(blk.root, 0, g.PERM_ALL)
                blk.disable_perm = True
        done: set[int] = set()

        def inactivate(bs: Node) -> None:
            if id(bs) in done:
                return
            done.add(id(bs))
            if not bs.open_flags.inactive:
                bs.open_flags.inactive = True
                g.guarded(lambda: g.check_perm(bs, *g.cumulative_perm(bs), []), bs)
                g.set_perm(bs, *g.cumulative_perm(bs))
                if isinstance(bs.state, FileHandle):
                    bs.state.lock.inactive = True
            for c in bs.children:
                if c.bs is not None:
                    inactivate(c.bs)

        for bs in self.bdrv_next_roots():
            inactivate(bs)

    def invalidate_cache_all(self) -> None:
        """bdrv_invalidate_cache_all (incoming migration done, or `cont` after it):
        inactive nodes become active, file nodes start locking, and devices' BlockBackends
        take the permissions they deferred [block.c bdrv_invalidate_cache,
        block/block-backend.c blk_root_activate]."""
        for bs in self.nodes:
            if bs.open_flags.inactive:
                bs.open_flags.inactive = False
                if isinstance(bs.state, FileHandle):
                    bs.state.lock.inactive = False
        for blk in self.backends:
            if blk.disable_perm:
                blk.disable_perm = False
                self.blk_set_perm(blk, blk.perm, blk.shared)
        for bs in self.bdrv_next_roots():
            g.guarded(lambda bs=bs: g.check_perm(bs, *g.cumulative_perm(bs), []), bs)  # type: ignore[misc]
            g.set_perm(bs, *g.cumulative_perm(bs))

    def next_deadline(self) -> float:
        return min(self.trays.next_deadline(self.host.runstate.running),
                   self.workload.next_deadline(self.host))

    def run_due(self, now: float) -> None:
        media.run_due(self, now)
        self.workload.run_due(self.host, self.backends, now, self._guest_write)

    def _guest_write(self, blk: Backend, offset: int, length: int, pattern: int) -> None:
        """One write of the guest workload (blockdev.workload)."""
        guest_io.submit(self, blk, guest_io.Request("write", offset, length, pattern=pattern))

    def before_cont(self) -> None:
        """qmp_cont's part: io-status reset and request retry."""
        guest_io.on_cont(self)

    def vm_start(self) -> None:
        """Tray reactions wait for the VM to run; their deadlines count again now."""

    def vm_stop(self) -> None:
        pass

    # == lookups ===========================================================================

    def find_node(self, name: str) -> Node | None:
        """bdrv_find_node."""
        return self.node_index.get(name)

    def blk_by_name(self, name: str) -> Backend | None:
        """blk_by_name: named BlockBackends only."""
        for blk in self.monitor_backends:
            if blk.name == name:
                return blk
        return None

    def lookup_bs(self, device: str | None, node_name: str | None) -> Node:
        """bdrv_lookup_bs, resolver (a) of block.md §1.3."""
        if device is not None:
            blk = self.blk_by_name(device)
            if blk is not None:
                bs = blk.bs
                if bs is None:
                    raise GenericError(f"Device '{device}' has no medium")
                return bs
        if node_name is not None:
            bs = self.find_node(node_name)
            if bs is not None:
                return bs
        raise GenericError(f"Cannot find device={device or ''} nor node_name={node_name or ''}")

    def get_root_bs(self, name: str) -> Node:
        """qmp_get_root_bs, resolver (b)."""
        bs = self.lookup_bs(name, name)
        if not bs.is_root_node():
            raise GenericError("Need a root block node")
        if not bs.is_inserted():
            raise GenericError("Device has no medium")
        return bs

    def get_blk(self, device: str | None, qdev_id: str | None) -> Backend:
        """qmp_get_blk, resolver (c)."""
        if (device is None) == (qdev_id is None):
            raise GenericError("Need exactly one of 'device' and 'id'")
        if qdev_id is not None:
            return self.blk_by_qdev_id(qdev_id)
        assert device is not None
        blk = self.blk_by_name(device)
        if blk is None:
            raise DeviceNotFound(f"Device '{device}' not found")
        return blk

    def find_device(self, qdev_id: str) -> BlockDevOps | None:
        path = qdev_id if qdev_id.startswith("/") else f"/machine/peripheral/{qdev_id}"
        for dev in self.devices:
            own = f"/machine/peripheral/{dev.id}" if dev.id else dev.qom_path
            if own == path or (dev.id is None and dev.qom_path == qdev_id):
                return dev
        return None

    def blk_by_qdev_id(self, qdev_id: str) -> Backend:
        """blk_by_qdev_id: the device (find_device_state), then its BlockBackend."""
        dev = self.find_device(qdev_id)
        if dev is None:
            # Not a device this layer attached: the machine knows whether there is
            # one (else its error), and such a device has no BlockBackend.
            self.host.find_device_state(qdev_id)
            raise GenericError("Device does not have a block device backend")
        for blk in self.backends:
            if blk.dev is dev:
                return blk
        raise GenericError("Device does not have a block device backend")

    def blk_by_dev(self, dev: BlockDevOps) -> Backend | None:
        for blk in self.backends:
            if blk.dev is dev:
                return blk
        return None

    def is_first_non_filter(self, candidate: Node) -> bool:
        """bdrv_is_first_non_filter: walk down from every BlockBackend root and
        monitor-owned node through filters."""
        for top in self.bdrv_next_roots():
            if _recurse_first_non_filter(top, candidate):
                return True
        return False

    def bdrv_next_roots(self) -> list[Node]:
        """bdrv_next: root nodes of all BlockBackends, then monitor-owned nodes that
        are not already some BlockBackend's root."""
        out: list[Node] = []
        for blk in self.backends:
            if blk.bs is not None:
                out.append(blk.bs)
        for bs in self.monitor_nodes:
            if not bs.has_blk():
                out.append(bs)
        return out

    # == names ===========================================================================

    def assign_node_name(self, bs: Node, node_name: str | None) -> None:
        """bdrv_assign_node_name."""
        if node_name is None:
            node_name = self.names.generate()
        elif not id_wellformed(node_name):
            raise GenericError("Invalid node name")
        if self.blk_by_name(node_name) is not None:
            raise GenericError(f"node-name={node_name} is conflicting with a device id")
        if self.find_node(node_name) is not None:
            raise GenericError("Duplicate node name")
        bs.node_name = node_name
        bs.host = self.host
        self.nodes.append(bs)
        self.node_index[node_name] = bs

    # == opening (blockdev.open) ==========================================================

    def open(self, filename: str | None, reference: str | None, options: Flat | None,
             flags: OpenFlags | None = None, parent: Node | None = None,
             role: str | None = None) -> Node:
        """bdrv_open_inherit. The caller owns the returned reference."""
        return bdrv.bdrv_open(self, filename, reference, options, flags, parent, role)

    def open_child(self, filename: str | None, options: Flat, key: str, parent: Node,
                   role: str, *, allow_none: bool) -> Child | None:
        """bdrv_open_child."""
        return bdrv.open_child(self, filename, options, key, parent, role,
                               allow_none=allow_none)

    def full_backing_filename(self, bs: Node, backing: str) -> str:
        """bdrv_get_full_backing_filename(_from_filename)."""
        return bdrv.full_backing_filename(bs, backing)

    # == opening ==========================================================================

    # == graph edits =========================================================================

    def attach_child(self, parent: Node, child_bs: Node, name: str, role: str) -> Child:
        """bdrv_attach_child."""
        perm, shared = g.cumulative_perm(parent)
        assert parent.driver is not None
        perm, shared = g.child_perm(parent, child_bs, None, role, perm, shared)
        child = self.root_attach_child(child_bs, name, role, perm, shared, parent)
        parent.children.insert(0, child)
        return child

    def root_attach_child(self, child_bs: Node, name: str, role: str, perm: int,
                          shared: int, opaque: Any) -> Child:
        """bdrv_root_attach_child."""
        try:
            g.check_update_perm(child_bs, perm, shared, [])
        except GenericError:
            g.abort_perm_update(child_bs)
            raise
        child = Child(name=name, role=role, bs=None, parent=opaque, perm=perm, shared=shared)
        self.replace_child(child, child_bs)
        return child

    def replace_child_noperm(self, child: Child, new_bs: Node | None) -> None:
        """bdrv_replace_child_noperm (with the backing role's attach/detach)."""
        old = child.bs
        if old is not None:
            if child.role == "backing":
                self._backing_detach(child)
            old.parents = [c for c in old.parents if c is not child]
        child.bs = new_bs
        if new_bs is not None:
            new_bs.parents.insert(0, child)
            if child.role == "backing":
                self._backing_attach(child)

    def replace_child(self, child: Child, new_bs: Node | None) -> None:
        """bdrv_replace_child: loosen the old node, apply to the new one."""
        old = child.bs
        self.replace_child_noperm(child, new_bs)
        if old is not None:
            perm, shared = g.cumulative_perm(old)
            g.check_perm(old, perm, shared, [])
            g.set_perm(old, perm, shared)
        if new_bs is not None:
            g.set_perm(new_bs, *g.cumulative_perm(new_bs))

    def _backing_attach(self, c: Child) -> None:
        """bdrv_backing_attach: blocker, and the backing file name becomes the node's."""
        parent = c.parent
        backing_hd = c.bs
        assert isinstance(parent, Node) and backing_hd is not None
        reason = Reason(f"node is used as backing hd of '{parent.device_or_node_name()}'")
        parent.backing_blocker = reason
        parent.open_flags.no_backing = False
        parent.backing_file = backing_hd.filename
        parent.backing_format = backing_hd.driver.format_name if backing_hd.driver else ""
        backing_hd.op_block_all(reason)
        for op in ("commit-target", "stream", "backup-source", "backup-target"):
            backing_hd.op_unblock(op, reason)

    def _backing_detach(self, c: Child) -> None:
        parent = c.parent
        assert isinstance(parent, Node) and c.bs is not None
        if parent.backing_blocker is not None:
            c.bs.op_unblock_all(parent.backing_blocker)
        parent.backing_blocker = None

    def detach_child(self, child: Child) -> None:
        """bdrv_detach_child."""
        parent = child.parent
        if isinstance(parent, Node):
            parent.children = [c for c in parent.children if c is not child]
        self.replace_child(child, None)

    def root_unref_child(self, child: Child) -> None:
        """bdrv_root_unref_child."""
        child_bs = child.bs
        self.detach_child(child)
        if child_bs is not None:
            self.unref(child_bs)

    def unref_child(self, parent: Node, child: Child | None) -> None:
        """bdrv_unref_child."""
        if child is None:
            return
        if child.bs is not None and child.bs.inherits_from is parent:
            if not any(c is not child and c.bs is child.bs for c in parent.children):
                child.bs.inherits_from = None
        if parent.file is child:
            parent.file = None
        if parent.backing is child:
            parent.backing = None
        self.root_unref_child(child)

    def set_backing_hd(self, bs: Node, backing_hd: Node | None) -> None:
        """bdrv_set_backing_hd: the new edge holds its own reference."""
        if backing_hd is not None:
            backing_hd.refcnt += 1
        if bs.backing is not None:
            self.unref_child(bs, bs.backing)
        if backing_hd is None:
            bs.backing = None
            return
        try:
            bs.backing = self.attach_child(bs, backing_hd, "backing", "backing")
        except GenericError:
            bs.backing = None
            self.unref(backing_hd)
            raise
        bdrv.refresh_filename(bs)

    def replace_node(self, from_bs: Node, to_bs: Node) -> None:
        """bdrv_replace_node: every parent of `from_bs` (except `to_bs`'s own backing
        edge to it) now points at `to_bs`."""
        from_bs.refcnt += 1
        try:
            moving: list[Child] = []
            perm, shared = 0, g.PERM_ALL
            for c in list(from_bs.parents):
                if c.role == "backing" and any(c is tc for tc in to_bs.children):
                    continue
                if getattr(c.parent, "stay_at_node", False):
                    continue
                moving.insert(0, c)
                perm |= c.perm
                shared &= c.shared
            try:
                g.check_update_perm(to_bs, perm, shared, moving)
            except GenericError:
                g.abort_perm_update(to_bs)
                raise
            for c in moving:
                to_bs.refcnt += 1
                self.replace_child_noperm(c, to_bs)
                self.unref(from_bs)
            old_perm, old_shared = g.cumulative_perm(to_bs)
            g.set_perm(to_bs, old_perm | perm, old_shared | shared)
        finally:
            self.unref(from_bs)

    def append(self, bs_new: Node, bs_top: Node) -> None:
        """bdrv_append: `bs_new` goes above `bs_top`; consumes a reference to bs_new."""
        try:
            self.set_backing_hd(bs_new, bs_top)
            try:
                self.replace_node(bs_top, bs_new)
            except GenericError:
                self.set_backing_hd(bs_new, None)
                raise
        finally:
            self.unref(bs_new)

    # == references and deletion ======================================================

    def unref(self, bs: Node) -> None:
        """bdrv_unref: the last reference deletes the node."""
        assert bs.refcnt > 0, bs.node_name
        bs.refcnt -= 1
        if bs.refcnt == 0:
            self._delete(bs)

    def _delete(self, bs: Node) -> None:
        """bdrv_delete / bdrv_close."""
        self.close_driver(bs)
        bs.driver = None
        if bs.backing is not None:
            self.unref_child(bs, bs.backing)
        if bs.file is not None:
            self.unref_child(bs, bs.file)
        for c in list(bs.children):
            if c.bs is not None and c.bs.inherits_from is bs:
                c.bs.inherits_from = None
            self.detach_child(c)
            if c.bs is None:
                pass
        bs.bitmaps = [bm for bm in bs.bitmaps if bm.name is None]
        if bs.node_name and self.node_index.get(bs.node_name) is bs:
            self.nodes.remove(bs)
            del self.node_index[bs.node_name]
        bs.deleted = True
        if bs.temp_file:
            self.io.remove_temporary(bs.temp_file)

    def close_driver(self, bs: Node) -> None:
        """The driver's bdrv_close (and a throttle node leaving its group)."""
        drv = bs.driver
        if drv is None:
            return
        if getattr(bs.state, "data", None) is not None:
            # a data engine exists only once the data path has run (blockdev.io)
            from blockdev.io import bdrv_close

            bdrv_close(bs)
        if drv.close is not None:
            drv.close(bs)
        if drv.format_name == "throttle" and bs.state is not None:
            group = bs.state.extra.get("throttle-group")
            if group is not None and self.throttle_groups.get(group) is not None:
                self.throttle_groups.leave(bs, group)

    # == reopen ==========================================================================

    def reopen_read_only(self, bs: Node, read_only: bool) -> None:
        """bdrv_reopen(bs, flags with RDWR changed): the permission side (locks follow)
        and the read-only flag. Only the flag change QMP commands need."""
        if bs.read_only == read_only:
            return
        # bdrv_reopen_queue_child: children that inherit their options from `bs`
        # (its file, not its backing file) follow unless they set read-only themselves.
        queue = [bs]
        i = 0
        while i < len(queue):
            node = queue[i]
            i += 1
            for c in node.children:
                child = c.bs
                if child is None or child.inherits_from is not node or c.role == "backing":
                    continue
                if "read-only" in child.explicit_options:
                    continue
                queue.append(child)
        for node in queue:
            if node.open_flags.copy_on_read and read_only:
                raise GenericError(f"Can't set node '{node.device_or_node_name()}' to r/o "
                                   "with copy-on-read enabled")
            if not read_only and not node.open_flags.allow_rdwr:
                raise GenericError(f"Node '{node.device_or_node_name()}' is read only")
        for node in queue:
            # bdrv_reopen_prepare: a data engine made for the old mode is closed while
            # its node can still write (qcow2_reopen_prepare flushes its caches and
            # marks the image clean) and made again on the next request
            if getattr(node.state, "data", None) is not None:
                from blockdev.io import bdrv_close

                bdrv_close(node)
        old = [(n.open_flags.rdwr, n.read_only) for n in queue]
        for node in queue:
            node.open_flags.rdwr = not read_only
            node.read_only = read_only
        perm, shared = g.cumulative_perm(bs)
        try:
            g.check_perm(bs, perm, shared, [])
        except GenericError:
            g.abort_perm_update(bs)
            for node, (rdwr, ro) in zip(queue, old, strict=True):
                node.open_flags.rdwr, node.read_only = rdwr, ro
            raise
        g.set_perm(bs, perm, shared)
        for node in queue:
            # bdrv_reopen_commit: the drivers switch their open mode
            if isinstance(node.state, FileHandle):
                self.io.reopen_file(node.state, writable=not read_only)

    # == BlockBackends ======================================================================

    def blk_new(self, perm: int = 0, shared: int = g.PERM_ALL) -> Backend:
        """blk_new."""
        blk = Backend(perm=perm, shared=shared)
        self.backends.append(blk)
        return blk

    def blk_new_open(self, filename: str | None, options: Flat, flags: OpenFlags) -> Backend:
        """blk_new_open: a BlockBackend on a newly opened tree."""
        perm = 0
        if not flags.no_io:
            perm |= 0x01
            if flags.rdwr:
                perm |= 0x02
        if flags.resize:
            perm |= 0x08
        blk = self.blk_new(perm, g.PERM_ALL)
        try:
            bs = self.open(filename, None, options, flags)
        except GenericError:
            self.blk_unref(blk)
            raise
        try:
            blk.root = self.root_attach_child(bs, "root", "root", perm, g.PERM_ALL, blk)
        except GenericError:
            self.unref(bs)
            self.blk_unref(blk)
            raise
        return blk

    def blk_unref(self, blk: Backend) -> None:
        blk.refcnt -= 1
        if blk.refcnt <= 0:
            if blk.root is not None:
                self.blk_remove_bs(blk)
            if blk.throttle_group is not None:
                self.throttle_groups.io_limits_disable(blk)
            if blk in self.backends:
                self.backends.remove(blk)

    def blk_new_with_bs(self, bs: Node, perm: int, shared: int) -> Backend:
        """blk_new + blk_insert_bs, as every user of a BlockBackend of its own does it:
        nothing is left behind when the permissions conflict."""
        blk = self.blk_new(perm, shared)
        try:
            self.blk_insert_bs(blk, bs)
        except GenericError:
            self.blk_unref(blk)
            raise
        return blk

    def blk_insert_bs(self, blk: Backend, bs: Node) -> None:
        """blk_insert_bs."""
        blk.root = self.root_attach_child(bs, "root", "root", blk.perm, blk.shared, blk)
        bs.refcnt += 1

    def blk_remove_bs(self, blk: Backend) -> None:
        """blk_remove_bs: remember the medium's state, drop the edge."""
        assert blk.root is not None and blk.root.bs is not None
        self.blk_update_root_state(blk)
        child = blk.root
        blk.root = None
        self.root_unref_child(child)

    def blk_update_root_state(self, blk: Backend) -> None:
        bs = blk.bs
        assert bs is not None
        blk.root_state.open_flags = bs.open_flags.copy()
        blk.root_state.read_only = bs.read_only
        blk.root_state.detect_zeroes = bs.detect_zeroes

    def blk_set_perm(self, blk: Backend, perm: int, shared: int) -> None:
        """blk_set_perm."""
        if blk.root is not None and not blk.disable_perm:
            g.child_try_set_perm(blk.root, perm, shared)
        blk.perm, blk.shared = perm, shared

    def monitor_add_blk(self, blk: Backend, name: str) -> None:
        """monitor_add_blk."""
        if not id_wellformed(name):
            raise GenericError("Invalid device name")
        if self.blk_by_name(name) is not None:
            raise GenericError(f"Device with id '{name}' already exists")
        if self.find_node(name) is not None:
            raise GenericError(f"Device name '{name}' conflicts with an existing node name")
        blk.name = name
        self.monitor_backends.append(blk)

    def monitor_remove_blk(self, blk: Backend) -> None:
        if blk.name is None:
            return
        self.monitor_backends.remove(blk)
        blk.name = None

    def medium_removed(self, blk: Backend) -> None:
        """Listeners of a BlockBackend losing its medium (an NBD export closes)."""
        for listener in list(self.medium_listeners):
            listener(blk)

    def blk_dev_change_media_cb(self, blk: Backend, load: bool) -> None:
        """blk_dev_change_media_cb: tell the device, and say DEVICE_TRAY_MOVED if its
        tray moved."""
        dev = blk.dev
        if dev is None or not dev.removable:
            return
        was_open = blk.is_tray_open()
        if dev.perms_follow_medium:
            # fd_change_cb: no permissions without a medium; with one, read and
            # write unless it is read-only (blkconf_apply_backend_options).
            if load:
                write = Perm.NONE if blk.is_read_only() else Perm.WRITE
                self.blk_set_perm(blk, int(Perm.CONSISTENT_READ | write), blk.dev_shared)
            else:
                self.blk_set_perm(blk, 0, int(Perm.ALL))
        dev.change_media_cb(load)
        if blk.is_tray_open() != was_open:
            self.host.emit("DEVICE_TRAY_MOVED", {"device": blk.display_name(),
                                                 "id": blk.attached_dev_id(),
                                                 "tray-open": blk.is_tray_open()})

    # == bitmaps on nodes ====================================================================

    def find_dirty_bitmap(self, bs: Node, name: str) -> DirtyBitmap | None:
        for bm in bs.bitmaps:
            if bm.name == name:
                return bm
        return None


def _recurse_first_non_filter(bs: Node | None, candidate: Node) -> bool:
    """bdrv_recurse_is_first_non_filter."""
    if bs is None or bs.driver is None:
        return False
    drv = bs.driver
    if not drv.is_filter:
        return bs is candidate
    if drv.format_name in ("throttle", "replication"):
        child = bs.file.bs if bs.file is not None else None
        return _recurse_first_non_filter(child, candidate)
    if drv.format_name == "blkverify":
        return _recurse_first_non_filter(bs.file.bs if bs.file else None, candidate) or \
            _recurse_first_non_filter(bs.state.extra["test"].bs, candidate)
    if drv.format_name == "quorum":
        return any(_recurse_first_non_filter(c.bs, candidate)
                   for c in bs.state.extra["children"])
    return False
