"""The lifecycle layer: TwinEngine runs a twin from ingest to forecast; the CLI and the
service only call it."""

from __future__ import annotations

from twinkit.engine.fitting import FitResult
from twinkit.engine.ingest import IngestResult
from twinkit.engine.twin_engine import TwinEngine

__all__ = ["FitResult", "IngestResult", "TwinEngine"]
