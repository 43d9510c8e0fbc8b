"""The forecast a state twin returns: a mean and quantiles for every horizon."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError

#: quantile levels every forecaster must return
REQUIRED_QUANTILES: tuple[float, ...] = (0.05, 0.5, 0.95)
#: quantile levels twinkit's forecasters estimate (the required ones among them)
QUANTILE_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


@dataclass(frozen=True)
class Forecast:
    """Point and interval forecasts of one target from one origin time.

    ``horizons`` are minutes after ``origin``; ``quantiles`` maps a level in (0, 1) to
    one value per horizon, non-decreasing in the level.
    """

    target: str
    origin: pd.Timestamp
    horizons: tuple[int, ...]
    mean: np.ndarray
    quantiles: dict[float, np.ndarray]
    model: str = ""
    version: int | None = None

    def __post_init__(self) -> None:
        n = len(self.horizons)
        if self.mean.shape != (n,):
            raise ForecastInputError(f"mean has shape {self.mean.shape}, expected ({n},)")
        missing = [q for q in REQUIRED_QUANTILES if q not in self.quantiles]
        if missing:
            raise ForecastInputError(f"forecast lacks required quantiles {missing}")
        for q, values in self.quantiles.items():
            if values.shape != (n,):
                raise ForecastInputError(f"quantile {q} has shape {values.shape}, expected ({n},)")

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex([self.origin + pd.Timedelta(minutes=h) for h in self.horizons])

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the central interval, e.g. 0.9 -> (q05, q95)."""
        lo, hi = round((1 - level) / 2, 6), round(1 - (1 - level) / 2, 6)
        if lo not in self.quantiles or hi not in self.quantiles:
            raise ForecastInputError(f"no quantiles {lo} and {hi} for a {level:.0%} interval")
        return self.quantiles[lo], self.quantiles[hi]

    def to_frame(self) -> pd.DataFrame:
        """One row per horizon: time, horizon, mean and a column per quantile."""
        frame = pd.DataFrame(
            {"time": self.times, "horizon_min": list(self.horizons), "mean": self.mean}
        )
        for q in sorted(self.quantiles):
            frame[f"q{q * 100:g}"] = self.quantiles[q]
        return frame

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "origin": self.origin.isoformat(),
            "model": self.model,
            "version": self.version,
            "horizons_min": list(self.horizons),
            "mean": [float(v) for v in self.mean],
            "quantiles": {
                f"{q:g}": [float(v) for v in vs] for q, vs in sorted(self.quantiles.items())
            },
        }


def make_forecast(
    target: str,
    origin: pd.Timestamp,
    horizons: Sequence[int],
    mean: np.ndarray,
    quantiles: np.ndarray,
    model: str,
) -> Forecast:
    """Build a Forecast from a (levels x horizons) array, sorting so quantiles never cross."""
    ordered = np.sort(quantiles, axis=0)
    return Forecast(
        target=target,
        origin=origin,
        horizons=tuple(int(h) for h in horizons),
        mean=np.asarray(mean, dtype=np.float64),
        quantiles={q: ordered[i] for i, q in enumerate(QUANTILE_LEVELS)},
        model=model,
    )
