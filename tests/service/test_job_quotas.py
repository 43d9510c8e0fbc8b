"""One owner cannot starve the others: a quota of unfinished jobs per owner (429 with
Retry-After past it) and owners' queued jobs started in turn (issue #16, fifth defect:
fifteen fits of one owner delayed another's single fit by 54 s)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from twinkit.engine import TwinEngine
from twinkit.service.state import ServiceState
from twinkit.service.worker import DEFAULT_JOB_NICENESS, job_niceness
from twinkit.store.jobs import JobStatus

Headers = dict[str, str]


def _owners(client: TestClient, admin: Headers, *names: str) -> dict[str, Headers]:
    out = {}
    for name in names:
        token = client.post("/v1/owners", json={"name": name}, headers=admin).json()["token"]
        out[name] = {"Authorization": f"Bearer {token}"}
        client.post("/v1/twins", json={"id": f"{name}-1", "kind": "state"}, headers=out[name])
    return out


def test_owners_take_turns_over_the_shared_queue(engine: TwinEngine) -> None:
    # Prepare: alice queued five jobs and has one running; bob and carol one each, later
    jobs = engine.jobs
    running = jobs.create("alice/a", "alice", "fit", {})
    claimed_first = jobs.claim("host:1:x", ["fit"])
    assert claimed_first is not None and claimed_first.id == running.id
    alice = [jobs.create("alice/a", "alice", "fit", {}).id for _ in range(5)]
    bob = jobs.create("bob/b", "bob", "fit", {}).id
    carol = jobs.create("carol/c", "carol", "fit", {}).id
    someone_elses = jobs.create("bob/b", "bob", "fit", {}, runner="other:2:y").id
    other_kind = jobs.create("bob/b", "bob", "robustness", {}).id

    # Execute: claim one at a time, as slots of two server processes would
    order = []
    for i in range(7):
        job = jobs.claim(f"host:{i % 2}:x", ["fit"])
        assert job is not None
        order.append(job.id)
    last = jobs.claim("host:0:x", ["fit"])

    # Assert: those running nothing first (bob then carol, by arrival), then alice's in
    # order; a job bound to a runner, or of a kind not asked for, is not claimed
    assert order[:3] == [bob, carol, alice[0]]
    assert order[3:] == alice[1:]
    assert last is None
    claimed = [jobs.get(j) for j in order]
    assert [j.status for j in claimed] == [JobStatus.RUNNING] * 7
    assert [j.runner for j in claimed] == [f"host:{i % 2}:x" for i in range(7)]
    assert jobs.get(someone_elses).status is JobStatus.QUEUED
    assert jobs.get(other_kind).status is JobStatus.QUEUED


def test_an_owner_served_longest_ago_goes_first_among_equals(engine: TwinEngine) -> None:
    # Prepare: bob's last job started before alice's; nobody runs anything now
    jobs = engine.jobs
    for owner in ("bob", "alice"):
        done = jobs.create(f"{owner}/t", owner, "fit", {})
        jobs.claim("h:1:x", ["fit"])
        jobs.finish(done.id, {})
    alice = jobs.create("alice/t", "alice", "fit", {}).id
    bob = jobs.create("bob/t", "bob", "fit", {}).id

    # Execute
    first = jobs.claim("h:1:x", ["fit"])

    # Assert: bob's, though alice asked first
    assert first is not None and first.id == bob
    assert jobs.get(alice).status is JobStatus.QUEUED


def test_a_free_slot_of_another_server_process_takes_the_job(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    crash_worker: ModuleType,
) -> None:
    # Prepare: process 1's only slot runs alice's fit, which never ends; process 2 (same
    # store) has a free slot
    first = make_client(fit_worker=crash_worker.sleep_long, fit_workers=1)
    owners = _owners(first, admin, "alice", "bob")
    alice = first.post("/v1/twins/alice-1/fit", json={}, headers=owners["alice"]).json()["id"]
    engine = app_state(first).engine
    _wait_for(lambda: engine.jobs.get(alice).status.value == "running")
    second = make_client(fit_worker=crash_worker.done_soon, fit_workers=1)

    # Execute: bob asks process 1 for a fit
    bob = first.post("/v1/twins/bob-1/fit", json={}, headers=owners["bob"]).json()["id"]
    _wait_for(lambda: engine.jobs.get(bob).status.value == "done")

    # Assert: process 2 ran it; alice's still runs in process 1
    assert engine.jobs.get(bob).runner == app_state(second).runner.runner_id
    assert engine.jobs.get(alice).runner == app_state(first).runner.runner_id
    assert engine.jobs.get(alice).status.value == "running"


def test_past_the_quota_a_job_is_refused_with_retry_after(
    make_client: Callable[..., TestClient], admin: Headers, crash_worker: ModuleType
) -> None:
    # Prepare: fits that never end, two unfinished jobs per owner at most
    client = make_client(fit_worker=crash_worker.sleep_long, max_jobs_per_owner=2)
    owners = _owners(client, admin, "alice", "bob")

    # Execute
    alice = [client.post("/v1/twins/alice-1/fit", json={}, headers=owners["alice"]) for _ in "abc"]
    bob = client.post("/v1/twins/bob-1/fit", json={}, headers=owners["bob"])

    # Assert
    assert [a.status_code for a in alice] == [202, 202, 429]
    assert alice[2].headers["Retry-After"] == "5"  # no job of alice's has ended yet
    assert "2 job(s) queued or running" in alice[2].json()["error"]["message"]
    assert bob.status_code == 202
    jobs = client.get("/v1/twins/alice-1/jobs", headers=owners["alice"]).json()
    assert len(jobs) == 2  # the refused one was never recorded


def test_another_owners_fit_starts_within_one_job_slot(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    crash_worker: ModuleType,
) -> None:
    # Prepare: one worker thread; alice fills the queue, then bob asks for one fit
    client = make_client(fit_worker=crash_worker.done_soon, fit_workers=1)
    state = app_state(client)
    owners = _owners(client, admin, "alice", "bob")
    alice = [
        client.post("/v1/twins/alice-1/fit", json={}, headers=owners["alice"]).json()["id"]
        for _ in range(5)
    ]
    bob = client.post("/v1/twins/bob-1/fit", json={}, headers=owners["bob"]).json()["id"]

    # Execute: wait until every job has ended
    deadline = time.monotonic() + 180
    jobs: dict[int, Any] = {}
    while time.monotonic() < deadline:
        jobs = {j: state.engine.jobs.get(j) for j in [*alice, bob]}
        if all(job.status.value == "done" for job in jobs.values()):
            break
        time.sleep(0.2)

    # Assert: bob's fit started right after the one alice's that was running, if any
    order = sorted(jobs, key=lambda j: jobs[j].started_at or "")
    assert all(job.status.value == "done" for job in jobs.values()), jobs
    assert order.index(bob) <= 1, [jobs[j].owner for j in order]


def test_a_job_process_runs_at_a_lower_cpu_priority_than_the_server(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    monkeypatch: pytest.MonkeyPatch,
    crash_worker: ModuleType,
) -> None:
    # The server lowers a job's child's priority as soon as it starts it, so that even the
    # child's imports yield the cores to the workers answering requests (issue #16's
    # two-tenant benchmark). The child reports its niceness.
    monkeypatch.setenv("TWINKIT_JOB_NICENESS", "7")
    client = make_client(fit_worker=crash_worker.tell_niceness)
    owners = _owners(client, admin, "alice")
    job = client.post("/v1/twins/alice-1/fit", json={}, headers=owners["alice"]).json()["id"]
    engine = app_state(client).engine
    _wait_for(lambda: engine.jobs.get(job).status.value == "done")

    reported = engine.jobs.get(job).result
    assert reported is not None
    assert reported["niceness"] == min(19, os.nice(0) + 7), reported


def test_the_niceness_setting_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, expected in [("7", 7), ("0", 0), ("-3", 0), ("40", 19), ("ten", 10)]:
        monkeypatch.setenv("TWINKIT_JOB_NICENESS", raw)
        assert job_niceness() == expected, raw
    monkeypatch.delenv("TWINKIT_JOB_NICENESS")
    assert job_niceness() == DEFAULT_JOB_NICENESS


def _wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
