"""Fitting any twin: a state twin's forecaster (``fitting``) or a decision twin's clone
(``clone_versions``), one twin or many."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from twinkit.core.errors import ForecastInputError, NotFoundError
from twinkit.core.twin import TwinKind
from twinkit.engine import clone_versions, fitting, reads
from twinkit.engine.context import EngineContext
from twinkit.engine.fitting import AUTO, FitResult


def fit_twin(
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
    """A new version of the twin's model: :func:`twinkit.engine.fitting.fit` for a state
    twin, :func:`twinkit.engine.clone_versions.fit_clone` for a decision twin (its clone;
    ``seed`` and ``twin_uid`` apply, the forecasting options do not)."""
    if reads.get_twin(ctx, twin_id).kind is TwinKind.DECISION:
        return clone_versions.fit_clone(ctx, twin_id, seed, twin_uid)
    return fitting.fit(
        ctx,
        twin_id,
        model,
        target,
        seed,
        holdout_frac,
        horizons,
        params,
        candidates,
        twin_uid,
        update,
        since,
    )


def fit_cohort(
    ctx: EngineContext,
    twin_ids: Sequence[str],
    progress: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> tuple[list[FitResult], dict[str, str]]:
    """Fit every twin in turn (``kwargs`` as for :func:`fit_twin`). A twin that cannot be
    fitted (too little data, no target) does not stop the others: it is returned in the
    second element with the reason."""
    results: list[FitResult] = []
    failures: dict[str, str] = {}
    for twin_id in twin_ids:
        try:
            results.append(fit_twin(ctx, twin_id, **kwargs))
        except (ForecastInputError, NotFoundError) as exc:
            failures[twin_id] = str(exc)
        if progress is not None:
            progress(twin_id)
    return results, failures
