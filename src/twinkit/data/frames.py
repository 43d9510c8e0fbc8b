"""Shape stored long-format signals into the wide frames forecasters take."""

from __future__ import annotations

import pandas as pd


def long_to_wide(long: pd.DataFrame) -> pd.DataFrame:
    """``channel, t (int64 us UTC), value`` rows -> a UTC-indexed frame, a column per channel.

    >>> rows = pd.DataFrame({"channel": ["g", "g", "c"], "t": [0, 300_000_000, 0],
    ...                      "value": [1.0, 2.0, 5.0]})
    >>> long_to_wide(rows)
                                 c    g
    time
    1970-01-01 00:00:00+00:00  5.0  1.0
    1970-01-01 00:05:00+00:00  NaN  2.0
    """
    if long.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    wide = long.pivot_table(index="t", columns="channel", values="value", aggfunc="mean")
    wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index, unit="us", utc=True), name="time")
    wide.columns.name = None
    return wide.sort_index()
