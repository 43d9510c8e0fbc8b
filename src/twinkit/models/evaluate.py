"""Rolling-origin evaluation of a forecaster on a twin's own held-out recent data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError
from twinkit.models.base import Forecaster, target_grid

#: readings a holdout split needs (and the new regime, for a split from ``since``)
MIN_SPLIT_READINGS = 10


def holdout_split(
    frame: pd.DataFrame,
    target: str,
    holdout_frac: float,
    since: pd.Timestamp | None = None,
) -> pd.Timestamp:
    """The time that splits the target's readings into train (before) and holdout (from):
    the last ``holdout_frac`` of them; with ``since`` (where a new regime began, e.g. a
    drift detection's window), the last ``holdout_frac`` of the readings from ``since`` on,
    so that most of the new regime is trained on and the rest judges the fit (over all
    readings if fewer than :data:`MIN_SPLIT_READINGS` are that recent).

    >>> t = pd.date_range("2026-01-01", periods=100, freq="5min", tz="UTC")
    >>> frame = pd.DataFrame({"glucose": 1.0}, index=t)
    >>> holdout_split(frame, "glucose", 0.2) == t[80]
    True
    >>> holdout_split(frame, "glucose", 0.2, since=t[50]) == t[90]
    True
    >>> holdout_split(frame, "glucose", 0.2, since=t[95]) == t[80]
    True
    """
    times = frame.index[frame[target].notna()]
    if len(times) < MIN_SPLIT_READINGS:
        raise ForecastInputError(f"only {len(times)} readings of {target!r}: too few to fit")
    if since is not None:
        recent = times[times >= since]
        if len(recent) >= MIN_SPLIT_READINGS:
            times = recent
    return pd.Timestamp(times[int(len(times) * (1 - holdout_frac))])


@dataclass(frozen=True)
class RollingForecasts:
    """Forecasts from many origins: (origins x horizons) point forecasts, bounds and truth."""

    origins: pd.DatetimeIndex
    horizons: tuple[int, ...]
    mean: np.ndarray
    lower: np.ndarray  # 5 % quantile
    upper: np.ndarray  # 95 % quantile
    truth: np.ndarray  # NaN where nothing was observed, or no forecast could be made
    median: np.ndarray | None = None  # the 50 % quantile, where it differs from the mean

    def scores(self, horizons: Sequence[int] | None = None) -> dict[str, float]:
        """RMSE, MAE, 90 % coverage and count per horizon; ``score``: mean RMSE."""
        metrics: dict[str, float] = {}
        rmses = []
        for h in horizons or self.horizons:
            if h not in self.horizons:
                continue  # beyond what these forecasts reach
            k = self.horizons.index(h)
            ok = np.isfinite(self.truth[:, k]) & np.isfinite(self.mean[:, k])
            if not ok.any():
                continue
            e = self.mean[ok, k] - self.truth[ok, k]
            rmse = float(np.sqrt(np.mean(e**2)))
            rmses.append(rmse)
            metrics[f"rmse_{h}"] = rmse
            metrics[f"mae_{h}"] = float(np.mean(np.abs(e)))
            inside = (self.lower[ok, k] <= self.truth[ok, k]) & (
                self.truth[ok, k] <= self.upper[ok, k]
            )
            metrics[f"coverage90_{h}"] = float(np.mean(inside))
            metrics[f"n_{h}"] = float(ok.sum())
        if not rmses:
            raise ForecastInputError(
                "no holdout forecast could be scored: the holdout is too short or full of gaps"
            )
        metrics["score"] = float(np.mean(rmses))
        return metrics


def rolling_forecasts(
    model: Forecaster,
    frame: pd.DataFrame,
    split: pd.Timestamp,
    horizons: Sequence[int],
    max_origins: int = 200,
    origins: pd.DatetimeIndex | None = None,
    known_ahead: bool = False,
) -> RollingForecasts:
    """Forecast from origins in the holdout (from ``split`` on), each seeing only the data
    up to it; at most ``max_origins``, evenly spread, unless ``origins`` are given.

    With ``known_ahead``, covariates after the origin (planned meals, insulin) stay
    visible to the model; the target after the origin never does.
    """
    grid = target_grid(frame, model.target, model.step_min)
    if origins is None:
        origins = pd.DatetimeIndex(grid.index[(grid.index >= split) & grid.notna().to_numpy()])
        if len(origins) > max_origins:
            origins = origins[np.linspace(0, len(origins) - 1, max_origins).astype(int)]
    shape = (len(origins), len(horizons))
    mean, median, lower, upper, truth = (np.full(shape, np.nan) for _ in range(5))
    reach = pd.Timedelta(minutes=max(horizons))
    for j, origin in enumerate(origins):
        if known_ahead:
            context = frame.loc[: origin + reach].copy()
            context.loc[context.index > origin, model.target] = np.nan
        else:
            context = frame.loc[:origin]
        try:
            forecast = model.predict(context, horizons)
        except ForecastInputError:
            continue  # a gap right before this origin: no forecast can be made there
        mean[j] = forecast.mean
        median[j] = forecast.quantiles[0.5]
        lower[j], upper[j] = forecast.interval(0.9)
        for k, h in enumerate(horizons):
            value = grid.get(origin + pd.Timedelta(minutes=h))
            if value is not None and np.isfinite(value):
                truth[j, k] = value
    return RollingForecasts(
        pd.DatetimeIndex(origins),
        tuple(int(h) for h in horizons),
        mean,
        lower,
        upper,
        truth,
        median,
    )


def rolling_scores(
    model: Forecaster,
    frame: pd.DataFrame,
    split: pd.Timestamp,
    horizons: Sequence[int],
    max_origins: int = 200,
) -> dict[str, float]:
    """RMSE, MAE and 90 % coverage over forecasts made from origins in the holdout.

    Each forecast sees only data up to its origin. ``score`` (lower is better) is the RMSE
    averaged over horizons: what promotion compares.
    """
    return rolling_forecasts(model, frame, split, horizons, max_origins).scores()
