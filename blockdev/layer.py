"""The block layer of one machine: its registries and the operations on its graph.

Pure model of the `blockdev` layer (real files are reached only through
`blockdev.image.io`). It reproduces QEMU 2.11's block.c and block-backend.c where
QMP can observe them:

* registries in QEMU's orders: named nodes in name-assignment order
  (graph_bdrv_states), all BlockBackends in creation order (block_backends), the
  monitor's BlockBackends (monitor_block_backends) and the monitor-owned nodes of
  blockdev-add (monitor_bdrv_states);
* `bdrv_open` with its option processing: json: file names, option inheritance by
  child role, protocol detection, format probing, node naming, the driver's open,
  the backing chain, file name refresh and the "does not support the option" check;
* edges with permissions (`attach_child`, `replace_node`, `append`), reference
  counting and deletion (closing files releases their locks);
* BlockBackends (`blk_*`), and the three name resolvers of block.md §1.3.

Commands (`blockdev.commands`) and the command line (`blockdev.drive`) are thin
layers over this; media, snapshots, throttling, bitmaps and I/O errors live in
their own modules and use these primitives.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import attrs

from blockdev import graph as g
from blockdev.bitmaps import DirtyBitmap
from blockdev.devices import BlockDevice
from blockdev.drivers import DRIVERS, DriverSpec, OpenErrno, find_format, find_protocol
from blockdev.graph import Backend, Child, Node, OpenFlags, Reason
from blockdev.host import BlockHost
from blockdev.image.formats.base import path_combine, path_has_protocol, path_is_absolute
from blockdev.image.io import ImageIO
from blockdev.media import TrayScheduler
from blockdev.names import NameGenerator, id_wellformed
from blockdev.options import (
    Flat,
    OptDesc,
    absorb,
    extract_subqdict,
    first_key,
    flatten,
    get_bool,
    get_str,
    set_default,
)
from blockdev.throttle import ThrottleGroups
from schema.errors import DeviceNotFound, GenericError
from schema.qobject import from_json, to_json

# bdrv_runtime_opts [block.c].
RUNTIME_OPTS = (OptDesc("node-name"), OptDesc("driver"), OptDesc("cache.direct", "bool"),
                OptDesc("cache.no-flush", "bool"), OptDesc("read-only", "bool"),
                OptDesc("detect-zeroes"), OptDesc("discard"), OptDesc("force-share", "bool"))
RUNTIME_NAMES = frozenset(d.name for d in RUNTIME_OPTS)

DETECT_ZEROES = ("off", "on", "unmap")


def _strerror(err: int) -> str:
    import os

    return os.strerror(err)


@attrs.define(kw_only=True, eq=False)
class BlockLayer:
    """All block state of one machine."""

    host: BlockHost
    io: ImageIO = attrs.Factory(ImageIO)
    names: NameGenerator = attrs.Factory(NameGenerator)
    nodes: list[Node] = attrs.Factory(list)
    backends: list[Backend] = attrs.Factory(list)
    monitor_backends: list[Backend] = attrs.Factory(list)
    monitor_nodes: list[Node] = attrs.Factory(list)
    devices: list[BlockDevice] = attrs.Factory(list)
    throttle_groups: ThrottleGroups = attrs.Factory(ThrottleGroups)
    network_size: int = 1 << 30
    tls_creds: Callable[[str], bool] = lambda _id: False
    secrets: Callable[[str], bool] = lambda _id: False
    trays: TrayScheduler = attrs.Factory(TrayScheduler)
    anon_devices: int = 0
    medium_listeners: list[Callable[[Backend], None]] = attrs.Factory(list)

    @classmethod
    def create(cls, host: BlockHost, *, seed: int | None = None) -> BlockLayer:
        return cls(host=host, names=NameGenerator(rng=random.Random(seed)))

    def has_tls_creds(self, ident: str) -> bool:
        return self.tls_creds(ident)

    def next_anon_path(self) -> str:
        """/machine/peripheral-anon/device[N] for a device without id (the devices
        issue will own this counter)."""
        path = f"/machine/peripheral-anon/device[{self.anon_devices}]"
        self.anon_devices += 1
        return path

    # == the machine's hooks (Machine.subsystems protocol) ====================================

    def reset(self) -> None:
        """qemu_system_reset: CD-ROM devices unlock and close their trays silently
        [hw/ide/core.c ide_reset, hw/scsi/scsi-disk.c scsi_disk_reset]."""
        for dev in self.devices:
            if dev.kind.tray:
                dev.locked = False
                dev.tray_open = False
                dev.eject_request = False
        self.trays.pending.clear()

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

    def invalidate_cache_all(self) -> None:
        """bdrv_invalidate_cache_all (incoming migration done, or `cont` after it):
        inactive nodes become active, file nodes start locking, and devices' BlockBackends
        take the permissions they deferred [block.c bdrv_invalidate_cache,
        block/block-backend.c blk_root_activate]."""
        from blockdev.image.io import FileHandle

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
        return self.trays.next_deadline(self.host.runstate.running)

    def run_due(self, now: float) -> None:
        from blockdev import media

        media.run_due(self, now)

    def on_cont(self) -> None:
        """Hooked to `cont` (Machine.on_cont): io-status reset and request retry."""
        from blockdev import guest_io

        guest_io.on_cont(self)

    # == lookups ===========================================================================

    def find_node(self, name: str) -> Node | None:
        """bdrv_find_node."""
        for bs in self.nodes:
            if bs.node_name == name:
                return bs
        return None

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

    def find_device(self, qdev_id: str) -> BlockDevice | None:
        path = qdev_id if qdev_id.startswith("/") else f"/machine/peripheral/{qdev_id}"
        for dev in self.devices:
            own = f"/machine/peripheral/{dev.id}" if dev.id else dev.qom_path
            if own == path or (dev.id is None and dev.qom_path == qdev_id):
                return dev
        return None

    def blk_by_qdev_id(self, qdev_id: str) -> Backend:
        """blk_by_qdev_id / find_device_state."""
        dev = self.find_device(qdev_id)
        if dev is None:
            raise DeviceNotFound(f"Device '{qdev_id}' not found")
        for blk in self.backends:
            if blk.dev is dev:
                return blk
        raise GenericError("Device does not have a block device backend")

    def blk_by_dev(self, dev: BlockDevice) -> Backend | None:
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
        self.nodes.append(bs)

    # == opening ==========================================================================

    def open(self, filename: str | None, reference: str | None, options: Flat | None,
             flags: OpenFlags | None = None, parent: Node | None = None,
             role: str | None = None) -> Node:
        """bdrv_open_inherit. The caller owns the returned reference."""
        flags = flags.copy() if flags is not None else OpenFlags()
        if reference is not None:
            if filename is not None or options:
                raise GenericError("Cannot reference an existing block device with "
                                   "additional options or a new filename")
            bs = self.lookup_bs(reference, reference)
            bs.refcnt += 1
            return bs

        bs = Node()
        options = dict(options or {})
        if filename is not None and filename.startswith("json:"):
            json_opts = _parse_json_filename(filename)
            for key, value in json_opts.items():
                options.setdefault(key, value)
            filename = None
        bs.explicit_options = dict(options)

        if role is not None:
            assert parent is not None
            bs.inherits_from = parent
            flags = _inherit_options(role, options, parent.open_flags, parent.options)

        try:
            flags, filename = self._fill_options(options, filename, flags)
            if get_str(options, "read-only") != "on" and not get_bool(options, "read-only",
                                                                        False):
                flags.rdwr = True
                flags.allow_rdwr = True
            else:
                flags.rdwr = False

            snapshot_options: Flat | None = None
            snapshot_flags: OpenFlags | None = None
            if flags.snapshot:
                snapshot_options = {}
                snapshot_flags = flags.copy()
                snapshot_flags.snapshot = False
                snapshot_flags.temporary = True
                set_default(snapshot_options, "cache.direct", "off")
                set_default(snapshot_options, "cache.no-flush", "on")
                if "read-only" in options:
                    set_default(snapshot_options, "read-only", options["read-only"])
                options.pop("read-only", None)
                flags = _backing_flags(options, flags, options)

            bs.open_flags = flags
            bs.options = options
            options = dict(options)

            drv: DriverSpec | None = None
            drvname = get_str(options, "driver")
            if drvname is not None:
                drv = find_format(drvname)
                if drv is None:
                    raise GenericError(f"Unknown driver: '{drvname}'")

            backing = get_str(options, "backing")
            if backing == "":
                flags.no_backing = True
                bs.open_flags.no_backing = True
                del options["backing"]

            probe_bs: Node | None = None
            if not flags.protocol:
                probe_bs = self.open_child_bs(filename, options, "file", bs, "file",
                                              allow_none=True)
                if probe_bs is not None:
                    options["file"] = probe_bs.node_name

            bs.probed = drv is None
            if drv is None and probe_bs is not None:
                fmt = self.find_image_format(probe_bs)
                drv = DRIVERS[fmt]
                bs.options["driver"] = fmt
                options["driver"] = fmt
            elif drv is None:
                raise GenericError("Must specify either driver or file")

            try:
                self._open_common(bs, probe_bs, options, drv)
            finally:
                if probe_bs is not None:
                    self.unref(probe_bs)
        except GenericError:
            self._discard_unopened(bs)
            raise

        try:
            if not flags.no_backing and not bs.open_flags.no_backing:
                self.open_backing_file(bs, options, "backing")
            self.refresh_filename(bs)
            if options:
                key = first_key(options)
                if flags.protocol:
                    raise GenericError(f"Block protocol '{drv.format_name}' doesn't support "
                                       f"the option '{key}'")
                raise GenericError(f"Block format '{drv.format_name}' does not support the "
                                   f"option '{key}'")
            self.parent_cb_change_media(bs, True)
            if snapshot_flags is not None:
                assert snapshot_options is not None
                snap = self.append_temp_snapshot(bs, snapshot_flags, snapshot_options)
                self.unref(bs)
                bs = snap
        except GenericError:
            self.unref(bs)
            raise
        return bs

    def _discard_unopened(self, bs: Node) -> None:
        """The `fail:` path of bdrv_open_inherit: drop our reference."""
        if bs.refcnt > 0:
            self.unref(bs)

    def _fill_options(self, options: Flat, filename: str | None,
                      flags: OpenFlags) -> tuple[OpenFlags, str | None]:
        """bdrv_fill_options."""
        protocol = flags.protocol
        parse_filename = False
        drv: DriverSpec | None = None
        drvname = get_str(options, "driver")
        if drvname is not None:
            drv = find_format(drvname)
            if drv is None:
                raise GenericError(f"Unknown driver '{drvname}'")
            protocol = drv.protocol
        flags.protocol = protocol
        _update_options_from_flags(options, flags)
        if protocol and filename is not None:
            if "filename" not in options:
                options["filename"] = filename
                parse_filename = True
            else:
                raise GenericError("Can't specify 'file' and 'filename' options at the "
                                   "same time")
        fname = get_str(options, "filename")
        if drvname is None and protocol:
            if fname is not None:
                drv = find_protocol(fname, parse_filename, self.io.probe_device)
                options["driver"] = drv.format_name
            else:
                raise GenericError("Must specify either driver or file")
        if drv is not None and drv.parse_filename is not None and parse_filename:
            assert fname is not None
            drv.parse_filename(fname, options)
            if not drv.needs_filename and "url" not in options:
                options.pop("filename", None)
            elif not drv.needs_filename:
                options.pop("filename", None)
        return flags, (None if protocol else filename)

    def find_image_format(self, file_bs: Node) -> str:
        """find_image_format: empty or sg files are raw, else probe."""
        if file_bs.sg or not file_bs.is_inserted() or file_bs.length() == 0:
            return "raw"
        return self.io.probe(file_bs)

    def _open_common(self, bs: Node, file_bs: Node | None, options: Flat,
                     drv: DriverSpec) -> None:
        """bdrv_open_common + bdrv_open_driver."""
        opts = absorb(RUNTIME_OPTS, options)
        flags = bs.open_flags
        flags.no_flush = bool(opts.get("cache.no-flush", False))
        flags.nocache = bool(opts.get("cache.direct", False))
        flags.rdwr = not opts.get("read-only", False)
        bs.force_share = bool(opts.get("force-share", False))
        if bs.force_share and flags.rdwr:
            raise GenericError("force-share=on can only be used with read-only images")
        if file_bs is not None:
            filename: str | None = file_bs.filename
        else:
            filename = get_str(options, "filename")
        if drv.needs_filename and not filename:
            raise GenericError(f"The '{drv.format_name}' block driver requires a file name")
        bs.read_only = not flags.rdwr
        if flags.copy_on_read and bs.read_only:
            raise GenericError("Can't use copy-on-read on read-only device")
        discard = opts.get("discard")
        if discard is not None:
            if discard in ("off", "ignore"):
                flags.unmap = False
            elif discard in ("on", "unmap"):
                flags.unmap = True
            else:
                raise GenericError("Invalid discard option")
        detect = opts.get("detect-zeroes")
        if detect is not None:
            if detect not in DETECT_ZEROES:
                raise GenericError(f"Invalid parameter '{detect}'")
            if detect == "unmap" and not flags.unmap:
                raise GenericError("setting detect-zeroes to unmap is not allowed without "
                                   "setting discard operation to unmap")
            bs.detect_zeroes = detect
        bs.filename = filename or ""
        bs.exact_filename = bs.filename
        self.assign_node_name(bs, opts.get("node-name"))
        bs.driver = drv
        bs.read_only = not flags.rdwr
        try:
            drv.open(self, bs, options)
        except OpenErrno as e:
            self._open_failed(bs)
            if bs.filename:
                raise GenericError(f"Could not open '{bs.filename}': "
                                   f"{_strerror(e.errno)}") from None
            raise GenericError(f"Could not open image: {_strerror(e.errno)}") from None
        except GenericError:
            self._open_failed(bs)
            raise
        if drv.getlength is not None:
            bs.total_sectors = (drv.getlength(bs) + g.SECTOR - 1) // g.SECTOR

    def _open_failed(self, bs: Node) -> None:
        """bdrv_open_driver's open_failed: the driver is gone, its children too."""
        self._close_driver(bs)
        for c in list(bs.children):
            self.unref_child(bs, c)
        bs.file = None
        bs.driver = None

    def open_child_bs(self, filename: str | None, options: Flat, key: str, parent: Node,
                      role: str, *, allow_none: bool) -> Node | None:
        """bdrv_open_child_bs."""
        image_options = extract_subqdict(options, key + ".")
        reference = get_str(options, key)
        try:
            if filename is None and reference is None and not image_options:
                if not allow_none:
                    raise GenericError(f'A block device must be specified for "{key}"')
                return None
            return self.open(filename, reference, image_options, None, parent, role)
        finally:
            options.pop(key, None)

    def open_child(self, filename: str | None, options: Flat, key: str, parent: Node,
                   role: str, *, allow_none: bool) -> Child | None:
        """bdrv_open_child."""
        bs = self.open_child_bs(filename, options, key, parent, role,
                                allow_none=allow_none)
        if bs is None:
            return None
        try:
            return self.attach_child(parent, bs, key, role)
        except GenericError:
            self.unref(bs)
            raise

    def open_backing_file(self, bs: Node, parent_options: Flat, key: str) -> None:
        """bdrv_open_backing_file."""
        if bs.backing is not None:
            return
        bs.open_flags.no_backing = False
        options = extract_subqdict(parent_options, key + ".")
        reference = get_str(parent_options, key)
        backing_filename: str | None
        if reference is not None or "file.filename" in options:
            backing_filename = None
        elif not bs.backing_file and not options:
            return
        else:
            backing_filename = self.full_backing_filename(bs, bs.backing_file)
        drv = bs.driver
        if drv is None or not drv.supports_backing:
            raise GenericError("Driver doesn't support backing files")
        if reference is None and bs.backing_format and "driver" not in options:
            options["driver"] = bs.backing_format
        try:
            backing_hd = self.open(backing_filename or None, reference, options, None, bs,
                                   "backing")
        except GenericError as e:
            bs.open_flags.no_backing = True
            raise GenericError(f"Could not open backing file: {e.desc}") from None
        try:
            self.set_backing_hd(bs, backing_hd)
        finally:
            self.unref(backing_hd)
        parent_options.pop(key, None)

    def full_backing_filename(self, bs: Node, backing: str) -> str:
        """bdrv_get_full_backing_filename(_from_filename)."""
        backed = bs.filename
        if backing == "" or path_has_protocol(backing) or path_is_absolute(backing):
            return backing
        if backed == "" or backed.startswith("json:"):
            raise GenericError(f"Cannot use relative backing file names for '{backed}'")
        return path_combine(backed, backing)

    def append_temp_snapshot(self, bs: Node, flags: OpenFlags, options: Flat) -> Node:
        """bdrv_append_temp_snapshot (-drive snapshot=on): a qcow2 overlay in a
        temporary file, deleted again when the overlay closes."""
        import os
        import tempfile

        total = bs.length()
        tmpdir = os.environ.get("TMPDIR", "/var/tmp")
        fd, tmp = tempfile.mkstemp(prefix="vl.", dir=tmpdir)
        os.close(fd)
        try:
            self.io.create(tmp, "qcow2", total, backing_file=None, backing_format=None)
        except GenericError as e:
            raise GenericError(f"Could not create temporary overlay '{tmp}': {e.desc}") \
                from None
        options["file.driver"] = "file"
        options["file.filename"] = tmp
        options["driver"] = "qcow2"
        snap = self.open(None, None, options, flags)
        snap.temp_file = tmp
        snap.refcnt += 1
        try:
            self.append(snap, bs)
        except GenericError:
            raise
        return snap

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
        self.refresh_filename(bs)

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

    def refresh_filename(self, bs: Node) -> None:
        """bdrv_refresh_filename."""
        drv = bs.driver
        if drv is None:
            return
        if bs.file is not None and bs.file.bs is not None:
            self.refresh_filename(bs.file.bs)
        if drv.refresh_filename is not None:
            bs.exact_filename = ""
            bs.full_open_options = None
            opts, _ = self._append_open_options(bs)
            drv.refresh_filename(bs, opts)
        elif bs.file is not None and bs.file.bs is not None:
            file_bs = bs.file.bs
            bs.exact_filename = ""
            bs.full_open_options = None
            opts, found = self._append_open_options(bs)
            if file_bs.exact_filename and not found:
                bs.exact_filename = file_bs.exact_filename
            if file_bs.full_open_options is not None:
                opts["driver"] = drv.format_name
                opts["file"] = copy.deepcopy(file_bs.full_open_options)
                bs.full_open_options = opts
        elif bs.full_open_options is None and bs.options:
            opts, _ = self._append_open_options(bs)
            opts["driver"] = drv.format_name
            if bs.exact_filename:
                opts["filename"] = bs.exact_filename
            bs.full_open_options = opts
        if bs.exact_filename:
            bs.filename = bs.exact_filename
        elif bs.full_open_options is not None:
            bs.filename = "json:" + to_json(bs.full_open_options)  # qobject_to_json

    def _append_open_options(self, bs: Node) -> tuple[Flat, bool]:
        """append_open_options: the node's own driver options."""
        from schema.qobject import qdict_order

        out: Flat = {}
        found = False
        for key in qdict_order(list(bs.options)):
            if any(key == c.name or key.startswith(c.name + ".") for c in bs.children):
                continue
            if key in RUNTIME_NAMES:
                continue
            out[key] = bs.options[key]
            found = True
        return out, found

    def parent_cb_change_media(self, bs: Node, load: bool) -> None:
        for c in bs.parents:
            if c.role == "root":
                self.blk_dev_change_media_cb(c.parent, load)

    # == references and deletion ======================================================

    def unref(self, bs: Node) -> None:
        """bdrv_unref: the last reference deletes the node."""
        assert bs.refcnt > 0, bs.node_name
        bs.refcnt -= 1
        if bs.refcnt == 0:
            self._delete(bs)

    def _delete(self, bs: Node) -> None:
        """bdrv_delete / bdrv_close."""
        self._close_driver(bs)
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
        if bs.node_name and bs in self.nodes:
            self.nodes.remove(bs)
        bs.deleted = True
        temp = bs.temp_file
        if temp:
            import os

            try:
                os.unlink(temp)
            except OSError:
                pass

    def _close_driver(self, bs: Node) -> None:
        drv = bs.driver
        if drv is None:
            return
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
                self.io_limits_disable(blk)
            if blk in self.backends:
                self.backends.remove(blk)

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
        if dev is None or not dev.kind.removable:
            return
        was_open = blk.is_tray_open()
        if dev.kind.tray:
            dev.tray_open = not load
            dev.eject_request = False
        if blk.is_tray_open() != was_open:
            self.host.emit("DEVICE_TRAY_MOVED", {"device": blk.display_name(),
                                                 "id": blk.attached_dev_id(),
                                                 "tray-open": blk.is_tray_open()})

    # == throttling (blk_io_limits_*) =========================================================

    def io_limits_enable(self, blk: Backend, group: str) -> None:
        self.throttle_groups.join(blk, group)
        blk.throttle_group = group

    def io_limits_disable(self, blk: Backend) -> None:
        assert blk.throttle_group is not None
        self.throttle_groups.leave(blk, blk.throttle_group)
        blk.throttle_group = None

    def io_limits_update_group(self, blk: Backend, group: str) -> None:
        if blk.throttle_group == group:
            return
        self.io_limits_disable(blk)
        self.io_limits_enable(blk, group)

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


def _update_options_from_flags(options: Flat, flags: OpenFlags) -> None:
    """update_options_from_flags."""
    if "cache.direct" not in options:
        options["cache.direct"] = flags.nocache
    if "cache.no-flush" not in options:
        options["cache.no-flush"] = flags.no_flush
    if "read-only" not in options:
        options["read-only"] = not flags.rdwr


def _inherit_options(role: str, options: Flat, parent_flags: OpenFlags,
                     parent_options: Flat) -> OpenFlags:
    """The child roles' inherit_options [block.c bdrv_inherited_options,
    bdrv_inherited_fmt_options, bdrv_backing_options]."""
    flags = parent_flags.copy()
    if role in ("file", "format"):
        flags.protocol = True
        for key in ("cache.direct", "cache.no-flush", "force-share", "read-only"):
            if key in parent_options:
                set_default(options, key, parent_options[key])
        set_default(options, "discard", "unmap")
        flags.snapshot = flags.no_backing = flags.copy_on_read = flags.no_io = False
        if role == "format":
            flags.protocol = False
            flags.no_io = False
        return flags
    if role == "backing":
        return _backing_flags(options, flags, parent_options)
    raise AssertionError(role)


def _backing_flags(options: Flat, flags: OpenFlags, parent_options: Flat) -> OpenFlags:
    """bdrv_backing_options."""
    flags = flags.copy()
    for key in ("cache.direct", "cache.no-flush", "force-share"):
        if key in parent_options:
            set_default(options, key, parent_options[key])
    set_default(options, "read-only", "on")
    flags.copy_on_read = False
    flags.snapshot = flags.temporary = False
    return flags


def _parse_json_filename(filename: str) -> Flat:
    """parse_json_filename: json:{...} read as qobject_from_json reads it, as flattened
    options. A first parser error counts even if a later value parsed."""
    parsed = from_json(filename[len("json:"):])
    if not parsed.ok:
        if parsed.error is None:
            raise GenericError("Could not parse the JSON options")
        raise GenericError("Could not parse the JSON options: " + parsed.error)
    if parsed.error is not None:
        raise GenericError(parsed.error)
    if not isinstance(parsed.value, dict):
        raise GenericError("Invalid JSON object given")
    return flatten(parsed.value)
