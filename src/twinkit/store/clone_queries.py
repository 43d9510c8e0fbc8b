"""Questions a decision twin's clone asked its donor, and which batch answered each."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Connection, select, update

from twinkit.store import tables

COLUMNS = ["item_id", "strategy", "asked_at", "answered_batch", "features"]


def asked(conn: Connection, twin_key: str) -> pd.DataFrame:
    """Every question asked of the twin stored under ``twin_key``: ``item_id``,
    ``strategy``, ``asked_at``, ``answered_batch`` (None while it waits), ``features``
    (canonical JSON, as asked)."""
    q = tables.clone_queries.c
    rows = conn.execute(
        select(q.item_id, q.strategy, q.asked_at, q.answered_batch, q.features).where(
            q.twin_id == twin_key
        )
    ).all()
    return pd.DataFrame(rows, columns=COLUMNS)


def record(
    conn: Connection,
    twin_key: str,
    questions: Sequence[tuple[str, str]],
    strategy: str,
    asked_at: str,
) -> list[str]:
    """Record ``(item_id, features JSON)`` questions not asked before (another process may
    have asked some meanwhile); return the item ids recorded now, in order."""
    q = tables.clone_queries.c
    known = {str(r[0]) for r in conn.execute(select(q.item_id).where(q.twin_id == twin_key))}
    fresh = [(item, f) for item, f in questions if item not in known]
    if fresh:
        conn.execute(
            tables.clone_queries.insert(),
            [
                {
                    "twin_id": twin_key,
                    "item_id": item,
                    "strategy": strategy,
                    "features": f,
                    "asked_at": asked_at,
                    "answered_batch": None,
                }
                for item, f in fresh
            ],
        )
    return [item for item, _ in fresh]


def mark_answered(conn: Connection, twin_key: str, batch_id: int) -> list[str]:
    """Mark the questions whose answer ``batch_id`` stored (a quarantined answer does not
    count) as answered by it; return their item ids."""
    q, d = tables.clone_queries.c, tables.decisions.c
    stored = [
        str(r[0])
        for r in conn.execute(
            select(d.item_id).where(d.twin_id == twin_key).where(d.batch_id == batch_id)
        ).all()
    ]
    if stored:
        conn.execute(
            update(tables.clone_queries)
            .where(q.twin_id == twin_key)
            .where(q.item_id.in_(stored))
            .values(answered_batch=batch_id)
        )
    return stored
