"""Drift detection on a twin's streams, with River's detectors.

A twin's raw streams are too fine and too autocorrelated for a change detector that
assumes independent points (a 30-minute forecast's error at 10:00 and at 10:05 share most
of their inputs; glucose follows meals). So each stream is summarised per hour first:

- ``residuals``: the mean of |forecast - reading| / the version's holdout RMSE at that
  horizon, over the served forecasts whose target falls in the hour (1 is "as good as at
  promotion"; no per-twin scale to tune);
- ``misses``: the share of those readings outside the forecast's 90 % band (0.1 expected);
- ``input:CHANNEL``: the hour's mean of a channel's readings (its sum for event channels
  such as carbs or insulin, 0 in an hour without one);
- ``agreement``: for decision twins, one point per answer, not per hour (see
  :mod:`twinkit.clone.evolving`, which has its own detectors for it).

**Default detector: ADWIN** (``river.drift.ADWIN``, checked at every point). It keeps the
longest recent window whose two halves do not differ in mean beyond a bound that adapts
to the stream's own variance, so the same significance ``delta`` suits a standardised
error, a miss rate and glucose in mg/dL alike, and it says where the change was (the
window it kept). Page-Hinkley needs a threshold in the stream's units (tuned per stream
and person), and KSWIN's repeated Kolmogorov-Smirnov tests on a sliding window raise many
false alarms on autocorrelated hourly series. Both are available by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from river import drift

from twinkit.core.errors import TwinkitError

#: detectors by name, each with the parameters twinkit uses for hourly streams
DETECTORS: dict[str, Callable[[int], Any]] = {
    # clock=1: check at every point (River's default, 32, would wait up to 32 hours)
    "adwin": lambda seed: drift.ADWIN(  # type: ignore[no-untyped-call]
        delta=0.002, clock=1, grace_period=24, min_window_length=6
    ),
    "page_hinkley": lambda seed: drift.PageHinkley(
        min_instances=24, delta=0.05, threshold=5.0, mode="up"
    ),
    "kswin": lambda seed: drift.KSWIN(alpha=0.001, window_size=96, stat_size=24, seed=seed),
}
#: the detector used unless one is named (see the module docstring)
DEFAULT_DETECTOR = "adwin"
#: the summary period of every stream
BUCKET = "1h"


@dataclass(frozen=True)
class Detection:
    """A change a detector found in one stream: at ``time`` (the hour whose point made it
    fire). The window is where the change most likely began (:func:`change_point` over the
    points the detector saw since it last fired) up to ``time``; the means are the
    stream's before and within it."""

    stream: str
    detector: str
    time: pd.Timestamp
    window_start: pd.Timestamp
    mean_before: float | None
    mean_after: float
    points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "detector": self.detector,
            "time": self.time.isoformat(),
            "window": {"start": self.window_start.isoformat(), "end": self.time.isoformat()},
            "statistic": {
                "mean_before": self.mean_before,
                "mean_after": self.mean_after,
                "points": self.points,
            },
        }


def make_detector(
    name: str = DEFAULT_DETECTOR,
    seed: int = 0,
    table: Mapping[str, Callable[[int], Any]] = DETECTORS,
) -> Any:
    """A fresh River detector by name (from ``table``: the hourly streams' by default)."""
    try:
        return table[name](seed)
    except KeyError:
        known = ", ".join(sorted(table))
        raise TwinkitError(f"unknown drift detector {name!r}; known: {known}") from None


def scan(
    stream: pd.Series, name: str, detector: str = DEFAULT_DETECTOR, seed: int = 0
) -> list[Detection]:
    """Feed ``stream`` (values by time, oldest first; NaN points skipped) to a fresh
    detector and return where it fired. The same stream gives the same detections."""
    clean = stream.dropna()
    values = clean.to_numpy(np.float64)
    times = pd.DatetimeIndex(clean.index)
    out: list[Detection] = []
    for i, start, since in fires(values, detector, seed):
        before = values[since:start]
        out.append(
            Detection(
                stream=name,
                detector=detector,
                time=pd.Timestamp(times[i]),
                window_start=pd.Timestamp(times[start]),
                mean_before=float(before.mean()) if len(before) else None,
                mean_after=float(values[start : i + 1].mean()),
                points=i + 1 - start,
            )
        )
    return out


def fires(
    values: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    seed: int = 0,
    table: Mapping[str, Callable[[int], Any]] = DETECTORS,
) -> list[tuple[int, int, int]]:
    """Feed ``values`` to a fresh detector (by name, from ``table``); for each time it
    fired, ``(i, start, since)``: the point that made it fire, where the change most
    likely began (:func:`change_point` over the points since it last fired), and the
    first of those."""
    found = make_detector(detector, seed, table)
    out: list[tuple[int, int, int]] = []
    since = 0  # the first point the detector has seen since it last fired
    for i, value in enumerate(np.asarray(values, dtype=np.float64)):
        found.update(float(value))
        if not found.drift_detected:
            continue
        out.append((i, since + change_point(values[since : i + 1]), since))
        since = i + 1  # River's detectors start afresh after a detection
    return out


def change_point(values: np.ndarray) -> int:
    """Where a run of values most likely changed its mean: the split ``k`` (1 <= k < n)
    that maximises ``sqrt(k (n - k) / n) * |mean(values[:k]) - mean(values[k:])|``, the
    estimate of binary segmentation; 0 for fewer than two values.

    >>> change_point(np.array([1.0, 1.1, 0.9, 3.0, 3.2]))
    3
    """
    n = len(values)
    if n < 2:
        return 0
    k = np.arange(1, n)
    head = np.cumsum(values)[:-1]
    left = head / k
    right = (values.sum() - head) / (n - k)
    score = np.sqrt(k * (n - k) / n) * np.abs(left - right)
    return int(k[int(np.argmax(score))])


def _hours(micros: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True)).floor(BUCKET)


def forecast_streams(rows: pd.DataFrame, scale: Mapping[int, float]) -> dict[str, pd.Series]:
    """The ``residuals`` and ``misses`` streams of scored served forecasts (the store's
    forecast log columns), ``scale``: holdout RMSE per horizon (horizons without one are
    left out)."""
    if rows.empty:
        return {}
    horizon = rows["horizon"].to_numpy(np.int64)
    denominator = np.array([scale.get(int(h), np.nan) for h in horizon], dtype=np.float64)
    realised = rows["realised"].to_numpy(np.float64)
    error = np.abs(rows["mean"].to_numpy(np.float64) - realised) / denominator
    miss = (realised < rows["q05"].to_numpy(np.float64)) | (
        realised > rows["q95"].to_numpy(np.float64)
    )
    ok = np.isfinite(error) & (denominator > 0)
    if not ok.any():
        return {}
    frame = pd.DataFrame(
        {"error": error[ok], "miss": miss[ok].astype(np.float64)},
        index=_hours(rows["target_t"].to_numpy(np.int64)[ok]),
    )
    hourly = frame.groupby(level=0).mean()
    return {"residuals": hourly["error"], "misses": hourly["miss"]}


def input_streams(long: pd.DataFrame, events: Iterable[str]) -> dict[str, pd.Series]:
    """An ``input:CHANNEL`` stream per channel of readings in long form (``channel``,
    ``t`` in microseconds, ``value``): the hourly mean, or for ``events`` the hourly sum
    with 0 in the hours between the first and last reading that have none."""
    out: dict[str, pd.Series] = {}
    event_names = set(events)
    for channel, group in long.groupby("channel", sort=True):
        values = pd.Series(
            group["value"].to_numpy(np.float64), index=_hours(group["t"].to_numpy(np.int64))
        )
        if str(channel) in event_names:
            hourly = values.groupby(level=0).sum()
            full = pd.date_range(hourly.index.min(), hourly.index.max(), freq=BUCKET)
            hourly = hourly.reindex(full, fill_value=0.0)
        else:
            hourly = values.groupby(level=0).mean()
        out[f"input:{channel}"] = hourly
    return out
