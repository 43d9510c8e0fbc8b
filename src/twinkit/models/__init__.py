"""Forecasters and decision models: estimators on arrays and frames, never the store.

The networks and the Gaussian process need the training stack (``twinkit[train]``); they
are imported when first used, so a slim install imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.core.lazy import lazy_exports
from twinkit.models.base import Forecaster, forecaster_class, register_forecaster
from twinkit.models.ensemble import Ensemble
from twinkit.models.linear_ar import LinearAR
from twinkit.models.persistence import Persistence

if TYPE_CHECKING:
    from twinkit.models.gp import GPForecaster
    from twinkit.models.gru import GRUAttention
    from twinkit.models.neural import NeuralForecaster
    from twinkit.models.transformer import TransformerForecaster

__getattr__ = lazy_exports(
    __name__,
    {
        "GPForecaster": "gp",
        "GRUAttention": "gru",
        "NeuralForecaster": "neural",
        "TransformerForecaster": "transformer",
    },
)

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
