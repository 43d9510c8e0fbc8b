"""twinkit: hyper-personalized, resilient digital twins, one living model per individual.

Names are imported on first use, so that ``import twinkit.edge`` on a device stays light
(no torch, no database driver).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "Channel": "twinkit.core.twin",
    "FitResult": "twinkit.engine",
    "Forecast": "twinkit.core.forecast",
    "ForecastInputError": "twinkit.core.errors",
    "IngestResult": "twinkit.engine",
    "IntegrityError": "twinkit.core.errors",
    "NotFoundError": "twinkit.core.errors",
    "Twin": "twinkit.core.twin",
    "TwinEngine": "twinkit.engine",
    "TwinKind": "twinkit.core.twin",
    "TwinkitError": "twinkit.core.errors",
    "ValidationError": "twinkit.core.errors",
}

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'twinkit' has no attribute {name!r}")
