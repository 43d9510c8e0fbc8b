"""Twins and their channels in the store."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, select, update

from twinkit.core.errors import AmbiguousTwinError
from twinkit.core.twin import Channel, Twin, TwinKind, split_ref
from twinkit.store import forecast_log, tables


def _channel_row(twin_id: str, channel: Channel, declared: bool) -> dict[str, Any]:
    return {
        "twin_id": twin_id,
        "name": channel.name,
        "unit": channel.unit,
        "low": None if math.isinf(channel.low) else channel.low,
        "high": None if math.isinf(channel.high) else channel.high,
        "declared": int(declared),
    }


def insert_twin(conn: Connection, twin: Twin) -> None:
    conn.execute(
        tables.twins.insert().values(
            id=twin.key,
            name=twin.id,
            kind=twin.kind.value,
            owner=twin.owner,
            metadata=json.dumps(twin.metadata, sort_keys=True),
            created_at=twin.created_at,
            uid=twin.uid,
        )
    )
    if twin.channels:
        conn.execute(
            tables.channels.insert(), [_channel_row(twin.key, c, True) for c in twin.channels]
        )


def _channel(row: Any) -> Channel:
    return Channel(
        row.name,
        row.unit,
        -math.inf if row.low is None else row.low,
        math.inf if row.high is None else row.high,
    )


def get_twin(conn: Connection, key: str) -> Twin | None:
    """The twin whose store key is ``key``, or None."""
    row = conn.execute(select(tables.twins).where(tables.twins.c.id == key)).first()
    if row is None:
        return None
    declared = conn.execute(
        select(tables.channels)
        .where(tables.channels.c.twin_id == key, tables.channels.c.declared == 1)
        .order_by(tables.channels.c.id)
    )
    return Twin(
        id=row.name or row.id,
        key=row.id,
        kind=TwinKind(row.kind),
        owner=row.owner,
        metadata=json.loads(row.metadata),
        channels=tuple(_channel(c) for c in declared),
        created_at=row.created_at,
        uid=row.uid or "",
    )


def key_of(conn: Connection, owner: str, name: str) -> str | None:
    """The store key of ``owner``'s twin ``name``, or None."""
    t = tables.twins.c
    row = conn.execute(select(t.id).where(t.owner == owner, t.name == name)).first()
    return None if row is None else str(row.id)


def named(conn: Connection, name: str) -> list[tuple[str, str]]:
    """(owner, key) of every twin called ``name``, whoever owns it, by owner."""
    t = tables.twins.c
    rows = conn.execute(select(t.owner, t.id).where(t.name == name).order_by(t.owner))
    return [(str(r.owner), str(r.id)) for r in rows]


def find(conn: Connection, ref: str) -> Twin | None:
    """The twin ``ref`` names: ``owner/id``, or a bare id that one owner uses; None if no
    twin has it. :class:`AmbiguousTwinError` if several owners have a twin of that id."""
    owner, name = split_ref(ref)
    if owner is not None:
        # A twin made since schema 7 is stored under its reference: one primary-key read.
        twin = get_twin(conn, ref)
        if twin is not None and twin.owner == owner and twin.id == name:
            return twin
        key = key_of(conn, owner, name)
    else:
        found = named(conn, name)
        if len(found) > 1:
            owners = ", ".join(o for o, _ in found)
            raise AmbiguousTwinError(
                f"twin id {name!r} is used by several owners ({owners}): name the one you "
                f"mean as owner/{name}"
            )
        key = found[0][1] if found else None
    return None if key is None else get_twin(conn, key)


def owners_of(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    """The owner of each of these twins (by key) that exists."""
    t = tables.twins.c
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = conn.execute(select(t.id, t.owner).where(t.id.in_(wanted)))
    return {str(r.id): str(r.owner) for r in rows}


def list_twins(conn: Connection, owner: str | None = None) -> list[Twin]:
    query = select(tables.twins.c.id).order_by(tables.twins.c.owner, tables.twins.c.name)
    if owner is not None:
        query = query.where(tables.twins.c.owner == owner)
    twins = [get_twin(conn, r.id) for r in conn.execute(query)]
    return [t for t in twins if t is not None]


def channels_of(conn: Connection, twin_ids: list[str]) -> pd.DataFrame:
    """All channels (declared or seen) of these twins: id, twin_id, name, low, high, declared."""
    c = tables.channels.c
    rows = conn.execute(
        select(c.id, c.twin_id, c.name, c.unit, c.low, c.high, c.declared).where(
            c.twin_id.in_(twin_ids)
        )
    ).all()
    names = ["id", "twin_id", "name", "unit", "low", "high", "declared"]
    # Column by column: pandas handed SQLAlchemy rows probes each one for attributes.
    if not rows:
        return pd.DataFrame(columns=names)
    columns = zip(*rows, strict=True)
    return pd.DataFrame({n: list(v) for n, v in zip(names, columns, strict=True)})


def channel_ids(conn: Connection, twin_id: str, name: str) -> list[int]:
    """The id of the twin's channel ``name`` (one, or none)."""
    c = tables.channels.c
    rows = conn.execute(select(c.id).where(c.twin_id == twin_id, c.name == name)).all()
    return [int(r[0]) for r in rows]


def add_channels(conn: Connection, twin_id_channel: list[tuple[str, Channel]]) -> None:
    if twin_id_channel:
        conn.execute(
            tables.channels.insert(),
            [_channel_row(t, ch, False) for t, ch in twin_id_channel],
        )


def mark_data_changed(conn: Connection, channel_ids: Iterable[int], batch_id: int) -> None:
    """Record that ``batch_id`` wrote observations of these channels: their twins'
    ``data_batch`` watermark moves to it (call in the transaction that writes them)."""
    ids = sorted({int(i) for i in channel_ids})
    if not ids:
        return
    c = tables.channels.c
    owners_of = select(c.twin_id).where(c.id.in_(ids))
    conn.execute(
        update(tables.twins).where(tables.twins.c.id.in_(owners_of)).values(data_batch=batch_id)
    )


def twin_uid(conn: Connection, twin_id: str) -> str | None:
    """The uid of the twin that has ``twin_id`` now, or None if there is none."""
    row = conn.execute(select(tables.twins.c.uid).where(tables.twins.c.id == twin_id)).first()
    return None if row is None else str(row.uid)


def delete_twin_rows(conn: Connection, twin_id: str) -> None:
    """Remove a twin and everything stored for it (the ledger keeps its history)."""
    channel_ids = select(tables.channels.c.id).where(tables.channels.c.twin_id == twin_id)
    forecast_log.delete_channels(conn, channel_ids)
    conn.execute(
        delete(tables.observations).where(tables.observations.c.channel_id.in_(channel_ids))
    )
    conn.execute(delete(tables.channels).where(tables.channels.c.twin_id == twin_id))
    conn.execute(delete(tables.decisions).where(tables.decisions.c.twin_id == twin_id))
    conn.execute(delete(tables.quarantine).where(tables.quarantine.c.twin_id == twin_id))
    conn.execute(delete(tables.model_versions).where(tables.model_versions.c.twin_id == twin_id))
    conn.execute(delete(tables.clone_queries).where(tables.clone_queries.c.twin_id == twin_id))
    conn.execute(
        delete(tables.monitor_policies).where(tables.monitor_policies.c.twin_id == twin_id)
    )
    conn.execute(delete(tables.twins).where(tables.twins.c.id == twin_id))


def find_twin_casefold(conn: Connection, owner: str, name: str) -> Twin | None:
    """``owner``'s twin whose id equals ``name`` but for the case of its letters (the id
    itself included), or None. Twin ids are ASCII, so lower() is the same in every database."""
    t = tables.twins.c
    row = conn.execute(
        select(t.id)
        .where(t.owner == owner, func.lower(t.name) == name.lower())
        .order_by(t.name)
        .limit(1)
    ).first()
    return None if row is None else get_twin(conn, row.id)


def mark_decisions_changed(conn: Connection, twin_ids: Iterable[str], batch_id: int) -> None:
    """Record that ``batch_id`` wrote decisions of these twins (store keys): their
    ``data_batch`` watermark moves to it, so the monitor checks them again."""
    keys = sorted({str(k) for k in twin_ids})
    if keys:
        conn.execute(
            update(tables.twins).where(tables.twins.c.id.in_(keys)).values(data_batch=batch_id)
        )


def data_marks(conn: Connection, kind: str | None = None) -> dict[str, int | None]:
    """Every twin's key -> its data watermark (``data_batch``), of one kind if given."""
    t = tables.twins.c
    query = select(t.id, t.data_batch)
    if kind is not None:
        query = query.where(t.kind == kind)
    return {str(key): (None if mark is None else int(mark)) for key, mark in conn.execute(query)}


def monitor_policy(conn: Connection, twin_id: str) -> tuple[str, str] | None:
    """The twin's monitor policy and detector, or None for the defaults."""
    m = tables.monitor_policies.c
    row = conn.execute(select(m.policy, m.detector).where(m.twin_id == twin_id)).first()
    return None if row is None else (str(row.policy), str(row.detector))


def set_monitor_policy(
    conn: Connection, twin_id: str, policy: str, detector: str, when: str
) -> None:
    """Set the twin's monitor policy and detector."""
    m = tables.monitor_policies.c
    conn.execute(delete(tables.monitor_policies).where(m.twin_id == twin_id))
    conn.execute(
        tables.monitor_policies.insert().values(
            twin_id=twin_id, policy=policy, detector=detector, updated_at=when
        )
    )
