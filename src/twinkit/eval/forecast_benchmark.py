"""`twinkit eval forecast`: every model against every twin on a temporal split, honestly.

Per twin, the first ``train_frac`` of its target readings train, the rest test. Forecasts
are made from origins in the test period with only the data before each origin. The
population model for a twin is trained on the other folds' twins only, so it never sees
any of that twin's data; personal models see only the twin's training part.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.core.progress import ProgressFn, Steps
from twinkit.data.frames import downsample
from twinkit.data.grid import target_grid
from twinkit.eval.comparators import COMPARATORS
from twinkit.models.base import Forecaster, forecaster_class, registered_forecasters
from twinkit.models.evaluate import rolling_forecasts
from twinkit.models.neural import NeuralForecaster
from twinkit.personalize.meta import meta_learn
from twinkit.personalize.select import DEFAULT_CANDIDATES, select_personal_model

#: the learned model the population prior and the personal ``twinkit`` model are built from
DEFAULT_POPULATION_MODEL = "gru"


@dataclass
class TwinSplit:
    twin_id: str
    frame: pd.DataFrame  # wide, every channel
    split: pd.Timestamp  # first test time
    train: pd.DataFrame
    origins: pd.DatetimeIndex

    def personal(self, cold_start: pd.Timedelta | None) -> pd.DataFrame:
        """What personal models may learn from: the training part, or its first hours."""
        if cold_start is None:
            return self.train
        return self.train.loc[: self.train.index[0] + cold_start]


@dataclass
class Scores:
    """Forecast errors and interval hits, per horizon, for one model and one twin."""

    errors: dict[int, list[float]] = field(default_factory=dict)
    inside: dict[int, list[bool]] = field(default_factory=dict)
    widths: dict[int, list[float]] = field(default_factory=dict)

    def add(self, horizon: int, error: float, inside: bool | None, width: float | None) -> None:
        self.errors.setdefault(horizon, []).append(error)
        if inside is not None and width is not None:
            self.inside.setdefault(horizon, []).append(inside)
            self.widths.setdefault(horizon, []).append(width)

    def extend(self, other: Scores) -> None:
        for h, values in other.errors.items():
            self.errors.setdefault(h, []).extend(values)
        for h, hits in other.inside.items():
            self.inside.setdefault(h, []).extend(hits)
        for h, widths in other.widths.items():
            self.widths.setdefault(h, []).extend(widths)

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for h in sorted(self.errors):
            e = np.asarray(self.errors[h])
            row = {
                "rmse": float(np.sqrt(np.mean(e**2))),
                "mae": float(np.mean(np.abs(e))),
                "n": float(len(e)),
            }
            if self.inside.get(h):
                row["coverage90"] = float(np.mean(self.inside[h]))
                row["width90"] = float(np.mean(self.widths[h]))
            out[str(h)] = row
        return out


def split_twins(
    data: pd.DataFrame, target: str, train_frac: float, max_origins: int, min_readings: int = 50
) -> tuple[list[TwinSplit], dict[str, str]]:
    """Per twin: the wide frame, the split time and the test origins. Skipped twins say why."""
    if not 0.1 <= train_frac <= 0.95:
        raise TwinkitError(f"--train-frac must be between 0.1 and 0.95, got {train_frac}")
    splits, skipped = [], {}
    for twin_id, rows in data.groupby("twin_id", sort=True):
        wide = rows.pivot_table(index="time", columns="channel", values="value", aggfunc="mean")
        wide.index = pd.DatetimeIndex(wide.index)
        wide.columns.name = None
        wide = wide.sort_index()
        if target not in wide.columns or wide[target].notna().sum() < min_readings:
            skipped[str(twin_id)] = f"fewer than {min_readings} readings of {target!r}"
            continue
        times = wide.index[wide[target].notna()]
        split = pd.Timestamp(times[int(len(times) * train_frac)])
        grid = target_grid(wide, target)
        origins = pd.DatetimeIndex(grid.index[(grid.index >= split) & grid.notna().to_numpy()])
        if len(origins) > max_origins:
            origins = origins[np.linspace(0, len(origins) - 1, max_origins).astype(int)]
        splits.append(TwinSplit(str(twin_id), wide, split, wide.loc[wide.index < split], origins))
    return splits, skipped


def score(model: Forecaster, twin: TwinSplit, horizons: Sequence[int]) -> Scores:
    """Forecasts from every test origin, each seeing only the data before it (and the
    covariates known ahead, such as planned meals and insulin)."""
    rolling = rolling_forecasts(
        model, twin.frame, twin.split, horizons, origins=twin.origins, known_ahead=True
    )
    scores = Scores()
    for k, h in enumerate(rolling.horizons):
        for j in np.flatnonzero(np.isfinite(rolling.truth[:, k])):
            truth, lo, hi = rolling.truth[j, k], rolling.lower[j, k], rolling.upper[j, k]
            scores.add(
                h, float(rolling.mean[j, k] - truth), bool(lo <= truth <= hi), float(hi - lo)
            )
    return scores


def _folds(twin_ids: list[str], n_folds: int, seed: int) -> dict[str, int]:
    order = np.random.default_rng(seed).permutation(len(twin_ids))
    return {twin_ids[i]: k % n_folds for k, i in enumerate(order)}


def evaluate_forecasts(
    data: pd.DataFrame,
    target: str,
    horizons: Sequence[int],
    train_frac: float = 0.7,
    seed: int = 0,
    models: Sequence[str] | None = None,
    cold_start: pd.Timedelta | None = None,
    folds: int = 4,
    max_origins: int = 200,
    population_model: str = DEFAULT_POPULATION_MODEL,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    meta: bool = False,
    model_params: dict[str, dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
    every_min: float | None = None,
) -> dict[str, Any]:
    """Evaluate models on long-format ``data``; return the JSON-ready report.

    ``every_min`` first downsamples the data to one reading per that many minutes (as a
    15-minute sensor would record them: :func:`twinkit.data.frames.downsample`).

    ``models`` may name ``persistence``, ``linear_ar``, any registered forecaster (fitted
    per twin from scratch), the outside comparators (``plain_ridge``, ``auto_arima``,
    ``auto_ets``: :mod:`twinkit.eval.comparators`), ``population`` (the
    ``population_model`` trained on other twins only) and ``twinkit``: the twin's default
    personal model, the best of ``candidates`` on the twin's own validation data (as
    ``twinkit fit`` chooses), one of them being the population model fine-tuned on the
    twin. ``meta`` trains the
    population models by Reptile (a starting point for cold starts) instead of pooling.
    """
    started = time.perf_counter()
    if every_min is not None:
        data = downsample(data, every_min)
    horizons = sorted({int(h) for h in horizons})
    max_h = max(horizons)
    wanted = list(models) if models else [*registered_forecasters(), "population", "twinkit"]
    params = model_params or {}
    splits, skipped = split_twins(data, target, train_frac, max_origins)
    if not splits:
        raise TwinkitError(f"no twin has enough {target!r} readings to evaluate")

    def build(name: str) -> Forecaster:
        kwargs = {"target": target, "seed": seed, "max_horizon_min": max_h}
        cls = COMPARATORS.get(name) or forecaster_class(name)
        return cls(**{**kwargs, **params.get(name, {})})

    per_model: dict[str, dict[str, Scores]] = {m: {} for m in wanted}
    chosen: dict[str, str] = {}
    failures: dict[str, dict[str, str]] = {m: {} for m in wanted}
    populations: dict[int, Forecaster] = {}
    fold_of = _folds([s.twin_id for s in splits], min(folds, len(splits)), seed)
    need_population = bool({"population", "twinkit"} & set(wanted))
    say = Steps(len(splits) + (len(set(fold_of.values())) if need_population else 0), progress)
    if need_population:
        for k in sorted(set(fold_of.values())):
            others = [s.train for s in splits if fold_of[s.twin_id] != k]
            if not others:  # a single twin: nobody else to learn from
                continue
            say(f"population model for fold {k + 1}")
            population = build(population_model)
            if meta:
                if not isinstance(population, NeuralForecaster):
                    raise TwinkitError(f"{population_model!r} cannot be meta-learned")
                populations[k] = meta_learn(population, others)
                continue
            fit_population = getattr(population, "fit_population", None)
            if fit_population is None:
                raise TwinkitError(f"{population_model!r} cannot be trained as a population model")
            populations[k] = fit_population(others)

    for twin in splits:
        say(twin.twin_id)
        history = twin.personal(cold_start)
        for name in wanted:
            try:
                if name == "population":
                    if fold_of[twin.twin_id] not in populations:
                        raise TwinkitError("no other twins to learn a population model from")
                    model = populations[fold_of[twin.twin_id]]
                elif name == "twinkit":
                    selection = select_personal_model(
                        history,
                        target,
                        candidates,
                        population=populations.get(fold_of[twin.twin_id]),
                        horizons=horizons,
                        seed=seed,
                    )
                    model = selection.model
                    chosen[twin.twin_id] = selection.chosen
                else:
                    model = build(name).fit(history)
                per_model[name][twin.twin_id] = score(model, twin, horizons)
            except (ForecastInputError, TwinkitError) as exc:
                failures[name][twin.twin_id] = str(exc)

    say.finish()
    report: dict[str, Any] = {"models": {}}
    for name in wanted:
        pooled = Scores()
        for scores in per_model[name].values():
            pooled.extend(scores)
        report["models"][name] = {
            "pooled": pooled.summary(),
            "per_twin": {t: s.summary() for t, s in per_model[name].items()},
            "failed": failures[name],
        }
    if "twinkit" in report["models"]:
        report["models"]["twinkit"]["chosen"] = chosen
    report["data"] = {
        "twins": len(splits),
        "twins_skipped": skipped,
        "rows": len(data),
        "target": target,
        "horizons_min": horizons,
        "train_frac": train_frac,
        "cold_start": None if cold_start is None else str(cold_start),
        "population_model": population_model,
        "population_training": "reptile" if meta else "pooled",
        "twinkit_candidates": list(candidates),
        "folds": len(populations),
        "max_origins_per_twin": max_origins,
        "every_min": every_min,
    }
    report["seed"] = seed
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
