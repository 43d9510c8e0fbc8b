"""Live accuracy: how the forecasts a twin served did once the readings came.

The input is a frame of scored forecast rows (one per version, role, origin and horizon:
``mean``, ``q05``, ``q95`` and the ``realised`` value of the bin forecast), as the store's
forecast log returns them. The figures are the ones the holdout evaluation gives when a
version is promoted (:meth:`twinkit.models.evaluate.RollingForecasts.scores`): RMSE, MAE
and the share of realised values inside the 90 % band, per horizon, so live and holdout
error compare like for like.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _figures(frame: pd.DataFrame) -> dict[str, Any]:
    error = frame["mean"].to_numpy(np.float64) - frame["realised"].to_numpy(np.float64)
    realised = frame["realised"].to_numpy(np.float64)
    inside = (frame["q05"].to_numpy(np.float64) <= realised) & (
        realised <= frame["q95"].to_numpy(np.float64)
    )
    return {
        "n": len(frame),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "bias": float(np.mean(error)),
        "coverage90": float(np.mean(inside)),
    }


def live_scores(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """RMSE, MAE, bias (mean - realised) and 90 % coverage per (version, role, horizon),
    with ``n`` the forecasts scored; ordered by version, role ("served" first), horizon.

    >>> rows = pd.DataFrame({"version": [1, 1], "role": ["served"] * 2, "horizon": [30, 30],
    ...     "mean": [100.0, 110.0], "q05": [90.0, 90.0], "q95": [105.0, 130.0],
    ...     "realised": [104.0, 100.0]})
    >>> s = live_scores(rows)[0]
    >>> s["n"], round(s["rmse"], 3), s["mae"], s["coverage90"]
    (2, 7.616, 7.0, 1.0)
    """
    if frame.empty:
        return []
    out = []
    keys = ["version", "role", "horizon"]
    for (version, role, horizon), group in frame.groupby(keys, sort=True):
        out.append({"version": int(str(version)), "role": str(role), "horizon": int(str(horizon))})
        out[-1].update(_figures(group))
    order = {"served": 0, "shadow": 1}
    return sorted(out, key=lambda s: (s["version"], order.get(s["role"], 2), s["horizon"]))


def error_series(frame: pd.DataFrame, bucket: str = "1h") -> list[dict[str, Any]]:
    """RMSE per ``bucket`` of target time, per (version, role), all horizons together:
    the live error over time, as the twin's page draws it. ``target_t`` is microseconds
    since 1970 (the store's time)."""
    if frame.empty:
        return []
    time = pd.to_datetime(frame["target_t"].to_numpy(np.int64), unit="us", utc=True)
    squared = (frame["mean"].to_numpy(np.float64) - frame["realised"].to_numpy(np.float64)) ** 2
    data = pd.DataFrame(
        {
            "bucket": time.floor(bucket),
            "version": frame["version"].to_numpy(),
            "role": frame["role"].to_numpy(),
            "se": squared,
        }
    )
    out = []
    for (start, version, role), group in data.groupby(["bucket", "version", "role"], sort=True):
        out.append(
            {
                "start": pd.Timestamp(str(start)).isoformat(),
                "version": int(str(version)),
                "role": str(role),
                "n": len(group),
                "rmse": float(np.sqrt(group["se"].mean())),
            }
        )
    return out
