"""Served models and forecast answers are cached per process, yet never stale: new data,
a release from quarantine, a deleted twin, a promotion or rollback each change what the
next forecast answers, and whatever changes an artifact after its model was cached, the
next forecast fails over, degraded."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from twinkit.core.errors import IntegrityError
from twinkit.data.windows import to_grid
from twinkit.engine import TwinEngine
from twinkit.engine.model_cache import ModelCache
from twinkit.models.linear_ar import LinearAR
from twinkit.service.state import ServiceState
from twinkit.store import tables
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store

Headers = dict[str, str]
StateTwinFn = Callable[[str, str], Headers]
SETTLE_S = 0.05  # short, so that the tests need not wait long before a model is cached


def _artifact(store: ArtifactStore, seed: int) -> str:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-01", periods=200, freq="5min", tz="UTC")
    frame = pd.DataFrame({"glucose": 120 + np.cumsum(rng.normal(0, 2, 200))}, index=index)
    return store.save(*LinearAR(lags=4, max_horizon_min=30).fit(frame).get_state())


def _flip_one_byte(path: Path) -> None:
    """Damage the file in place: same inode, same size."""
    with path.open("r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))


@pytest.fixture
def served(
    client: TestClient,
    service: ServiceState,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
) -> tuple[Headers, Path]:
    """Twin p1 with v1 (linear_ar) and v2 (persistence, serving), v2's model cached by a
    first forecast; alice's headers and v2's artifact file."""
    alice = state_twin("alice", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    engine = service.engine
    engine.serving_models = ModelCache(engine.artifacts, settle_s=SETTLE_S)
    # v1: linear_ar as first released (scheme 1: 12 lags, no selection), which
    # persistence beats on these readings; today's linear_ar would beat persistence
    engine.fit("p1", model="linear_ar", params={"scheme": 1, "lags": 12})
    assert engine.fit("p1", model="persistence").promoted
    time.sleep(2 * SETTLE_S)  # the artifact has settled: its model may be cached
    first = client.get("/v1/twins/p1/forecast", headers=alice)
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["degraded"]) == (2, False)
    assert service.forecasts.stats()["size"] == 1  # the answer is cached from now on
    # The served forecast's log record is scored against the shadow (v1), whose model is
    # loaded when the record is flushed: by the monitor's thread, at its own pace, or here.
    # Either way it is loaded before a test counts the models.
    engine.flush_forecast_log()
    deadline = time.monotonic() + 30
    while engine.serving_models.stats()["size"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return alice, engine.artifacts.path(engine.version("p1").sha256)


def _forecast(client: TestClient, headers: Headers) -> dict[str, Any]:
    answer = client.get("/v1/twins/p1/forecast", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_repeated_forecasts_are_answered_from_the_forecast_cache(
    client: TestClient, service: ServiceState, served: tuple[Headers, Path]
) -> None:
    # Prepare
    alice, _ = served
    models_before = service.engine.serving_models.stats()
    answers_before = service.forecasts.stats()

    # Execute
    bodies = [_forecast(client, alice) for _ in range(3)]

    # Assert: three answers from the cache, no model touched, the same answer each time
    answers_after = service.forecasts.stats()
    assert answers_after["hits"] == answers_before["hits"] + 3
    assert answers_after["misses"] == answers_before["misses"]
    assert service.engine.serving_models.stats() == models_before
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["degraded"] is False


def test_other_horizons_are_another_answer(
    client: TestClient, service: ServiceState, served: tuple[Headers, Path]
) -> None:
    alice, _ = served
    default = _forecast(client, alice)

    other = client.get("/v1/twins/p1/forecast", params={"horizons": [15]}, headers=alice).json()

    assert [f["horizon_min"] for f in default["forecasts"]] == [30, 60]
    assert [f["horizon_min"] for f in other["forecasts"]] == [15]
    assert service.forecasts.stats()["size"] == 2


def _last_time(rows: list[dict[str, Any]]) -> pd.Timestamp:
    return max(pd.Timestamp(r["time"]) for r in rows if r["channel"] == "glucose")


def test_new_data_is_forecast_from_at_once(
    client: TestClient, served: tuple[Headers, Path], glucose_rows: list[dict[str, Any]]
) -> None:
    # Prepare: a cached answer from the last reading
    alice, _ = served
    last = _last_time(glucose_rows)
    cached = _forecast(client, alice)
    assert pd.Timestamp(cached["origin"]) == last
    later = last + pd.Timedelta(minutes=5)
    reading = {"time": later.isoformat(), "channel": "glucose", "value": 222.0}

    # Execute
    stored = client.post("/v1/twins/p1/observations", json={"rows": [reading]}, headers=alice)
    body = _forecast(client, alice)

    # Assert: the new reading is the origin, and persistence forecasts it
    assert stored.json()["n_stored"] == 1
    assert pd.Timestamp(body["origin"]) == later
    assert body["forecasts"][0]["median"] == pytest.approx(222.0, abs=5.0)
    assert cached["forecasts"][0]["median"] != pytest.approx(222.0, abs=5.0)


def test_a_release_from_quarantine_is_forecast_from_at_once(
    client: TestClient,
    service: ServiceState,
    served: tuple[Headers, Path],
    glucose_rows: list[dict[str, Any]],
) -> None:
    # Prepare: an implausible reading held in quarantine leaves the cached answer valid
    alice, _ = served
    later = _last_time(glucose_rows) + pd.Timedelta(minutes=5)
    odd = {"time": later.isoformat(), "channel": "glucose", "value": 5000.0}
    held = client.post("/v1/twins/p1/observations", json={"rows": [odd]}, headers=alice)
    assert held.json()["n_quarantined"] == 1
    hits = service.forecasts.stats()["hits"]
    before = _forecast(client, alice)
    assert service.forecasts.stats()["hits"] == hits + 1
    assert pd.Timestamp(before["origin"]) < later
    quarantined = client.get("/v1/twins/p1/quarantine", headers=alice).json()

    # Execute
    client.post(
        "/v1/twins/p1/quarantine/release", json={"ids": [quarantined[0]["id"]]}, headers=alice
    )
    body = _forecast(client, alice)

    # Assert
    assert pd.Timestamp(body["origin"]) == later
    assert body["forecasts"][0]["median"] == pytest.approx(5000.0, abs=50.0)


def test_a_deleted_twin_answers_404_even_to_its_former_owner(
    client: TestClient,
    state_twin: StateTwinFn,
    served: tuple[Headers, Path],
    glucose_rows: list[dict[str, Any]],
) -> None:
    # Prepare: alice's cached answer; her twin deleted, the id taken by bob's new twin
    alice, _ = served

    # Execute
    assert client.delete("/v1/twins/p1", headers=alice).status_code == 204
    gone = client.get("/v1/twins/p1/forecast", headers=alice)
    bob = state_twin("bob", "p1")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows[:60]}, headers=bob)
    taken = client.get("/v1/twins/p1/forecast", headers=alice)

    # Assert: 404 both times, exactly as for a twin that never existed
    never = client.get("/v1/twins/nobody/forecast", headers=alice)
    assert gone.status_code == taken.status_code == never.status_code == 404
    assert (
        gone.json()
        == taken.json()
        == {"error": {**never.json()["error"], "message": "no twin 'p1'"}}
    )


def test_a_rollback_and_a_promotion_change_the_answer(
    client: TestClient, service: ServiceState, served: tuple[Headers, Path]
) -> None:
    # Prepare: v2 (persistence) answers from the cache
    alice, _ = served
    assert _forecast(client, alice)["version"] == 2

    # Execute
    rolled = client.post("/v1/twins/p1/models/rollback", headers=alice)
    after_rollback = _forecast(client, alice)
    service.engine.promote("p1", 2)
    after_promotion = _forecast(client, alice)

    # Assert
    assert rolled.json()["version"] == 1
    assert (after_rollback["version"], after_rollback["model"]) == (1, "linear_ar")
    assert (after_promotion["version"], after_promotion["model"]) == (2, "persistence")


def test_a_degraded_answer_is_not_kept(
    client: TestClient, service: ServiceState, served: tuple[Headers, Path]
) -> None:
    # Prepare
    alice, artifact = served
    _flip_one_byte(artifact)
    size = service.forecasts.stats()["size"]

    # Execute
    bodies = [_forecast(client, alice) for _ in range(2)]

    # Assert: both degraded, both computed, one failover entry
    assert [b["degraded"] for b in bodies] == [True, True]
    assert service.forecasts.stats()["size"] == size
    history = client.get("/v1/twins/p1/history", headers=alice).json()
    assert [e["event"] for e in history].count("serving_failover") == 1


def _data_batch(engine: TwinEngine, twin_id: str) -> int | None:
    with engine.store.read() as conn:
        key = engine.get_twin(twin_id).key
        row = conn.execute(tables.twins.select().where(tables.twins.c.id == key)).first()
    assert row is not None
    return None if row.data_batch is None else int(row.data_batch)


def test_the_data_watermark_moves_with_every_write_of_a_twins_signals(
    engine: TwinEngine,
) -> None:
    # Prepare
    engine.create_twin("w1", "state", channels=["glucose"])
    engine.create_twin("w2", "state", channels=["glucose"])
    index = pd.date_range("2026-01-01", periods=3, freq="5min", tz="UTC")
    rows = pd.DataFrame({"twin_id": "w1", "time": index, "channel": "glucose", "value": 100.0})
    fresh = _data_batch(engine, "w1")

    # Execute and Assert: an ingest moves it, for the twin it wrote only
    first = engine.ingest(rows)
    assert (fresh, _data_batch(engine, "w1"), _data_batch(engine, "w2")) == (
        None,
        first.batch_id,
        None,
    )
    odd = rows.iloc[:1].assign(time=index[-1] + pd.Timedelta(minutes=5), value=5000.0)
    held = engine.ingest(odd)
    assert held.n_stored == 0 and _data_batch(engine, "w1") == first.batch_id
    released = [q["id"] for q in engine.quarantine("w1")]
    engine.release(released)
    after_release = _data_batch(engine, "w1")
    assert after_release is not None and after_release > (first.batch_id or 0)
    both = pd.concat([rows.assign(twin_id="w2"), rows.assign(twin_id="w1", value=101.0)])
    engine.ingest(both.assign(time=both["time"] + pd.Timedelta(hours=1)))
    assert _data_batch(engine, "w1") == _data_batch(engine, "w2") != after_release


def test_a_store_of_schema_4_gains_the_later_columns_on_open(tmp_path: Path) -> None:
    # Prepare: a store as version 4 wrote it, with a twin in it
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = TwinEngine(url)
    engine.create_twin("old", "state", channels=["glucose"])
    with engine.store.write() as conn:
        for later in (  # what versions 5, 6 and 7 changed
            "PRAGMA defer_foreign_keys=ON",
            "UPDATE twins SET id = 'old'",  # ids were the keys
            "UPDATE channels SET twin_id = 'old'",
            "DROP INDEX ux_twins_owner_name",
            "DROP INDEX ix_twins_name",
            "ALTER TABLE twins DROP COLUMN name",
            "ALTER TABLE population_models DROP COLUMN owners",
            "DROP TABLE population_sharing",
            "DROP INDEX ux_twins_uid",
            "DROP INDEX ix_jobs_twin_uid",
            "ALTER TABLE twins DROP COLUMN uid",
            "ALTER TABLE jobs DROP COLUMN twin_uid",
            "DROP TABLE sessions",
            "ALTER TABLE twins DROP COLUMN data_batch",
            "ALTER TABLE model_versions DROP COLUMN live_band",  # what version 10 added
            "ALTER TABLE forecast_log DROP COLUMN band_scale",
            "DROP TABLE population_withdrawn",  # what version 11 added
        ):
            conn.exec_driver_sql(later)
        conn.execute(
            tables.meta.update().where(tables.meta.c.key == "schema_version").values(value="4")
        )
    engine.store.dispose()

    # Execute
    reopened = Store(url)

    # Assert
    with reopened.read() as conn:
        version = conn.execute(
            tables.meta.select().where(tables.meta.c.key == "schema_version")
        ).first()
        row = conn.execute(tables.twins.select()).first()
    assert version is not None and version.value == str(tables.SCHEMA_VERSION) == "11"
    assert row is not None and (row.id, row.data_batch) == ("old", None)
    assert len(row.uid) == 32
    # schema 8's indexes of the shared job queue
    indexes = {i["name"] for i in sa.inspect(reopened.engine).get_indexes("jobs")}
    assert {"ix_jobs_status_runner", "ix_jobs_owner_started"} <= indexes
    # schema 9's forecast log, with its index
    indexes = {i["name"] for i in sa.inspect(reopened.engine).get_indexes("forecast_log")}
    assert "ix_forecast_log_target" in indexes
    # schema 11's withdrawn priors
    assert "population_withdrawn" in sa.inspect(reopened.engine).get_table_names()
    # schema 10's live band, added to tables that were there already
    columns = {c["name"] for c in sa.inspect(reopened.engine).get_columns("forecast_log")}
    assert "band_scale" in columns
    columns = {c["name"] for c in sa.inspect(reopened.engine).get_columns("model_versions")}
    assert "live_band" in columns
    reopened.dispose()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_flip_one_byte, id="one byte flipped in place"),
        pytest.param(lambda p: p.write_bytes(b"not what was registered"), id="rewritten"),
        pytest.param(Path.unlink, id="removed"),
    ],
)
def test_damage_to_a_cached_artifact_still_fails_over(
    client: TestClient, served: tuple[Headers, Path], damage: Callable[[Path], Any]
) -> None:
    # Prepare
    alice, artifact = served

    # Execute
    damage(artifact)
    body = _forecast(client, alice)

    # Assert: answered by v1, degraded, and the ledger says so
    assert (body["version"], body["model"], body["degraded"]) == (1, "linear_ar", True)
    assert "serving v2 (persistence)" in body["degraded_reason"]
    history = client.get("/v1/twins/p1/history", headers=alice).json()
    failovers = [e for e in history if e["event"] == "serving_failover"]
    assert [f["payload"]["version"] for f in failovers] == [2]


def test_damage_hidden_by_restoring_the_file_times_is_still_caught(
    client: TestClient, served: tuple[Headers, Path]
) -> None:
    # Prepare: damage in place, then put back the modification time it had
    alice, artifact = served
    stat = artifact.stat()
    _flip_one_byte(artifact)
    os.utime(artifact, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (artifact.stat().st_size, artifact.stat().st_mtime_ns) == (
        stat.st_size,
        stat.st_mtime_ns,
    )

    # Execute
    body = _forecast(client, alice)

    # Assert: the change time moved, so the artifact was checked again
    assert (body["version"], body["degraded"]) == (1, True)


def test_a_restored_artifact_serves_again_without_degradation(
    client: TestClient, served: tuple[Headers, Path]
) -> None:
    # Prepare: damaged, failed over, then the original bytes put back
    alice, artifact = served
    original = artifact.read_bytes()
    _flip_one_byte(artifact)
    assert _forecast(client, alice)["degraded"] is True

    # Execute
    artifact.write_bytes(original)
    body = _forecast(client, alice)

    # Assert
    assert (body["version"], body["degraded"]) == (2, False)


def test_the_cache_keeps_at_most_its_capacity_least_recently_used_out(tmp_path: Path) -> None:
    # Prepare
    store = ArtifactStore(tmp_path)
    a, b, c = (_artifact(store, seed) for seed in range(3))
    time.sleep(2 * SETTLE_S)
    cache = ModelCache(store, capacity=2, settle_s=SETTLE_S)

    # Execute: a, b, a (a is now the most recent), c (evicts b)
    for sha in (a, b, a, c):
        cache.load(sha)
    size_after = cache.stats()["size"]
    first_a = cache.load(a)
    misses = cache.stats()["misses"]
    cache.load(b)

    # Assert
    assert size_after == 2
    assert cache.stats()["misses"] == misses + 1  # b had to be loaded again
    assert misses == 3  # a was still cached
    assert cache.load(a) is first_a  # c was evicted by b, not a


def test_a_file_changed_just_before_its_check_is_checked_again_next_time(
    tmp_path: Path,
) -> None:
    # Prepare: a file written moments ago, which a same-tick change could leave looking alike
    store = ArtifactStore(tmp_path)
    sha = _artifact(store, 0)
    cache = ModelCache(store, settle_s=60.0)

    # Execute
    cache.load(sha)
    cache.load(sha)

    # Assert
    assert cache.stats() == {"hits": 0, "misses": 2, "size": 0}


def test_a_missing_artifact_raises_the_stores_integrity_error(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha = _artifact(store, 0)
    store.path(sha).unlink()

    with pytest.raises(IntegrityError, match="is missing"):
        ModelCache(store).load(sha)


def test_a_capacity_of_zero_keeps_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha = _artifact(store, 0)
    time.sleep(2 * SETTLE_S)
    cache = ModelCache(store, capacity=0, settle_s=SETTLE_S)

    assert cache.load(sha) is not cache.load(sha)
    assert cache.stats()["size"] == 0


@pytest.mark.parametrize("unit", ["ns", "us"])
@pytest.mark.parametrize("step_min", [5.0, 1.0, 15.0])
def test_the_grid_of_regular_readings_equals_resampling(
    unit: Literal["ns", "us"], step_min: float
) -> None:
    # Prepare: readings one per step (the forecast path's shortcut) and with one missing
    rule = pd.Timedelta(minutes=step_min)
    index = pd.date_range("2026-01-01", periods=40, freq=rule, tz="UTC", unit=unit, name="time")
    values = np.random.default_rng(0).normal(120, 10, 40)
    regular = pd.DataFrame({"glucose": values}, index=index)
    gappy = regular.drop(index[20])

    for frame in (regular, gappy):
        # Execute
        grid = to_grid(frame, "glucose", covariates=(), step_min=step_min, max_gap_min=0)

        # Assert
        expected = frame["glucose"].resample(rule, origin="epoch").mean()
        pd.testing.assert_index_equal(grid.index, pd.DatetimeIndex(expected.index))
        assert grid.index.freq == pd.DatetimeIndex(expected.index).freq
        np.testing.assert_array_equal(grid.target, expected.to_numpy())
