"""Ingest: check the twins, screen the rows, store the batch and its ledger entry together."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.core.digest import (
    canonical_json,
    decisions_digest,
    features_json,
    quarantine_rows_digest,
    signals_digest,
)
from twinkit.core.errors import NotFoundError, Problem, TwinkitError, ValidationError
from twinkit.core.timewindow import micros_iso
from twinkit.core.twin import KNOWN_CHANNELS, Channel, Twin, TwinKind, public_id, split_ref
from twinkit.data.importers import Batch, SignalBatch, load_batch, parse_batch
from twinkit.screen import DeviceFlag, Screen, ScreenContext, run_screens
from twinkit.store import ledger, observations, twins
from twinkit.store.db import Conn
from twinkit.store.timeutil import utc_now_iso

if TYPE_CHECKING:
    from pathlib import Path

    from twinkit.engine.context import EngineContext


@dataclass
class IngestResult:
    """What one ingest did; ``already_ingested`` means the same content was seen before."""

    source: str
    content_hash: str
    batch_id: int | None
    already_ingested: bool
    n_rows: int
    n_stored: int = 0
    n_quarantined: int = 0
    n_duplicates: int = 0
    twins: list[str] = field(default_factory=list)  # their store keys
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _bound(value: Any, default: float) -> float:
    return default if value is None or pd.isna(value) else float(value)


def known_twin(twin_ids: list[str]) -> str | None:
    """The ledger's twin column: the twin a batch belongs to, when it is just one."""
    return twin_ids[0] if len(twin_ids) == 1 else None


def _channel_id_per_row(frame: pd.DataFrame, channel_map: pd.DataFrame) -> np.ndarray:
    """The store's channel id of each row's (twin_id, channel), by table lookup on codes."""
    twin_codes, twin_names = pd.factorize(frame["twin_id"])
    chan_codes, chan_names = pd.factorize(frame["channel"])
    table = np.full((len(twin_names), len(chan_names)), -1, dtype=np.int64)
    twin_at = {str(n): i for i, n in enumerate(twin_names)}
    chan_at = {str(n): j for j, n in enumerate(chan_names)}
    for twin_id, name, channel_id in channel_map[["twin_id", "name", "id"]].itertuples(index=False):
        if twin_id in twin_at and name in chan_at:
            table[twin_at[twin_id], chan_at[name]] = channel_id
    return table[twin_codes, chan_codes]


def _first_row(frame: pd.DataFrame, twin_id: str) -> int:
    return int(frame["row"].to_numpy()[(frame["twin_id"] == twin_id).to_numpy()][0])


def key_twins(conn: Conn, batch: Batch, owner: str | None) -> Batch:
    """The batch with each row's twin id replaced by that twin's store key: ``owner``'s
    twin of that id, or (no owner) the one twin of that id, whoever owns it. An id no
    twin has (or, without an owner, several owners' twins have) rejects the batch."""
    frame = batch.frame
    codes, ids = pd.factorize(frame["twin_id"])
    keys: list[str] = []
    problems = []
    for twin_id in (str(i) for i in ids):
        if owner is not None:
            key = twins.key_of(conn, owner, twin_id)
            found = [] if key is None else [(owner, key)]
        else:
            found = twins.named(conn, twin_id)
        if len(found) == 1:
            keys.append(found[0][1])
            continue
        keys.append(twin_id)
        if not found:
            message = f"unknown twin {twin_id!r} (create it first)"
        else:
            owners = ", ".join(o for o, _ in found)
            message = (
                f"twin id {twin_id!r} is used by several owners ({owners}): name the owner "
                "the batch is for"
            )
        problems.append(Problem(message, _first_row(frame, twin_id), "twin_id"))
    if problems:
        raise ValidationError(batch.source, problems)
    keyed = frame.assign(twin_id=np.asarray(keys, dtype=object)[codes])
    return replace(batch, frame=keyed)


def check_twins(conn: Conn, batch: Batch) -> dict[str, Twin]:
    """The twins of a keyed batch (see :func:`key_twins`), checked to be of its kind."""
    frame = batch.frame
    ids = list(pd.unique(frame["twin_id"]))
    known = {t: twins.get_twin(conn, t) for t in ids}
    want = TwinKind.STATE if isinstance(batch, SignalBatch) else TwinKind.DECISION
    problems = []
    for twin_id, twin in known.items():
        if twin is not None and twin.kind is want:
            continue
        first = _first_row(frame, twin_id)
        if twin is None:
            problems.append(
                Problem(f"unknown twin {public_id(twin_id)!r} (create it first)", first, "twin_id")
            )
        elif twin.kind is not want:
            problems.append(
                Problem(
                    f"twin {twin.id!r} is a {twin.kind.value} twin; this file holds "
                    f"{batch.kind.value}",
                    first,
                    "twin_id",
                )
            )
    if problems:
        raise ValidationError(batch.source, problems)
    return {k: v for k, v in known.items() if v is not None}


def channel_ids(conn: Conn, batch: SignalBatch, known: dict[str, Twin]) -> pd.DataFrame:
    """Map each row's (twin, channel) to a channel id, registering first-seen channels."""
    frame = batch.frame
    pairs = dict.fromkeys(zip(frame["twin_id"], frame["channel"], strict=True))  # in order
    existing = twins.channels_of(conn, list(known))
    have = set(zip(existing["twin_id"], existing["name"], strict=True))
    problems, new = [], []
    for twin_id, name in pairs:
        if (twin_id, name) in have:
            continue
        twin = known[twin_id]
        if twin.channels:
            rows = (frame["twin_id"] == twin_id).to_numpy() & (frame["channel"] == name).to_numpy()
            declared = ", ".join(c.name for c in twin.channels)
            problems.append(
                Problem(
                    f"channel {name!r} is not declared for twin {twin_id!r} (declared: {declared})",
                    int(frame["row"].to_numpy()[rows][0]),
                    "channel",
                )
            )
        else:
            unit = (batch.units or {}).get(name, "")
            new.append((twin_id, KNOWN_CHANNELS.get(name) or Channel(name, unit)))
    if problems:
        raise ValidationError(batch.source, problems)
    twins.add_channels(conn, new)
    return twins.channels_of(conn, list(known)) if new else existing


def with_opt_ins(screens: Sequence[Screen], known: dict[str, Twin]) -> tuple[Screen, ...]:
    """``screens`` and, for the twins that opted in (``Twin.screens``), the poison screen
    run on their rows together with their stored decisions: it then works on answers that
    arrive a few at a time. A caller that set its own poison screen keeps it alone."""
    opted = sorted(key for key, twin in known.items() if "poison" in twin.screens)
    if not opted or any(getattr(s, "name", "") == "poison" for s in screens):
        return tuple(screens)
    from twinkit.screen.poison import PoisonScreen

    return (*screens, PoisonScreen(twins=opted, history=True))


def ingest_batch(
    conn: Conn,
    batch: Batch,
    signal_screens: Sequence[Screen],
    decision_screens: Sequence[Screen],
) -> IngestResult:
    """Screen and store one validated batch with its ledger entry, in the caller's transaction."""
    known = check_twins(conn, batch)
    if isinstance(batch, SignalBatch):
        digest_frame = batch.frame
        content_hash = signals_digest(digest_frame)
    else:
        feats = features_json(list(batch.feature_names), batch.features)
        digest_frame = batch.frame.assign(features=feats)
        content_hash = decisions_digest(digest_frame)
    result = IngestResult(
        source=batch.source,
        content_hash=content_hash,
        batch_id=None,
        already_ingested=False,
        n_rows=len(batch),
        twins=sorted(known),
    )
    seen = observations.find_batch(conn, content_hash)
    if seen is not None:
        result.already_ingested = True
        result.batch_id = int(seen.id)
        return result

    if isinstance(batch, SignalBatch):
        channel_map = channel_ids(conn, batch, known)
        frame = batch.frame
        ranges = {
            (str(twin_id), str(name)): (_bound(low, -np.inf), _bound(high, np.inf))
            for twin_id, name, low, high in channel_map[
                ["twin_id", "name", "low", "high"]
            ].itertuples(index=False)
        }
        pairs = set(zip(frame["twin_id"], frame["channel"], strict=True))
        mine = [
            (twin_id, name) in pairs
            for twin_id, name in zip(channel_map["twin_id"], channel_map["name"], strict=True)
        ]
        touched = channel_map.loc[mine]
        stored = observations.stored_signals(
            conn, touched, int(frame["t"].min()), int(frame["t"].max())
        )
        screens = tuple(signal_screens)
        if batch.flags is not None:
            screens = (DeviceFlag(), *screens)
        screening = run_screens(batch, screens, ScreenContext(ranges, stored))
    else:
        stored = observations.stored_decisions(conn, list(known))
        screens = with_opt_ins(decision_screens, known)
        history = stored if any(getattr(s, "uses_history", False) for s in screens) else None
        screening = run_screens(
            batch,
            screens,
            ScreenContext(stored=stored[["twin_id", "item_id", "label"]], history=history),
        )
    accepted, held = screening.accepted, screening.quarantined
    now = utc_now_iso()
    batch_id = observations.insert_batch(
        conn,
        content_hash=content_hash,
        active=1,
        kind=batch.kind.value,
        source=batch.source,
        twins=json.dumps(result.twins),
        n_rows=len(batch),
        n_stored=int(accepted.sum()),
        n_quarantined=int(held.sum()),
        n_duplicates=int(screening.duplicate.sum()),
        created_at=now,
    )
    kept = digest_frame[accepted]
    if isinstance(batch, SignalBatch):
        ids = _channel_id_per_row(kept, channel_map)
        observations.insert_observations(
            conn, ids, kept["t"].to_numpy(), kept["value"].to_numpy(), batch_id
        )
        stored_hash = content_hash if accepted.all() else signals_digest(kept)
    else:
        observations.insert_decisions(conn, kept, batch_id)
        stored_hash = content_hash if accepted.all() else decisions_digest(kept)
    held_rows = quarantine_rows(conn, batch, digest_frame, screening.reasons, held, batch_id, now)
    reasons: dict[str, int] = {}
    for name in screening.screens[held]:
        reasons[str(name)] = reasons.get(str(name), 0) + 1
    result.batch_id = batch_id
    result.n_stored = int(accepted.sum())
    result.n_quarantined = int(held.sum())
    result.n_duplicates = int(screening.duplicate.sum())
    result.quarantine_reasons = reasons
    provenance = getattr(batch, "provenance", None)
    ledger.append(
        conn,
        "batch_ingested",
        known_twin(result.twins),
        {
            **({"import": provenance} if provenance else {}),
            "batch_id": batch_id,
            "kind": batch.kind.value,
            "source": batch.source,
            "content_hash": content_hash,
            "twins": result.twins,
            "n_rows": result.n_rows,
            "n_stored": result.n_stored,
            "n_quarantined": result.n_quarantined,
            "n_duplicates": result.n_duplicates,
            "batch_hashes": {str(batch_id): stored_hash},
            "quarantine_hashes": {str(batch_id): quarantine_rows_digest(held_rows)},
        },
    )
    return result


def quarantine_rows(
    conn: Conn,
    batch: Batch,
    frame: pd.DataFrame,
    reasons: np.ndarray,
    held: np.ndarray,
    batch_id: int,
    now: str,
) -> list[list[Any]]:
    """Store the held rows with their reasons; return them as [row, record, reason]."""
    rows = []
    for i in np.flatnonzero(held):
        row = frame.iloc[i]
        if isinstance(batch, SignalBatch):
            record: dict[str, Any] = {
                "twin_id": row["twin_id"],
                "channel": row["channel"],
                "t": int(row["t"]),
                "value": repr(float(row["value"])),
            }
        else:
            record = {
                "twin_id": row["twin_id"],
                "item_id": row["item_id"],
                "label": row["label"],
                "features": {
                    n: repr(float(v))
                    for n, v in zip(batch.feature_names, batch.features[i], strict=True)
                },
            }
        rows.append(
            {
                "batch_id": batch_id,
                "twin_id": row["twin_id"],
                "kind": batch.kind.value,
                "row": int(row["row"]),
                "record": canonical_json(record),
                "reason": str(reasons[i]),
                "created_at": now,
                "released_at": None,
            }
        )
    observations.insert_quarantine(conn, rows)
    return [[r["row"], r["record"], r["reason"]] for r in rows]


def release_rows(conn: Conn, quarantine_ids: Sequence[int], latest_us: int | None = None) -> int:
    """Store quarantined rows after all (a release batch); a stored value is replaced.

    A signal row timed after ``latest_us`` (the time window's now plus tolerance) stays
    held: a reading from the future is never stored.
    """
    ids = sorted(set(int(i) for i in quarantine_ids))
    held = {q["id"]: q for q in observations.list_quarantine(conn, include_released=True)}
    missing = [i for i in ids if i not in held]
    if missing:
        raise NotFoundError(f"no quarantined row(s) with id {missing}")
    released = [i for i in ids if held[i]["released_at"] is not None]
    if released:
        raise TwinkitError(f"quarantined row(s) {released} were already released")
    if latest_us is not None:
        future = [
            i
            for i in ids
            if held[i]["kind"] == "signals" and int(held[i]["record"]["t"]) > latest_us
        ]
        if future:
            when = micros_iso(int(held[future[0]]["record"]["t"]))
            raise TwinkitError(
                f"quarantined row(s) {future} are still in the future ({when}, the first): "
                "they can be released once their time has come"
            )
    now = utc_now_iso()
    twin_ids = sorted({held[i]["twin_id"] for i in ids})
    batch_id = observations.insert_batch(
        conn,
        content_hash=_release_hash(ids, now),
        active=1,
        kind="release",
        source=f"release of quarantined rows {ids}",
        twins=json.dumps(twin_ids),
        n_rows=len(ids),
        n_stored=len(ids),
        n_quarantined=0,
        n_duplicates=0,
        created_at=now,
    )
    touched = {batch_id}
    for qid in ids:
        record = held[qid]["record"]
        touched |= release_one(conn, qid, held[qid]["kind"], record, batch_id)
        observations.mark_released(conn, qid, now)
    ledger.append(
        conn,
        "quarantine_released",
        known_twin(twin_ids),
        {
            "quarantine_ids": ids,
            "twins": twin_ids,
            "batch_id": batch_id,
            "batch_hashes": {
                str(k): v for k, v in observations.batch_digests(conn, touched).items()
            },
        },
    )
    return len(ids)


def release_one(conn: Conn, qid: int, kind: str, record: dict[str, Any], batch_id: int) -> set[int]:
    if twins.get_twin(conn, record["twin_id"]) is None:
        raise NotFoundError(f"quarantined row {qid}: twin {record['twin_id']!r} is gone")
    if kind == "signals":
        value = float(record["value"])
        if not np.isfinite(value):
            raise TwinkitError(
                f"quarantined row {qid} holds a non-finite value; it cannot be stored: "
                "correct the source and ingest it again"
            )
        channel_map = twins.channels_of(conn, [record["twin_id"]])
        match = channel_map[channel_map["name"] == record["channel"]]
        replaced = observations.upsert_observation(
            conn, int(match["id"].iloc[0]), int(record["t"]), value, batch_id
        )
        return set() if replaced is None else {replaced}
    features = {n: float(v) for n, v in record["features"].items()}
    if not all(np.isfinite(list(features.values()))):
        raise TwinkitError(f"quarantined row {qid} holds non-finite features; fix the source")
    stored = observations.stored_decisions(conn, [record["twin_id"]])
    old = stored[stored["item_id"] == record["item_id"]]
    frame = pd.DataFrame(
        {
            "twin_id": [record["twin_id"]],
            "item_id": [record["item_id"]],
            "features": [canonical_json(features)],
            "label": [record["label"]],
        }
    )
    gone: set[int] = set()
    if len(old):
        gone = observations.delete_decision(conn, record["twin_id"], record["item_id"])
    observations.insert_decisions(conn, frame, batch_id)
    return gone


def _release_hash(ids: list[int], when: str) -> str:
    return hashlib.sha256(json.dumps({"release": ids, "at": when}).encode()).hexdigest()


def ingest(
    ctx: EngineContext,
    data: Path | str | pd.DataFrame,
    twin: str | None = None,
    source: str | None = None,
    owner: str | None = None,
) -> IngestResult:
    """Validate, screen and store one batch with its ledger entry, atomically.

    The data name their twins by id (a ``twin_id`` column), or ``twin`` names the one twin
    they are for (``id`` or ``owner/id``). The ids are ``owner``'s; without an owner, each
    must be an id that only one owner uses (any id, in a store of one owner). A batch with
    any invalid row raises :class:`ValidationError` and stores nothing.
    """
    if twin is not None:
        named_owner, twin = split_ref(twin)
        if named_owner is not None and owner is not None and named_owner != owner:
            raise TwinkitError(f"the twin {named_owner}/{twin} is not {owner!r}'s")
        owner = owner or named_owner
    earliest = ctx.time_window.earliest_us
    if isinstance(data, pd.DataFrame):
        batch = parse_batch(data, source or "<DataFrame>", twin, earliest)
    else:
        batch = load_batch(data, twin, earliest)
    with ctx.store.write() as conn:
        keyed = key_twins(conn, batch, owner)
        return ingest_batch(conn, keyed, ctx.signal_screens, ctx.decision_screens)


def quarantine(
    ctx: EngineContext, twin_key: str | None = None, include_released: bool = False
) -> list[dict[str, Any]]:
    """Held rows: of the twin stored under ``twin_key``, or all."""
    with ctx.store.read() as conn:
        return observations.list_quarantine(conn, twin_key, include_released)


def release(ctx: EngineContext, quarantine_ids: Sequence[int]) -> int:
    """Store quarantined rows after all (a release batch); a stored value is replaced. Rows
    timed in the future stay held until their time has come."""
    with ctx.store.write() as conn:
        return release_rows(conn, quarantine_ids, ctx.time_window.latest_us())
