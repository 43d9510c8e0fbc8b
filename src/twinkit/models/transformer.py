"""A small transformer encoder over the recent past: the attention-only twin forecaster."""

from __future__ import annotations

import math

import torch
from torch import nn

from twinkit.core.errors import ForecastInputError
from twinkit.models.base import register_forecaster
from twinkit.models.neural import NeuralForecaster, QuantileHead

#: minutes of readings one token stands for: fewer, richer tokens keep attention cheap
PATCH_MIN = 15.0


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model) fixed sine/cosine position codes (Vaswani et al., 2017)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    codes = torch.zeros(length, d_model)
    codes[:, 0::2] = torch.sin(position * rate)
    codes[:, 1::2] = torch.cos(position * rate[: d_model // 2])
    return codes


class TransformerNetwork(nn.Module):
    """Embed patches of past steps, encode them with self-attention, read the last token.

    The context is cut into patches of ``patch`` steps (PatchTST, Nie et al., 2023; the
    oldest patch zero-padded), one token each: a third of the tokens for 15-minute patches
    of 5-minute data, which more than halves the training time. The last token holds the
    origin; attention lets it look back over the whole context. It is joined with the
    flattened known-future features and decoded.
    """

    positions: torch.Tensor

    def __init__(
        self,
        n_past_features: int,
        n_future_features: int,
        horizon_steps: int,
        n_quantiles: int,
        context_steps: int,
        d_model: int,
        patch: int = 1,
        heads: int = 2,
        layers: int = 2,
    ) -> None:
        super().__init__()
        self.n_tokens = -(-context_steps // patch)
        self.pad = self.n_tokens * patch - context_steps
        self.token_width = patch * n_past_features
        self.embed = nn.Linear(self.token_width, d_model)
        # Fixed codes, not weights: they follow from the sizes, so they are not saved.
        self.register_buffer(
            "positions", sinusoidal_positions(self.n_tokens, d_model), persistent=False
        )
        # Pre-norm, no dropout and a narrow feed-forward: stable and quick on a CPU.
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=2 * d_model,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.decoder = nn.Sequential(
            nn.Linear(d_model + horizon_steps * n_future_features, 2 * d_model),
            nn.GELU(),
        )
        # The known future also goes straight to the head (as in the GRU): a linear path
        # that learns a planned meal's lagged effect quickly.
        self.head = QuantileHead(
            2 * d_model + horizon_steps * n_future_features, horizon_steps, n_quantiles
        )

    def forward(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        if self.pad:
            past = nn.functional.pad(past, (0, 0, self.pad, 0))
        patches = past.reshape(-1, self.n_tokens, self.token_width)
        tokens = self.embed(patches) + self.positions
        last = self.encoder(tokens)[:, -1]
        ahead = torch.flatten(future, 1)
        decoded = self.decoder(torch.cat([last, ahead], dim=-1))
        out: torch.Tensor = self.head(torch.cat([decoded, ahead], dim=-1))
        return out


@register_forecaster
class TransformerForecaster(NeuralForecaster):
    """Quantile forecasts from a two-layer transformer encoder over 15-minute patches.

    ``hidden`` is d_model (even: two heads).

    >>> import numpy as np, pandas as pd
    >>> idx = pd.date_range("2026-01-01", periods=400, freq="5min", tz="UTC")
    >>> y = 100 + 20 * np.sin(np.arange(400) * 2 * np.pi / 96)
    >>> frame = pd.DataFrame({"glucose": y}, index=idx)
    >>> model = TransformerForecaster(hidden=8, epochs=2, context_min=30, max_horizon_min=30)
    >>> forecast = model.fit(frame).predict(frame, [15, 30])
    >>> forecast.horizons
    (15, 30)
    """

    name = "transformer"

    def build_network(
        self, n_past_features: int, n_future_features: int, horizon_steps: int, n_quantiles: int
    ) -> nn.Module:
        if self.hidden % 2:
            raise ForecastInputError(
                f"transformer: hidden (d_model) must be even for two heads, got {self.hidden}"
            )
        return TransformerNetwork(
            n_past_features,
            n_future_features,
            horizon_steps,
            n_quantiles,
            self.context_steps,
            self.hidden,
            patch=max(1, round(PATCH_MIN / self._check_fitted())),
        )
