"""The forecaster contract: what every registered :class:`~twinkit.models.base.Forecaster`
keeps, checked on the tiny instance its class builds (``tiny()``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
import pandas as pd

from twinkit.checks._common import expect, raises, round_trip
from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import REQUIRED_QUANTILES, Forecast
from twinkit.models import Forecaster, forecaster_class
from twinkit.models.base import registered_forecasters

#: a check of a forecaster class
ForecasterCheck = Callable[[type[Forecaster]], None]

#: minutes ahead every check forecasts; a tiny forecaster reaches at least the last
HORIZONS = (5, 15, 30)


def sinusoid(n: int = 300, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    """``y``: a daily-ish sine plus N(0, noise) on a 5-minute UTC grid."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    steps = np.arange(n)
    y = 100.0 + 20.0 * np.sin(2 * np.pi * steps / 96) + rng.normal(0.0, noise, n)
    return pd.DataFrame({"y": y}, index=index)


def _fitted(cls: type[Forecaster], seed: int = 0) -> Forecaster:
    return cls.tiny(target="y", seed=seed).fit(sinusoid())


def _same_forecast(a: Forecast, b: Forecast, what: str) -> None:
    expect(a.origin == b.origin and a.horizons == b.horizons, f"{what}: other origin/horizons")
    expect(np.array_equal(a.mean, b.mean), f"{what}: means differ ({a.mean} vs {b.mean})")
    expect(a.quantiles.keys() == b.quantiles.keys(), f"{what}: other quantile levels")
    for level in a.quantiles:
        expect(
            np.array_equal(a.quantiles[level], b.quantiles[level]),
            f"{what}: quantile {level} differs",
        )


def check_forecaster_registered(cls: type[Forecaster]) -> None:
    """Registered under its name (artifacts are loaded by it); ``tiny()`` builds one that
    forecasts at least 30 minutes ahead."""
    expect(
        forecaster_class(cls.name) is cls,
        f"{cls.__name__}: not registered as {cls.name!r} (decorate it with @register_forecaster)",
    )
    model = cls.tiny(target="y", seed=0)
    expect(type(model) is cls, f"{cls.__name__}.tiny() built a {type(model).__name__}")
    expect(
        model.max_horizon_min >= HORIZONS[-1],
        f"{cls.__name__}.tiny() forecasts {model.max_horizon_min} min ahead, checks need 30",
    )


def check_forecaster_unfitted(cls: type[Forecaster]) -> None:
    """Before ``fit``: ``predict`` and ``get_state`` refuse, and no lookback is known."""
    model = cls.tiny(target="y", seed=0)
    raises(ForecastInputError, lambda: model.predict(sinusoid(), HORIZONS), "predict before fit")
    raises(ForecastInputError, model.get_state, "get_state before fit")
    expect(model.lookback_min() is None, f"{cls.__name__}: a lookback before fit")


def check_forecast_shape(cls: type[Forecaster]) -> None:
    """A forecast per horizon from the last reading, the required quantiles, finite and
    not crossing."""
    frame = sinusoid()
    forecast = _fitted(cls).predict(frame, HORIZONS)
    name = cls.__name__
    expect(forecast.target == "y", f"{name}: forecast of {forecast.target!r}, not 'y'")
    expect(forecast.horizons == HORIZONS, f"{name}: horizons {forecast.horizons}")
    expect(forecast.origin == frame.index[-1], f"{name}: origin is not the last reading")
    expect(forecast.mean.shape == (len(HORIZONS),), f"{name}: mean of {forecast.mean.shape}")
    expect(set(REQUIRED_QUANTILES) <= set(forecast.quantiles), f"{name}: quantiles missing")
    stacked = np.vstack([forecast.quantiles[q] for q in sorted(forecast.quantiles)])
    expect(bool(np.isfinite(stacked).all()), f"{name}: quantiles not finite")
    expect(bool((np.diff(stacked, axis=0) >= 0).all()), f"{name}: quantiles cross")


def check_forecaster_round_trip(cls: type[Forecaster]) -> None:
    """Saved (safetensors and JSON) and loaded by its registered name, it forecasts
    identically and saves to the same bytes."""
    model = _fitted(cls)
    frame = sinusoid()
    tensors, config, data = round_trip(*model.get_state())
    loaded = forecaster_class(config["model"]).from_state(tensors, config)
    expect(type(loaded) is cls, f"{cls.__name__}: loaded as {type(loaded).__name__}")
    expect(loaded.params() == model.params(), f"{cls.__name__}: params changed on loading")
    _same_forecast(
        loaded.predict(frame, HORIZONS), model.predict(frame, HORIZONS), f"{cls.__name__} loaded"
    )
    expect(round_trip(*loaded.get_state())[2] == data, f"{cls.__name__}: state changed")


def check_forecaster_seeded(cls: type[Forecaster]) -> None:
    """The same seed gives the same weights and forecasts."""
    frame = sinusoid()
    for seed in (0, 7):
        first, second = _fitted(cls, seed), _fitted(cls, seed)
        (t1, c1), (t2, c2) = first.get_state(), second.get_state()
        what = f"{cls.__name__}, seed {seed}"
        expect(c1 == c2 and t1.keys() == t2.keys(), f"{what}: another config")
        for key in t1:
            expect(np.array_equal(t1[key], t2[key]), f"{what}: weights {key!r} differ")
        _same_forecast(first.predict(frame, HORIZONS), second.predict(frame, HORIZONS), what)


#: frames a forecaster refuses in fit and predict
BAD_FRAMES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "no target column": lambda f: f.rename(columns={"y": "other"}),
    "a time zone-naive index": lambda f: f.tz_localize(None),
    "a decreasing index": lambda f: f.iloc[::-1],
    "a repeated time": lambda f: pd.concat([f.iloc[:-1], f.iloc[-2:-1]]),
}


def check_forecaster_bad_input(cls: type[Forecaster]) -> None:
    """Bad frames are refused in ``fit`` and ``predict``, bad horizons in ``predict``,
    with a :class:`~twinkit.core.errors.ForecastInputError`."""
    model = _fitted(cls)
    for what, spoil in BAD_FRAMES.items():
        bad = spoil(sinusoid())
        fresh = cls.tiny(target="y")
        raises(ForecastInputError, partial(fresh.fit, bad), f"{cls.__name__}.fit: {what}")
        raises(
            ForecastInputError,
            partial(model.predict, bad, HORIZONS),
            f"{cls.__name__}.predict: {what}",
        )
    reach = model.max_horizon_min
    bad_horizons: dict[str, Sequence[int]] = {
        "beyond the fitted reach": (30, reach + 30),
        "a day beyond it": (24 * 60 + reach,),
        "zero": (0,),
        "negative": (15, -5),
        "none": (),
    }
    for what, horizons in bad_horizons.items():
        raises(
            ForecastInputError,
            partial(model.predict, sinusoid(), horizons),
            f"{cls.__name__}.predict at horizons {what}",
        )


def check_forecaster_lookback(cls: type[Forecaster]) -> None:
    """Rows older than ``lookback_min()`` never change a forecast, with or without a
    bridged gap where the cut falls (a server reads only the recent rows)."""
    model = _fitted(cls)
    reach = model.lookback_min()
    if reach is None or not reach > 0:
        raise AssertionError(f"{cls.__name__}: no bounded lookback after fit ({reach})")
    for gap_at in (None, "boundary", "inside"):
        frame = sinusoid(n=400, seed=5)
        cut = frame.index[-1] - pd.Timedelta(minutes=reach)
        if gap_at is not None:
            centre = cut if gap_at == "boundary" else cut + pd.Timedelta(minutes=reach / 2)
            near = (frame.index - centre).to_series().abs() <= pd.Timedelta(minutes=5)
            frame = frame.loc[~near.to_numpy()]
        _same_forecast(
            model.predict(frame.loc[frame.index >= cut], HORIZONS),
            model.predict(frame, HORIZONS),
            f"{cls.__name__}: rows before the lookback (gap: {gap_at})",
        )


def forecaster_checks() -> tuple[ForecasterCheck, ...]:
    """Every check a forecaster class is held to, in order."""
    return (
        check_forecaster_registered,
        check_forecaster_unfitted,
        check_forecast_shape,
        check_forecaster_round_trip,
        check_forecaster_seeded,
        check_forecaster_bad_input,
        check_forecaster_lookback,
    )


def check_forecaster(cls: type[Forecaster]) -> None:
    """Run every forecaster check on ``cls``; raises AssertionError at the first broken one."""
    for check in forecaster_checks():
        check(cls)


def forecaster_classes() -> Iterator[type[Forecaster]]:
    """Every registered forecaster class."""
    for name in registered_forecasters():
        yield forecaster_class(name)


__all__ = [
    "BAD_FRAMES",
    "HORIZONS",
    "ForecasterCheck",
    "check_forecast_shape",
    "check_forecaster",
    "check_forecaster_bad_input",
    "check_forecaster_lookback",
    "check_forecaster_registered",
    "check_forecaster_round_trip",
    "check_forecaster_seeded",
    "check_forecaster_unfitted",
    "forecaster_checks",
    "forecaster_classes",
    "sinusoid",
]
