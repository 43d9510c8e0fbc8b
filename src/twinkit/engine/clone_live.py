"""Decision twins that follow their donor: rechecks, the donor's changes, the window of
answers the clone learns from, and the clone's live agreement.

**Rechecks** (:mod:`twinkit.clone.evolving`): among the questions the twin asks, a share
asks the donor again about an item they answered before in their personal zone. A
recheck is a question of its own, recorded with the strategy ``recheck`` under the id
``ITEM~N`` (the N-th time ITEM is asked again) and the item's features, so the donor's
earlier answer stays as it was. The recheck stream is the answers to those questions in
the order they arrived (by batch, then item id), each against the donor's newest earlier
answer on the same item.

:func:`record_changes` replays the recheck stream through a fresh detector and records
each new change of the donor as a ``drift_detected`` ledger entry on the stream
``rechecks``, with the answers where it began and where it was found. The newest such
entry sets the **window** (:func:`donor_window`): the clone's fit trains and scores on the
answers from its start on, so a donor who changed their mind is followed and not averaged
with who they were.

The **agreement stream** (for the health view, :func:`donor_health`) checks each answer
against the clone version that served when its batch arrived, as the ledger tells it (the
promotions and rollbacks before the batch's ingest entry): a version fitted before the
answer came, so the check is prequential. Answers that came before any version served, in
a batch naming several twins, or over features the version does not decide on are not in
it. It says how the clone does; it does not decide changes (see
:mod:`twinkit.clone.evolving` for why).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.clone.evolving import (
    ANSWER_DETECTORS,
    DEFAULT_ANSWER_DETECTOR,
    Recheck,
    pick_rechecks,
    recheck_changes,
    recheck_quota,
)
from twinkit.core.errors import IntegrityError, TwinkitError
from twinkit.core.twin import Twin
from twinkit.engine.clone_artifacts import CLONE, load_clone
from twinkit.engine.live import DRIFT_EVENT, SERVING_EVENTS
from twinkit.store import clone_queries, ledger, model_versions, observations, twins
from twinkit.store.db import Conn
from twinkit.store.ledger import LedgerEntry

if TYPE_CHECKING:
    from twinkit.clone.model import CloneModel
    from twinkit.engine.context import EngineContext

log = logging.getLogger(__name__)

#: the stream's name in drift entries
RECHECKS = "rechecks"
#: the strategy recorded for a recheck question, and the mark between item and count
RECHECK = "recheck"
RECHECK_MARK = "~"
#: answers the health view's recent agreement is over
RECENT_ANSWERS = 50
STREAM_COLUMNS = ["item_id", "batch_id", "arrived", "label", "version", "clone_said", "agree"]


def answer_detector(name: str | None) -> str:
    """The agreement stream's detector for a policy's detector name: the same name when
    it is one of :data:`~twinkit.clone.evolving.ANSWER_DETECTORS`, else the default."""
    return name if name in ANSWER_DETECTORS else DEFAULT_ANSWER_DETECTOR


def agreement_stream(ctx: EngineContext, twin: Twin) -> pd.DataFrame:
    """The twin's agreement stream (see the module), oldest answer first: ``item_id``,
    ``batch_id``, ``arrived``, ``label`` (the donor's), ``version`` (the clone version
    that served), ``clone_said`` and ``agree``."""
    with ctx.store.read() as conn:
        answers = observations.answers_in_order(conn, twin.key)
        entries = ledger.events_of(conn, twin.key, ["batch_ingested", *SERVING_EVENTS])
        served = ledger.serving_at_batches(entries, twin.key)
        numbers = {v for v in served.values() if v is not None}
        versions = {n: model_versions.get_version(conn, twin.key, n) for n in numbers}
    answers["version"] = [served.get(int(b)) for b in answers["batch_id"]]
    answers = answers[answers["version"].notna()]
    parts: list[pd.DataFrame] = []
    for number in sorted({int(v) for v in answers["version"]}):
        group = answers[answers["version"] == number]
        version = versions.get(number)
        clone = _clone_of(ctx, version) if version is not None else None
        if clone is None or version is None:
            continue
        features = [str(f) for f in version.params.get("features") or []]
        rows = [json.loads(f) for f in group["features"]]
        fits = np.asarray([set(r) == set(features) for r in rows], dtype=bool)
        if not fits.any():
            continue
        x = np.asarray(
            [[r[f] for f in features] for r, ok in zip(rows, fits, strict=True) if ok],
            dtype=np.float64,
        )
        ok = np.asarray(np.isfinite(x).all(axis=1), dtype=bool)
        kept = group.loc[group.index[fits][ok]].copy()
        kept["clone_said"] = clone.predict(x[ok]) if ok.any() else []
        parts.append(kept)
    if not parts:
        return pd.DataFrame(columns=STREAM_COLUMNS)
    stream = pd.concat(parts).sort_values(["batch_id", "item_id"], kind="stable")
    stream["version"] = stream["version"].astype(int)
    stream["label"] = stream["label"].astype(str)
    stream["agree"] = stream["clone_said"] == stream["label"]
    return stream[STREAM_COLUMNS].reset_index(drop=True)


def recheck_id(item: str, n: int) -> str:
    """The question id of the ``n``-th recheck of ``item``.

    >>> recheck_id("i042", 2)
    'i042~2'
    """
    return f"{item}{RECHECK_MARK}{n}"


def recheck_base(question: str) -> str:
    """The item a recheck question asks about again (``i042~2`` -> ``i042``)."""
    return question.rsplit(RECHECK_MARK, 1)[0]


def answered_items(answers: pd.DataFrame, asked: pd.DataFrame) -> tuple[list[str], list[bool]]:
    """Per answer (``answers_in_order``), the item it answers (a recheck's is the item it
    asks about again) and whether it answers a recheck (``asked``: the twin's
    ``clone_queries``)."""
    rechecks = set(asked.loc[asked["strategy"] == RECHECK, "item_id"].astype(str))
    ids = [str(i) for i in answers["item_id"]]
    again = [i in rechecks for i in ids]
    return [recheck_base(i) if r else i for i, r in zip(ids, again, strict=True)], again


def recheck_stream(answers: pd.DataFrame, asked: pd.DataFrame) -> list[Recheck]:
    """The rechecks among a twin's answers in arrival order (``answers_in_order``): the
    answers to questions asked with the strategy ``recheck`` (``asked``: the twin's
    ``clone_queries``), each against the newest earlier answer on its item."""
    items, again = answered_items(answers, asked)
    newest: dict[str, str] = {}
    out: list[Recheck] = []
    for j, (item, recheck, label) in enumerate(zip(items, again, answers["label"], strict=True)):
        if recheck and item in newest:
            out.append(Recheck(j, item, newest[item], str(label)))
        newest[item] = str(label)
    return out


def rechecks_to_ask(
    ctx: EngineContext, key: str, population: CloneModel, features: list[str], k: int
) -> list[tuple[str, str, np.ndarray]]:
    """The past answers to ask the donor again among ``k`` questions (how many:
    :func:`twinkit.clone.evolving.recheck_quota`; which:
    :func:`twinkit.clone.evolving.pick_rechecks`): of the answers in the window, the
    newest per item where the donor answered otherwise than the prior, and no recheck of
    it waiting; as (question id, item, features in ``features`` order)."""
    with ctx.store.read() as conn:
        answers = observations.answers_in_order(conn, key)
        asked = clone_queries.asked(conn, key)
        window = donor_window(conn, key)
    rechecks = asked[asked["strategy"] == RECHECK]
    k = recheck_quota(len(asked), len(rechecks), k)
    if k <= 0 or answers.empty:
        return []
    waiting = {
        recheck_base(str(q)) for q in rechecks.loc[rechecks["answered_batch"].isna(), "item_id"]
    }
    times = Counter(recheck_base(str(q)) for q in rechecks["item_id"])
    items, _ = answered_items(answers, asked)
    rows = [json.loads(f) for f in answers["features"]]
    usable = [set(r) == set(features) and all(r[f] is not None for f in features) for r in rows]
    x = np.asarray(
        [[r[f] if ok else 0.0 for f in features] for r, ok in zip(rows, usable, strict=True)],
        dtype=np.float64,
    )
    labels = answers["label"].astype(str).tolist()
    # an answer the prior cannot read counts as one the donor gave as people do
    usual = [
        p if ok else said for p, ok, said in zip(population.predict(x), usable, labels, strict=True)
    ]
    inside = in_window(answers["batch_id"], answers["item_id"], window)
    start = int(np.argmax(inside)) if inside.any() else len(labels)
    picked = [
        j
        for j in pick_rechecks(labels, usual, items, start, k + len(waiting))
        if items[j] not in waiting
    ][:k]
    return [(recheck_id(items[j], times[items[j]] + 1), items[j], x[j]) for j in picked]


def _clone_of(ctx: EngineContext, version: model_versions.ModelVersion) -> CloneModel | None:
    if version.model != CLONE:
        return None
    try:
        return load_clone(ctx, version)
    except (IntegrityError, TwinkitError) as exc:  # a broken artifact: its answers go
        log.warning(
            "agreement stream: v%s of %s not loaded: %s", version.version, version.twin_id, exc
        )
        return None


def _recorded(conn: Conn, key: str) -> list[LedgerEntry]:
    """The ledger entries of the donor changes recorded for the twin, oldest first."""
    return [
        e for e in ledger.events_of(conn, key, [DRIFT_EVENT]) if e.payload.get("stream") == RECHECKS
    ]


def _starts(conn: Conn, key: str) -> list[tuple[int, str]]:
    """``(batch_id, item_id)`` of the first answer of each recorded change, oldest first."""
    return [
        (
            int(e.payload["answers"]["start"]["batch_id"]),
            str(e.payload["answers"]["start"]["item_id"]),
        )
        for e in _recorded(conn, key)
    ]


def record_changes(
    ctx: EngineContext, twin: Twin, detector: str | None, seed: int = 0
) -> tuple[int | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """Replay the twin's recheck stream through ``detector`` (see
    :func:`answer_detector`) and record the changes not recorded before; return (the
    serving version, noted in each entry; every change found; those recorded now)."""
    name = answer_detector(detector)
    with ctx.store.read() as conn:
        answers = observations.answers_in_order(conn, twin.key)
        asked = clone_queries.asked(conn, twin.key)
        head = model_versions.serving(conn, twin.key)
    serving = head.version if head is not None else None
    found: list[dict[str, Any]] = []
    for change in recheck_changes(recheck_stream(answers, asked), name, seed):
        at, start = answers.iloc[change.at], answers.iloc[change.start]
        found.append(
            {
                "version": serving,
                "stream": RECHECKS,
                "detector": name,
                "time": str(at["arrived"]),
                "window": {"start": str(start["arrived"]), "end": str(at["arrived"])},
                "statistic": {
                    # the share of rechecks the donor answered as before
                    "mean_before": round(1.0 - change.disagreement_before, 4),
                    "mean_after": round(1.0 - change.disagreement_after, 4),
                    "points": change.at + 1 - change.start,
                },
                "answers": {
                    "start": {"batch_id": int(start["batch_id"]), "item_id": str(start["item_id"])},
                    "at": {"batch_id": int(at["batch_id"]), "item_id": str(at["item_id"])},
                },
            }
        )
    new = []
    with ctx.store.write() as conn:
        seen = {
            json.dumps(e.payload.get("answers", {}).get("at"), sort_keys=True)
            for e in _recorded(conn, twin.key)
        }
        for payload in found:
            mark = json.dumps(payload["answers"]["at"], sort_keys=True)
            if mark in seen:
                continue
            ledger.append(conn, DRIFT_EVENT, twin.key, payload)
            seen.add(mark)
            new.append(payload)
    return serving, found, new


def follow(ctx: EngineContext, twin: Twin, seed: int = 0) -> list[dict[str, Any]]:
    """Record the donor's new changes with the twin's detector (the one its monitor policy
    names, else the default), as a clone's fit does before it reads its window; return
    them."""
    with ctx.store.read() as conn:
        chosen = twins.monitor_policy(conn, twin.key)
    return record_changes(ctx, twin, chosen[1] if chosen is not None else None, seed)[2]


def change_starts(ctx: EngineContext, twin: Twin) -> list[tuple[int, str]]:
    """``(batch_id, item_id)`` of the first answer of each recorded change, oldest first."""
    with ctx.store.read() as conn:
        return _starts(conn, twin.key)


def donor_window(conn: Conn, key: str) -> tuple[int, str] | None:
    """Where the answers the clone learns from begin: ``(batch_id, item_id)`` of the
    newest recorded change's first answer; None when no change was recorded."""
    starts = _starts(conn, key)
    return starts[-1] if starts else None


def in_window(
    batch_ids: pd.Series, item_ids: pd.Series, window: tuple[int, str] | None
) -> np.ndarray:
    """Whether each answer (its batch and item id) is at or after the window's start."""
    batches = batch_ids.to_numpy(np.int64)
    if window is None:
        return np.ones(len(batches), dtype=bool)
    items = item_ids.astype(str).to_numpy()
    return np.asarray((batches > window[0]) | ((batches == window[0]) & (items >= window[1])))


def window_mask(ctx: EngineContext, twin: Twin, mine: pd.DataFrame) -> np.ndarray:
    """Which of the twin's decisions (``mine``, with ``item_id``) the clone learns from:
    those in the window (all, when no change of the donor was recorded)."""
    with ctx.store.read() as conn:
        window = donor_window(conn, twin.key)
        if window is None:
            return np.ones(len(mine), dtype=bool)
        order = observations.answers_in_order(conn, twin.key)
    batch_of = dict(zip(order["item_id"], order["batch_id"], strict=True))
    items = mine["item_id"].astype(str)
    return in_window(items.map(batch_of).fillna(-1).astype(np.int64), items, window)


def donor_health(ctx: EngineContext, twin: Twin, recent: int = RECENT_ANSWERS) -> dict[str, Any]:
    """How the decision twin's clones agreed with the donor's answers as they came: over
    the stream, the ``recent`` newest answers and per version; the donor's rechecks (all,
    and the ``recent`` newest: how many they answered as before); the window the clone
    learns from; the donor changes recorded."""
    stream = agreement_stream(ctx, twin)
    with ctx.store.read() as conn:
        serving = model_versions.serving(conn, twin.key)
        window = donor_window(conn, twin.key)
        changes = [{**e.payload, "recorded_at": e.created_at} for e in _recorded(conn, twin.key)]
        answers = observations.answers_in_order(conn, twin.key)
        asked = clone_queries.asked(conn, twin.key)
    inside = in_window(answers["batch_id"], answers["item_id"], window)
    rechecks = recheck_stream(answers, asked)
    per_version = []
    for number in sorted({int(v) for v in stream["version"]}):
        agree = stream.loc[stream["version"] == number, "agree"]
        per_version.append(
            {"version": number, "n": len(agree), "agreement": round(float(agree.mean()), 4)}
        )
    tail = stream.tail(recent)
    return {
        "twin": twin.id,
        "kind": "decision",
        "serving": None
        if serving is None
        else {
            "version": serving.version,
            "model": serving.model,
            "holdout": {
                k: float(v)
                for k, v in serving.metrics.items()
                if k in ("agreement", "kappa", "ece", "prior_agreement") and v is not None
            },
        },
        "answers": len(answers),
        "checked": len(stream),
        "agreement": None if stream.empty else round(float(stream["agree"].mean()), 4),
        "recent": {
            "answers": len(tail),
            "agreement": None if tail.empty else round(float(tail["agree"].mean()), 4),
        },
        "per_version": per_version,
        "rechecks": {
            "answered": len(rechecks),
            "as_before": sum(not r.contradicts for r in rechecks),
            "recent": len(rechecks[-recent:]),
            "recent_as_before": sum(not r.contradicts for r in rechecks[-recent:]),
        },
        "window": {
            "start": None if window is None else {"batch_id": window[0], "item_id": window[1]},
            "answers": int(inside.sum()),
        },
        "alerts": changes,
    }
