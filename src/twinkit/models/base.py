"""The Forecaster protocol and the grid helpers the forecasters share."""

from __future__ import annotations

import abc
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeGuard

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import QUANTILE_LEVELS, Forecast, make_forecast
from twinkit.core.lazy import require
from twinkit.core.plugins import load_plugins
from twinkit.data.grid import (
    check_frame,
    detect_step_minutes,
    grid_step_minutes,
    horizon_steps,
    target_grid,
)
from twinkit.data.windows import MAX_GAP_MIN, to_grid

if TYPE_CHECKING:
    from twinkit.models.neural import NeuralForecaster

__all__ = [
    "QUANTILE_LEVELS",
    "Forecaster",
    "check_frame",
    "detect_step_minutes",
    "forecaster_class",
    "grid_step_minutes",
    "horizon_steps",
    "is_neural",
    "make_forecast",
    "register_forecaster",
    "registered_forecasters",
    "target_grid",
]

_REGISTRY: dict[str, type[Forecaster]] = {}

#: twinkit's own forecasters that need the training stack, by the module that registers
#: them: imported when first asked for, so that a slim install has the others
_TRAINING_HOMES = {
    "gp": "twinkit.models.gp",
    "gru": "twinkit.models.gru",
    "transformer": "twinkit.models.transformer",
}


def register_forecaster(cls: type[Forecaster]) -> type[Forecaster]:
    """Class decorator: make a forecaster loadable from a registry artifact by its name."""
    _REGISTRY[cls.name] = cls
    return cls


def registered_forecasters() -> list[str]:
    """Names of every forecaster that can be built by name, baselines first."""
    load_plugins()
    names = set(_REGISTRY) | set(_TRAINING_HOMES)
    first = [n for n in ("persistence", "linear_ar") if n in names]
    return first + sorted(n for n in names if n not in first)


def is_neural(model: object) -> TypeGuard[NeuralForecaster]:
    """Whether ``model`` is a network (:class:`~twinkit.models.neural.NeuralForecaster`),
    without importing torch where no network was loaded."""
    neural = sys.modules.get("twinkit.models.neural")
    return neural is not None and isinstance(model, neural.NeuralForecaster)


def forecaster_class(name: str) -> type[Forecaster]:
    """The forecaster registered as ``name``; :class:`~twinkit.core.errors.MissingExtraError`
    when it needs libraries this install lacks."""
    load_plugins()
    if name not in _REGISTRY and name in _TRAINING_HOMES:
        require(_TRAINING_HOMES[name], f"the {name!r} forecaster")
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(registered_forecasters())
        raise ForecastInputError(f"unknown model {name!r}; known models: {known}") from None


class Forecaster(abc.ABC):
    """Forecasts one target channel of a state twin with quantiles at every horizon.

    ``fit`` and ``predict`` take a wide frame: a UTC ``DatetimeIndex`` and one column per
    channel (NaN where a channel has no value at that time).
    """

    name: ClassVar[str]

    def __init__(self, target: str = "glucose", seed: int = 0, max_horizon_min: int = 120) -> None:
        if max_horizon_min <= 0:
            raise ForecastInputError(f"max_horizon_min must be positive, got {max_horizon_min}")
        self.target = target
        self.seed = seed
        self.max_horizon_min = max_horizon_min  # the furthest forecast fit() prepares for
        self.step_min: float | None = None

    @abc.abstractmethod
    def fit(self, history: pd.DataFrame) -> Self:
        """Learn from a twin's history."""

    @abc.abstractmethod
    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        """Forecast ``horizons`` minutes after the last target value in ``context``."""

    @abc.abstractmethod
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Weights and JSON config: everything needed to rebuild the fitted model."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        """Rebuild a fitted model from :meth:`get_state`."""

    @classmethod
    @abc.abstractmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        """A small unfitted instance for the shared contract tests."""

    def lookback_min(self) -> float | None:
        """How far before the last target reading ``predict`` looks, in minutes, or None
        when it may read the whole context. Rows older than that (the last target reading's
        time minus this) never change a forecast, so a server reads only the rows after it;
        the contract tests hold every forecaster to that. Call after ``fit``."""
        return None

    def _grid_lookback(self, steps: int, max_gap_min: float = MAX_GAP_MIN) -> float | None:
        """The lookback of a model that reads the last ``steps`` values of its gap-bridged
        target grid: those steps, a bridged gap on either side, and one step of slack."""
        if self.step_min is None:
            return None
        return self.step_min * (steps + 1) + 2 * max_gap_min

    def params(self) -> dict[str, Any]:
        """The constructor arguments, recorded in the registry."""
        return {"target": self.target, "seed": self.seed, "max_horizon_min": self.max_horizon_min}

    def _check_fitted(self) -> float:
        if self.step_min is None:
            raise ForecastInputError(f"{self.name}: call fit() before predict()")
        return self.step_min

    def _target_grid(self, frame: pd.DataFrame, step_min: float | None = None) -> pd.Series:
        """The target on its regular grid, short gaps (missed readings) bridged."""
        grid = to_grid(frame, self.target, covariates=(), step_min=step_min)
        return pd.Series(grid.target, index=grid.index)
