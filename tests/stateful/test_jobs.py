"""A Hypothesis state machine over block jobs on a whole emulator (issue 9).

The machine is a strict `SyncVm` (every reply and event is checked against the
schema) whose clock only moves when a rule ticks it. Rules add "slots" (a qcow2 `top`
over a qcow2 `base`, and a qcow2 target `tgt`, with their errors: blkdebug under the
base with an inject-error rule, once or always, EIO or ENOSPC, on reads or writes;
or a target that fills up), start jobs on them, and pause, resume, set the speed
of, cancel (with and without force), complete, and tick, in any order, and delete
nodes under them.

The kinds: every QMP job command of 2.11 that this tree implements (`block-stream`,
`block-commit` (active), `blockdev-backup`, `blockdev-mirror`; a command that still
answers "not implemented yet" is left out, so the machine works with whatever is
merged), and `count`, a kind of the test's own started through the job model
(`blockdev.jobs.core`), which fails a request with a chosen errno on demand, so the
error policies (`report`, `ignore`, `stop`, `enospc`) get traffic whatever is merged.

The model is QEMU 2.11's blockjob.c and blockdev.c qmp_block_job_* (block.md §4.1 to
§4.3): the pause count (block_job_user_pause/user_resume, a `stop` error pausing as
the user does), `user_paused` and the "currently paused" refusal of a cancel
without force, block_job_complete's refusal ("cannot be completed") of a paused,
cancelled, not ready job or of a kind without `complete`, block_job_cancel_async's
reset of the io-status, block_job_error_action's table (error_action), and the
quirk of a mirror cancelled in sync (mirror.c mirror_run clears `cancelled`: it may
still be completed, and ends COMPLETED). Rules assert the exact replies: a start on
a slot as it was added succeeds (or its job ID is in use); beside running jobs, a
start or a blockdev-del fails with one of 2.11's in-use errors (the op blockers,
"Node ... is busy: block device is in use by block job: KIND", or of the implicit
filter's backing; qmp_get_root_bs's "Need a root block node"; qmp_blockdev_del's
checks) or succeeds, and the invariants judge what follows.

Invariants after every step: each job ends in exactly one terminal event (never
one for a job that is not running, CANCELLED only after a cancel), READY at most once
and only for a kind that completes; no job outlives its nodes (every node a job holds
is still in the graph); `query-block-jobs` lists exactly the jobs started and not
ended, with the model's speed, pause state, readiness and io-status, and an offset
that never goes back; every reply and event conformed to the schema. At the end,
bdrv_close_all cancels what still runs: one terminal event each.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from blockdev.graph import PERM_ALL
from blockdev.jobs.core import BlockJob, Co, Jobs, error_action
from schema.errors import GenericError
from tests import emulator

SIZE = 1 << 20
CHUNK = 256 * 1024
ARGV = ["-machine", "none", "-nodefaults", "-S", "--emu-strict",
        "--emu-behaviour=block-job-bandwidth=4194304"]
JOB_IDS = ["j0", "j1", "j2"]
# the device of a block-job-* command: mostly a job the model has, else any name
DEVICES = st.sampled_from([*JOB_IDS, "top0"])
SLOTS = 3
SPEEDS = st.sampled_from([0, 1 << 20, 8 << 20])
POLICIES = st.sampled_from(["report", "ignore", "stop", "enospc"])
# A slot's errors: None; (blkdebug event, errno, once) injected in its base; or
# ("full", ENOSPC, False): a target that fills up
ERRORS = st.sampled_from([None, None, ("read_aio", errno.EIO, True),
                          ("read_aio", errno.ENOSPC, True), ("read_aio", errno.EIO, False),
                          ("write_aio", errno.ENOSPC, True), ("full", errno.ENOSPC, False)])
FULL_TARGET = 256 * 1024
TERMINAL = ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img makes the images")


@attrs.define(kw_only=True, eq=False)
class CountJob(BlockJob):
    """The test's own kind: `len` bytes in CHUNK requests at the simulated disk's
    time and the rate limit; request number `fail_at` fails with `fail` (once, or
    every time when `always`)."""

    job_type = "stream"
    fail: int = 0
    fail_at: int = 1
    always: bool = False
    on_error: str = "report"

    def run(self) -> Co:
        self.len = SIZE
        delay = 0
        ret = 0
        n = 0
        while self.offset < self.len:
            yield from self.sleep_ns(delay)
            if self.cancelled:
                break
            yield from self.io(self.io_delay_ns(CHUNK))
            n += 1
            if self.fail and n >= self.fail_at:
                err = self.fail
                if not self.always:
                    self.fail = 0
                action = self.error_action(self.on_error, True, err)
                if action == "stop":
                    continue
                if action == "report":
                    ret = -err
                    break
            self.offset += CHUNK
            delay = self.rate_delay_ns(CHUNK)
        self.defer_to_main_loop(lambda: self.registry.completed(self, ret))


# kind -> (job type, whether it completes)
KINDS: dict[str, tuple[str, bool]] = {
    "count": ("stream", False), "stream": ("stream", False), "commit": ("commit", True),
    "backup": ("backup", False), "mirror": ("mirror", True)}
COMMANDS = {"stream": "block-stream", "commit": "block-commit", "backup": "blockdev-backup",
            "mirror": "blockdev-mirror"}


@functools.cache
def qmp_kinds() -> list[str]:
    """The QMP job kinds this tree has: their command answers something else than
    the "not implemented yet" of a missing handler (asked once, on first use)."""
    vm = emulator.SyncVm(["-machine", "none", "-nodefaults"])
    kinds = []
    try:
        for kind, command in COMMANDS.items():
            args: dict[str, Any] = {"device": "nothing"}
            if kind in ("backup", "mirror"):
                args.update(target="nothing", sync="full")
            reply = vm.execute({"execute": command, "arguments": args}) or {}
            if "not implemented" not in reply.get("error", {}).get("desc", ""):
                kinds.append(kind)
    finally:
        vm.close()
    return kinds


@attrs.define(kw_only=True)
class JobModel:
    id: str
    kind: str
    slot: int
    speed: int
    policy: str
    errno: int  # the errno its injected errors have (0: none)
    pause_count: int = 0
    user_paused: bool = False
    cancelled: bool = False
    ready: bool = False
    stopped: bool = False  # a `stop` error set the io-status
    offset: int = 0

    @property
    def type(self) -> str:
        return KINDS[self.kind][0]

    @property
    def can_complete(self) -> bool:
        return KINDS[self.kind][1]


@attrs.define(kw_only=True)
class SlotModel:
    k: int
    error: tuple[str, int, bool] | None
    top: bool = True    # the top node (and its base) exists
    tgt: bool = True    # the target node exists
    fresh: bool = True  # no job ran on it: its graph is as it was added

    def errno(self, kind: str) -> int:
        """The errno of the errors a job of `kind` meets on this slot: the base's
        injected one, or ENOSPC from a full target for the kinds that write it."""
        if self.error is None:
            return 0
        if self.error[0] == "full":
            return self.error[1] if kind in ("backup", "mirror") else 0
        return self.error[1]


class JobsMachine(RuleBasedStateMachine):
    """The model: the jobs QEMU would run and their state. The emulator: a SyncVm."""

    templates: Path | None = None  # set by the image_templates fixture

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="qmp-jobs-"))
        self.vm = emulator.SyncVm(ARGV)
        self.jobs: dict[str, JobModel] = {}
        self.slots: dict[int, SlotModel] = {}

    def teardown(self) -> None:
        """bdrv_close_all: every job still running is cancelled and ends once."""
        try:
            for job in self.jobs.values():
                job.cancelled = True
            self.registry.close()
            self.check_events()
            assert self.jobs == {}, f"jobs without a terminal event: {sorted(self.jobs)}"
        finally:
            self.vm.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def registry(self) -> Jobs:
        return self.vm.vm.jobs  # type: ignore[no-any-return]

    # -- talking to the machine ---------------------------------------------------------

    def execute(self, name: str, arguments: dict[str, Any] | None = None, *,
                check: bool = True) -> dict[str, Any]:
        """The reply; the events it caused are checked (`check`), or left for the
        caller, who first learns from the reply which job they are about."""
        request: dict[str, Any] = {"execute": name}
        if arguments is not None:
            request["arguments"] = arguments
        reply = self.vm.execute(request)
        assert reply is not None
        if check:
            self.check_events()
        return reply

    def expect_ok(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        reply = self.execute(name, arguments)
        assert "return" in reply, (name, arguments, reply)
        return reply["return"]

    def expect_error(self, name: str, arguments: dict[str, Any], cls: str,
                     desc: str) -> None:
        assert self.execute(name, arguments) == {"error": {"class": cls, "desc": desc}}

    def check_events(self) -> None:
        """Every event since the last look, against the model."""
        sent, self.vm.events[:] = list(self.vm.events), []
        for ev in sent:
            name, data = ev.name, ev.data
            if not name.startswith("BLOCK_JOB_"):
                continue
            job = self.jobs.get(data["device"])
            assert job is not None, f"{name} for a job that is not running: {data}"
            event(f"{name} {data.get('action', '')}".strip())
            if name == "BLOCK_JOB_ERROR":
                assert data["action"] == error_action(job.policy, job.errno), (data, job)
                if data["action"] == "stop":
                    # block_job_error_action: block_job_user_pause, io-status set
                    job.user_paused = True
                    job.pause_count += 1
                    job.stopped = True
                continue
            assert data["type"] == job.type, (data, job)
            assert data["speed"] == job.speed, (data, job)
            if name == "BLOCK_JOB_READY":
                assert job.can_complete and not job.ready, (data, job)
                job.ready = True
                continue
            assert name in TERMINAL, name
            if name == "BLOCK_JOB_CANCELLED":
                assert job.cancelled, f"cancelled without a cancel: {job}"
                assert "error" not in data
            del self.jobs[job.id]
            self.slots[job.slot].fresh = False

    # -- slots ---------------------------------------------------------------------------

    @initialize(error=ERRORS)
    def first_slot(self, error: tuple[str, int, bool] | None) -> None:
        self.add_slot(error)

    @precondition(lambda self: len(self.slots) < SLOTS)
    @rule(error=ERRORS)
    def add_slot(self, error: tuple[str, int, bool] | None) -> None:
        k = next(i for i in range(SLOTS) if i not in self.slots)
        assert self.templates is not None
        paths = {}
        for name in ("base", "top", "tgt"):
            paths[name] = str(self.dir / f"{name}{k}.qcow2")
            shutil.copyfile(self.templates / f"{name}.qcow2", paths[name])
        base_file: dict[str, Any] = {"driver": "file", "filename": paths["base"]}
        tgt_file: dict[str, Any] = {"driver": "file", "filename": paths["tgt"]}
        if error is not None and error[0] == "full":
            # a target that fills up: its qcow2 file under a raw node whose `size` ends
            # where its metadata does, so writing a data cluster fails with ENOSPC
            os.truncate(paths["tgt"], FULL_TARGET)
            tgt_file = {"driver": "raw", "size": FULL_TARGET, "file": tgt_file}
        elif error is not None:
            event, err, once = error
            base_file = {"driver": "blkdebug", "image": base_file, "inject-error": [
                {"event": event, "errno": err, "once": once}]}
        # The base is a node of its own: blkdebug in an inline backing would also get
        # the overlay's backing file name (block.c bdrv_open_backing_file).
        self.expect_ok("blockdev-add", {"driver": "qcow2", "node-name": f"base{k}",
                                        "file": base_file})
        self.expect_ok("blockdev-add", {
            "driver": "qcow2", "node-name": f"top{k}", "backing": f"base{k}",
            "file": {"driver": "file", "filename": paths["top"]}})
        self.expect_ok("blockdev-add", {"driver": "qcow2", "node-name": f"tgt{k}",
                                        "file": tgt_file})
        self.slots[k] = SlotModel(k=k, error=error)

    def slot_jobs(self, k: int) -> list[JobModel]:
        return [job for job in self.jobs.values() if job.slot == k]

    def in_use(self, k: int, desc: str, job_id: str | None = None) -> bool:
        """Whether `desc` is an error QEMU 2.11 gives for a node of slot `k` while jobs
        run on it: blockdev.c's op blockers ("Node ... is busy", a job's or a filter
        node's: block.c bdrv_set_backing_hd blocks the backing node of the implicit
        `#block...` filter), qmp_get_root_bs (the job's BlockBackend or filter is the
        top's parent now), qmp_blockdev_del's BlockBackend and reference checks,
        block_job_create's job ID and QERR_DEVICE_IN_USE (a node without a device
        name)."""
        texts = {"Need a root block node", "Device '' is in use"}
        # block-stream checks every node of the chain down to the base
        for name in (f"top{k}", f"base{k}", f"tgt{k}"):
            texts |= {f"Node {name} is in use", f"Block device {name} is in use"}
            texts |= {f"Node '{name}' is busy: block device is in use by block job: "
                      f"{job.type}" for job in self.slot_jobs(k)}
            if desc.startswith(f"Node '{name}' is busy: node is used as backing hd of '#"):
                return True
        if job_id is not None and job_id in self.jobs:
            texts.add(f"Job ID '{job_id}' already in use")
        return desc in texts

    @precondition(lambda self: bool(self.slots))
    @rule(data=st.data(), which=st.sampled_from(["top", "tgt"]))
    def blockdev_del(self, data: st.DataObject, which: str) -> None:
        """No job outlives its nodes: a node a job holds cannot be deleted (blockdev.c
        qmp_blockdev_del); the invariant checks the graph after each success."""
        k = data.draw(st.sampled_from(sorted(self.slots)))
        slot = self.slots[k]
        name = f"{which}{k}"
        exists = slot.top if which == "top" else slot.tgt
        reply = self.execute("blockdev-del", {"node-name": name})
        if not exists:
            assert reply == {"error": {"class": "GenericError",
                                       "desc": f"Cannot find node {name}"}}
            return
        if self.slot_jobs(k):
            if "error" in reply:
                assert self.in_use(k, reply["error"]["desc"]), reply
                return
            assert which == "tgt" and all(job.kind not in ("backup", "mirror")
                                          for job in self.slot_jobs(k)), reply
        elif slot.fresh:
            assert reply == {"return": {}}, reply
        if "return" in reply:
            if which == "top":
                # the base has no parent now but the monitor
                self.expect_ok("blockdev-del", {"node-name": f"base{k}"})
                slot.top = False
            else:
                slot.tgt = False
            if not slot.top and not slot.tgt:
                del self.slots[k]

    # -- starting jobs -------------------------------------------------------------------

    def expect_started(self, reply: dict[str, Any], job: JobModel, slot: SlotModel) -> None:
        """The reply to a start: on a slot as it was added, success or a job ID in
        use; beside other jobs, success or one of their in-use errors; the job joins
        the model."""
        if self.slot_jobs(slot.k):
            if "error" in reply:
                assert self.in_use(slot.k, reply["error"]["desc"], job.id), reply
        elif slot.fresh and slot.top and (slot.tgt or job.kind in ("stream", "commit")):
            if job.id in self.jobs:
                assert reply == {"error": {"class": "GenericError",
                                           "desc": f"Job ID '{job.id}' already in use"}}
                return
            assert reply == {"return": {}}, (reply, job)
        if "return" in reply:
            assert job.id not in self.jobs
            self.jobs[job.id] = job
        else:
            assert reply["error"]["class"] in ("GenericError", "DeviceNotFound"), reply

    @precondition(lambda self: bool(self.slots) and bool(qmp_kinds()))
    @rule(data=st.data(), job_id=st.sampled_from(JOB_IDS), speed=SPEEDS, policy=POLICIES,
          sync=st.sampled_from(["full", "top", "none"]))
    def start_qmp(self, data: st.DataObject, job_id: str, speed: int, policy: str,
                  sync: str) -> None:
        kind = data.draw(st.sampled_from(qmp_kinds()))
        k = data.draw(st.sampled_from(sorted(self.slots)))
        slot = self.slots[k]
        args: dict[str, Any] = {"job-id": job_id, "device": f"top{k}"}
        if speed:
            args["speed"] = speed
        if kind == "stream":
            args["on-error"] = policy
        elif kind == "commit":
            policy = "report"  # active commit: BLOCKDEV_ON_ERROR_REPORT
        else:
            args.update({"target": f"tgt{k}", "sync": sync, "on-source-error": policy,
                         "on-target-error": policy})
        job = JobModel(id=job_id, kind=kind, slot=k, speed=speed, policy=policy,
                       errno=slot.errno(kind))
        self.expect_started(self.execute(COMMANDS[kind], args, check=False), job, slot)
        self.check_events()

    @precondition(lambda self: any(s.top for s in self.slots.values()))
    @rule(data=st.data(), job_id=st.sampled_from(JOB_IDS), speed=SPEEDS, policy=POLICIES,
          fail=st.sampled_from([0, errno.EIO, errno.ENOSPC]), always=st.booleans(),
          fail_at=st.integers(1, 4))
    def start_count(self, data: st.DataObject, job_id: str, speed: int, policy: str,
                    fail: int, always: bool, fail_at: int) -> None:
        """block_job_create and block_job_start on the model, as a kind's command
        does them."""
        k = data.draw(st.sampled_from(sorted(k for k, s in self.slots.items() if s.top)))
        registry = self.registry
        job = CountJob(registry=registry, fail=fail, fail_at=fail_at, always=always,
                       on_error=policy)
        model = JobModel(id=job_id, kind="count", slot=k, speed=speed, policy=policy,
                         errno=fail)
        busy = bool(self.slot_jobs(k))
        try:
            registry.create(job, job_id, self.vm.block.lookup_bs(None, f"top{k}"), 0,
                            PERM_ALL, speed)
        except GenericError as err:
            if busy:
                assert self.in_use(k, err.desc, job_id), err.desc
            else:
                assert (job_id in self.jobs and err.desc == f"Job ID '{job_id}' already in use"
                        ), (err.desc, self.slots[k])
            return
        assert job_id not in self.jobs
        registry.start(job)
        self.vm.machine.process_requests()
        self.jobs[job_id] = model
        self.check_events()

    # -- the block-job-* commands ----------------------------------------------------------

    def not_found(self, name: str, device: str, **args: Any) -> None:
        """blockdev.c find_block_job."""
        self.expect_error(name, {"device": device, **args}, "DeviceNotActive",
                          f"Block job '{device}' not found")

    @precondition(lambda self: bool(self.jobs))
    @rule(device=DEVICES)
    def pause(self, device: str) -> None:
        job = self.jobs.get(device)
        if job is None:
            return self.not_found("block-job-pause", device)
        self.expect_ok("block-job-pause", {"device": device})
        if not job.user_paused:
            job.user_paused = True
            job.pause_count += 1

    @precondition(lambda self: bool(self.jobs))
    @rule(device=DEVICES)
    def resume(self, device: str) -> None:
        job = self.jobs.get(device)
        if job is None:
            return self.not_found("block-job-resume", device)
        if job.user_paused and job.pause_count > 0:
            # block_job_user_resume: the io-status reset, one pause less
            job.user_paused = False
            job.pause_count -= 1
            job.stopped = False
        self.expect_ok("block-job-resume", {"device": device})

    @precondition(lambda self: bool(self.jobs))
    @rule(device=DEVICES, speed=st.sampled_from([-1, 0, 256 * 1024, 8 << 20]))
    def set_speed(self, device: str, speed: int) -> None:
        job = self.jobs.get(device)
        if job is None:
            return self.not_found("block-job-set-speed", device, speed=speed)
        if speed < 0:
            return self.expect_error("block-job-set-speed", {"device": device, "speed": speed},
                                     "GenericError", "Invalid parameter 'speed'")
        job.speed = speed
        self.expect_ok("block-job-set-speed", {"device": device, "speed": speed})

    @precondition(lambda self: bool(self.jobs))
    @rule(device=DEVICES, force=st.sampled_from([None, False, True]))
    def cancel(self, device: str, force: bool | None) -> None:
        args: dict[str, Any] = {"device": device}
        if force is not None:
            args["force"] = force
        job = self.jobs.get(device)
        if job is None:
            return self.not_found("block-job-cancel", device)
        if job.user_paused and not force:
            return self.expect_error("block-job-cancel", args, "GenericError",
                                     f"The block job for device '{device}' is currently paused")
        # block_job_cancel_async: io-status reset, the user's pause dropped
        job.stopped = False
        if job.user_paused:
            job.user_paused = False
            job.pause_count -= 1
        job.cancelled = True
        self.expect_ok("block-job-cancel", args)

    @precondition(lambda self: bool(self.jobs))
    @rule(device=DEVICES)
    def complete(self, device: str) -> None:
        job = self.jobs.get(device)
        if job is None:
            return self.not_found("block-job-complete", device)
        refused = {"error": {"class": "GenericError",
                             "desc": f"The active block job '{device}' cannot be completed"}}
        if job.pause_count or not job.can_complete or not job.ready:
            assert self.execute("block-job-complete", {"device": device}) == refused
        elif job.cancelled:
            # block.md quirk: a mirror cancelled in sync ends as if completed and
            # clears its `cancelled` (mirror.c mirror_run), so until its bottom half
            # runs, a complete may be accepted
            assert self.execute("block-job-complete", {"device": device}) in (
                refused, {"return": {}})
        else:
            self.expect_ok("block-job-complete", {"device": device})

    @rule(seconds=st.sampled_from([0, 0.01, 0.1, 0.3, 1, 3]))
    def tick(self, seconds: float) -> None:
        self.vm.tick(seconds)
        self.check_events()

    @precondition(lambda self: bool(self.jobs))
    @rule(seconds=st.sampled_from([0.05, 0.2, 0.5]))
    def tick_while_jobs_run(self, seconds: float) -> None:
        self.tick(seconds)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def schema_conformance(self) -> None:
        assert self.vm.mismatches() == []

    @invariant()
    def query_agrees_with_the_events(self) -> None:
        infos = self.expect_ok("query-block-jobs")
        assert sorted(info["device"] for info in infos) == sorted(self.jobs)
        for info in infos:
            job = self.jobs[info["device"]]
            assert (info["type"], info["speed"], info["paused"], info["ready"]) == (
                job.type, job.speed, job.pause_count > 0, job.ready), (info, job)
            assert (info["io-status"] != "ok") == job.stopped, (info, job)
            assert job.offset <= info["offset"] <= info["len"], (info, job)
            job.offset = info["offset"]

    @invariant()
    def no_job_outlives_its_nodes(self) -> None:
        graph = set(map(id, self.vm.block.nodes))
        for job in self.registry.jobs:
            assert job.blk is not None and job.blk.bs is not None
            assert id(job.blk.bs) in graph, job.id
            for child in job.nodes:
                assert child.bs is not None and id(child.bs) in graph, (job.id, child.name)


@pytest.fixture(autouse=True, scope="module")
def image_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """base (written with a pattern by qemu-io), top (its overlay) and tgt, made once
    with qemu-img; each slot copies them."""
    directory = tmp_path_factory.mktemp("job-templates")
    base, top, tgt = (str(directory / f"{n}.qcow2") for n in ("base", "top", "tgt"))
    for argv in (["qemu-img", "create", "-f", "qcow2", base, str(SIZE)],
                 ["qemu-io", "-c", f"write -P 0x5a 0 {SIZE}", base],
                 ["qemu-img", "create", "-f", "qcow2", "-b", base, "-F", "qcow2", top],
                 ["qemu-img", "create", "-f", "qcow2", tgt, str(SIZE)]):
        subprocess.run(argv, check=True, capture_output=True)
    JobsMachine.templates = directory
    yield


TestJobs = needs_qemu_img(JobsMachine.TestCase)
TestJobs.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow])
