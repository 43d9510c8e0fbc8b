"""Choose a twin's personal model: every candidate scored on the twin's own recent data."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.models.base import QUANTILE_LEVELS, Forecaster, forecaster_class
from twinkit.models.ensemble import Ensemble, combine
from twinkit.models.evaluate import RollingForecasts, holdout_split, rolling_forecasts

#: a candidate name that means "the population model, fine-tuned on this twin"
PERSONALIZED = "personalized"
#: a candidate name that means "the population model as it is"
POPULATION = "population"
#: a candidate name that means "the other candidates, combined"
ENSEMBLE = "ensemble"
#: fewer validation forecasts per horizon than this and a winner keeps its own intervals
MIN_CALIBRATION = 100
#: the population prior stays while the twin's validation forecasts are fewer than
#: :data:`MIN_CALIBRATION` and span less than this: too little of the twin's own data to
#: judge by (a new twin's first day and a half); a 15-minute sensor reaches it with fewer
#: forecasts than a 5-minute one. From there on, only a win beyond noise moves the prior.
MIN_CHOICE_SPAN = pd.Timedelta(hours=12)
#: what ``twinkit fit`` weighs by default
DEFAULT_CANDIDATES = ("linear_ar", POPULATION, PERSONALIZED, ENSEMBLE)


@dataclass(frozen=True)
class Candidate:
    """How to build one candidate: a registered forecaster (with params) or the prior."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Selection:
    """The chosen model, refitted on all the twin's data, and every candidate's score."""

    model: Forecaster
    chosen: str
    scores: dict[str, dict[str, float]]
    failed: dict[str, str]


def _build(
    candidate: Candidate,
    history: pd.DataFrame,
    population: Forecaster | None,
    target: str,
    seed: int,
    max_horizon_min: int,
) -> Forecaster:
    if candidate.name == POPULATION:
        if population is None:
            raise TwinkitError("no population model (fit one first)")
        return population
    if candidate.name == PERSONALIZED:
        personalize = getattr(population, "personalize", None)
        if population is None or personalize is None:
            raise TwinkitError("no population model to personalise (fit one first)")
        model: Forecaster = personalize(history)
        return model
    kwargs = {"target": target, "seed": seed, "max_horizon_min": max_horizon_min}
    return forecaster_class(candidate.name)(**{**kwargs, **candidate.params}).fit(history)


def select_personal_model(
    history: pd.DataFrame,
    target: str,
    candidates: Sequence[Candidate | str] = DEFAULT_CANDIDATES,
    population: Forecaster | None = None,
    horizons: Sequence[int] = (30, 60),
    seed: int = 0,
    validation_frac: float = 0.2,
    max_origins: int = 150,
    max_horizon_min: int = 120,
    prefer_prior: bool = True,
) -> Selection:
    """Fit each candidate on the twin's earlier data, score it on the later part, pick the
    lowest mean RMSE over ``horizons``, and refit the winner on all of ``history``, its
    quantiles recalibrated (split conformal) on the validation residuals.

    The candidate ``ensemble`` is the other candidates combined: weighted by their inverse
    validation MSE, with split-conformal quantiles from the same validation forecasts (so
    its validation coverage is in-sample; its RMSE depends only on the weights). A
    candidate that cannot be built (too little data, no population model) is reported in
    ``failed`` and left out; if none can, :class:`ForecastInputError` says why.

    With ``prefer_prior``, the population model stays the choice unless the best
    candidate beats it by more than one standard error of their paired per-origin
    errors, and whenever fewer than :data:`MIN_CALIBRATION` validation forecasts over
    less than :data:`MIN_CHOICE_SPAN` could be scored: a short validation period (a new
    twin's first day) cannot tell small differences from noise, and then the prior
    learned from many people is the safer bet.
    """
    specs = [c if isinstance(c, Candidate) else Candidate(c) for c in candidates]
    singles = [s for s in specs if s.name != ENSEMBLE]
    max_h = max(max_horizon_min, *horizons)
    split = holdout_split(history, target, validation_frac)
    early = history.loc[history.index < split]
    scores: dict[str, dict[str, float]] = {}
    failed: dict[str, str] = {}
    forecasts: dict[str, RollingForecasts] = {}
    scored: list[int] = list(horizons)
    for spec in singles:
        try:
            model = _build(spec, early, population, target, seed, max_h)
            step = model._check_fitted()
            # Every grid step the model can reach: the ensemble's quantiles need them all.
            reach = min(max_h, model.max_horizon_min)
            steps = [round(step * k) for k in range(1, round(reach / step) + 1)]
            scored = [min(steps, key=lambda m: abs(m - h)) for h in horizons]
            forecasts[spec.name] = rolling_forecasts(model, history, split, steps, max_origins)
            scores[spec.name] = forecasts[spec.name].scores(scored)
        except (ForecastInputError, TwinkitError) as exc:
            failed[spec.name] = str(exc)
    combination = None
    if any(s.name == ENSEMBLE for s in specs):
        try:
            combination = _combine(forecasts)
            scores[ENSEMBLE] = combination[2].scores(scored)
        except ForecastInputError as exc:
            failed[ENSEMBLE] = str(exc)
    if not scores:
        detail = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise ForecastInputError(f"no candidate model could be fitted on this twin ({detail})")
    chosen = min(scores, key=lambda name: scores[name]["score"])
    rolling_of = dict(forecasts)
    if combination is not None:
        rolling_of[ENSEMBLE] = combination[2]
    if chosen != POPULATION and POPULATION in rolling_of and prefer_prior:
        if not _enough_to_choose(rolling_of[chosen]):
            # Too little of the twin's own data to judge by (its first day or so): the
            # prior, learned from many people, stays until the twin's data can outvote it.
            chosen = POPULATION
        else:
            chosen = _settle(chosen, scores, rolling_of, scored)
    if chosen == ENSEMBLE and combination is not None:
        names, weights, _, quantiles = combination
    else:
        # One model, recalibrated all the same: its validation residuals set its quantiles
        # (split conformal), since a learned model's own intervals are rarely honest.
        names, weights = [chosen], np.ones(1)
        rolling = forecasts[chosen]
        scored_per_step = _validation_size(rolling)
        try:
            if scored_per_step < MIN_CALIBRATION:
                raise ForecastInputError(
                    f"{scored_per_step} validation forecasts per horizon; conformal "
                    f"recalibration needs {MIN_CALIBRATION}"
                )
            quantiles = combine(rolling.mean[None], rolling.truth)[1]
        except ForecastInputError as exc:
            # Too few validation forecasts to calibrate on (a new twin's first day): the
            # model's own intervals, learned on far more data, are the better guess.
            failed["recalibration"] = str(exc)
            spec = next(s for s in singles if s.name == chosen)
            alone = _build(spec, history, population, target, seed, max_h)
            return Selection(alone, chosen, scores, failed)
    members = [
        _build(next(s for s in singles if s.name == n), history, population, target, seed, max_h)
        for n in names
    ]
    final: Forecaster = Ensemble.from_fitted(
        members, weights, quantiles, members[0]._check_fitted()
    )
    return Selection(final, chosen, scores, failed)


def _settle(
    best: str,
    scores: dict[str, dict[str, float]],
    rolling: dict[str, RollingForecasts],
    horizons: Sequence[int],
) -> str:
    """The prior unless ``best`` beats it beyond noise; but when the combination of the
    prior with the personal models scored better than the prior alone, the combination:
    with no single personal model clearly better, averaging what is common with what is
    personal hedges between them (forecasts of equal skill averaged beat either)."""
    chosen = _prefer_prior(best, rolling, horizons)
    ensemble = scores.get(ENSEMBLE, {}).get("score", np.inf)
    if chosen == POPULATION and ensemble < scores[POPULATION].get("score", np.inf):
        return ENSEMBLE
    return chosen


def _enough_to_choose(rolling: RollingForecasts) -> bool:
    """Whether the validation forecasts are enough to let the twin's data outvote the
    prior: :data:`MIN_CALIBRATION` of them, or (fewer, from a sparser sensor) spanning
    :data:`MIN_CHOICE_SPAN`."""
    if _validation_size(rolling) >= MIN_CALIBRATION:
        return True
    origins = rolling.origins
    return len(origins) > 1 and (origins[-1] - origins[0]) >= MIN_CHOICE_SPAN


def _validation_size(rolling: RollingForecasts) -> int:
    """How many validation forecasts were scored at the worst-covered horizon."""
    counts = np.isfinite(rolling.truth).sum(axis=0)
    return int(counts.min()) if counts.size else 0


def _prefer_prior(best: str, rolling: dict[str, RollingForecasts], horizons: Sequence[int]) -> str:
    """``best``, if it beats the population model by more than one standard error."""
    mine, prior = rolling[best], rolling[POPULATION]
    if not mine.origins.equals(prior.origins):
        return best
    columns = [
        mine.horizons.index(h) for h in horizons if h in mine.horizons and h in prior.horizons
    ]
    if not columns:
        return best
    with warnings.catch_warnings():  # origins with nothing observed give NaN, as they should
        warnings.simplefilter("ignore", RuntimeWarning)
        loss_best = np.nanmean((mine.mean[:, columns] - mine.truth[:, columns]) ** 2, axis=1)
        loss_prior = np.nanmean((prior.mean[:, columns] - prior.truth[:, columns]) ** 2, axis=1)
    gain = (loss_prior - loss_best)[np.isfinite(loss_prior - loss_best)]
    if len(gain) < 2:
        return POPULATION
    standard_error = gain.std(ddof=1) / np.sqrt(len(gain))
    return best if gain.mean() > standard_error else POPULATION


def _combine(
    forecasts: dict[str, RollingForecasts],
) -> tuple[list[str], np.ndarray, RollingForecasts, np.ndarray]:
    """The candidates' validation forecasts combined into an ensemble's."""
    # Persistence joins only when it is needed to make a pair: it rarely adds skill.
    names = [n for n in forecasts if n != "persistence"]
    if len(names) < 2:
        names = list(forecasts)
    if len(names) < 2:
        raise ForecastInputError("an ensemble needs at least two fitted candidates")
    first = forecasts[names[0]]
    if not all(forecasts[n].origins.equals(first.origins) for n in names):
        raise ForecastInputError("candidates were scored at different origins")
    # Members may reach different horizons; the ensemble forecasts as far as all of them.
    n_steps = min(len(forecasts[n].horizons) for n in names)
    medians = np.stack([forecasts[n].mean[:, :n_steps] for n in names])
    truth = first.truth[:, :n_steps]
    weights, quantiles, combined = combine(medians, truth)
    lower = combined + quantiles[QUANTILE_LEVELS.index(0.05)][None, :]
    upper = combined + quantiles[QUANTILE_LEVELS.index(0.95)][None, :]
    rolling = RollingForecasts(
        first.origins, first.horizons[:n_steps], combined, lower, upper, truth
    )
    return names, weights, rolling, quantiles
