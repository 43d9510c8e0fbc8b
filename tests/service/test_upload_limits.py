"""Upload limits over HTTP: a file with too many rows, columns or cells answers 413, names
the setting, and stores nothing; JSON rows obey the same row limit."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from twinkit.engine import TwinEngine
from twinkit.service import ServiceSettings
from twinkit.service.schemas import MAX_ROWS_PER_REQUEST
from twinkit.service.state import ServiceState

Headers = dict[str, str]
MakeClientFn = Callable[..., TestClient]
Snapshot = dict[str, list[tuple[Any, ...]]]


def _upload(client: TestClient, twin_id: str, name: str, content: bytes, headers: Headers) -> Any:
    files = {"file": (name, content, "application/octet-stream")}
    return client.post(f"/v1/twins/{twin_id}/observations/upload", files=files, headers=headers)


def _owner_with_twin(client: TestClient, admin: Headers, twin_id: str, kind: str) -> Headers:
    answer = client.post("/v1/owners", json={"name": "alice"}, headers=admin)
    assert answer.status_code == 201, answer.text
    headers = {"Authorization": f"Bearer {answer.json()['token']}"}
    created = client.post("/v1/twins", json={"id": twin_id, "kind": kind}, headers=headers)
    assert created.status_code == 201, created.text
    return headers


def _readings(n: int) -> pd.DataFrame:
    times = pd.date_range("2026-01-01", periods=n, freq="1min")
    return pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "channel": "glucose", "value": 100.0}
    )


def test_the_upload_row_limit_is_the_json_routes_by_default() -> None:
    default = ServiceSettings.model_fields["max_upload_rows"].default
    assert default == MAX_ROWS_PER_REQUEST == 100_000


def test_a_parquet_bomb_answers_413_and_stores_nothing(
    client: TestClient,
    service: ServiceState,
    admin: Headers,
    snapshot: Callable[[TwinEngine], Snapshot],
) -> None:
    # Prepare: 100,001 identical readings, a few KiB of Parquet, under the default limits
    alice = _owner_with_twin(client, admin, "p1", "state")
    bomb = io.BytesIO()
    _readings(1).loc[np.zeros(100_001, dtype=int)].to_parquet(bomb, index=False)
    before = snapshot(service.engine)

    # Execute
    answer = _upload(client, "p1", "bomb.parquet", bomb.getvalue(), alice)

    # Assert
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error["type"] == "TooLargeError"
    assert error["message"].startswith(
        "api:alice:bomb.parquet: the upload has more than 100000 rows "
        "(the limit, TWINKIT_MAX_UPLOAD_ROWS)"
    )
    assert snapshot(service.engine) == before


def test_a_decisions_file_wider_than_the_column_limit_answers_413(
    client: TestClient, admin: Headers
) -> None:
    # Prepare: item_id, 1,999 features, label: 2,001 columns against the default 2,000
    alice = _owner_with_twin(client, admin, "d1", "decision")
    names = ",".join(f"f{j}" for j in range(1_999))
    values = ",".join("0.5" for _ in range(1_999))
    csv = f"item_id,{names},label\ni1,{values},yes\n".encode()

    # Execute
    answer = _upload(client, "d1", "wide.csv", csv, alice)

    # Assert
    assert answer.status_code == 413, answer.text
    message = answer.json()["error"]["message"]
    assert "more than 2000 columns (the limit, TWINKIT_MAX_UPLOAD_COLUMNS)" in message


def test_each_format_obeys_the_row_and_cell_limits_of_the_settings(
    make_client: MakeClientFn, admin: Headers
) -> None:
    # Prepare: 20 readings (3 columns, 60 cells) in each format
    client = make_client(max_upload_rows=20, max_upload_cells=60)
    alice = _owner_with_twin(client, admin, "p1", "state")
    frame = _readings(21)
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    files = {
        "rows.csv": frame.to_csv(index=False).encode(),
        "rows.parquet": parquet.getvalue(),
        "rows.jsonl": frame.to_json(orient="records", lines=True).encode(),
    }
    with_twin = frame.assign(twin_id="p1").head(20).to_csv(index=False).encode()

    # Execute
    answers = {name: _upload(client, "p1", name, raw, alice) for name, raw in files.items()}
    cells = _upload(client, "p1", "cells.csv", with_twin, alice)  # 20 rows, 4 columns
    fits = _upload(client, "p1", "fits.csv", frame.head(20).to_csv(index=False).encode(), alice)

    # Assert
    for name, answer in answers.items():
        assert answer.status_code == 413, (name, answer.text)
        assert "(the limit, TWINKIT_MAX_UPLOAD_ROWS)" in answer.json()["error"]["message"]
    assert cells.status_code == 413, cells.text
    message = cells.json()["error"]["message"]
    assert "more than 60 cells (the limit, TWINKIT_MAX_UPLOAD_CELLS)" in message
    assert fits.status_code == 200, fits.text
    assert fits.json()["n_stored"] == 20


def test_json_rows_obey_the_same_row_limit(make_client: MakeClientFn, admin: Headers) -> None:
    # Prepare
    client = make_client(max_upload_rows=10)
    alice = _owner_with_twin(client, admin, "p1", "state")
    rows = _readings(11).to_dict(orient="records")

    # Execute
    over = client.post("/v1/twins/p1/observations", json={"rows": rows}, headers=alice)
    within = client.post("/v1/twins/p1/observations", json={"rows": rows[:10]}, headers=alice)

    # Assert
    assert over.status_code == 413, over.text
    message = over.json()["error"]["message"]
    assert "more than 10 rows (the limit, TWINKIT_MAX_UPLOAD_ROWS)" in message
    assert within.status_code == 200, within.text
