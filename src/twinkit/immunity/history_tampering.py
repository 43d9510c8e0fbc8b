"""Evasion attacks on forecasters, and a vaccine against them.

A forecaster is attacked through its input history: the last readings of the target
before the forecast origin are nudged, each by at most ``eps`` (say 10 mg/dL), within
the sensor's range and without a change between consecutive readings that a body could
not make. The attack sees the forecaster only through
:meth:`~twinkit.models.base.Forecaster.predict`, so it works on every model twinkit has
(linear, Gaussian process, neural, ensembles): it estimates the gradient of what it
wants by finite differences and climbs it with signed steps, projecting onto the
budget after each one (a black-box PGD).

- :func:`attack_history`: push the forecast in a chosen direction per horizon; with
  the signs of the clean errors it maximises the error, with ``+1`` it raises the
  forecast (hiding a coming low), with ``-1`` it lowers it (raising a false alarm).
- :func:`vaccine_history`: the training history plus copies of it, shifted by whole
  days, in which blocks of readings are replaced by attacks against the clean model,
  the readings after them left true: what the twin should have forecast from a
  tampered history.
- :func:`evaluate_forecast_immunity` (in :mod:`twinkit.eval.forecaster_immunity_benchmark`) runs
  the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.models.base import Forecaster


@dataclass(frozen=True)
class HistoryBudget:
    """What a tampered history may differ by.

    ``eps``: the most any reading may move (target units); ``window``: how many of the
    last readings before the origin may move; ``low``/``high``: the sensor's range, kept
    unless a reading already lies outside it; ``max_rate``: the fastest change between
    consecutive readings, in units per minute (``None``: no limit); a change the
    original readings already made is always allowed.
    """

    eps: float = 10.0
    window: int = 12
    low: float = 40.0
    high: float = 400.0
    max_rate: float | None = 4.0

    def __post_init__(self) -> None:
        if self.eps < 0 or self.window < 1 or self.low >= self.high:
            raise TwinkitError(f"an impossible history budget: {self}")
        if self.max_rate is not None and self.max_rate <= 0:
            raise TwinkitError(f"max_rate must be positive, got {self.max_rate}")

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def project(
    values: np.ndarray,
    original: np.ndarray,
    minutes: np.ndarray,
    budget: HistoryBudget,
    before: float | None = None,
) -> np.ndarray:
    """The nearest history to ``values`` (in order) that ``budget`` allows.

    ``original`` are the true readings, ``minutes`` the time since the reading before
    each (the first one's is the gap to ``before``, the last unchanged reading, if any).
    Each reading is clipped to ``original +- eps``, to the range, and to ``max_rate``
    from the (already projected) reading before it. Box and rate can always be met
    together (the previous reading's shift is one answer); where the range cannot be met
    as well, near the range's edge, it gives way.
    """
    out = np.empty_like(original, dtype=np.float64)
    prev_value, prev_true = before, before
    for i, (v, x, dt) in enumerate(zip(values, original, minutes, strict=True)):
        lo, hi = x - budget.eps, x + budget.eps
        range_lo, range_hi = min(budget.low, x), max(budget.high, x)
        if budget.max_rate is not None and prev_value is not None and prev_true is not None:
            rate = max(budget.max_rate * float(dt), abs(x - prev_true))
            lo, hi = max(lo, prev_value - rate), min(hi, prev_value + rate)
        if max(lo, range_lo) <= min(hi, range_hi):
            lo, hi = max(lo, range_lo), min(hi, range_hi)
        out[i] = min(max(float(v), lo), hi)
        prev_value, prev_true = out[i], float(x)
    return out


@dataclass(frozen=True)
class TamperedHistory:
    """A context with some target readings replaced; ``rows`` index the context."""

    context: pd.DataFrame
    rows: np.ndarray
    original: np.ndarray
    tampered: np.ndarray
    objective: float  # what the attack pushed: sum of direction * forecast mean


def _attack_rows(
    context: pd.DataFrame, target: str, window: int, origin: pd.Timestamp
) -> np.ndarray:
    observed = context[target].notna().to_numpy() & (context.index <= origin)
    return np.flatnonzero(observed)[-(window + 1) :]


def attack_history(
    model: Forecaster,
    context: pd.DataFrame,
    horizons: Sequence[int],
    direction: Sequence[float] | np.ndarray,
    budget: HistoryBudget = HistoryBudget(),
    *,
    steps: int = 2,
    delta: float = 1.0,
    origin: pd.Timestamp | None = None,
) -> TamperedHistory:
    """Tamper with the last ``budget.window`` target readings of ``context`` (up to
    ``origin``, by default the last reading) to push ``sum(direction * forecast mean)``.

    ``steps`` signed steps on a finite-difference gradient (``delta`` target units per
    reading, ``window + 3`` forecasts a step, one more the first): the first tries the
    budget's edge (``eps``), half of it, and a shift of the whole window by ``eps`` the
    way the gradient sums; later steps halve the sizes. Each candidate is projected with
    :func:`project`; the best history seen is returned. Deterministic: nothing random.
    """
    weights = np.asarray(direction, dtype=np.float64)
    if weights.shape != (len(horizons),):
        raise TwinkitError(f"one direction per horizon: {len(horizons)} horizons, {weights}")
    target = model.target
    if target not in context.columns:
        raise TwinkitError(f"the context has no {target!r} column")
    observed = context.index[context[target].notna().to_numpy()]
    end = pd.Timestamp(origin) if origin is not None else pd.Timestamp(observed[-1])
    picked = _attack_rows(context, target, budget.window, end)
    if len(picked) < 2:
        raise ForecastInputError("too few readings before the origin to tamper with")
    before_row, rows = picked[0], picked[1:]
    column = context[target].to_numpy(dtype=np.float64).copy()
    original = column[rows].copy()
    times = pd.DatetimeIndex(context.index[picked])
    minutes = np.diff(times.as_unit("ns").asi8) / 6e10
    before = float(column[before_row])

    frame = context.copy()

    def forecast(values: np.ndarray) -> np.ndarray:
        column[rows] = values
        frame[target] = column
        return model.predict(frame, horizons).mean

    def objective(values: np.ndarray) -> float:
        return float(weights @ forecast(values))

    current = original.copy()
    best, best_value = current.copy(), objective(current)
    for k in range(max(1, steps)):
        base = objective(current) if k else best_value
        grad = np.empty(len(rows))
        for i in range(len(rows)):
            probe = current.copy()
            probe[i] += delta
            grad[i] = (objective(probe) - base) / delta
        # Signed steps of two sizes, and (first) a shift of the whole window: under a
        # tight rate limit the projection can turn a zigzag step into a worse history.
        size = budget.eps / 2**k
        moves = [size * np.sign(grad), size / 2 * np.sign(grad)]
        if k == 0:
            moves.append(budget.eps * np.sign(grad.sum()) * np.ones(len(rows)))
        candidates = [project(current + m, original, minutes, budget, before) for m in moves]
        values = [objective(c) for c in candidates]
        current = candidates[int(np.argmax(values))]
        if max(values) > best_value:
            best, best_value = current.copy(), max(values)
    column[rows] = best
    frame[target] = column
    return TamperedHistory(frame, rows, original, best, best_value)


def vaccine_history(
    model: Forecaster,
    history: pd.DataFrame,
    horizons: Sequence[int],
    budget: HistoryBudget = HistoryBudget(),
    *,
    copies: int = 2,
    steps: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """``history`` followed by ``copies`` copies of it, each shifted by whole days (so
    times of day hold) with a day's gap, in which the target is tampered block by block.

    A copy is cut into blocks of ``budget.window`` readings plus the furthest horizon;
    in each block the first ``window`` readings are replaced by an error-maximising
    :func:`attack_history` against ``model`` (the clean, fitted twin), the rest stay
    true. Each copy starts its blocks at a different offset (drawn with ``seed``), so
    the copies tamper different windows. Fit a fresh forecaster on the result.
    """
    if copies < 1:
        raise TwinkitError(f"a vaccine needs at least one copy, got {copies}")
    target = model.target
    times = history.index[history[target].notna()]
    if len(times) < 2:
        raise TwinkitError(f"too few readings of {target!r} to vaccinate on")
    step = pd.Timedelta(minutes=model.step_min or 5.0)
    reach = pd.Timedelta(minutes=max(horizons))
    block = budget.window + int(np.ceil(reach / step))
    span_days = int(np.ceil((history.index[-1] - history.index[0]) / pd.Timedelta(days=1))) + 1
    rng = np.random.default_rng(seed)
    parts = [history]
    for c in range(1, copies + 1):
        copy = history.copy()
        offset = int(rng.integers(0, block))
        for end in times[budget.window + offset :: block]:
            context = copy.loc[: end + reach].copy()
            context.loc[context.index > end, target] = np.nan
            truth = truth_at(history, target, end, horizons)
            if not np.isfinite(truth).any():
                continue
            try:
                clean = model.predict(context, horizons).mean
                sign = np.where(np.isfinite(truth), np.sign(clean - truth), 0.0)
                tampered = attack_history(
                    model,
                    context,
                    horizons,
                    np.where(sign == 0, 1.0, sign),
                    budget,
                    steps=steps,
                    origin=end,
                )
            except ForecastInputError:
                continue  # a gap right before this block: leave it true
            copy.loc[tampered.context.index[tampered.rows], target] = tampered.tampered
        copy.index = copy.index + pd.Timedelta(days=span_days * c)
        parts.append(copy)
    return pd.concat(parts)


def truth_at(
    frame: pd.DataFrame, target: str, origin: pd.Timestamp, horizons: Sequence[int]
) -> np.ndarray:
    """The target's reading at each horizon after ``origin`` (NaN where there is none)."""
    series = frame[target].dropna()
    out = np.full(len(horizons), np.nan)
    for k, h in enumerate(horizons):
        at = origin + pd.Timedelta(minutes=int(h))
        near = series.index.get_indexer(
            pd.DatetimeIndex([at]), method="nearest", tolerance=pd.Timedelta(minutes=2)
        )
        if near[0] >= 0:
            out[k] = float(series.iloc[near[0]])
    return out


__all__ = [
    "HistoryBudget",
    "TamperedHistory",
    "attack_history",
    "project",
    "truth_at",
    "vaccine_history",
]
