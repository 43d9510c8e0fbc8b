"""twinkit: hyper-personalized, resilient digital twins, one living model per individual."""

from __future__ import annotations

from twinkit.core.errors import (
    ForecastInputError,
    IntegrityError,
    NotFoundError,
    TwinkitError,
    ValidationError,
)
from twinkit.core.forecast import Forecast
from twinkit.core.twin import Channel, Twin, TwinKind
from twinkit.engine import FitResult, IngestResult, TwinEngine

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "FitResult",
    "Forecast",
    "ForecastInputError",
    "IngestResult",
    "IntegrityError",
    "NotFoundError",
    "Twin",
    "TwinEngine",
    "TwinKind",
    "TwinkitError",
    "ValidationError",
    "__version__",
]
