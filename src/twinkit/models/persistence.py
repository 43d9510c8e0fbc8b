"""Persistence: tomorrow looks like now. The baseline every forecaster must beat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import Forecast
from twinkit.models.base import (
    QUANTILE_LEVELS,
    Forecaster,
    grid_step_minutes,
    horizon_steps,
    make_forecast,
    register_forecaster,
)


@register_forecaster
class Persistence(Forecaster):
    """The last value, with intervals from the twin's own past h-step changes.

    >>> import pandas as pd, numpy as np
    >>> idx = pd.date_range("2026-01-01", periods=300, freq="5min", tz="UTC")
    >>> frame = pd.DataFrame({"glucose": 100 + 10 * np.sin(np.arange(300) / 20)}, index=idx)
    >>> f = Persistence(max_horizon_min=60).fit(frame).predict(frame, [30, 60])
    >>> float(f.mean[0]) == float(frame["glucose"].iloc[-1])
    True
    """

    name = "persistence"

    def __init__(self, target: str = "glucose", seed: int = 0, max_horizon_min: int = 120) -> None:
        super().__init__(target, seed, max_horizon_min)
        self.delta_quantiles: np.ndarray | None = None  # (levels, steps)

    def params(self) -> dict[str, Any]:
        return super().params()

    def fit(self, history: pd.DataFrame) -> Self:
        grid = self._target_grid(history)
        step = grid_step_minutes(grid)
        n_steps = max(1, round(self.max_horizon_min / step))
        values = grid.to_numpy()
        out = np.zeros((len(QUANTILE_LEVELS), n_steps))
        for h in range(1, n_steps + 1):
            deltas = values[h:] - values[:-h]
            deltas = deltas[np.isfinite(deltas)]
            if len(deltas) < 10:
                raise ForecastInputError(
                    f"persistence: too little gap-free history of {self.target!r} to estimate "
                    f"{h * step:g}-minute changes (need 10 pairs, found {len(deltas)})"
                )
            out[:, h - 1] = np.quantile(deltas, QUANTILE_LEVELS)
        self.step_min = step
        self.delta_quantiles = out
        return self

    def lookback_min(self) -> float | None:
        return self._grid_lookback(1)

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        assert self.delta_quantiles is not None
        grid = self._target_grid(context, step).dropna()
        steps = horizon_steps(horizons, step, self.delta_quantiles.shape[1])
        last = float(grid.iloc[-1])
        mean = np.full(len(steps), last)
        quantiles = last + self.delta_quantiles[:, steps - 1]
        return make_forecast(self.target, grid.index[-1], horizons, mean, quantiles, self.name)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.delta_quantiles is None:
            raise ForecastInputError("persistence: nothing to save before fit()")
        return {"delta_quantiles": self.delta_quantiles}, {
            "model": self.name,
            "params": self.params(),
            "step_min": self.step_min,
        }

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        model = cls(**config["params"])
        model.step_min = float(config["step_min"])
        model.delta_quantiles = np.asarray(tensors["delta_quantiles"], dtype=np.float64)
        return model

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(target=target, seed=seed, max_horizon_min=30)
