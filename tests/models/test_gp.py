"""The Gaussian-process forecaster: calibrated intervals, beats persistence, named errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from twinkit.core.errors import ForecastInputError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.models.evaluate import rolling_scores
from twinkit.models.gp import GPForecaster
from twinkit.models.persistence import Persistence


def daily_sinusoid(days: float, seed: int = 0) -> pd.DataFrame:
    """``glucose``: a sine with a one-day period plus N(0, 1), every 5 minutes."""
    rng = np.random.default_rng(seed)
    n = int(days * 288)
    index = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    y = 120.0 + 30.0 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"glucose": y}, index=index)


def small(iterations: int = 100, known_future: bool = False) -> GPForecaster:
    """A GP small enough for a test: two latents of 32 inducing points, up to an hour."""
    return GPForecaster(
        max_horizon_min=60,
        known_future=known_future,
        n_latents=2,
        n_inducing=32,
        iterations=iterations,
        batch_size=128,
    )


def cohort_frame(days: float) -> pd.DataFrame:
    """One synthetic twin as a wide frame: ``glucose`` and ``carbs`` (0 between meals)."""
    long = synthetic_cohort(n_twins=1, days=days, seed=2)
    wide = long.pivot_table(index="time", columns="channel", values="value")
    wide.index = pd.DatetimeIndex(wide.index)
    wide["carbs"] = wide["carbs"].fillna(0.0)
    return wide


def test_interval_is_calibrated_and_beats_persistence_on_a_daily_rhythm() -> None:
    # Prepare: a week to learn from (its last day calibrates the intervals), a day held out
    frame = daily_sinusoid(days=8, seed=0)
    split = frame.index[7 * 288]
    history = frame.loc[frame.index < split]
    model = small().fit(history)
    baseline = Persistence(max_horizon_min=60).fit(history)

    # Execute
    scores = rolling_scores(model, frame, split, [30, 60], max_origins=100)
    reference = rolling_scores(baseline, frame, split, [30, 60], max_origins=100)

    # Assert
    for h in (30, 60):
        assert scores[f"n_{h}"] >= 90
        assert 0.80 <= scores[f"coverage90_{h}"] <= 0.97, scores
    assert scores["rmse_60"] < reference["rmse_60"], (scores, reference)


def test_gap_before_the_origin_raises() -> None:
    # Prepare
    frame = daily_sinusoid(days=2)
    model = small(iterations=20).fit(frame)
    spoilt = frame.copy()
    spoilt.iloc[-8:-2, 0] = np.nan  # 30 min without readings, longer than can be bridged

    # Execute / Assert
    with pytest.raises(ForecastInputError, match="gap-free"):
        model.predict(spoilt, [30])


def test_too_little_history_says_how_much_is_needed() -> None:
    # Execute / Assert
    with pytest.raises(ForecastInputError, match="h of data without gaps"):
        small().fit(daily_sinusoid(days=0.25))


def test_context_without_a_fitted_covariate_raises() -> None:
    # Prepare
    frame = cohort_frame(days=2)
    model = small(iterations=20).fit(frame)

    # Execute / Assert
    assert model.used_covariates == ("carbs",)
    with pytest.raises(ForecastInputError, match="carbs"):
        model.predict(frame[["glucose"]], [30])


def test_fit_leaves_the_callers_torch_settings_alone() -> None:
    # Prepare
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)

    # Execute
    small(iterations=5).fit(daily_sinusoid(days=1))

    # Assert
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_a_planned_meal_raises_the_forecast_when_the_future_is_known() -> None:
    # Prepare: a fasting moment (no meal in the last three hours), then plan 80 g
    frame = cohort_frame(days=4)
    model = small(known_future=True, iterations=60).fit(frame)
    eaten = frame["carbs"].to_numpy() > 0
    recent_meal = np.convolve(eaten, np.ones(36))[: len(eaten)] > 0
    origin = frame.index[np.flatnonzero(~recent_meal)[-1]]
    context = frame.loc[:origin]
    planned = context.copy()
    planned.loc[origin + pd.Timedelta(minutes=5), "carbs"] = 80.0  # glucose NaN there

    # Execute
    fasting = model.predict(context, [60])
    meal = model.predict(planned, [60])

    # Assert
    assert meal.origin == fasting.origin == origin
    assert meal.mean[0] > fasting.mean[0] + 10.0
