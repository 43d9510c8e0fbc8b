"""The live band (issue #18): the monitor rescales a version's 90 % band from its scored
served forecasts (adaptive split conformal, :mod:`twinkit.monitor.band`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twinkit.cli.testing import run
from twinkit.core.forecast import Forecast
from twinkit.engine import TwinEngine
from twinkit.engine.model_cache import ModelCache
from twinkit.engine.serving import forecast, serving_head
from twinkit.monitor.band import (
    adapted_level,
    changed,
    conformal_scale,
    live_band,
    rescale,
    scale_at,
    scores,
)
from twinkit.store import forecast_log, tables, twins

DriftingFn = Callable[[int, int | None, int], pd.DataFrame]


def _rows(truth: np.ndarray, model_sd: float, horizon: int = 30) -> pd.DataFrame:
    """Scored rows of forecasts whose median is 0 and whose 90 % band assumes ``model_sd``."""
    half = 1.645 * model_sd
    n = len(truth)
    return pd.DataFrame(
        {
            "horizon": horizon,
            "target_t": np.arange(n),
            "q05": -half,
            "q50": 0.0,
            "q95": half,
            "realised": truth,
        }
    )


def _covered(rows: pd.DataFrame, scale: float) -> float:
    half = scale * (rows["q95"] - rows["q50"])
    return float((np.abs(rows["realised"] - rows["q50"]) <= half).mean())


def test_a_score_is_the_reading_in_half_bands_of_the_models_own_band() -> None:
    rows = pd.DataFrame(
        {
            "q05": [90.0, 90.0, 90.0, 80.0],
            "q50": [100.0, 100.0, 100.0, 100.0],
            "q95": [120.0, 120.0, 120.0, 140.0],
            "realised": [120.0, 95.0, np.nan, 120.0],
            # the last was served with its band doubled: its model's own half-bands are 10, 20
            "band_scale": [1.0, np.nan, 1.0, 2.0],
        }
    )
    assert scores(rows).tolist() == [1.0, 0.5, 1.0]


def test_the_scale_covers_ninety_percent_of_new_readings_over_seeds() -> None:
    # A model whose band is half as wide as the person's spread (sd 1 assumed, 2 true)
    calibrated, raw = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        past, future = _rows(rng.normal(0, 2, 300), 1.0), _rows(rng.normal(0, 2, 300), 1.0)
        scale = live_band(past).scales[30]
        calibrated.append(_covered(future, scale))
        raw.append(_covered(future, 1.0))
    assert 0.87 <= float(np.mean(calibrated)) <= 0.93
    assert float(np.mean(raw)) < 0.65


def test_the_level_rises_after_misses_and_stays_near_ninety_percent_on_steady_scores() -> None:
    levels_steady, levels_shift = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        steady = np.abs(rng.normal(0, 1, 600))
        # the person's spread doubles for the last 150 readings: the old scale misses often
        shifted = np.concatenate([steady[:450], 2 * steady[450:]])
        levels_steady.append(adapted_level(steady))
        levels_shift.append(adapted_level(shifted))
    assert 0.85 <= float(np.mean(levels_steady)) <= 0.95
    assert float(np.mean(levels_shift)) > float(np.mean(levels_steady)) + 0.03


def test_too_few_scored_forecasts_set_no_scale() -> None:
    rows = _rows(np.random.default_rng(0).normal(0, 1, 19), 1.0)
    assert live_band(rows).scales == {}
    assert live_band(rows, min_forecasts=10).scales.keys() == {30}


def test_conformal_scale_is_the_finite_sample_quantile_within_bounds() -> None:
    values = np.arange(1, 20, dtype=float)  # n = 19: ceil(20 x 0.9) = 18th smallest
    assert conformal_scale(values) == 10.0  # 18, clipped to the upper bound
    assert conformal_scale(values / 10) == pytest.approx(1.8)
    assert conformal_scale(np.zeros(30)) == 0.1


def test_rescale_widens_around_the_median_keeping_the_mean_and_the_order() -> None:
    forecast = Forecast(
        target="glucose",
        origin=pd.Timestamp("2026-01-01", tz="UTC"),
        horizons=(30, 45, 60),
        mean=np.array([101.0, 102.0, 103.0]),
        quantiles={
            0.05: np.array([90.0, 85.0, 80.0]),
            0.5: np.array([100.0, 100.0, 100.0]),
            0.95: np.array([110.0, 120.0, 130.0]),
        },
    )
    wider = rescale(forecast, {30: 2.0, 60: 3.0})
    assert scale_at({30: 2.0, 60: 3.0}, (15, 45, 90)).tolist() == [2.0, 2.5, 3.0]
    assert wider.quantiles[0.05].tolist() == [80.0, 62.5, 40.0]
    assert wider.quantiles[0.95].tolist() == [120.0, 150.0, 190.0]
    assert wider.quantiles[0.5].tolist() == forecast.quantiles[0.5].tolist()
    assert wider.mean.tolist() == forecast.mean.tolist()
    assert rescale(forecast, None) is forecast


def test_changed_means_beyond_the_tolerance_or_other_horizons() -> None:
    assert changed(None, {30: 1.0}, 0.05)
    assert not changed(None, {}, 0.05)
    assert not changed({30: 1.0}, {30: 1.04}, 0.05)
    assert changed({30: 1.0}, {30: 1.06}, 0.05)
    assert changed({30: 1.0}, {30: 1.0, 60: 1.0}, 0.05)


def _serve(engine: TwinEngine, data: pd.DataFrame, start_h: int, hours: int) -> None:
    """Serve a forecast every hour, each before the hour's readings arrive."""
    for k in range(12 * start_h, 12 * (start_h + hours), 12):
        engine.predict("p1", (30, 60))
        engine.ingest(data.iloc[k : k + 12], twin="p1")


def _served_coverage(engine: TwinEngine, since: pd.Timestamp) -> float:
    engine.health("p1")  # writes the log's waiting rows
    key = engine.get_twin("p1").key
    with engine.store.read() as conn:
        rows = forecast_log.scored(conn, twins.channel_ids(conn, key, "glucose"))
    rows = rows[(rows["role"] == "served") & (rows["target_t"] >= since.value // 1000)]
    inside = (rows["q05"] <= rows["realised"]) & (rows["realised"] <= rows["q95"])
    return float(inside.mean())


def test_the_monitor_sets_the_band_serving_uses_and_the_log_keeps(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    # Prepare: fitted on 3 calm days; then the readings swing four times as much, so the
    # model's own band is too narrow; two days of hourly forecasts are scored
    data = drifting(7, 3, 3)
    engine.create_twin("p1", "state")
    engine.ingest(data.iloc[: 288 * 3], twin="p1")
    assert engine.fit("p1", model="linear_ar").promoted
    _serve(engine, data, 72, 48)
    before = _served_coverage(engine, pd.Timestamp("2026-01-04", tz="UTC"))
    own = engine.predict("p1", (30, 60), as_of=pd.Timestamp("2026-01-06", tz="UTC"))

    # Execute
    first = engine.monitor_check("p1")
    again = engine.monitor_check("p1")

    # Assert: a band wider than the model's, stored once, in the ledger and the health view
    found = first["band"]["band"]["scales"]
    scales = {int(h): v for h, v in found.items()}
    assert first["band"]["stored"] is True
    assert set(scales) == {30, 60} and min(scales.values()) > 1.5
    assert again["band"]["band"]["scales"] == found and again["band"]["stored"] is False
    entries = [e for e in engine.history("p1") if e.event == "band_recalibrated"]
    assert len(entries) == 1
    assert entries[0].payload["version"] == 1 and entries[0].payload["previous"] == {}
    assert engine.health("p1")["serving"]["live_band"] == found

    # the next forecast is the model's own band times the scale, and the log says so
    served = engine.predict("p1", (30, 60))
    assert served.origin == own.origin
    for k, h in enumerate((30, 60)):
        width = served.quantiles[0.95][k] - served.quantiles[0.5][k]
        own_width = own.quantiles[0.95][k] - own.quantiles[0.5][k]
        assert width == pytest.approx(scales[h] * own_width)
        assert served.mean[k] == pytest.approx(own.mean[k])
    with engine.store.read() as conn:
        logged = conn.execute(
            tables.forecast_log.select().where(
                tables.forecast_log.c.origin_t == served.origin.value // 1000
            )
        ).all()
    assert sorted(r.band_scale for r in logged) == sorted(scales.values())

    # a cached answer is keyed by the band, so it is not served once the band changes
    head = serving_head(engine.context, "local", "p1")
    assert head is not None and head.live_band is not None
    engine.serving_models = ModelCache(engine.artifacts, settle_s=0.0)
    forecast(engine.context, "p1", (30, 60))  # loads the model: from now on it is cached
    answered = forecast(engine.context, "p1", (30, 60))
    assert answered.key is not None and answered.key[-1] == head.live_band
    assert answered.forecast.quantiles[0.95].tolist() == served.quantiles[0.95].tolist()

    # and a day served with the band covers about as the band promised
    _serve(engine, data, 121, 40)
    after = _served_coverage(engine, pd.Timestamp("2026-01-06T02:00", tz="UTC"))
    assert before < 0.7 and after > before + 0.15


def test_a_band_needs_a_served_version_and_a_state_twin(engine: TwinEngine) -> None:
    engine.create_twin("p1", "state")
    assert engine.monitor_check("p1")["band"] == {
        "twin": "p1",
        "version": None,
        "band": None,
        "stored": False,
    }


def test_cli_monitor_run_sets_the_band_and_health_shows_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, drifting: DriftingFn
) -> None:
    db = str(tmp_path / "cli.db")
    engine = TwinEngine(db)
    data = drifting(5, 3, 4)
    engine.create_twin("p1", "state")
    engine.ingest(data.iloc[: 288 * 3], twin="p1")
    engine.fit("p1", model="linear_ar")
    _serve(engine, data, 72, 30)
    engine.store.dispose()

    code, out, err = run(capsys, "monitor", "run", "--db", db)
    assert code == 0, err
    assert "live band +30 min x" in out
    code, out, err = run(capsys, "health", "p1", "--db", db)
    assert code == 0, err
    assert "live band" in out and "+30 min x" in out
