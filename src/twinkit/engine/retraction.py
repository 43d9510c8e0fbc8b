"""Retraction: take wrong rows out of a twin's data without deleting the twin.

The rows leave the data tables (so no fit, forecast or population prior sees them again),
and the ledger, append-only as ever, records a ``rows_retracted`` entry: what was asked,
the reason, how many rows, the digest of the removed rows, and the new digest of every
batch that lost rows, so that ``ledger verify`` still vouches for what is stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.core.digest import decisions_digest, signals_digest
from twinkit.core.errors import NotFoundError, TwinkitError
from twinkit.core.timewindow import micros_iso
from twinkit.core.twin import TwinKind
from twinkit.store import ledger, observations, twins
from twinkit.store.db import Conn
from twinkit.store.timeutil import to_micros, utc_now_iso

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext

#: the largest batch id a store can hold (a signed 64-bit integer)
MAX_BATCH_ID = 2**63 - 1


@dataclass(frozen=True)
class Retraction:
    """Which rows of one twin to retract: each condition given must hold (and at least one
    must be given). ``start``/``end`` are inclusive, in microseconds since 1970 UTC."""

    batch_id: int | None = None
    start: int | None = None
    end: int | None = None
    channels: tuple[str, ...] = ()
    items: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.batch_id is not None:
            out["batch_id"] = self.batch_id
        if self.start is not None:
            out["start"] = micros_iso(self.start)
        if self.end is not None:
            out["end"] = micros_iso(self.end)
        if self.channels:
            out["channels"] = list(self.channels)
        if self.items:
            out["items"] = list(self.items)
        return out


@dataclass
class RetractResult:
    """What a retraction removed: the rows per batch, and the ledger entry that says so."""

    twin_id: str
    n_retracted: int
    batches: dict[str, int] = field(default_factory=dict)  # batch id -> rows removed
    retraction_batch: int | None = None
    ledger_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def retract_rows(conn: Conn, twin_id: str, what: Retraction, reason: str) -> RetractResult:
    """Remove the chosen rows of ``twin_id`` and record it, in the caller's transaction."""
    twin = twins.get_twin(conn, twin_id)
    if twin is None:
        raise NotFoundError(f"no twin {twin_id!r}")
    if not reason.strip():
        raise TwinkitError("say why the rows are retracted (a reason is recorded in the ledger)")
    asked = what.describe()
    if asked.keys() <= {"channels"}:
        raise TwinkitError(
            "name the rows to retract: a batch, a time range (start and/or end) or items; "
            "to remove all of a twin's data, delete the twin"
        )
    if what.batch_id is not None and not 1 <= what.batch_id <= MAX_BATCH_ID:
        # No store holds such an id (a database would overflow on it): nothing to retract.
        raise NotFoundError(f"no batch {what.batch_id} (batch ids run from 1)")
    if (what.start is not None and what.end is not None) and what.start > what.end:
        raise TwinkitError("the retraction's start is after its end")
    if twin.kind is TwinKind.STATE:
        if what.items:
            raise TwinkitError(f"twin {twin.id!r} is a state twin: retract by batch or time")
        removed = observations.retract_signals(
            conn, twin_id, what.batch_id, what.start, what.end, what.channels
        )
        removed_digest = signals_digest(removed)
    else:
        if what.start is not None or what.end is not None or what.channels:
            raise TwinkitError(f"twin {twin.id!r} is a decision twin: retract by batch or items")
        removed = observations.retract_decisions(
            conn, twin_id, what.batch_id, list(what.items) if what.items else None
        )
        removed_digest = decisions_digest(removed)
    result = RetractResult(twin_id=twin_id, n_retracted=len(removed))
    if removed.empty:
        return result  # nothing matched: nothing to record
    batch_ids, counts = np.unique(removed["batch_id"].to_numpy(dtype=np.int64), return_counts=True)
    result.batches = {str(int(b)): int(n) for b, n in zip(batch_ids, counts, strict=True)}
    now = utc_now_iso()
    retraction_batch = observations.insert_batch(
        conn,
        content_hash=hashlib.sha256(
            json.dumps({"retract": twin_id, "what": asked, "at": now}, sort_keys=True).encode()
        ).hexdigest(),
        active=1,
        kind="retraction",
        source=f"retraction: {reason.strip()}"[:1000],
        twins=json.dumps([twin_id]),
        n_rows=len(removed),
        n_stored=0,
        n_quarantined=0,
        n_duplicates=0,
        created_at=now,
    )
    if twin.kind is TwinKind.STATE:
        # Forecast caches are keyed by the twin's data watermark: move it.
        twins.mark_data_changed(conn, removed["channel_id"].unique().tolist(), retraction_batch)
    touched = {int(b) for b in batch_ids} | {retraction_batch}
    result.retraction_batch = retraction_batch
    result.ledger_seq = ledger.append(
        conn,
        "rows_retracted",
        twin_id,
        {
            "twins": [twin_id],
            "what": asked,
            "reason": reason.strip(),
            "n_retracted": len(removed),
            "rows_per_batch": result.batches,
            "retracted_digest": removed_digest,
            "batch_id": retraction_batch,
            "batch_hashes": {
                str(k): v for k, v in observations.batch_digests(conn, touched).items()
            },
        },
    ).seq
    return result


def _micros(moment: pd.Timestamp | None) -> int | None:
    """A tz-aware time as int64 microseconds since the epoch, the store's unit."""
    return None if moment is None else int(to_micros(pd.DatetimeIndex([moment]))[0])


def retract(
    ctx: EngineContext,
    twin_id: str,
    reason: str,
    batch_id: int | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    channels: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
) -> RetractResult:
    """Take rows out of a twin's data, recorded in the ledger as a retraction with the
    ``reason``. Every condition given must hold: a batch, a time range (inclusive; signals,
    optionally of some ``channels``) or decision ``items``. The next fit does not see the
    rows."""
    what = Retraction(
        batch_id, _micros(start), _micros(end), tuple(channels or ()), tuple(items or ())
    )
    with ctx.store.write() as conn:
        twin = twins.find(conn, twin_id)
        if twin is None:
            raise NotFoundError(f"no twin {twin_id!r}")
        return retract_rows(conn, twin.key, what, reason)
