"""Fits run as jobs in a child process: a finished fit serves forecasts; a fit that fails or
a child that dies fails its job and nothing else; a broken serving artifact fails over."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from fastapi.testclient import TestClient

from twinkit.service.state import ServiceState

Headers = dict[str, str]
StateTwinFn = Callable[[str, str], Headers]


def _metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_fit_job_runs_in_the_background_and_then_the_twin_forecasts(
    client: TestClient,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)

    # Execute
    started = client.post("/v1/twins/p1/fit", json={"model": "linear_ar"}, headers=alice)
    job = finished_job(client, f"/v1/twins/p1/jobs/{started.json()['id']}", alice)
    forecast = client.get("/v1/twins/p1/forecast", params={"horizons": [30, 60]}, headers=alice)

    # Assert
    assert started.status_code == 202
    assert started.json()["status"] in ("queued", "running")
    assert job["status"] == "done", job
    assert job["result"]["version"] == 1
    assert job["result"]["promoted"] is True
    assert forecast.status_code == 200, forecast.text
    body = forecast.json()
    assert (body["model"], body["version"], body["source"]) == ("linear_ar", 1, "twin")
    assert body["degraded"] is False
    assert [f["horizon_min"] for f in body["forecasts"]] == [30, 60]
    for f in body["forecasts"]:
        assert f["median"] == f["quantiles"]["0.5"]
        assert f["quantiles"]["0.05"] <= f["median"] <= f["quantiles"]["0.95"]
    listed = client.get("/v1/twins/p1/jobs", headers=alice).json()
    assert [j["id"] for j in listed] == [job["id"]]
    assert _metric(client, "twinkit_fits_started_total") == 1
    assert _metric(client, 'twinkit_fits_finished_total{outcome="done"}') == 1
    assert _metric(client, "twinkit_promotions_total") == 1
    assert _metric(client, 'twinkit_fit_duration_seconds_count{outcome="done"}') == 1


def test_a_fit_that_fails_in_its_process_fails_the_job_with_the_reason(
    client: TestClient,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare: five readings are too few to fit anything
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows[:5]}, headers=alice)

    # Execute
    started = client.post("/v1/twins/p1/fit", json={"model": "linear_ar"}, headers=alice)
    job = finished_job(client, f"/v1/twins/p1/jobs/{started.json()['id']}", alice)

    # Assert
    assert job["status"] == "failed"
    assert job["error"]
    assert "Traceback" not in job["error"]
    assert _metric(client, 'twinkit_fits_finished_total{outcome="failed"}') == 1
    assert client.get("/v1/twins/p1/models", headers=alice).json() == []


def test_a_crashing_fit_process_fails_its_job_and_the_server_serves_on(
    make_client: Callable[..., TestClient],
    admin: Headers,
    crash_worker: ModuleType,
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare: the child runs a worker that dies at once with exit code 3
    client = make_client(fit_worker=crash_worker.exit_hard)
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}
    client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=alice)

    # Execute
    started = client.post("/v1/twins/p1/fit", json={}, headers=alice)
    job = finished_job(client, f"/v1/twins/p1/jobs/{started.json()['id']}", alice)

    # Assert
    assert job["status"] == "failed"
    assert job["error"] == "the fit process ended without an answer (exit code 3)"
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/twins/p1", headers=alice).status_code == 200


def test_a_fit_past_its_timeout_is_stopped_and_failed(
    make_client: Callable[..., TestClient],
    admin: Headers,
    crash_worker: ModuleType,
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare
    client = make_client(fit_worker=crash_worker.sleep_long, fit_timeout_s=1.0)
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}
    client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=alice)

    # Execute
    started = client.post("/v1/twins/p1/fit", json={}, headers=alice)
    job = finished_job(client, f"/v1/twins/p1/jobs/{started.json()['id']}", alice)

    # Assert
    assert job["status"] == "failed"
    assert job["error"] == "the fit took longer than 1 s"


def test_unknown_models_are_refused_before_a_job_starts(
    client: TestClient, state_twin: StateTwinFn, service: ServiceState
) -> None:
    alice = state_twin("alice", "p1")
    answer = client.post("/v1/twins/p1/fit", json={"model": "oracle"}, headers=alice)
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["field"] == ["body", "model"]
    assert service.engine.jobs.of_twin("p1") == []


def test_jobs_left_by_a_dead_server_are_failed_at_startup(
    make_client: Callable[..., TestClient], app_state: Callable[[TestClient], ServiceState]
) -> None:
    # Prepare: a job "running" in a server process of this host that no longer exists
    first = make_client()
    engine = app_state(first).engine
    host = app_state(first).runner.runner_id.split(":")[0]
    orphan = engine.jobs.create("p1", "alice", "fit", {}, runner=f"{host}:999999999:abc")
    engine.jobs.start(orphan.id)
    alive = engine.jobs.create("p1", "alice", "fit", {}, runner=app_state(first).runner.runner_id)
    elsewhere = engine.jobs.create("p1", "alice", "fit", {}, runner="other-host:1:abc")

    # Execute: another server starts on the store
    make_client()

    # Assert
    assert engine.jobs.get(orphan.id).status.value == "failed"
    assert engine.jobs.get(alive.id).status.value == "queued"  # its server still runs
    assert engine.jobs.get(elsewhere.id).status.value == "queued"


def test_a_broken_serving_artifact_fails_over_visibly(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
    admin: Headers,
) -> None:
    # Prepare: v1 linear_ar, v2 persistence (better here) serving; then v2's file is damaged
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    engine = service.engine
    # v1: linear_ar as first released (scheme 1: 12 lags, no selection), which
    # persistence beats on these readings; today's linear_ar would beat persistence
    engine.fit("p1", model="linear_ar", params={"scheme": 1, "lags": 12})
    assert engine.fit("p1", model="persistence").promoted
    serving = engine.version("p1")
    engine.artifacts.path(serving.sha256).write_bytes(b"not what was registered")

    # Execute
    first = client.get("/v1/twins/p1/forecast", headers=alice)
    second = client.get("/v1/twins/p1/forecast", headers=alice)

    # Assert: answered by v1, degraded, counted, one ledger entry for both answers
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["version"], body["model"], body["source"]) == (1, "linear_ar", "twin")
    assert body["degraded"] is True
    assert "serving v2 (persistence)" in body["degraded_reason"]
    assert "/" not in body["degraded_reason"].split(":", 1)[1]  # no server paths
    assert second.json()["degraded"] is True
    assert _metric(client, 'twinkit_degraded_predictions_total{source="twin"}') == 2
    history = client.get("/v1/twins/p1/history", headers=alice).json()
    failovers = [e for e in history if e["event"] == "serving_failover"]
    assert len(failovers) == 1
    assert failovers[0]["payload"]["version"] == 2
    assert failovers[0]["payload"]["served_by"] == {"source": "twin", "version": 1}
    verify = client.get("/v1/ledger/verify", headers=admin).json()
    assert verify["ok"] is False
    assert any("model alice/p1 v2" in p for p in verify["problems"])  # the admin's view


def test_with_every_version_broken_the_population_model_answers_or_nothing_does(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
) -> None:
    # Prepare: the only version's artifact is gone
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    engine = service.engine
    engine.fit("p1", model="linear_ar")
    engine.artifacts.path(engine.version("p1").sha256).unlink()

    # Execute: no fallback yet, then a (tiny) population model
    nothing = client.get("/v1/twins/p1/forecast", headers=alice)
    engine.fit_population(
        model="gru", params={"hidden": 4, "epochs": 1, "context_min": 60, "max_horizon_min": 60}
    )
    population = client.get("/v1/twins/p1/forecast", headers=alice)

    # Assert
    assert nothing.status_code == 503
    assert nothing.json()["error"]["type"] == "IntegrityError"
    assert "artifacts" not in nothing.text
    assert population.status_code == 200, population.text
    body = population.json()
    assert (body["source"], body["version"], body["degraded"]) == ("population", 1, True)
    assert body["model"].startswith("population:")
    served_by = [
        e["payload"]["served_by"]
        for e in client.get("/v1/twins/p1/history", headers=alice).json()
        if e["event"] == "serving_failover"
    ]
    assert served_by == [None, {"source": "population", "version": 1}]


def test_deleting_a_twin_cancels_its_running_fit_and_the_new_twin_does_not_inherit_it(
    make_client: Callable[..., TestClient],
    admin: Headers,
    app_state: Callable[[TestClient], ServiceState],
    crash_worker: ModuleType,
) -> None:
    # Prepare: alice's fit runs (a child that would sleep for ten minutes)
    client = make_client(fit_worker=crash_worker.sleep_long)
    state = app_state(client)
    owners = {}
    for name in ("alice", "bob"):
        token = client.post("/v1/owners", json={"name": name}, headers=admin).json()["token"]
        owners[name] = {"Authorization": f"Bearer {token}"}
    client.post("/v1/twins", json={"id": "race-1", "kind": "state"}, headers=owners["alice"])
    job_id = client.post("/v1/twins/race-1/fit", json={}, headers=owners["alice"]).json()["id"]
    deadline = time.monotonic() + 60
    while state.engine.jobs.get(job_id).status.value == "queued":
        assert time.monotonic() < deadline, "the fit never started"
        time.sleep(0.1)

    # Execute
    deleted = client.delete("/v1/twins/race-1", headers=owners["alice"])
    client.post("/v1/twins", json={"id": "race-1", "kind": "state"}, headers=owners["bob"])
    bobs_jobs = client.get("/v1/twins/race-1/jobs", headers=owners["bob"])
    alices_job = client.get(f"/v1/twins/race-1/jobs/{job_id}", headers=owners["bob"])

    # Assert: cancelled at once, its child stopped (the runner forgets it), nothing of it
    # shows on bob's twin
    assert deleted.status_code == 204
    job = state.engine.jobs.get(job_id)
    assert job.status.value == "cancelled"
    assert job.error == "the twin 'race-1' was deleted"
    deadline = time.monotonic() + 30
    while state.runner._running:
        assert time.monotonic() < deadline, "the cancelled fit's child was not stopped"
        time.sleep(0.1)
    assert state.engine.jobs.get(job_id).status.value == "cancelled"
    assert bobs_jobs.json() == []
    assert alices_job.status_code == 404
