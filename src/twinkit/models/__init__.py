"""Forecasters and decision models: estimators on arrays and frames, never the store."""

from __future__ import annotations

from twinkit.models.base import Forecaster, forecaster_class, register_forecaster
from twinkit.models.ensemble import Ensemble
from twinkit.models.gp import GPForecaster
from twinkit.models.gru import GRUAttention
from twinkit.models.linear_ar import LinearAR
from twinkit.models.neural import NeuralForecaster
from twinkit.models.persistence import Persistence
from twinkit.models.transformer import TransformerForecaster

__all__ = [
    "Ensemble",
    "Forecaster",
    "GPForecaster",
    "GRUAttention",
    "LinearAR",
    "NeuralForecaster",
    "Persistence",
    "TransformerForecaster",
    "forecaster_class",
    "register_forecaster",
]
