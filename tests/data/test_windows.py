"""The grid, scaler and windows that learned forecasters are trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import ForecastInputError
from twinkit.data.pca import CovariatePCA
from twinkit.data.windows import Scaler, make_windows, to_grid


def frame_with_gap(gap_readings: int) -> pd.DataFrame:
    idx = pd.date_range("2026-01-01", periods=200, freq="5min", tz="UTC")
    glucose = 100 + 10 * np.sin(np.arange(200) / 10)
    carbs = np.zeros(200)
    carbs[50] = 40.0
    frame = pd.DataFrame({"glucose": glucose, "carbs": carbs}, index=idx)
    frame.iloc[100 : 100 + gap_readings, 0] = np.nan
    return frame.dropna(subset=["glucose"]).pipe(lambda f: f.reindex(f.index.union(idx[[50]])))


def test_short_gap_is_bridged_long_gap_kept() -> None:
    # Prepare / Execute
    short = to_grid(frame_with_gap(2), "glucose")
    long = to_grid(frame_with_gap(12), "glucose")

    # Assert
    assert np.isfinite(short.target).all()
    assert np.isnan(long.target).sum() == 12


def test_irregular_timestamps_land_on_the_native_grid() -> None:
    # Prepare: readings every 15 minutes with a few seconds of jitter
    rng = np.random.default_rng(0)
    base = pd.date_range("2026-01-01", periods=100, freq="15min", tz="UTC")
    jitter = pd.to_timedelta(rng.integers(-20, 20, 100), unit="s")
    frame = pd.DataFrame({"glucose": np.arange(100.0)}, index=(base + jitter).sort_values())

    # Execute
    grid = to_grid(frame, "glucose")

    # Assert
    assert grid.step_min == 15.0
    assert np.isfinite(grid.target).mean() > 0.95


def test_windows_never_cross_a_long_gap() -> None:
    # Prepare
    grid = to_grid(frame_with_gap(12), "glucose")
    scaler = Scaler.fit(grid)

    # Execute
    windows = make_windows(grid, scaler, context=12, horizon=6)

    # Assert: no window's context or future touches positions 100..111
    for origin in windows.origin:
        span = np.arange(origin - 11, origin + 7)
        assert not np.isin(span, np.arange(100, 112)).any()
    assert np.isfinite(windows.past).all()
    assert np.isfinite(windows.target).all()
    with pytest.raises(ForecastInputError, match="gap"):
        make_windows(grid, scaler, 12, 6, origins=np.array([105]), require_target=False)


def test_event_covariates_are_summed_and_future_can_be_hidden() -> None:
    # Prepare
    grid = to_grid(frame_with_gap(0), "glucose")
    scaler = Scaler.fit(grid)
    origin = np.array([45])

    # Execute
    known = make_windows(grid, scaler, 12, 12, origins=origin)
    hidden = make_windows(grid, scaler, 12, 12, origins=origin, future_covariates=False)

    # Assert: the meal 25 minutes after the origin is visible only when known ahead
    assert grid.covariate_names == ("carbs",)
    assert grid.covariates[:, 0].sum() == 40.0
    assert known.future[0, 4, 0] == pytest.approx(1.0)  # scaled by its max
    assert hidden.future[0, :, 0].sum() == 0.0
    assert known.past.shape == (1, 12, 1 + 1 + 2)


def test_scaler_round_trip() -> None:
    grid = to_grid(frame_with_gap(0), "glucose")
    scaler = Scaler.fit(grid)
    restored = Scaler.from_dict(scaler.to_dict())
    values = np.array([80.0, 120.0])
    assert np.allclose(restored.inverse_target(restored.target(values)), values)


def test_pca_reduces_many_covariates() -> None:
    # Prepare: 6 covariates driven by 2 factors
    rng = np.random.default_rng(1)
    idx = pd.date_range("2026-01-01", periods=300, freq="5min", tz="UTC")
    factors = rng.normal(size=(300, 2))
    mixed = factors @ rng.normal(size=(2, 6)) + 0.01 * rng.normal(size=(300, 6))
    frame = pd.DataFrame(mixed, index=idx, columns=[f"s{i}" for i in range(6)])
    frame["glucose"] = 100.0 + rng.normal(size=300)
    grid = to_grid(frame, "glucose")

    # Execute
    pca = CovariatePCA(2, seed=0).fit([grid])
    reduced = pca.transform(grid)
    restored = CovariatePCA.from_state(*pca.get_state())

    # Assert
    assert reduced.covariates.shape == (300, 2)
    assert pca.explained_variance_ratio > 0.99
    assert np.allclose(restored.transform(grid).covariates, reduced.covariates)
    with pytest.raises(ForecastInputError, match="not a reduction"):
        CovariatePCA(7).fit([grid])
