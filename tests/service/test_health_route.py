"""GET /v1/twins/{id}/health: the live accuracy of the forecasts the service served. The
forecast route only records what it answered; the monitor thread writes the log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from twinkit.service.state import ServiceState

Headers = dict[str, str]


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"time": t.isoformat(), "channel": c, "value": float(v)}
        for t, c, v in frame[["time", "channel", "value"]].itertuples(index=False)
    ]


def test_served_forecasts_are_scored_when_their_readings_arrive(
    client: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    cohort_frame: pd.DataFrame,
) -> None:
    # Prepare: alice's twin fitted on a day and a half; bob owns no twin p1
    alice = state_twin("alice", "p1")
    bob = state_twin("bob", "other")
    person = cohort_frame[cohort_frame["twin_id"] == "synth-001"].sort_values("time")
    glucose = person[person["channel"] == "glucose"]
    first, rest = glucose.iloc[:432], glucose.iloc[432:]
    answer = client.post("/v1/twins/p1/observations", json={"rows": _rows(first)}, headers=alice)
    assert answer.status_code == 200, answer.text
    service.engine.fit("alice/p1", model="linear_ar")

    # Execute: forecasts served, each before the next hour of readings arrives
    origins = []
    for hour in range(4):
        served = client.get("/v1/twins/p1/forecast", headers=alice)
        assert served.status_code == 200, served.text
        origins.append(served.json()["origin"])
        client.get("/v1/twins/p1/forecast", headers=alice)  # from the cache: not logged again
        chunk = rest.iloc[12 * hour : 12 * (hour + 1)]
        posted = client.post(
            "/v1/twins/p1/observations", json={"rows": _rows(chunk)}, headers=alice
        )
        assert posted.status_code == 200, posted.text
    deadline = time.monotonic() + 10
    while service.engine.context.forecast_log.stats()["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the monitor thread writes the log every second

    health = client.get("/v1/twins/p1/health", headers=alice)

    # Assert: four forecasts logged, each horizon scored by the readings that came after it
    assert health.status_code == 200, health.text
    body = health.json()
    assert len(set(origins)) == 4
    assert body["twin_id"] == "p1"
    assert body["logged"]["served"] == 8
    assert body["serving"]["version"] == 1 and body["serving"]["model"] == "linear_ar"
    live = {s["horizon"]: s for s in body["live"]}
    assert set(live) == {30, 60}
    assert live[30]["n"] == 4 and live[60]["n"] >= 3
    assert all(s["role"] == "served" and s["rmse"] >= s["mae"] > 0 for s in body["live"])
    assert body["window"]["to"] is not None and body["series"]
    metrics = client.get("/metrics").text
    assert "twinkit_forecast_log_rows_total 8.0" in metrics
    # Another owner cannot read it, and a bad window is refused
    assert client.get("/v1/twins/p1/health", headers=bob).status_code == 404
    bad = client.get("/v1/twins/p1/health", params={"window_h": 0}, headers=alice)
    assert bad.status_code == 422


def test_the_monitor_round_records_drift_and_queues_a_refit(
    make_client: Callable[..., TestClient],
    new_owner: Callable[[str], Headers],
    drifting: Callable[[int, int | None, int], pd.DataFrame],
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare: no automatic rounds; alice's twin, fitted, served hourly over a change
    client = make_client(monitor_interval_s=0, rate_limit_per_minute=1e6, rate_limit_burst=1000)
    service: ServiceState = client.app.state.twinkit  # type: ignore[attr-defined]
    engine = service.engine
    alice = new_owner("alice")
    twin = {"id": "p1", "kind": "state", "channels": [{"name": "glucose"}]}
    assert client.post("/v1/twins", json=twin, headers=alice).status_code == 201
    data = drifting(9, 7, 11)
    engine.ingest(data.iloc[: 288 * 3], twin="alice/p1")
    engine.fit("alice/p1", model="linear_ar")
    engine.set_monitor_policy("alice/p1", "refit")
    for k in range(288 * 3, 288 * 9, 12):
        assert client.get("/v1/twins/p1/forecast", headers=alice).status_code == 200
        engine.ingest(data.iloc[k : k + 12], twin="alice/p1")
    service.monitor.tick()

    # Execute
    first = service.monitor.check_round()
    second = service.monitor.check_round()  # no new data since: nothing to check

    # Assert
    assert first == {"checked": 1, "failed": 0, "drifted": 1, "refits": 1, "rolled_back": 0}
    assert second == {"checked": 0, "failed": 0, "drifted": 0, "refits": 0, "rolled_back": 0}
    assert "twinkit_drift_detections_total{stream=" in client.get("/metrics").text
    jobs = client.get("/v1/twins/p1/jobs", headers=alice).json()
    assert [j["kind"] for j in jobs] == ["fit"]
    job = finished_job(client, f"/v1/twins/p1/jobs/{jobs[0]['id']}", alice)
    assert job["status"] == "done", job
    health = client.get("/v1/twins/p1/health", headers=alice).json()
    alerts = [e for e in engine.history("alice/p1") if e.event == "drift_detected"]
    assert alerts and all(e.payload["version"] == 1 for e in alerts)
    if health["serving"]["version"] == 1:  # the refit was not promoted: alerts still show
        assert len(health["alerts"]) == len(alerts)
