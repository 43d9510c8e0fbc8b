"""A per-twin Gaussian-process forecaster: a sparse multitask GP over all horizon steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Self

import gpytorch
import numpy as np
import pandas as pd
import torch

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import Forecast
from twinkit.data.grid import check_frame
from twinkit.data.windows import N_TIME_FEATURES, Grid, Scaler, make_windows, to_grid
from twinkit.models.base import (
    QUANTILE_LEVELS,
    Forecaster,
    horizon_steps,
    make_forecast,
    register_forecaster,
)
from twinkit.models.torch_threads import one_thread

#: gaps in the target up to this long are bridged, in fit and predict alike
MAX_GAP_MIN = 15.0
_Z = np.array([NormalDist().inv_cdf(q) for q in QUANTILE_LEVELS])
_Z90 = NormalDist().inv_cdf(0.95)
_DTYPE = torch.float64  # small matrices; double precision keeps the Cholesky factors stable


class _MultitaskSVGP(gpytorch.models.ApproximateGP):  # type: ignore[misc]
    """A few latent sparse GPs mixed linearly (LMC) into one output per horizon step.

    Inputs are (n x d): the first d - 1 columns are standardised lag and covariate features
    (Matern 5/2, one lengthscale each), the last the time of day as a fraction of a day
    (a periodic kernel whose period is fixed at one day), the two kernels added.
    """

    def __init__(self, inducing: torch.Tensor, n_tasks: int) -> None:
        latents = inducing.shape[:1]  # inducing: (latents x m x d)
        n_features = inducing.size(-1) - 1
        distribution = gpytorch.variational.CholeskyVariationalDistribution(
            inducing.size(-2), batch_shape=latents
        )
        strategy = gpytorch.variational.LMCVariationalStrategy(
            gpytorch.variational.VariationalStrategy(
                self, inducing, distribution, learn_inducing_locations=True
            ),
            num_tasks=n_tasks,
            num_latents=inducing.size(0),
        )
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ZeroMean(batch_shape=latents)
        lags = gpytorch.kernels.MaternKernel(
            nu=2.5,
            ard_num_dims=n_features,
            active_dims=tuple(range(n_features)),
            batch_shape=latents,
        )
        day = gpytorch.kernels.PeriodicKernel(active_dims=(n_features,), batch_shape=latents)
        day.period_length = 1.0
        day.raw_period_length.requires_grad_(False)  # the daily rhythm is known, not learned
        self.covar_module = gpytorch.kernels.ScaleKernel(
            lags, batch_shape=latents
        ) + gpytorch.kernels.ScaleKernel(day, batch_shape=latents)

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


@dataclass(frozen=True)
class _Features:
    """Per-window inputs: ``values`` (n x d) lag and covariate features, ``day`` (n,) the
    time of day at the origin in [0, 1)."""

    values: np.ndarray
    day: np.ndarray

    def take(self, rows: np.ndarray) -> _Features:
        return _Features(self.values[rows], self.day[rows])

    def ridge_design(self) -> np.ndarray:
        """(n x p): features, time of day as sin and cos, an intercept."""
        angle = 2 * np.pi * self.day
        return np.column_stack([self.values, np.sin(angle), np.cos(angle), np.ones(len(angle))])

    def gp_inputs(self) -> torch.Tensor:
        """(n x d + 1): features, then the time of day for the periodic kernel."""
        return torch.as_tensor(np.column_stack([self.values, self.day]), dtype=_DTYPE)


@register_forecaster
class GPForecaster(Forecaster):
    """A ridge direct forecast of every horizon step, with a sparse multitask GP on the rest.

    The output is the change of the normalised target ``h`` steps after the origin, for
    every grid step up to ``max_horizon_min``. Its mean is a direct ridge regression (one
    closed-form solve for all steps; it extrapolates trends a stationary kernel would pull
    back to zero). A GP models what the ridge misses and gives the uncertainty: an additive
    kernel -- Matern 5/2 on the recent readings relative to the latest, its level, and hourly
    sums of carbs and insulin over ``covariate_hours`` -- plus a periodic kernel on the time
    of day with a one-day period. The horizon steps are the tasks of one multitask GP: their
    residuals are strongly correlated (the error 60 min ahead is much the error 55 min
    ahead), so ``n_latents`` latent GPs mixed per step (LMC) cover them all, each latent a
    variational GP with ``n_inducing`` learned inducing points, trained on the ELBO with Adam
    over minibatches. That costs a few GPs instead of one per step (independent per-step GPs,
    tried, were no more accurate and three times slower), and, unlike a GP at a few
    horizons with interpolation between, keeps an honest variance at every step.

    Quantiles are mean +- z * sd of the predictive Gaussian (GP variance plus each step's
    noise). The ridge and the GP learn from the earlier windows only; the last
    ``calibration_frac`` of them, unseen, set one factor on the sd so that the 90 % interval
    covers 90 % there: variational GP variances are seldom right as trained.

    ``known_future`` also feeds the hourly carbs and insulin sums after the origin (planned
    meals). Leave it off unless the context will carry them when forecasting, or the model
    will count on being told of every meal.

    >>> import pandas as pd, numpy as np
    >>> idx = pd.date_range("2026-01-01", periods=600, freq="5min", tz="UTC")
    >>> rng = np.random.default_rng(0)
    >>> y = 100 + 20 * np.sin(np.arange(600) * 2 * np.pi / 288) + rng.normal(0, 1, 600)
    >>> frame = pd.DataFrame({"glucose": y}, index=idx)
    >>> model = GPForecaster(max_horizon_min=30, n_inducing=16, iterations=30)
    >>> f = model.fit(frame).predict(frame, [15, 30])
    >>> bool((f.quantiles[0.05] < f.mean).all() and (f.mean < f.quantiles[0.95]).all())
    True
    """

    name = "gp"

    def __init__(
        self,
        target: str = "glucose",
        seed: int = 0,
        max_horizon_min: int = 120,
        lags: int = 12,
        covariates: Sequence[str] = ("carbs", "insulin"),
        covariate_hours: int = 3,
        known_future: bool = False,
        n_latents: int = 4,
        n_inducing: int = 64,
        iterations: int = 300,
        batch_size: int = 256,
        learning_rate: float = 0.03,
        ridge: float = 1e-3,
        calibration_frac: float = 0.15,
    ) -> None:
        super().__init__(target, seed, max_horizon_min)
        if lags < 2:
            raise ForecastInputError(f"gp: lags must be at least 2, got {lags}")
        if covariate_hours < 0:
            raise ForecastInputError(f"gp: covariate_hours must be >= 0, got {covariate_hours}")
        if min(n_latents, n_inducing, iterations, batch_size) < 1:
            raise ForecastInputError(
                "gp: n_latents, n_inducing, iterations and batch_size must be at least 1"
            )
        if not 0.0 <= calibration_frac < 0.5:
            raise ForecastInputError(
                f"gp: calibration_frac must be in [0, 0.5), got {calibration_frac}"
            )
        self.lags = lags
        self.covariates = tuple(covariates)
        self.covariate_hours = covariate_hours
        self.known_future = known_future
        self.n_latents = n_latents
        self.n_inducing = n_inducing
        self.iterations = iterations
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.ridge = ridge
        self.calibration_frac = calibration_frac
        # learned in fit()
        self.used_covariates: tuple[str, ...] = ()
        self.scaler: Scaler | None = None
        self.n_steps = 0
        self.calibration = 1.0
        self.coef: np.ndarray | None = None  # (p x steps) ridge weights
        self.input_mean: np.ndarray | None = None  # (d,) standardisation of the features
        self.input_std: np.ndarray | None = None
        self.residual_std: np.ndarray | None = None  # (steps,) unit of each GP task
        self.gp: _MultitaskSVGP | None = None
        self.likelihood: gpytorch.likelihoods.MultitaskGaussianLikelihood | None = None

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "lags": self.lags,
            "covariates": list(self.covariates),
            "covariate_hours": self.covariate_hours,
            "known_future": self.known_future,
            "n_latents": self.n_latents,
            "n_inducing": self.n_inducing,
            "iterations": self.iterations,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "ridge": self.ridge,
            "calibration_frac": self.calibration_frac,
        }

    # -- features -------------------------------------------------------------------

    def _features(
        self, grid: Grid, scaler: Scaler, n_steps: int, origins: np.ndarray | None
    ) -> tuple[_Features, np.ndarray, np.ndarray]:
        """Raw features, normalised target changes (n x steps) and origins of the windows."""
        windows = make_windows(
            grid,
            scaler,
            self.lags,
            n_steps,
            origins=origins,
            require_target=origins is None,
            future_covariates=self.known_future,
        )
        covariates = scaler.covariates(grid.covariates)
        per_hour = max(1, round(60 / grid.step_min))
        blocks = [
            windows.past[:, :-1, 0] - windows.last[:, None],  # the shape of the recent curve
            windows.last[:, None],  # its level: high values tend to come down
            _hourly_sums(covariates, windows.origin + 1, -per_hour, self.covariate_hours),
        ]
        if self.known_future:
            hours_ahead = math.ceil(n_steps / per_hour)
            blocks.append(_hourly_sums(covariates, windows.origin + 1, per_hour, hours_ahead))
        sin, cos = windows.past[:, -1, -N_TIME_FEATURES], windows.past[:, -1, -1]
        day = np.mod(np.arctan2(sin, cos) / (2 * np.pi), 1.0)
        return _Features(np.hstack(blocks), day), windows.target, windows.origin

    def _standardise(self, features: _Features) -> _Features:
        assert self.input_mean is not None and self.input_std is not None
        return _Features((features.values - self.input_mean) / self.input_std, features.day)

    # -- fit ------------------------------------------------------------------------

    def fit(self, history: pd.DataFrame) -> Self:
        check_frame(history, self.target)
        used = tuple(c for c in self.covariates if c in history.columns)
        grid = to_grid(history, self.target, used, max_gap_min=MAX_GAP_MIN)
        step = grid.step_min
        scaler = Scaler.fit(grid)
        n_steps = max(1, round(self.max_horizon_min / step))
        features, target, origins = self._features(grid, scaler, n_steps, None)
        n_cal = int(len(origins) * self.calibration_frac)
        train = np.arange(len(origins) - n_cal)
        if n_cal:
            # no training target may reach into the calibration windows' targets
            train = train[origins[train] + n_steps <= origins[-n_cal]]
        needed = max(2 * (features.values.shape[1] + 3), self.n_inducing)
        if len(train) < needed or (self.calibration_frac > 0 and n_cal < 10):
            hours = (needed / (1 - self.calibration_frac) + self.lags + n_steps) * step / 60
            raise ForecastInputError(
                f"gp: {len(origins)} gap-free windows of {self.lags + n_steps} readings "
                f"of {self.target!r}; need {needed} to train and 10 to calibrate (about "
                f"{hours:.1f} h of data without gaps)"
            )
        self.used_covariates, self.scaler, self.step_min = used, scaler, step
        self.n_steps = n_steps
        raw = features.values[train]
        self.input_mean = raw.mean(axis=0)
        self.input_std = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)
        fit_on = self._standardise(features.take(train))
        design = fit_on.ridge_design()
        gram = design.T @ design + self.ridge * len(design) * np.eye(design.shape[1])
        self.coef = np.linalg.solve(gram, design.T @ target[train])
        residual = target[train] - design @ self.coef
        self.residual_std = np.maximum(residual.std(axis=0), 1e-6)
        self._train_gp(fit_on.gp_inputs(), torch.as_tensor(residual / self.residual_std))
        self.calibration = 1.0
        if n_cal:
            held_out = self._standardise(
                features.take(np.arange(len(origins) - n_cal, len(origins)))
            )
            mean, sd = self._predict_change(held_out)
            z = np.abs(target[-n_cal:] - mean) / sd
            self.calibration = max(float(np.quantile(z, 0.9)) / _Z90, 1e-3)
        return self

    def _new_gp(
        self, inducing: torch.Tensor
    ) -> tuple[_MultitaskSVGP, gpytorch.likelihoods.MultitaskGaussianLikelihood]:
        gp = _MultitaskSVGP(inducing, self.n_steps).to(_DTYPE)
        # Start as mostly noise: the ridge has taken what is linear, and a large prior
        # variance far from the inducing points would inflate every interval until the
        # optimiser shrank it. Mixing weights ~ N(0, 1 / latents) keep each step's prior
        # variance independent of the number of latents.
        for kernel in gp.covar_module.kernels:
            kernel.outputscale = 0.1
        lmc = gp.variational_strategy.lmc_coefficients
        lmc.data.div_(math.sqrt(lmc.size(0)))
        likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(
            num_tasks=self.n_steps, has_global_noise=False
        ).to(_DTYPE)
        return gp, likelihood

    def _train_gp(self, x: torch.Tensor, y: torch.Tensor) -> None:
        n = len(x)
        # fork_rng: seed gpytorch's own initialisation without touching the caller's RNG
        with torch.random.fork_rng(devices=[]), one_thread():
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            start = torch.stack(
                [
                    x[torch.randperm(n, generator=generator)[: self.n_inducing]]
                    for _ in range(self.n_latents)
                ]
            )
            gp, likelihood = self._new_gp(start)
            gp.train()
            likelihood.train()
            trainable = [p for p in [*gp.parameters(), *likelihood.parameters()] if p.requires_grad]
            optimizer = torch.optim.Adam(trainable, lr=self.learning_rate)
            # decay to zero: the last steps average out minibatch noise instead of adding it
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.iterations)
            elbo = gpytorch.mlls.VariationalELBO(likelihood, gp, num_data=n)
            batch = min(self.batch_size, n)
            for _ in range(self.iterations):
                rows = torch.randint(n, (batch,), generator=generator)
                optimizer.zero_grad()
                loss = -elbo(gp(x[rows]), y[rows])
                loss.backward()
                optimizer.step()
                schedule.step()
        gp.eval()
        likelihood.eval()
        self.gp, self.likelihood = gp, likelihood

    def _predict_change(self, features: _Features) -> tuple[np.ndarray, np.ndarray]:
        """Mean and uncalibrated sd (n x steps) of the normalised target change."""
        assert self.gp is not None and self.likelihood is not None
        assert self.coef is not None and self.residual_std is not None
        with torch.no_grad(), one_thread():
            predictive = self.likelihood(self.gp(features.gp_inputs()))
            mean, var = predictive.mean.numpy(), predictive.variance.numpy()
        ridge = features.ridge_design() @ self.coef
        return ridge + mean * self.residual_std, np.sqrt(var) * self.residual_std

    # -- predict --------------------------------------------------------------------

    def lookback_min(self) -> float | None:
        # the lags (and a step more, with bridged gaps) or the covariate sums, the longer
        lags = self._grid_lookback(self.lags + 1, MAX_GAP_MIN)
        return None if lags is None else max(lags, 60.0 * self.covariate_hours)

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        step = self._check_fitted()
        assert self.scaler is not None
        series = check_frame(context, self.target)
        if series.empty:
            raise ForecastInputError(f"gp: no values of target {self.target!r} in the context")
        missing = [c for c in self.used_covariates if c not in context.columns]
        if missing:
            raise ForecastInputError(
                f"gp: the context lacks {missing}, which the model was fitted with; pass the "
                "column(s), NaN or 0 where nothing happened"
            )
        steps = horizon_steps(horizons, step, self.n_steps)
        # grid only the recent past the features read (with a margin for bridged gaps)
        last = pd.Timestamp(series.index[-1])
        needed_min = self.lookback_min()
        assert needed_min is not None  # fitted
        recent = context.loc[context.index >= last - pd.Timedelta(minutes=needed_min)]
        grid = to_grid(
            recent,
            self.target,
            self.used_covariates,
            step_min=step,
            max_gap_min=MAX_GAP_MIN,
            end=pd.Timestamp(context.index[-1]) if self.known_future else None,
        )
        origin = int(np.flatnonzero(np.isfinite(grid.target))[-1])
        tail = grid.target[max(0, origin - self.lags + 1) : origin + 1]
        if origin < self.lags - 1 or not np.isfinite(tail).all():
            raise ForecastInputError(
                f"gp: the last {self.lags} readings ({self.lags * step:g} min) of "
                f"{self.target!r} before the forecast origin must be gap-free (gaps up to "
                f"{MAX_GAP_MIN:g} min are bridged)"
            )
        features, _, _ = self._features(grid, self.scaler, self.n_steps, np.array([origin]))
        mean, sd = self._predict_change(self._standardise(features))
        scale = self.scaler.target_std
        centre = grid.target[origin] + scale * mean[0, steps - 1]
        spread = scale * self.calibration * sd[0, steps - 1]
        quantiles = centre[None, :] + _Z[:, None] * spread[None, :]
        return make_forecast(
            self.target, grid.index[origin], horizons, centre, quantiles, self.name
        )

    # -- state ----------------------------------------------------------------------

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.gp is None or self.likelihood is None or self.scaler is None:
            raise ForecastInputError("gp: nothing to save before fit()")
        assert self.coef is not None and self.residual_std is not None
        assert self.input_mean is not None and self.input_std is not None
        tensors = {
            "coef": self.coef,
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "residual_std": self.residual_std,
        }
        for prefix, module in (("gp.", self.gp), ("likelihood.", self.likelihood)):
            for key, value in module.state_dict().items():
                tensors[prefix + key] = value.detach().cpu().numpy().copy()
        inducing = self.gp.variational_strategy.base_variational_strategy.inducing_points
        config = {
            "model": self.name,
            "params": self.params(),
            "step_min": self.step_min,
            "scaler": self.scaler.to_dict(),
            "calibration": self.calibration,
            "used_covariates": list(self.used_covariates),
            "sizes": {"n_steps": self.n_steps, "inducing": list(inducing.shape)},
        }
        return tensors, config

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        model = cls(**config["params"])
        model.step_min = float(config["step_min"])
        model.scaler = Scaler.from_dict(config["scaler"])
        model.calibration = float(config["calibration"])
        model.used_covariates = tuple(config["used_covariates"])
        model.n_steps = int(config["sizes"]["n_steps"])
        model.coef = np.asarray(tensors["coef"], dtype=np.float64)
        model.input_mean = np.asarray(tensors["input_mean"], dtype=np.float64)
        model.input_std = np.asarray(tensors["input_std"], dtype=np.float64)
        model.residual_std = np.asarray(tensors["residual_std"], dtype=np.float64)
        shape = tuple(int(s) for s in config["sizes"]["inducing"])
        with torch.random.fork_rng(devices=[]):  # its random start is overwritten below
            gp, likelihood = model._new_gp(torch.zeros(shape, dtype=_DTYPE))
        for prefix, module in (("gp.", gp), ("likelihood.", likelihood)):
            state = {
                key[len(prefix) :]: torch.as_tensor(np.array(value))
                for key, value in tensors.items()
                if key.startswith(prefix)
            }
            module.load_state_dict(state, strict=True)
        gp.eval()
        likelihood.eval()
        model.gp, model.likelihood = gp, likelihood
        return model

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(
            target=target,
            seed=seed,
            max_horizon_min=30,
            lags=4,
            n_latents=2,
            n_inducing=8,
            iterations=20,
            batch_size=64,
        )


def _hourly_sums(values: np.ndarray, starts: np.ndarray, width: int, hours: int) -> np.ndarray:
    """(n x c * hours) sums of each column over consecutive blocks of ``|width|`` rows.

    Block k spans ``starts + k * width`` to ``starts + (k + 1) * width``: forwards from the
    start for ``width`` > 0, backwards for ``width`` < 0; rows outside the grid count as 0.
    Read from the grid rather than the windows, so a meal hours ago counts without the
    target having to be gap-free that far back.
    """
    cumulative = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    blocks = []
    for k in range(hours):
        bounds = np.clip(starts[:, None] + np.array([k, k + 1]) * width, 0, len(values))
        lo, hi = bounds.min(axis=1), bounds.max(axis=1)
        blocks.append(cumulative[hi] - cumulative[lo])
    return np.hstack(blocks) if blocks else np.zeros((len(starts), 0))
