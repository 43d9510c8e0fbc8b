"""The linear AR forecaster's intervals are calibrated (its contract with every other
forecaster is checked in ``tests/test_contracts.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twinkit.checks.forecasters import sinusoid
from twinkit.models import LinearAR
from twinkit.models.evaluate import rolling_scores


def test_linear_ar_90_interval_is_calibrated() -> None:
    # Prepare: two weeks of sine + N(0, 1); the last quarter is held out
    frame = sinusoid(n=4000, seed=3, noise=1.0)
    split = frame.index[3000]
    model = LinearAR.tiny(target="y", seed=0).fit(frame.loc[frame.index < split])

    # Execute
    scores = rolling_scores(model, frame, split, [15, 30], max_origins=600)

    # Assert
    for h in (15, 30):
        assert scores[f"n_{h}"] >= 500
        assert 0.80 <= scores[f"coverage90_{h}"] <= 0.97, scores


def _meals(days: int, seed: int) -> pd.DataFrame:
    """5-minute glucose that rises for two hours after each meal (carbs known), plus noise:
    the future change depends on the carbs of the last two hours far more than on glucose."""
    rng = np.random.default_rng(seed)
    n = 288 * days
    index = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    carbs = np.zeros(n)
    meals = rng.choice(np.arange(24, n - 24), size=4 * days, replace=False)
    carbs[meals] = rng.uniform(20, 80, size=len(meals))
    response = np.convolve(carbs, np.hanning(48) * 0.15)[:n]  # a 4-hour bump per gram
    glucose = 110 + response + rng.normal(0, 2.0, n)
    return pd.DataFrame({"glucose": glucose, "carbs": carbs}, index=index)


def test_the_selection_takes_the_meals_when_they_tell_the_future() -> None:
    # Prepare: twelve days of meals; the last three are held out
    frame = _meals(days=12, seed=1)
    split = frame.index[288 * 9]
    train = frame.loc[frame.index < split]

    # Execute: the selection, against the same model without covariates
    chosen = LinearAR(max_horizon_min=60).fit(train)
    glucose_only = LinearAR(max_horizon_min=60, covariates=False).fit(train)

    # Assert: it took the carbs, and they cut the held-out error
    assert chosen.covariates is True and chosen.covariate_names == ("carbs",)
    assert chosen.selection  # every candidate's out-of-fold score is kept
    with_meals = rolling_scores(chosen, frame, split, [30, 60], max_origins=300)
    without = rolling_scores(glucose_only, frame, split, [30, 60], max_origins=300)
    for h in (30, 60):
        assert with_meals[f"rmse_{h}"] < 0.8 * without[f"rmse_{h}"], (with_meals, without)


def test_the_choice_is_saved_and_a_first_release_version_still_loads() -> None:
    frame = _meals(days=6, seed=2)
    model = LinearAR(max_horizon_min=60).fit(frame)
    tensors, config = model.get_state()
    again = LinearAR.from_state(tensors, config)
    context = frame.iloc[-200:]
    assert (
        again.predict(context, [30, 60]).mean.tolist()
        == model.predict(context, [30, 60]).mean.tolist()
    )
    assert (again.lags, again.inputs, again.ridge) == (model.lags, model.inputs, model.ridge)

    # a version saved before the selection: its params have no scheme, its coef an
    # intercept column of its own, and no centering
    old = LinearAR(lags=6, max_horizon_min=30, ridge=1e-3, scheme=1).fit(frame[["glucose"]])
    tensors, config = old.get_state()
    config["params"].pop("scheme")
    config["params"].pop("inputs")
    config["params"].pop("covariates")
    loaded = LinearAR.from_state(tensors, config)
    assert loaded.scheme == 1
    assert loaded.predict(context, [30]).mean.tolist() == old.predict(context, [30]).mean.tolist()


def test_a_channel_missing_from_the_context_counts_as_no_events() -> None:
    frame = _meals(days=6, seed=3)
    model = LinearAR(max_horizon_min=30, covariates=True, lags=12).fit(frame)
    context = frame.iloc[-100:]
    quiet = context.assign(carbs=0.0)
    assert (
        model.predict(context.drop(columns="carbs"), [30]).mean.tolist()
        == model.predict(quiet, [30]).mean.tolist()
    )
