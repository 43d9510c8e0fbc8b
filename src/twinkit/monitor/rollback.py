"""The automatic rollback's test: is the serving version worse, in live use, than the one
before it forecasting the same readings from the same data?

Pairs are a served row and the shadow row of the same origin and horizon, both scored.
The per-pair difference of squared errors (served minus shadow) is averaged per hour of
target time first, since pairs within an hour share their readings and errors are
autocorrelated; the hourly means are then tested with a one-sided Wilcoxon signed-rank
test (SciPy): the serving version is worse beyond noise when ``p < alpha``, its live RMSE
on the pairs exceeds the shadow's by more than ``margin`` (relative), and at least
``min_hours`` hours hold pairs. A check that runs again and again over a growing window
tests many times, so ``alpha`` is strict (0.01) by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: the defaults of :func:`paired_verdict`
MIN_HOURS = 12
ALPHA = 0.01
MARGIN = 0.05


@dataclass(frozen=True)
class Verdict:
    """The test's outcome: ``worse`` is the decision; the figures say why."""

    worse: bool
    hours: int
    pairs: int
    rmse_served: float | None
    rmse_shadow: float | None
    p_value: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pairs_of(rows: pd.DataFrame, served: int, shadow: int) -> pd.DataFrame:
    """Scored rows of the store's forecast log -> one row per (origin, horizon) that both
    ``served`` (role served) and ``shadow`` (role shadow) forecast: ``target_t``,
    ``e_served``, ``e_shadow`` (forecast minus reading)."""
    keys = ["origin_t", "horizon"]
    mine = rows[(rows["role"] == "served") & (rows["version"] == served)]
    theirs = rows[(rows["role"] == "shadow") & (rows["version"] == shadow)]
    merged = mine.merge(theirs, on=keys, suffixes=("", "_shadow"))
    return pd.DataFrame(
        {
            "target_t": merged["target_t"].to_numpy(np.int64),
            "e_served": (merged["mean"] - merged["realised"]).to_numpy(np.float64),
            "e_shadow": (merged["mean_shadow"] - merged["realised_shadow"]).to_numpy(np.float64),
        }
    )


def paired_verdict(
    pairs: pd.DataFrame,
    min_hours: int = MIN_HOURS,
    alpha: float = ALPHA,
    margin: float = MARGIN,
) -> Verdict:
    """Whether the served version is worse than the shadow on these pairs (see module)."""
    if pairs.empty:
        return Verdict(False, 0, 0, None, None, None, "no paired forecasts scored yet")
    served = float(np.sqrt(np.mean(pairs["e_served"] ** 2)))
    shadow = float(np.sqrt(np.mean(pairs["e_shadow"] ** 2)))
    hour = pd.to_datetime(pairs["target_t"].to_numpy(np.int64), unit="us", utc=True).floor("1h")
    diff = (pairs["e_served"] ** 2 - pairs["e_shadow"] ** 2).to_numpy(np.float64)
    hourly = pd.Series(diff, index=hour).groupby(level=0).mean()
    hours = len(hourly)
    if hours < min_hours:
        return Verdict(
            False, hours, len(pairs), served, shadow, None, f"{hours} of {min_hours} hours paired"
        )
    if np.allclose(hourly.to_numpy(), 0.0):
        return Verdict(False, hours, len(pairs), served, shadow, 1.0, "the two forecast alike")
    p = float(stats.wilcoxon(hourly.to_numpy(), alternative="greater").pvalue)
    worse = p < alpha and served > (1 + margin) * shadow
    if worse:
        why = (
            f"live RMSE {served:.2f} against {shadow:.2f} for the version before on the same "
            f"{len(pairs)} forecasts ({hours} hours), p = {p:.2g} (one-sided Wilcoxon on "
            "hourly mean differences of squared errors)"
        )
    else:
        why = f"not worse beyond noise: RMSE {served:.2f} against {shadow:.2f}, p = {p:.2g}"
    return Verdict(worse, hours, len(pairs), served, shadow, p, why)
