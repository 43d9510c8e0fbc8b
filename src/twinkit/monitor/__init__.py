"""Stream-level health of a twin: live accuracy of served forecasts (and of the previous
version in shadow), drift detection and the rollback test. Pure functions on arrays and
frames; the engine feeds them from the store."""

from __future__ import annotations

from twinkit.monitor.accuracy import error_series, live_scores

__all__ = ["error_series", "live_scores"]
