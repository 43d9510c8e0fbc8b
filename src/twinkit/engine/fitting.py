"""Fitting and the model registry: fit a version, promote it only if it is not worse, promote
or roll back by hand.

:func:`fit` scores a new version on the twin's recent data (its holdout) and promotes it only
if it is not worse there than the serving version on the same holdout and horizons; every
registration and every promotion or refusal goes into the ledger, with its reason.
:func:`promote` and :func:`rollback` never make a broken artifact serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from twinkit.continual import UPDATE_METHODS
from twinkit.core.digest import signals_digest
from twinkit.core.errors import (
    ForecastInputError,
    PromotionError,
    TwinGoneError,
    TwinkitError,
)
from twinkit.core.twin import Twin, TwinKind, public_id
from twinkit.data.frames import long_to_wide
from twinkit.engine import reads
from twinkit.engine.population import load_population
from twinkit.models.base import Forecaster, forecaster_class, is_neural
from twinkit.models.evaluate import holdout_split, rolling_scores
from twinkit.personalize.select import DEFAULT_CANDIDATES, select_personal_model
from twinkit.store import ledger, model_versions, observations, twins
from twinkit.store.model_versions import ModelVersion, Status
from twinkit.store.timeutil import utc_now_iso

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext
    from twinkit.models.neural import NeuralForecaster

#: ``fit(model=AUTO)`` picks the twin's best candidate on its own validation data
AUTO = "auto"


@dataclass
class FitResult:
    twin_id: str
    version: int
    model: str
    promoted: bool
    reason: str
    metrics: dict[str, float]
    serving_metrics: dict[str, float] | None = None
    selection: dict[str, Any] | None = None  # with model "auto": the candidates' scores

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fit(
    ctx: EngineContext,
    twin_id: str,
    model: str = AUTO,
    target: str | None = None,
    seed: int = 0,
    holdout_frac: float = 0.2,
    horizons: Sequence[int] = (30, 60),
    params: dict[str, Any] | None = None,
    candidates: Sequence[str] | None = None,
    twin_uid: str | None = None,
    update: str | None = None,
    since: pd.Timestamp | str | None = None,
) -> FitResult:
    """Fit a new version on the twin's earlier data, score it on its recent data, and
    promote it only if it is not worse there than the serving version.

    ``update`` brings the serving version up to date instead of fitting anew (continual
    learning, :meth:`~twinkit.models.neural.NeuralForecaster.update`): ``"ewc"`` (EWC and
    replay of the old windows), ``"finetune"`` or ``"scratch"``, with the windows from
    ``since`` on as the new ones; ``"auto"`` is ``"ewc"`` when the serving model is a
    neural forecaster, else a fit of ``model`` (a one-pass model such as ``linear_ar``
    has no weights to keep). The registry records how a version was made. With ``since``
    (updating or not), the holdout is the last ``holdout_frac`` of the data from ``since``
    on, not of all the data: a refit soon after a change learns from most of the new
    regime and is judged on the rest (:func:`~twinkit.models.evaluate.holdout_split`).

    The version is written only if the twin is still the one that was read (its uid, or
    ``twin_uid`` when a job names the twin it was asked for): a twin deleted, and maybe
    created again under its id, while it was fitted raises :class:`TwinGoneError`.

    ``model`` "auto" (the default) chooses among ``candidates`` (default
    :data:`~twinkit.personalize.select.DEFAULT_CANDIDATES`, the population prior
    fine-tuned on the twin among them) by their scores on the twin's own validation
    data; the choice and every candidate's score go into the registry's metrics.
    """
    twin = reads.get_twin(ctx, twin_id)
    twin_id = twin.key  # what the store knows it by
    if twin_uid is not None and twin.uid != twin_uid:
        raise TwinGoneError(f"twin {twin.id!r} was deleted; this fit was for that twin")
    if twin.kind is not TwinKind.STATE:
        raise TwinkitError(f"twin {twin.id!r} is a decision twin; forecasters need a state twin")
    with ctx.store.read() as conn:
        long = observations.read_signals(conn, twin_id)
        current = model_versions.serving(conn, twin_id)
    ctx.time_window.check_stored(twin.id, long["t"].to_numpy())
    frame = long_to_wide(long)
    target = target or reads.default_target(twin, frame)
    start = None if since is None else _utc(since)
    # After a change (``since``), the holdout is the newest share of the new regime's data:
    # the rest of it trains, and the gate judges on the regime the version will serve in.
    split = holdout_split(frame, target, holdout_frac, start) if target in frame else None
    if split is None:
        raise ForecastInputError(f"twin {twin.id!r} has no {target!r} values")
    train = frame.loc[frame.index < split]
    selection_scores: dict[str, Any] = {}
    method, serving_model = _update_method(ctx, twin.id, current, update)
    if method is not None and serving_model is not None and current is not None:
        candidate: Forecaster = serving_model.update(train, since=start, method=method)
        model = current.model
        selection_scores = {
            "update": {
                "method": method,
                "from_version": current.version,
                "since": None if start is None else start.isoformat(),
            }
        }
    elif model == AUTO:
        # The twin's default model: the best candidate on the twin's own validation
        # data inside the training part; the holdout below stays untouched by the choice.
        prior = load_population(ctx.store, ctx.artifacts, owner=twin.owner)
        selection = select_personal_model(
            train,
            target,
            candidates or DEFAULT_CANDIDATES,
            population=prior[1] if prior else None,
            horizons=horizons,
            seed=seed,
        )
        candidate = selection.model
        model = selection.chosen
        selection_scores = {
            "chosen": selection.chosen,
            "population_version": prior[0].version if prior else None,
            "candidates": {k: v["score"] for k, v in selection.scores.items()},
            "failed": selection.failed,
        }
    else:
        candidate = forecaster_class(model)(target=target, seed=seed, **(params or {}))
        candidate.fit(train)
    horizons = [h for h in horizons if h <= candidate.max_horizon_min]
    if not horizons:
        raise ForecastInputError(
            f"{model}: fitted for at most {candidate.max_horizon_min} min ahead; "
            "give horizons within that"
        )
    metrics = rolling_scores(candidate, frame, split, horizons)
    promoted, reason, serving_metrics = _compare(
        ctx, candidate, metrics, current, frame, split, horizons
    )
    params_ = (
        {**candidate.params(), "selection": selection_scores}
        if selection_scores
        else candidate.params()
    )
    version, promoted, reason = register(
        ctx,
        twin,
        current,
        Candidate(model, candidate.get_state(), params_, metrics),
        signals_digest(long.assign(twin_id=twin_id)),
        (promoted, reason),
        {
            "rows_seen": len(long),
            "split": split.isoformat(),
            "data_end": frame.index[-1].isoformat(),
            **({"since": start.isoformat()} if start is not None else {}),
        },
    )
    return FitResult(
        twin.id, version, model, promoted, reason, metrics, serving_metrics, selection_scores
    )


def _utc(moment: pd.Timestamp | str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(moment)
    except ValueError:
        raise TwinkitError(f"since {moment!r} is not an ISO-8601 time") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _update_method(
    ctx: EngineContext, name: str, current: ModelVersion | None, update: str | None
) -> tuple[str | None, NeuralForecaster | None]:
    """How ``update`` brings the serving version up to date: (method, its model), or
    (None, None) for a fit anew."""
    if update is None:
        return None, None
    if update not in ("auto", *UPDATE_METHODS):
        known = ", ".join(("auto", *UPDATE_METHODS))
        raise TwinkitError(f"unknown update {update!r}; known: {known}")
    if current is None:
        if update == "auto":
            return None, None
        raise TwinkitError(f"twin {name!r} has no serving version to update: fit it first")
    serving = reads.load_model(ctx, current)
    if is_neural(serving):
        return ("ewc" if update == "auto" else update), serving
    if update == "auto":
        return None, None
    raise TwinkitError(
        f"twin {name!r}: v{current.version} is {current.model}, which has no weights to "
        "update; continual updates are for neural forecasters (fit it anew: twinkit fit)"
    )


@dataclass(frozen=True)
class Candidate:
    """A fitted model about to be registered: its name, its state (tensors, config), its
    params and its metrics."""

    model: str
    state: tuple[dict[str, Any], dict[str, Any]]
    params: dict[str, Any]
    metrics: dict[str, Any]


def register(
    ctx: EngineContext,
    twin: Twin,
    current: ModelVersion | None,
    candidate: Candidate,
    data_hash: str,
    verdict: tuple[bool, str],
    seen: dict[str, Any],
) -> tuple[int, bool, str]:
    """Save the candidate's artifact and register it as the twin's next version, serving if
    ``verdict`` promotes it and ``current`` still serves (checked in the writing
    transaction, as is the twin's uid), with its ledger entries (``seen``: what data it
    saw). Returns (version, promoted, reason)."""
    promoted, reason = verdict
    tensors, config = candidate.state
    sha = ctx.artifacts.save(tensors, config)
    key = twin.key
    with ctx.store.write() as conn:
        if twins.twin_uid(conn, key) != twin.uid:
            raise TwinGoneError(
                f"twin {twin.id!r} was deleted while it was fitted; nothing was registered"
            )
        version = model_versions.next_version(conn, key)
        entry = ModelVersion(
            twin_id=key,
            version=version,
            model=candidate.model,
            status=Status.SERVING if promoted else Status.REJECTED,
            sha256=sha,
            params=candidate.params,
            metrics=candidate.metrics,
            data_hash=data_hash,
            created_at=utc_now_iso(),
        )
        now_serving = model_versions.serving(conn, key)
        changed = (now_serving.version if now_serving else None) != (
            current.version if current else None
        )
        if promoted and changed:
            promoted = False
            reason = "the serving version changed while this one was fitted; promote by hand"
            entry = replace(entry, status=Status.REJECTED)
        if promoted and current is not None:
            model_versions.set_status(conn, key, current.version, Status.RETIRED)
        model_versions.insert_version(conn, entry)
        ledger.append(
            conn,
            "model_registered",
            key,
            {
                "version": version,
                "model": candidate.model,
                "sha256": sha,
                "params": entry.params,
                "metrics": candidate.metrics,
                "data_hash": data_hash,
                **seen,
            },
        )
        ledger.append(
            conn,
            "model_promoted" if promoted else "promotion_refused",
            key,
            {
                "version": version,
                "previous": current.version if current else None,
                "reason": reason,
                "manual": False,
            },
        )
    return version, promoted, reason


def _compare(
    ctx: EngineContext,
    candidate: Forecaster,
    metrics: dict[str, float],
    current: ModelVersion | None,
    frame: pd.DataFrame,
    split: pd.Timestamp,
    horizons: Sequence[int],
) -> tuple[bool, str, dict[str, float] | None]:
    """Promote or not: both versions scored on the same holdout and the same horizons."""
    if current is None:
        return True, "first version of this twin", None
    try:
        serving = reads.load_model(ctx, current)
    except TwinkitError as exc:
        return True, f"serving v{current.version} cannot be loaded ({exc})", None
    common = [h for h in horizons if h <= serving.max_horizon_min]
    if not common:
        return (
            False,
            f"no horizon that both this version and serving v{current.version} forecast; "
            "promote by hand if intended",
            None,
        )
    mine = metrics if list(common) == list(horizons) else None
    try:
        if mine is None:
            mine = rolling_scores(candidate, frame, split, common)
        theirs = rolling_scores(serving, frame, split, common)
    except ForecastInputError as exc:
        return True, f"serving v{current.version} cannot be scored on this data ({exc})", None
    on = f"at {', '.join(map(str, common))} min"
    if mine["score"] <= theirs["score"]:
        return (
            True,
            f"holdout RMSE {mine['score']:.4g} {on} is not worse than serving "
            f"v{current.version}'s {theirs['score']:.4g}",
            theirs,
        )
    return (
        False,
        f"holdout RMSE {mine['score']:.4g} {on} is worse than serving "
        f"v{current.version}'s {theirs['score']:.4g}: v{current.version} stays",
        theirs,
    )


def promote(ctx: EngineContext, twin_id: str, version: int) -> None:
    twin_id = reads.get_twin(ctx, twin_id).key
    with ctx.store.write() as conn:
        target = model_versions.get_version(conn, twin_id, version)
        if target is None:
            raise PromotionError(f"twin {public_id(twin_id)!r} has no model version {version}")
        current = model_versions.serving(conn, twin_id)
        if current is not None and current.version == version:
            raise PromotionError(f"version {version} of {public_id(twin_id)!r} is already serving")
        ctx.artifacts.load(target.sha256)  # never promote a broken artifact
        if current is not None:
            model_versions.set_status(conn, twin_id, current.version, Status.RETIRED)
        model_versions.set_status(conn, twin_id, version, Status.SERVING)
        ledger.append(
            conn,
            "model_promoted",
            twin_id,
            {
                "version": version,
                "previous": current.version if current else None,
                "reason": "manual promotion",
                "manual": True,
            },
        )


def rollback(
    ctx: EngineContext,
    twin_id: str,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
    from_version: int | None = None,
) -> int:
    """Serve the version that served before the current one; return its number.

    ``reason`` and ``evidence`` (JSON) go into the ledger entry, which then says the
    rollback was automatic; with ``from_version``, only if that version still serves."""
    twin_id = reads.get_twin(ctx, twin_id).key
    with ctx.store.write() as conn:
        current = model_versions.serving(conn, twin_id)
        if from_version is not None and (current is None or current.version != from_version):
            raise PromotionError(
                f"twin {public_id(twin_id)!r}: v{from_version} no longer serves: not rolled back"
            )
        if current is None:
            raise PromotionError(f"twin {public_id(twin_id)!r} has no serving model to roll back")
        served = ledger.serving_history(ledger.entries(conn, twin_id)).get(twin_id, [])
        earlier = [v for v in served[:-1] if v != current.version]
        if not earlier:
            raise PromotionError(
                f"twin {public_id(twin_id)!r}: no earlier version served before v{current.version}"
            )
        previous = model_versions.get_version(conn, twin_id, earlier[-1])
        if previous is None:
            raise PromotionError(
                f"twin {public_id(twin_id)!r}: v{earlier[-1]} is gone from the registry"
            )
        ctx.artifacts.load(previous.sha256)  # never roll back onto a broken artifact
        model_versions.set_status(conn, twin_id, current.version, Status.ROLLED_BACK)
        model_versions.set_status(conn, twin_id, previous.version, Status.SERVING)
        payload: dict[str, Any] = {"from_version": current.version, "to_version": previous.version}
        if reason is not None:
            payload.update(automatic=True, reason=reason, evidence=evidence or {})
        ledger.append(conn, "model_rolled_back", twin_id, payload)
    return previous.version
