"""Batches are ingested in an ingest process, not in the worker that answers requests
(issue #16's two-tenant benchmark: one owner's uploads held the GIL that answers another's
forecasts). Errors cross the process as they were raised; a dead process is replaced."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from twinkit.core.errors import Problem, TooLargeError, ValidationError
from twinkit.service import ingest_pool
from twinkit.service.errors import ApiError
from twinkit.service.ingest_pool import IngestPool
from twinkit.service.state import ServiceState

Headers = dict[str, str]
CSV = b"time,channel,value\n2026-01-01T00:00:00Z,glucose,101\n2026-01-01T00:05:00Z,glucose,103\n"


def _owner_twin(client: TestClient, admin: Headers) -> Headers:
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}
    client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=alice)
    return alice


def _upload(client: TestClient, alice: Headers, body: bytes = CSV) -> Any:
    files = {"file": ("readings.csv", body, "text/csv")}
    return client.post("/v1/twins/p1/observations/upload", files=files, headers=alice)


def test_uploads_and_json_rows_are_ingested_outside_the_worker(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the worker's own engine refuses to ingest
    client = make_client()
    alice = _owner_twin(client, admin)

    def not_here(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ingested in the worker")

    monkeypatch.setattr(app_state(client).engine, "ingest", not_here)
    rows = [{"time": "2026-01-01T00:10:00Z", "channel": "glucose", "value": 105}]

    # Execute
    uploaded = _upload(client, alice)
    posted = client.post("/v1/twins/p1/observations", json={"rows": rows}, headers=alice)

    # Assert: both stored, by the ingest process
    assert (uploaded.status_code, posted.status_code) == (200, 200), (uploaded.text, posted.text)
    assert (uploaded.json()["n_stored"], posted.json()["n_stored"]) == (2, 1)
    data = client.get("/v1/twins/p1/data", headers=alice).json()
    assert [r["value"] for r in data["rows"]] == [101, 103, 105]


def test_without_ingest_processes_the_worker_ingests(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(ingest_processes=0)
    alice = _owner_twin(client, admin)
    calls: list[str] = []
    ingest = app_state(client).engine.ingest

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["source"])
        return ingest(*args, **kwargs)

    monkeypatch.setattr(app_state(client).engine, "ingest", counted)

    assert _upload(client, alice).status_code == 200
    assert calls == ["api:alice:readings.csv"]


def test_rejections_cross_the_process_with_their_rows_and_limits(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    # Prepare
    client = make_client(max_upload_rows=3)
    alice = _owner_twin(client, admin)
    bad = CSV + b"2026-01-01T00:10:00Z,glucose,lots\n"
    too_long = CSV + b"".join(f"2026-01-02T00:0{i}:00Z,glucose,1\n".encode() for i in range(3))

    # Execute
    rejected = _upload(client, alice, bad)
    refused = _upload(client, alice, too_long)

    # Assert: 422 naming row and column, 413 naming the setting; nothing stored
    assert rejected.status_code == 422, rejected.text
    problem = rejected.json()["error"]["problems"][0]
    assert (problem["row"], problem["column"]) == (3, "value")
    assert refused.status_code == 413, refused.text
    assert "TWINKIT_MAX_UPLOAD_ROWS" in refused.json()["error"]["message"]
    assert client.get("/v1/twins/p1/data", headers=alice).json()["rows"] == []


def test_the_errors_of_a_batch_survive_pickling() -> None:
    # The ingest process hands its errors back pickled; these two take several arguments.
    problems = [Problem("not a number", row=3, column="value")]
    invalid = pickle.loads(pickle.dumps(ValidationError("up.csv", problems)))
    large = pickle.loads(pickle.dumps(TooLargeError("up.csv", "rows", 5, "TWINKIT_X")))
    assert (invalid.source, invalid.problems) == ("up.csv", problems)
    assert str(invalid) == str(ValidationError("up.csv", problems))
    assert (large.what, large.limit, large.setting) == ("rows", 5, "TWINKIT_X")


def test_an_ingest_process_that_died_idle_is_replaced(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    # Prepare: one batch through the pool, then its process is killed
    client = make_client()
    alice = _owner_twin(client, admin)
    assert _upload(client, alice).status_code == 200
    pool = ingest_pool._pools[(1, 5)]
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not pool._broken and time.monotonic() < deadline:
        time.sleep(0.05)

    # Execute
    later = CSV.replace(b"2026-01-01", b"2026-01-03")
    answer = _upload(client, alice, later)

    # Assert: a new process took the batch
    assert answer.status_code == 200, answer.text
    assert answer.json()["n_stored"] == 2
    assert ingest_pool._pools[(1, 5)] is not pool


def test_a_process_dying_with_the_batch_answers_503_and_the_next_batch_goes_on(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    crash_worker: ModuleType,
) -> None:
    # Prepare: a pool of its own (its process sees this folder), whose work dies
    client = make_client()
    _owner_twin(client, admin)
    pool = IngestPool(app_state(client).engine, processes=3)

    # Execute
    with pytest.raises(ApiError) as died:
        asyncio.run(pool._run(crash_worker.exit_hard_ingest, "batch"))
    frame = pd.DataFrame(
        {"time": ["2026-01-05T00:00:00Z"], "channel": ["glucose"], "value": [99.0]}
    )
    result = asyncio.run(pool.rows(frame, "alice/p1", "api:alice:rows"))

    # Assert
    assert died.value.status_code == 503
    assert "nothing of the batch was stored" in str(died.value.detail)
    assert result.n_stored == 1
    ingest_pool._forget(ingest_pool._pools[(3, 0)])


def test_the_ingest_processes_run_at_the_lower_priority_set(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    # Prepare: the default setting (5 below the worker), and 2
    client = make_client()
    _upload(client, _owner_twin(client, admin))

    # Execute: ask each pool's process its niceness
    default = ingest_pool._pools[(1, 5)].submit(os.nice, 0).result(timeout=120)
    chosen = ingest_pool._pool(1, 2).submit(os.nice, 0).result(timeout=120)

    # Assert
    assert default == min(19, os.nice(0) + 5)
    assert chosen == min(19, os.nice(0) + 2)
    ingest_pool._forget(ingest_pool._pools[(1, 2)])
