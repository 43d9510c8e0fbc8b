"""An ensemble weighted by each member's recent skill on the twin, with conformal intervals.

The members learn on the earlier part of the twin's history; the later part scores them
(weights) and calibrates the combined forecast's quantiles (split conformal), so that a 90%
interval covers about 90% of what the twin does next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import Forecast
from twinkit.data.grid import target_grid
from twinkit.models.base import (
    QUANTILE_LEVELS,
    Forecaster,
    forecaster_class,
    grid_step_minutes,
    horizon_steps,
    make_forecast,
    register_forecaster,
)
from twinkit.models.evaluate import rolling_forecasts


def conformal_quantiles(residuals: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Split-conformal quantiles of ``residuals`` (truth - point forecast) at ``levels``.

    The finite-sample correction moves each level away from the median by the usual
    (n + 1) / n, so the interval covers at least its nominal share in expectation.

    >>> r = np.arange(-50, 51, dtype=float)
    >>> conformal_quantiles(r, [0.05, 0.5, 0.95]).round(1).tolist()
    [-45.9, 0.0, 45.9]
    """
    n = len(residuals)
    if n < 10:
        raise ForecastInputError(f"{n} calibration residuals; need at least 10")
    out = []
    for q in levels:
        tail = min(q, 1 - q)
        adjusted = max(tail - (1 - tail) / n, 0.0) if tail < 0.5 else 0.5
        out.append(np.quantile(residuals, adjusted if q < 0.5 else 1 - adjusted))
    return np.asarray(out)


def combine(medians: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (members x steps), conformal quantiles (levels x steps) and combined
    forecasts (origins x steps).

    ``medians`` is (members x origins x steps) of point forecasts, ``truth`` (origins x
    steps); NaN marks a forecast or an observation that is missing. Each horizon step
    weighs the members by their inverse mean squared error at that step, over the
    forecasts every member made: a member that is better at short horizons and another
    that is better at long ones each count most where they are better.
    """
    usable = np.isfinite(truth) & np.isfinite(medians).all(axis=0)
    scored = int(usable.sum(axis=0).min()) if usable.size else 0
    if scored < 10:
        raise ForecastInputError(
            "ensemble: too few scored forecasts to weight and calibrate the members "
            f"({scored}); give it more gap-free history"
        )
    errors = np.where(usable[None], (np.nan_to_num(medians) - np.nan_to_num(truth)) ** 2, 0.0)
    mse = errors.sum(axis=1) / usable.sum(axis=0)[None, :]  # (members, steps)
    weights = 1.0 / np.maximum(mse, 1e-9)
    weights /= weights.sum(axis=0, keepdims=True)
    combined = np.einsum("mk,mok->ok", weights, np.nan_to_num(medians))
    combined[~np.isfinite(medians).all(axis=0)] = np.nan
    quantiles = np.zeros((len(QUANTILE_LEVELS), truth.shape[1]))
    for k in range(truth.shape[1]):
        residuals = (truth[:, k] - combined[:, k])[usable[:, k]]
        quantiles[:, k] = conformal_quantiles(residuals, QUANTILE_LEVELS)
    return weights, quantiles, combined


@register_forecaster
class Ensemble(Forecaster):
    """Members combined by inverse validation MSE; quantiles by split conformal.

    >>> import pandas as pd, numpy as np
    >>> idx = pd.date_range("2026-01-01", periods=800, freq="5min", tz="UTC")
    >>> rng = np.random.default_rng(0)
    >>> y = 100 + 20 * np.sin(np.arange(800) * 2 * np.pi / 288) + rng.normal(0, 1, 800)
    >>> frame = pd.DataFrame({"glucose": y}, index=idx)
    >>> model = Ensemble(members=("persistence", "linear_ar"), max_horizon_min=30,
    ...                  max_calibration_origins=100).fit(frame)
    >>> bool((model.weights[1] > model.weights[0]).all())  # linear_ar is the better member
    True
    """

    name = "ensemble"

    def __init__(
        self,
        target: str = "glucose",
        seed: int = 0,
        max_horizon_min: int = 120,
        members: Sequence[str] = ("linear_ar", "gru", "gp"),
        calibration_frac: float = 0.25,
        max_calibration_origins: int = 300,
        member_params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(target, seed, max_horizon_min)
        if not members:
            raise ForecastInputError("an ensemble needs at least one member")
        if not 0.05 <= calibration_frac <= 0.5:
            raise ForecastInputError(f"calibration_frac {calibration_frac} not in [0.05, 0.5]")
        self.members_names = tuple(members)
        self.calibration_frac = calibration_frac
        self.max_calibration_origins = max_calibration_origins
        self.member_params = dict(member_params or {})
        self.members: list[Forecaster] = []
        self.weights = np.zeros(0)
        self.residual_quantiles: np.ndarray | None = None  # (levels, steps)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "members": list(self.members_names),
            "calibration_frac": self.calibration_frac,
            "max_calibration_origins": self.max_calibration_origins,
            "member_params": self.member_params,
        }

    def _member(self, name: str) -> Forecaster:
        kwargs = {"target": self.target, "seed": self.seed, "max_horizon_min": self.max_horizon_min}
        return forecaster_class(name)(**{**kwargs, **self.member_params.get(name, {})})

    def fit(self, history: pd.DataFrame) -> Self:
        grid = self._target_grid(history)
        step = grid_step_minutes(grid)
        n_steps = max(1, round(self.max_horizon_min / step))
        observed = grid.index[grid.notna().to_numpy()]
        split = observed[int(len(observed) * (1 - self.calibration_frac))]
        early = history.loc[history.index < split]
        members, names = [], []
        for name in self.members_names:
            try:
                members.append(self._member(name).fit(early))
                names.append(name)
            except ForecastInputError:
                continue  # a member that cannot learn from this twin's data sits this one out
        if not members:
            raise ForecastInputError(
                f"ensemble: no member ({', '.join(self.members_names)}) could be fitted"
            )
        truth = target_grid(history, self.target, step)
        origins = pd.DatetimeIndex(truth.index[(truth.index >= split) & truth.notna().to_numpy()])
        origins = origins[: len(origins) - 1]
        if len(origins) > self.max_calibration_origins:
            pick = np.linspace(0, len(origins) - 1, self.max_calibration_origins).astype(int)
            origins = origins[pick]
        horizons = [round(step * (k + 1)) for k in range(n_steps)]
        rolling = [
            rolling_forecasts(member, history, split, horizons, origins=origins)
            for member in members
        ]
        medians = np.stack([r.median if r.median is not None else r.mean for r in rolling])
        # A member that could not forecast at an origin left its truth out; any other kept it.
        actual = np.fmax.reduce(np.stack([r.truth for r in rolling]))
        weights, quantiles, _ = combine(medians, actual)
        self.members, self.members_names = members, tuple(names)
        self.weights = weights
        self.residual_quantiles = quantiles
        self.step_min = step
        return self

    @classmethod
    def from_fitted(
        cls,
        members: Sequence[Forecaster],
        weights: np.ndarray,
        residual_quantiles: np.ndarray,
        step_min: float,
    ) -> Ensemble:
        """An ensemble of already fitted members, weighted and calibrated elsewhere."""
        first = members[0]
        model = cls(
            target=first.target,
            seed=first.seed,
            max_horizon_min=min(m.max_horizon_min for m in members),
            members=tuple(m.name for m in members),
        )
        model.members = list(members)
        model.weights = np.asarray(weights, dtype=np.float64)
        model.residual_quantiles = np.asarray(residual_quantiles, dtype=np.float64)
        model.step_min = step_min
        return model

    def lookback_min(self) -> float | None:
        # the longest of the members', or None if one of them may read everything
        reach = [member.lookback_min() for member in self.members]
        if not reach or any(r is None for r in reach):
            return None
        return max(r for r in reach if r is not None)

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        assert self.residual_quantiles is not None
        steps = horizon_steps(horizons, step, self.residual_quantiles.shape[1])
        # One weight per member and horizon step; a version saved before the weights were
        # per step has one per member, the same at every step.
        per_step = self.weights if self.weights.ndim == 2 else self.weights[:, None]
        per_step = np.broadcast_to(per_step, (len(self.members), self.residual_quantiles.shape[1]))
        medians, weights, origin = [], [], None
        for weight, member in zip(per_step, self.members, strict=True):
            try:
                forecast = member.predict(context, horizons)
            except ForecastInputError:
                continue
            medians.append(forecast.quantiles[0.5])
            weights.append(weight[steps - 1])
            origin = forecast.origin
        if origin is None:
            raise ForecastInputError("ensemble: no member could forecast from this context")
        w = np.asarray(weights) / np.sum(weights, axis=0, keepdims=True)
        centre = np.einsum("mh,mh->h", w, np.asarray(medians))
        quantiles = centre[None, :] + self.residual_quantiles[:, steps - 1]
        return make_forecast(self.target, origin, horizons, centre, quantiles, self.name)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.residual_quantiles is None:
            raise ForecastInputError("ensemble: nothing to save before fit()")
        tensors: dict[str, np.ndarray] = {
            "weights": self.weights,
            "residual_quantiles": self.residual_quantiles,
        }
        configs = []
        for i, member in enumerate(self.members):
            member_tensors, member_config = member.get_state()
            tensors.update({f"member{i}.{k}": v for k, v in member_tensors.items()})
            configs.append(member_config)
        config = {
            "model": self.name,
            "params": self.params(),
            "step_min": self.step_min,
            "fitted_members": list(self.members_names),
            "member_configs": configs,
        }
        return tensors, config

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        model = cls(**config["params"])
        model.step_min = float(config["step_min"])
        model.weights = np.asarray(tensors["weights"], dtype=np.float64)
        model.residual_quantiles = np.asarray(tensors["residual_quantiles"], dtype=np.float64)
        model.members_names = tuple(config["fitted_members"])
        for i, member_config in enumerate(config["member_configs"]):
            prefix = f"member{i}."
            member_tensors = {
                k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
            }
            member_cls = forecaster_class(member_config["model"])
            model.members.append(member_cls.from_state(member_tensors, member_config))
        return model

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(
            target=target,
            seed=seed,
            max_horizon_min=30,
            members=("persistence", "linear_ar"),
            member_params={"linear_ar": {"lags": 3}},
            max_calibration_origins=60,
        )
