"""The forecast fan chart as SVG geometry: recent readings, then the median and 90% band.

Pure arithmetic on numbers and times, so that the page's template only writes out paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from twinkit.core.forecast import Forecast
from twinkit.core.twin import HYPO_CHANNELS, Twin

WIDTH, HEIGHT = 720, 300
#: the horizons of a twin's fan chart, minutes ahead (fewer if the model cannot reach them)
FAN_HORIZONS = tuple(range(5, 125, 5))
#: a last reading older than this gets a warning: the forecast starts from it, not now
STALE_AFTER = pd.Timedelta(minutes=30)
# Room for the axes' labels: left, right, top, bottom.
MARGIN = (56, 16, 22, 40)


@dataclass(frozen=True)
class Tick:
    at: float  # pixel position along its axis
    label: str


@dataclass(frozen=True)
class FanChart:
    """Everything the template draws, in pixels of a ``width`` x ``height`` view box."""

    width: int
    height: int
    band: str  # the 90% band: a closed path
    median: str
    actual: str
    now_x: float
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    plot: tuple[float, float, float, float]  # left, top, right, bottom
    #: the target range as (top, bottom) pixels, clipped to the plot; None without one
    target: tuple[float, float] | None = None
    #: the hypoglycaemia line's pixel, or None
    hypo_y: float | None = None
    y_label: str = ""  # the value axis: channel and unit
    x_label: str = ""  # the time axis: clock times in this zone


def nice_step(span: float, count: int = 5) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``count`` ticks.

    >>> nice_step(230.0), nice_step(0.9), nice_step(0.0)
    (50.0, 0.2, 1.0)
    """
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / count
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def _path(xs: Sequence[float], ys: Sequence[float]) -> str:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))


def fan_chart(
    actual_times: pd.DatetimeIndex,
    actual: np.ndarray,
    origin: pd.Timestamp,
    times: pd.DatetimeIndex,
    median: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    width: int = WIDTH,
    height: int = HEIGHT,
    zone: str = "UTC",
    target_range: tuple[float, float] | None = None,
    hypo: float | None = None,
    y_label: str = "",
) -> FanChart:
    """The chart of ``actual`` readings up to ``origin`` and the forecast after it: the
    band from ``low`` to ``high`` and the ``median``, both starting at the last reading.

    The time axis shows clock times (``HH:MM``) in ``zone`` at whole hours; the value axis
    spans the data and the ``target_range`` (drawn as a band) and the ``hypo`` line."""
    last = float(actual[-1]) if len(actual) else float("nan")
    # The fan opens from the last reading, so it reads as the continuation of the line.
    f_times = pd.DatetimeIndex([origin, *times]) if math.isfinite(last) else times
    start = [last] if math.isfinite(last) else []
    f_med = np.asarray([*start, *median], dtype=np.float64)
    f_low = np.asarray([*start, *low], dtype=np.float64)
    f_high = np.asarray([*start, *high], dtype=np.float64)

    t0 = min([*actual_times, origin]) if len(actual_times) else origin
    t1 = max([*times, origin])
    span_s = max((t1 - t0).total_seconds(), 60.0)
    marks = [v for v in (*(target_range or ()), hypo) if v is not None]
    values = np.concatenate([actual, f_low, f_high, f_med, marks]).astype(np.float64)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    step = nice_step(hi - lo if hi > lo else abs(hi) or 1.0)
    y_min, y_max = math.floor(lo / step) * step, math.ceil(hi / step) * step
    if y_max <= y_min:
        y_min, y_max = y_min - step, y_max + step

    left, right = MARGIN[0], width - MARGIN[1]
    top, bottom = MARGIN[2], height - MARGIN[3]

    def x_of(t: pd.Timestamp) -> float:
        return float(left + (t - t0).total_seconds() / span_s * (right - left))

    def y_of(v: float) -> float:
        return bottom - (v - y_min) / (y_max - y_min) * (bottom - top)

    fx = [x_of(t) for t in f_times]
    band = ""
    if len(fx):
        upper = _path(fx, [y_of(v) for v in f_high])
        lower = [
            f"L{x:.1f},{y_of(v):.1f}"
            for x, v in reversed(list(zip(fx, f_low, strict=True)))
            if math.isfinite(v)
        ]
        band = f"{upper} {' '.join(lower)} Z" if upper and lower else ""

    y_ticks = []
    value = y_min
    while value <= y_max + step / 2:
        y_ticks.append(Tick(y_of(value), f"{value:g}"))
        value += step
    # Whole hours of the clock in the twin's zone: "13:00", and the date at midnight.
    x_ticks = []
    local = t0.tz_convert(zone) if t0.tzinfo is not None else t0.tz_localize("UTC").tz_convert(zone)
    moment = local.ceil("h")
    every = max(1, math.ceil(span_s / 3600 / 8))
    while moment <= t1:
        label = moment.strftime("%b %d") if moment.hour == 0 else moment.strftime("%H:%M")
        x_ticks.append(Tick(x_of(moment), label))
        moment += pd.Timedelta(hours=every)

    def clipped(v: float) -> float:
        return min(max(y_of(v), top), bottom)

    band_px = None
    if target_range is not None:
        band_px = (clipped(max(target_range)), clipped(min(target_range)))
    return FanChart(
        width=width,
        height=height,
        band=band,
        median=_path(fx, [y_of(v) for v in f_med]),
        actual=_path([x_of(t) for t in actual_times], [y_of(float(v)) for v in actual]),
        now_x=x_of(origin),
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        plot=(left, top, right, bottom),
        target=band_px,
        hypo_y=clipped(hypo) if hypo is not None else None,
        y_label=y_label,
        x_label=f"time ({zone})",
    )


def twin_chart(twin: Twin, forecast: Forecast, recent: pd.DataFrame) -> FanChart:
    """The fan chart of ``twin``'s ``forecast`` after its ``recent`` readings (``time``,
    ``value``), as the page and the report draw it: the twin's clock, unit, target range
    and, for glucose, the hypoglycaemia line."""
    unit = twin.unit_of(forecast.target)
    band = twin.target_range(forecast.target)
    low, high = forecast.interval(0.9)
    return fan_chart(
        pd.DatetimeIndex(recent["time"]),
        recent["value"].to_numpy(dtype=float),
        forecast.origin,
        forecast.times,
        forecast.quantiles[0.5],
        low,
        high,
        zone=twin.time_zone,
        target_range=band,
        hypo=band[0] if band is not None and forecast.target in HYPO_CHANNELS else None,
        y_label=f"{forecast.target} ({unit})" if unit else forecast.target,
    )


def age_in_words(age: pd.Timedelta) -> str:
    """``2 h 10 min``, ``3 d 4 h``.

    >>> age_in_words(pd.Timedelta(minutes=130)), age_in_words(pd.Timedelta(hours=76))
    ('2 h 10 min', '3 d 4 h')
    """
    minutes = int(age.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {mins} min" if hours else f"{mins} min"


@dataclass(frozen=True)
class LiveChart:
    """The served version's live RMSE per hour, its shadow's, and the holdout RMSE the
    version was promoted with (a level line), in pixels of a ``width`` x ``height`` box."""

    width: int
    height: int
    served: str
    shadow: str
    holdout_y: float | None
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    plot: tuple[float, float, float, float]


def live_chart(
    served: Sequence[tuple[pd.Timestamp, float]],
    shadow: Sequence[tuple[pd.Timestamp, float]],
    holdout: float | None,
    width: int = WIDTH,
    height: int = 200,
) -> LiveChart:
    """Hourly live RMSE lines (``served``, ``shadow``: (hour, RMSE)) and the ``holdout``
    level; days on the time axis."""
    times = [t for t, _ in [*served, *shadow]]
    t0, t1 = (min(times), max(times)) if times else (pd.Timestamp(0, tz="UTC"),) * 2
    span_s = max((t1 - t0).total_seconds(), 3600.0)
    values = [v for _, v in [*served, *shadow] if math.isfinite(v)]
    if holdout is not None and math.isfinite(holdout):
        values.append(holdout)
    hi = max(values) if values else 1.0
    step = nice_step(hi or 1.0)
    y_max = math.ceil(hi / step) * step or step
    left, right = MARGIN[0], width - MARGIN[1]
    top, bottom = MARGIN[2], height - MARGIN[3]

    def x_of(t: pd.Timestamp) -> float:
        return float(left + (t - t0).total_seconds() / span_s * (right - left))

    def y_of(v: float) -> float:
        return bottom - v / y_max * (bottom - top)

    y_ticks = [Tick(y_of(k * step), f"{k * step:g}") for k in range(int(y_max / step) + 1)]
    x_ticks = []
    day = t0.floor("D") + pd.Timedelta(days=1) if times else t0
    every = max(1, math.ceil(span_s / 86400 / 7))
    while times and day <= t1:
        x_ticks.append(Tick(x_of(day), day.strftime("%m-%d")))
        day += pd.Timedelta(days=every)
    return LiveChart(
        width=width,
        height=height,
        served=_path([x_of(t) for t, _ in served], [y_of(v) for _, v in served]),
        shadow=_path([x_of(t) for t, _ in shadow], [y_of(v) for _, v in shadow]),
        holdout_y=y_of(holdout) if holdout is not None and math.isfinite(holdout) else None,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        plot=(left, top, right, bottom),
    )
