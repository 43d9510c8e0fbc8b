"""The format writers (``importer_files.py``) as a fixture, and helpers on stored rows."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The module that writes files shaped like each format's export."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return importlib.import_module("importer_files")
