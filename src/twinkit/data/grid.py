"""The regular grid a twin's target lives on: its native interval, gaps kept as gaps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError


def check_frame(frame: pd.DataFrame, target: str) -> pd.Series:
    """The target column as a float series on a sorted UTC index, or a named error."""
    if not isinstance(frame, pd.DataFrame):
        raise ForecastInputError(f"expected a DataFrame, got {type(frame).__name__}")
    if target not in frame.columns:
        raise ForecastInputError(
            f"target channel {target!r} not in the data (channels: {list(frame.columns)})"
        )
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise ForecastInputError("the frame needs a tz-aware DatetimeIndex (UTC)")
    if not frame.index.is_monotonic_increasing or frame.index.has_duplicates:
        raise ForecastInputError("the frame's time index must be strictly increasing")
    series = frame[target]
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise ForecastInputError(f"target {target!r} is not numeric")
    values = series.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        raise ForecastInputError(f"target {target!r} holds infinite values")
    return series.dropna().astype(np.float64)


def detect_step_minutes(index: pd.DatetimeIndex) -> float:
    """The native sampling interval: the median gap between readings, in minutes.

    >>> idx = pd.date_range("2026-01-01", periods=5, freq="5min", tz="UTC")
    >>> detect_step_minutes(idx)
    5.0
    >>> detect_step_minutes(idx + pd.to_timedelta([0, 1, -2, 3, 0], unit="s"))
    5.0
    """
    if len(index) < 2:
        raise ForecastInputError("need at least two readings to detect the sampling interval")
    gaps = np.diff(index.as_unit("ns").asi8) / 60e9
    step = float(np.median(gaps))
    if step <= 0:
        raise ForecastInputError("cannot detect a sampling interval: timestamps repeat")
    # Sensors drift by seconds around their nominal interval (4:59, 5:01): above two
    # minutes, the nominal interval is a whole number of minutes.
    if step >= 2:
        return float(round(step))
    return max(round(step * 60) / 60, 1 / 60)


def target_grid(frame: pd.DataFrame, target: str, step_min: float | None = None) -> pd.Series:
    """The target resampled to its regular grid; gaps stay NaN (never interpolated)."""
    series = check_frame(frame, target)
    if series.empty:
        raise ForecastInputError(f"no values of target {target!r}")
    step = step_min or detect_step_minutes(pd.DatetimeIndex(series.index))
    rule = pd.Timedelta(minutes=step)
    # Bins aligned to the epoch, so the same reading lands in the same bin whatever
    # window of data it arrives with.
    return series.resample(rule, origin="epoch").mean()


def grid_step_minutes(grid: pd.Series) -> float:
    """The step of a series made by :func:`target_grid`, in minutes."""
    freq = pd.DatetimeIndex(grid.index).freq
    if freq is None:
        raise ForecastInputError("the series is not on a regular grid")
    return float(pd.Timedelta(freq.nanos, unit="ns").total_seconds() / 60)


def horizon_steps(horizons: Sequence[int], step_min: float, max_steps: int) -> np.ndarray:
    """Horizon minutes -> grid steps (at least one), or a named error past what was fitted."""
    if len(horizons) == 0:
        raise ForecastInputError("give at least one horizon (minutes ahead)")
    minutes = np.asarray(horizons, dtype=np.float64)
    if (minutes <= 0).any():
        raise ForecastInputError(f"horizons must be positive minutes, got {list(horizons)}")
    steps = np.maximum(np.rint(minutes / step_min).astype(np.int64), 1)
    if (steps > max_steps).any():
        raise ForecastInputError(
            f"horizon {int(minutes.max())} min is beyond what the model was fitted for "
            f"({max_steps * step_min:g} min)"
        )
    return steps
