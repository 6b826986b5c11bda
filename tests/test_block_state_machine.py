"""A Hypothesis state machine over the pure block layer.

Bundles carry node names, drive names and device ids from the rules that create
them to the rules that use and delete them; rules that act in the wrong state
assert QEMU's error, so error paths get as much traffic as happy paths. After every
step: the graph is acyclic and consistent (edges point at live nodes in both
directions, every reference is held by an edge or by the monitor), names are unique across nodes and
drives, tray events match the tray state, throttle groups have members, and every
query reply conforms to the schema (the checker the dispatcher uses).
"""

from __future__ import annotations

import errno
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from blockdev import guest_io, media
from blockdev.graph import Node
from schema import load_schema
from schema.errors import QMPError
from schema.output import check_return
from tests.test_block_support import Block

SCHEMA = load_schema()
NAMES = st.sampled_from(["a", "b", "c", "d0", "d1", "n-1", "x.y"])


class BlockMachine(RuleBasedStateMachine):
    nodes = Bundle("nodes")
    drives = Bundle("drives")
    cds = Bundle("cds")

    def __init__(self) -> None:
        super().__init__()
        self.b = Block(seed=3)
        self.tray: dict[str, bool] = {}

    def used(self, name: str) -> bool:
        return self.b.layer.find_node(name) is not None or \
            self.b.layer.blk_by_name(name) is not None

    def expect(self, expected: str | None, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            result = fn(*args, **kw)
        except QMPError as e:
            assert expected is not None, e.desc
            assert e.desc == expected
            return None
        assert expected is None, f"expected {expected!r}"
        return result

    # -- creating -------------------------------------------------------------------------

    @rule(target=nodes, name=NAMES)
    def add_null(self, name: str) -> str:
        if self.b.layer.blk_by_name(name) is not None:
            err: str | None = f"node-name={name} is conflicting with a device id"
        elif self.b.layer.find_node(name) is not None:
            err = "Duplicate node name"
        else:
            err = None
        self.expect(err, self.b.add, driver="null-co", **{"node-name": name})
        return name

    @rule(target=nodes, name=NAMES, below=nodes)
    def add_raw(self, name: str, below: str) -> str:
        bs = self.b.layer.find_node(below)
        if bs is None:
            err: str | None = f"Cannot find device={below} nor node_name={below}"
            if self.b.layer.blk_by_name(below) is not None:
                err = None if self.b.layer.blk_by_name(below).bs is not None else \
                    f"Device '{below}' has no medium"  # type: ignore[union-attr]
        else:
            err = None
        if err is None and self.used(name):
            err = (f"node-name={name} is conflicting with a device id"
                   if self.b.layer.blk_by_name(name) else "Duplicate node name")
        if err is not None:
            try:
                self.b.add(driver="raw", **{"node-name": name, "file": below})
            except QMPError:
                return name
            raise AssertionError("expected an error")
        self.b.add(driver="raw", **{"node-name": name, "file": below})
        return name

    @rule(target=drives, name=NAMES, empty=st.booleans())
    def add_drive(self, name: str, empty: bool) -> str:
        spec = f"if=none,id={name}" + ("" if empty else ",driver=null-co")
        if self.b.layer.blk_by_name(name) is not None:
            err: str | None = f"Device with id '{name}' already exists"
        elif self.b.layer.find_node(name) is not None:
            err = f"Device name '{name}' conflicts with an existing node name"
        else:
            err = None
        self.expect(err, self.b.drive, spec)
        return name

    @rule(target=cds, drive=drives)
    def attach_cd(self, drive: str) -> str:
        blk = self.b.layer.blk_by_name(drive)
        if blk is None:
            if self.b.layer.find_node(drive) is None:
                self.expect(f"Property 'ide-cd.drive' can't find value '{drive}'",
                            self.b.device, "ide-cd", drive=drive)
            return drive
        if blk.dev is not None:
            self.expect(f"Drive '{drive}' is already in use by another device",
                        self.b.device, "ide-cd", drive=drive)
            return drive
        self.b.device("ide-cd", drive=drive)
        self.tray[drive] = False
        return drive

    # -- changing --------------------------------------------------------------------------

    @rule(name=consumes(nodes))
    def delete(self, name: str) -> None:
        layer = self.b.layer
        bs = layer.find_node(name)
        if bs is None:
            err: str | None = f"Cannot find node {name}"
        elif bs.has_blk():
            err = f"Node {name} is in use"
        elif not bs.monitor_owned:
            err = f"Node {name} is not owned by the monitor"
        elif bs.refcnt > 1:
            err = f"Block device {name} is in use"
        else:
            err = None
        self.expect(err, self.b.qmp, "blockdev-del", **{"node-name": name})

    @rule(drive=cds, force=st.booleans())
    def eject(self, drive: str, force: bool) -> None:
        blk = self.b.layer.blk_by_name(drive)
        if blk is None or blk.dev is None:
            return
        was_open = blk.is_tray_open()
        if not was_open and blk.is_medium_locked() and not force:
            self.expect(f"Device '{drive}' is locked and force was not specified, wait "
                        "for tray to open and try again", self.b.qmp, "eject",
                        device=drive, force=force)
            assert blk.dev.eject_request
            return
        self.b.qmp("eject", device=drive, force=force)
        events = self.b.events()
        assert events == ([] if was_open else [
            ("DEVICE_TRAY_MOVED", {"device": drive, "id": blk.attached_dev_id(),
                                   "tray-open": True})])
        assert blk.bs is None and blk.is_tray_open()

    @rule(drive=cds)
    def close_tray(self, drive: str) -> None:
        blk = self.b.layer.blk_by_name(drive)
        if blk is None or blk.dev is None:
            return
        was_open = blk.is_tray_open()
        self.b.qmp("blockdev-close-tray", device=drive)
        assert len(self.b.events()) == (1 if was_open else 0)
        assert not blk.is_tray_open()

    @rule(drive=cds, node=nodes)
    def insert(self, drive: str, node: str) -> None:
        layer = self.b.layer
        blk, bs = layer.blk_by_name(drive), layer.find_node(node)
        if blk is None or blk.dev is None:
            return
        if bs is None:
            err: str | None = f"Node '{node}' not found"
        elif bs.has_blk():
            err = f"Node '{node}' is already in use"
        elif not blk.is_tray_open():
            err = "Tray of the device is not open"
        elif blk.bs is not None:
            err = "There already is a medium in the device"
        else:
            err = None
        self.expect(err, self.b.qmp, "x-blockdev-insert-medium", device=drive,
                    **{"node-name": node})

    @rule(drive=drives, bps=st.integers(min_value=0, max_value=3))
    def throttle(self, drive: str, bps: int) -> None:
        blk = self.b.layer.blk_by_name(drive)
        args = {"bps": bps, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0,
                "iops_wr": 0}
        if blk is None:
            err: str | None = f"Device '{drive}' not found"
        elif blk.bs is None:
            err = "Device has no medium"
        else:
            err = None
        self.expect(err, self.b.qmp, "block_set_io_throttle", device=drive, **args)
        if err is None:
            assert (blk.throttle_group is not None) == (bps > 0)  # type: ignore[union-attr]

    @rule(node=nodes, name=st.sampled_from(["bm1", "bm2"]))
    def bitmap_add(self, node: str, name: str) -> None:
        layer = self.b.layer
        try:
            bs = layer.lookup_bs(node, node)
        except QMPError as e:
            self.expect(e.desc, self.b.qmp, "block-dirty-bitmap-add", node=node, name=name)
            return
        err = f"Bitmap already exists: {name}" if layer.find_dirty_bitmap(bs, name) else None
        self.expect(err, self.b.qmp, "block-dirty-bitmap-add", node=node, name=name)

    @rule(drive=drives, offset=st.integers(0, 1 << 31), fail=st.booleans())
    def guest_write(self, drive: str, offset: int, fail: bool) -> None:
        blk = self.b.layer.blk_by_name(drive)
        if blk is None or blk.bs is None:
            return
        before = blk.stats.nr_ops["write"]
        if fail:
            guest_io.set_fault(self.b.layer, blk.bs.node_name, "write", errno.EIO)
        result = guest_io.submit(self.b.layer, blk, guest_io.Request("write", offset, 512))
        if fail:
            guest_io.set_fault(self.b.layer, blk.bs.node_name, "write", None)
        self.b.events()
        if result == "ok":
            assert blk.stats.nr_ops["write"] == before + 1
        blk.queued.clear()
        self.b.host.runstate.state = "running"

    @rule(drive=cds)
    def guest_lock_then_open(self, drive: str) -> None:
        blk = self.b.layer.blk_by_name(drive)
        if blk is None or blk.dev is None:
            return
        media.guest_lock(self.b.layer, blk.dev, True)
        if blk.is_tray_open():
            self.b.qmp("blockdev-open-tray", device=drive)
        else:
            self.expect(f"Device '{drive}' is locked and force was not specified, wait "
                        "for tray to open and try again", self.b.qmp, "eject",
                        device=drive)
        self.b.host.clock.t += 1.0
        self.b.layer.run_due(self.b.host.clock.t)
        self.b.events()
        assert blk.is_tray_open()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def graph_is_consistent(self) -> None:
        layer = self.b.layer
        live = set(map(id, layer.nodes))
        for bs in layer.nodes:
            assert not bs.deleted and bs.refcnt >= 1
            # Every reference is held by an edge (a parent node's child, a BlockBackend's
            # root) or by the monitor (blockdev-add); nothing else keeps one between
            # commands [block.c bdrv_root_attach_child, bdrv_root_unref_child; blockdev.c
            # monitor_bdrv_states].
            assert bs.refcnt == len(bs.parents) + (1 if bs.monitor_owned else 0), \
                bs.node_name
            for c in bs.children:
                assert c.bs is not None and id(c.bs) in live
                assert any(p is c for p in c.bs.parents)
            for c in bs.parents:
                if isinstance(c.parent, Node):
                    assert any(k is c for k in c.parent.children)
        for blk in layer.backends:
            if blk.bs is not None:
                assert id(blk.bs) in live

    @invariant()
    def graph_is_acyclic(self) -> None:
        def visit(bs: Node, path: tuple[int, ...]) -> None:
            assert id(bs) not in path
            for c in bs.children:
                assert c.bs is not None
                visit(c.bs, (*path, id(bs)))

        for bs in self.b.layer.nodes:
            visit(bs, ())

    @invariant()
    def names_are_unique(self) -> None:
        nodes = [bs.node_name for bs in self.b.layer.nodes]
        drives = [blk.name for blk in self.b.layer.monitor_backends]
        assert len(set(nodes)) == len(nodes)
        assert len(set(drives)) == len(drives)
        assert not set(nodes) & set(drives)

    @invariant()
    def throttle_groups_have_members(self) -> None:
        for name, group in self.b.layer.throttle_groups.groups.items():
            assert group.members or group.object_ref
            for m in group.members:
                assert getattr(m, "throttle_group", name) == name

    @invariant()
    def queries_conform_to_schema(self) -> None:
        for cmd, args in (("query-block", {}), ("query-named-block-nodes", {}),
                          ("query-blockstats", {}),
                          ("query-blockstats", {"query-nodes": True})):
            check_return(SCHEMA.commands[cmd], self.b.qmp(cmd, **args))


TestBlockMachine = BlockMachine.TestCase
TestBlockMachine.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_state_machine_meets_errors_and_successes() -> None:
    """What the module promises: the rules reach QEMU's error paths as much as the
    happy paths. A derandomized run of the machine records the outcome each checked
    command was expected to have (and `expect` asserted it held): at least a quarter
    of them are successes, at least a quarter errors, and the errors include each
    kind the rules provoke (names vary with the run, so kinds are message stems)."""
    outcomes: list[str | None] = []

    class Recording(BlockMachine):
        def expect(self, expected: str | None, fn: Any, *args: Any, **kw: Any) -> Any:
            outcomes.append(expected)
            return super().expect(expected, fn, *args, **kw)

    run_state_machine_as_test(Recording, settings=settings(
        max_examples=40, stateful_step_count=30, deadline=None, derandomize=True,
        database=None, suppress_health_check=[HealthCheck.too_slow]))
    errors = [o for o in outcomes if o is not None]
    assert len(errors) * 4 >= len(outcomes) and (len(outcomes) - len(errors)) * 4 >= \
        len(outcomes)
    stems = ("Duplicate node name", "Device has no medium", "Cannot find node ",
             "Device with id ", "Device name ", "node-name=", "Bitmap already exists: ")
    missing = [stem for stem in stems if not any(e.startswith(stem) for e in errors)]
    assert missing == [], sorted(set(errors))
