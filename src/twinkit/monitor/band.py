"""The live band: a served forecast's 90 % band kept honest on the person's own recent
readings (adaptive split conformal on the live log, refreshed by the monitor).

A model's band is calibrated once, on the validation part of the data it was fitted on.
People change, and a band learned from a few days of one person is rarely honest on the
next ones (``docs/benchmarks.md``: a GRU fitted on 2.4 days covered 63 % to 98 % of the
following readings with its 90 % band). So the monitor rescales the band from what the
served forecasts met. For each scored served forecast the *score* is how far the reading
fell from the median, in units of the model's own half-band on that side::

    s = (y - q50) / (q95 - q50)   if y >= q50
    s = (q50 - y) / (q50 - q05)   otherwise

A band scaled by ``c`` (every quantile's distance from the median times ``c``) covers
the reading exactly when ``s <= c``. The scale of a horizon is the ``ceil((n + 1) * L)``-th
smallest of its ``n`` newest scores (at most :data:`MAX_FORECASTS`, at least
:data:`MIN_FORECASTS`): split conformal, which covers the next reading with probability at
least ``L`` when the scores are exchangeable. A person's scores are not (errors cluster
after meals, and people change), so ``L`` is not fixed at 0.9 but adapted as in adaptive
conformal inference (Gibbs and Candès, "Adaptive conformal inference under distribution
shift", NeurIPS 2021): replaying the scores in time order, ``L`` rises after each reading
the band would have missed and falls a little after each it would have covered, with
step :data:`ADAPT_RATE`, which keeps the long-run share of misses near 10 % whatever the
scores do. Scaling keeps the model's shape (its asymmetry, its widening where it is
unsure) and corrects only the width; the mean does not change.

Scores are taken against the model's own band (the served band divided by the scale it
was served with, which the log keeps), so a scale never compounds on itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.forecast import Forecast

#: the band the scale calibrates (its central coverage)
LEVEL = 0.9
#: scored forecasts per horizon before a scale is set (fewer say too little)
MIN_FORECASTS = 20
#: the newest scored forecasts per horizon a scale is taken from
MAX_FORECASTS = 500
#: how fast the level follows the misses (adaptive conformal inference's step, gamma)
ADAPT_RATE = 0.02
#: the adapted level stays within these bounds
LEVEL_BOUNDS = (0.5, 0.995)
#: a new scale replaces the one serving only if it differs by more than this (relative)
BAND_TOLERANCE = 0.05
#: the scale stays within these bounds (a degenerate band cannot blow it up)
SCALE_BOUNDS = (0.1, 10.0)


def scores(rows: pd.DataFrame) -> np.ndarray:
    """Each scored row's score against its model's own band (see module). ``rows`` has
    ``q05``, ``q50``, ``q95``, ``realised`` and optionally ``band_scale`` (the scale the
    band was served with; missing or NaN means 1)."""
    y = rows["realised"].to_numpy(float)
    mid = rows["q50"].to_numpy(float)
    served = (
        rows["band_scale"].to_numpy(float)
        if "band_scale" in rows
        else np.ones(len(rows), dtype=float)
    )
    served = np.where(np.isfinite(served) & (served > 0), served, 1.0)
    above = (rows["q95"].to_numpy(float) - mid) / served
    below = (mid - rows["q05"].to_numpy(float)) / served
    gap = y - mid
    half = np.where(gap >= 0, above, below)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(half > 0, np.abs(gap) / half, np.where(gap == 0, 0.0, np.inf))
    out: np.ndarray = s[np.isfinite(y)]
    return out


def conformal_scale(values: np.ndarray, level: float = LEVEL) -> float:
    """The ``ceil((n + 1) * level)``-th smallest of ``values`` (the largest if that is
    past the end), within :data:`SCALE_BOUNDS`.

    >>> conformal_scale(np.arange(1, 100) / 100)
    0.9
    """
    ordered = np.sort(values)
    k = min(math.ceil((len(ordered) + 1) * level), len(ordered)) - 1
    low, high = SCALE_BOUNDS
    return float(np.clip(ordered[k], low, high))


@dataclass(frozen=True)
class LiveBand:
    """A version's live band: per horizon (minutes), the scale of the model's band, the
    level the adaptive replay ended at, and how many scored forecasts it was taken from."""

    scales: dict[int, float]
    levels: dict[int, float]
    forecasts: dict[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scales": {str(h): v for h, v in self.scales.items()},
            "levels": {str(h): v for h, v in self.levels.items()},
            "forecasts": {str(h): v for h, v in self.forecasts.items()},
        }


def adapted_level(
    values: np.ndarray,
    level: float = LEVEL,
    rate: float = ADAPT_RATE,
    window: int = MAX_FORECASTS,
    start: int = MIN_FORECASTS,
) -> float:
    """The level adaptive conformal inference ends at after ``values`` (scores, oldest
    first): from the ``start``-th score on, each is compared with the scale of the
    ``window`` scores before it at the current level, and the level moves by ``rate`` x
    (miss - (1 - level)): up after a miss, down a little after a hit, so over any long run
    the misses approach 1 - ``level`` whatever the scores do (Gibbs and Candès, 2021)."""
    target = 1 - level
    alpha = target
    low, high = LEVEL_BOUNDS
    for t in range(start, len(values)):
        scale = conformal_scale(values[max(0, t - window) : t], min(max(1 - alpha, low), high))
        alpha += rate * (target - float(values[t] > scale))
    return round(min(max(1 - alpha, low), high), 4)


def live_band(
    rows: pd.DataFrame,
    level: float = LEVEL,
    min_forecasts: int = MIN_FORECASTS,
    max_forecasts: int = MAX_FORECASTS,
    rate: float = ADAPT_RATE,
) -> LiveBand:
    """The live band of one version's scored served forecasts (``horizon``, ``target_t``
    and what :func:`scores` reads): per horizon with at least ``min_forecasts`` of them,
    the scale at the adapted level (:func:`adapted_level`, replayed over all the rows)
    of the ``max_forecasts`` newest scores."""
    scales: dict[int, float] = {}
    levels: dict[int, float] = {}
    counts: dict[int, int] = {}
    if rows.empty:
        return LiveBand(scales, levels, counts)
    known = rows[np.isfinite(rows["realised"].to_numpy(float))]
    for horizon, mine in known.groupby("horizon"):
        s = scores(mine.sort_values("target_t"))
        if len(s) < min_forecasts:
            continue
        h = int(str(horizon))
        levels[h] = adapted_level(s, level, rate, max_forecasts, min_forecasts)
        scales[h] = round(conformal_scale(s[-max_forecasts:], levels[h]), 4)
        counts[h] = min(len(s), max_forecasts)
    return LiveBand(scales, levels, counts)


def scale_at(band: Mapping[int, float], horizons: Sequence[int]) -> np.ndarray:
    """The scale at each of ``horizons``: linear between calibrated horizons, the nearest
    one's beyond them; 1 everywhere for an empty band."""
    if not band:
        return np.ones(len(horizons))
    known = sorted(band)
    scale: np.ndarray = np.interp(
        np.asarray(horizons, dtype=float), known, [band[h] for h in known]
    )
    return scale


def rescale(forecast: Forecast, band: Mapping[int, float] | None) -> Forecast:
    """``forecast`` with every quantile's distance from the median times the band's scale
    at its horizon (unchanged for no band)."""
    if not band:
        return forecast
    scale = scale_at(band, forecast.horizons)
    mid = forecast.quantiles[0.5]
    quantiles = {q: mid + scale * (v - mid) for q, v in forecast.quantiles.items()}
    return replace(forecast, quantiles=quantiles)


def changed(old: Mapping[int, float] | None, new: Mapping[int, float], tolerance: float) -> bool:
    """Whether ``new`` differs from ``old`` by more than ``tolerance`` (relative) at some
    horizon, or covers other horizons."""
    if not old:
        return bool(new)
    if set(old) != set(new):
        return True
    return any(abs(new[h] / old[h] - 1) > tolerance for h in new)
