"""Shape stored long-format signals into the wide frames forecasters take."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twinkit.data.windows import EVENT_CHANNELS


def long_to_wide(long: pd.DataFrame) -> pd.DataFrame:
    """``channel, t (int64 us UTC), value`` rows -> a UTC-indexed frame, a column per channel.

    Values of the same channel and time are averaged; NaN values are left out, and a time
    or channel left with none is dropped (as ``pivot_table`` does).

    >>> rows = pd.DataFrame({"channel": ["g", "g", "c"], "t": [0, 300_000_000, 0],
    ...                      "value": [1.0, 2.0, 5.0]})
    >>> long_to_wide(rows)
                                 c    g
    time
    1970-01-01 00:00:00+00:00  5.0  1.0
    1970-01-01 00:05:00+00:00  NaN  2.0
    """
    # NumPy rather than pivot_table: this runs on every forecast the service answers, and
    # pivot_table's fixed cost is many times that of the few hundred rows it usually gets.
    values = long["value"].to_numpy(dtype=np.float64)
    known = ~np.isnan(values)
    if not known.all():
        long, values = long.loc[known], values[known]
    if long.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    names, column = np.unique(long["channel"].to_numpy(dtype=object), return_inverse=True)
    times, row = np.unique(long["t"].to_numpy(dtype=np.int64), return_inverse=True)
    sums = np.zeros((len(times), len(names)))
    counts = np.zeros((len(times), len(names)))
    np.add.at(sums, (row, column), values)
    np.add.at(counts, (row, column), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        wide = np.where(counts > 0, sums / counts, np.nan)
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="us", utc=True), name="time")
    return pd.DataFrame(wide, index=index, columns=pd.Index([str(n) for n in names]))


def downsample(long: pd.DataFrame, every_min: float) -> pd.DataFrame:
    """Long-format signals (``twin_id, time, channel, value``) as a sensor that records
    every ``every_min`` minutes would have them: per twin and channel, the first reading of
    each interval (at the interval's start); event channels (carbs, insulin, ...) summed.

    >>> t = pd.date_range("2026-01-01", periods=6, freq="5min", tz="UTC")
    >>> long = pd.DataFrame({"twin_id": "a", "time": t, "channel": "glucose",
    ...                      "value": [100.0, 101, 102, 103, 104, 105]})
    >>> downsample(long, 15)["value"].tolist()
    [100.0, 103.0]
    """
    rule = pd.Timedelta(minutes=every_min)
    frame = long.assign(time=pd.to_datetime(long["time"], utc=True))
    frame = frame.assign(bin=frame["time"].dt.floor(rule))
    keys = ["twin_id", "channel", "bin"]
    events = frame["channel"].isin(sorted(EVENT_CHANNELS))
    firsts = frame.loc[~events].sort_values("time").groupby(keys, observed=True)["value"].first()
    sums = frame.loc[events].groupby(keys, observed=True)["value"].sum()
    out = pd.concat([firsts, sums]).reset_index().rename(columns={"bin": "time"})
    columns = out[["twin_id", "time", "channel", "value"]]
    ordered: pd.DataFrame = columns.sort_values(["twin_id", "channel", "time"], ignore_index=True)
    return ordered
