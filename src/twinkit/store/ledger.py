"""The provenance ledger: an append-only, sha256-chained log of everything done to a twin."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from twinkit.core.digest import GENESIS_HASH, canonical_json, chain_hash
from twinkit.store import tables
from twinkit.store.timeutil import utc_now_iso

HEAD_KEY = "ledger_head"


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    twin_id: str | None
    event: str
    payload: dict[str, Any]
    created_at: str
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """What the hash covers."""
        return {
            "seq": self.seq,
            "twin_id": self.twin_id,
            "event": self.event,
            "payload": self.payload,
            "created_at": self.created_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "prev_hash": self.prev_hash, "hash": self.hash}


def _head(conn: Connection) -> tuple[int, str]:
    # Locking the head row (PostgreSQL; SQLite already holds the write lock) serialises
    # appends across processes.
    row = conn.execute(
        select(tables.meta.c.value).where(tables.meta.c.key == HEAD_KEY).with_for_update()
    ).first()
    if row is None:
        return 0, GENESIS_HASH
    seq, digest = row[0].split(":", 1)
    return int(seq), digest


def append(
    conn: Connection, event: str, twin_id: str | None, payload: dict[str, Any]
) -> LedgerEntry:
    """Append one entry inside the caller's transaction."""
    seq, prev = _head(conn)
    created_at = utc_now_iso()
    body: dict[str, Any] = {
        "seq": seq + 1,
        "twin_id": twin_id,
        "event": event,
        "payload": payload,
        "created_at": created_at,
    }
    digest = chain_hash(prev, body)
    conn.execute(
        tables.ledger.insert().values(
            seq=seq + 1,
            twin_id=twin_id,
            event=event,
            payload=canonical_json(payload),
            created_at=created_at,
            prev_hash=prev,
            hash=digest,
        )
    )
    head_value = f"{seq + 1}:{digest}"
    if seq == 0:
        conn.execute(tables.meta.insert().values(key=HEAD_KEY, value=head_value))
    else:
        conn.execute(
            update(tables.meta).where(tables.meta.c.key == HEAD_KEY).values(value=head_value)
        )
    return LedgerEntry(seq + 1, twin_id, event, payload, created_at, prev, digest)


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        seq=row.seq,
        twin_id=row.twin_id,
        event=row.event,
        payload=json.loads(row.payload),
        created_at=row.created_at,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def entries(conn: Connection, twin_id: str | None = None) -> list[LedgerEntry]:
    """All entries in order, or those of one twin."""
    query = select(tables.ledger).order_by(tables.ledger.c.seq)
    if twin_id is not None:
        query = query.where(tables.ledger.c.twin_id == twin_id)
    return [_entry(r) for r in conn.execute(query)]


def events_of(conn: Connection, twin_id: str, events: list[str]) -> list[LedgerEntry]:
    """One twin's entries among these events, oldest first."""
    lg = tables.ledger.c
    query = (
        select(tables.ledger).where(lg.twin_id == twin_id, lg.event.in_(events)).order_by(lg.seq)
    )
    return [_entry(r) for r in conn.execute(query)]


def store_events(conn: Connection, events: list[str]) -> list[LedgerEntry]:
    """The entries among these events that belong to no twin (population priors'),
    oldest first."""
    lg = tables.ledger.c
    query = select(tables.ledger).where(lg.twin_id.is_(None), lg.event.in_(events)).order_by(lg.seq)
    return [_entry(r) for r in conn.execute(query)]


def last_entry(conn: Connection, twin_id: str, events: list[str]) -> LedgerEntry | None:
    """The newest entry of one twin among these events, if any."""
    lg = tables.ledger.c
    row = conn.execute(
        select(tables.ledger)
        .where(lg.twin_id == twin_id, lg.event.in_(events))
        .order_by(lg.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else _entry(row)


def verify_chain(conn: Connection) -> list[str]:
    """Walk the chain; return what is broken (empty when it verifies), first break first."""
    problems: list[str] = []
    prev = GENESIS_HASH
    expected_seq = 1
    for row in conn.execute(select(tables.ledger).order_by(tables.ledger.c.seq)):
        try:
            entry = _entry(row)
        except (json.JSONDecodeError, TypeError) as exc:
            problems.append(f"ledger entry {row.seq}: payload is not valid JSON ({exc})")
            return problems
        if entry.seq != expected_seq:
            problems.append(
                f"ledger entry {expected_seq} is missing (next present entry is {entry.seq}):"
                " a row was deleted"
            )
            return problems
        if entry.prev_hash != prev:
            problems.append(
                f"ledger entry {entry.seq} ({entry.event}): its prev_hash does not match entry "
                f"{entry.seq - 1}: rows were reordered, replaced or deleted"
            )
            return problems
        if chain_hash(prev, entry.body()) != entry.hash:
            problems.append(
                f"ledger entry {entry.seq} ({entry.event}, twin {entry.twin_id}): its content "
                "does not match its hash: the entry was modified"
            )
            return problems
        prev = entry.hash
        expected_seq += 1
    head = conn.execute(select(tables.meta.c.value).where(tables.meta.c.key == HEAD_KEY)).first()
    last = expected_seq - 1
    if head is None:
        if last:
            problems.append("the ledger head record is missing from the meta table")
    elif head[0] != f"{last}:{prev}":
        head_seq = head[0].split(":", 1)[0]
        problems.append(
            f"the ledger ends at entry {last} but its head record says {head_seq}: "
            "entries after the last present one were deleted, or the head was altered"
        )
    return problems


def serving_history(entries: list[LedgerEntry]) -> dict[str, list[int]]:
    """Per twin, the versions that served, oldest first, as the ledger tells it.

    A promotion pushes a version; a rollback pops back to the one before; deleting a twin
    forgets its history. The last element is the version that serves now.
    """
    stacks: dict[str, list[int]] = {}
    for entry in entries:
        if entry.twin_id is not None:
            _serve(stacks.setdefault(entry.twin_id, []), entry)
    return stacks


def serving_at_batches(entries: list[LedgerEntry], twin_id: str) -> dict[int, int | None]:
    """Per batch ingested for ``twin_id`` alone, the version that served when it arrived
    (None before any), as its entries (oldest first) tell it."""
    stack: list[int] = []
    out: dict[int, int | None] = {}
    for entry in entries:
        if entry.twin_id != twin_id:
            continue
        if entry.event == "batch_ingested":
            out[int(entry.payload["batch_id"])] = stack[-1] if stack else None
        else:
            _serve(stack, entry)
    return out


def _serve(stack: list[int], entry: LedgerEntry) -> None:
    """One entry's effect on a twin's stack of serving versions."""
    if entry.event == "model_promoted":
        stack.append(int(entry.payload["version"]))
    elif entry.event == "model_rolled_back":
        if stack:
            stack.pop()
        if not stack or stack[-1] != int(entry.payload["to_version"]):
            stack.append(int(entry.payload["to_version"]))
    elif entry.event == "twin_deleted":
        stack.clear()


def rollback_target(entries: list[LedgerEntry], twin_id: str, version: int) -> int | None:
    """The version a rollback from ``version`` would serve, as the twin's entries tell it:
    the one that served before it; None if ``version`` is not the one serving now or
    nothing served before it."""
    served = serving_history(entries).get(twin_id, [])
    if not served or served[-1] != version:
        return None
    earlier = [v for v in served[:-1] if v != version]
    return earlier[-1] if earlier else None
