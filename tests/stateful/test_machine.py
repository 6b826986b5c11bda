"""A Hypothesis state machine over a whole emulator, one QMP request at a time.

Unlike tests/test_block_state_machine.py, which calls the block layer's handlers
directly, every request here goes through `Dispatcher.execute` on a strict machine
built from QEMU's command line: the schema visitor checks the arguments, the output
checker the return values, and the main loop runs the requests a command queued, as
a monitor does. The machine is `-machine pc -nodefaults -no-shutdown` with an empty
IDE CD-ROM drive `cd0`; `-no-shutdown` keeps it alive when the simulated guest
powers off, and `quit` is left out (the machine would be gone).

Rules keep a model of what QEMU 2.11 would have done (run state, block nodes,
bitmaps, internal snapshots, tray and medium) and assert the exact reply, error
class and text, and events, wrong-state errors included. Bundles carry node names,
(node, bitmap) and (node, snapshot) pairs from the rules that create them to those
that use and delete them; names that failed to be created are carried too, so the
error paths get traffic. After every step: the run state agrees with the last
STOP/RESUME sent; every reply and event conformed to the schema; the block graph is
acyclic and no BlockBackend points at a missing node; the model's nodes exist.

Sources: ../shared/reference/runstate.md §3 (stop, cont, system_reset,
system_powerdown), §4.1 (-no-shutdown); block.md §3.1, §3.2 (blockdev-add/del),
§3.5 (throttling), §3.7 (bitmaps), §3.8 (internal snapshots: blockdev.c
internal_snapshot_prepare, qmp_blockdev_snapshot_delete_internal_sync,
qmp_get_root_bs; block/snapshot.c bdrv_snapshot_find_by_id_and_name), §6 (tray and
medium); qmp-protocol.md §5 (argument checks). The simulated guest's power-off is the
emulator's (vmm/machine/guest.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from schema.output import check_event, check_return
from tests import emulator

ARGV = ["-machine", "pc", "-nodefaults", "-no-shutdown",
        "-drive", "if=ide,index=2,media=cdrom,id=cd0", "--emu-strict"]
CD = "cd0"
# "cd0" is the drive's name: a node may not take it.
NODE_NAMES = st.sampled_from(["a", "b", "q1", "n-1", "x.y", CD])
KINDS = st.sampled_from(["null-co", "raw", "qcow2"])
BITMAP_NAMES = st.sampled_from(["b1", "b2"])
SNAPSHOT_NAMES = st.sampled_from(["s1", "s2"])
OK: dict[str, Any] = {"return": {}}

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img makes the qcow2 template")


def error(desc: str, cls: str = "GenericError") -> dict[str, Any]:
    return {"error": {"class": cls, "desc": desc}}


def lookup_error(name: str) -> dict[str, Any]:
    """block.c bdrv_lookup_bs."""
    return error(f"Cannot find device={name} nor node_name={name}")


class MachineStateMachine(RuleBasedStateMachine):
    """The model: what QEMU would show. The emulator: a SyncVm from ARGV."""

    templates: Path | None = None  # set by the image_templates fixture

    nodes = Bundle("nodes")
    bitmaps = Bundle("bitmaps")
    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="qmp-stateful-"))
        self.vm = emulator.SyncVm(ARGV)
        self.seen_events = 0
        self.files = 0
        # model of the run state
        self.state = "running"
        self.powerdown_pending = False
        # model of the block layer
        self.kinds: dict[str, str] = {}
        self.bitmap_names: dict[str, set[str]] = {}
        self.snapshot_names: dict[str, set[str]] = {}
        self.tray_open = False
        self.medium: str | None = None  # a node name, "" for an anonymous medium
        self.tray_id: str | None = None

    def teardown(self) -> None:
        self.vm.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- talking to the emulator ------------------------------------------------------------

    def run(self, command: str, arguments: dict[str, Any] | None = None
            ) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        """One request; its reply and the events it caused, both checked against the
        schema (the strict machine would have raised already; this says so here)."""
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        reply = self.vm.execute(request)
        assert reply is not None
        if "return" in reply:
            check_return(self.vm.schema.commands[command], reply["return"])
        else:
            assert set(reply) == {"error"}
            assert reply["error"]["class"] in ("GenericError", "CommandNotFound",
                                               "DeviceNotActive", "DeviceNotFound",
                                               "KVMMissingCap")
        return reply, self.new_events()

    def new_events(self) -> list[tuple[str, Any]]:
        fresh = self.vm.events[self.seen_events:]
        self.seen_events = len(self.vm.events)
        out = []
        for ev in fresh:
            check_event(self.vm.schema.events[ev.name], ev.data)
            if (ev.name, ev.data) == ("RESET", {"guest": True}):
                continue  # the simulated firmware's own reset after a system reset
            out.append((ev.name, ev.data))
        return out

    def expect(self, command: str, arguments: dict[str, Any] | None,
               reply: dict[str, Any], events: list[tuple[str, Any]] | None = None
               ) -> dict[str, Any]:
        got, seen = self.run(command, arguments)
        assert got == reply, (command, arguments, got)
        assert seen == (events or []), (command, arguments, seen)
        return got

    def tray_event(self, is_open: bool) -> tuple[str, Any]:
        return ("DEVICE_TRAY_MOVED", {"device": CD, "tray-open": is_open,
                                      "id": self.tray_id})

    def fresh_file(self, kind: str) -> str:
        self.files += 1
        path = self.dir / f"img{self.files}.{kind}"
        if kind == "qcow2":
            assert self.templates is not None
            shutil.copyfile(self.templates / "empty.qcow2", path)
        else:
            with path.open("wb") as f:
                f.truncate(1 << 20)
        return str(path)

    @initialize()
    def learn_the_drives_qom_path(self) -> None:
        """The CD's tray events name its device by QOM path (it has no id=)."""
        reply, _ = self.run("query-block")
        (cd,) = [b for b in reply["return"] if b["device"] == CD]
        assert cd["tray_open"] is False and "inserted" not in cd
        self.tray_id = cd["qdev"]

    # -- run state (runstate.md §3) ------------------------------------------------------------

    @rule()
    def stop(self) -> None:
        """§3.1: STOP then the reply when running; else a silent no-op."""
        if self.state == "running":
            self.expect("stop", None, OK, [("STOP", None)])
            self.state = "paused"
        else:
            self.expect("stop", None, OK)

    @rule()
    def cont(self) -> None:
        """§3.2: refused in `shutdown`; RESUME then the reply when not running."""
        if self.state == "shutdown":
            self.expect("cont", None, error("Resetting the Virtual Machine is required"))
        elif self.state != "running":
            self.expect("cont", None, OK, [("RESUME", None)])
            self.state = "running"
        else:
            self.expect("cont", None, OK)

    @rule()
    def system_reset(self) -> None:
        """§3.3: the reply, then RESET {"guest": false}; a stopped VM is `prelaunch`.
        The guest reboots: a power-off it was about to do is forgotten. The CD's tray
        closes without an event (hw/ide/core.c ide_reset clears tray_open)."""
        self.expect("system_reset", None, OK, [("RESET", {"guest": False})])
        if self.state != "running":
            self.state = "prelaunch"
        self.powerdown_pending = False
        self.tray_open = False

    @rule()
    def system_powerdown(self) -> None:
        """§3.4: the reply, then POWERDOWN, in any state; the simulated guest will
        power off (once it runs)."""
        self.expect("system_powerdown", None, OK, [("POWERDOWN", None)])
        self.powerdown_pending = True

    @rule()
    def system_wakeup(self) -> None:
        """§3.5: a silent no-op unless suspended (this machine never suspends)."""
        self.expect("system_wakeup", None, OK)

    @rule(seconds=st.sampled_from([0.1, 0.3, 0.6, 2.0]))
    def time_passes(self, seconds: float) -> None:
        """§4.1 with -no-shutdown: a guest power-off is SHUTDOWN {"guest": true}, then a
        VM stop to `shutdown`. Only a running guest with a power-off pending does it."""
        self.vm.tick(seconds)
        events = self.new_events()
        if events:
            assert events == [("SHUTDOWN", {"guest": True}), ("STOP", None)], events
            assert self.powerdown_pending and self.state == "running"
            self.state = "shutdown"
            self.powerdown_pending = False
        assert not self.vm.exited

    @rule()
    def query_status(self) -> None:
        """runstate.md §1: status, singlestep, running (true only for `running`)."""
        self.expect("query-status", None, {"return": {
            "status": self.state, "singlestep": False, "running": self.state == "running"}})

    @rule(case=st.sampled_from([
        ("stop", {"x": 1}, "Parameter 'x' is unexpected"),
        ("system_reset", {"force": True}, "Parameter 'force' is unexpected"),
        ("block-dirty-bitmap-add", {"node": "a"}, "Parameter 'name' is missing"),
        ("blockdev-del", {"node-name": 1},
         "Invalid parameter type for 'node-name', expected: string"),
        ("blockdev-open-tray", {"device": CD, "force": "yes"},
         "Invalid parameter type for 'force', expected: boolean"),
    ]))
    def arguments_the_schema_refuses(self, case: tuple[str, dict[str, Any], str]) -> None:
        """qmp-protocol.md §5 step 6, qapi-introspection.md §6: the visitor answers
        before any handler runs, and nothing changes."""
        command, arguments, desc = case
        self.expect(command, arguments, error(desc))

    # -- block nodes (block.md §3.1, §3.2) ---------------------------------------------------

    @rule(target=nodes, name=NODE_NAMES, kind=KINDS)
    def blockdev_add(self, name: str, kind: str) -> Any:
        """bdrv_assign_node_name: a drive's name or an existing node's is refused."""
        arguments: dict[str, Any] = {"driver": kind, "node-name": name}
        if kind != "null-co":
            arguments["file"] = {"driver": "file", "filename": self.fresh_file(kind)}
        if name == CD:
            self.expect("blockdev-add", arguments,
                        error(f"node-name={name} is conflicting with a device id"))
            return multiple()  # a drive's name stays out of the node rules
        if name in self.kinds:
            self.expect("blockdev-add", arguments, error("Duplicate node name"))
        else:
            self.expect("blockdev-add", arguments, OK)
            self.kinds[name] = kind
            self.bitmap_names[name] = set()
            self.snapshot_names[name] = set()
        return name

    @rule(name=consumes(nodes))
    def blockdev_del(self, name: str) -> None:
        """§3.2: unknown, then in use by a BlockBackend (the CD), then deleted."""
        if name not in self.kinds:
            self.expect("blockdev-del", {"node-name": name}, error(f"Cannot find node {name}"))
        elif self.medium == name:
            self.expect("blockdev-del", {"node-name": name}, error(f"Node {name} is in use"))
        else:
            self.expect("blockdev-del", {"node-name": name}, OK)
            del self.kinds[name], self.bitmap_names[name], self.snapshot_names[name]

    # -- the CD's tray and medium (block.md §6) ---------------------------------------------

    @rule()
    def open_tray(self) -> None:
        """blockdev-open-tray: DEVICE_TRAY_MOVED only when the tray moves."""
        events = [] if self.tray_open else [self.tray_event(True)]
        self.expect("blockdev-open-tray", {"device": CD}, OK, events)
        self.tray_open = True

    @rule()
    def close_tray(self) -> None:
        events = [self.tray_event(False)] if self.tray_open else []
        self.expect("blockdev-close-tray", {"device": CD}, OK, events)
        self.tray_open = False

    @rule(name=nodes)
    def insert_medium(self, name: str) -> None:
        """qmp_x_blockdev_insert_medium, then qmp_blockdev_insert_anon_medium's checks."""
        arguments = {"device": CD, "node-name": name}
        if name not in self.kinds:
            self.expect("x-blockdev-insert-medium", arguments, error(f"Node '{name}' not found"))
        elif self.medium == name:
            self.expect("x-blockdev-insert-medium", arguments,
                        error(f"Node '{name}' is already in use"))
        elif not self.tray_open:
            self.expect("x-blockdev-insert-medium", arguments,
                        error("Tray of the device is not open"))
        elif self.medium is not None:
            self.expect("x-blockdev-insert-medium", arguments,
                        error("There already is a medium in the device"))
        else:
            self.expect("x-blockdev-insert-medium", arguments, OK)
            self.medium = name

    @rule()
    def remove_medium(self) -> None:
        if not self.tray_open:
            self.expect("x-blockdev-remove-medium", {"device": CD},
                        error(f"Tray of device '{CD}' is not open"))
        else:
            self.expect("x-blockdev-remove-medium", {"device": CD}, OK)
            self.medium = None

    @rule()
    def eject(self) -> None:
        """Open the tray (nothing locks it here), then remove the medium; an open,
        empty drive: success, no event."""
        events = [] if self.tray_open else [self.tray_event(True)]
        self.expect("eject", {"device": CD}, OK, events)
        self.tray_open, self.medium = True, None

    @rule()
    def change_medium(self) -> None:
        """blockdev-change-medium: the tray opens (if closed) and closes around the
        swap, both events before the reply; the new medium is an anonymous node."""
        events = ([] if self.tray_open else [self.tray_event(True)]) + [self.tray_event(False)]
        self.expect("blockdev-change-medium",
                    {"device": CD, "filename": self.fresh_file("raw"), "format": "raw"},
                    OK, events)
        self.tray_open, self.medium = False, ""

    @rule(bps=st.sampled_from([0, 4096]))
    def throttle(self, bps: int) -> None:
        """§3.5: no medium, no throttling; limits show in query-block, the group is
        named after the device, all-zero removes it."""
        arguments = {"device": CD, "bps": bps, "bps_rd": 0, "bps_wr": 0, "iops": 0,
                     "iops_rd": 0, "iops_wr": 0}
        if self.medium is None:
            self.expect("block_set_io_throttle", arguments, error("Device has no medium"))
            return
        self.expect("block_set_io_throttle", arguments, OK)
        reply, _ = self.run("query-block")
        (cd,) = [b for b in reply["return"] if b["device"] == CD]
        assert cd["inserted"]["bps"] == bps
        assert cd["inserted"].get("group") == (CD if bps else None)

    # -- dirty bitmaps (block.md §3.7) ---------------------------------------------------------

    @rule(target=bitmaps, node=nodes, name=BITMAP_NAMES)
    def bitmap_add(self, node: str, name: str) -> tuple[str, str]:
        arguments = {"node": node, "name": name}
        if node not in self.kinds:
            self.expect("block-dirty-bitmap-add", arguments, lookup_error(node))
        elif name in self.bitmap_names[node]:
            self.expect("block-dirty-bitmap-add", arguments,
                        error(f"Bitmap already exists: {name}"))
        else:
            self.expect("block-dirty-bitmap-add", arguments, OK)
            self.bitmap_names[node].add(name)
        return node, name

    @rule(node=nodes, granularity=st.sampled_from([256, 1000]))
    def bitmap_add_bad_granularity(self, node: str, granularity: int) -> None:
        arguments = {"node": node, "name": "g", "granularity": granularity}
        if node not in self.kinds:
            self.expect("block-dirty-bitmap-add", arguments, lookup_error(node))
        else:
            self.expect("block-dirty-bitmap-add", arguments,
                        error("Granularity must be power of 2 and at least 512"))

    def bitmap_lookup_error(self, node: str, name: str) -> dict[str, Any] | None:
        """block_dirty_bitmap_lookup: its own texts, not bdrv_lookup_bs's."""
        if node not in self.kinds:
            return error(f"Node '{node}' not found")
        if name not in self.bitmap_names[node]:
            return error(f"Dirty bitmap '{name}' not found")
        return None

    @rule(bitmap=bitmaps)
    def bitmap_clear(self, bitmap: tuple[str, str]) -> None:
        node, name = bitmap
        failure = self.bitmap_lookup_error(node, name)
        self.expect("block-dirty-bitmap-clear", {"node": node, "name": name}, failure or OK)

    @rule(bitmap=consumes(bitmaps))
    def bitmap_remove(self, bitmap: tuple[str, str]) -> None:
        node, name = bitmap
        failure = self.bitmap_lookup_error(node, name)
        self.expect("block-dirty-bitmap-remove", {"node": node, "name": name}, failure or OK)
        if failure is None:
            self.bitmap_names[node].discard(name)

    # -- internal snapshots (block.md §3.8) ------------------------------------------------

    @rule(target=snapshots, node=nodes, name=SNAPSHOT_NAMES)
    def snapshot_create(self, node: str, name: str) -> Any:
        """internal_snapshot_prepare: lookup, then the format, then the name. (Pairs on
        a format without snapshots are not carried on: deleting one is
        test_snapshot_delete_on_a_format_without_snapshots.)"""
        arguments = {"device": node, "name": name}
        kind = self.kinds.get(node)
        if kind is None:
            self.expect("blockdev-snapshot-internal-sync", arguments, lookup_error(node))
        elif kind != "qcow2":
            self.expect("blockdev-snapshot-internal-sync", arguments, error(
                f"Block format '{kind}' used by device '{node}' does not support "
                "internal snapshots"))
            return multiple()
        if name in self.snapshot_names[node]:
            self.expect("blockdev-snapshot-internal-sync", arguments, error(
                f"Snapshot with name '{name}' already exists on device '{node}'"))
        else:
            self.expect("blockdev-snapshot-internal-sync", arguments, OK)
            self.snapshot_names[node].add(name)
        return node, name

    @rule(snapshot=consumes(snapshots))
    def snapshot_delete(self, snapshot: tuple[str, str]) -> None:
        """qmp_blockdev_snapshot_delete_internal_sync: a missing one names id 'null';
        success returns the snapshot."""
        node, name = snapshot
        arguments = {"device": node, "name": name}
        kind = self.kinds.get(node)
        if kind is None:
            self.expect("blockdev-snapshot-delete-internal-sync", arguments,
                        lookup_error(node))
        elif kind != "qcow2":
            # the node was deleted and re-added in another format (block/snapshot.c
            # bdrv_snapshot_list: -ENOTSUP before any lookup of the name)
            self.expect("blockdev-snapshot-delete-internal-sync", arguments, error(
                "Failed to get a snapshot list: Operation not supported"))
        elif name not in self.snapshot_names[node]:
            self.expect("blockdev-snapshot-delete-internal-sync", arguments, error(
                f"Snapshot with id 'null' and name '{name}' does not exist on device "
                f"'{node}'"))
        else:
            reply, events = self.run("blockdev-snapshot-delete-internal-sync", arguments)
            assert events == []
            assert reply["return"]["name"] == name and reply["return"]["vm-state-size"] == 0
            self.snapshot_names[node].discard(name)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def run_state_agrees_with_the_last_stop_or_resume(self) -> None:
        """runstate.md §2: STOP only when leaving `running`, RESUME only when entering
        it; the VM started running without a RESUME anyone saw (§2.2)."""
        last = "RESUME"
        for ev in self.vm.events:
            if ev.name in ("STOP", "RESUME"):
                last = ev.name
        assert self.vm.machine.runstate.running == (last == "RESUME")
        assert self.vm.machine.runstate.state == self.state

    @invariant()
    def every_reply_and_event_conformed_to_the_schema(self) -> None:
        assert self.vm.mismatches() == []

    @invariant()
    def graph_is_acyclic_and_backends_point_at_live_nodes(self) -> None:
        layer = self.vm.block
        live = {id(bs) for bs in layer.nodes}

        def visit(bs: Any, path: tuple[int, ...]) -> None:
            assert id(bs) not in path, "cycle in the block graph"
            for child in bs.children:
                assert child.bs is not None and id(child.bs) in live
                visit(child.bs, (*path, id(bs)))

        for bs in layer.nodes:
            visit(bs, ())
        for blk in layer.backends:
            assert blk.bs is None or id(blk.bs) in live, f"{blk.name} points at a lost node"

    @invariant()
    def the_models_nodes_exist(self) -> None:
        names = {bs.node_name for bs in self.vm.block.nodes}
        assert set(self.kinds) <= names
        cd = self.vm.block.blk_by_name(CD)
        assert (cd.bs is None) == (self.medium is None)
        if self.medium:
            assert cd.bs.node_name == self.medium


@pytest.fixture(autouse=True, scope="module")
def image_templates(tmp_path_factory: pytest.TempPathFactory) -> None:
    """An empty qcow2 image made once with qemu-img; each node copies it."""
    import subprocess

    directory = tmp_path_factory.mktemp("templates")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(directory / "empty.qcow2"),
                    "1M"], check=True, capture_output=True)
    MachineStateMachine.templates = directory


def test_snapshot_delete_on_a_format_without_snapshots() -> None:
    """block/snapshot.c bdrv_snapshot_list: a driver without snapshot_list and without
    a file child answers -ENOTSUP, which bdrv_snapshot_find_by_id_and_name reports as
    "Failed to get a snapshot list: Operation not supported" before any lookup of the
    name (blockdev.c qmp_blockdev_snapshot_delete_internal_sync)."""
    vm = emulator.SyncVm(ARGV)
    try:
        assert vm.execute({"execute": "blockdev-add",
                           "arguments": {"driver": "null-co", "node-name": "a"}}) == OK
        assert vm.execute({"execute": "blockdev-snapshot-delete-internal-sync",
                           "arguments": {"device": "a", "name": "s1"}}) == error(
            "Failed to get a snapshot list: Operation not supported")
    finally:
        vm.close()


TestMachine = needs_qemu_img(MachineStateMachine.TestCase)
TestMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow])
