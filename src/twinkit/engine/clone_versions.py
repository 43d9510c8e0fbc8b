"""A decision twin's clone as a versioned model: fit and register it, and ask it to decide.

``fit_clone`` trains the clone as ``clone queries`` does (a population prior on the owner's
other decision twins' labels, personalised on this donor's), scores it on the donor's
held-out answers and registers a version (the clone's safetensors artifact, with the
prior's artifact and the donor's confusion zone in its params), promoted only if its
held-out agreement with the donor is not worse than the serving version's on the same
items. Which answers are held out is fixed per item (a hash of its id, a recheck's with
its item's), so a version was never trained on the items a later fit scores it on. After
a recorded change of the donor (:mod:`twinkit.engine.clone_live`) only the answers since
it train and score.

``decide`` answers from the serving version: per item, the clone's label and probability,
and whether the item lies in the donor's confusion zone: people in general (the prior)
answer some class ``a`` there, and the donor answers ``b`` where people answer ``a`` more
often than people do (a pair of the zone, with a positive excess, from the labels the
version was trained on), so the clone's answer there is the one to check.
A serving artifact that is broken falls over to the versions that served before it, then
to the population prior, flagged ``degraded``, as forecasts do.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.clone.confusion import confusion_zone
from twinkit.core.digest import decisions_digest, features_json
from twinkit.core.errors import (
    IntegrityError,
    NotFoundError,
    Problem,
    TwinGoneError,
    TwinkitError,
    ValidationError,
)
from twinkit.core.twin import Twin, TwinKind
from twinkit.engine import clone_live, clone_questions, reads
from twinkit.engine.clone_artifacts import CLONE, load_clone, load_prior
from twinkit.engine.fitting import Candidate, FitResult, register
from twinkit.engine.serving import earlier_versions, record_failover
from twinkit.store import model_versions
from twinkit.store.model_versions import ModelVersion

if TYPE_CHECKING:
    from twinkit.clone.model import CloneModel
    from twinkit.engine.context import EngineContext

#: one answer in this many is held out to score versions (by a hash of the item's id)
HOLDOUT_EVERY = 3


def held_out(items: Sequence[str]) -> np.ndarray:
    """Whether each item is held out: fixed per item id, whatever else is stored.

    >>> held_out([f"i{n}" for n in range(9)]).tolist()
    [False, True, False, True, True, True, False, True, False]
    """
    return np.asarray(
        [int(hashlib.sha256(str(i).encode()).hexdigest(), 16) % HOLDOUT_EVERY == 0 for i in items],
        dtype=bool,
    )


def _decision_twin(ctx: EngineContext, twin_id: str) -> Twin:
    twin = reads.get_twin(ctx, twin_id)
    if twin.kind is not TwinKind.DECISION:
        raise TwinkitError(f"twin {twin.id!r} is a state twin: only decision twins decide")
    return twin


def fit_clone(
    ctx: EngineContext, twin_id: str, seed: int = 0, twin_uid: str | None = None
) -> FitResult:
    """Train, score and register a new version of the decision twin's clone (see the
    module); with ``twin_uid``, only if the twin is still that one."""
    fitted = _fit_clone(ctx, twin_id, seed, twin_uid, only_if_new=False)
    assert fitted is not None  # only_if_new=False always fits
    return fitted


def _fit_clone(
    ctx: EngineContext, twin_id: str, seed: int, twin_uid: str | None, only_if_new: bool
) -> FitResult | None:
    """:func:`fit_clone`; with ``only_if_new``, None (and nothing trained) when the twin's
    newest version was fitted on the same answers."""
    from twinkit.clone.active import personalize
    from twinkit.clone.prior import feature_columns, train_population

    twin = _decision_twin(ctx, twin_id)
    if twin_uid is not None and twin.uid != twin_uid:
        raise TwinGoneError(f"twin {twin.id!r} was deleted; this fit was for that twin")
    frame = clone_questions.decisions(ctx, twin.owner)
    mine_all = frame[frame["twin_id"] == twin.key] if not frame.empty else frame
    if frame.empty or mine_all.empty:
        raise TwinkitError(f"twin {twin.id!r} has no decisions yet: ingest some first")
    if (frame["twin_id"] != twin.key).sum() == 0:
        raise TwinkitError(
            "a clone's population prior needs other decision twins' labels (twins of the "
            "same owner); none are stored"
        )
    features = feature_columns(frame)
    frame = frame.dropna(subset=features)
    mine_all = frame[frame["twin_id"] == twin.key].sort_values("item_id", kind="stable")
    # After a change of the donor (looked for now), only their answers since it teach and
    # score.
    clone_live.follow(ctx, twin, seed)
    recent = clone_live.window_mask(ctx, twin, mine_all)
    mine = mine_all[recent]
    if mine.empty:
        raise TwinkitError(f"twin {twin.id!r} has no answers since its donor's last change")
    data_hash = _data_hash(mine, features)
    if only_if_new:
        with ctx.store.read() as conn:
            newest = model_versions.versions(conn, twin.key)[-1:]
        if newest and newest[0].model == CLONE and newest[0].data_hash == data_hash:
            return None
    others = frame[frame["twin_id"] != twin.key]
    classes = sorted(frame["label"].astype(str).unique())
    population = train_population(others, classes, features, seed, twin.image_shape)
    # a recheck (ITEM~N) is held out with its item: the same features on both sides of
    # the split would score the clone on what it was trained on
    held = held_out([clone_live.recheck_base(str(i)) for i in mine["item_id"]])
    x = mine[features].to_numpy(dtype=np.float64)
    said = mine["label"].astype(str).to_numpy()
    train_x, train_said = x[~held], said[~held]
    pool = others[~others["item_id"].isin(set(mine_all["item_id"]))].drop_duplicates("item_id")
    unlabeled = np.concatenate(
        [
            train_x,
            mine_all[~recent][features].to_numpy(dtype=np.float64),
            pool[features].to_numpy(dtype=np.float64),
        ]
    )
    clone = personalize(population, train_x, train_said.tolist(), unlabeled=unlabeled, seed=seed)
    metrics = _scores(clone, population, x[held], said[held])
    metrics["labels_trained"] = int((~held).sum())
    zone = _zone(population, train_x, train_said, others, features)
    with ctx.store.read() as conn:
        current = model_versions.serving(conn, twin.key)
    verdict, serving_metrics = _compare(ctx, metrics, current, features, x[held], said[held])
    tensors, config = clone.get_state()
    prior_sha = ctx.artifacts.save(*population.get_state())
    params = {
        "features": features,
        "classes": classes,
        "seed": seed,
        "prior_sha256": prior_sha,
        "clone_is_prior": clone is population,
        "confusion_zone": zone,
        "answers_before_window": int((~recent).sum()),
    }
    version, promoted, reason = register(
        ctx,
        twin,
        current,
        Candidate(CLONE, (tensors, {**config, "features": features}), params, metrics),
        data_hash,
        verdict,
        {"labels_seen": len(mine), "held_out": int(held.sum())},
    )
    return FitResult(twin.id, version, CLONE, promoted, reason, metrics, serving_metrics)


def update_clone(
    ctx: EngineContext,
    twin_id: str,
    k: int = 5,
    strategy_name: str = "confusion",
    seed: int = 0,
    twin_uid: str | None = None,
) -> dict[str, Any]:
    """What the service's clone job runs when the donor has answered (or asks for
    questions): a new clone version on every answer so far, registered and promoted only
    through the gate as :func:`fit_clone` does (none when the newest version saw the same
    answers, or the donor has none yet), then the questions topped up to ``k`` and guessed
    by the serving version (:func:`twinkit.engine.clone_questions.refresh`; the population
    prior while there is no version). The result is refresh's, with ``fit``: the new
    version's number, whether it was promoted and why (None when none was fitted)."""
    twin = _decision_twin(ctx, twin_id)
    if twin_uid is not None and twin.uid != twin_uid:
        raise TwinGoneError(f"twin {twin.id!r} was deleted; this update was for that twin")
    fitted = None
    frame = clone_questions.decisions(ctx, twin.owner)
    if not frame.empty and (frame["twin_id"] == twin.key).any():
        fitted = _fit_clone(ctx, twin.key, seed, twin_uid, only_if_new=True)
    result = clone_questions.refresh(
        ctx, twin.key, k, strategy_name, seed, twin_uid, use_serving=True
    )
    result["fit"] = (
        None
        if fitted is None
        else {"version": fitted.version, "promoted": fitted.promoted, "reason": fitted.reason}
    )
    return result


def _data_hash(mine: pd.DataFrame, features: list[str]) -> str:
    rows = pd.DataFrame(
        {
            "twin_id": mine["twin_id"].astype(str),
            "item_id": mine["item_id"].astype(str),
            "features": features_json(features, mine[features].to_numpy(dtype=np.float64)),
            "label": mine["label"].astype(str),
        }
    )
    return decisions_digest(rows)


def _scores(
    clone: CloneModel, population: CloneModel, x: np.ndarray, said: np.ndarray
) -> dict[str, Any]:
    """Held-out agreement with the donor, Cohen's kappa, calibration (ECE), and the
    prior's agreement as a baseline; None where nothing is held out."""
    from twinkit.clone.metrics import agreement, kappa
    from twinkit.clone.model import expected_calibration_error

    if len(said) == 0:
        return {"agreement": None, "kappa": None, "ece": None, "prior_agreement": None, "held": 0}
    answered = clone.predict(x)
    index = {c: i for i, c in enumerate(clone.classes)}
    known = np.asarray([s in index for s in said])
    ece = (
        expected_calibration_error(
            clone.predict_proba(x[known]), np.asarray([index[s] for s in said[known]])
        )
        if known.any()
        else None
    )
    return {
        "agreement": round(agreement(said.tolist(), answered), 4),
        "kappa": round(kappa(said.tolist(), answered), 4),
        "ece": None if ece is None else round(ece, 4),
        "prior_agreement": round(agreement(said.tolist(), population.predict(x)), 4),
        "held": len(said),
    }


def _zone(
    population: CloneModel,
    x: np.ndarray,
    said: np.ndarray,
    others: pd.DataFrame,
    features: list[str],
) -> list[dict[str, object]]:
    """The pairs the donor swaps more (or less) than people in general, from the labels
    the clone was trained on (as ``clone report`` computes it)."""
    if len(said) == 0:
        return []
    index = {c: i for i, c in enumerate(population.classes)}
    reference = np.asarray([index[v] for v in population.predict(x)], dtype=np.int64)
    person = np.asarray([index.get(str(v), 0) for v in said], dtype=np.int64)
    other_x = others[features].to_numpy(dtype=np.float64)
    general = np.asarray([index[str(v)] for v in others["label"]], dtype=np.int64)
    general_ref = np.asarray([index[v] for v in population.predict(other_x)], dtype=np.int64)
    pairs = confusion_zone(
        reference, person, general, population.classes, reference_general=general_ref, min_support=3
    )
    return [p.to_dict() for p in pairs]


def _compare(
    ctx: EngineContext,
    metrics: dict[str, Any],
    current: ModelVersion | None,
    features: list[str],
    x: np.ndarray,
    said: np.ndarray,
) -> tuple[tuple[bool, str], dict[str, Any] | None]:
    """Promote or not: both versions scored on the same held-out answers."""
    from twinkit.clone.metrics import agreement

    if current is None:
        return (True, "first version of this twin"), None
    if current.model != CLONE or current.params.get("features") != features:
        return (True, f"serving v{current.version} does not decide on these features"), None
    try:
        serving = load_clone(ctx, current)
    except (IntegrityError, TwinkitError) as exc:
        return (True, f"serving v{current.version} cannot be loaded ({exc})"), None
    if metrics["agreement"] is None:
        return (False, f"no held-out answers to score on: v{current.version} stays"), None
    theirs = {"agreement": round(agreement(said.tolist(), serving.predict(x)), 4)}
    mine = float(metrics["agreement"])
    if mine >= theirs["agreement"]:
        return (
            True,
            f"held-out agreement {mine:.4g} is not worse than serving v{current.version}'s "
            f"{theirs['agreement']:.4g}",
        ), theirs
    return (
        False,
        f"held-out agreement {mine:.4g} is worse than serving v{current.version}'s "
        f"{theirs['agreement']:.4g}: v{current.version} stays",
    ), theirs


@dataclass
class Decision:
    """What the clone would choose for one item."""

    item_id: str
    label: str
    probability: float
    proba: dict[str, float]
    in_confusion_zone: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Decisions:
    """The answers of one version (or a fallback) for a batch of items."""

    twin_id: str
    version: int | None
    source: str  # "twin" or "population"
    degraded: bool
    degraded_reason: str | None
    features: list[str]
    decisions: list[Decision] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["decisions"] = [d.to_dict() for d in self.decisions]
        return out


def item_matrix(items: pd.DataFrame, features: Sequence[str], source: str) -> np.ndarray:
    """The items' features in the model's order, as floats; any problem (a missing or
    extra feature column, a value that is not a finite number, a repeated or empty item
    id) rejects them all, naming the item row and column."""
    problems: list[Problem] = []
    if "item_id" not in items.columns:
        problems.append(Problem("no item_id column", column="item_id"))
    missing = [f for f in features if f not in items.columns]
    extra = [c for c in items.columns if c not in (*features, "item_id", "twin_id", "label")]
    if missing:
        problems.append(
            Problem(
                f"missing feature column(s) {missing}; the clone decides on {list(features)}",
                column=missing[0],
            )
        )
    if extra:
        problems.append(
            Problem(
                f"unknown column(s) {extra}: the clone decides on {list(features)}", column=extra[0]
            )
        )
    if problems:
        raise ValidationError(source, problems)
    ids = items["item_id"].astype(str)
    for row, (item, dup) in enumerate(zip(ids, ids.duplicated(), strict=True), start=1):
        if not item.strip() or item == "nan":
            problems.append(Problem("empty item_id", row=row, column="item_id"))
        elif dup:
            problems.append(Problem(f"item {item!r} appears twice", row=row, column="item_id"))
    out = np.empty((len(items), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        for row, value in enumerate(items[name].tolist(), start=1):
            number = _number(value)
            if number is None:
                problems.append(
                    Problem(
                        f"item {ids.iloc[row - 1]!r}: {value!r} is not a finite number",
                        row=row,
                        column=name,
                    )
                )
            else:
                out[row - 1, j] = number
    if problems:
        raise ValidationError(source, problems)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decide(
    ctx: EngineContext, twin_id: str, items: pd.DataFrame, source: str = "<items>"
) -> Decisions:
    """What the decision twin's serving clone would choose for each item (``item_id`` and
    the features it was trained on), with failover (see the module)."""
    twin = _decision_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        head = model_versions.serving(conn, twin.key)
    if head is None:
        raise NotFoundError(f"twin {twin.id!r} has no serving model: run twinkit fit {twin_id}")
    features = [str(f) for f in head.params.get("features", [])]
    x = item_matrix(items, features, source)
    ids = items["item_id"].astype(str).tolist()
    prior = load_prior(ctx, head)
    try:
        clone = load_clone(ctx, head)
    except (IntegrityError, TwinkitError, ValueError, KeyError) as exc:
        problem = f"serving v{head.version} (clone): its artifact is missing or broken ({exc})"
        return _failover(ctx, twin, head, prior, x, ids, features, problem)
    return _answers(twin, head.version, "twin", None, clone, prior, head, x, ids, features)


def _answers(
    twin: Twin,
    version: int | None,
    source: str,
    why: str | None,
    clone: CloneModel,
    prior: CloneModel | None,
    zone_of: ModelVersion,
    x: np.ndarray,
    ids: list[str],
    features: list[str],
) -> Decisions:
    proba = clone.predict_proba(x)
    prior_proba = prior.predict_proba(x) if prior is not None else proba
    swapped = {
        str(p["expected"])
        for p in zone_of.params.get("confusion_zone", [])
        if float(p.get("excess", 0.0)) > 0
    }
    out = Decisions(twin.id, version, source, why is not None, why, features)
    for i, item in enumerate(ids):
        best = int(np.argmax(proba[i]))
        expected = clone.classes[int(np.argmax(prior_proba[i]))]
        out.decisions.append(
            Decision(
                item_id=item,
                label=clone.classes[best],
                probability=round(float(proba[i, best]), 4),
                proba={c: round(float(v), 4) for c, v in zip(clone.classes, proba[i], strict=True)},
                in_confusion_zone=expected in swapped,
            )
        )
    return out


def _failover(
    ctx: EngineContext,
    twin: Twin,
    broken: ModelVersion,
    prior: CloneModel | None,
    x: np.ndarray,
    ids: list[str],
    features: list[str],
    problem: str,
) -> Decisions:
    for version in earlier_versions(ctx, broken):
        if version.params.get("features") != features:
            continue
        try:
            clone = load_clone(ctx, version)
        except (IntegrityError, TwinkitError, ValueError, KeyError):
            continue
        why = f"{problem}; answered by v{version.version}, which served before it"
        record_failover(ctx, broken, problem, {"source": "twin", "version": version.version})
        return _answers(twin, version.version, "twin", why, clone, prior, broken, x, ids, features)
    if prior is not None:
        why = f"{problem}; no earlier version can answer: answered by the population prior"
        record_failover(ctx, broken, problem, {"source": "population"})
        return _answers(twin, None, "population", why, prior, prior, broken, x, ids, features)
    record_failover(ctx, broken, problem, None)
    raise IntegrityError(
        f"twin {twin.id!r}: {problem}, and neither an earlier version nor the population "
        "prior can answer: fit the twin again"
    )
