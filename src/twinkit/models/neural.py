"""The base of torch forecasters: windows in, quantiles of the change out, one training loop."""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from twinkit.continual import Consolidation, fisher_diagonal, reservoir
from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import Forecast
from twinkit.core.progress import ProgressFn, Steps
from twinkit.data.grid import check_frame
from twinkit.data.network_io import (
    NetworkInputs,
    NetworkSpec,
    forecast_from_output,
    network_inputs,
    spec_grid,
    spec_windows,
)
from twinkit.data.windows import Grid, Scaler, Windows
from twinkit.models.base import QUANTILE_LEVELS, Forecaster
from twinkit.models.onnx_export import export_network
from twinkit.models.torch_threads import one_thread, seeded

#: fewest gap-free windows worth training a network on, besides those a validation split
#: sets aside to keep training targets out of validation (one horizon's worth)
MIN_WINDOWS = 32
#: the most recent share of each twin's windows, held back for early stopping
VALIDATION_FRAC = 0.15
#: key of the model config in an exported ONNX file's metadata_props
_MEDIAN = QUANTILE_LEVELS.index(0.5)
_EVAL_BATCH = 4096
#: the defaults of :meth:`NeuralForecaster.update`: EWC strength, replayed old windows per
#: new one, old windows the Fisher information is estimated on and their batch size
EWC_STRENGTH = 0.1
REPLAY_RATIO = 1.0
FISHER_WINDOWS = 256
FISHER_BATCH = 8


def pinball_loss(
    predicted: torch.Tensor, target: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """Mean quantile loss of (B, H, Q) predictions against (B, H) truths."""
    diff = target.unsqueeze(-1) - predicted
    return torch.maximum(levels * diff, (levels - 1.0) * diff).mean()


class QuantileHead(nn.Module):
    """Features -> (B, H, Q) quantiles that cannot cross: the median plus positive steps.

    Each quantile is the median plus (above) or minus (below) a running sum of softplus
    increments; the sums are a fixed matrix product so ONNX sees a plain MatMul.
    """

    offsets: torch.Tensor

    def __init__(self, in_features: int, horizon: int, n_quantiles: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.n_quantiles = n_quantiles
        self.linear = nn.Linear(in_features, horizon * n_quantiles)
        median = n_quantiles // 2
        signs = torch.zeros(n_quantiles, n_quantiles)
        for q in range(n_quantiles):
            if q > median:
                signs[q, median + 1 : q + 1] = 1.0
            elif q < median:
                signs[q, q:median] = -1.0
        # Not persistent: it follows from the sizes, so it stays out of saved weights.
        self.register_buffer("offsets", signs.T.contiguous(), persistent=False)
        self.median = median

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raw = self.linear(features).reshape(-1, self.horizon, self.n_quantiles)
        centre = raw[..., self.median : self.median + 1]
        out: torch.Tensor = centre + torch.matmul(nn.functional.softplus(raw), self.offsets)
        return out


class NeuralForecaster(Forecaster):
    """Learns the next ``max_horizon_min`` minutes of a target from windows of a twin's grid.

    A subclass supplies only :meth:`build_network`: a module mapping ``(past (B, L, F),
    future (B, H, F2))`` to non-crossing quantiles (B, H, Q) of the normalised change from
    the value at the origin. This class cuts the windows, trains with the pinball loss and
    early stopping, forecasts, saves and exports. Population training normalises each twin
    by its own :class:`Scaler`, so one network serves twins with different levels.
    """

    def __init__(
        self,
        target: str = "glucose",
        seed: int = 0,
        max_horizon_min: int = 120,
        context_min: int = 120,
        covariates: Sequence[str] | None = None,
        future_covariates: bool = True,
        hidden: int = 32,
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        patience: int = 5,
        max_gap_min: float = 15.0,
    ) -> None:
        super().__init__(target, seed, max_horizon_min)
        positive = {
            "context_min": context_min,
            "hidden": hidden,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "patience": patience,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ForecastInputError(f"{self.name}: {key} must be positive, got {value}")
        if weight_decay < 0 or max_gap_min < 0:
            raise ForecastInputError(f"{self.name}: weight_decay and max_gap_min must be >= 0")
        self.context_min = context_min
        self.covariates = list(covariates) if covariates is not None else None
        self.future_covariates = future_covariates
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        #: told of each training epoch as it starts (``progress(what, done, total)``); a
        #: caller's hook, not a parameter of the model
        self.progress: ProgressFn | None = None
        self.max_gap_min = max_gap_min
        self.network: nn.Module | None = None
        self.scaler: Scaler | None = None  # None for a population model: each twin its own
        self.covariate_names: tuple[str, ...] = ()
        self.context_steps = 0
        self.n_steps = 0
        self.n_past_features = 0
        self.n_future_features = 0
        self.best_val_loss: float | None = None  # of the last fit, for reports

    @classmethod
    def tiny(cls, target: str = "y", seed: int = 0) -> Self:
        return cls(
            target=target,
            seed=seed,
            hidden=8,
            epochs=3,
            batch_size=64,
            context_min=30,
            max_horizon_min=30,
        )

    @abc.abstractmethod
    def build_network(
        self, n_past_features: int, n_future_features: int, horizon_steps: int, n_quantiles: int
    ) -> nn.Module:
        """The untrained module: ``(past, future) -> (B, horizon_steps, n_quantiles)``."""

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "context_min": self.context_min,
            "covariates": self.covariates,
            "future_covariates": self.future_covariates,
            "hidden": self.hidden,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "patience": self.patience,
            "max_gap_min": self.max_gap_min,
        }

    # -- training ----------------------------------------------------------------------

    def fit(self, history: pd.DataFrame) -> Self:
        """Train a fresh network on one twin's history, normalised by its own scaler."""
        grids = self._grids([history])
        scaler = Scaler.fit(grids[0])
        self._train_fresh(grids, [scaler])
        self.scaler = scaler
        return self

    def fit_population(self, histories: Sequence[pd.DataFrame]) -> Self:
        """Train a fresh network on windows pooled from many twins, each by its own scaler."""
        if len(histories) == 0:
            raise ForecastInputError(f"{self.name}: fit_population needs at least one history")
        grids = self._grids(histories)
        self._train_fresh(grids, [Scaler.fit(g) for g in grids])
        self.scaler = None
        return self

    def personalize(
        self, history: pd.DataFrame, epochs: int | None = None, lr: float | None = None
    ) -> Self:
        """A copy of this (population) model, fine-tuned on one twin with its own scaler.

        The default learning rate is a third of the original one, so the twin's few windows
        adjust the population's weights rather than overwrite them.
        """
        twin, grid = self._copy_for(history)
        scaler = Scaler.fit(grid)
        network = twin._fitted_network()
        with seeded(twin.seed):
            twin._train(
                network,
                [twin._windows(grid, scaler)],
                lr if lr is not None else self.lr / 3,
                epochs if epochs is not None else self.epochs,
            )
        twin.scaler = scaler
        return twin

    def update(
        self,
        history: pd.DataFrame,
        since: pd.Timestamp | None = None,
        method: str = "ewc",
        strength: float = EWC_STRENGTH,
        replay: float = REPLAY_RATIO,
        epochs: int | None = None,
        lr: float | None = None,
    ) -> Self:
        """A copy of this fitted model brought up to date on ``history`` (the twin's data,
        old and new), without forgetting what it learnt: continual learning.

        Windows whose origin is at or after ``since`` are new (all of them when None; at
        least the most recent ``2 * (MIN_WINDOWS + steps)`` ones, enough to train on); the
        rest are old. ``method``:

        - ``"ewc"``: start from these weights and train on the new windows plus a replay
          buffer of old ones (``replay`` old per new one, reservoir-sampled), with elastic
          weight consolidation pulling each weight back by its Fisher information on the
          old windows (``strength``, see :class:`twinkit.continual.Consolidation`);
        - ``"finetune"``: start from these weights and train on the new windows alone;
        - ``"scratch"``: a fresh network of the same settings fitted on all of ``history``.

        The model keeps its scaler (a twin's; a population model's copy takes the twin's),
        so its weights keep their meaning. The learning rate defaults to a third of the
        original one, as for :meth:`personalize`.
        """
        if method not in ("ewc", "finetune", "scratch"):
            raise ForecastInputError(f"{self.name}: unknown update method {method!r}")
        if method == "scratch":
            fresh = type(self)(**self.params())
            return fresh.fit(history)
        twin, grid = self._copy_for(history)
        scaler = twin.scaler or Scaler.fit(grid)
        windows = twin._windows(grid, scaler)
        origins = pd.DatetimeIndex(grid.index[windows.origin]) if len(windows) else None
        is_new = (
            np.ones(len(windows), dtype=bool)
            if since is None or origins is None
            else np.asarray(origins >= since)
        )
        # A change found hours ago has few new windows yet: the most recent windows enough
        # to train on count as new then (the pull and the replay still guard the old).
        enough = 2 * (MIN_WINDOWS + twin.n_steps)
        if is_new.sum() < enough:
            is_new[-enough:] = True
        new, old = windows.take(np.flatnonzero(is_new)), windows.take(np.flatnonzero(~is_new))
        network = twin._fitted_network()
        parts, penalty = [new], None
        if method == "ewc" and len(old):
            params = [p for p in network.parameters() if p.requires_grad]
            fisher = fisher_diagonal(params, twin._loss_batches(network, old))
            penalty = Consolidation.ewc(params, fisher, strength).penalty
            keep = reservoir(len(old), round(replay * len(new)), seed=twin.seed)
            if len(keep):
                parts = [old.take(keep), new]
        with seeded(twin.seed):
            twin._train(
                network,
                parts,
                lr if lr is not None else self.lr / 3,
                epochs if epochs is not None else self.epochs,
                penalty,
            )
        twin.scaler = scaler
        return twin

    def _copy_for(self, history: pd.DataFrame) -> tuple[Self, Grid]:
        """A copy of this fitted model to train further on ``history``, and its grid."""
        self._fitted_network()
        twin = copy.deepcopy(self)
        grid = twin._grid(history, twin.covariate_names)
        if not math.isclose(grid.step_min, twin._check_fitted()):
            raise ForecastInputError(
                f"{self.name}: these data are sampled every {grid.step_min:g} min, the model "
                f"every {twin.step_min:g} min; resample them or fit a model on them alone"
            )
        return twin, grid

    def _loss_batches(
        self, network: nn.Module, windows: Windows
    ) -> list[Callable[[], torch.Tensor]]:
        """Closures of the pinball loss on small batches of up to ``FISHER_WINDOWS`` of
        ``windows`` (evenly spread), for the Fisher information."""
        picked = np.unique(np.linspace(0, len(windows) - 1, FISHER_WINDOWS).astype(int))
        past, future, target = window_tensors([windows.take(picked)])
        levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
        network.eval()  # no dropout noise in the estimate

        def batch(rows: slice) -> Callable[[], torch.Tensor]:
            return lambda: pinball_loss(network(past[rows], future[rows]), target[rows], levels)

        return [
            batch(slice(start, start + FISHER_BATCH)) for start in range(0, len(past), FISHER_BATCH)
        ]

    def _train_fresh(self, grids: list[Grid], scalers: list[Scaler]) -> None:
        windows = self._shape(grids, scalers)
        with seeded(self.seed):
            network = self._new_network()
            self._train(network, windows, self.lr, self.epochs)
        self.network = network

    def _shape(self, grids: list[Grid], scalers: list[Scaler]) -> list[Windows]:
        """Fix the step, the window lengths and the feature counts from ``grids``; their
        windows."""
        step = grids[0].step_min
        self.step_min = step
        self.context_steps = max(1, round(self.context_min / step))
        self.n_steps = max(1, round(self.max_horizon_min / step))
        windows = [self._windows(g, s) for g, s in zip(grids, scalers, strict=True)]
        self.n_past_features = windows[0].past.shape[2]
        self.n_future_features = windows[0].future.shape[2]
        return windows

    # -- federated learning ----------------------------------------------------------------

    def initialise(self, step_min: float, covariates: Sequence[str]) -> Self:
        """Give this model an untrained network (from its seed) for data sampled every
        ``step_min`` minutes with ``covariates``, without any data: the start of a
        federated run, whose sites train it (:meth:`site_windows`). Returns ``self``."""
        if step_min <= 0:
            raise ForecastInputError(f"{self.name}: step_min must be positive, got {step_min}")
        self.covariates = list(covariates)
        # A made-up history, only to lay out one window of these channels.
        n = round((self.context_min + self.max_horizon_min) / step_min) + 4
        index = pd.date_range("2026-01-01", periods=n, freq=pd.Timedelta(minutes=step_min))
        probe = pd.DataFrame(
            {self.target: 100.0 + 10.0 * np.sin(np.arange(n) / 6.0)}
            | {name: 0.0 for name in self.covariates},
            index=index.tz_localize("UTC"),
        )
        grids = self._grids([probe])
        self._shape(grids, [Scaler.fit(grids[0])])
        with seeded(self.seed):
            self.network = self._new_network()
        self.network.eval()
        self.scaler = None
        return self

    def site_windows(self, histories: Sequence[pd.DataFrame]) -> list[Windows]:
        """The training windows of a site's twins for this initialised or fitted model,
        each twin normalised by its own scaler (as :meth:`fit_population` does)."""
        step = self._check_fitted()
        windows = []
        for history in histories:
            check_frame(history, self.target)
            grid = self._grid(history, self.covariate_names)
            if not math.isclose(grid.step_min, step):
                raise ForecastInputError(
                    f"{self.name}: a history is sampled every {grid.step_min:g} min, the "
                    f"federation every {step:g} min; resample it"
                )
            windows.append(self._windows(grid, Scaler.fit(grid)))
        return windows

    def _new_network(self) -> nn.Module:
        return self.build_network(
            self.n_past_features, self.n_future_features, self.n_steps, len(QUANTILE_LEVELS)
        )

    def lookback_min(self) -> float | None:
        return None if self.step_min is None else self.spec().lookback_min()

    def spec(self) -> NetworkSpec:
        """The pre- and post-processing settings of this fitted model (torch-free)."""
        self._check_fitted()
        return self._draft_spec()

    def _draft_spec(self) -> NetworkSpec:
        # Also used while training, before fit() has finished.
        return NetworkSpec(
            name=self.name,
            target=self.target,
            step_min=self.step_min or 0.0,
            context_min=self.context_min,
            context_steps=self.context_steps,
            n_steps=self.n_steps,
            max_gap_min=self.max_gap_min,
            covariate_names=self.covariate_names,
            future_covariates=self.future_covariates,
            scaler=self.scaler,
        )

    def _windows(self, grid: Grid, scaler: Scaler, origin: int | None = None) -> Windows:
        return spec_windows(self._draft_spec(), grid, scaler, origin)

    def _train(
        self,
        network: nn.Module,
        windows: list[Windows],
        lr: float,
        epochs: int,
        penalty: Callable[[], torch.Tensor] | None = None,
    ) -> None:
        """Adam on the pinball loss (plus ``penalty()``, e.g. a consolidation's pull, in
        training); stop when validation stalls; keep the best weights."""
        found = sum(len(w) for w in windows)
        width = self.context_steps + self.n_steps
        needed = MIN_WINDOWS + self.n_steps
        if found < needed:
            hours = (needed + width - 1) * self._check_fitted() / 60
            raise ForecastInputError(
                f"{self.name}: found {found} gap-free windows of {width} readings of "
                f"{self.target!r}; need at least {needed}, i.e. about {hours:.1f} h of "
                "data without gaps longer than max_gap_min"
            )
        parts = [chronological_split(w, self.n_steps) for w in windows]
        train = window_tensors([p[0] for p in parts])
        val = window_tensors([p[1] for p in parts])
        levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
        optimizer = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=self.weight_decay)
        shuffle = torch.Generator().manual_seed(self.seed)
        best_loss = validation_loss(network, val, levels)
        best_state = _copy_state(network)
        stalled = 0
        steps = Steps(epochs, self.progress)
        for epoch in range(epochs):
            steps(f"epoch {epoch + 1} of at most {epochs}")
            network.train()
            order = torch.randperm(len(train[0]), generator=shuffle)
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                loss = pinball_loss(network(train[0][rows], train[1][rows]), train[2][rows], levels)
                if penalty is not None:
                    loss = loss + penalty()
                optimizer.zero_grad()
                torch.autograd.backward(loss)
                # Recurrent nets meet the odd exploding batch; clipping keeps a run stable.
                nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimizer.step()
            loss_now = validation_loss(network, val, levels)
            if loss_now < best_loss:
                best_loss, best_state, stalled = loss_now, _copy_state(network), 0
            else:
                stalled += 1
                if stalled >= self.patience:
                    break
        steps.finish()
        network.load_state_dict(best_state)
        network.eval()
        self.best_val_loss = best_loss

    # -- data -----------------------------------------------------------------------------

    def _grids(self, histories: Sequence[pd.DataFrame]) -> list[Grid]:
        """Every history on its grid, with the same covariates; names fixed from here on."""
        for history in histories:
            check_frame(history, self.target)  # a named error before reading any column
        if self.covariates is not None:
            names = tuple(self.covariates)
        else:
            # Sorted, so the feature order does not depend on the order of a frame's columns.
            names = tuple(
                sorted(
                    {
                        str(c)
                        for h in histories
                        for c in h.columns
                        if c != self.target and pd.api.types.is_numeric_dtype(h[c].dtype)
                    }
                )
            )
        grids = [self._grid(h, names) for h in histories]
        steps = sorted({g.step_min for g in grids})
        if len(steps) > 1:
            raise ForecastInputError(
                f"{self.name}: the histories are sampled at different intervals {steps} min; "
                "resample them to one interval first"
            )
        self.covariate_names = names
        return grids

    def _grid(
        self,
        frame: pd.DataFrame,
        names: tuple[str, ...],
        step_min: float | None = None,
        end: pd.Timestamp | None = None,
    ) -> Grid:
        return spec_grid(self._draft_spec(), frame, names, step_min, end)

    # -- forecasting -----------------------------------------------------------------------

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        """Forecast from the last target reading in ``context``.

        Covariate values after that reading (with ``future_covariates``) are taken as known
        ahead: planned meals or insulin. A population model (no stored scaler) normalises
        by the context itself, so give it hours of data, not just ``context_min``.
        """
        inputs = self.network_inputs(context, horizons)
        network = self._fitted_network()
        with torch.no_grad(), one_thread():
            output = network(torch.from_numpy(inputs.past), torch.from_numpy(inputs.future))
        return self.forecast_from_output(output.numpy(), inputs)

    def network_inputs(
        self, context: pd.DataFrame, horizons: Sequence[int] | None = None
    ) -> NetworkInputs:
        """The float32 network inputs for one forecast (numpy only; no torch needed).

        ``horizons`` None means every step up to ``max_horizon_min``.
        """
        return network_inputs(self.spec(), context, horizons)

    def forecast_from_output(self, output: np.ndarray, inputs: NetworkInputs) -> Forecast:
        """The network's (1, H, Q) output for ``inputs`` -> a Forecast in data units."""
        return forecast_from_output(self.spec(), output, inputs)

    # -- state and export --------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The JSON config of a fitted model (what get_state and export_onnx record)."""
        self._fitted_network()
        return {
            "model": self.name,
            "params": self.params(),
            "step_min": self.step_min,
            "covariate_names": list(self.covariate_names),
            "network": {
                "context_steps": self.context_steps,
                "horizon_steps": self.n_steps,
                "n_past_features": self.n_past_features,
                "n_future_features": self.n_future_features,
                "quantile_levels": list(QUANTILE_LEVELS),
            },
            "scaler": self.scaler.to_dict() if self.scaler is not None else None,
        }

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        config = self.config()
        tensors = {
            key: value.detach().cpu().numpy().copy()
            for key, value in self._fitted_network().state_dict().items()
        }
        return tensors, config

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Self:
        model = cls(**config["params"])
        sizes = config["network"]
        if list(sizes["quantile_levels"]) != list(QUANTILE_LEVELS):
            raise ForecastInputError(
                f"{cls.name}: saved with quantile levels {sizes['quantile_levels']}, this "
                f"twinkit uses {list(QUANTILE_LEVELS)}; refit the model"
            )
        model.step_min = float(config["step_min"])
        model.covariate_names = tuple(config["covariate_names"])
        model.context_steps = int(sizes["context_steps"])
        model.n_steps = int(sizes["horizon_steps"])
        model.n_past_features = int(sizes["n_past_features"])
        model.n_future_features = int(sizes["n_future_features"])
        scaler = config.get("scaler")
        model.scaler = Scaler.from_dict(scaler) if scaler is not None else None
        with seeded(model.seed):
            network = model._new_network()
        weights = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}
        network.load_state_dict(weights)
        network.eval()
        model.network = network
        return model

    def export_onnx(self, path: Path | str, calibration: np.ndarray | None = None) -> Path:
        """Write the network as ONNX (any batch size) with the config in its metadata.

        Inputs ``past`` and ``future``, output ``quantiles``: run it on
        :meth:`network_inputs` and hand the result to :meth:`forecast_from_output`.
        """
        config = self.config()
        if calibration is not None:
            # Conformal offsets from the twin's registry version: the edge forecast then
            # has the same intervals as the served one.
            config["calibration"] = np.asarray(calibration).tolist()
        # A batch of two: torch.export would fix a dimension of size 1 as a constant.
        past = torch.zeros(2, self.context_steps, self.n_past_features)
        future = torch.zeros(2, self.n_steps, self.n_future_features)
        return export_network(self._fitted_network(), (past, future), config, Path(path))

    def _fitted_network(self) -> nn.Module:
        if self.network is None:
            raise ForecastInputError(f"{self.name}: call fit() before using the model")
        return self.network


def chronological_split(windows: Windows, horizon: int) -> tuple[Windows, Windows]:
    """The last share of windows for validation; train windows end before it starts."""
    if len(windows) == 0:
        return windows, windows
    n_val = max(1, math.ceil(len(windows) * VALIDATION_FRAC))
    val = np.arange(len(windows) - n_val, len(windows))
    first = windows.origin[val[0]]
    # A train window whose targets reach into the validation targets would leak them.
    train = np.flatnonzero(windows.origin + horizon <= first)
    return windows.take(train), windows.take(val)


def window_tensors(parts: list[Windows]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    def stack(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(arrays).astype(np.float32))

    tensors = (
        stack([p.past for p in parts]),
        stack([p.future for p in parts]),
        stack([p.target for p in parts]),
    )
    if len(tensors[0]) == 0:
        raise ForecastInputError(
            "too few windows left to train on after holding back the most recent "
            f"{VALIDATION_FRAC:.0%} for validation; give a longer history"
        )
    return tensors


def validation_loss(
    network: nn.Module, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor], levels: torch.Tensor
) -> float:
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(val[0]), _EVAL_BATCH):
            part = slice(start, start + _EVAL_BATCH)
            loss = pinball_loss(network(val[0][part], val[1][part]), val[2][part], levels)
            total += float(loss) * len(val[0][part])
    return total / len(val[0])


def _copy_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}
