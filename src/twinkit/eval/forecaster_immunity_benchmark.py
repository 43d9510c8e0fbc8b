"""The forecaster half of the immunity benchmark: tampered histories, before and after a
vaccine.

Per twin, the first ``train_frac`` of its readings train (as in ``twinkit eval
forecast``) and forecasts are made from test origins, each seeing the day before it.
Per model and horizon the report gives the RMSE of:

- ``clean``: forecasts from the true history;
- ``undefended``: from a history tampered by a registered forecaster attack (by default
  ``history_pgd``, :func:`~twinkit.immunity.history_tampering.attack_history`), within the
  budget, to push each forecast further from the truth;
- ``vaccinated_replay``: the vaccinated model (fitted on
  :func:`~twinkit.immunity.history_tampering.vaccine_history`) fed the *same* tampered histories;
- ``vaccinated_adaptive``: the vaccinated model fed a fresh attack against it.

``hide_low``: at origins where glucose at the first horizon is below ``threshold``
(a coming low), the attack raises that forecast instead; the report gives the share of
those lows the forecast still flags (``forecast < threshold``), clean and attacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.core.progress import ProgressFn, Steps
from twinkit.eval.forecast_benchmark import split_twins
from twinkit.immunity.base import AttackSettings, ForecasterAttack, forecaster_attack
from twinkit.immunity.forecaster_attacks import DEFAULT_FORECASTER_ATTACK
from twinkit.immunity.history_tampering import HistoryBudget, truth_at, vaccine_history
from twinkit.models.base import Forecaster, forecaster_class

#: what each model's error and low-alarm figures are reported under
VARIANTS = ("undefended", "vaccinated_replay", "vaccinated_adaptive")


def _signs(forecast: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """+-1 per horizon in the direction that makes the error larger (0 without a truth)."""
    sign = np.sign(forecast - truth)
    return np.where(np.isfinite(truth), np.where(sign == 0, 1.0, sign), 0.0)


def _rmse(errors: list[float]) -> float | None:
    return float(np.sqrt(np.mean(np.square(errors)))) if errors else None


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def evaluate_forecast_immunity(
    data: pd.DataFrame,
    target: str,
    horizons: Sequence[int] = (30, 60),
    *,
    models: Sequence[str] = ("linear_ar", "gru"),
    budget: HistoryBudget = HistoryBudget(),
    train_frac: float = 0.7,
    max_origins: int = 60,
    steps: int = 2,
    copies: int = 2,
    threshold: float = 70.0,
    context_hours: float = 24.0,
    seed: int = 0,
    attack: str = DEFAULT_FORECASTER_ATTACK,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Attack every model on every twin of long-format ``data`` (twin_id, time, channel,
    value) with the registered forecaster attack ``attack`` (``steps`` its steps);
    return the JSON-ready report (see the module)."""
    attacker = forecaster_attack(attack, AttackSettings(steps=steps))
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] <= 0:
        raise TwinkitError(f"horizons must be positive minutes, got {list(horizons)}")
    splits, skipped = split_twins(data, target, train_frac, max_origins)
    if not splits:
        raise TwinkitError(f"no twin has enough {target!r} readings to evaluate")
    reach = pd.Timedelta(minutes=hs[-1])
    lookback = pd.Timedelta(hours=context_hours)

    def build(name: str) -> Forecaster:
        return forecaster_class(name)(target=target, seed=seed, max_horizon_min=hs[-1])

    report: dict[str, Any] = {"kind": "forecast", "models": {}}
    say = Steps(len(models) * len(splits), progress)
    for name in models:
        errors: dict[str, dict[int, list[float]]] = {
            v: {h: [] for h in hs} for v in ("clean", "clean_vaccinated", *VARIANTS)
        }
        lows: dict[str, list[bool]] = {v: [] for v in ("clean", "vaccinated_clean", *VARIANTS)}
        failed: dict[str, str] = {}
        n_origins = 0
        for twin in splits:
            say(f"{name}: {twin.twin_id}")
            try:
                clean_model = build(name).fit(twin.train)
                vaccine = vaccine_history(
                    clean_model, twin.train, hs, budget, copies=copies, seed=seed
                )
                vaccinated = build(name).fit(vaccine)
            except (ForecastInputError, TwinkitError) as exc:
                failed[twin.twin_id] = str(exc)
                continue
            for origin in twin.origins:
                truth = truth_at(twin.frame, target, origin, hs)
                if not np.isfinite(truth).any():
                    continue
                context = twin.frame.loc[origin - lookback : origin + reach].copy()
                context.loc[context.index > origin, target] = np.nan
                try:
                    row = _one_origin(
                        attacker, clean_model, vaccinated, context, hs, truth, budget, origin
                    )
                    low = (
                        _hide_low(
                            attacker,
                            clean_model,
                            vaccinated,
                            context,
                            hs,
                            budget,
                            origin,
                            threshold,
                        )
                        if truth[0] < threshold
                        else None
                    )
                except ForecastInputError:
                    continue  # a gap right before this origin: no forecast can be made
                n_origins += 1
                for variant, forecast in row.items():
                    for k, h in enumerate(hs):
                        if np.isfinite(truth[k]):
                            errors[variant][h].append(float(forecast[k] - truth[k]))
                if low is not None:
                    for variant, flagged in low.items():
                        lows[variant].append(flagged)
        report["models"][name] = {
            "clean_rmse": {str(h): _rmse(errors["clean"][h]) for h in hs},
            "clean_rmse_vaccinated": {str(h): _rmse(errors["clean_vaccinated"][h]) for h in hs},
            "attacks": {
                "error": {v: {str(h): _rmse(errors[v][h]) for h in hs} for v in VARIANTS},
                "hide_low": {
                    "threshold": threshold,
                    "horizon_min": hs[0],
                    "lows": len(lows["clean"]),
                    **{f"flagged_{v}": _share(flags) for v, flags in lows.items()},
                },
            },
            "origins": n_origins,
            "twins": len(splits) - len(failed),
            "failed": failed,
        }
    report.update(
        {
            "target": target,
            "horizons_min": hs,
            "threat_model": {
                **budget.as_dict(),
                "units": f"{target} units per reading",
                "attack": f"{attacker.name}: {attacker.summary()}",
                "steps": steps,
                "context_hours": context_hours,
            },
            "vaccine": {
                "copies": copies,
                "kind": "training history plus copies with attacked blocks, truth kept after",
            },
            "data": {
                "twins": len(splits),
                "twins_skipped": skipped,
                "rows": len(data),
                "train_frac": train_frac,
                "max_origins": max_origins,
            },
            "seed": seed,
        }
    )
    return report


def _one_origin(
    attacker: ForecasterAttack,
    clean_model: Forecaster,
    vaccinated: Forecaster,
    context: pd.DataFrame,
    hs: list[int],
    truth: np.ndarray,
    budget: HistoryBudget,
    origin: pd.Timestamp,
) -> dict[str, np.ndarray]:
    clean = clean_model.predict(context, hs).mean
    attacked = attacker.generate(
        clean_model, context, hs, _signs(clean, truth), budget, origin=origin
    ).context
    vacc_clean = vaccinated.predict(context, hs).mean
    adaptive = attacker.generate(
        vaccinated, context, hs, _signs(vacc_clean, truth), budget, origin=origin
    ).context
    return {
        "clean": clean,
        "clean_vaccinated": vacc_clean,
        "undefended": clean_model.predict(attacked, hs).mean,
        "vaccinated_replay": vaccinated.predict(attacked, hs).mean,
        "vaccinated_adaptive": vaccinated.predict(adaptive, hs).mean,
    }


def _hide_low(
    attacker: ForecasterAttack,
    clean_model: Forecaster,
    vaccinated: Forecaster,
    context: pd.DataFrame,
    hs: list[int],
    budget: HistoryBudget,
    origin: pd.Timestamp,
    threshold: float,
) -> dict[str, bool]:
    """Whether the first horizon's forecast still flags a coming low, per variant, when
    the attack raises it."""
    up = np.zeros(len(hs))
    up[0] = 1.0
    raised = attacker.generate(clean_model, context, hs, up, budget, origin=origin)
    raised_v = attacker.generate(vaccinated, context, hs, up, budget, origin=origin)

    def flags(model: Forecaster, frame: pd.DataFrame) -> bool:
        return bool(model.predict(frame, hs[:1]).mean[0] < threshold)

    return {
        "clean": flags(clean_model, context),
        "vaccinated_clean": flags(vaccinated, context),
        "undefended": flags(clean_model, raised.context),
        "vaccinated_replay": flags(vaccinated, raised.context),
        "vaccinated_adaptive": flags(vaccinated, raised_v.context),
    }


__all__ = ["VARIANTS", "evaluate_forecast_immunity"]
