"""The ensemble: skill weights and conformal intervals that cover what they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twinkit.models.ensemble import Ensemble, combine, conformal_quantiles
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
    assert (model.weights[1] > model.weights[0]).all()  # at every horizon step
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


def test_each_horizon_weighs_the_member_that_is_better_there() -> None:
    # Prepare: two members' validation forecasts; the first is better one step ahead,
    # the second four steps ahead
    rng = np.random.default_rng(0)
    truth = rng.normal(100, 10, size=(200, 4))
    noise = np.array([[1.0, 3.0, 6.0, 9.0], [4.0, 4.0, 4.0, 4.0]])
    medians = truth[None] + rng.normal(size=(2, 200, 4)) * noise[:, None, :]

    # Execute
    weights, _, combined = combine(medians, truth)

    # Assert: the weights follow the errors step by step; at each step the combination is
    # about as good as the better member there (or better), never like the worse
    assert weights.shape == (2, 4)
    assert weights[0, 0] > 0.8 and weights[0, 3] < 0.3
    assert np.allclose(weights.sum(axis=0), 1.0)

    def rmse(forecasts: np.ndarray) -> np.ndarray:
        return np.asarray(np.sqrt(((forecasts - truth) ** 2).mean(axis=0)))

    best = np.minimum(rmse(medians[0]), rmse(medians[1]))
    assert (rmse(combined) <= 1.02 * best).all()


def test_a_version_with_one_weight_per_member_still_forecasts() -> None:
    frame = noisy_wave(900, seed=3, noise=1.0)
    model = Ensemble(
        members=("persistence", "linear_ar"), max_horizon_min=30, max_calibration_origins=100
    ).fit(frame)
    tensors, config = model.get_state()
    tensors["weights"] = np.array([0.25, 0.75])  # as saved before weights were per step
    old = Ensemble.from_state(tensors, config)
    forecast = old.predict(frame, [15, 30])
    members = [m.predict(frame, [15, 30]).quantiles[0.5] for m in old.members]
    assert np.allclose(forecast.mean, 0.25 * members[0] + 0.75 * members[1])
