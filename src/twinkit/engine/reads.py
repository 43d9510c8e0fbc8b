"""What the lifecycle reads back: a twin by its reference, its stored data, its model
versions and the population prior that may serve it, on an :class:`EngineContext`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from twinkit.core.errors import ForecastInputError, NotFoundError, TwinkitError
from twinkit.core.twin import Twin
from twinkit.data.frames import long_to_wide
from twinkit.engine.context import EngineContext
from twinkit.models.base import Forecaster, forecaster_class
from twinkit.store import model_versions, observations, twins
from twinkit.store.model_versions import ModelVersion
from twinkit.store.timeutil import from_micros, to_micros


def get_twin(ctx: EngineContext, twin_id: str) -> Twin:
    """The twin ``twin_id`` names: ``owner/id``, or a bare id that one owner uses (in a
    store of one owner, every id). :class:`AmbiguousTwinError` if several owners do."""
    with ctx.store.read() as conn:
        twin = twins.find(conn, twin_id)
    if twin is None:
        raise NotFoundError(f"no twin {twin_id!r} (create it with: twinkit twin create)")
    return twin


def signals(
    ctx: EngineContext, twin_id: str, channels: Sequence[str] | None = None
) -> pd.DataFrame:
    """A twin's stored signals as a wide UTC-indexed frame, a column per channel."""
    twin = get_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        long = observations.read_signals(conn, twin.key, channels)
    ctx.time_window.check_stored(twin.id, long["t"].to_numpy())
    return long_to_wide(long)


def decisions(ctx: EngineContext, twin_id: str) -> pd.DataFrame:
    """A decision twin's stored decisions: ``item_id``, ``label``, ``features`` (JSON)."""
    key = get_twin(ctx, twin_id).key
    with ctx.store.read() as conn:
        stored = observations.stored_decisions(conn, [key])
    return stored.sort_values("item_id", ignore_index=True)[["item_id", "label", "features"]]


def default_target(twin: Twin, frame: pd.DataFrame) -> str:
    """The channel a state twin forecasts: its metadata's ``target``, else glucose (or
    cgm), else its first declared channel, else its first stored one."""
    target = twin.metadata.get("target")
    if isinstance(target, str):
        return target
    for name in ("glucose", "cgm"):
        if name in frame.columns:
            return name
    if twin.channels:
        return twin.channels[0].name
    if frame.columns.empty:
        raise ForecastInputError(f"twin {twin.id!r} has no signals yet: ingest some first")
    return str(frame.columns[0])


def version(ctx: EngineContext, twin_id: str, number: int | None = None) -> ModelVersion:
    """A registry version of the twin's model: the serving one, or the one numbered."""
    twin = get_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        chosen = (
            model_versions.get_version(conn, twin.key, number)
            if number is not None
            else model_versions.serving(conn, twin.key)
        )
    if chosen is None:
        what = f"version {number}" if number is not None else "serving model"
        raise NotFoundError(f"twin {twin.id!r} has no {what}: run twinkit fit {twin_id}")
    return chosen


def versions(ctx: EngineContext, twin_id: str) -> list[ModelVersion]:
    """Every registry version of the twin's model, oldest first."""
    key = get_twin(ctx, twin_id).key
    with ctx.store.read() as conn:
        return model_versions.versions(conn, key)


def load_model(ctx: EngineContext, chosen: ModelVersion) -> Forecaster:
    """The fitted forecaster of a registry version; its artifact's sha256 is checked."""
    tensors, config = ctx.artifacts.load(chosen.sha256)
    if config.get("kind") == "clone":
        raise TwinkitError(
            f"v{chosen.version} is a decision twin's clone: it decides (twinkit decide), it "
            "does not forecast"
        )
    return forecaster_class(config["model"]).from_state(tensors, config)


def signals_between(
    ctx: EngineContext,
    twin_id: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    channels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A twin's stored signals with ``start <= time <= end`` in long form (``time``,
    ``channel``, ``value``), ordered by time then channel."""
    key = get_twin(ctx, twin_id).key
    bounds = [
        None if moment is None else int(to_micros(pd.DatetimeIndex([moment]))[0])
        for moment in (start, end)
    ]
    with ctx.store.read() as conn:
        long = observations.read_signals(conn, key, channels, *bounds)
    long = long.sort_values(["t", "channel"], kind="stable", ignore_index=True)
    return pd.DataFrame(
        {
            "time": from_micros(long["t"].to_numpy()),
            "channel": long["channel"],
            "value": long["value"],
        }
    )
