"""Implausible times over HTTP: refused or held at ingest, a clear 422 for a twin whose
stored data hold them, and retraction through the API (issue #16, first defect)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from twinkit.service.state import ServiceState
from twinkit.store import tables, twins

Headers = dict[str, str]
StateTwinFn = Callable[[str, str], Headers]
YEAR_9999_US = 253402300799_000000


def _row(time: str, value: float = 120.0) -> dict[str, Any]:
    return {"time": time, "channel": "glucose", "value": value}


def test_a_year_9999_reading_is_held_and_the_twin_stays_forecastable(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
) -> None:
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    service.engine.fit("p1", model="linear_ar")

    answer = client.post(
        "/v1/twins/p1/observations", json={"rows": [_row("9999-12-31T23:59:59Z")]}, headers=alice
    )
    forecast = client.get("/v1/twins/p1/forecast", params={"horizons": "30"}, headers=alice)
    held = client.get("/v1/twins/p1/quarantine", headers=alice).json()

    assert answer.status_code == 200, answer.text
    assert (answer.json()["n_stored"], answer.json()["n_quarantined"]) == (0, 1)
    assert "in the future" in held[0]["reason"]
    assert forecast.status_code == 200, forecast.text


def test_clock_words_are_refused_with_the_row(client: TestClient, state_twin: StateTwinFn) -> None:
    alice = state_twin("alice", "p1")

    answers = [
        client.post(
            "/v1/twins/p1/observations",
            json={"rows": [_row("2026-01-01T00:00:00Z"), _row(word)]},
            headers=alice,
        )
        for word in ("now", "today")
    ]

    for answer in answers:
        assert answer.status_code == 422, answer.text
        problem = answer.json()["error"]["problems"][0]
        assert (problem["row"], problem["column"]) == (2, "time")
    assert client.get("/v1/twins/p1", headers=alice).json()["observations"] == 0


def _legacy_reading(service: ServiceState, twin_id: str) -> None:
    """A year-9999 row stored before the window was enforced (straight into the store)."""
    with service.engine.store.write() as conn:
        channels = twins.channels_of(conn, [service.engine.get_twin(twin_id).key])
        channel_id = int(channels.loc[channels["name"] == "glucose", "id"].iloc[0])
        batch = conn.execute(tables.observations.select().limit(1)).first()
        assert batch is not None
        conn.execute(
            tables.observations.insert().values(
                channel_id=channel_id, t=YEAR_9999_US, value=120.0, batch_id=batch.batch_id
            )
        )


def test_a_twin_with_stored_implausible_times_answers_422_until_retracted(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
) -> None:
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    service.engine.fit("p1", model="linear_ar")
    _legacy_reading(service, "p1")

    broken = client.get("/v1/twins/p1/forecast", params={"horizons": "30"}, headers=alice)
    retracted = client.post(
        "/v1/twins/p1/retractions",
        json={"reason": "device clock error", "start": "2100-01-01T00:00:00Z"},
        headers=alice,
    )
    fixed = client.get("/v1/twins/p1/forecast", params={"horizons": "30"}, headers=alice)

    assert broken.status_code == 422, broken.text
    assert "outside the plausible time window" in broken.json()["error"]["message"]
    assert retracted.status_code == 200, retracted.text
    assert retracted.json()["n_retracted"] == 1
    assert fixed.status_code == 200, fixed.text


def test_a_retraction_over_http_is_in_the_ledger_and_verifies(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
) -> None:
    alice = state_twin("alice", "p1")
    ingested = client.post(
        "/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice
    ).json()
    first = pd.Timestamp(glucose_rows[0]["time"])

    answer = client.post(
        "/v1/twins/p1/retractions",
        json={
            "reason": "calibration",
            "batch_id": ingested["batch_id"],
            "end": (first + pd.Timedelta(hours=1)).isoformat(),
            "channels": ["glucose"],
        },
        headers=alice,
    )
    history = client.get("/v1/twins/p1/history", headers=alice).json()

    assert answer.status_code == 200, answer.text
    assert answer.json()["n_retracted"] == 13  # 5-minute glucose, an hour inclusive
    assert history[-1]["event"] == "rows_retracted"
    assert history[-1]["payload"]["reason"] == "calibration"
    assert service.engine.verify().ok


def test_a_retraction_request_is_validated(client: TestClient, state_twin: StateTwinFn) -> None:
    alice = state_twin("alice", "p1")
    bob = state_twin("bob", "p2")

    unix_time = client.post(
        "/v1/twins/p1/retractions", json={"reason": "x", "start": 0.5}, headers=alice
    )
    nothing_named = client.post("/v1/twins/p1/retractions", json={"reason": "x"}, headers=alice)
    no_reason = client.post("/v1/twins/p1/retractions", json={"batch_id": 1}, headers=alice)
    not_mine = client.post(
        "/v1/twins/p1/retractions", json={"reason": "x", "batch_id": 1}, headers=bob
    )

    assert unix_time.status_code == 422
    assert nothing_named.status_code == 400
    assert "name the rows" in nothing_named.json()["error"]["message"]
    assert no_reason.status_code == 422
    assert not_mine.status_code == 404


def test_a_retraction_with_text_that_is_not_unicode_is_422(
    client: TestClient, state_twin: StateTwinFn
) -> None:
    alice = state_twin("alice", "p1")
    headers = {**alice, "content-type": "application/json"}

    answers = [
        client.post("/v1/twins/p1/retractions", content=body, headers=headers)
        for body in (
            '{"reason": "\\ud800", "batch_id": 1}',
            '{"reason": "x", "items": ["\\udfff"]}',
            '{"reason": "x", "batch_id": 1e300}',
            '{"reason": "x", "start": "0.5"}',
        )
    ]

    assert [a.status_code for a in answers] == [422, 422, 422, 422]
