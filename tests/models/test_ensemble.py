"""The ensemble: skill weights and conformal intervals that cover what they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twinkit.models.ensemble import Ensemble, conformal_quantiles
from twinkit.models.evaluate import rolling_scores


def noisy_wave(n: int, seed: int, noise: float = 3.0) -> pd.DataFrame:
    idx = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    rng = np.random.default_rng(seed)
    y = 120 + 25 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, noise, n)
    return pd.DataFrame({"glucose": y}, index=idx)


def test_conformal_intervals_cover_about_ninety_percent() -> None:
    # Prepare: 6 days; the ensemble learns on the first 4, is scored on the rest
    frame = noisy_wave(1728, seed=3)
    split = frame.index[1152]
    model = Ensemble(
        members=("persistence", "linear_ar"), max_horizon_min=60, max_calibration_origins=200
    ).fit(frame.loc[: split - pd.Timedelta(minutes=5)])

    # Execute
    scores = rolling_scores(model, frame, split, [30, 60], max_origins=300)

    # Assert
    for h in (30, 60):
        assert 0.84 <= scores[f"coverage90_{h}"] <= 0.96, scores


def test_better_member_gets_more_weight_and_state_round_trips() -> None:
    frame = noisy_wave(900, seed=1, noise=1.0)
    model = Ensemble(
        members=("persistence", "linear_ar"), max_horizon_min=30, max_calibration_origins=100
    ).fit(frame)
    assert model.weights[1] > model.weights[0]
    restored = Ensemble.from_state(*model.get_state())
    a, b = model.predict(frame, [15, 30]), restored.predict(frame, [15, 30])
    assert np.array_equal(a.quantiles[0.05], b.quantiles[0.05])
    assert np.array_equal(a.mean, b.mean)


def test_member_that_cannot_fit_is_left_out() -> None:
    frame = noisy_wave(600, seed=2)
    model = Ensemble(
        members=("persistence", "linear_ar"),
        max_horizon_min=30,
        member_params={"linear_ar": {"lags": 500}},
        max_calibration_origins=80,
    ).fit(frame)
    assert model.members_names == ("persistence",)


def test_conformal_quantiles_are_monotone() -> None:
    rng = np.random.default_rng(0)
    q = conformal_quantiles(rng.normal(size=200), [0.05, 0.25, 0.5, 0.75, 0.95])
    assert np.all(np.diff(q) > 0)
