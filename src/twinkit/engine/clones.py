"""Decision twins in the store: what to ask the donor next, their answers, the report.

The population prior is trained on every other decision twin's labels over the same
features; the clone is that prior personalised on this twin's labels. Both are trained
on demand (small MLPs, seconds) with a fixed seed, so the same store gives the same
questions. The items a clone may ask about are the ones other twins answered and this
one has not (the pool). Questions are recorded (``clone_queries``) with a ledger entry;
an answer file is accepted only for questions asked, and is ingested like any decisions
batch, in the same transaction that marks the questions answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import select, update

from twinkit.core.digest import features_json
from twinkit.core.errors import Problem, TwinkitError, ValidationError
from twinkit.core.twin import TwinKind
from twinkit.data.importers import DecisionBatch, load_batch
from twinkit.engine.ingest import IngestResult, ingest_batch
from twinkit.store import ledger, observations, tables
from twinkit.store.timeutil import utc_now_iso

if TYPE_CHECKING:
    from twinkit.clone.model import CloneModel
    from twinkit.engine.twin_engine import TwinEngine


def _decision_twin(engine: TwinEngine, twin_id: str) -> None:
    twin = engine.get_twin(twin_id)
    if twin.kind is not TwinKind.DECISION:
        raise TwinkitError(
            f"twin {twin_id!r} is a {twin.kind.value} twin; clones are for decision twins"
        )


def decisions(engine: TwinEngine) -> pd.DataFrame:
    """Every stored decision: ``twin_id, item_id, label`` and one column per feature."""
    with engine.store.read() as conn:
        ids = [t.id for t in engine.list_twins() if t.kind is TwinKind.DECISION]
        raw = observations.stored_decisions(conn, ids)
    if raw.empty:
        return raw.drop(columns=["features"])
    feats = pd.DataFrame([json.loads(f) for f in raw["features"]], index=raw.index)
    return pd.concat([raw.drop(columns=["features"]), feats.astype(np.float64)], axis=1)


def _pending(engine: TwinEngine, twin_id: str) -> pd.DataFrame:
    q = tables.clone_queries.c
    with engine.store.read() as conn:
        rows = conn.execute(
            select(q.item_id, q.strategy, q.asked_at, q.answered_batch, q.features).where(
                q.twin_id == twin_id
            )
        ).all()
    return pd.DataFrame(
        rows, columns=["item_id", "strategy", "asked_at", "answered_batch", "features"]
    )


def clone_models(
    engine: TwinEngine, twin_id: str, seed: int = 0
) -> tuple[CloneModel, CloneModel, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(population, clone, this twin's decisions, the other twins' decisions, the pool,
    feature names)."""
    from twinkit.clone.active import personalize
    from twinkit.eval.clone import feature_columns, train_population

    _decision_twin(engine, twin_id)
    frame = decisions(engine)
    if frame.empty or (frame["twin_id"] != twin_id).sum() == 0:
        raise TwinkitError(
            "a clone's population prior needs other decision twins' labels; none are stored"
        )
    features = feature_columns(frame)
    frame = frame.dropna(subset=features)
    mine = frame[frame["twin_id"] == twin_id]
    others = frame[frame["twin_id"] != twin_id]
    classes = sorted(frame["label"].astype(str).unique())
    population = train_population(others, classes, features, seed)
    asked = set(_pending(engine, twin_id)["item_id"])
    pool = others[~others["item_id"].isin(set(mine["item_id"]) | asked)]
    pool = pool.drop_duplicates("item_id").reset_index(drop=True)
    x_mine = mine[features].to_numpy(dtype=np.float64)
    unlabeled = np.concatenate([x_mine, pool[features].to_numpy(dtype=np.float64)])
    clone = personalize(
        population, x_mine, mine["label"].astype(str).tolist(), unlabeled=unlabeled, seed=seed
    )
    return population, clone, mine, others, pool, features


def ask(
    engine: TwinEngine, twin_id: str, k: int = 10, strategy_name: str = "confusion", seed: int = 0
) -> list[dict[str, Any]]:
    """Choose ``k`` items to ask the donor about, record them, return them."""
    from twinkit.clone.confusion import combined_proba, confusion_labels
    from twinkit.clone.query import Pool, QueryContext, strategy

    if k < 1:
        raise TwinkitError(f"-k must be at least 1, got {k}")
    population, clone, mine, _, pool_frame, features = clone_models(engine, twin_id, seed)
    if pool_frame.empty:
        return []
    pool = Pool(pool_frame[features].to_numpy(dtype=np.float64), pool_frame["item_id"].tolist())
    index = {c: i for i, c in enumerate(population.classes)}
    context = QueryContext(
        pool,
        clone,
        population,
        mine[features].to_numpy(dtype=np.float64),
        np.asarray([index[str(v)] for v in mine["label"]], dtype=np.int64),
    )
    rows = strategy(strategy_name, seed).select(context, k, np.random.default_rng(seed))
    chosen = pool_frame.iloc[rows]
    x = chosen[features].to_numpy(dtype=np.float64)
    proba = combined_proba(clone.predict_proba(x), population.predict_proba(x))
    labels = confusion_labels(proba, population.classes)
    feats = features_json(features, x)
    now = utc_now_iso()
    out = [
        {"item_id": str(item), "confusion": label, "clone_says": said, "features": json.loads(f)}
        for item, label, said, f in zip(
            chosen["item_id"], labels, clone.predict(x), feats, strict=True
        )
    ]
    with engine.store.write() as conn:
        for row, f in zip(out, feats, strict=True):
            conn.execute(
                tables.clone_queries.insert().values(
                    twin_id=twin_id,
                    item_id=row["item_id"],
                    strategy=strategy_name,
                    features=f,
                    asked_at=now,
                    answered_batch=None,
                )
            )
        ledger.append(
            conn,
            "clone_queries",
            twin_id,
            {"strategy": strategy_name, "items": [r["item_id"] for r in out], "seed": seed},
        )
    return out


def answer(engine: TwinEngine, twin_id: str, path: Path | str) -> IngestResult:
    """Ingest the donor's answers to questions asked; any other row rejects the file."""
    _decision_twin(engine, twin_id)
    batch = load_batch(path, twin_id)
    if not isinstance(batch, DecisionBatch):
        raise TwinkitError(f"{path}: answers are decisions (twin_id,item_id,<features>,label)")
    asked = _pending(engine, twin_id)
    waiting = {
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
        if item not in waiting or twin != twin_id:
            problems.append(
                Problem(
                    f"item {item!r} was not asked (or is answered already)",
                    row=int(row),
                    column="item_id",
                )
            )
            continue
        # The answer must be about the item as it was asked, not an edited copy of it.
        expected = waiting[item]
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
        raise ValidationError(str(path), problems)
    q = tables.clone_queries.c
    d = tables.decisions.c
    with engine.store.write() as conn:
        result = ingest_batch(conn, batch, engine.signal_screens, engine.decision_screens)
        # Only answers that were stored count: a quarantined one waits to be released or
        # answered again.
        stored = [
            str(r[0])
            for r in conn.execute(
                select(d.item_id).where(d.twin_id == twin_id).where(d.batch_id == result.batch_id)
            ).all()
        ]
        conn.execute(
            update(tables.clone_queries)
            .where(q.twin_id == twin_id)
            .where(q.item_id.in_(stored))
            .values(answered_batch=result.batch_id)
        )
    return result


def report(engine: TwinEngine, twin_id: str, seed: int = 0) -> dict[str, Any]:
    """The clone against its donor (3-fold cross-validated agreement, clone versus the
    population prior) and the donor's personal confusion zone."""
    from twinkit.clone.active import personalize
    from twinkit.clone.confusion import confusion_zone
    from twinkit.clone.metrics import agreement, fidelity, kappa

    population, clone, mine, others, pool, features = clone_models(engine, twin_id, seed)
    x = mine[features].to_numpy(dtype=np.float64)
    said = mine["label"].astype(str).to_numpy()
    held_clone: list[str] = [""] * len(said)
    order = np.random.default_rng(seed).permutation(len(said))
    for fold in range(3):
        held = order[fold::3]
        kept = np.setdiff1d(order, held)
        fold_clone = personalize(population, x[kept], said[kept].tolist(), seed=seed)
        for row, value in zip(held, fold_clone.predict(x[held]), strict=True):
            held_clone[int(row)] = value
    by_population = population.predict(x) if len(x) else []
    index = {c: i for i, c in enumerate(population.classes)}
    general_ref = population.predict(others[features].to_numpy(dtype=np.float64))
    zone = confusion_zone(
        np.asarray([index[v] for v in by_population], dtype=np.int64),
        np.asarray([index[v] for v in said], dtype=np.int64),
        np.asarray([index[str(v)] for v in others["label"]], dtype=np.int64),
        population.classes,
        reference_general=np.asarray([index[v] for v in general_ref], dtype=np.int64),
        min_support=3,
    )
    asked = _pending(engine, twin_id)
    return {
        "twin": twin_id,
        "labels": len(said),
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
        "seed": seed,
    }


__all__ = ["answer", "ask", "clone_models", "decisions", "report"]
