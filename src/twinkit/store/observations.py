"""Batches, signal observations, decisions and quarantined rows in the store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection, and_, delete, func, select, update

from twinkit.core.digest import (
    canonical_order,
    decisions_digest,
    quarantine_rows_digest,
    signals_digest,
)
from twinkit.store import forecast_log, tables, twins

_CHUNK = 50_000


def find_batch(conn: Connection, content_hash: str) -> Any:
    """The live batch with this content, if any."""
    b = tables.batches.c
    return conn.execute(
        select(tables.batches).where(b.content_hash == content_hash, b.active == 1)
    ).first()


def batches_naming(conn: Connection, twin_id: str) -> list[int]:
    """Live batches whose rows named this twin."""
    b = tables.batches.c
    rows = conn.execute(select(b.id, b.twins).where(b.active == 1))
    return [int(r.id) for r in rows if twin_id in json.loads(r.twins)]


def retire_batches(conn: Connection, batch_ids: list[int]) -> list[int]:
    if batch_ids:
        conn.execute(
            update(tables.batches).where(tables.batches.c.id.in_(batch_ids)).values(active=0)
        )
    return batch_ids


def quarantine_digests(conn: Connection, batch_ids: Iterable[int]) -> dict[int, str]:
    """Per batch, the sha256 of its quarantined rows as first recorded (release excluded)."""
    q = tables.quarantine.c
    ids = sorted(set(batch_ids))
    held: dict[int, list[list[Any]]] = {i: [] for i in ids}
    rows = conn.execute(
        select(q.batch_id, q.row, q.record, q.reason)
        .where(q.batch_id.in_(ids))
        .order_by(q.batch_id, q.row, q.id)
    )
    for r in rows:
        held[int(r.batch_id)].append([int(r.row), r.record, r.reason])
    return {i: quarantine_rows_digest(rows_) for i, rows_ in held.items()}


def insert_batch(conn: Connection, **values: Any) -> int:
    result = conn.execute(tables.batches.insert().values(**values))
    key = result.inserted_primary_key
    assert key is not None  # an autoincrement insert always has one
    return int(key[0])


def _executemany(
    conn: Connection, table: Any, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Bulk insert inside the caller's transaction, at the driver's native speed."""
    if conn.dialect.name == "sqlite":
        # The sqlite3 driver's own executemany skips SQLAlchemy's per-row parameter
        # processing, which is most of the cost at a million rows.
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.executemany(sql, rows)
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        # COPY is PostgreSQL's bulk path, about ten times multi-row INSERT; it runs on the
        # same connection, inside the caller's transaction.
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(dict(zip(columns, row, strict=True)))
        if len(chunk) >= _CHUNK:
            conn.execute(table.insert(), chunk)
            chunk = []
    if chunk:
        conn.execute(table.insert(), chunk)


def insert_observations(
    conn: Connection, channel_id: np.ndarray, t: np.ndarray, value: np.ndarray, batch_id: int
) -> None:
    order = canonical_order(channel_id, t)  # primary-key order makes B-tree inserts appends
    if order is None:
        order = np.arange(len(t))
    _executemany(
        conn,
        tables.observations,
        ("channel_id", "t", "value", "batch_id"),
        zip(
            channel_id[order].tolist(),
            t[order].tolist(),
            value[order].tolist(),
            repeat(batch_id),
            strict=False,
        ),
    )
    twins.mark_data_changed(conn, np.unique(channel_id).tolist(), batch_id)
    forecast_log.rescore(conn, forecast_log.ranges_of(channel_id, t))


def upsert_observation(
    conn: Connection, channel_id: int, t: int, value: float, batch_id: int
) -> int | None:
    """Store one value; return the batch of the value it replaced, if any."""
    o = tables.observations.c
    twins.mark_data_changed(conn, [channel_id], batch_id)
    old = conn.execute(select(o.batch_id).where(o.channel_id == channel_id, o.t == t)).first()
    if old is None:
        conn.execute(
            tables.observations.insert().values(
                channel_id=channel_id, t=t, value=value, batch_id=batch_id
            )
        )
    else:
        conn.execute(
            update(tables.observations)
            .where(o.channel_id == channel_id, o.t == t)
            .values(value=value, batch_id=batch_id)
        )
    forecast_log.rescore(conn, {int(channel_id): (int(t), int(t))})
    return None if old is None else int(old[0])


def stored_signals(
    conn: Connection, channel_ids: pd.DataFrame, t_min: int, t_max: int
) -> pd.DataFrame:
    """Stored rows of these channels (frame of id, twin_id, name) within [t_min, t_max]."""
    if channel_ids.empty:
        return pd.DataFrame({"twin_id": [], "channel": [], "t": [], "value": []})
    o = tables.observations.c
    rows = conn.execute(
        select(o.channel_id, o.t, o.value).where(
            o.channel_id.in_([int(i) for i in channel_ids["id"]]), o.t >= t_min, o.t <= t_max
        )
    ).all()
    # Looked up by dict, not merged: an ingest of a few rows pays this per batch, and a
    # merge's fixed cost is many times that of the rows it joins.
    ids = [int(i) for i in channel_ids["id"]]
    owner = dict(zip(ids, channel_ids["twin_id"], strict=True))
    name = dict(zip(ids, channel_ids["name"], strict=True))
    channel_id, t, value = zip(*rows, strict=True) if rows else ((), (), ())
    return pd.DataFrame(
        {
            "twin_id": pd.Series([owner[c] for c in channel_id], dtype=object),
            "channel": pd.Series([name[c] for c in channel_id], dtype=object),
            "t": np.asarray(t, dtype=np.int64),
            "value": np.asarray(value, dtype=np.float64),
        }
    )


def channel_ends(conn: Connection, twin_id: str) -> dict[str, int]:
    """The time (int64 us) of the last stored row of each of a twin's channels that has
    any, by channel name. One statement; each maximum is an index lookup."""
    o, c = tables.observations.c, tables.channels.c
    last = select(func.max(o.t)).where(o.channel_id == c.id).scalar_subquery()
    rows = conn.execute(select(c.name, last).where(c.twin_id == twin_id)).all()
    return {str(name): int(t) for name, t in rows if t is not None}


def read_signals(
    conn: Connection,
    twin_id: str,
    channels: Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> pd.DataFrame:
    """A twin's stored signals in long form: channel, t (int64 us), value; by channel, time."""
    o, c = tables.observations.c, tables.channels.c
    query = (
        select(c.name.label("channel"), o.t, o.value)
        .select_from(tables.observations.join(tables.channels, o.channel_id == c.id))
        .where(c.twin_id == twin_id)
        .order_by(c.name, o.t)
    )
    if channels:
        query = query.where(c.name.in_(list(channels)))
    if start is not None:
        query = query.where(o.t >= start)
    if end is not None:
        query = query.where(o.t <= end)
    rows = conn.execute(query).all()
    if not rows:
        return pd.DataFrame({"channel": [], "t": [], "value": []}).astype(
            {"channel": object, "t": "int64", "value": "float64"}
        )
    # Built column by column: pandas handed SQLAlchemy rows probes each one for attributes,
    # which costs more than the query itself (the forecast route reads signals per request).
    channel, t, value = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "channel": list(channel),
            "t": np.asarray(t, dtype=np.int64),
            "value": np.asarray(value, dtype=np.float64),
        }
    )


def insert_decisions(conn: Connection, frame: pd.DataFrame, batch_id: int) -> None:
    """``frame`` has twin_id, item_id, features (canonical JSON), label."""
    _executemany(
        conn,
        tables.decisions,
        ("twin_id", "item_id", "features", "label", "batch_id"),
        zip(
            frame["twin_id"].tolist(),
            frame["item_id"].tolist(),
            frame["features"].tolist(),
            frame["label"].tolist(),
            repeat(batch_id),
            strict=False,
        ),
    )
    twins.mark_decisions_changed(conn, frame["twin_id"].unique().tolist(), batch_id)


def stored_decisions(conn: Connection, twin_ids: list[str]) -> pd.DataFrame:
    d = tables.decisions.c
    rows = conn.execute(
        select(d.twin_id, d.item_id, d.features, d.label).where(d.twin_id.in_(twin_ids))
    ).all()
    return pd.DataFrame(rows, columns=["twin_id", "item_id", "features", "label"])


def answers_in_order(conn: Connection, twin_id: str) -> pd.DataFrame:
    """One twin's decisions in the order they arrived (by batch, then item id):
    ``item_id``, ``features`` (JSON), ``label``, ``batch_id``, ``arrived`` (the batch's
    time)."""
    d, b = tables.decisions.c, tables.batches.c
    rows = conn.execute(
        select(d.item_id, d.features, d.label, d.batch_id, b.created_at)
        .join(tables.batches, b.id == d.batch_id)
        .where(d.twin_id == twin_id)
    ).all()
    frame = pd.DataFrame(rows, columns=["item_id", "features", "label", "batch_id", "arrived"])
    # sorted here, not in SQL: PostgreSQL's collation may order strings unlike SQLite's
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.sort_values(["batch_id", "item_id"], kind="stable").reset_index(drop=True)


def insert_quarantine(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(tables.quarantine.insert(), rows)


def list_quarantine(
    conn: Connection, twin_id: str | None = None, include_released: bool = False
) -> list[dict[str, Any]]:
    q = tables.quarantine.c
    query = select(tables.quarantine).order_by(q.id)
    if twin_id is not None:
        query = query.where(q.twin_id == twin_id)
    if not include_released:
        query = query.where(q.released_at.is_(None))
    return [{**row._asdict(), "record": json.loads(row.record)} for row in conn.execute(query)]


def mark_released(conn: Connection, quarantine_id: int, when: str) -> None:
    conn.execute(
        update(tables.quarantine)
        .where(tables.quarantine.c.id == quarantine_id)
        .values(released_at=when)
    )


def batch_digests(conn: Connection, batch_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Recompute the digest of the rows each batch has in the store now."""
    b = tables.batches.c
    query = select(b.id, b.kind)
    if batch_ids is not None:
        query = query.where(b.id.in_(list(batch_ids)))
    kinds = {int(r.id): r.kind for r in conn.execute(query)}
    if not kinds:
        return {}
    o, c, d = tables.observations.c, tables.channels.c, tables.decisions.c
    signals = pd.DataFrame(
        conn.execute(
            select(o.batch_id, c.twin_id, c.name, o.t, o.value)
            .select_from(tables.observations.join(tables.channels, o.channel_id == c.id))
            .where(o.batch_id.in_(list(kinds)))
        ).all(),
        columns=["batch_id", "twin_id", "channel", "t", "value"],
    ).astype({"t": "int64", "value": "float64"})
    decided = pd.DataFrame(
        conn.execute(
            select(d.batch_id, d.twin_id, d.item_id, d.features, d.label).where(
                d.batch_id.in_(list(kinds))
            )
        ).all(),
        columns=["batch_id", "twin_id", "item_id", "features", "label"],
    )
    by_signal = dict(tuple(signals.groupby("batch_id"))) if len(signals) else {}
    by_decision = dict(tuple(decided.groupby("batch_id"))) if len(decided) else {}
    out: dict[int, str] = {}
    for batch_id, kind in kinds.items():
        if kind == "decisions":
            out[batch_id] = decisions_digest(by_decision.get(batch_id, decided.iloc[:0]))
        else:
            out[batch_id] = signals_digest(by_signal.get(batch_id, signals.iloc[:0]))
    return out


def batch_ids_of_twin(conn: Connection, twin_id: str) -> list[int]:
    o, c, d = tables.observations.c, tables.channels.c, tables.decisions.c
    sig = select(o.batch_id).join(tables.channels, o.channel_id == c.id).where(c.twin_id == twin_id)
    dec = select(d.batch_id).where(d.twin_id == twin_id)
    ids = {int(r[0]) for r in conn.execute(sig.distinct())}
    ids |= {int(r[0]) for r in conn.execute(dec.distinct())}
    return sorted(ids)


def count_rows(conn: Connection, twin_id: str | None = None) -> dict[str, int]:
    o, c, d, q = tables.observations.c, tables.channels.c, tables.decisions.c, tables.quarantine.c
    sig = select(func.count()).select_from(
        tables.observations.join(tables.channels, o.channel_id == c.id)
    )
    dec = select(func.count()).select_from(tables.decisions)
    qua = select(func.count()).select_from(tables.quarantine).where(q.released_at.is_(None))
    if twin_id is not None:
        sig = sig.where(c.twin_id == twin_id)
        dec = dec.where(d.twin_id == twin_id)
        qua = qua.where(and_(q.twin_id == twin_id))
    return {
        "observations": int(conn.execute(sig).scalar_one()),
        "decisions": int(conn.execute(dec).scalar_one()),
        "quarantined": int(conn.execute(qua).scalar_one()),
    }


def delete_decision(conn: Connection, twin_id: str, item_id: str) -> set[int]:
    """Remove one stored decision; return the batch it belonged to."""
    d = tables.decisions.c
    old = conn.execute(select(d.batch_id).where(d.twin_id == twin_id, d.item_id == item_id)).first()
    if old is None:
        return set()
    conn.execute(delete(tables.decisions).where(d.twin_id == twin_id, d.item_id == item_id))
    return {int(old[0])}


def retract_signals(
    conn: Connection,
    twin_id: str,
    batch_id: int | None = None,
    start: int | None = None,
    end: int | None = None,
    channels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Delete a twin's stored signals that match every given condition; return them
    (``twin_id, channel, t, value, batch_id, channel_id``)."""
    o, c = tables.observations.c, tables.channels.c
    mine = select(c.id).where(c.twin_id == twin_id)
    if channels:
        mine = mine.where(c.name.in_(list(channels)))
    where: list[ColumnElement[bool]] = [o.channel_id.in_(mine)]
    if batch_id is not None:
        where.append(o.batch_id == batch_id)
    if start is not None:
        where.append(o.t >= start)
    if end is not None:
        where.append(o.t <= end)
    rows = conn.execute(
        select(o.channel_id, c.name, o.t, o.value, o.batch_id)
        .select_from(tables.observations.join(tables.channels, o.channel_id == c.id))
        .where(*where)
    ).all()
    conn.execute(delete(tables.observations).where(*where))
    channel_id, name, t, value, batch = zip(*rows, strict=True) if rows else ((), (), (), (), ())
    forecast_log.rescore(conn, forecast_log.ranges_of(np.asarray(channel_id), np.asarray(t)))
    return pd.DataFrame(
        {
            "twin_id": pd.Series([twin_id] * len(rows), dtype=object),
            "channel": pd.Series(list(name), dtype=object),
            "t": np.asarray(t, dtype=np.int64),
            "value": np.asarray(value, dtype=np.float64),
            "batch_id": np.asarray(batch, dtype=np.int64),
            "channel_id": np.asarray(channel_id, dtype=np.int64),
        }
    )


def retract_decisions(
    conn: Connection,
    twin_id: str,
    batch_id: int | None = None,
    items: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Delete a decision twin's stored decisions that match every given condition; return
    them (``twin_id, item_id, features, label, batch_id``)."""
    d = tables.decisions.c
    where: list[ColumnElement[bool]] = [d.twin_id == twin_id]
    if batch_id is not None:
        where.append(d.batch_id == batch_id)
    if items is not None:
        where.append(d.item_id.in_(list(items)))
    rows = conn.execute(
        select(d.twin_id, d.item_id, d.features, d.label, d.batch_id).where(*where)
    ).all()
    conn.execute(delete(tables.decisions).where(*where))
    return pd.DataFrame(rows, columns=["twin_id", "item_id", "features", "label", "batch_id"])
