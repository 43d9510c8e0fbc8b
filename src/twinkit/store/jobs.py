"""Background jobs in the store: what was asked, who runs it, and how it ended."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from twinkit.store import tables


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its twin was deleted before the job could write


#: a job that has not ended
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class Job:
    id: int
    twin_id: str
    owner: str
    kind: str
    params: dict[str, Any]
    status: JobStatus
    runner: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None
    twin_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "status": self.status.value}


def _job(row: Any) -> Job:
    return Job(
        id=int(row.id),
        twin_id=row.twin_id,
        owner=row.owner,
        kind=row.kind,
        params=json.loads(row.params),
        status=JobStatus(row.status),
        runner=row.runner,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=None if row.result is None else json.loads(row.result),
        error=row.error,
        twin_uid=row.twin_uid,
    )


def insert_job(
    conn: Connection,
    twin_id: str,
    owner: str,
    kind: str,
    params: dict[str, Any],
    runner: str | None,
    created_at: str,
    twin_uid: str | None = None,
) -> int:
    result = conn.execute(
        tables.jobs.insert().values(
            twin_id=twin_id,
            twin_uid=twin_uid,
            owner=owner,
            kind=kind,
            params=json.dumps(params, sort_keys=True),
            status=JobStatus.QUEUED.value,
            runner=runner,
            created_at=created_at,
        )
    )
    key = result.inserted_primary_key
    assert key is not None  # an autoincrement insert always has one
    return int(key[0])


def get_job(conn: Connection, job_id: int) -> Job | None:
    row = conn.execute(select(tables.jobs).where(tables.jobs.c.id == job_id)).first()
    return None if row is None else _job(row)


def jobs_of_twin(conn: Connection, twin_id: str, twin_uid: str | None = None) -> list[Job]:
    """The jobs of ``twin_id``; with ``twin_uid``, only those asked for that twin (and the
    jobs older stores kept without a uid), not those of an earlier twin of the same id."""
    j = tables.jobs.c
    query = select(tables.jobs).where(j.twin_id == twin_id).order_by(j.id)
    if twin_uid is not None:
        query = query.where(or_(j.twin_uid == twin_uid, j.twin_uid.is_(None)))
    return [_job(r) for r in conn.execute(query)]


def count_unfinished(conn: Connection, owner: str) -> int:
    """How many jobs of ``owner`` are queued or running."""
    j = tables.jobs.c
    return int(
        conn.execute(
            select(func.count()).where(j.owner == owner, j.status.in_(UNFINISHED))
        ).scalar_one()
    )


def recent_run_seconds(conn: Connection, owner: str, last: int = 20) -> list[float]:
    """How long ``owner``'s ``last`` finished jobs ran (start to end), newest first."""
    j = tables.jobs.c
    rows = conn.execute(
        select(j.started_at, j.finished_at)
        .where(j.owner == owner, j.started_at.is_not(None), j.finished_at.is_not(None))
        .order_by(j.id.desc())
        .limit(last)
    ).all()
    out = []
    for started, finished in rows:
        seconds = (
            datetime.fromisoformat(finished) - datetime.fromisoformat(started)
        ).total_seconds()
        out.append(max(0.0, seconds))
    return out


def cancel_twin_jobs(conn: Connection, twin_id: str, reason: str, when: str) -> list[int]:
    """End every unfinished job of ``twin_id`` as cancelled; return their ids."""
    j = tables.jobs.c
    where = (j.twin_id == twin_id, j.status.in_(UNFINISHED))
    ids = [int(r.id) for r in conn.execute(select(j.id).where(*where))]
    if ids:
        conn.execute(
            update(tables.jobs)
            .where(j.id.in_(ids))
            .values(status=JobStatus.CANCELLED.value, finished_at=when, error=reason)
        )
    return ids


def unfinished_jobs(conn: Connection) -> list[Job]:
    j = tables.jobs.c
    rows = conn.execute(select(tables.jobs).where(j.status.in_(UNFINISHED)).order_by(j.id))
    return [_job(r) for r in rows]


def mark_running(conn: Connection, job_id: int, when: str) -> bool:
    """Queued -> running; False if the job is no longer queued (or gone with its twin)."""
    j = tables.jobs.c
    done = conn.execute(
        update(tables.jobs)
        .where(j.id == job_id, j.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.RUNNING.value, started_at=when)
    )
    return done.rowcount == 1


def claim_next(conn: Connection, runner: str, when: str, kinds: list[str]) -> Job | None:
    """Start the next job of the shared queue (queued, no runner yet, of one of ``kinds``)
    for ``runner``; None if there is none. Call it in a write transaction: the pick and the
    update must not interleave with another runner's.

    Owners take turns, over every runner of the store: the owner with the fewest jobs
    running goes first, then the one whose last job started longest ago (or never), then
    the one waiting longest; within an owner, first come first served.
    """
    j = tables.jobs.c
    queued = conn.execute(
        select(j.id, j.owner)
        .where(j.status == JobStatus.QUEUED.value, j.runner.is_(None), j.kind.in_(kinds))
        .order_by(j.id)
    ).all()
    if not queued:
        return None
    first: dict[str, int] = {}
    for job_id, owner in queued:
        first.setdefault(str(owner), int(job_id))
    running = {
        str(owner): int(count)
        for owner, count in conn.execute(
            select(j.owner, func.count())
            .where(j.status == JobStatus.RUNNING.value, j.owner.in_(list(first)))
            .group_by(j.owner)
        )
    }
    last_start = {
        str(owner): str(started)
        for owner, started in conn.execute(
            select(j.owner, func.max(j.started_at))
            .where(j.owner.in_(list(first)), j.started_at.is_not(None))
            .group_by(j.owner)
        )
        if started is not None
    }
    owner = min(first, key=lambda o: (running.get(o, 0), last_start.get(o, ""), first[o]))
    claimed = conn.execute(
        update(tables.jobs)
        .where(j.id == first[owner], j.status == JobStatus.QUEUED.value, j.runner.is_(None))
        .values(status=JobStatus.RUNNING.value, started_at=when, runner=runner)
    )
    return get_job(conn, first[owner]) if claimed.rowcount == 1 else None


def has_unclaimed(conn: Connection, kinds: list[str]) -> bool:
    """Whether the shared queue holds a job of one of ``kinds`` (a cheap read)."""
    j = tables.jobs.c
    query = select(j.id).where(
        j.status == JobStatus.QUEUED.value, j.runner.is_(None), j.kind.in_(kinds)
    )
    return conn.execute(query.limit(1)).first() is not None


def mark_finished(
    conn: Connection,
    job_id: int,
    status: JobStatus,
    when: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Record how an unfinished job ended (a finished one keeps its first ending)."""
    j = tables.jobs.c
    conn.execute(
        update(tables.jobs)
        .where(j.id == job_id, j.status.in_(UNFINISHED))
        .values(
            status=status.value,
            finished_at=when,
            result=None if result is None else json.dumps(result, sort_keys=True),
            error=error,
        )
    )
