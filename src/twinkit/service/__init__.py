"""The HTTP service: FastAPI over TwinEngine, with owners, tokens, metrics and fit jobs.

Names are imported on first use, so that a fit job's child process (which imports
``twinkit.service.worker``) does not load the web framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ServiceSettings": "twinkit.service.settings",
    "create_app": "twinkit.service.app",
    "load_settings": "twinkit.service.app",
}

__all__ = ["ServiceSettings", "create_app", "load_settings"]

if TYPE_CHECKING:
    from twinkit.service.app import create_app, load_settings
    from twinkit.service.settings import ServiceSettings


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'twinkit.service' has no attribute {name!r}")
