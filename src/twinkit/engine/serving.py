"""Forecasts as a service answers them: a broken serving artifact fails over, visibly.

``TwinEngine.predict`` is strict (a broken artifact raises). ``serve_forecast`` answers from
the previous good version when the serving one's artifact is missing, fails its sha256 or
cannot be loaded, else from the population model; the answer is marked degraded and the
ledger records the failover (once per broken version and replacement, not per request).
The registry is not changed: which version serves stays a decision for a person (restore
the artifact, refit, or roll back).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from twinkit.core.errors import ForecastInputError, IntegrityError, NotFoundError, TwinkitError
from twinkit.core.forecast import Forecast
from twinkit.models.base import Forecaster
from twinkit.store import ledger
from twinkit.store.registry import ModelVersion

if TYPE_CHECKING:
    from twinkit.engine.twin_engine import TwinEngine

#: the ledger event of a failover
FAILOVER_EVENT = "serving_failover"
# What "fails to load" means: a bad or missing file (IntegrityError), an unknown model
# name (ForecastInputError), or a config or tensors the model class cannot rebuild from.
_LOAD_ERRORS = (TwinkitError, KeyError, ValueError, TypeError, RuntimeError)


@dataclass(frozen=True)
class ServedForecast:
    """A forecast with where it came from: ``source`` is "twin" (one of the twin's own
    versions) or "population"; ``degraded`` when the serving version could not answer."""

    forecast: Forecast
    source: str = "twin"
    degraded: bool = False
    reason: str | None = None


def serve_forecast(
    engine: TwinEngine, twin_id: str, horizons: Sequence[int] = (30, 60)
) -> ServedForecast:
    """The serving version's forecast, or a degraded one from a fallback (see module)."""
    twin = engine.get_twin(twin_id)
    serving = engine.version(twin.id)
    frame = engine.signals(twin.id)
    try:
        model = engine.load_model(serving)
    except _LOAD_ERRORS as exc:
        return _failover(engine, serving, frame, horizons, _why(serving, exc))
    forecast = model.predict(frame, horizons)
    return ServedForecast(replace(forecast, model=serving.model, version=serving.version))


def _why(version: ModelVersion, exc: Exception) -> str:
    """What is wrong, without server paths (the answer goes to the twin's owner)."""
    if isinstance(exc, IntegrityError):
        what = "its artifact is missing or fails its sha256 check"
    else:
        what = f"its artifact cannot be loaded ({type(exc).__name__})"
    return f"serving v{version.version} ({version.model}): {what}"


def _failover(
    engine: TwinEngine,
    broken: ModelVersion,
    frame: pd.DataFrame,
    horizons: Sequence[int],
    problem: str,
) -> ServedForecast:
    twin_id = broken.twin_id
    for version in _earlier_versions(engine, broken):
        try:
            forecast = engine.load_model(version).predict(frame, horizons)
        except _LOAD_ERRORS:
            continue  # broken too, or cannot forecast these horizons: try the one before
        _record(engine, broken, problem, {"source": "twin", "version": version.version})
        return ServedForecast(
            replace(forecast, model=version.model, version=version.version),
            "twin",
            True,
            f"{problem}; answered by v{version.version}, which served before it",
        )
    prior = _population(engine, broken)
    if prior is not None:
        population_version, model = prior
        try:
            forecast = model.predict(frame, horizons)
        except ForecastInputError:
            pass
        else:
            _record(
                engine, broken, problem, {"source": "population", "version": population_version}
            )
            return ServedForecast(
                replace(forecast, model=f"population:{forecast.model}", version=population_version),
                "population",
                True,
                f"{problem}; no earlier version can answer: answered by population model "
                f"v{population_version}",
            )
    _record(engine, broken, problem, None)
    raise IntegrityError(
        f"twin {twin_id!r}: {problem}, and neither an earlier version nor a population model "
        "can answer: fit the twin again or restore the artifact"
    )


def _earlier_versions(engine: TwinEngine, broken: ModelVersion) -> list[ModelVersion]:
    """The versions that served before the broken one, most recent first."""
    with engine.store.read() as conn:
        entries = ledger.entries(conn, broken.twin_id)
    served = ledger.serving_history(entries).get(broken.twin_id, [])
    order = list(dict.fromkeys(v for v in reversed(served) if v != broken.version))
    found = []
    for number in order:
        try:
            found.append(engine.version(broken.twin_id, number))
        except NotFoundError:
            continue
    return found


def _population(engine: TwinEngine, broken: ModelVersion) -> tuple[int, Forecaster] | None:
    """The newest population model, if it loads and forecasts the broken version's target."""
    try:
        prior = engine.population()
    except _LOAD_ERRORS:
        return None
    if prior is None:
        return None
    target = broken.params.get("target")
    if target is not None and prior[1].target != target:
        return None
    return prior[0].version, prior[1]


def _record(
    engine: TwinEngine, broken: ModelVersion, problem: str, served_by: dict[str, Any] | None
) -> None:
    """Append a failover entry, unless the twin's last one says the same already."""
    payload = {
        "version": broken.version,
        "sha256": broken.sha256,
        "problem": problem,
        "served_by": served_by,
    }
    # A promotion or rollback since the last failover entry makes the next one news.
    events = [FAILOVER_EVENT, "model_promoted", "model_rolled_back", "twin_created"]
    with engine.store.write() as conn:
        last = ledger.last_entry(conn, broken.twin_id, events)
        if last is not None and last.event == FAILOVER_EVENT and last.payload == payload:
            return
        ledger.append(conn, FAILOVER_EVENT, broken.twin_id, payload)
