"""Forecasters and decision models: estimators on arrays and frames, never the store."""

from __future__ import annotations

from twinkit.models.base import Forecaster, forecaster_class, register_forecaster
from twinkit.models.linear_ar import LinearAR
from twinkit.models.persistence import Persistence

__all__ = ["Forecaster", "LinearAR", "Persistence", "forecaster_class", "register_forecaster"]
