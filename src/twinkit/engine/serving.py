"""Forecasts as a service answers them: a broken serving artifact fails over, visibly.

``TwinEngine.predict`` is strict (a broken artifact raises). ``serve_forecast`` answers from
the previous good version when the serving one's artifact is missing, fails its sha256 or
cannot be loaded, else from the population model; the answer is marked degraded and the
ledger records the failover (once per broken version and replacement, not per request).
The registry is not changed: which version serves stays a decision for a person (restore
the artifact, refit, or roll back). Models come from the engine's
:class:`~twinkit.engine.model_cache.ModelCache`, which checks an artifact again whenever
its file changed, so a damaged artifact fails over as if every request loaded it.

A forecast is a pure function of the serving version's artifact, the twin's stored signals
and the horizons asked (its origin is the last reading's time, not the clock), so a
service may keep answers in a :class:`ForecastCache` under their :data:`ForecastKey`:
the twin, the serving version (row id, number, sha256), the artifact file's state as the
model cache verified it, the twin's data watermark (``twins.data_batch``, moved in the
transaction of every ingest and release), the horizons and the version's live band (the
monitor's rescaling of the model's band, :mod:`twinkit.monitor.band`). :func:`serving_head` reads
all the store's parts of the key with one statement; :func:`forecast_key` adds the file
state, and is None unless the model cache holds the model verified in the file's present
state, so a changed artifact is always loaded and checked again. Degraded answers are
never cached: they depend on more than the key.

A forecast reads only the rows it can depend on: those after the target's last reading
minus the model's :meth:`~twinkit.models.base.Forecaster.lookback_min` (the contract tests
hold every forecaster to it), so its cost does not grow with the twin's history. A
failover reads the whole history, as the fallbacks may need more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from twinkit.core.errors import (
    ForecastInputError,
    IntegrityError,
    MissingExtraError,
    NotFoundError,
    TwinkitError,
)
from twinkit.core.forecast import Forecast
from twinkit.core.lru import LRU
from twinkit.core.twin import TwinKind, public_id, twin_key
from twinkit.data.frames import long_to_wide
from twinkit.engine import live, reads
from twinkit.engine.model_cache import FileState
from twinkit.engine.population import load_population
from twinkit.models.base import Forecaster
from twinkit.monitor.band import rescale
from twinkit.store import ledger, model_versions, observations, twins
from twinkit.store.db import Conn
from twinkit.store.model_versions import ModelVersion
from twinkit.store.model_versions import ServingHead as ServingHead  # re-exported for the service

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext

#: the ledger event of a failover
FAILOVER_EVENT = "serving_failover"
# What "fails to load" means: a bad or missing file (IntegrityError), an unknown model
# name (ForecastInputError), or a config or tensors the model class cannot rebuild from.
_LOAD_ERRORS = (TwinkitError, KeyError, ValueError, TypeError, RuntimeError)


#: forecasts kept per service process by default (one per twin and horizons asked; a
#: forecast takes about a kilobyte)
DEFAULT_FORECAST_CAPACITY = 20_000

#: what a forecast is cached under: twin id, serving version row id, version number,
#: artifact sha256, the artifact file's verified state, data watermark, horizons, live band
ForecastKey = tuple[str, int, int, str, FileState, int | None, tuple[int, ...], str | None]

V = TypeVar("V")


class TwinChangedError(NotFoundError):
    """The twin is gone, or has another owner, since the caller checked it."""


@dataclass(frozen=True)
class ServedForecast:
    """A forecast with where it came from: ``source`` is "twin" (one of the twin's own
    versions) or "population"; ``degraded`` when the serving version could not answer.
    ``key`` is set when the answer may be cached under it (see module)."""

    forecast: Forecast
    source: str = "twin"
    degraded: bool = False
    reason: str | None = None
    key: ForecastKey | None = None


class ForecastCache(LRU[ForecastKey, V]):
    """Answers by :data:`ForecastKey`, up to ``capacity`` of them, least recently used out.

    What is kept is up to the caller (the service keeps the JSON it answered). A key holds
    everything the answer depends on, so an entry is never stale, only unused: nothing is
    invalidated, a changed twin just asks under a new key.

    >>> cache = ForecastCache[str](capacity=1)
    >>> cache.put(("a",), "A"); cache.put(("b",), "B")  # type: ignore[arg-type]
    >>> cache.get(("a",)), cache.get(("b",)), cache.stats()  # type: ignore[arg-type]
    (None, 'B', {'hits': 1, 'misses': 1, 'size': 1})
    """

    def __init__(self, capacity: int = DEFAULT_FORECAST_CAPACITY) -> None:
        super().__init__(capacity)


def serving_head(ctx: EngineContext, owner: str, twin_id: str) -> ServingHead | None:
    """``owner``'s twin ``twin_id``: its key, kind, data watermark and serving version, by
    one statement (no transaction: one statement reads one snapshot); None if ``owner``
    has no such twin. A twin from before schema 7 is stored under its bare id: looked up
    second, and only if it is ``owner``'s."""
    with ctx.store.statement() as conn:
        head = model_versions.serving_head(conn, twin_key(owner, twin_id))
        if head is None:
            head = model_versions.serving_head(conn, twin_id)
    return head if head is not None and head.owner == owner else None


def forecast_key(
    ctx: EngineContext, head: ServingHead, horizons: Sequence[int]
) -> ForecastKey | None:
    """The key of the serving version's forecast, or None when there is no serving version
    or its model is not held verified in the artifact's present state (then a forecast
    must load, and so check, the artifact)."""
    if head.sha256 is None or head.version_id is None or head.version is None:
        return None
    state = ctx.serving_models.verified_state(head.sha256)
    if state is None:
        return None
    wanted = tuple(int(h) for h in horizons)
    return (
        head.twin_id,
        head.version_id,
        head.version,
        head.sha256,
        state,
        head.data_batch,
        wanted,
        head.live_band,
    )


def serve_forecast(
    ctx: EngineContext,
    twin_id: str,
    horizons: Sequence[int] = (30, 60),
    checked: ServingHead | None = None,
) -> ServedForecast:
    """The serving version's forecast, or a degraded one from a fallback (see module).

    ``checked`` is the head the caller authorised the request by: if the twin is gone or
    has another owner by the time the data is read, :class:`TwinChangedError` is raised.
    """
    # One snapshot for the version and the data it forecasts from.
    model: Forecaster | None = None
    failure: Exception | None = None
    with ctx.store.read() as conn:
        head = model_versions.serving_head(conn, twin_id)
        if checked is not None and (head is None or head.owner != checked.owner):
            raise TwinChangedError(f"no twin {twin_id!r}")
        if head is not None and head.kind == TwinKind.DECISION.value:
            raise TwinkitError(
                f"twin {public_id(twin_id)!r} is a decision twin: it decides (POST .../decide, "
                "twinkit decide), it does not forecast"
            )
        sha256 = head.sha256 if head is not None else None
        if head is not None and head.sha256 is not None:
            try:
                model = ctx.serving_models.load(head.sha256)
            except MissingExtraError as exc:
                # not a broken artifact but an install without its libraries: say so
                raise MissingExtraError(
                    f"twin {public_id(twin_id)!r} is served by v{head.version} ({head.model}): "
                    f"{exc}; or run its ONNX export (twinkit export) with twinkit.edge"
                ) from exc
            except _LOAD_ERRORS as exc:
                failure = exc  # the fallbacks may read the whole history: read it all
        start, columns = _window(conn, twin_id, model)
        long = observations.read_signals(conn, twin_id, start=start) if sha256 else None
    name = public_id(twin_id)
    if head is None:
        raise NotFoundError(f"no twin {name!r} (create it with: twinkit twin create)")
    if head.sha256 is None or head.version is None or long is None:
        raise NotFoundError(f"twin {name!r} has no serving model: run twinkit fit {name}")
    ctx.time_window.check_stored(name, long["t"].to_numpy())
    frame = long_to_wide(long)
    if columns is not None:
        frame = frame.reindex(columns=columns)
    if model is None:
        assert failure is not None  # there is a serving version: its model did not load
        serving = _version(ctx, twin_id, head.version)
        return _failover(ctx, serving, frame, horizons, _why(serving, failure))
    band = model_versions.parse_band(head.live_band)
    forecast = rescale(model.predict(frame, horizons), band)
    served = replace(forecast, model=head.model or forecast.model, version=head.version)
    live.record(ctx, head.twin_id, head.version, model, served, band)
    return ServedForecast(served, key=forecast_key(ctx, head, horizons))


def _window(
    conn: Conn, twin_id: str, model: Forecaster | None
) -> tuple[int | None, list[str] | None]:
    """The time (int64 us) from which the model's forecast reads the twin's rows (its
    lookback before the target's last reading, the forecast origin), and the columns of
    the whole history: a channel with no row in the window is still one. (None, None) to
    read every row."""
    reach = model.lookback_min() if model is not None else None
    if model is None or reach is None:
        return None, None
    ends = observations.channel_ends(conn, twin_id)
    if model.target not in ends:
        return None, None
    return ends[model.target] - int(reach * 60_000_000), sorted(ends)


def _why(version: ModelVersion, exc: Exception) -> str:
    """What is wrong, without server paths (the answer goes to the twin's owner)."""
    if isinstance(exc, IntegrityError):
        what = "its artifact is missing or fails its sha256 check"
    else:
        what = f"its artifact cannot be loaded ({type(exc).__name__})"
    return f"serving v{version.version} ({version.model}): {what}"


def _failover(
    ctx: EngineContext,
    broken: ModelVersion,
    frame: pd.DataFrame,
    horizons: Sequence[int],
    problem: str,
) -> ServedForecast:
    twin_id = broken.twin_id
    for version in earlier_versions(ctx, broken):
        try:
            forecast = ctx.serving_models.load(version.sha256).predict(frame, horizons)
        except _LOAD_ERRORS:
            continue  # broken too, or cannot forecast these horizons: try the one before
        record_failover(ctx, broken, problem, {"source": "twin", "version": version.version})
        return ServedForecast(
            replace(forecast, model=version.model, version=version.version),
            "twin",
            True,
            f"{problem}; answered by v{version.version}, which served before it",
        )
    prior = _population(ctx, broken)
    if prior is not None:
        population_version, model = prior
        try:
            forecast = model.predict(frame, horizons)
        except ForecastInputError:
            pass
        else:
            record_failover(
                ctx, broken, problem, {"source": "population", "version": population_version}
            )
            return ServedForecast(
                replace(forecast, model=f"population:{forecast.model}", version=population_version),
                "population",
                True,
                f"{problem}; no earlier version can answer: answered by population model "
                f"v{population_version}",
            )
    record_failover(ctx, broken, problem, None)
    raise IntegrityError(
        f"twin {public_id(twin_id)!r}: {problem}, and neither an earlier version nor a "
        "population model can answer: fit the twin again or restore the artifact"
    )


def earlier_versions(ctx: EngineContext, broken: ModelVersion) -> list[ModelVersion]:
    """The versions that served before the broken one, most recent first."""
    with ctx.store.read() as conn:
        entries = ledger.entries(conn, broken.twin_id)
    served = ledger.serving_history(entries).get(broken.twin_id, [])
    order = list(dict.fromkeys(v for v in reversed(served) if v != broken.version))
    found = []
    for number in order:
        try:
            found.append(_version(ctx, broken.twin_id, number))
        except NotFoundError:
            continue
    return found


def _version(ctx: EngineContext, key: str, number: int) -> ModelVersion:
    """Version ``number`` of the twin stored under ``key``."""
    with ctx.store.read() as conn:
        found = model_versions.get_version(conn, key, number)
    if found is None:
        raise NotFoundError(f"twin {public_id(key)!r} has no model version {number}")
    return found


def _population(ctx: EngineContext, broken: ModelVersion) -> tuple[int, Forecaster] | None:
    """The newest population model that may serve the twin's owner, if it loads and
    forecasts the broken version's target."""
    with ctx.store.read() as conn:
        owner = twins.owners_of(conn, [broken.twin_id]).get(broken.twin_id)
    if owner is None:
        return None
    try:
        prior = load_population(ctx.store, ctx.artifacts, owner=owner)
    except _LOAD_ERRORS:
        return None
    if prior is None:
        return None
    target = broken.params.get("target")
    if target is not None and prior[1].target != target:
        return None
    return prior[0].version, prior[1]


def record_failover(
    ctx: EngineContext, broken: ModelVersion, problem: str, served_by: dict[str, Any] | None
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
    with ctx.store.write() as conn:
        last = ledger.last_entry(conn, broken.twin_id, events)
        if last is not None and last.event == FAILOVER_EVENT and last.payload == payload:
            return
        ledger.append(conn, FAILOVER_EVENT, broken.twin_id, payload)


def predict(
    ctx: EngineContext,
    twin_id: str,
    horizons: Sequence[int] = (30, 60),
    version: int | None = None,
    as_of: pd.Timestamp | None = None,
) -> Forecast:
    """Forecast with the serving (or a numbered) version from the twin's latest data, its
    band scaled by the version's live band (:mod:`twinkit.monitor.band`), or from the data
    up to ``as_of`` (a backtest: the model's own band, as it was before it served); no
    failover."""
    twin = reads.get_twin(ctx, twin_id)
    chosen = reads.version(ctx, twin.ref, version)
    model = reads.load_model(ctx, chosen)
    frame = reads.signals(ctx, twin.ref)
    if as_of is not None:
        frame = frame.loc[:as_of]
    forecast = replace(model.predict(frame, horizons), model=chosen.model, version=chosen.version)
    if as_of is None:  # a backtest is not served
        forecast = rescale(forecast, chosen.live_band)
        live.record(ctx, twin.key, chosen.version, model, forecast, chosen.live_band)
    return forecast


def forecast(
    ctx: EngineContext, twin_id: str, horizons: Sequence[int] = (30, 60)
) -> ServedForecast:
    """What a service answers: :func:`predict` from the latest data, except that a serving
    artifact that is broken fails over (see the module)."""
    return serve_forecast(ctx, reads.get_twin(ctx, twin_id).key, horizons)
