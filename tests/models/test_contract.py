"""The contract every forecaster keeps; add a new class to ``FORECASTERS`` to hold it to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import REQUIRED_QUANTILES, Forecast
from twinkit.models import (
    Ensemble,
    Forecaster,
    GPForecaster,
    GRUAttention,
    LinearAR,
    Persistence,
    TransformerForecaster,
    forecaster_class,
)
from twinkit.models.evaluate import rolling_scores
from twinkit.store.artifacts import ArtifactStore

FORECASTERS: list[type[Forecaster]] = [
    Persistence,
    LinearAR,
    GRUAttention,
    TransformerForecaster,
    GPForecaster,
    Ensemble,
]
HORIZONS = (5, 15, 30)  # minutes; every tiny() model forecasts at least 30 min ahead


def sinusoid(n: int = 300, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    """``y``: a daily-ish sine plus N(0, noise) on a 5-minute UTC grid."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    steps = np.arange(n)
    y = 100.0 + 20.0 * np.sin(2 * np.pi * steps / 96) + rng.normal(0.0, noise, n)
    return pd.DataFrame({"y": y}, index=index)


def fitted(cls: type[Forecaster], seed: int = 0) -> Forecaster:
    return cls.tiny(target="y", seed=seed).fit(sinusoid())


def assert_same_forecast(a: Forecast, b: Forecast) -> None:
    assert a.origin == b.origin
    assert a.horizons == b.horizons
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.quantiles.keys() == b.quantiles.keys()
    for level in a.quantiles:
        np.testing.assert_array_equal(a.quantiles[level], b.quantiles[level])


@pytest.fixture(params=FORECASTERS, ids=lambda cls: cls.name)
def cls(request: pytest.FixtureRequest) -> type[Forecaster]:
    forecaster: type[Forecaster] = request.param
    return forecaster


def test_registered_under_its_name(cls: type[Forecaster]) -> None:
    # Execute / Assert
    assert forecaster_class(cls.name) is cls


def test_save_load_round_trip_predicts_identically(cls: type[Forecaster], tmp_path: Path) -> None:
    # Prepare
    model = fitted(cls)
    frame = sinusoid()
    artifacts = ArtifactStore(tmp_path)

    # Execute
    tensors, config = model.get_state()
    sha = artifacts.save(tensors, config)
    loaded_tensors, loaded_config = artifacts.load(sha)
    loaded = forecaster_class(loaded_config["model"]).from_state(loaded_tensors, loaded_config)

    # Assert
    assert type(loaded) is cls
    assert loaded.params() == model.params()
    assert_same_forecast(loaded.predict(frame, HORIZONS), model.predict(frame, HORIZONS))
    assert artifacts.save(*loaded.get_state()) == sha  # same state, same content address


@pytest.mark.parametrize("seed", [0, 7])
def test_same_seed_same_result(cls: type[Forecaster], seed: int) -> None:
    # Execute
    first, second = fitted(cls, seed), fitted(cls, seed)

    # Assert
    (t1, c1), (t2, c2) = first.get_state(), second.get_state()
    assert c1 == c2
    assert t1.keys() == t2.keys()
    for name in t1:
        np.testing.assert_array_equal(t1[name], t2[name])
    frame = sinusoid()
    assert_same_forecast(first.predict(frame, HORIZONS), second.predict(frame, HORIZONS))


def test_predict_before_fit_raises(cls: type[Forecaster]) -> None:
    # Prepare
    model = cls.tiny(target="y", seed=0)

    # Execute / Assert
    with pytest.raises(ForecastInputError):
        model.predict(sinusoid(), HORIZONS)
    with pytest.raises(ForecastInputError):
        model.get_state()


def _no_target(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"y": "other"})


def _naive_index(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.tz_localize(None)


def _reversed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[::-1]


def _repeated_time(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame.iloc[:-1], frame.iloc[-2:-1]])


BAD_FRAMES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "missing_target": _no_target,
    "tz_naive_index": _naive_index,
    "decreasing_index": _reversed,
    "repeated_time": _repeated_time,
}


@pytest.mark.parametrize("spoil", BAD_FRAMES.values(), ids=BAD_FRAMES)
def test_bad_frame_raises_in_fit_and_predict(
    cls: type[Forecaster], spoil: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    # Prepare
    bad = spoil(sinusoid())
    model = fitted(cls)

    # Execute / Assert
    with pytest.raises(ForecastInputError):
        cls.tiny(target="y", seed=0).fit(bad)
    with pytest.raises(ForecastInputError):
        model.predict(bad, HORIZONS)


BAD_HORIZONS: dict[str, Sequence[int]] = {
    "beyond_fitted_max": (30, 60),
    "far_beyond": (24 * 60,),
    "zero": (0,),
    "negative": (15, -5),
    "none": (),
}


@pytest.mark.parametrize("horizons", BAD_HORIZONS.values(), ids=BAD_HORIZONS)
def test_bad_horizons_raise(cls: type[Forecaster], horizons: Sequence[int]) -> None:
    # Prepare
    model = fitted(cls)

    # Execute / Assert
    with pytest.raises(ForecastInputError):
        model.predict(sinusoid(), horizons)


def test_forecast_shape_and_quantiles(cls: type[Forecaster]) -> None:
    # Prepare
    frame = sinusoid()
    model = fitted(cls)

    # Execute
    forecast = model.predict(frame, HORIZONS)

    # Assert
    assert forecast.target == "y"
    assert forecast.horizons == HORIZONS
    assert forecast.origin == frame.index[-1]
    assert forecast.mean.shape == (len(HORIZONS),)
    assert set(REQUIRED_QUANTILES) <= set(forecast.quantiles)
    levels = sorted(forecast.quantiles)
    stacked = np.vstack([forecast.quantiles[q] for q in levels])
    assert np.isfinite(stacked).all()
    assert (np.diff(stacked, axis=0) >= 0).all(), "quantiles cross"
    lo, hi = forecast.interval(0.9)
    assert (lo <= hi).all()


def test_lookback_is_unset_before_fit(cls: type[Forecaster]) -> None:
    # Execute / Assert: nothing is known of the grid yet
    assert cls.tiny(target="y").lookback_min() is None


@pytest.mark.parametrize("gap_at", [None, "boundary", "inside"])
def test_rows_before_the_lookback_never_change_a_forecast(
    cls: type[Forecaster], gap_at: str | None
) -> None:
    """What a server relies on to read only a twin's recent rows (engine/serving.py)."""
    # Prepare: a fitted model and its lookback; a bridged gap (two missed readings) where
    # the cut falls, or just inside the window
    model = fitted(cls)
    reach = model.lookback_min()
    assert reach is not None and reach > 0, "every forecaster here reads a bounded past"
    frame = sinusoid(n=400, seed=5)
    cut = frame.index[-1] - pd.Timedelta(minutes=reach)
    if gap_at is not None:
        centre = cut if gap_at == "boundary" else cut + pd.Timedelta(minutes=reach / 2)
        near = (frame.index - centre).to_series().abs() <= pd.Timedelta(minutes=5)
        frame = frame.loc[~near.to_numpy()]

    # Execute: the whole history, and only the rows at or after the cut
    whole = model.predict(frame, HORIZONS)
    recent = model.predict(frame.loc[frame.index >= cut], HORIZONS)

    # Assert
    assert_same_forecast(recent, whole)


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
