"""Decision twins in the store: what to ask the donor next, their answers, the report.

The population prior is trained on the labels of the owner's other decision twins over the
same features (one owner never sees another's items); the clone is that prior personalised
on this twin's labels. Both are trained
on demand (small MLPs, seconds) with a fixed seed, so the same store gives the same
questions. The items a clone may ask about are the ones other twins answered and this
one has not (the pool). Questions are recorded (``clone_queries``) with a ledger entry;
answers (a file, or labels for question ids) are accepted only for questions asked, and
are ingested like any decisions batch, in the same transaction that marks the questions
answered. :func:`update` is what a service runs after answers: retrain, top up the
questions, and say what the clone now guesses for each.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.core.digest import features_json
from twinkit.core.errors import (
    IntegrityError,
    Problem,
    TwinGoneError,
    TwinkitError,
    ValidationError,
)
from twinkit.core.twin import Twin, TwinKind, public_id
from twinkit.data.importers import DecisionBatch, load_batch, parse_batch
from twinkit.engine import clone_live, reads
from twinkit.engine.clone_artifacts import CLONE, load_clone, load_prior
from twinkit.engine.ingest import IngestResult, ingest_batch, key_twins
from twinkit.store import clone_queries, ledger, model_versions, observations, twins
from twinkit.store.timeutil import utc_now_iso

if TYPE_CHECKING:
    from twinkit.clone.confusion import PairBias
    from twinkit.clone.model import CloneModel
    from twinkit.engine.context import EngineContext


def _decision_twin(ctx: EngineContext, twin_id: str) -> Twin:
    twin = reads.get_twin(ctx, twin_id)
    if twin.kind is not TwinKind.DECISION:
        raise TwinkitError(
            f"twin {twin_id!r} is a {twin.kind.value} twin; clones are for decision twins"
        )
    return twin


def decisions(ctx: EngineContext, owner: str | None = None) -> pd.DataFrame:
    """Every stored decision (of ``owner``'s twins, if given): ``twin_id, item_id, label``
    and one column per feature."""
    with ctx.store.read() as conn:
        ids = [t.key for t in twins.list_twins(conn, owner) if t.kind is TwinKind.DECISION]
        raw = observations.stored_decisions(conn, ids)
    if raw.empty:
        return raw.drop(columns=["features"])
    feats = pd.DataFrame([json.loads(f) for f in raw["features"]], index=raw.index)
    return pd.concat([raw.drop(columns=["features"]), feats.astype(np.float64)], axis=1)


def _pending(ctx: EngineContext, twin_id: str) -> pd.DataFrame:
    """Every question asked of the twin stored under the key ``twin_id``."""
    with ctx.store.read() as conn:
        return clone_queries.asked(conn, twin_id)


def waiting(ctx: EngineContext, twin_id: str) -> list[dict[str, Any]]:
    """The questions asked and not answered yet, oldest first: ``item_id``, ``strategy``,
    ``asked_at`` and ``features`` (name -> value, as asked)."""
    return _waiting(ctx, _decision_twin(ctx, twin_id).key)


def _waiting(ctx: EngineContext, key: str) -> list[dict[str, Any]]:
    asked = _pending(ctx, key)
    asked = asked[asked["answered_batch"].isna()].sort_values(["asked_at", "item_id"])
    return [
        {"item_id": str(i), "strategy": s, "asked_at": a, "features": json.loads(f)}
        for i, s, a, f in zip(
            asked["item_id"], asked["strategy"], asked["asked_at"], asked["features"], strict=True
        )
    ]


def clone_models(
    ctx: EngineContext, twin_id: str, seed: int = 0
) -> tuple[CloneModel, CloneModel, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(population, clone, this twin's decisions, the other twins' decisions, the pool,
    feature names)."""
    return _clone_models(ctx, _decision_twin(ctx, twin_id), seed)


def _clone_models(ctx: EngineContext, twin: Twin, seed: int, use_serving: bool = True) -> Models:
    """The models of :func:`clone_models`: the twin's serving clone version and its prior
    when ``use_serving`` and one decides on the features and labels stored now, else a
    prior and a clone trained here (seeded)."""
    from twinkit.clone.active import personalize
    from twinkit.clone.prior import feature_columns, train_population

    twin_id = twin.key
    frame = decisions(ctx, twin.owner)
    if frame.empty or (frame["twin_id"] != twin_id).sum() == 0:
        raise TwinkitError(
            "a clone's population prior needs other decision twins' labels (twins of the same "
            "owner); none are stored"
        )
    features = feature_columns(frame)
    frame = frame.dropna(subset=features)
    mine = frame[frame["twin_id"] == twin_id]
    others = frame[frame["twin_id"] != twin_id]
    classes = sorted(frame["label"].astype(str).unique())
    asked = set(_pending(ctx, twin_id)["item_id"])
    pool = others[~others["item_id"].isin(set(mine["item_id"]) | asked)]
    pool = pool.drop_duplicates("item_id").reset_index(drop=True)
    served = _serving_models(ctx, twin, features, classes) if use_serving else None
    if served is not None:
        return served[0], served[1], mine, others, pool, features
    population = train_population(others, classes, features, seed, twin.image_shape)
    x_mine = mine[features].to_numpy(dtype=np.float64)
    unlabeled = np.concatenate([x_mine, pool[features].to_numpy(dtype=np.float64)])
    recent = clone_live.window_mask(ctx, twin, mine)  # a donor who changed: who they are now
    clone = personalize(
        population,
        x_mine[recent],
        mine["label"].astype(str).to_numpy()[recent].tolist(),
        unlabeled=unlabeled,
        seed=seed,
    )
    return population, clone, mine, others, pool, features


def _serving_models(
    ctx: EngineContext, twin: Twin, features: list[str], classes: list[str]
) -> tuple[CloneModel, CloneModel] | None:
    """(prior, clone) of the twin's serving clone version, if it decides on these features
    and labels and both artifacts load."""
    with ctx.store.read() as conn:
        head = model_versions.serving(conn, twin.key)
    if head is None or head.model != CLONE or head.params.get("features") != features:
        return None
    if head.params.get("classes") != classes:
        return None
    prior = load_prior(ctx, head)
    try:
        clone = load_clone(ctx, head)
    except (IntegrityError, TwinkitError, ValueError, KeyError):
        return None
    return None if prior is None else (prior, clone)


def ask(
    ctx: EngineContext, twin_id: str, k: int = 10, strategy_name: str = "confusion", seed: int = 0
) -> list[dict[str, Any]]:
    """Choose ``k`` items to ask the donor about, record them, return them."""
    if k < 1:
        raise TwinkitError(f"-k must be at least 1, got {k}")
    twin = _decision_twin(ctx, twin_id)
    models = _clone_models(ctx, twin, seed)
    return _ask_with(ctx, twin.key, models, k, strategy_name, seed, twin.uid)


Models = tuple["CloneModel", "CloneModel", pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]


def _ask_with(
    ctx: EngineContext,
    twin_id: str,
    models: Models,
    k: int,
    strategy_name: str,
    seed: int,
    twin_uid: str,
) -> list[dict[str, Any]]:
    """Record the chosen questions of the twin stored under the key ``twin_id``: some of
    them ask the donor again about past answers in their personal zone (recorded with
    the strategy ``recheck``, see :mod:`twinkit.engine.clone_live`; about 30 % of all the
    twin's questions, :func:`twinkit.clone.evolving.recheck_quota`), the named strategy
    picks the rest from the pool."""
    from twinkit.clone.confusion import combined_proba, confusion_labels
    from twinkit.clone.query import Pool, QueryContext
    from twinkit.clone.strategies import strategy

    population, clone, mine, _, pool_frame, features = models
    again = clone_live.rechecks_to_ask(ctx, twin_id, population, features, k)
    rows = np.zeros(0, dtype=np.int64)
    if not pool_frame.empty and k > len(again):
        pool = Pool(pool_frame[features].to_numpy(dtype=np.float64), pool_frame["item_id"].tolist())
        index = {c: i for i, c in enumerate(population.classes)}
        context = QueryContext(
            pool,
            clone,
            population,
            mine[features].to_numpy(dtype=np.float64),
            np.asarray([index[str(v)] for v in mine["label"]], dtype=np.int64),
        )
        rows = strategy(strategy_name, seed).select(
            context, k - len(again), np.random.default_rng(seed)
        )
    chosen = pool_frame.iloc[rows]
    ids = [str(i) for i in chosen["item_id"]] + [q for q, _, _ in again]
    bases = {q: base for q, base, _ in again}
    x = np.concatenate(
        [
            chosen[features].to_numpy(dtype=np.float64),
            np.asarray([row for _, _, row in again]).reshape(len(again), len(features)),
        ]
    )
    if not ids:
        return []
    proba = combined_proba(clone.predict_proba(x), population.predict_proba(x))
    labels = confusion_labels(proba, population.classes)
    feats = features_json(features, x)
    now = utc_now_iso()
    out = [
        {
            "item_id": item,
            "confusion": label,
            "clone_says": said,
            "features": json.loads(f),
            "recheck": bases.get(item),
        }
        for item, label, said, f in zip(ids, labels, clone.predict(x), feats, strict=True)
    ]
    with ctx.store.write() as conn:
        if twins.twin_uid(conn, twin_id) != twin_uid:
            raise TwinGoneError(
                f"twin {public_id(twin_id)!r} was deleted; its questions were not recorded"
            )
        fresh: set[str] = set()
        for name, is_recheck in ((strategy_name, False), (clone_live.RECHECK, True)):
            questions = [
                (r["item_id"], f)
                for r, f in zip(out, feats, strict=True)
                if (r["recheck"] is not None) is is_recheck
            ]
            if questions:
                fresh |= set(clone_queries.record(conn, twin_id, questions, name, now))
        out = [r for r in out if r["item_id"] in fresh]
        ledger.append(
            conn,
            "clone_queries",
            twin_id,
            {
                "strategy": strategy_name,
                "items": [r["item_id"] for r in out],
                "rechecks": [r["item_id"] for r in out if r["recheck"] is not None],
                "seed": seed,
            },
        )
    return out


def answer(ctx: EngineContext, twin_id: str, path: Path | str) -> IngestResult:
    """Ingest the donor's answers to questions asked; any other row rejects the file."""
    twin = _decision_twin(ctx, twin_id)
    batch = load_batch(path, twin.id)
    if not isinstance(batch, DecisionBatch):
        raise TwinkitError(f"{path}: answers are decisions (twin_id,item_id,<features>,label)")
    return _ingest_answers(ctx, twin, batch, str(path))


def answer_labels(
    ctx: EngineContext, twin_id: str, labels: Sequence[tuple[str, str]], source: str
) -> IngestResult:
    """Ingest the donor's labels for waiting questions, as ``(item_id, label)`` pairs: each
    becomes a decision on the item's features as asked. A label must be one of the
    classes the clone knows (those of the owner's decision twins); any problem rejects all."""
    twin = _decision_twin(ctx, twin_id)
    asked = {q["item_id"]: q["features"] for q in _waiting(ctx, twin.key)}
    frame = decisions(ctx, twin.owner)
    classes = sorted(frame["label"].astype(str).unique()) if not frame.empty else []
    problems: list[Problem] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row, (item, label) in enumerate(labels, start=1):
        if item not in asked or item in seen:
            why = "is answered twice" if item in seen else "was not asked (or is answered already)"
            problems.append(Problem(f"item {item!r} {why}", row=row, column="item_id"))
        elif label not in classes:
            problems.append(
                Problem(f"label {label!r} is not one of {classes}", row=row, column="label")
            )
        else:
            rows.append({"twin_id": twin.id, "item_id": item, **asked[item], "label": label})
        seen.add(item)
    if not labels:
        problems.append(Problem("no labels given"))
    if problems:
        raise ValidationError(source, problems)
    batch = parse_batch(pd.DataFrame(rows), source, twin.id)
    if not isinstance(batch, DecisionBatch):  # pragma: no cover - rows always are decisions
        raise TwinkitError(f"{source}: answers are decisions")
    return _ingest_answers(ctx, twin, batch, source)


def _ingest_answers(
    ctx: EngineContext, the_twin: Twin, batch: DecisionBatch, source: str
) -> IngestResult:
    twin_id = the_twin.key
    asked = _pending(ctx, twin_id)
    open_items = {
        str(item): json.loads(f)
        for item, f, done in zip(
            asked["item_id"], asked["features"], asked["answered_batch"].isna(), strict=True
        )
        if done
    }
    problems: list[Problem] = []
    names = list(batch.feature_names)
    for i, (item, row, twin) in enumerate(
        zip(batch.frame["item_id"], batch.frame["row"], batch.frame["twin_id"], strict=True)
    ):
        if item not in open_items or twin != the_twin.id:
            problems.append(
                Problem(
                    f"item {item!r} was not asked (or is answered already)",
                    row=int(row),
                    column="item_id",
                )
            )
            continue
        # The answer must be about the item as it was asked, not an edited copy of it.
        expected = open_items[item]
        if set(names) != set(expected):
            problems.append(
                Problem(f"features {sorted(names)} differ from those asked {sorted(expected)}")
            )
            break
        for j, name in enumerate(names):
            want, got = expected[name], float(batch.features[i, j])
            if want is None or not np.isclose(got, float(want), rtol=1e-9, atol=1e-9):
                problems.append(
                    Problem(
                        f"{name} is {got}, but the item was asked with {want}",
                        row=int(row),
                        column=name,
                    )
                )
    if problems:
        raise ValidationError(source, problems)
    with ctx.store.write() as conn:
        keyed = key_twins(conn, batch, the_twin.owner)
        result = ingest_batch(conn, keyed, ctx.signal_screens, ctx.decision_screens)
        # Only answers that were stored count: a quarantined one waits to be released or
        # answered again.
        if result.batch_id is not None:
            clone_queries.mark_answered(conn, twin_id, result.batch_id)
    return result


def refresh(
    ctx: EngineContext,
    twin_id: str,
    k: int = 5,
    strategy_name: str = "confusion",
    seed: int = 0,
    twin_uid: str | None = None,
    use_serving: bool = False,
) -> dict[str, Any]:
    """Ask new questions until ``k`` wait, and give the clone's guess on every waiting
    question: ``clone_says``, ``confidence`` (its probability) and ``proba`` per class. The
    clone is the twin's serving version when ``use_serving`` and one decides on the stored
    features and labels (the service's clone job fits one first:
    :func:`twinkit.engine.clone_versions.update_clone`), else one retrained here on the
    donor's labels so far. With ``twin_uid``, only for that twin (a job's): one deleted
    meanwhile is left alone."""
    if k < 1:
        raise TwinkitError(f"k must be at least 1, got {k}")
    twin = _decision_twin(ctx, twin_id)
    uid = twin.uid
    if twin_uid is not None and uid != twin_uid:
        raise TwinGoneError(f"twin {twin.id!r} was deleted; this update was for that twin")
    models = _clone_models(ctx, twin, seed, use_serving=use_serving)
    population, clone, mine, _, _, features = models
    short = k - len(_waiting(ctx, twin.key))
    asked = _ask_with(ctx, twin.key, models, short, strategy_name, seed, uid) if short > 0 else []
    # Questions asked over other features (before the data changed) get no guess.
    pending = [q for q in _waiting(ctx, twin.key) if set(q["features"]) == set(features)]
    guesses: dict[str, dict[str, Any]] = {}
    if pending:
        x = np.asarray(
            [
                [np.nan if q["features"][f] is None else q["features"][f] for f in features]
                for q in pending
            ],
            dtype=np.float64,
        )
        proba = clone.predict_proba(np.nan_to_num(x))
        for q, p in zip(pending, proba, strict=True):
            best = int(np.argmax(p))
            guesses[q["item_id"]] = {
                "clone_says": population.classes[best],
                "confidence": float(p[best]),
                "proba": {c: float(v) for c, v in zip(population.classes, p, strict=True)},
            }
    return {
        "classes": list(population.classes),
        "labels": len(mine),
        "clone_is_prior": clone is population,
        "asked": [r["item_id"] for r in asked],
        "guesses": guesses,
        "k": k,
        "strategy": strategy_name,
        "seed": seed,
    }


def report(
    ctx: EngineContext,
    twin_id: str,
    seed: int = 0,
    truth: Mapping[str, str] | None = None,
    advice_threshold: float = 0.9,
    every: int = 100,
) -> dict[str, Any]:
    """The clone against its donor (3-fold cross-validated agreement, clone versus the
    population prior), the donor's personal confusion zone, the items where the clone
    disagrees with the donor, and, where ``truth`` (item id -> right answer) is known, the
    advice figures: the donor's accuracy alone and if they took the clone's answer when it
    disagrees with at least ``advice_threshold`` confidence. The prior is the serving
    clone version's when there is one (else trained here).

    After a recorded change of the donor (:mod:`twinkit.engine.clone_live`) all of this is
    over the answers since it (the window the clone learns from). ``zone_over_time`` is
    the zone of each stretch of answers in arrival order: split where the donor changed
    and every ``every`` answers."""
    from twinkit.clone.active import personalize
    from twinkit.clone.confusion import confusion_zone
    from twinkit.clone.metrics import advice, agreement, fidelity, kappa

    if every < 1:
        raise TwinkitError(f"every must be at least 1 answer, got {every}")
    twin = _decision_twin(ctx, twin_id)
    population, clone, mine_all, others, pool, features = _clone_models(ctx, twin, seed)
    recent = clone_live.window_mask(ctx, twin, mine_all)
    mine = mine_all[recent]
    x = mine[features].to_numpy(dtype=np.float64)
    said = mine["label"].astype(str).to_numpy()
    held_clone: list[str] = [""] * len(said)
    confidence = np.zeros(len(said))
    order = np.random.default_rng(seed).permutation(len(said))
    for fold in range(3):
        held = order[fold::3]
        kept = np.setdiff1d(order, held)
        fold_clone = personalize(population, x[kept], said[kept].tolist(), seed=seed)
        proba = fold_clone.predict_proba(x[held]) if len(held) else np.zeros((0, 1))
        for row, p in zip(held, proba, strict=True):
            held_clone[int(row)] = fold_clone.classes[int(np.argmax(p))]
            confidence[int(row)] = float(np.max(p))
    items = mine["item_id"].astype(str).tolist()
    differ = [i for i in range(len(said)) if held_clone[i] != said[i]]
    disagreements = {
        "n": len(differ),
        "items": [
            {
                "item_id": items[i],
                "donor": said[i],
                "clone": held_clone[i],
                "confidence": round(confidence[i], 4),
            }
            for i in sorted(differ, key=lambda i: -confidence[i])[:20]
        ],
    }
    known = [i for i in range(len(said)) if truth is not None and items[i] in truth]
    advised = (
        advice(
            [truth[items[i]] for i in known] if truth is not None else [],
            [said[i] for i in known],
            [held_clone[i] for i in known],
            confidence[known],
            advice_threshold,
        )
        if known
        else None
    )
    by_population = population.predict(x) if len(x) else []
    index = {c: i for i, c in enumerate(population.classes)}
    general_ref = np.asarray(
        [index[v] for v in population.predict(others[features].to_numpy(dtype=np.float64))],
        dtype=np.int64,
    )
    general = np.asarray([index[str(v)] for v in others["label"]], dtype=np.int64)

    def zone_of(rows: pd.DataFrame) -> list[PairBias]:
        if rows.empty:
            return []
        return confusion_zone(
            np.asarray(
                [index[v] for v in population.predict(rows[features].to_numpy(np.float64))],
                dtype=np.int64,
            ),
            np.asarray([index[str(v)] for v in rows["label"]], dtype=np.int64),
            general,
            population.classes,
            reference_general=general_ref,
            min_support=3,
        )

    zone = zone_of(mine)
    asked = _pending(ctx, twin.key)
    return {
        "twin": twin.id,
        "labels": len(said),
        "answers_before_window": int((~recent).sum()),
        "zone_over_time": _zone_over_time(ctx, twin, mine_all, zone_of, every),
        "classes": population.classes,
        "questions_asked": len(asked),
        "questions_waiting": int(asked["answered_batch"].isna().sum()),
        "pool": len(pool),
        "clone_is_prior": clone is population,
        "cross_validated": {
            "clone_agreement": agreement(said.tolist(), held_clone) if len(said) else None,
            "clone_kappa": kappa(said.tolist(), held_clone) if len(said) else None,
            "population_agreement": agreement(said.tolist(), list(by_population))
            if len(said)
            else None,
        },
        # Rows: what the donor said; columns: what the cross-validated clone said.
        "fidelity": fidelity(said.tolist(), held_clone, population.classes) if len(said) else None,
        "confusion_zone": [p.to_dict() for p in zone[:10]],
        "disagreements": disagreements,
        "advice": advised,
        "seed": seed,
    }


def _zone_over_time(
    ctx: EngineContext,
    twin: Twin,
    mine: pd.DataFrame,
    zone_of: Callable[[pd.DataFrame], list[PairBias]],
    every: int,
) -> list[dict[str, Any]]:
    """The donor's zone per stretch of answers (see :func:`report`): answers ``[start,
    end)`` in arrival order, their arrival times, whether a change of the donor begins
    it, and the pairs the donor swaps more than people in general there."""
    with ctx.store.read() as conn:
        order = observations.answers_in_order(conn, twin.key)
    order = order[order["item_id"].isin(set(mine["item_id"].astype(str)))].reset_index(drop=True)
    rows = mine.assign(item_id=mine["item_id"].astype(str)).set_index("item_id")
    rows = rows.loc[order["item_id"]]
    at = {
        (int(b), str(i)): n
        for n, (b, i) in enumerate(zip(order["batch_id"], order["item_id"], strict=True))
    }
    starts = sorted({at[w] for w in clone_live.change_starts(ctx, twin) if w in at} - {0})
    cuts = [0, *starts, len(order)]
    out = []
    for a, b in itertools.pairwise(cuts):
        for s in range(a, b, every):
            e = min(s + every, b)
            pairs = [p for p in zone_of(rows.iloc[s:e]) if p.excess > 0]
            out.append(
                {
                    "answers": [s, e],
                    "from": str(order["arrived"].iloc[s]),
                    "to": str(order["arrived"].iloc[e - 1]),
                    "donor_changed": s in starts,
                    "zone": [p.to_dict() for p in pairs[:3]],
                }
            )
    return out


__all__ = [
    "answer",
    "answer_labels",
    "ask",
    "clone_models",
    "decisions",
    "refresh",
    "report",
    "waiting",
]
