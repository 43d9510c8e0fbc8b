"""Shape a twin's signals for learning: a regular grid with covariates, scaling, windows.

A :class:`Grid` holds the target on its native interval (short gaps bridged, long gaps kept
as NaN) and the covariates on the same index. :class:`Scaler` normalises one twin's values.
:func:`make_windows` cuts (past, known future, target) windows that never cross a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pandas.tseries.frequencies import to_offset

from twinkit.core.errors import ForecastInputError
from twinkit.data.grid import check_frame, detect_step_minutes

#: channels that record events (amounts per moment), summed into a grid step and 0 when
#: absent; every other covariate is a level, averaged and carried forward over short gaps
EVENT_CHANNELS = frozenset({"carbs", "insulin", "bolus", "basal", "meal", "steps", "calories"})
#: features every window carries besides target and covariates: time of day as sin, cos
N_TIME_FEATURES = 2
#: the longest gap in the target (minutes) that gridding bridges by default: a few missed
#: sensor readings
MAX_GAP_MIN = 15.0


@dataclass(frozen=True)
class Grid:
    """One twin's data on a regular grid.

    ``target`` is NaN where there is no reading (after bridging gaps up to ``max_gap_min``);
    ``covariates`` (T x C) never is.
    """

    index: pd.DatetimeIndex
    step_min: float
    target: np.ndarray
    covariates: np.ndarray
    covariate_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.index)

    def time_features(self) -> np.ndarray:
        """(T x 2) sin and cos of the time of day: the daily rhythm."""
        minutes = (self.index.hour * 60 + self.index.minute).to_numpy(dtype=np.float64)
        angle = 2 * np.pi * minutes / 1440.0
        return np.stack([np.sin(angle), np.cos(angle)], axis=1)

    def until(self, position: int) -> Grid:
        """The grid up to and including ``position``."""
        return Grid(
            self.index[: position + 1],
            self.step_min,
            self.target[: position + 1],
            self.covariates[: position + 1],
            self.covariate_names,
        )


def to_grid(
    frame: pd.DataFrame,
    target: str,
    covariates: Sequence[str] | None = None,
    step_min: float | None = None,
    max_gap_min: float = MAX_GAP_MIN,
    end: pd.Timestamp | None = None,
) -> Grid:
    """Resample a wide frame onto the target's native interval.

    ``covariates`` None means every other numeric column. Gaps in the target of at most
    ``max_gap_min`` are bridged linearly (a missed sensor reading); longer ones stay NaN.
    ``end`` extends the grid past the last target reading, for covariates known ahead
    (planned meals or insulin).

    >>> idx = pd.date_range("2026-01-01", periods=6, freq="5min", tz="UTC")
    >>> f = pd.DataFrame({"glucose": [100, 101, np.nan, 103, 104, 105.0],
    ...                   "carbs": [0, 30, 0, 0, 0, 0.0]}, index=idx)
    >>> g = to_grid(f, "glucose")
    >>> g.step_min, g.target.tolist()[:3], g.covariate_names
    (5.0, [100.0, 101.0, 102.0], ('carbs',))
    """
    series = check_frame(frame, target)
    if series.empty:
        raise ForecastInputError(f"no values of target {target!r}")
    step = step_min or detect_step_minutes(pd.DatetimeIndex(series.index))
    rule = pd.Timedelta(minutes=step)
    target_grid = _on_grid(series, rule)
    if target_grid is None:
        target_grid = series.resample(rule, origin="epoch").mean()
    last = target_grid.index[-1]
    if end is not None and end > last:
        extra = pd.date_range(last + rule, end.floor(rule), freq=rule)
        target_grid = pd.concat([target_grid, pd.Series(np.nan, index=extra)])
        target_grid.index.freq = rule
    limit = int(max_gap_min // step)
    if limit > 0:
        target_grid = _bridge(target_grid, limit)
    index = pd.DatetimeIndex(target_grid.index)
    names = (
        tuple(covariates)
        if covariates is not None
        else tuple(
            str(c)
            for c in frame.columns
            if c != target and pd.api.types.is_numeric_dtype(frame[c].dtype)
        )
    )
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ForecastInputError(f"covariate(s) {missing} not in the data")
    columns = []
    for name in names:
        values = frame[name].dropna().astype(np.float64)
        if name in EVENT_CHANNELS:
            binned = values.resample(rule, origin="epoch").sum().reindex(index, fill_value=0.0)
        else:
            binned = values.resample(rule, origin="epoch").mean().reindex(index)
            binned = binned.ffill(limit=max(limit, 1)).fillna(0.0)
        columns.append(binned.to_numpy(dtype=np.float64))
    cov = np.stack(columns, axis=1) if columns else np.zeros((len(index), 0))
    return Grid(index, float(step), target_grid.to_numpy(dtype=np.float64), cov, names)


def _on_grid(series: pd.Series, rule: pd.Timedelta) -> pd.Series | None:
    """``series`` as ``resample(rule, origin="epoch").mean()`` would give it, when its
    readings already sit one per grid step with none missing (a sensor's usual data), else
    None. Resampling costs milliseconds, and forecasts are served per request."""
    index = pd.DatetimeIndex(series.index)
    ns = index.as_unit("ns").asi8
    if len(ns) < 2 or ns[0] % rule.value != 0 or not (np.diff(ns) == rule.value).all():
        return None
    regular = pd.DatetimeIndex(index, freq=to_offset(rule))
    return pd.Series(series.to_numpy(dtype=np.float64), index=regular, name=series.name)


def _bridge(series: pd.Series, limit: int) -> pd.Series:
    """Interpolate runs of at most ``limit`` missing values between two readings.

    >>> s = pd.Series([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0, np.nan])
    >>> _bridge(s, 1).tolist()
    [1.0, 2.0, 3.0, nan, nan, nan, 7.0, nan]
    """
    values = series.to_numpy(dtype=np.float64)
    missing = np.isnan(values)
    if not missing.any():
        return series
    # Runs of missing values: where each starts and ends (exclusive).
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    inside = (starts > 0) & (ends < len(values)) & (ends - starts <= limit)
    if not inside.any():
        return series
    filled = values.copy()
    for start, end in zip(starts[inside], ends[inside], strict=True):
        # A maximal run: the readings just before and after it are known.
        left, right = values[start - 1], values[end]
        fraction = np.arange(1, end - start + 1) / (end - start + 1)
        filled[start:end] = left + (right - left) * fraction
    return pd.Series(filled, index=series.index, name=series.name)


@dataclass(frozen=True)
class Scaler:
    """Per-twin normalisation: target by its mean and spread, covariates by their spread."""

    target_mean: float
    target_std: float
    covariate_scale: np.ndarray

    @classmethod
    def fit(cls, grid: Grid) -> Scaler:
        values = grid.target[np.isfinite(grid.target)]
        if len(values) < 2:
            raise ForecastInputError("too few readings to normalise the target")
        std = float(values.std()) or 1.0
        scale = np.abs(grid.covariates).max(axis=0) if len(grid.covariates) else np.ones(0)
        scale = np.where(scale > 0, scale, 1.0)
        return cls(float(values.mean()), std, scale.astype(np.float64))

    def target(self, values: np.ndarray) -> np.ndarray:
        return (values - self.target_mean) / self.target_std

    def inverse_target(self, values: np.ndarray) -> np.ndarray:
        return values * self.target_std + self.target_mean

    def covariates(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values / self.covariate_scale, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "covariate_scale": [float(v) for v in self.covariate_scale],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(
            float(data["target_mean"]),
            float(data["target_std"]),
            np.asarray(data["covariate_scale"], dtype=np.float64),
        )


@dataclass(frozen=True)
class Windows:
    """Aligned training or forecasting windows, normalised.

    ``past`` (N x L x F): target, covariates, time of day over the context. ``future``
    (N x H x (C + 2)): covariates known ahead and time of day over the horizon.
    ``target`` (N x H): the normalised target after the origin minus its value at the
    origin (NaN when not known, e.g. when forecasting). ``origin`` (N,): grid positions.
    """

    past: np.ndarray
    future: np.ndarray
    target: np.ndarray
    last: np.ndarray
    origin: np.ndarray

    def __len__(self) -> int:
        return len(self.origin)

    def take(self, rows: np.ndarray) -> Windows:
        return Windows(
            self.past[rows],
            self.future[rows],
            self.target[rows],
            self.last[rows],
            self.origin[rows],
        )


def make_windows(
    grid: Grid,
    scaler: Scaler,
    context: int,
    horizon: int,
    origins: np.ndarray | None = None,
    require_target: bool = True,
    future_covariates: bool = True,
) -> Windows:
    """Windows of ``context`` steps ending at each origin and ``horizon`` steps after it.

    Without ``origins``, every position whose context (and, with ``require_target``, whose
    horizon) is gap-free. With ``origins``, exactly those; an origin whose context has a gap
    raises :class:`ForecastInputError`. ``future_covariates`` False hides what comes after
    the origin (use it where nobody knows meals in advance).
    """
    y = scaler.target(grid.target)
    cov = scaler.covariates(grid.covariates)
    tod = grid.time_features()
    features = np.concatenate([y[:, None], cov, tod], axis=1)
    ahead = np.concatenate([cov if future_covariates else np.zeros_like(cov), tod], axis=1)
    n = len(grid)
    if origins is None:
        if n < context + horizon:
            return _empty(context, horizon, features.shape[1], ahead.shape[1])
        ok = np.asarray(np.isfinite(y), dtype=bool)
        past_ok = np.asarray(sliding_window_view(ok, context).all(axis=1), dtype=bool)
        past_ok = past_ok[: n - horizon - context + 1]
        candidates = np.arange(context - 1, n - horizon)
        keep = past_ok
        if require_target:
            future_ok = np.asarray(sliding_window_view(ok[context:], horizon).all(axis=1))
            keep = keep & future_ok[: len(candidates)]
        origins = candidates[keep]
    else:
        origins = np.asarray(origins, dtype=np.int64)
        if len(origins) and (origins.min() < context - 1 or origins.max() >= n):
            raise ForecastInputError(
                f"an origin needs {context} steps of history inside the grid ({n} steps)"
            )
        for o in origins:
            if not np.isfinite(y[o - context + 1 : o + 1]).all():
                raise ForecastInputError(
                    f"the {context} readings ({context * grid.step_min:g} min) before "
                    f"{grid.index[o].isoformat()} have a gap longer than can be bridged"
                )
    offsets = np.arange(-context + 1, 1)
    past = features[origins[:, None] + offsets[None, :]]
    steps = np.arange(1, horizon + 1)
    ahead_pos = origins[:, None] + steps[None, :]
    inside = ahead_pos < n
    clipped = np.minimum(ahead_pos, n - 1)
    future = ahead[clipped]
    if not inside.all():
        future[~inside] = 0.0
        future[..., -N_TIME_FEATURES:] = _time_of(grid, ahead_pos)
    last = y[origins]
    target = np.where(inside, y[clipped], np.nan) - last[:, None]
    return Windows(past, future, target, last, origins)


def _time_of(grid: Grid, positions: np.ndarray) -> np.ndarray:
    minutes = (grid.index[0].hour * 60 + grid.index[0].minute + positions * grid.step_min) % 1440.0
    angle = 2 * np.pi * minutes / 1440.0
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def _empty(context: int, horizon: int, n_past: int, n_future: int) -> Windows:
    return Windows(
        np.zeros((0, context, n_past)),
        np.zeros((0, horizon, n_future)),
        np.zeros((0, horizon)),
        np.zeros(0),
        np.zeros(0, dtype=np.int64),
    )
