"""Background jobs: queued, run by a server process, done or failed, all in the store."""

from __future__ import annotations

import math
from typing import Any

from twinkit.core.errors import NotFoundError, QuotaExceededError
from twinkit.store import jobs
from twinkit.store.db import Store
from twinkit.store.jobs import Job, JobStatus

__all__ = ["Job", "JobStatus", "Jobs"]
from twinkit.store.timeutil import utc_now_iso


def retry_after_s(run_seconds: list[float]) -> int:
    """When asking again may succeed: about when one of the owner's jobs ends, the median
    run of its recent jobs (at least 1 s, at most 30 s; 5 s without any history).

    >>> retry_after_s([]), retry_after_s([3.2, 4.0, 60.0]), retry_after_s([0.1])
    (5, 4, 1)
    """
    if not run_seconds:
        return 5
    median = sorted(run_seconds)[len(run_seconds) // 2]
    return max(1, min(30, math.ceil(median)))


class Jobs:
    """The job records; running them is the caller's business (the service's job runner).

    ``runner`` names the server process that runs a job (``host:pid:instance``), so that a
    server starting up can tell the jobs of a server that died from those of one still running.

    >>> book = Jobs(Store("sqlite://"))
    >>> job = book.create("p1", "clinic-a", "fit", {"model": "linear_ar"})
    >>> book.claim("h:1", ["fit"]).id == job.id
    True
    >>> book.finish(job.id, {"version": 1})
    >>> book.get(job.id).status.value
    'done'
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        twin_id: str,
        owner: str,
        kind: str,
        params: dict[str, Any],
        runner: str | None = None,
        twin_uid: str | None = None,
        max_unfinished: int | None = None,
    ) -> Job:
        """Record a queued job for the twin whose uid is ``twin_uid`` (see
        :attr:`twinkit.core.twin.Twin.uid`). Without ``runner`` the job waits in the shared
        queue for the first runner to :meth:`claim` it; with one, it is that runner's.

        With ``max_unfinished``, an owner who has that many jobs queued or running already
        gets :class:`QuotaExceededError` instead (the count and the insert are one
        transaction, so concurrent requests cannot overrun it).
        """
        with self.store.write() as conn:
            if max_unfinished is not None:
                unfinished = jobs.count_unfinished(conn, owner)
                if unfinished >= max_unfinished:
                    refused = QuotaExceededError(
                        f"owner {owner!r} has {unfinished} job(s) queued or running, the most "
                        f"allowed ({max_unfinished}): ask again when one has ended"
                    )
                    refused.retry_after_s = retry_after_s(jobs.recent_run_seconds(conn, owner))
                    raise refused
            job_id = jobs.insert_job(
                conn, twin_id, owner, kind, params, runner, utc_now_iso(), twin_uid
            )
        return self.get(job_id)

    def get(self, job_id: int) -> Job:
        with self.store.read() as conn:
            job = jobs.get_job(conn, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    def of_twin(self, twin_id: str, twin_uid: str | None = None) -> list[Job]:
        """The jobs of the twin ``twin_id``; with ``twin_uid``, not those of an earlier,
        deleted twin of the same id."""
        with self.store.read() as conn:
            return jobs.jobs_of_twin(conn, twin_id, twin_uid)

    def latest(
        self,
        twin_id: str,
        kind: str,
        status: JobStatus | None = None,
        twin_uid: str | None = None,
    ) -> Job | None:
        """The twin's newest job of ``kind`` (and ``status``, if given), or None."""
        found = [
            j
            for j in self.of_twin(twin_id, twin_uid)
            if j.kind == kind and (status is None or j.status is status)
        ]
        return found[-1] if found else None

    def unfinished(self) -> list[Job]:
        with self.store.read() as conn:
            return jobs.unfinished_jobs(conn)

    def claim(self, runner: str, kinds: list[str]) -> Job | None:
        """Start the next job of the shared queue (one of ``kinds``) for ``runner``, owners
        in turn over every runner of the store (see :func:`twinkit.store.jobs.claim_next`);
        None if none is waiting. Two runners never claim the same job."""
        with self.store.statement() as conn:
            if not jobs.has_unclaimed(conn, kinds):
                return None  # the common case of an idle runner: no write lock taken
        with self.store.write() as conn:
            return jobs.claim_next(conn, runner, utc_now_iso(), kinds)

    def start(self, job_id: int) -> bool:
        """Mark a queued job running; False if it is not queued any more (or is gone)."""
        with self.store.write() as conn:
            return jobs.mark_running(conn, job_id, utc_now_iso())

    def finish(self, job_id: int, result: dict[str, Any]) -> None:
        """Record a job's result; nothing happens to a job that ended already or is gone."""
        with self.store.write() as conn:
            jobs.mark_finished(conn, job_id, JobStatus.DONE, utc_now_iso(), result=result)

    def fail(self, job_id: int, error: str) -> None:
        """Record why a job failed; nothing happens to a job that ended already or is gone."""
        with self.store.write() as conn:
            jobs.mark_finished(conn, job_id, JobStatus.FAILED, utc_now_iso(), error=error)

    def cancel(self, job_id: int, reason: str) -> None:
        """Record that a job was cancelled (its twin is gone); an ended job keeps its end."""
        with self.store.write() as conn:
            jobs.mark_finished(conn, job_id, JobStatus.CANCELLED, utc_now_iso(), error=reason)
