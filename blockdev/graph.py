"""The block graph's objects: nodes (BlockDriverState), edges (BdrvChild), backends
(BlockBackend), the driver interface (BlockDriver), and QEMU 2.11's permission system.

Bottom of the pure `blockdev` model [block.c, block/block-backend.c,
include/block/block_int.h]: it imports no other module of the layer's model, so that
every other module can import it. A node and its driver refer to each other, as
BlockDriverState and BlockDriver do in block_int.h, so both live here.
`blockdev.layer` owns the registries and the operations that build and edit the
graph, `blockdev.open` opens nodes, `blockdev.drivers` holds every driver; this
module holds the objects and the rules every edit must respect:

* A node's parents are edges (`Child`) from other nodes (roles `file`, `backing`,
  quorum `children.N`, ...) or from BlockBackends (role `root`). Both lists keep
  QEMU's order (QLIST_INSERT_HEAD: newest first), which decides whose name an error
  message shows and which conflicting user is reported first.
* A driver (`DriverSpec`) is its capabilities and hooks; its `open` gets a
  `DriverContext`, the narrow part of the block layer a driver may use (open its
  children, reach the image edge, the throttle groups).
* Every edge carries the permissions its parent takes (`perm`) and those it lets
  others take (`shared`). Adding or changing an edge is checked against every other
  parent of the node, then propagated down through the drivers' child-permission
  rules, and finally applied. The file drivers turn their node's permissions into
  image-file locks (`blockdev.image.lock`), so conflicts with other processes surface
  with QEMU's `Failed to get "write" lock` [bdrv_check_update_perm, bdrv_check_perm,
  bdrv_set_perm, bdrv_abort_perm_update].
* Operation blockers: per operation type, a list of reasons (newest first); a blocked
  operation fails with `Node '<device or node name>' is busy: <reason>`
  [bdrv_op_is_blocked].
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from blockdev.bitmaps import DirtyBitmap
from blockdev.image.lock import Perm, perm_names
from blockdev.options import Flat
from schema.errors import GenericError

if TYPE_CHECKING:
    from blockdev.device_ops import BlockDevOps
    from blockdev.driveinfo import DriveInfo
    from blockdev.image.io import ImageIO
    from blockdev.throttle import ThrottleGroups

PERM_ALL = int(Perm.ALL)
PERM_PASSTHROUGH = int(Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE)
PERM_UNCHANGED = PERM_ALL & ~PERM_PASSTHROUGH

# include/block/block.h BlockOpType, in enum order.
OP_TYPES = (
    "backup-source", "backup-target", "change", "commit-source", "commit-target",
    "dataplane", "drive-del", "eject", "external-snapshot", "internal-snapshot",
    "internal-snapshot-delete", "mirror-source", "mirror-target", "resize", "stream",
    "replace",
)

SECTOR = 512


class PermissionError_(GenericError):
    """A permission conflict (bdrv_check_update_perm / bdrv_check_perm): -EPERM."""


@attrs.define(eq=False)
class Reason:
    """An op blocker's Error: identity matters (unblock removes this very reason)."""

    text: str


@attrs.define(kw_only=True)
class OpenFlags:
    """The BDRV_O_* flags that matter to the model."""

    rdwr: bool = False
    allow_rdwr: bool = False
    nocache: bool = False
    no_flush: bool = False
    unmap: bool = False
    copy_on_read: bool = False
    inactive: bool = False
    no_backing: bool = False
    protocol: bool = False
    snapshot: bool = False
    temporary: bool = False
    no_io: bool = False
    resize: bool = False
    native_aio: bool = False

    def copy(self) -> OpenFlags:
        return attrs.evolve(self)


@attrs.define(kw_only=True, eq=False)
class Child:
    """BdrvChild: one edge from a parent (node, BlockBackend or job) to a node."""

    name: str
    role: str  # "file", "format", "backing", "root", "job", "children", "extent"
    bs: Node | None
    parent: Any
    perm: int = 0
    shared: int = PERM_ALL

    def parent_desc(self) -> str:
        """bdrv_child_user_desc: how permission errors name this edge's user."""
        parent = self.parent
        if isinstance(parent, Backend):
            return parent.parent_desc()
        if isinstance(parent, Node):
            return parent.device_or_node_name()
        desc = getattr(parent, "parent_desc", None)
        if callable(desc):
            return str(desc())
        return "another user"

    def parent_name(self) -> str | None:
        """role->get_name: only BlockBackends have one (blk_root_get_name)."""
        if isinstance(self.parent, Backend):
            return self.parent.name or ""
        return None


class DriverContext(Protocol):
    """What a driver's open may use of its block layer (`BlockLayer` is one)."""

    @property
    def io(self) -> ImageIO: ...

    @property
    def throttle_groups(self) -> ThrottleGroups: ...

    @property
    def network_size(self) -> int: ...

    def has_tls_creds(self, ident: str) -> bool: ...

    def nbd_loopback(self, server: dict[str, Any]) -> Any:
        """A connection to the emulator's own NBD server when `server` is its
        listening address (blockdev.nbd.client.Transport), else None."""

    def open_child(self, filename: str | None, options: Flat, key: str, parent: Node,
                   role: str, *, allow_none: bool) -> Child | None: ...


OpenFn = Callable[[DriverContext, "Node", Flat], None]
ChildPermFn = Callable[["Node", Child | None, str, int, int], tuple[int, int]]


@attrs.frozen
class DriverSpec:
    """One BlockDriver: what the generic block code asks of it."""

    format_name: str
    open: OpenFn
    protocol_name: str | None = None
    protocol: bool = False  # has bdrv_file_open
    is_filter: bool = False
    needs_filename: bool = False
    supports_backing: bool = False
    child_perm: ChildPermFn | None = None
    has_get_info: bool = False
    internal_snapshots: bool = False
    persistent_bitmaps: bool = False
    change_backing_file: bool = False
    add_child: bool = False
    del_child: bool = False
    has_variable_length: bool = False
    truncate: Callable[[Node, int], None] | None = None  # bdrv_truncate's driver part
    refresh_filename: Callable[[Node, Flat], None] | None = None
    parse_filename: Callable[[str, Flat], None] | None = None
    getlength: Callable[[Node], int] | None = None
    is_inserted: Callable[[Node], bool] | None = None
    check_perm: Callable[[Node, int, int], None] | None = None
    set_perm: Callable[[Node, int, int], None] | None = None
    abort_perm: Callable[[Node], None] | None = None
    close: Callable[[Node], None] | None = None


@attrs.define(kw_only=True, eq=False)
class Node:
    """BlockDriverState."""

    driver: DriverSpec | None = None
    node_name: str = ""
    filename: str = ""
    exact_filename: str = ""
    full_open_options: dict[str, Any] | None = None
    options: dict[str, Any] = attrs.Factory(dict)
    explicit_options: dict[str, Any] = attrs.Factory(dict)
    open_flags: OpenFlags = attrs.Factory(OpenFlags)
    read_only: bool = True
    force_share: bool = False
    detect_zeroes: str = "off"
    probed: bool = False
    implicit: bool = False
    encrypted: bool = False
    sg: bool = False
    children: list[Child] = attrs.Factory(list)
    parents: list[Child] = attrs.Factory(list)
    file: Child | None = None
    backing: Child | None = None
    inherits_from: Node | None = None
    refcnt: int = 1
    monitor_owned: bool = False
    backing_file: str = ""
    backing_format: str = ""
    total_sectors: int = 0
    op_blockers: dict[str, list[Reason]] = attrs.Factory(lambda: {op: [] for op in OP_TYPES})
    backing_blocker: Reason | None = None
    bitmaps: list[DirtyBitmap] = attrs.Factory(list)
    write_threshold: int = 0
    # bdrv_add_before_write_notifier: called (newest first) with (node, offset, bytes)
    # before a write or discard reaches the driver; raising BlockIOError fails it.
    before_write: list[Callable[[Node, int, int], None]] = attrs.Factory(list)
    wr_highest_offset: int = 0
    state: Any = None  # the driver's own state (image, lock, size, ...)
    faults: dict[str, int] = attrs.Factory(dict)  # injected errno per operation
    temp_file: str | None = None  # -drive snapshot=on: the overlay's file, deleted on close
    job: Any = None
    deleted: bool = False
    # The machine the node belongs to (its events: BLOCK_WRITE_THRESHOLD, QUORUM_*),
    # set when the node gets its name; the data path reads it (blockdev.io).
    host: Any = None
    # Permission check bookkeeping (what bdrv_check_perm prepared).
    pending_perm: tuple[int, int] | None = None
    cur_perm: tuple[int, int] = (0, PERM_ALL)
    # append_open_options' result for the options and children it was computed from
    # (bdrv_refresh_filename runs over the whole subtree at every open).
    own_options_memo: tuple[Any, ...] | None = None

    # -- names -----------------------------------------------------------------------

    def parent_name(self) -> str | None:
        """bdrv_get_parent_name: the first named parent BlockBackend's name."""
        for c in self.parents:
            name = c.parent_name()
            if name:
                return name
        return None

    def device_name(self) -> str:
        """bdrv_get_device_name."""
        return self.parent_name() or ""

    def device_or_node_name(self) -> str:
        """bdrv_get_device_or_node_name."""
        return self.parent_name() or self.node_name

    # -- structure -------------------------------------------------------------------

    @property
    def backing_bs(self) -> Node | None:
        return self.backing.bs if self.backing is not None else None

    @property
    def file_bs(self) -> Node | None:
        return self.file.bs if self.file is not None else None

    def has_blk(self) -> bool:
        """bdrv_has_blk."""
        return any(c.role == "root" for c in self.parents)

    def first_blk(self) -> Backend | None:
        for c in self.parents:
            if c.role == "root":
                assert isinstance(c.parent, Backend)
                return c.parent
        return None

    def is_root_node(self) -> bool:
        """bdrv_is_root_node: only BlockBackends as parents."""
        return all(c.role == "root" for c in self.parents)

    def chain(self) -> Iterator[Node]:
        """The node and its backing chain, top to bottom."""
        bs: Node | None = self
        while bs is not None:
            yield bs
            bs = bs.backing_bs

    def chain_contains(self, base: Node | None) -> bool:
        """bdrv_chain_contains."""
        return base is not None and any(bs is base for bs in self.chain())

    def find_base(self) -> Node:
        """bdrv_find_base: the bottom of the backing chain."""
        bs = self
        while bs.backing_bs is not None:
            bs = bs.backing_bs
        return bs

    def find_overlay(self, bs: Node | None) -> Node | None:
        """bdrv_find_overlay: the node of the chain whose backing is `bs`."""
        active: Node | None = self
        while active is not None and active.backing_bs is not bs:
            active = active.backing_bs
        return active

    def is_writable(self) -> bool:
        """bdrv_is_writable (without a reopen queue)."""
        return self.open_flags.rdwr and not self.open_flags.inactive

    def is_inserted(self) -> bool:
        """bdrv_is_inserted: the driver's own answer, else all children inserted."""
        if self.driver is None:
            return False
        probe = self.driver.is_inserted
        if probe is not None:
            return probe(self)
        return all(c.bs is not None and c.bs.is_inserted() for c in self.children)

    def is_encrypted(self) -> bool:
        """bdrv_is_encrypted: its own flag, or its backing node's."""
        if self.backing is not None and self.backing.bs is not None and self.backing.bs.encrypted:
            return True
        return self.encrypted

    def length(self) -> int:
        """bdrv_getlength: whole sectors."""
        return self.nb_sectors() * SECTOR

    def nb_sectors(self) -> int:
        """bdrv_nb_sectors: drivers with a variable length are asked each time."""
        drv = self.driver
        if drv is None:
            return 0
        if drv.has_variable_length and drv.getlength is not None:
            length = drv.getlength(self)
            self.total_sectors = (length + SECTOR - 1) // SECTOR
        return self.total_sectors

    # -- op blockers -----------------------------------------------------------------

    def op_blocked(self, op: str) -> str | None:
        """bdrv_op_is_blocked: the error text, or None."""
        blockers = self.op_blockers[op]
        if blockers:
            return f"Node '{self.device_or_node_name()}' is busy: {blockers[0].text}"
        return None

    def check_op(self, op: str) -> None:
        text = self.op_blocked(op)
        if text is not None:
            raise GenericError(text)

    def op_block(self, op: str, reason: Reason) -> None:
        self.op_blockers[op].insert(0, reason)

    def op_unblock(self, op: str, reason: Reason) -> None:
        self.op_blockers[op] = [r for r in self.op_blockers[op] if r is not reason]

    def op_block_all(self, reason: Reason) -> None:
        for op in OP_TYPES:
            self.op_block(op, reason)

    def op_unblock_all(self, reason: Reason) -> None:
        for op in OP_TYPES:
            self.op_unblock(op, reason)

    def blocker_is_empty(self) -> bool:
        return not any(self.op_blockers.values())


@attrs.define(kw_only=True)
class AcctStats:
    """BlockAcctStats of one BlockBackend [block/accounting.c]."""

    nr_bytes: dict[str, int] = attrs.Factory(lambda: {"read": 0, "write": 0, "flush": 0})
    nr_ops: dict[str, int] = attrs.Factory(lambda: {"read": 0, "write": 0, "flush": 0})
    failed_ops: dict[str, int] = attrs.Factory(lambda: {"read": 0, "write": 0, "flush": 0})
    invalid_ops: dict[str, int] = attrs.Factory(lambda: {"read": 0, "write": 0, "flush": 0})
    merged: dict[str, int] = attrs.Factory(lambda: {"read": 0, "write": 0, "flush": 0})
    total_time_ns: dict[str, int] = attrs.Factory(lambda: {"read": 0, "write": 0, "flush": 0})
    last_access_time_ns: int = 0
    accessed: bool = False  # QEMU tests last_access_time_ns > 0 on a clock that is never 0
    account_invalid: bool = False
    account_failed: bool = False
    intervals: list[int] = attrs.Factory(list)  # newest first, as QSLIST_INSERT_HEAD


@attrs.define(kw_only=True)
class RootState:
    """BlockBackendRootState: what a BlockBackend remembers of its last medium."""

    read_only: bool = False
    open_flags: OpenFlags = attrs.Factory(OpenFlags)
    detect_zeroes: str = "off"


@attrs.define(kw_only=True, eq=False)
class Backend:
    """BlockBackend."""

    name: str | None = None
    root: Child | None = None
    perm: int = 0
    shared: int = PERM_ALL
    dev: BlockDevOps | None = None
    enable_write_cache: bool = True
    on_read_error: str = "report"
    on_write_error: str = "report"
    iostatus_enabled: bool = False
    iostatus: str = "ok"
    stats: AcctStats = attrs.Factory(AcctStats)
    throttle_group: str | None = None
    throttle_tg: Any = None  # the ThrottleGroup of throttle_group (its buckets' levels)
    root_state: RootState = attrs.Factory(RootState)
    legacy_dinfo: DriveInfo | None = None
    disable_perm: bool = False
    # The permissions the attached device shares (blkconf_apply_backend_options).
    dev_shared: int = PERM_ALL
    refcnt: int = 1
    # Requests a device queued after a stop-action error, retried on `cont`.
    queued: list[Any] = attrs.Factory(list)

    @property
    def bs(self) -> Node | None:
        return self.root.bs if self.root is not None else None

    def display_name(self) -> str:
        """blk_name."""
        return self.name or ""

    def parent_desc(self) -> str:
        """blk_root_get_parent_desc."""
        if self.name:
            return self.name
        dev_id = self.attached_dev_id()
        return dev_id if dev_id else "a block device"

    def attached_dev_id(self) -> str:
        """blk_get_attached_dev_id: qdev id, else canonical QOM path, else ""."""
        if self.dev is None:
            return ""
        return self.dev.qdev_id()

    # -- device model callbacks (blk_dev_*) -------------------------------------------

    def has_removable_media(self) -> bool:
        return self.dev is None or self.dev.removable

    def has_tray(self) -> bool:
        return self.dev is not None and self.dev.has_tray

    def is_tray_open(self) -> bool:
        return self.has_tray() and self.dev is not None and self.dev.tray_open

    def is_medium_locked(self) -> bool:
        return self.dev is not None and self.dev.has_lock and self.dev.locked

    def is_inserted(self) -> bool:
        bs = self.bs
        return bs is not None and bs.is_inserted()

    def is_available(self) -> bool:
        return self.is_inserted() and not self.is_tray_open()

    def is_read_only(self) -> bool:
        """blk_is_read_only."""
        bs = self.bs
        if bs is not None:
            return bs.read_only
        return self.root_state.read_only

    def iostatus_is_enabled(self) -> bool:
        """blk_iostatus_is_enabled."""
        return self.iostatus_enabled and (
            self.on_write_error in ("enospc", "stop") or self.on_read_error == "stop")

    def iostatus_reset(self) -> None:
        if self.iostatus_is_enabled():
            self.iostatus = "ok"

    def iostatus_set_err(self, error: int) -> None:
        if self.iostatus == "ok":
            self.iostatus = "nospace" if error == errno.ENOSPC else "failed"


# --- permissions -------------------------------------------------------------------


def cumulative_perm(bs: Node, ignore: list[Child] | None = None) -> tuple[int, int]:
    """bdrv_get_cumulative_perm (optionally leaving some parents out)."""
    perm, shared = 0, PERM_ALL
    for c in bs.parents:
        if ignore and any(c is i for i in ignore):
            continue
        perm |= c.perm
        shared &= c.shared
    return perm, shared


def child_perm(bs: Node, child_bs: Node | None, c: Child | None, role: str,
               perm: int, shared: int) -> tuple[int, int]:
    """bdrv_child_perm: the driver's rule, then force-share of the child."""
    nperm, nshared = perm, shared
    drv = bs.driver
    if drv is not None and drv.child_perm is not None:
        nperm, nshared = drv.child_perm(bs, c, role, perm, shared)
    if child_bs is not None and child_bs.force_share:
        nshared = PERM_ALL
    return nperm, nshared


def filter_default_perms(bs: Node, c: Child | None, role: str, perm: int,
                         shared: int) -> tuple[int, int]:
    """bdrv_filter_default_perms."""
    if c is None:
        return perm & PERM_PASSTHROUGH, (shared & PERM_PASSTHROUGH) | PERM_UNCHANGED
    return ((perm & PERM_PASSTHROUGH) | (c.perm & PERM_UNCHANGED),
            (shared & PERM_PASSTHROUGH) | (c.shared & PERM_UNCHANGED))


def format_default_perms(bs: Node, c: Child | None, role: str, perm: int,
                         shared: int) -> tuple[int, int]:
    """bdrv_format_default_perms."""
    if role != "backing":
        perm, shared = filter_default_perms(bs, c, role, perm, shared)
        if bs.is_writable():
            perm |= int(Perm.WRITE | Perm.RESIZE)
        perm |= int(Perm.CONSISTENT_READ)
        shared &= ~int(Perm.WRITE | Perm.RESIZE)
    else:
        perm &= int(Perm.CONSISTENT_READ)
        if shared & Perm.WRITE:
            shared = int(Perm.WRITE | Perm.RESIZE)
        else:
            shared = 0
        shared |= int(Perm.CONSISTENT_READ | Perm.GRAPH_MOD | Perm.WRITE_UNCHANGED)
    if bs.open_flags.inactive:
        shared |= int(Perm.WRITE | Perm.RESIZE)
    return perm, shared


def check_perm(bs: Node, perm: int, shared: int, ignore: list[Child]) -> None:
    """bdrv_check_perm: may `bs` be used with these cumulative permissions? Prepares
    the change on every node below (file locks included); must be followed by
    `set_perm` or `abort_perm_update`."""
    if perm & int(Perm.WRITE | Perm.WRITE_UNCHANGED) and not bs.is_writable():
        raise PermissionError_("Block node is read-only")
    drv = bs.driver
    if drv is None:
        return
    if drv.check_perm is not None:
        bs.pending_perm = (perm, shared)
        drv.check_perm(bs, perm, shared)
        return
    if drv.child_perm is None:
        return
    for c in list(bs.children):
        cperm, cshared = child_perm(bs, c.bs, c, c.role, perm, shared)
        if (cperm, cshared) == (c.perm, c.shared) and _settled(c):
            # The edge keeps its permissions, so the child's cumulative ones do not
            # change: QEMU re-checks the unchanged subtree and finds it as it was.
            # Skipping it keeps an open of a chain N deep at O(N), not O(N^2).
            continue
        child_check_perm(c, cperm, cshared, ignore)


def _settled(c: Child) -> bool:
    """The child node has applied its permissions and has nothing prepared."""
    child = c.bs
    return child is not None and child.pending_perm is None and \
        child.cur_perm == cumulative_perm(child)


def abort_perm_update(bs: Node) -> None:
    """bdrv_abort_perm_update, recursively."""
    drv = bs.driver
    if drv is None:
        return
    if drv.abort_perm is not None:
        drv.abort_perm(bs)
    bs.pending_perm = None
    for c in bs.children:
        if c.bs is not None:
            abort_perm_update(c.bs)


def set_perm(bs: Node, perm: int, shared: int) -> None:
    """bdrv_set_perm: apply what check_perm prepared, down the graph."""
    drv = bs.driver
    if drv is None:
        return
    bs.cur_perm = (perm, shared)
    bs.pending_perm = None
    if drv.set_perm is not None:
        drv.set_perm(bs, perm, shared)
    if drv.child_perm is None:
        return
    for c in list(bs.children):
        cperm, cshared = child_perm(bs, c.bs, c, c.role, perm, shared)
        if (cperm, cshared) == (c.perm, c.shared) and _settled(c):
            continue  # nothing below changes (see check_perm)
        child_set_perm(c, cperm, cshared)


def check_update_perm(bs: Node, new_perm: int, new_shared: int,
                      ignore: list[Child]) -> None:
    """bdrv_check_update_perm: can a (new or changed) user with these permissions
    coexist with every other parent of `bs`? The first conflicting parent, in the
    node's parent order, is reported."""
    cperm, cshared = new_perm, new_shared
    for c in bs.parents:
        if any(c is i for i in ignore):
            continue
        if (new_perm & c.shared) != new_perm:
            names = perm_names(new_perm & ~c.shared)
            raise PermissionError_(
                f"Conflicts with use by {c.parent_desc()} as '{c.name}', which does not "
                f"allow '{names}' on {bs.node_name}")
        if (c.perm & new_shared) != c.perm:
            names = perm_names(c.perm & ~new_shared)
            raise PermissionError_(
                f"Conflicts with use by {c.parent_desc()} as '{c.name}', which uses "
                f"'{names}' on {bs.node_name}")
        cperm |= c.perm
        cshared &= c.shared
    check_perm(bs, cperm, cshared, ignore)


def child_check_perm(c: Child, perm: int, shared: int, ignore: list[Child]) -> None:
    """bdrv_child_check_perm."""
    assert c.bs is not None
    check_update_perm(c.bs, perm, shared, [c, *ignore])


def child_set_perm(c: Child, perm: int, shared: int) -> None:
    """bdrv_child_set_perm."""
    c.perm, c.shared = perm, shared
    assert c.bs is not None
    set_perm(c.bs, *cumulative_perm(c.bs))


def child_try_set_perm(c: Child, perm: int, shared: int) -> None:
    """bdrv_child_try_set_perm: check, then set or undo."""
    try:
        child_check_perm(c, perm, shared, [])
    except GenericError:
        assert c.bs is not None
        abort_perm_update(c.bs)
        raise
    child_set_perm(c, perm, shared)


def guarded(fn: Callable[[], None], bs: Node) -> None:
    """Run a permission check on `bs`; on failure undo what it prepared."""
    try:
        fn()
    except GenericError:
        abort_perm_update(bs)
        raise
