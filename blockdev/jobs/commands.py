"""The commands every block job answers: `query-block-jobs` and `block-job-*`.

Handlers of the `blockdev` layer (blockdev.c qmp_query_block_jobs, find_block_job,
qmp_block_job_*), over the registry of `blockdev.jobs.core`; the commands that start
a job live with its kind. The texts are QEMU 2.11's (block.md §4.1).
"""

from __future__ import annotations

from typing import Any

from blockdev.jobs.core import Jobs
from schema.errors import GenericError
from schema.handlers import qmp_command


class BlockJobCommands:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    @qmp_command("query-block-jobs")
    def query_block_jobs(self) -> list[dict[str, Any]]:
        """qmp_query_block_jobs: every job but the internal ones, newest first."""
        return self.jobs.query()

    @qmp_command("block-job-set-speed")
    def block_job_set_speed(self, device: str, speed: int) -> None:
        """qmp_block_job_set_speed: the limit changes; a sleeping job is not woken."""
        self.jobs.set_speed(self.jobs.find(device), speed)

    @qmp_command("block-job-cancel")
    def block_job_cancel(self, device: str, force: bool | None = None) -> None:
        """qmp_block_job_cancel: a user-paused job needs `force`."""
        job = self.jobs.find(device)
        if job.user_paused and not force:
            raise GenericError(f"The block job for device '{device}' is currently paused")
        self.jobs.cancel(job)

    @qmp_command("block-job-pause")
    def block_job_pause(self, device: str) -> None:
        """qmp_block_job_pause: pausing a paused job succeeds silently."""
        job = self.jobs.find(device)
        if job.user_paused:
            return
        self.jobs.user_pause(job)

    @qmp_command("block-job-resume")
    def block_job_resume(self, device: str) -> None:
        """qmp_block_job_resume: resuming a running job succeeds silently."""
        job = self.jobs.find(device)
        if not job.user_paused:
            return
        self.jobs.user_resume(job)

    @qmp_command("block-job-complete")
    def block_job_complete(self, device: str) -> None:
        """qmp_block_job_complete."""
        self.jobs.complete(self.jobs.find(device))
