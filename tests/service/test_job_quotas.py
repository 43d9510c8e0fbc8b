"""One owner cannot starve the others: a quota of unfinished jobs per owner (429 with
Retry-After past it) and owners' queued jobs started in turn (issue #16, fifth defect:
fifteen fits of one owner delayed another's single fit by 54 s)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from twinkit.service.fairqueue import FairQueue
from twinkit.service.state import ServiceState

Headers = dict[str, str]


def _owners(client: TestClient, admin: Headers, *names: str) -> dict[str, Headers]:
    out = {}
    for name in names:
        token = client.post("/v1/owners", json={"name": name}, headers=admin).json()["token"]
        out[name] = {"Authorization": f"Bearer {token}"}
        client.post("/v1/twins", json={"id": f"{name}-1", "kind": "state"}, headers=out[name])
    return out


def test_the_queue_takes_owners_in_turn() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(15):
        queue.put("alice", f"a{i}")
    queue.put("bob", "b0")
    queue.put("carol", "c0")
    queue.put("bob", "b1")

    taken = [queue.get() for _ in range(6)]

    assert taken == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert len(queue) == 12
    assert queue.close() == [f"a{i}" for i in range(3, 15)]
    assert queue.get() is None
    with pytest.raises(RuntimeError):
        queue.put("bob", "late")


def test_a_waiting_get_wakes_on_put_and_on_close() -> None:
    queue: FairQueue[int] = FairQueue()
    got: list[int | None] = []
    first = threading.Event()

    def read() -> None:
        got.append(queue.get())
        first.set()
        got.append(queue.get())

    reader = threading.Thread(target=read)
    reader.start()

    queue.put("alice", 1)
    assert first.wait(timeout=10)
    queue.close()
    reader.join(timeout=10)

    assert got == [1, None]


def test_past_the_quota_a_job_is_refused_with_retry_after(
    make_client: Callable[..., TestClient], admin: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: fits that never end, two unfinished jobs per owner at most
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    slow = importlib.import_module("crash_worker")
    client = make_client(fit_worker=slow.sleep_long, max_jobs_per_owner=2)
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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: one worker thread; alice fills the queue, then bob asks for one fit
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    quick = importlib.import_module("crash_worker")
    client = make_client(fit_worker=quick.done_soon, fit_workers=1)
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


def test_a_job_process_runs_at_a_lower_cpu_priority_than_the_server() -> None:
    # The child of a job lowers its own priority first thing, so that training yields the
    # cores to the workers answering requests (issue #16's two-tenant benchmark).
    code = (
        "import os; from twinkit.service.worker import _lower_priority; "
        "before = os.nice(0); _lower_priority(); print(before, os.nice(0) - before)"
    )
    env = {**os.environ, "TWINKIT_JOB_NICENESS": "7"}
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e)
        for e in (None, env)
    ]
    (base, default), (_, chosen) = (map(int, r.stdout.split()) for r in runs)
    assert (default, chosen) == (min(10, 19 - base), min(7, 19 - base)), runs
