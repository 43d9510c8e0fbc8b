"""Time conventions of the store: UTC everywhere, microseconds since the epoch on disk."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd


def utc_now_iso() -> str:
    """Now, as an ISO-8601 UTC string with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_micros(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Tz-aware UTC timestamps -> int64 microseconds since the epoch."""
    index = pd.DatetimeIndex(times)
    return np.asarray(index.as_unit("us").asi8, dtype=np.int64)


def from_micros(micros: np.ndarray) -> pd.DatetimeIndex:
    """int64 microseconds since the epoch -> tz-aware UTC timestamps."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(micros, dtype=np.int64), unit="us", utc=True))
