"""A twin's data over HTTP: ingest (JSON rows, CSV, Parquet), the same errors and atomicity
as the pipeline, files that name other twins, range reads, quarantine, history."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from twinkit.engine import TwinEngine
from twinkit.service.state import ServiceState

Headers = dict[str, str]
StateTwinFn = Callable[[str, str], Headers]
Snapshot = dict[str, list[tuple[Any, ...]]]


def _upload(client: TestClient, twin_id: str, name: str, content: bytes, headers: Headers) -> Any:
    files = {"file": (name, content, "application/octet-stream")}
    return client.post(f"/v1/twins/{twin_id}/observations/upload", files=files, headers=headers)


def test_json_rows_are_ingested_and_read_back(
    client: TestClient, state_twin: StateTwinFn, glucose_rows: list[dict[str, Any]]
) -> None:
    # Prepare
    alice = state_twin("alice", "p1")

    # Execute
    answer = client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    again = client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    data = client.get("/v1/twins/p1/data", params={"limit": 100_000}, headers=alice).json()

    # Assert
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["n_rows"] == result["n_stored"] == len(glucose_rows)
    assert result["source"] == "api:alice:rows"
    assert again.json()["already_ingested"] is True
    assert len(data["rows"]) == len(glucose_rows)
    assert not data["truncated"]
    sent = sorted((pd.Timestamp(r["time"]), r["channel"], r["value"]) for r in glucose_rows)
    got = sorted((pd.Timestamp(r["time"]), r["channel"], r["value"]) for r in data["rows"])
    assert got == sent
    summary = client.get("/v1/twins/p1", headers=alice).json()
    assert summary["observations"] == len(glucose_rows)


def test_csv_and_parquet_uploads_go_through_the_same_pipeline(
    client: TestClient, state_twin: StateTwinFn, cohort_frame: pd.DataFrame
) -> None:
    # Prepare: the same rows as CSV (without twin_id) and Parquet (with it)
    alice = state_twin("alice", "synth-001")
    mine = cohort_frame[cohort_frame["twin_id"] == "synth-001"]
    csv = mine.drop(columns="twin_id").to_csv(index=False).encode()
    parquet = io.BytesIO()
    mine.to_parquet(parquet, index=False)

    # Execute
    first = _upload(client, "synth-001", "readings.csv", csv, alice)
    second = _upload(client, "synth-001", "readings.parquet", parquet.getvalue(), alice)

    # Assert: stored once; the Parquet file has the same content hash
    assert first.status_code == 200, first.text
    assert first.json()["n_stored"] == len(mine)
    assert first.json()["source"] == "api:alice:readings.csv"
    assert second.json()["already_ingested"] is True
    assert second.json()["content_hash"] == first.json()["content_hash"]


def test_a_bad_csv_is_rejected_whole_with_row_and_column(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    snapshot: Callable[[TwinEngine], Snapshot],
) -> None:
    # Prepare: row 2 has an unreadable time, row 3 a value that is not a number
    alice = state_twin("alice", "p1")
    csv = (
        b"time,channel,value\n"
        b"2026-01-05T00:00:00Z,glucose,120\n"
        b"yesterday,glucose,121\n"
        b"2026-01-05T00:10:00Z,glucose,lots\n"
    )
    before = snapshot(service.engine)

    # Execute
    answer = _upload(client, "p1", "bad.csv", csv, alice)

    # Assert
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["type"] == "ValidationError"
    assert "nothing was stored" in error["message"]
    where = {(p["row"], p["column"]) for p in error["problems"]}
    assert where == {(2, "time"), (3, "value")}
    assert snapshot(service.engine) == before


def test_json_rows_with_a_bad_time_give_the_pipelines_error(
    client: TestClient, state_twin: StateTwinFn
) -> None:
    alice = state_twin("alice", "p1")
    rows = [
        {"time": "2026-01-05T00:00:00Z", "channel": "glucose", "value": 120.0},
        {"time": "not a time", "channel": "glucose", "value": 121.0},
    ]
    answer = client.post("/v1/twins/p1/observations", json={"rows": rows}, headers=alice)
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"] == [
        {
            "message": "a word, not an ISO-8601 time: 'not a time'",
            "row": 2,
            "column": "time",
            "field": None,
        }
    ]


def test_malformed_json_rows_give_field_paths(client: TestClient, state_twin: StateTwinFn) -> None:
    alice = state_twin("alice", "p1")
    rows: list[dict[str, Any]] = [
        {"time": "2026-01-05T00:00:00Z", "channel": "glucose", "value": 120.0},
        {"time": "2026-01-05T00:05:00Z", "channel": "glucose"},
        {"time": "2026-01-05T00:10:00Z", "channel": "glucose", "value": 1.0, "twin_id": "x"},
    ]
    answer = client.post("/v1/twins/p1/observations", json={"rows": rows}, headers=alice)
    assert answer.status_code == 422
    fields = [p["field"] for p in answer.json()["error"]["problems"]]
    assert fields == [["body", "rows", 1, "value"], ["body", "rows", 2, "twin_id"]]
    empty = client.post("/v1/twins/p1/observations", json={"rows": []}, headers=alice)
    assert empty.status_code == 422
    not_json = client.post(
        "/v1/twins/p1/observations",
        content=b"{not json",
        headers={**alice, "content-type": "application/json"},
    )
    assert not_json.status_code == 422


@pytest.mark.parametrize("victim", ["alice-p1", "nobody-p9"])
def test_a_file_naming_another_twin_cannot_write_to_it(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    snapshot: Callable[[TwinEngine], Snapshot],
    victim: str,
) -> None:
    # Prepare: Bob uploads to his own twin a file whose rows name Alice's twin (or a twin
    # that does not exist: the answer must not tell the two apart)
    state_twin("alice", "alice-p1")
    bob = state_twin("bob", "bob-p1")
    csv = (
        f"twin_id,time,channel,value\n"
        f"bob-p1,2026-01-05T00:00:00Z,glucose,120\n"
        f"{victim},2026-01-05T00:05:00Z,glucose,666\n"
    ).encode()
    before = snapshot(service.engine)

    # Execute
    answer = _upload(client, "bob-p1", "attack.csv", csv, bob)

    # Assert: rejected as a whole, nothing stored anywhere
    assert answer.status_code == 422
    problems = answer.json()["error"]["problems"]
    assert [(p["row"], p["column"]) for p in problems] == [(2, "twin_id")]
    assert problems[0]["message"] == f"twin_id differs from --twin 'bob-p1': {victim!r}"
    assert snapshot(service.engine) == before


def test_decisions_upload_and_read(client: TestClient, new_owner: Callable[[str], Headers]) -> None:
    # Prepare
    alice = new_owner("alice")
    client.post("/v1/twins", json={"id": "d1", "kind": "decision"}, headers=alice)
    csv = b"item_id,x1,x2,label\ni1,0.5,1.5,yes\ni2,2.0,-1.0,no\n"

    # Execute
    stored = _upload(client, "d1", "labels.csv", csv, alice)
    read = client.get("/v1/twins/d1/decisions", headers=alice)
    fit = client.post("/v1/twins/d1/fit", json={"model": "linear_ar"}, headers=alice)

    # Assert
    assert stored.json()["n_stored"] == 2
    assert read.json()["rows"] == [
        {"item_id": "i1", "label": "yes", "features": {"x1": 0.5, "x2": 1.5}},
        {"item_id": "i2", "label": "no", "features": {"x1": 2.0, "x2": -1.0}},
    ]
    assert fit.status_code == 400  # a decision twin's model is its clone
    assert "decision twin" in fit.json()["error"]["message"]


def test_data_in_a_time_range_pages_without_losing_rows(
    client: TestClient, state_twin: StateTwinFn, glucose_rows: list[dict[str, Any]]
) -> None:
    # Prepare
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    start, end = "2026-01-05T06:00:00Z", "2026-01-05T18:00:00"  # the end taken as UTC
    inside = {
        (pd.Timestamp(r["time"]), r["channel"])
        for r in glucose_rows
        if pd.Timestamp(start) <= pd.Timestamp(r["time"]) <= pd.Timestamp(end, tz="UTC")
    }

    # Execute: pages of 50 rows, each starting where the last one said
    seen: list[tuple[pd.Timestamp, str]] = []
    params: dict[str, Any] = {"start": start, "end": end, "limit": 50}
    for _ in range(100):
        page = client.get("/v1/twins/p1/data", params=params, headers=alice).json()
        seen += [(pd.Timestamp(r["time"]), r["channel"]) for r in page["rows"]]
        if not page["truncated"]:
            break
        params["start"] = page["next_start"]
    only_carbs = client.get("/v1/twins/p1/data", params={"channel": "carbs"}, headers=alice).json()

    # Assert
    assert len(seen) == len(set(seen)) == len(inside)
    assert set(seen) == inside
    assert seen == sorted(seen)
    assert {r["channel"] for r in only_carbs["rows"]} == {"carbs"}
    bad = client.get("/v1/twins/p1/data", params={"start": "soon"}, headers=alice)
    assert bad.status_code == 422
    assert bad.json()["error"]["problems"][0]["field"] == ["query", "start"]


def test_quarantine_lists_and_releases_only_the_twins_own_rows(
    client: TestClient, state_twin: StateTwinFn
) -> None:
    # Prepare: one implausible glucose value for Alice, one for Bob
    alice = state_twin("alice", "a1")
    bob = state_twin("bob", "b1")
    odd = {"time": "2026-01-05T00:00:00Z", "channel": "glucose", "value": 5000.0}
    fine = {"time": "2026-01-05T00:05:00Z", "channel": "glucose", "value": 110.0}
    held = client.post("/v1/twins/a1/observations", json={"rows": [odd, fine]}, headers=alice)
    client.post("/v1/twins/b1/observations", json={"rows": [odd]}, headers=bob)
    alices = client.get("/v1/twins/a1/quarantine", headers=alice).json()
    bobs = client.get("/v1/twins/b1/quarantine", headers=bob).json()

    # Execute
    stolen = client.post(
        "/v1/twins/b1/quarantine/release", json={"ids": [alices[0]["id"]]}, headers=bob
    )
    released = client.post(
        "/v1/twins/a1/quarantine/release", json={"ids": [alices[0]["id"]]}, headers=alice
    )
    twice = client.post(
        "/v1/twins/a1/quarantine/release", json={"ids": [alices[0]["id"]]}, headers=alice
    )

    # Assert
    assert held.json()["n_quarantined"] == 1
    assert held.json()["quarantine_reasons"] == {"out_of_range": 1}
    assert len(alices) == len(bobs) == 1
    assert alices[0]["record"]["twin_id"] == "a1"
    assert stolen.status_code == 404
    assert released.json() == {"released": 1}
    assert twice.status_code == 409
    values = [r["value"] for r in client.get("/v1/twins/a1/data", headers=alice).json()["rows"]]
    assert values == [5000.0, 110.0]
    assert client.get("/v1/twins/a1/quarantine", headers=alice).json() == []
    assert len(client.get("/v1/twins/b1/quarantine", headers=bob).json()) == 1


def test_history_is_this_twins_since_it_was_created(
    client: TestClient, state_twin: StateTwinFn, glucose_rows: list[dict[str, Any]]
) -> None:
    # Prepare: Alice's twin with data, deleted; then Bob creates a twin with the same id
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows[:10]}, headers=alice)
    assert client.delete("/v1/twins/p1", headers=alice).status_code == 204
    bob = state_twin("bob", "p1")

    # Execute
    history = client.get("/v1/twins/p1/history", headers=bob).json()
    gone = client.get("/v1/twins/p1/history", headers=alice)

    # Assert
    assert [e["event"] for e in history] == ["twin_created"]
    assert history[0]["payload"]["owner"] == "bob"
    assert gone.status_code == 404


def test_channels_default_to_known_ranges_and_can_be_given(
    client: TestClient, new_owner: Callable[[str], Headers]
) -> None:
    alice = new_owner("alice")
    body = {
        "id": "p1",
        "kind": "state",
        "channels": [
            {"name": "glucose"},
            {"name": "steps", "unit": "n", "low": 0, "high": 5e4},
            {"name": "mood"},
        ],
    }
    made = client.post("/v1/twins", json=body, headers=alice).json()
    assert made["channels"] == [
        {"name": "glucose", "unit": "mg/dL", "low": 10.0, "high": 1000.0},
        {"name": "steps", "unit": "n", "low": 0.0, "high": 50000.0},
        {"name": "mood", "unit": "", "low": None, "high": None},
    ]
    empty = {**body, "id": "p2", "channels": [{"name": "x", "low": 5, "high": 1}]}
    refused = client.post("/v1/twins", json=empty, headers=alice)
    assert refused.status_code == 422
    assert refused.json()["error"]["type"] == "InvalidTwinError"
    assert client.post("/v1/twins", json=body, headers=alice).status_code == 409
