"""The common block job model (blockjob.c, blockdev.c qmp_block_job_*) with a job
kind of the test's own, so the scheduler, pause/resume/cancel, the error policy and
the events are pinned apart from any real kind. Texts from block.md §4.1-§4.3."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import attrs
import pytest

from blockdev.graph import PERM_ALL
from blockdev.jobs.core import BlockJob, Co, Jobs, RateLimit, error_action
from tests.emulator import SyncVm
from tests.syncvm_helpers import error, events, new_vm, ok, vms

__all__ = ["vms"]

CHUNK = 1 << 20


@attrs.define(kw_only=True, eq=False)
class CountJob(BlockJob):
    """Counts `total` bytes in CHUNK steps; a step fails with `fail` once."""

    job_type = "stream"
    total: int = 8 * CHUNK
    fail: int = 0
    on_error: str = "report"

    def run(self) -> Co:
        self.len = self.total
        delay = 0
        error = 0
        while self.offset < self.len:
            yield from self.sleep_ns(delay)
            if self.cancelled:
                break
            yield from self.io(self.io_delay_ns(CHUNK))
            if self.fail:
                err, self.fail = self.fail, 0
                action = self.error_action(self.on_error, True, err)
                if action == "stop":
                    continue
                if action == "report":
                    error = -err
                    break
            self.offset += CHUNK
            delay = self.rate_delay_ns(CHUNK)
        ret = error
        self.defer_to_main_loop(lambda: self.registry.completed(self, ret))


def jobs_of(vm: SyncVm) -> Jobs:
    return vm.vm.jobs  # type: ignore[no-any-return]


def start(vm: SyncVm, job_id: str | None = None, speed: int = 0, **kw: object) -> CountJob:
    jobs = jobs_of(vm)
    job = CountJob(registry=jobs, **kw)  # type: ignore[arg-type]
    bs = vm.block.lookup_bs("drive0", None)
    jobs.create(job, job_id, bs, 0, PERM_ALL, speed)
    jobs.start(job)
    return job


@pytest.fixture
def vm(vms: list[SyncVm]) -> Iterator[SyncVm]:
    yield new_vm(vms, "-S", "-nodefaults", "-display", "none",
                 "-drive", "if=none,id=drive0,driver=null-co,size=64M",
                 "--emu-behaviour=block-job-bandwidth=10485760")


def test_ratelimit_slices() -> None:
    """include/qemu/ratelimit.h: the quota of a 100 ms slice, then the delay to the
    slice that may carry what was dispatched."""
    limit = RateLimit()
    limit.set_speed(10 * CHUNK)
    assert limit.slice_quota == CHUNK
    assert limit.calculate_delay(CHUNK // 2, 0) == 0
    assert limit.calculate_delay(CHUNK // 2, 0) == 100_000_000
    assert limit.calculate_delay(CHUNK, 50_000_000) == 150_000_000


def test_error_action_table() -> None:
    """blockjob.c block_job_error_action (block.md §4.3)."""
    assert error_action("enospc", errno.ENOSPC) == "stop"
    assert error_action("enospc", errno.EIO) == "report"
    assert error_action("stop", errno.EIO) == "stop"
    assert error_action("ignore", errno.EIO) == "ignore"
    assert error_action("report", errno.ENOSPC) == "report"


def test_progress_on_the_machine_clock(vm: SyncVm) -> None:
    """The job moves CHUNK per 0.1 s at 10 MiB/s; query-block-jobs shows it; the last
    event comes with the job gone from the list."""
    start(vm)
    vm.tick(0)  # the first sleep (0 ns) ends; the first chunk is in flight
    [info] = ok(vm, "query-block-jobs")
    assert info == {"type": "stream", "device": "drive0", "len": 8 * CHUNK, "offset": 0,
                    "busy": True, "paused": False, "speed": 0, "io-status": "ok",
                    "ready": False}
    vm.tick(0.35)
    assert ok(vm, "query-block-jobs")[0]["offset"] == 3 * CHUNK
    vm.tick(1)
    assert ok(vm, "query-block-jobs") == []
    assert events(vm) == [("BLOCK_JOB_COMPLETED", {"type": "stream", "device": "drive0",
                                                   "len": 8 * CHUNK, "offset": 8 * CHUNK,
                                                   "speed": 0})]


def test_job_id_rules(vm: SyncVm) -> None:
    """block_job_create: bad and duplicate IDs (block.md §4.1)."""
    jobs = jobs_of(vm)
    bs = vm.block.lookup_bs("drive0", None)
    from schema.errors import GenericError

    with pytest.raises(GenericError, match="Invalid job ID '1bad'"):
        jobs.create(CountJob(registry=jobs), "1bad", bs, 0, PERM_ALL, 0)
    start(vm, "j0")
    with pytest.raises(GenericError, match="Device 'drive0' is in use"):
        jobs.create(CountJob(registry=jobs), "j1", bs, 0, PERM_ALL, 0)
    assert error(vm, "block-job-set-speed", {"device": "j0", "speed": -1}) == (
        "GenericError", "Invalid parameter 'speed'")
    assert error(vm, "block-job-pause", {"device": "drive0"}) == (
        "DeviceNotActive", "Block job 'drive0' not found")


def test_pause_resume_cancel(vm: SyncVm) -> None:
    """qmp_block_job_pause/resume/cancel: paused at once, a paused job needs force,
    pausing twice and resuming a running job succeed silently."""
    start(vm, speed=CHUNK * 10)
    vm.tick(0.15)
    ok(vm, "block-job-pause", {"device": "drive0"})
    ok(vm, "block-job-pause", {"device": "drive0"})
    info = ok(vm, "query-block-jobs")[0]
    assert info["paused"] is True
    vm.tick(1)
    assert ok(vm, "query-block-jobs")[0]["busy"] is False
    offset = ok(vm, "query-block-jobs")[0]["offset"]
    vm.tick(1)
    assert ok(vm, "query-block-jobs")[0]["offset"] == offset
    assert error(vm, "block-job-cancel", {"device": "drive0"}) == (
        "GenericError", "The block job for device 'drive0' is currently paused")
    assert error(vm, "block-job-complete", {"device": "drive0"}) == (
        "GenericError", "The active block job 'drive0' cannot be completed")
    ok(vm, "block-job-resume", {"device": "drive0"})
    ok(vm, "block-job-resume", {"device": "drive0"})
    ok(vm, "block-job-cancel", {"device": "drive0"})
    assert events(vm) == []  # the chunk in flight ends first, then the bottom half
    vm.tick(0.2)
    [(name, data)] = events(vm)
    assert name == "BLOCK_JOB_CANCELLED" and data["offset"] < 8 * CHUNK
    assert error(vm, "block-job-cancel", {"device": "drive0"}) == (
        "DeviceNotActive", "Block job 'drive0' not found")


def test_error_stop_then_resume(vm: SyncVm) -> None:
    """A `stop` error pauses the job as a user pause with io-status failed; resume
    resets it and the failed piece is retried (block.md §4.3)."""
    start(vm, "job0", fail=errno.EIO, on_error="stop")
    vm.tick(0.05)
    vm.tick(0.1)
    assert events(vm) == [("BLOCK_JOB_ERROR", {"device": "job0", "operation": "read",
                                               "action": "stop"})]
    info = ok(vm, "query-block-jobs")[0]
    assert (info["paused"], info["io-status"], info["offset"]) == (True, "failed", 0)
    ok(vm, "block-job-resume", {"device": "job0"})
    assert ok(vm, "query-block-jobs")[0]["io-status"] == "ok"
    vm.tick(2)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_COMPLETED"]


def test_error_report_completes_with_error(vm: SyncVm) -> None:
    start(vm, fail=errno.ENOSPC)
    vm.tick(1)
    assert events(vm) == [
        ("BLOCK_JOB_ERROR", {"device": "drive0", "operation": "read", "action": "report"}),
        ("BLOCK_JOB_COMPLETED", {"type": "stream", "device": "drive0", "len": 8 * CHUNK,
                                 "offset": 0, "speed": 0,
                                 "error": "No space left on device"})]


def test_blockers_while_the_job_runs(vm: SyncVm) -> None:
    """Every node a job uses is blocked: 'Node ... is busy'; the root is no longer a
    root node (block.md §4.1)."""
    start(vm)
    bs = vm.block.lookup_bs("drive0", None)
    assert bs.op_blocked("resize") == (
        "Node 'drive0' is busy: block device is in use by block job: stream")
    assert not bs.is_root_node()
    vm.tick(2)
    assert bs.op_blocked("resize") is None and bs.is_root_node()


def test_set_speed_does_not_wake_a_sleeping_job(vm: SyncVm) -> None:
    """block_job_set_speed only sets the limit: a job sleeping out its delay keeps
    its timer (block.md quirk)."""
    start(vm, speed=CHUNK)  # one chunk per 1 s
    vm.tick(0.15)
    assert ok(vm, "query-block-jobs")[0]["offset"] == CHUNK
    ok(vm, "block-job-set-speed", {"device": "drive0", "speed": 100 * CHUNK})
    vm.tick(0.5)
    assert ok(vm, "query-block-jobs")[0]["offset"] == CHUNK
    vm.tick(0.7)  # the delay of the first chunk ends at 1.2 s (11 slices)
    assert ok(vm, "query-block-jobs")[0]["offset"] > CHUNK
    assert ok(vm, "query-block-jobs")[0]["speed"] == 100 * CHUNK


def test_close_cancels_jobs(vm: SyncVm) -> None:
    """bdrv_close_all cancels every job and waits for it first."""
    start(vm, speed=CHUNK)
    jobs_of(vm).close()
    assert jobs_of(vm).jobs == []
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_CANCELLED"]


def test_hmp_block_job_commands(vm: SyncVm) -> None:
    """hmp.c hmp_block_job_pause/_resume/_cancel (-f)/_set_speed and
    hmp_info_block_jobs: the QMP commands' errors as hmp_handle_error prints them, and
    2.11's progress line (a job of type stream says "Streaming device")."""
    from tests.syncvm_helpers import hmp

    start(vm, speed=CHUNK * 10)
    vm.tick(0.15)
    assert hmp(vm, "info block-jobs") == (
        f"Streaming device drive0: Completed {CHUNK} of {8 * CHUNK} bytes, "
        f"speed limit {10 * CHUNK} bytes/s\r\n")
    assert hmp(vm, "block_job_pause drive0") == ""
    assert ok(vm, "query-block-jobs")[0]["paused"] is True
    assert hmp(vm, "block_job_cancel drive0") == (
        "The block job for device 'drive0' is currently paused\r\n")
    assert hmp(vm, "block_job_resume drive0") == ""
    assert ok(vm, "query-block-jobs")[0]["paused"] is False
    assert hmp(vm, "block_job_set_speed drive0 1M") == ""
    assert ok(vm, "query-block-jobs")[0]["speed"] == CHUNK
    assert hmp(vm, "block_job_pause drive0") == ""
    assert hmp(vm, "block_job_cancel -f drive0") == ""
    vm.tick(1)
    assert [e[0] for e in events(vm)] == ["BLOCK_JOB_CANCELLED"]
    assert hmp(vm, "block_job_resume drive0") == "Block job 'drive0' not found\r\n"
