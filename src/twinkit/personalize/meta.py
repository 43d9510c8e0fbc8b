"""Cold start: a Reptile meta-learned starting point that adapts to a new twin in one day.

Reptile (Nichol, Achiam and Schulman 2018) repeats: take one twin's day of windows,
adapt a copy of the weights to it with a few gradient steps, and move the shared weights a
little toward the adapted ones. The result is not the best model for any twin but the one
that a day of a new twin's data improves the most, which is what a cold start needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import QUANTILE_LEVELS
from twinkit.data.windows import Scaler, Windows
from twinkit.models.neural import NeuralForecaster, pinball_loss
from twinkit.models.torch_threads import seeded


@dataclass(frozen=True)
class ReptileSettings:
    """Outer iterations, the inner adaptation, and the size of a task."""

    meta_iterations: int = 200
    inner_steps: int = 8
    inner_lr: float = 3e-3
    meta_lr: float = 0.3
    task_hours: float = 24.0
    batch_size: int = 64


def _tasks(windows: Windows, per_task: int) -> list[np.ndarray]:
    """Row indices of consecutive chunks of ``per_task`` windows: one twin-day each."""
    n = len(windows)
    return [np.arange(start, min(start + per_task, n)) for start in range(0, n, per_task)]


def meta_learn(
    model: NeuralForecaster,
    histories: Sequence[pd.DataFrame],
    settings: ReptileSettings | None = None,
) -> NeuralForecaster:
    """Pretrain ``model`` on the pooled ``histories``, then refine its weights by Reptile.

    Returns ``model`` (a population model: no stored scaler), ready for
    :meth:`~twinkit.models.neural.NeuralForecaster.personalize` on a new twin's first day.
    """
    settings = settings or ReptileSettings()
    if not histories:
        raise ForecastInputError("meta-learning needs the histories of several twins")
    model.fit_population(histories)
    network = model._fitted_network()
    grids = model._grids(histories)
    windows = [model._windows(g, Scaler.fit(g)) for g in grids]
    step = model._check_fitted()
    per_task = max(8, round(settings.task_hours * 60 / step))
    tasks = [(w, rows) for w in windows for rows in _tasks(w, per_task) if len(rows) >= 8]
    if not tasks:
        raise ForecastInputError("meta-learning found no twin-day with enough gap-free windows")
    levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
    rng = np.random.default_rng(model.seed)
    with seeded(model.seed):
        for iteration in range(settings.meta_iterations):
            task_windows, rows = tasks[int(rng.integers(len(tasks)))]
            before = {k: v.detach().clone() for k, v in network.state_dict().items()}
            _adapt(network, task_windows, rows, settings, levels, rng)
            # Shared weights move toward the adapted ones, by a shrinking step.
            rate = settings.meta_lr * (1 - iteration / settings.meta_iterations)
            after = network.state_dict()
            network.load_state_dict({k: before[k] + rate * (after[k] - before[k]) for k in before})
    network.eval()
    return model


def _adapt(
    network: nn.Module,
    windows: Windows,
    rows: np.ndarray,
    settings: ReptileSettings,
    levels: torch.Tensor,
    rng: np.random.Generator,
) -> None:
    """A few plain SGD steps on one task, in place."""
    past = torch.from_numpy(windows.past[rows].astype(np.float32))
    future = torch.from_numpy(windows.future[rows].astype(np.float32))
    target = torch.from_numpy(windows.target[rows].astype(np.float32))
    optimizer = torch.optim.SGD(network.parameters(), lr=settings.inner_lr)
    network.train()
    for _ in range(settings.inner_steps):
        batch = torch.from_numpy(
            rng.choice(len(rows), size=min(settings.batch_size, len(rows)), replace=False)
        )
        loss = pinball_loss(network(past[batch], future[batch]), target[batch], levels)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
