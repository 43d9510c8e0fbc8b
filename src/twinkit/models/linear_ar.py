"""A per-twin linear autoregressive forecaster: one ridge regression per horizon step,
its inputs chosen per twin by time-series cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import Forecast
from twinkit.data.windows import Grid, to_grid
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


#: the history windows (minutes of the target before the origin) the selection tries
WINDOW_CHOICES_MIN = (30, 60, 120, 180, 240, 360)
#: ridge penalties tried, on standardised features (as scikit-learn's ``alpha``)
RIDGE_CHOICES = (0.1, 1.0, 10.0, 100.0)
#: the inputs tried: the window's values relative to the latest, or its step changes
INPUT_CHOICES = ("levels", "deltas")
#: rolling-origin folds of the selection: train on the first part, validate on the next
_FOLDS = ((0.55, 0.70), (0.70, 0.85), (0.85, 1.0))


def _bridged(recent: np.ndarray, lags: int, scheme: int) -> np.ndarray | None:
    """The forecast's window with gaps inside it bridged linearly, or None when it cannot
    be: a long window must not leave a twin without forecasts for hours after a short
    gap. Bridged only when the newest readings (the last three) are there and at least
    half the window is; the first release's windows had to be gap-free.

    >>> _bridged(np.array([1.0, np.nan, np.nan, 4.0, 5.0, 6.0]), 6, 2).tolist()
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    >>> _bridged(np.array([np.nan, np.nan, np.nan, np.nan, 5.0, 6.0]), 6, 2) is None
    True
    """
    if len(recent) < lags:
        return None
    known = np.isfinite(recent)
    if known.all():
        return recent
    if scheme == 1 or not known[-3:].all() or known.sum() * 2 < lags:
        return None
    at = np.arange(lags)
    return np.asarray(np.interp(at, at[known], recent[known]), dtype=np.float64)


@dataclass(frozen=True)
class _Config:
    lags: int
    inputs: str
    covariates: bool
    ridge: float


@register_forecaster
class LinearAR(Forecaster):
    """Direct multi-horizon ridge regression on the twin's regular grid.

    Each horizon step has its own regression of the change from the latest reading on the
    recent past: the last ``lags`` readings, as levels relative to the latest one or as
    step changes (``inputs``), and optionally the covariates (meals, insulin, steps) over
    the same window. What is left unset (``lags``, ``inputs``, ``covariates``, ``ridge``)
    is chosen per twin by rolling-origin cross-validation on its own history (three folds,
    each trained on the past of its validation part, a horizon's gap between them), among
    the windows of :data:`WINDOW_CHOICES_MIN`, both inputs, with and without covariates and
    the penalties of :data:`RIDGE_CHOICES`. The interval of a horizon is the forecast plus
    the quantiles of the chosen setting's out-of-fold errors at that horizon.

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
        lags: int | None = None,
        max_horizon_min: int = 120,
        ridge: float | None = None,
        inputs: str | None = None,
        covariates: bool | None = None,
        scheme: int = 2,
    ) -> None:
        super().__init__(target, seed)
        if lags is not None and lags < 2:
            raise ForecastInputError(f"linear_ar: lags must be at least 2, got {lags}")
        if inputs is not None and inputs not in INPUT_CHOICES:
            raise ForecastInputError(f"linear_ar: inputs must be one of {INPUT_CHOICES}")
        self.lags = lags
        self.max_horizon_min = max_horizon_min
        self.ridge = ridge
        self.inputs = inputs
        self.covariates = covariates
        #: 1: the first release (levels, a penalty per window on every feature), as its
        #: saved versions recorded; 2: standardised features and the selection
        self.scheme = scheme
        self.covariate_names: tuple[str, ...] = ()
        self.coef: np.ndarray | None = None  # (steps, features + 1)
        self.residual_quantiles: np.ndarray | None = None  # (levels, steps)
        self.center: np.ndarray | None = None  # (2, features): mean and scale
        self.selection: dict[str, float] = {}

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "lags": self.lags,
            "ridge": self.ridge,
            "inputs": self.inputs,
            "covariates": self.covariates,
            "scheme": self.scheme,
        }

    # -- features ------------------------------------------------------------------------

    def _grid(self, frame: pd.DataFrame, step_min: float | None = None) -> Grid:
        """The twin's grid with the covariates: before the fit every numeric channel (the
        selection decides), after it those the fit chose (absent ones as zeros: an event
        channel without rows had no events)."""
        if self.coef is None:
            wanted = None if self.covariates is not False else ()
            return to_grid(frame, self.target, covariates=wanted, step_min=step_min)
        names = self.covariate_names
        present = [n for n in names if n in frame.columns]
        grid = to_grid(frame, self.target, covariates=present, step_min=step_min)
        if len(present) == len(names):
            return grid
        cov = np.zeros((len(grid), len(names)))
        for j, name in enumerate(names):
            if name in present:
                cov[:, j] = grid.covariates[:, present.index(name)]
        return Grid(grid.index, grid.step_min, grid.target, cov, names)

    def _design(self, past: np.ndarray, cov: np.ndarray | None, inputs: str) -> np.ndarray:
        """Features of windows: ``past`` (n, lags) target values, ``cov`` (n, lags, c)."""
        changes = np.diff(past, axis=1) if inputs == "deltas" else (past - past[:, -1:])[:, :-1]
        parts = [changes]
        if cov is not None and cov.shape[2]:
            parts.append(cov.reshape(len(cov), -1))
        return np.hstack(parts)

    def _windows(
        self, grid: Grid, lags: int, n_steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gap-free windows: past (n, lags), future (n, steps), covariates (n, lags, c)."""
        width = lags + n_steps
        if len(grid) < width:
            c = grid.covariates.shape[1]
            return np.empty((0, lags)), np.empty((0, n_steps)), np.empty((0, lags, c))
        values = sliding_window_view(grid.target, width)
        ok = np.isfinite(values).all(axis=1)
        cov = sliding_window_view(grid.covariates, lags, axis=0)[: len(values)]
        cov = np.moveaxis(cov, 2, 1)[ok]  # (n, lags, c)
        return values[ok, :lags], values[ok, lags:], cov

    # -- fitting -------------------------------------------------------------------------

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        """Ridge on standardised features with an unpenalised intercept: (coef, center)."""
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        z = (x - mean) / scale
        y_mean = y.mean(axis=0)
        gram = z.T @ z + ridge * np.eye(z.shape[1])
        weights = np.linalg.solve(gram, z.T @ (y - y_mean)).T  # (steps, features)
        coef = np.hstack([weights, y_mean[:, None]])
        return coef, np.stack([mean, scale])

    @staticmethod
    def _apply(x: np.ndarray, coef: np.ndarray, center: np.ndarray) -> np.ndarray:
        z = (x - center[0]) / center[1]
        out: np.ndarray = z @ coef[:, :-1].T + coef[:, -1]
        return out

    def _candidates(self, step: float, n_cov: int) -> list[_Config]:
        windows = (
            [self.lags]
            if self.lags is not None
            else sorted({max(2, round(m / step) + 1) for m in WINDOW_CHOICES_MIN})
        )
        inputs = [self.inputs] if self.inputs is not None else list(INPUT_CHOICES)
        if self.covariates is not None:
            covs = [self.covariates and n_cov > 0]
        else:
            covs = [False, True] if n_cov else [False]
        ridges = [self.ridge] if self.ridge is not None else list(RIDGE_CHOICES)
        return [_Config(w, i, c, r) for w in windows for i in inputs for c in covs for r in ridges]

    def fit(self, history: pd.DataFrame) -> Self:
        if self.scheme == 1:
            return self._fit_first_release(history)
        self.covariate_names = ()
        self.coef = None
        grid = self._grid(history)
        step = grid_step_minutes(pd.Series(grid.target, index=grid.index))
        n_steps = max(1, round(self.max_horizon_min / step))
        candidates = self._candidates(step, grid.covariates.shape[1])
        smallest = min(c.lags for c in candidates)
        past, _, _ = self._windows(grid, smallest, n_steps)
        needed = 2 * (smallest + 1)
        if len(past) < needed:
            raise ForecastInputError(
                f"linear_ar: {len(past)} gap-free windows of {smallest + n_steps} readings of "
                f"{self.target!r}; need at least {needed} (about "
                f"{(needed + smallest + n_steps) * step / 60:.1f} h of data without gaps)"
            )
        best, scores, residuals = self._select(grid, candidates, n_steps)
        past, future, cov = self._windows(grid, best.lags, n_steps)
        x = self._design(past, cov if best.covariates else None, best.inputs)
        y = future - past[:, -1:]
        coef, center = self._solve(x, y, best.ridge)
        if residuals is None or len(residuals) < 30:
            residuals = y - self._apply(x, coef, center)
        self.lags, self.inputs, self.ridge = best.lags, best.inputs, best.ridge
        self.covariates = best.covariates
        self.covariate_names = grid.covariate_names if best.covariates else ()
        self.coef, self.center = coef, center
        self.residual_quantiles = np.quantile(residuals, QUANTILE_LEVELS, axis=0)
        self.selection = scores
        self.step_min = step
        return self

    def _select(
        self, grid: Grid, candidates: list[_Config], n_steps: int
    ) -> tuple[_Config, dict[str, float], np.ndarray | None]:
        """The candidate with the least out-of-fold error (each horizon step's squared
        error over that step's variance, averaged), its scores and its out-of-fold errors."""
        if len(candidates) == 1:
            return candidates[0], {}, None
        longest = max(c.lags for c in candidates)
        # Every candidate is scored on the same forecast origins: those the longest window
        # allows, so a short window is not scored on easier, earlier ones.
        base_past, base_future, _ = self._windows(grid, longest, n_steps)
        origins = len(base_past)
        if origins < 60:
            fallback = [c for c in candidates if c.lags == min(x.lags for x in candidates)]
            return fallback[len(fallback) // 2], {}, None
        spread = np.var(base_future - base_past[:, -1:], axis=0) + 1e-9
        best: tuple[float, _Config, np.ndarray | None] | None = None
        scores: dict[str, float] = {}
        for lags in sorted({c.lags for c in candidates}):
            past, future, cov = self._windows(grid, lags, n_steps)
            keep = slice(len(past) - origins, None)  # the origins of the longest window
            past, future, cov = past[keep], future[keep], cov[keep]
            y = future - past[:, -1:]
            for inputs in sorted({c.inputs for c in candidates}):
                for with_cov in sorted({c.covariates for c in candidates}):
                    x = self._design(past, cov if with_cov else None, inputs)
                    for config in candidates:
                        if (config.lags, config.inputs, config.covariates) != (
                            lags, inputs, with_cov,
                        ):  # fmt: skip
                            continue
                        errors = []
                        for lo, hi in _FOLDS:
                            start, end = int(lo * origins), int(hi * origins)
                            train_end = max(start - n_steps - lags, 0)
                            if train_end < 2 * x.shape[1] or end <= start:
                                continue
                            coef, center = self._solve(x[:train_end], y[:train_end], config.ridge)
                            errors.append(y[start:end] - self._apply(x[start:end], coef, center))
                        if not errors:
                            continue
                        held = np.vstack(errors)
                        score = float(np.mean(np.mean(held**2, axis=0) / spread))
                        scores[f"{lags}/{inputs}/{'cov' if with_cov else 'y'}/{config.ridge:g}"] = (
                            round(score, 5)
                        )
                        if best is None or score < best[0] - 1e-12:
                            best = (score, config, held)
        if best is None:
            return candidates[0], scores, None
        return best[1], scores, best[2]

    def _fit_first_release(self, history: pd.DataFrame) -> Self:
        """The first release's fit, for its saved versions' parameters (``scheme`` 1)."""
        lags = self.lags or 12
        grid = self._target_grid(history)
        step = grid_step_minutes(grid)
        n_steps = max(1, round(self.max_horizon_min / step))
        past, future = lag_windows(grid.to_numpy(), lags, n_steps)
        if len(past) < 2 * (lags + 1):
            raise ForecastInputError(f"linear_ar: too little gap-free data for {lags} lags")
        x = np.hstack([(past - past[:, -1:])[:, :-1], np.ones((len(past), 1))])
        y = future - past[:, -1:]
        ridge = 1e-3 if self.ridge is None else self.ridge
        gram = x.T @ x + ridge * len(x) * np.eye(x.shape[1])
        self.coef = np.linalg.solve(gram, x.T @ y).T
        self.residual_quantiles = np.quantile(y - x @ self.coef.T, QUANTILE_LEVELS, axis=0)
        self.lags, self.step_min = lags, step
        return self

    def lookback_min(self) -> float | None:
        return None if self.lags is None else self._grid_lookback(self.lags)

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        assert self.coef is not None and self.residual_quantiles is not None
        assert self.lags is not None
        grid = self._grid(context, step)
        last = (
            int(np.flatnonzero(np.isfinite(grid.target))[-1])
            if np.isfinite(grid.target).any()
            else -1
        )
        window = grid.target[max(last + 1 - self.lags, 0) : last + 1]
        recent = _bridged(window, self.lags, self.scheme)
        if recent is None:
            raise ForecastInputError(
                f"linear_ar: the last {self.lags} readings ({self.lags * step:g} min) of "
                f"{self.target!r} before the forecast origin have too large a gap"
            )
        steps = horizon_steps(horizons, step, self.coef.shape[0])
        if self.scheme == 1:
            x = np.hstack([(recent - recent[-1])[:-1], [1.0]])[None, :]
            change = (x @ self.coef.T)[0, steps - 1]
        else:
            assert self.center is not None
            cov = grid.covariates[last + 1 - self.lags : last + 1][None, :, :]
            x = self._design(recent[None, :], cov if self.covariates else None, str(self.inputs))
            change = self._apply(x, self.coef, self.center)[0, steps - 1]
        mean = recent[-1] + change
        quantiles = mean[None, :] + self.residual_quantiles[:, steps - 1]
        return make_forecast(self.target, grid.index[last], horizons, mean, quantiles, self.name)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.coef is None or self.residual_quantiles is None:
            raise ForecastInputError("linear_ar: nothing to save before fit()")
        tensors = {"coef": self.coef, "residual_quantiles": self.residual_quantiles}
        if self.center is not None:
            tensors["center"] = self.center
        config = {
            "model": self.name,
            "params": self.params(),
            "step_min": self.step_min,
            "covariate_names": list(self.covariate_names),
        }
        return tensors, config

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        params = dict(config["params"])
        params.setdefault("scheme", 1)  # saved before the selection existed
        model = cls(**params)
        model.step_min = float(config["step_min"])
        model.covariate_names = tuple(config.get("covariate_names", ()))
        model.coef = np.asarray(tensors["coef"], dtype=np.float64)
        model.residual_quantiles = np.asarray(tensors["residual_quantiles"], dtype=np.float64)
        if "center" in tensors:
            model.center = np.asarray(tensors["center"], dtype=np.float64)
        return model

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(target=target, seed=seed, lags=3, max_horizon_min=30)
