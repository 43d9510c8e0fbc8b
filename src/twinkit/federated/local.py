"""What a site does in a round: train the federation's network on its own windows, and
score it on windows it holds back. Torch only; no Flower, no store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from twinkit.core.errors import TwinkitError
from twinkit.data.windows import Windows
from twinkit.models.base import QUANTILE_LEVELS
from twinkit.models.neural import (
    chronological_split,
    pinball_loss,
    validation_loss,
    window_tensors,
)
from twinkit.models.torch_threads import seeded

Optimizer = Literal["adam", "sgd"]


@dataclass(frozen=True)
class LocalTraining:
    """How a site trains in one round: ``epochs`` passes over its windows in batches of
    ``batch_size`` with ``optimizer`` at ``lr``, gradients clipped to norm ``clip`` (None:
    not clipped), and with ``proximal_mu`` > 0 FedProx's pull ``mu / 2 * ||w - w_round||^2``
    toward the weights the round started from."""

    epochs: int = 1
    lr: float = 3e-3
    batch_size: int = 256
    optimizer: Optimizer = "adam"
    clip: float | None = 1.0
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise TwinkitError("local training needs epochs >= 1, batch_size >= 1 and lr > 0")
        if self.optimizer not in ("adam", "sgd"):
            raise TwinkitError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.proximal_mu < 0 or (self.clip is not None and self.clip <= 0):
            raise TwinkitError("proximal_mu must be >= 0 and clip > 0 (or None)")


def split_site(windows: Sequence[Windows], horizon: int) -> tuple[list[Windows], list[Windows]]:
    """Each twin's windows, split in time as a pooled fit splits them
    (:func:`~twinkit.models.neural.chronological_split`): the most recent share is held
    back to score the rounds."""
    parts = [chronological_split(w, horizon) for w in windows if len(w)]
    return [p[0] for p in parts], [p[1] for p in parts]


def train_locally(
    network: nn.Module, windows: Sequence[Windows], settings: LocalTraining, seed: int
) -> tuple[float, int]:
    """Train ``network`` in place on ``windows`` as ``settings`` say; the mean pinball loss
    of the last epoch's batches and the number of windows."""
    past, future, target = window_tensors(list(windows))
    levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
    start = [p.detach().clone() for p in network.parameters()]
    params = list(network.parameters())
    optimizer: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=settings.lr)
        if settings.optimizer == "adam"
        else torch.optim.SGD(params, lr=settings.lr)
    )
    losses: list[float] = []
    with seeded(seed):
        shuffle = torch.Generator().manual_seed(seed)
        network.train()
        for _ in range(settings.epochs):
            losses = []
            order = torch.randperm(len(past), generator=shuffle)
            for first in range(0, len(order), settings.batch_size):
                rows = order[first : first + settings.batch_size]
                loss = pinball_loss(network(past[rows], future[rows]), target[rows], levels)
                losses.append(float(loss.detach()))
                if settings.proximal_mu > 0:
                    pull = sum(((p - s) ** 2).sum() for p, s in zip(params, start, strict=True))
                    loss = loss + settings.proximal_mu / 2 * pull
                optimizer.zero_grad()
                torch.autograd.backward(loss)
                if settings.clip is not None:
                    nn.utils.clip_grad_norm_(params, settings.clip)
                optimizer.step()
        network.eval()
    return float(np.mean(losses)), len(past)


def held_loss(network: nn.Module, windows: Sequence[Windows]) -> tuple[float, int]:
    """The mean pinball loss of ``network`` on ``windows`` and their number."""
    held = window_tensors(list(windows))
    levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
    return validation_loss(network, held, levels), len(held[0])
