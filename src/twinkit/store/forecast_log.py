"""The forecasts twins served, scored against the readings that arrive for them.

One row per (target channel, version, role, origin, horizon): ``role`` is "served" for
what a twin answered and "shadow" for what the version before it would have answered from
the same data. A row's ``realised`` is the mean of the channel's stored readings in
``[target_t, target_end)``, the grid bin it forecast, or NULL while there is none.

Scoring is incremental: every function here that writes observations (and the
retraction) calls :func:`rescore` with the time range it wrote, per channel, in the same
transaction, and :func:`insert` scores the rows it adds. Only the rows whose bins meet
that range are set again, each from its own bin's readings (an index range), so the
result equals recomputing every row from the whole history, whatever the order the
readings and forecasts arrived in, and nothing rescans the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection, delete, func, select, update

from twinkit.store import tables

#: a row of :func:`insert`: the columns of ``forecast_log`` but ``id`` and ``realised``
#: (``band_scale`` may be left out: the band served is the model's own)
LogRow = Mapping[str, Any]

_KEY = ("channel_id", "version_id", "role", "origin_t", "horizon")
#: columns :func:`scored` returns
SCORED_COLUMNS = (
    "version",
    "version_id",
    "role",
    "origin_t",
    "horizon",
    "target_t",
    "mean",
    "q05",
    "q50",
    "q95",
    "realised",
    "band_scale",
)


def _realised() -> Any:
    """The mean of a log row's bin's readings, as a correlated subquery."""
    o, f = tables.observations.c, tables.forecast_log.c
    return (
        select(func.avg(o.value))
        .where(o.channel_id == f.channel_id, o.t >= f.target_t, o.t < f.target_end)
        .scalar_subquery()
    )


def ranges_of(channel_id: np.ndarray, t: np.ndarray) -> dict[int, tuple[int, int]]:
    """Per channel, the first and last time among written rows.

    >>> ranges_of(np.array([2, 1, 2]), np.array([5, 7, 3]))
    {1: (7, 7), 2: (3, 5)}
    """
    if len(t) == 0:
        return {}
    frame = pd.DataFrame({"c": np.asarray(channel_id), "t": np.asarray(t, dtype=np.int64)})
    span = frame.groupby("c")["t"].agg(["min", "max"])
    return {int(c): (int(lo), int(hi)) for c, lo, hi in span.itertuples()}


def rescore(conn: Connection, ranges: Mapping[int, tuple[int, int]]) -> int:
    """Set ``realised`` again for the log rows whose bins meet the written readings'
    range of their channel (``ranges``: channel id -> first and last time written);
    return how many rows were set."""
    if not ranges:
        return 0
    f = tables.forecast_log.c
    logged = conn.execute(
        select(f.channel_id).where(f.channel_id.in_(sorted(ranges))).distinct()
    ).all()
    n = 0
    for (channel,) in logged:
        lo, hi = ranges[int(channel)]
        result = conn.execute(
            update(tables.forecast_log)
            .where(f.channel_id == channel, f.target_t <= hi, f.target_end > lo)
            .values(realised=_realised())
        )
        n += int(result.rowcount or 0)
    return n


def insert(conn: Connection, rows: Sequence[LogRow]) -> int:
    """Add log rows not logged before (the same forecast served twice is one row) and
    score them against the readings already stored; return how many were added."""
    if not rows:
        return 0
    f = tables.forecast_log.c
    stored: set[tuple[Any, ...]] = set()
    channels = sorted({int(row["channel_id"]) for row in rows})
    origins = sorted({int(row["origin_t"]) for row in rows})
    for found in conn.execute(
        select(*(f[k] for k in _KEY)).where(f.channel_id.in_(channels), f.origin_t.in_(origins))
    ):
        stored.add(tuple(found))
    new = []
    for row in rows:
        key = tuple(row[k] for k in _KEY)
        if key not in stored:
            new.append({"band_scale": None, **row})
            stored.add(key)
    if not new:
        return 0
    conn.execute(tables.forecast_log.insert(), new)
    spans: dict[int, tuple[int, int]] = {}
    for row in new:
        lo, hi = spans.get(row["channel_id"], (row["target_t"], row["target_end"]))
        spans[row["channel_id"]] = (min(lo, row["target_t"]), max(hi, row["target_end"]))
    for channel, (lo, hi) in spans.items():
        conn.execute(
            update(tables.forecast_log)
            .where(f.channel_id == channel, f.target_t >= lo, f.target_end <= hi)
            .values(realised=_realised())
        )
    return len(new)


def scored(
    conn: Connection, channel_ids: Iterable[int], since_t: int | None = None
) -> pd.DataFrame:
    """The scored rows of these channels (``realised`` set), target time from ``since_t``
    on, oldest first: the columns :data:`SCORED_COLUMNS`."""
    f = tables.forecast_log.c
    where: list[ColumnElement[bool]] = [
        f.channel_id.in_(list(channel_ids)),
        f.realised.is_not(None),
    ]
    if since_t is not None:
        where.append(f.target_t >= since_t)
    rows = conn.execute(
        select(*(f[c] for c in SCORED_COLUMNS)).where(*where).order_by(f.target_t, f.id)
    ).all()
    return pd.DataFrame(rows, columns=list(SCORED_COLUMNS))


def counts(conn: Connection, channel_ids: Iterable[int]) -> dict[str, int]:
    """How many rows these channels have logged and how many are scored, per role."""
    f = tables.forecast_log.c
    out = {"served": 0, "served_scored": 0, "shadow": 0, "shadow_scored": 0}
    for role, n, n_scored in conn.execute(
        select(f.role, func.count(), func.count(f.realised))
        .where(f.channel_id.in_(list(channel_ids)))
        .group_by(f.role)
    ):
        out[str(role)] = int(n)
        out[f"{role}_scored"] = int(n_scored)
    return out


def delete_channels(conn: Connection, channel_ids: Any) -> None:
    """Forget the log of these channels (a select of ids, or ids): their twin is deleted."""
    f = tables.forecast_log.c
    conn.execute(delete(tables.forecast_log).where(f.channel_id.in_(channel_ids)))


def latest_scored(conn: Connection, channel_ids: Iterable[int]) -> int | None:
    """The newest target time among these channels' scored rows, or None."""
    f = tables.forecast_log.c
    value = conn.execute(
        select(func.max(f.target_t)).where(
            f.channel_id.in_(list(channel_ids)), f.realised.is_not(None)
        )
    ).scalar()
    return None if value is None else int(value)


def first_served(conn: Connection, channel_ids: Iterable[int], version: int) -> int | None:
    """The earliest origin of a forecast ``version`` served for these channels, or None."""
    f = tables.forecast_log.c
    value = conn.execute(
        select(func.min(f.origin_t)).where(
            f.channel_id.in_(list(channel_ids)), f.version == version, f.role == "served"
        )
    ).scalar()
    return None if value is None else int(value)
