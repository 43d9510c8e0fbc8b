"""Rolling-origin evaluation of a forecaster on a twin's own held-out recent data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError
from twinkit.models.base import Forecaster, target_grid


def holdout_split(frame: pd.DataFrame, target: str, holdout_frac: float) -> pd.Timestamp:
    """The time that splits the target's readings into train (before) and holdout (from)."""
    times = frame.index[frame[target].notna()]
    if len(times) < 10:
        raise ForecastInputError(f"only {len(times)} readings of {target!r}: too few to fit")
    return pd.Timestamp(times[int(len(times) * (1 - holdout_frac))])


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
    grid = target_grid(frame, model.target, model.step_min)
    origins = grid.index[(grid.index >= split) & grid.notna().to_numpy()]
    if len(origins) > max_origins:
        origins = origins[np.linspace(0, len(origins) - 1, max_origins).astype(int)]
    errors: dict[int, list[float]] = {h: [] for h in horizons}
    inside: dict[int, list[bool]] = {h: [] for h in horizons}
    for origin in origins:
        try:
            forecast = model.predict(frame.loc[:origin], horizons)
        except ForecastInputError:
            continue  # a gap right before this origin: no forecast can be made there
        lo, hi = forecast.interval(0.9)
        for i, h in enumerate(horizons):
            truth = grid.get(origin + pd.Timedelta(minutes=h))
            if truth is None or not np.isfinite(truth):
                continue
            errors[h].append(float(forecast.mean[i] - truth))
            inside[h].append(bool(lo[i] <= truth <= hi[i]))
    metrics: dict[str, float] = {}
    rmses = []
    for h in horizons:
        if not errors[h]:
            continue
        e = np.asarray(errors[h])
        rmse = float(np.sqrt(np.mean(e**2)))
        rmses.append(rmse)
        metrics[f"rmse_{h}"] = rmse
        metrics[f"mae_{h}"] = float(np.mean(np.abs(e)))
        metrics[f"coverage90_{h}"] = float(np.mean(inside[h]))
        metrics[f"n_{h}"] = float(len(e))
    if not rmses:
        raise ForecastInputError(
            f"no holdout forecast could be scored for {model.target!r}: the holdout is too "
            "short or full of gaps"
        )
    metrics["score"] = float(np.mean(rmses))
    return metrics
