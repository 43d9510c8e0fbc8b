"""Outside comparators for ``twinkit eval forecast``: what a careful analyst would try
first without twinkit, fitted per twin on the same data and scored the same way.

- ``plain_ridge``: a per-person ridge regression of the change at each horizon step on
  the last 2 hours of glucose step changes, with an intercept, ``alpha`` 1 (scikit-learn's
  ``Ridge``, features as they are); its interval is the forecast plus its in-sample
  residual quantiles.
- ``auto_arima``, ``auto_ets``: statsforecast's ``AutoARIMA`` and ``AutoETS`` (extra
  ``twinkit[compare]``), fitted on the twin's gridded history (gaps bridged linearly), and
  applied to each forecast's context with ``forward``; the interval is theirs (90 %,
  80 % and 50 % levels give the quantiles).

They are not registered forecasters: the product does not serve them, the evaluation
compares against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.core.forecast import QUANTILE_LEVELS, Forecast, make_forecast
from twinkit.data.grid import grid_step_minutes, horizon_steps
from twinkit.models.base import Forecaster
from twinkit.models.linear_ar import lag_windows

#: the history the statsforecast models are applied to at each forecast (points of grid)
_CONTEXT_POINTS = 864


class PlainRidge(Forecaster):
    """Ridge on the last ``window_min`` minutes of step changes, per horizon step."""

    name = "plain_ridge"

    def __init__(
        self,
        target: str = "glucose",
        seed: int = 0,
        max_horizon_min: int = 120,
        window_min: float = 120.0,
        alpha: float = 1.0,
    ) -> None:
        super().__init__(target, seed, max_horizon_min)
        self.window_min = window_min
        self.alpha = alpha
        self.model: Any = None
        self.lags = 0
        self.residual_quantiles: np.ndarray | None = None

    def fit(self, history: pd.DataFrame) -> Self:
        from sklearn.linear_model import Ridge

        grid = self._target_grid(history)
        step = grid_step_minutes(grid)
        n_steps = max(1, round(self.max_horizon_min / step))
        self.lags = max(2, round(self.window_min / step) + 1)  # 8 changes need 9 readings
        past, future = lag_windows(grid.to_numpy(), self.lags, n_steps)
        if len(past) < 2 * self.lags:
            raise ForecastInputError(f"plain_ridge: {len(past)} gap-free windows is too few")
        x = np.diff(past, axis=1)
        y = future - past[:, -1:]
        self.model = Ridge(alpha=self.alpha).fit(x, y)
        residuals = y - self.model.predict(x)
        self.residual_quantiles = np.quantile(residuals, QUANTILE_LEVELS, axis=0)
        self.step_min = step
        return self

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        assert self.residual_quantiles is not None
        grid = self._target_grid(context, step)
        grid = grid.loc[: grid.last_valid_index()]
        recent = grid.to_numpy()[-self.lags :]
        if len(recent) < self.lags or not np.isfinite(recent).all():
            raise ForecastInputError("plain_ridge: the recent window has a gap")
        steps = horizon_steps(horizons, step, self.residual_quantiles.shape[1])
        change = self.model.predict(np.diff(recent)[None, :])[0, steps - 1]
        mean = recent[-1] + change
        quantiles = mean[None, :] + self.residual_quantiles[:, steps - 1]
        return make_forecast(self.target, grid.index[-1], horizons, mean, quantiles, self.name)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise TwinkitError("plain_ridge is a comparator for evaluation; it is not saved")

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        raise TwinkitError("plain_ridge is a comparator for evaluation; it is not saved")

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(target=target, seed=seed, max_horizon_min=30, window_min=15)


class StatsForecastModel(Forecaster):
    """A statsforecast model (``AutoARIMA``, ``AutoETS``) fitted per twin."""

    name = "statsforecast"

    def __init__(
        self,
        target: str = "glucose",
        seed: int = 0,
        max_horizon_min: int = 120,
        kind: str = "AutoARIMA",
    ) -> None:
        super().__init__(target, seed, max_horizon_min)
        self.kind = kind
        self.model: Any = None

    def _series(self, frame: pd.DataFrame, step: float | None = None) -> pd.Series:
        grid = self._target_grid(frame, step)
        grid = grid.loc[grid.first_valid_index() : grid.last_valid_index()]
        return grid.interpolate(limit_direction="both")

    def fit(self, history: pd.DataFrame) -> Self:
        try:
            from statsforecast import models
        except ImportError:
            raise TwinkitError(
                f"{self.name} needs statsforecast: pip install 'twinkit[compare]'"
            ) from None
        series = self._series(history)
        if len(series) < 50:
            raise ForecastInputError(f"{self.name}: {len(series)} readings is too few")
        self.step_min = grid_step_minutes(series)
        self.model = getattr(models, self.kind)().fit(series.to_numpy(dtype=np.float64))
        return self

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        series = self._series(context, step).iloc[-_CONTEXT_POINTS:]
        n_steps = max(1, round(self.max_horizon_min / step))
        steps = horizon_steps(horizons, step, n_steps)
        out = self.model.forward(
            y=series.to_numpy(dtype=np.float64), h=int(steps.max()), level=[50, 80, 90]
        )
        at = steps - 1
        mean = np.asarray(out["mean"], dtype=np.float64)[at]
        band = {
            0.05: out["lo-90"], 0.1: out["lo-80"], 0.25: out["lo-50"], 0.5: out["mean"],
            0.75: out["hi-50"], 0.9: out["hi-80"], 0.95: out["hi-90"],
        }  # fmt: skip
        quantiles = np.stack([np.asarray(band[q], dtype=np.float64)[at] for q in QUANTILE_LEVELS])
        return make_forecast(self.target, series.index[-1], horizons, mean, quantiles, self.name)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise TwinkitError(f"{self.name} is a comparator for evaluation; it is not saved")

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        raise TwinkitError(f"{cls.name} is a comparator for evaluation; it is not saved")

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(target=target, seed=seed, max_horizon_min=30)


class AutoARIMA(StatsForecastModel):
    name = "auto_arima"

    def __init__(self, target: str = "glucose", seed: int = 0, max_horizon_min: int = 120):
        super().__init__(target, seed, max_horizon_min, kind="AutoARIMA")


class AutoETS(StatsForecastModel):
    name = "auto_ets"

    def __init__(self, target: str = "glucose", seed: int = 0, max_horizon_min: int = 120):
        super().__init__(target, seed, max_horizon_min, kind="AutoETS")


#: the comparators ``twinkit eval forecast --models`` also takes
COMPARATORS: dict[str, type[Forecaster]] = {c.name: c for c in (PlainRidge, AutoARIMA, AutoETS)}
