"""A per-twin linear autoregressive forecaster: one ridge regression per horizon step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

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


def lag_windows(values: np.ndarray, lags: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``lags`` past values and the ``n_steps`` values after each, gap-free only."""
    width = lags + n_steps
    if len(values) < width:
        return np.empty((0, lags)), np.empty((0, n_steps))
    windows = sliding_window_view(values, width)
    windows = windows[np.isfinite(windows).all(axis=1)]
    return windows[:, :lags], windows[:, lags:]


@register_forecaster
class LinearAR(Forecaster):
    """Direct multi-horizon AR on the twin's regular grid, with residual-quantile intervals.

    Each horizon step has its own ridge regression on the last ``lags`` values (relative
    to the latest one, so the model learns changes, not levels); the interval for a
    horizon is the latest value plus the quantiles of that horizon's residuals.

    >>> import pandas as pd, numpy as np
    >>> idx = pd.date_range("2026-01-01", periods=600, freq="5min", tz="UTC")
    >>> rng = np.random.default_rng(0)
    >>> y = 100 + 20 * np.sin(np.arange(600) * 2 * np.pi / 288) + rng.normal(0, 1, 600)
    >>> frame = pd.DataFrame({"glucose": y}, index=idx)
    >>> f = LinearAR(lags=6, max_horizon_min=60).fit(frame).predict(frame, [30, 60])
    >>> bool((f.quantiles[0.05] < f.mean).all() and (f.mean < f.quantiles[0.95]).all())
    True
    """

    name = "linear_ar"

    def __init__(
        self,
        target: str = "glucose",
        seed: int = 0,
        lags: int = 12,
        max_horizon_min: int = 120,
        ridge: float = 1e-3,
    ) -> None:
        super().__init__(target, seed)
        if lags < 1:
            raise ForecastInputError(f"linear_ar: lags must be at least 1, got {lags}")
        self.lags = lags
        self.max_horizon_min = max_horizon_min
        self.ridge = ridge
        self.coef: np.ndarray | None = None  # (steps, lags + 1)
        self.residual_quantiles: np.ndarray | None = None  # (levels, steps)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "lags": self.lags,
            "ridge": self.ridge,
        }

    def _design(self, past: np.ndarray) -> np.ndarray:
        relative = past - past[:, -1:]
        return np.hstack([relative[:, :-1], np.ones((len(past), 1))])

    def fit(self, history: pd.DataFrame) -> Self:
        grid = self._target_grid(history)
        step = grid_step_minutes(grid)
        n_steps = max(1, round(self.max_horizon_min / step))
        past, future = lag_windows(grid.to_numpy(), self.lags, n_steps)
        needed = 2 * (self.lags + 1)
        if len(past) < needed:
            raise ForecastInputError(
                f"linear_ar: {len(past)} gap-free windows of {self.lags + n_steps} readings of "
                f"{self.target!r}; need at least {needed} (about "
                f"{(needed + self.lags + n_steps) * step / 60:.1f} h of data without gaps)"
            )
        x = self._design(past)
        y = future - past[:, -1:]
        gram = x.T @ x + self.ridge * len(x) * np.eye(x.shape[1])
        coef = np.linalg.solve(gram, x.T @ y).T  # (steps, features)
        residuals = y - x @ coef.T
        self.coef = coef
        self.residual_quantiles = np.quantile(residuals, QUANTILE_LEVELS, axis=0)
        self.step_min = step
        return self

    def lookback_min(self) -> float | None:
        return self._grid_lookback(self.lags)

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        assert self.coef is not None and self.residual_quantiles is not None
        grid = self._target_grid(context, step)
        grid = grid.loc[: grid.last_valid_index()]
        recent = grid.to_numpy()[-self.lags :]
        if len(recent) < self.lags or not np.isfinite(recent).all():
            raise ForecastInputError(
                f"linear_ar: the last {self.lags} readings ({self.lags * step:g} min) of "
                f"{self.target!r} before the forecast origin must be gap-free"
            )
        steps = horizon_steps(horizons, step, self.coef.shape[0])
        x = self._design(recent[None, :])
        change = (x @ self.coef.T)[0, steps - 1]
        mean = recent[-1] + change
        quantiles = mean[None, :] + self.residual_quantiles[:, steps - 1]
        return make_forecast(self.target, grid.index[-1], horizons, mean, quantiles, self.name)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.coef is None or self.residual_quantiles is None:
            raise ForecastInputError("linear_ar: nothing to save before fit()")
        tensors = {"coef": self.coef, "residual_quantiles": self.residual_quantiles}
        return tensors, {"model": self.name, "params": self.params(), "step_min": self.step_min}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        model = cls(**config["params"])
        model.step_min = float(config["step_min"])
        model.coef = np.asarray(tensors["coef"], dtype=np.float64)
        model.residual_quantiles = np.asarray(tensors["residual_quantiles"], dtype=np.float64)
        return model

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(target=target, seed=seed, lags=3, max_horizon_min=30)
