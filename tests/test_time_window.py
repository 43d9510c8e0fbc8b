"""The plausible time window at ingest, twins whose stored data lie outside it, retraction.

Regression tests of issue #16's first defect: a year-9999 reading broke a twin for good
(500s, a 23 GB refit, everyone's population prior), a year-0001 reading broke fits, and
``"now"`` was stored as the server's clock time (again at every retry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import ImplausibleDataError, TwinkitError, ValidationError
from twinkit.core.timewindow import TimeWindow
from twinkit.engine import TwinEngine
from twinkit.screen import DEFAULT_SIGNAL_SCREENS, FutureTime
from twinkit.store import observations, tables, twins
from twinkit.store.timeutil import to_micros

Snapshot = dict[str, list[tuple[Any, ...]]]
SnapshotFn = Callable[[TwinEngine], Snapshot]
TINY_GRU = {"hidden": 8, "epochs": 2, "context_min": 60, "batch_size": 128, "max_horizon_min": 30}


def readings(n: int = 600, start: str = "2026-01-01", twin: str | None = None) -> pd.DataFrame:
    times = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    frame = pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": "glucose",
            "value": 120.0 + 25.0 * np.sin(np.arange(n) / 24.0),
        }
    )
    return frame if twin is None else frame.assign(twin_id=twin)


def one(time: str, value: float = 120.0) -> pd.DataFrame:
    return pd.DataFrame({"time": [time], "channel": ["glucose"], "value": [value]})


def store_raw_reading(engine: TwinEngine, twin_id: str, micros: int, value: float) -> None:
    """A row written before the window was enforced: straight into the store, with a
    ledger-less batch of its own (``ledger verify`` is not the point of these tests)."""
    with engine.store.write() as conn:
        key = engine.get_twin(twin_id).key
        channel_id = int(twins.channels_of(conn, [key])["id"].iloc[0])
        batch_id = observations.insert_batch(
            conn,
            content_hash=f"legacy-{micros}",
            active=1,
            kind="signals",
            source="legacy",
            twins=f'["{twin_id}"]',
            n_rows=1,
            n_stored=1,
            n_quarantined=0,
            n_duplicates=0,
            created_at="2026-01-01T00:00:00+00:00",
        )
        conn.execute(
            tables.observations.insert().values(
                channel_id=channel_id, t=micros, value=value, batch_id=batch_id
            )
        )


YEAR_9999 = int(to_micros(pd.DatetimeIndex([pd.Timestamp("9999-12-31T23:59:59", tz="UTC")]))[0])


@pytest.mark.parametrize("word", ["now", "today", " Now ", "yesterday"])
def test_clock_words_reject_the_batch(engine: TwinEngine, snapshot: SnapshotFn, word: str) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    before = snapshot(engine)

    with pytest.raises(ValidationError) as caught:
        engine.ingest(pd.concat([readings(3), one(word)], ignore_index=True), twin="p1")

    problem = caught.value.problems[0]
    assert (problem.row, problem.column) == (4, "time")
    assert "not an ISO-8601 time" in problem.message
    assert snapshot(engine) == before


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
def test_times_before_the_window_reject_the_batch(
    engine: TwinEngine, snapshot: SnapshotFn, time: str
) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    before = snapshot(engine)

    with pytest.raises(ValidationError, match="earliest plausible time") as caught:
        engine.ingest(pd.concat([one(time), readings(3)], ignore_index=True), twin="p1")

    assert (caught.value.problems[0].row, caught.value.problems[0].column) == (1, "time")
    assert snapshot(engine) == before


def test_the_earliest_time_is_configurable(db_url: str) -> None:
    engine = TwinEngine(db_url, time_window=TimeWindow(earliest=datetime(2000, 1, 1, tzinfo=UTC)))
    engine.create_twin("p1", "state", channels=["glucose"])

    with pytest.raises(ValidationError, match="before 2000-01-01T00:00:00Z"):
        engine.ingest(one("1999-06-01T00:00:00Z"), twin="p1")
    assert engine.ingest(one("2000-06-01T00:00:00Z"), twin="p1").n_stored == 1
    engine.store.dispose()


def test_future_readings_are_held_not_stored(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    soon = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch = pd.concat(
        [readings(5), one("9999-12-31T23:59:59Z"), one("2200-01-01T00:00:00Z"), one(soon)],
        ignore_index=True,
    )

    result = engine.ingest(batch, twin="p1")

    # Ten minutes ahead is clock skew (the default tolerance is an hour); the rest is held.
    assert (result.n_stored, result.n_quarantined) == (6, 2)
    assert result.quarantine_reasons == {"future_time": 2}
    held = engine.quarantine("p1")
    assert all("in the future" in row["reason"] for row in held)
    assert "9999-12-31T23:59:59Z" in held[0]["reason"] + held[1]["reason"]
    assert engine.signals("p1").index.max() < pd.Timestamp("2100-01-01", tz="UTC")
    with pytest.raises(TwinkitError, match="still in the future"):
        engine.release([held[0]["id"]])
    assert engine.verify().ok


def test_a_held_future_reading_is_released_once_its_time_has_come(db_url: str) -> None:
    # The screen's clock says 2026-01-01; the reading of 2026-01-02 is in its future.
    clock = FutureTime(now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    engine = TwinEngine(db_url, signal_screens=(clock, *DEFAULT_SIGNAL_SCREENS))
    engine.create_twin("p1", "state", channels=["glucose"])
    assert engine.ingest(one("2026-01-02T00:00:00Z"), twin="p1").n_quarantined == 1

    # The real clock, used by release, is past it.
    assert engine.release([engine.quarantine("p1")[0]["id"]]) == 1

    assert len(engine.signals("p1")) == 1
    assert engine.verify().ok
    engine.store.dispose()


def test_a_twin_with_stored_implausible_times_gets_a_clear_error(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    engine.ingest(readings(600), twin="p1")
    store_raw_reading(engine, "p1", YEAR_9999, 120.0)

    with pytest.raises(ImplausibleDataError, match="9999-12-31T23:59:59Z") as caught:
        engine.fit("p1", model="linear_ar")
    assert "retract" in str(caught.value)
    with pytest.raises(ImplausibleDataError):
        engine.signals("p1")
    results, failures = engine.fit_cohort(["p1"], model="linear_ar")
    assert results == []
    assert "outside the plausible time window" in failures["p1"]


def test_a_served_forecast_of_a_twin_with_implausible_times_is_a_clear_error(
    engine: TwinEngine,
) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    engine.ingest(readings(600), twin="p1")
    engine.fit("p1", model="linear_ar")
    store_raw_reading(engine, "p1", YEAR_9999, 120.0)

    with pytest.raises(ImplausibleDataError):
        engine.forecast("p1", (30,))
    with pytest.raises(ImplausibleDataError):
        engine.predict("p1", (30,))


def test_one_bad_twin_does_not_stop_the_population_prior(engine: TwinEngine) -> None:
    for twin_id in ("good-1", "good-2", "bad"):
        engine.create_twin(twin_id, "state", channels=["glucose"])
        engine.ingest(readings(400), twin=twin_id)
    store_raw_reading(engine, "bad", YEAR_9999, 120.0)

    result = engine.fit_population("gru", params=TINY_GRU)

    assert result.twins == ["local/good-1", "local/good-2"]  # by owner/id
    assert "outside the plausible time window" in result.skipped["local/bad"]


def test_retracting_a_time_range_hides_the_rows_from_the_next_fit(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    engine.ingest(readings(600), twin="p1")
    store_raw_reading(engine, "p1", YEAR_9999, 120.0)

    result = engine.retract("p1", "a device clock error", start=pd.Timestamp("2100-01-01T00:00Z"))
    fit = engine.fit("p1", model="linear_ar")

    assert result.n_retracted == 1
    assert fit.promoted
    registered = [e for e in engine.history("p1") if e.event == "model_registered"][-1]
    assert registered.payload["rows_seen"] == 600
    entry = [e for e in engine.history("p1") if e.event == "rows_retracted"][-1]
    assert entry.payload["reason"] == "a device clock error"
    assert entry.payload["n_retracted"] == 1
    assert entry.payload["what"] == {"start": "2100-01-01T00:00:00Z"}


def test_retracting_a_batch_keeps_the_ledger_verifying(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state", channels=["glucose", "carbs"])
    first = engine.ingest(readings(100), twin="p1")
    engine.ingest(readings(100, start="2026-02-01"), twin="p1")
    seq_before = len(engine.history())

    result = engine.retract("p1", "wrong patient's file", batch_id=first.batch_id)

    assert result.n_retracted == 100
    assert result.batches == {str(first.batch_id): 100}
    assert len(engine.signals("p1")) == 100
    assert engine.signals("p1").index.min() >= pd.Timestamp("2026-02-01", tz="UTC")
    assert len(engine.history()) == seq_before + 1  # appended, nothing rewritten
    assert engine.verify().ok, engine.verify().problems
    # The same file again is a no-op: the retraction stands.
    assert engine.ingest(readings(100), twin="p1").already_ingested


def test_retracting_one_channel_in_a_range_leaves_the_rest(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state", channels=["glucose", "carbs"])
    carbs = readings(10).assign(channel="carbs", value=20.0)
    engine.ingest(pd.concat([readings(10), carbs], ignore_index=True), twin="p1")

    result = engine.retract(
        "p1",
        "carbs logged twice",
        start=pd.Timestamp("2026-01-01T00:10Z"),
        end=pd.Timestamp("2026-01-01T00:20Z"),
        channels=["carbs"],
    )

    assert result.n_retracted == 3
    frame = engine.signals("p1")
    assert frame["glucose"].notna().sum() == 10
    assert frame["carbs"].notna().sum() == 7
    assert engine.verify().ok


def test_retracting_decisions_by_item(engine: TwinEngine) -> None:
    engine.create_twin("d1", "decision")
    frame = pd.DataFrame(
        {"item_id": ["a", "b", "c"], "x": [0.1, 0.5, 0.9], "label": ["no", "no", "yes"]}
    )
    engine.ingest(frame, twin="d1")

    result = engine.retract("d1", "mislabelled", items=["b"])

    assert result.n_retracted == 1
    assert list(engine.decisions("d1")["item_id"]) == ["a", "c"]
    assert engine.verify().ok


def test_a_retraction_must_name_its_rows_and_reason(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state", channels=["glucose"])
    engine.ingest(readings(10), twin="p1")

    with pytest.raises(TwinkitError, match="name the rows"):
        engine.retract("p1", "everything")
    with pytest.raises(TwinkitError, match="name the rows"):
        engine.retract("p1", "a channel alone", channels=["glucose"])
    with pytest.raises(TwinkitError, match="reason"):
        engine.retract("p1", "  ", batch_id=1)
    with pytest.raises(TwinkitError, match="state twin"):
        engine.retract("p1", "items", items=["x"])
    with pytest.raises(TwinkitError, match="no twin"):
        engine.retract("nobody", "x", batch_id=1)
    with pytest.raises(TwinkitError, match="no batch"):
        engine.retract("p1", "no store holds this id", batch_id=10**30)
    nothing = engine.retract("p1", "no such rows", start=pd.Timestamp("2030-01-01T00:00Z"))
    assert nothing.n_retracted == 0
    assert not [e for e in engine.history("p1") if e.event == "rows_retracted"]
