"""Live accuracy (issue #18): every served forecast is logged with its previous version's
shadow, scored at ingest from the readings of the bin it forecast, and the incremental
scores equal a recomputation from the whole stored history, however the readings and
forecasts arrived (out of order, retracted, ingested again)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from twinkit.cli.testing import run
from twinkit.core.errors import TwinkitError
from twinkit.engine import TwinEngine
from twinkit.monitor import live_scores
from twinkit.store import tables

STEP_US = 5 * 60_000_000


def _person(n: int, seed: int) -> pd.DataFrame:
    """``n`` CGM readings every 5 minutes give or take 20 s (so they are binned), a wave
    plus noise, from 2026-01-01."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    times = times + pd.to_timedelta(rng.integers(-20, 21, n), unit="s")
    values = 120 + 35 * np.sin(np.arange(n) / 20.0) + rng.normal(0, 4, n)
    return pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "channel": "glucose", "value": values}
    )


def _log(engine: TwinEngine) -> pd.DataFrame:
    with engine.store.read() as conn:
        rows = conn.execute(sa.select(tables.forecast_log)).all()
    return pd.DataFrame(rows, columns=[c.name for c in tables.forecast_log.columns])


def _stored_readings(engine: TwinEngine) -> pd.DataFrame:
    o = tables.observations.c
    with engine.store.read() as conn:
        rows = conn.execute(sa.select(o.channel_id, o.t, o.value)).all()
    return pd.DataFrame(rows, columns=["channel_id", "t", "value"])


def _recomputed(log: pd.DataFrame, readings: pd.DataFrame) -> np.ndarray:
    """Each log row's realised value from scratch: the mean of its bin's stored readings."""
    out = np.full(len(log), np.nan)
    for i, row in enumerate(log.itertuples()):
        mine = readings[readings["channel_id"] == row.channel_id]
        inside = mine[(mine["t"] >= row.target_t) & (mine["t"] < row.target_end)]
        if len(inside):
            out[i] = inside["value"].mean()
    return out


def _fitted(engine: TwinEngine, data: pd.DataFrame, first: int) -> None:
    engine.create_twin("p1", "state")
    engine.ingest(data.iloc[:first], twin="p1")
    assert engine.fit("p1", model="linear_ar", seed=0).promoted


def test_incremental_scores_equal_a_recomputation_from_history(engine: TwinEngine) -> None:
    # Prepare: a fitted twin, then forecasts served between small batches of new readings,
    # some arriving late (a later batch first), one batch retracted and sent again.
    data = _person(800, seed=1)
    _fitted(engine, data, 576)
    rng = np.random.default_rng(2)
    k, held = 576, None
    while k < 760:
        engine.predict("p1", (15, 30, 60))
        size = int(rng.integers(1, 7))
        chunk = data.iloc[k : k + size]
        if held is None and rng.random() < 0.2:
            held = chunk  # arrives after the next one
        else:
            engine.ingest(chunk, twin="p1")
            if held is not None:
                engine.ingest(held, twin="p1")
                held = None
        k += size
    if held is not None:
        engine.ingest(held, twin="p1")
    start = pd.Timestamp(data["time"].iloc[700])
    end = pd.Timestamp(data["time"].iloc[710])
    engine.retract("p1", start=start, end=end, reason="sensor warm-up")
    engine.ingest(data.iloc[703:706], twin="p1", source="re-sent")

    # Execute
    log = _log(engine)
    expected = _recomputed(log, _stored_readings(engine))

    # Assert: the same realised value (or none) for every row, as from scratch
    assert len(log) > 100
    scored = np.isfinite(expected)
    assert 0.5 * len(log) < scored.sum() < len(log)  # the newest forecasts wait for readings
    np.testing.assert_array_equal(np.isfinite(log["realised"].to_numpy(float)), scored)
    np.testing.assert_allclose(log["realised"].to_numpy(float)[scored], expected[scored])
    # ... and health's figures are those of the recomputed values
    report = engine.health("p1", window_h=24 * 30)
    frame = log.assign(realised=expected)[scored]
    expected_scores = live_scores(frame)
    assert len(report["live"]) == len(expected_scores)
    for got, want in zip(report["live"], expected_scores, strict=True):
        assert got == pytest.approx(want)
    assert {s["horizon"] for s in report["live"]} == {15, 30, 60}


def test_shadow_is_the_previous_version_from_the_same_data(engine: TwinEngine) -> None:
    data = _person(700, seed=3)
    _fitted(engine, data, 576)
    second = engine.fit("p1", model="persistence")
    engine.promote("p1", second.version) if not second.promoted else None
    assert engine.version("p1").version == 2

    served = engine.predict("p1", (30, 60))
    again = engine.predict("p1", (30, 60))  # the same forecast: logged once
    engine.predict("p1", (30, 60), as_of=served.origin - pd.Timedelta(hours=1))  # a backtest

    log = _log(engine)
    assert served.mean.tolist() == again.mean.tolist()
    assert sorted(zip(log["version"], log["role"], log["horizon"], strict=True)) == [
        (1, "shadow", 30),
        (1, "shadow", 60),
        (2, "served", 30),
        (2, "served", 60),
    ]
    # the shadow is what v1 says from the data up to the served forecast's origin bin
    v1 = engine.predict(
        "p1", (30, 60), version=1, as_of=served.origin + pd.Timedelta(minutes=5, microseconds=-1)
    )
    shadow = log[log["role"] == "shadow"].sort_values("horizon")
    np.testing.assert_allclose(shadow["mean"].to_numpy(float), v1.mean)
    assert set(shadow["origin_t"]) == set(log[log["role"] == "served"]["origin_t"])

    engine.ingest(data.iloc[576:640], twin="p1")
    report = engine.health("p1")
    assert report["shadow_version"] == 1
    assert [(s["version"], s["role"]) for s in report["live"]] == [
        (1, "shadow"),
        (1, "shadow"),
        (2, "served"),
        (2, "served"),
    ]
    assert report["serving"]["holdout"]["rmse_30"] > 0


def test_deleting_the_twin_forgets_its_log(engine: TwinEngine) -> None:
    data = _person(640, seed=4)
    _fitted(engine, data, 576)
    engine.predict("p1")
    assert len(_log(engine)) == 2

    engine.delete_twin("p1")
    engine.create_twin("p1", "state")
    engine.ingest(data.iloc[:576], twin="p1")

    assert _log(engine).empty
    assert engine.health("p1")["live"] == []


def test_health_of_a_decision_twin_is_its_clones_agreement_and_bad_windows_fail(
    engine: TwinEngine,
) -> None:
    engine.create_twin("d1", "decision")
    empty = engine.health("d1")  # see tests/test_evolving_donor.py for one with answers
    assert empty["kind"] == "decision" and empty["serving"] is None
    assert empty["answers"] == 0 and empty["agreement"] is None and empty["alerts"] == []
    engine.create_twin("p1", "state")
    with pytest.raises(TwinkitError, match="window must be positive"):
        engine.health("p1", window_h=0)
    report = engine.health("p1")
    assert report["serving"] is None and report["live"] == []


def test_cli_health(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    engine = TwinEngine(db)
    data = _person(700, seed=5)
    _fitted(engine, data, 576)
    engine.predict("p1", (30, 60))
    engine.ingest(data.iloc[576:600], twin="p1")
    engine.store.dispose()

    code, out, err = run(capsys, "health", "p1", "--json", "--db", db)
    assert code == 0, err
    report = json.loads(out)
    assert [(s["version"], s["horizon"], s["n"]) for s in report["live"]] == [
        (1, 30, 1),
        (1, 60, 1),
    ]

    code, out, err = run(capsys, "health", "p1", "--db", db)
    assert code == 0, err
    assert "live RMSE" in out and "holdout RMSE" in out and "v1" in out
