"""Population priors in the engine: train one model on many twins, register, load it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from twinkit.core.digest import signals_digest
from twinkit.core.errors import ForecastInputError, NotFoundError, TwinkitError
from twinkit.core.timewindow import TimeWindow
from twinkit.core.twin import TwinKind
from twinkit.data.frames import long_to_wide
from twinkit.models.base import Forecaster, forecaster_class
from twinkit.models.evaluate import holdout_split
from twinkit.models.neural import NeuralForecaster
from twinkit.personalize.meta import meta_learn
from twinkit.store import ledger, observations, registry, twins
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store
from twinkit.store.registry import PopulationVersion
from twinkit.store.timeutil import utc_now_iso

DEFAULT_POPULATION_MODEL = "gru"


@dataclass
class PopulationResult:
    version: int
    model: str
    twins: list[str]
    skipped: dict[str, str]
    seconds: float
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fit_population(
    store: Store,
    artifacts: ArtifactStore,
    model: str = DEFAULT_POPULATION_MODEL,
    twin_ids: Sequence[str] | None = None,
    target: str = "glucose",
    seed: int = 0,
    holdout_frac: float = 0.2,
    params: dict[str, Any] | None = None,
    meta: bool = False,
    window: TimeWindow | None = None,
) -> PopulationResult:
    """Train ``model`` on the state twins' data and register it as the next population.

    Each twin contributes only the data before its own holdout split (the part
    ``twinkit fit`` trains on), so a twin's holdout scores stay honest when its personal
    model starts from this prior. ``meta`` refines the pooled model by Reptile, a better
    start for twins with about a day of data.
    """
    started = time.perf_counter()
    window = window or TimeWindow()
    with store.read() as conn:
        chosen = (
            list(twin_ids)
            if twin_ids
            else [t.id for t in twins.list_twins(conn) if t.kind is TwinKind.STATE]
        )
        longs = {t: observations.read_signals(conn, t) for t in chosen}
    histories: list[pd.DataFrame] = []
    used: list[str] = []
    skipped: dict[str, str] = {}
    digests = []
    for twin_id, long in longs.items():
        try:
            # One twin's bad data (times outside the window, written before it was
            # enforced) must not stop everyone's prior: that twin is skipped, with why.
            window.check_stored(twin_id, long["t"].to_numpy())
        except ForecastInputError as exc:
            skipped[twin_id] = str(exc)
            continue
        frame = long_to_wide(long)
        if target not in frame.columns or frame[target].notna().sum() < 50:
            skipped[twin_id] = f"fewer than 50 readings of {target!r}"
            continue
        split = holdout_split(frame, target, holdout_frac)
        histories.append(frame.loc[frame.index < split])
        used.append(twin_id)
        digests.append(signals_digest(long.assign(twin_id=twin_id)))
    if not histories:
        raise ForecastInputError(f"no twin has enough {target!r} data for a population model")
    prior = forecaster_class(model)(target=target, seed=seed, **(params or {}))
    if meta:
        if not isinstance(prior, NeuralForecaster):
            raise TwinkitError(f"{model!r} cannot be meta-learned; use a neural model (gru)")
        meta_learn(prior, histories)
    else:
        fit = getattr(prior, "fit_population", None)
        if fit is None:
            raise TwinkitError(f"{model!r} cannot be trained on many twins (no fit_population)")
        fit(histories)
    tensors, config = prior.get_state()
    sha = artifacts.save(tensors, config)
    data_hash = hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()
    with store.write() as conn:
        version = registry.next_population_version(conn)
        metrics = {"twins": float(len(used)), "seconds": round(time.perf_counter() - started, 2)}
        registry.insert_population(
            conn,
            PopulationVersion(
                version=version,
                model=model,
                target=target,
                sha256=sha,
                params=prior.params(),
                metrics=metrics,
                twins=used,
                data_hash=data_hash,
                created_at=utc_now_iso(),
            ),
        )
        ledger.append(
            conn,
            "population_registered",
            None,
            {
                "version": version,
                "model": model,
                "sha256": sha,
                "twins": used,
                "params": prior.params(),
                "data_hash": data_hash,
                "holdout_frac": holdout_frac,
                "training": "reptile" if meta else "pooled",
            },
        )
    return PopulationResult(
        version, model, used, skipped, round(time.perf_counter() - started, 2), sha
    )


def load_population(
    store: Store, artifacts: ArtifactStore, version: int | None = None
) -> tuple[PopulationVersion, Forecaster] | None:
    """The newest (or a given) population model, checked against its sha256; None if none."""
    with store.read() as conn:
        known = registry.populations(conn)
    if not known:
        if version is not None:
            raise NotFoundError(f"no population model v{version}")
        return None
    entry = known[-1] if version is None else next((p for p in known if p.version == version), None)
    if entry is None:
        raise NotFoundError(f"no population model v{version}")
    tensors, config = artifacts.load(entry.sha256)
    return entry, forecaster_class(config["model"]).from_state(tensors, config)
