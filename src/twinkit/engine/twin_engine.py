"""TwinEngine: ingest -> screen -> store + ledger -> fit -> register -> promote -> predict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from twinkit.core.errors import (
    AlreadyExistsError,
    ForecastInputError,
    NotFoundError,
    TwinkitError,
)
from twinkit.core.forecast import Forecast
from twinkit.core.timewindow import TimeWindow
from twinkit.core.twin import (
    Channel,
    MetadataLimits,
    Twin,
    TwinKind,
    split_ref,
    validate_metadata,
    validate_twin_id,
)
from twinkit.data.frames import long_to_wide
from twinkit.data.importers import load_batch, parse_batch
from twinkit.engine import fitting
from twinkit.engine.export import export_onnx
from twinkit.engine.fitting import AUTO, FitResult
from twinkit.engine.ingest import IngestResult, ingest_batch, key_twins, release_rows
from twinkit.engine.jobs import Jobs
from twinkit.engine.model_cache import ModelCache
from twinkit.engine.owners import OWNER_NAME_PATTERN, Owners
from twinkit.engine.population import (
    DEFAULT_POPULATION_MODEL,
    PopulationResult,
    fit_population,
    load_population,
)
from twinkit.engine.retraction import Retraction, RetractResult, retract_rows
from twinkit.engine.serving import ServedForecast, serve_forecast
from twinkit.engine.sessions import Sessions
from twinkit.models.base import Forecaster, forecaster_class
from twinkit.screen import (
    DEFAULT_DECISION_SCREENS,
    DEFAULT_SIGNAL_SCREENS,
    FutureTime,
    Screen,
)
from twinkit.store import jobs as store_jobs
from twinkit.store import ledger, observations, registry, twins
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store, new_uid
from twinkit.store.integrity import VerifyReport, verify_store
from twinkit.store.ledger import LedgerEntry
from twinkit.store.registry import ModelVersion, PopulationVersion
from twinkit.store.timeutil import from_micros, to_micros, utc_now_iso


def _micros(moment: pd.Timestamp | None) -> int | None:
    """A tz-aware time as int64 microseconds since the epoch, the store's unit."""
    return None if moment is None else int(to_micros(pd.DatetimeIndex([moment]))[0])


def _str_keys(mapping: dict[int, str]) -> dict[str, str]:
    return {str(k): v for k, v in mapping.items()}


def _as_seen_by(entry: LedgerEntry, owner: str, owner_of: dict[str, str]) -> LedgerEntry:
    """``entry`` with other owners' twins and names replaced by their number. A twin's
    owner is its key's prefix, else (a key from before schema 7) the store's record of it;
    a twin of neither (deleted since) counts as another owner's."""
    payload = entry.payload
    changed: dict[str, Any] = {}
    listed = payload.get("twins")
    if isinstance(listed, list):
        mine = [t for t in listed if (split_ref(t)[0] or owner_of.get(t)) == owner]
        if len(mine) < len(listed):
            changed.update(twins=mine, other_twins=len(listed) - len(mine))
    owners = payload.get("owners")
    if isinstance(owners, list) and any(o != owner for o in owners):
        kept = [o for o in owners if o == owner]
        changed.update(owners=kept, other_owners=len(owners) - len(kept))
    if not changed:
        return entry
    return replace(entry, payload={**payload, **changed, "redacted": True})


class TwinEngine:
    """Runs a twin's lifecycle against one store.

    >>> engine = TwinEngine("sqlite://")
    >>> engine.create_twin("p1", "state").kind.value
    'state'
    """

    def __init__(
        self,
        store: Store | str | None = None,
        signal_screens: Sequence[Screen] = DEFAULT_SIGNAL_SCREENS,
        decision_screens: Sequence[Screen] = DEFAULT_DECISION_SCREENS,
        time_window: TimeWindow | None = None,
    ) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.artifacts = ArtifactStore(self.store.artifacts_dir)
        #: when a reading may have been taken: earlier rejects a batch, later is held
        self.time_window = time_window or TimeWindow()
        # Readings from the future are held whatever other screens a caller chose: stored,
        # they would become the twin's "latest" data for good.
        future = [s for s in signal_screens if isinstance(s, FutureTime)]
        self.signal_screens = (
            tuple(signal_screens) if future else (FutureTime(self.time_window), *signal_screens)
        )
        self.decision_screens = tuple(decision_screens)
        self.owners = Owners(self.store)  # who may use the service, by token
        self.sessions = Sessions(self.store)  # the web pages' logins
        self.jobs = Jobs(self.store)  # background work the service runs
        self.serving_models = ModelCache(self.artifacts)  # what forecast() predicts with

    # -- twins --------------------------------------------------------------------------

    def create_twin(
        self,
        twin_id: str,
        kind: TwinKind | str,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
        channels: Sequence[Channel | str] = (),
        metadata_limits: MetadataLimits = MetadataLimits(),
    ) -> Twin:
        """A new twin of ``owner`` ("local" if not given; ``twin_id`` may also name it, as
        ``owner/id``). Ids are unique per owner: another owner may have a twin of the same
        id. It must differ from the owner's other ids in more than the case of its letters;
        its metadata must be JSON within ``metadata_limits``."""
        try:
            kind = TwinKind(kind)
        except ValueError:
            raise TwinkitError(f"unknown twin kind {kind!r}: use 'state' or 'decision'") from None
        named_owner, twin_id = split_ref(twin_id)
        if named_owner is not None and owner is not None and named_owner != owner:
            raise TwinkitError(f"the twin {named_owner}/{twin_id} cannot be owned by {owner!r}")
        owner = named_owner or owner or "local"
        if not OWNER_NAME_PATTERN.match(owner):
            raise TwinkitError(
                f"invalid owner name {owner!r}: use 1-128 letters, digits or - _ . :"
            )
        twin = Twin(
            id=validate_twin_id(twin_id),
            kind=kind,
            owner=owner,
            metadata=dict(validate_metadata({} if metadata is None else metadata, metadata_limits)),
            channels=tuple(c if isinstance(c, Channel) else Channel.parse(c) for c in channels),
            created_at=utc_now_iso(),
            uid=new_uid(),
        )
        with self.store.write() as conn:
            # Only the owner's own twins are looked at: another owner's ids are theirs.
            similar = twins.find_twin_casefold(conn, owner, twin.id)
            if similar is not None and similar.id == twin.id:
                raise AlreadyExistsError(f"twin {twin.id!r} already exists")
            if similar is not None:
                raise AlreadyExistsError(
                    f"twin id {twin.id!r} differs only in case from your twin {similar.id!r}; "
                    "twin ids are unique whatever their case: choose another id"
                )
            twins.insert_twin(conn, twin)
            ledger.append(conn, "twin_created", twin.key, twin.to_dict())
        return twin

    def get_twin(self, twin_id: str) -> Twin:
        """The twin ``twin_id`` names: ``owner/id``, or a bare id that one owner uses (in a
        store of one owner, every id). :class:`AmbiguousTwinError` if several owners do."""
        with self.store.read() as conn:
            twin = twins.find(conn, twin_id)
        if twin is None:
            raise NotFoundError(f"no twin {twin_id!r} (create it with: twinkit twin create)")
        return twin

    def is_twin(self, twin_id: str, uid: str) -> bool:
        """Whether the twin ``twin_id`` names now is the one whose uid is ``uid``."""
        with self.store.read() as conn:
            twin = twins.find(conn, twin_id)
        return twin is not None and twin.uid == uid

    def list_twins(self, owner: str | None = None) -> list[Twin]:
        with self.store.read() as conn:
            return twins.list_twins(conn, owner)

    def twin_summary(self, twin_id: str) -> dict[str, Any]:
        twin = self.get_twin(twin_id)
        with self.store.read() as conn:
            counts = observations.count_rows(conn, twin.key)
            serving = registry.serving(conn, twin.key)
        return {
            **twin.to_dict(),
            **counts,
            "serving_version": serving.version if serving else None,
        }

    def delete_twin(self, twin_id: str) -> list[int]:
        """Delete a twin and its data (the ledger keeps its history). Its queued and running
        jobs end as cancelled; their ids are returned, so that a job runner can stop them
        (a job that goes on anyway finds the twin gone and writes nothing)."""
        with self.store.write() as conn:
            gone = twins.find(conn, twin_id)
            if gone is None:
                raise NotFoundError(f"no twin {twin_id!r}")
            name, twin_id = gone.id, gone.key
            cancelled = store_jobs.cancel_twin_jobs(
                conn, twin_id, f"the twin {name!r} was deleted", utc_now_iso()
            )
            touched = sorted(
                set(observations.batch_ids_of_twin(conn, twin_id))
                | set(observations.batches_naming(conn, twin_id))
            )
            twins.delete_twin_rows(conn, twin_id)
            # Its batches no longer count as ingested: the same file may come back later.
            retired = observations.retire_batches(conn, observations.batches_naming(conn, twin_id))
            ledger.append(
                conn,
                "twin_deleted",
                twin_id,
                {
                    "batch_hashes": _str_keys(observations.batch_digests(conn, touched)),
                    "quarantine_hashes": _str_keys(observations.quarantine_digests(conn, touched)),
                    "retired_batches": retired,
                    "uid": gone.uid,
                    "cancelled_jobs": cancelled,
                },
            )
        return cancelled

    # -- ingest -------------------------------------------------------------------------

    def ingest(
        self,
        data: Path | str | pd.DataFrame,
        twin: str | None = None,
        source: str | None = None,
        owner: str | None = None,
    ) -> IngestResult:
        """Validate, screen and store one batch with its ledger entry, atomically.

        The data name their twins by id (a ``twin_id`` column), or ``twin`` names the one
        twin they are for (``id`` or ``owner/id``). The ids are ``owner``'s; without an
        owner, each must be an id that only one owner uses (any id, in a store of one owner).
        A batch with any invalid row raises :class:`ValidationError` and stores nothing.
        """
        if twin is not None:
            named_owner, twin = split_ref(twin)
            if named_owner is not None and owner is not None and named_owner != owner:
                raise TwinkitError(f"the twin {named_owner}/{twin} is not {owner!r}'s")
            owner = owner or named_owner
        earliest = self.time_window.earliest_us
        if isinstance(data, pd.DataFrame):
            batch = parse_batch(data, source or "<DataFrame>", twin, earliest)
        else:
            batch = load_batch(data, twin, earliest)
        with self.store.write() as conn:
            keyed = key_twins(conn, batch, owner)
            return ingest_batch(conn, keyed, self.signal_screens, self.decision_screens)

    # -- quarantine ---------------------------------------------------------------------

    def quarantine(
        self, twin_id: str | None = None, include_released: bool = False
    ) -> list[dict[str, Any]]:
        """Held rows: of one twin, or all (``twin_id`` in each is the twin's store key)."""
        key = None if twin_id is None else self.get_twin(twin_id).key
        with self.store.read() as conn:
            return observations.list_quarantine(conn, key, include_released)

    def release(self, quarantine_ids: Sequence[int]) -> int:
        """Store quarantined rows after all (a release batch); a stored value is replaced.
        Rows timed in the future stay held until their time has come."""
        with self.store.write() as conn:
            return release_rows(conn, quarantine_ids, self.time_window.latest_us())

    def retract(
        self,
        twin_id: str,
        reason: str,
        batch_id: int | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        channels: Sequence[str] | None = None,
        items: Sequence[str] | None = None,
    ) -> RetractResult:
        """Take rows out of a twin's data, recorded in the ledger as a retraction with the
        ``reason`` (see :mod:`twinkit.engine.retraction`). Every condition given must hold:
        a batch, a time range (inclusive; signals, optionally of some ``channels``) or
        decision ``items``. The next fit does not see the rows."""
        what = Retraction(
            batch_id, _micros(start), _micros(end), tuple(channels or ()), tuple(items or ())
        )
        with self.store.write() as conn:
            twin = twins.find(conn, twin_id)
            if twin is None:
                raise NotFoundError(f"no twin {twin_id!r}")
            return retract_rows(conn, twin.key, what, reason)

    # -- data ---------------------------------------------------------------------------

    def signals(self, twin_id: str, channels: Sequence[str] | None = None) -> pd.DataFrame:
        """A twin's stored signals as a wide UTC-indexed frame, a column per channel."""
        twin = self.get_twin(twin_id)
        with self.store.read() as conn:
            long = observations.read_signals(conn, twin.key, channels)
        self.time_window.check_stored(twin.id, long["t"].to_numpy())
        return long_to_wide(long)

    def signals_between(
        self,
        twin_id: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        channels: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """A twin's stored signals with ``start <= time <= end`` in long form (``time``,
        ``channel``, ``value``), ordered by time then channel."""
        key = self.get_twin(twin_id).key
        bounds = [_micros(start), _micros(end)]
        with self.store.read() as conn:
            long = observations.read_signals(conn, key, channels, *bounds)
        long = long.sort_values(["t", "channel"], kind="stable", ignore_index=True)
        return pd.DataFrame(
            {
                "time": from_micros(long["t"].to_numpy()),
                "channel": long["channel"],
                "value": long["value"],
            }
        )

    def decisions(self, twin_id: str) -> pd.DataFrame:
        """A decision twin's stored decisions: ``item_id``, ``label``, ``features`` (JSON)."""
        key = self.get_twin(twin_id).key
        with self.store.read() as conn:
            stored = observations.stored_decisions(conn, [key])
        return stored.sort_values("item_id", ignore_index=True)[["item_id", "label", "features"]]

    def default_target(self, twin: Twin, frame: pd.DataFrame) -> str:
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

    # -- models -------------------------------------------------------------------------

    def fit(
        self,
        twin_id: str,
        model: str = AUTO,
        target: str | None = None,
        seed: int = 0,
        holdout_frac: float = 0.2,
        horizons: Sequence[int] = (30, 60),
        params: dict[str, Any] | None = None,
        candidates: Sequence[str] | None = None,
        twin_uid: str | None = None,
    ) -> FitResult:
        """Fit a new version on the twin's earlier data, score it on its recent data, and
        promote it only if it is not worse there than the serving version (see
        :func:`twinkit.engine.fitting.fit`; ``model`` "auto" picks among ``candidates``;
        ``twin_uid``: only if the twin is still that one)."""
        return fitting.fit(
            self, twin_id, model, target, seed, holdout_frac, horizons, params, candidates, twin_uid
        )

    def fit_population(
        self,
        model: str = DEFAULT_POPULATION_MODEL,
        twin_ids: Sequence[str] | None = None,
        target: str = "glucose",
        seed: int = 0,
        params: dict[str, Any] | None = None,
        meta: bool = False,
        owner: str | None = None,
    ) -> PopulationResult:
        """Train a population prior on state twins (their training parts only): those
        named, else ``owner``'s, pooled with other owners' only if all of them share (see
        :func:`twinkit.engine.population.fit_population`)."""
        return fit_population(
            self.store,
            self.artifacts,
            model,
            twin_ids,
            target,
            seed,
            params=params,
            meta=meta,
            window=self.time_window,
            owner=owner,
        )

    def population(
        self, version: int | None = None, owner: str | None = None
    ) -> tuple[PopulationVersion, Forecaster] | None:
        """The newest (or a given) population prior, loaded and checked; None if none.
        With ``owner``, only one that may serve that owner's twins."""
        return load_population(self.store, self.artifacts, version, owner)

    def share_population(self, owner: str, share: bool = True) -> bool:
        """Let ``owner``'s twins be pooled with other sharing owners' for a shared
        population prior (or stop it: priors pooling the owner's twins with others' then
        serve no one). Recorded in the ledger; returns whether anything changed."""
        if not OWNER_NAME_PATTERN.match(owner):
            raise TwinkitError(f"invalid owner name {owner!r}")
        with self.store.write() as conn:
            changed = registry.set_sharing(conn, owner, share, utc_now_iso())
            if changed:
                ledger.append(conn, "population_sharing", None, {"owner": owner, "share": share})
        return changed

    def sharing_owners(self) -> list[str]:
        """The owners who pool their twins for shared population priors."""
        with self.store.read() as conn:
            return sorted(registry.sharing_owners(conn))

    def populations(self) -> list[PopulationVersion]:
        with self.store.read() as conn:
            return registry.populations(conn)

    def fit_cohort(
        self,
        twin_ids: Sequence[str],
        progress: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> tuple[list[FitResult], dict[str, str]]:
        """Fit every twin in turn (``kwargs`` as for :meth:`fit`).

        A twin that cannot be fitted (too little data, no target) does not stop the others:
        it is returned in the second element with the reason.
        """
        results: list[FitResult] = []
        failures: dict[str, str] = {}
        for twin_id in twin_ids:
            try:
                results.append(self.fit(twin_id, **kwargs))
            except (ForecastInputError, NotFoundError) as exc:
                failures[twin_id] = str(exc)
            if progress is not None:
                progress(twin_id)
        return results, failures

    def load_model(self, version: ModelVersion) -> Forecaster:
        """The fitted model of a registry version; its artifact's sha256 is checked."""
        tensors, config = self.artifacts.load(version.sha256)
        return forecaster_class(config["model"]).from_state(tensors, config)

    def version(self, twin_id: str, version: int | None = None) -> ModelVersion:
        """A registry version of the twin's model: the serving one, or the one named."""
        twin = self.get_twin(twin_id)
        key = twin.key
        with self.store.read() as conn:
            chosen = (
                registry.get_version(conn, key, version)
                if version is not None
                else registry.serving(conn, key)
            )
        if chosen is None:
            what = f"version {version}" if version is not None else "serving model"
            raise NotFoundError(f"twin {twin.id!r} has no {what}: run twinkit fit {twin_id}")
        return chosen

    def export_onnx(self, twin_id: str, path: Path | str, version: int | None = None) -> Path:
        """Export the serving (or a given) version's network to ONNX for edge devices
        (see :func:`twinkit.engine.export.export_onnx`)."""
        return export_onnx(self, twin_id, path, version)

    def models(self, twin_id: str) -> list[ModelVersion]:
        key = self.get_twin(twin_id).key
        with self.store.read() as conn:
            return registry.versions(conn, key)

    def predict(
        self,
        twin_id: str,
        horizons: Sequence[int] = (30, 60),
        version: int | None = None,
        as_of: pd.Timestamp | None = None,
    ) -> Forecast:
        """Forecast with the serving (or a named) version from the twin's latest data, or
        from the data up to ``as_of`` (a backtest)."""
        twin = self.get_twin(twin_id)
        chosen = self.version(twin.ref, version)
        model = self.load_model(chosen)
        frame = self.signals(twin.ref)
        if as_of is not None:
            frame = frame.loc[:as_of]
        forecast = model.predict(frame, horizons)
        return replace(forecast, model=chosen.model, version=chosen.version)

    def forecast(self, twin_id: str, horizons: Sequence[int] = (30, 60)) -> ServedForecast:
        """What a service answers: :meth:`predict` from the latest data, except that a
        serving artifact that is broken fails over to the previous good version, else the
        population model, marked degraded and recorded in the ledger."""
        return serve_forecast(self, self.get_twin(twin_id).key, horizons)

    def promote(self, twin_id: str, version: int) -> None:
        """Serve ``version`` by hand (its artifact is checked first)."""
        fitting.promote(self, twin_id, version)

    def rollback(self, twin_id: str) -> int:
        """Serve the version that served before the current one; return its number."""
        return fitting.rollback(self, twin_id)

    # -- ledger -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        with self.store.read() as conn:
            return verify_store(conn, self.artifacts)

    def history(self, twin_id: str | None = None, owner: str | None = None) -> list[LedgerEntry]:
        """Ledger entries, or those that concern one twin (batches and priors spanning it
        included; ``twin_id`` in an entry is the twin's store key). As ``owner`` sees them:
        an entry that names other owners' twins or owners shows only how many there were
        (``other_twins``, ``other_owners``; marked ``redacted``)."""
        key = None if twin_id is None else self.get_twin(twin_id).key
        with self.store.read() as conn:
            entries = ledger.entries(conn)
            if key is not None:
                entries = [
                    e for e in entries if e.twin_id == key or key in e.payload.get("twins", [])
                ]
            if owner is None:
                return entries
            named = {t for e in entries for t in e.payload.get("twins", []) if isinstance(t, str)}
            owner_of = twins.owners_of(conn, named)
        return [_as_seen_by(e, owner, owner_of) for e in entries]

    # -- decision twins (clones) ----------------------------------------------------------

    def clone_queries(
        self, twin_id: str, k: int = 10, strategy: str = "confusion", seed: int = 0
    ) -> list[dict[str, Any]]:
        """The ``k`` items the twin's clone most needs its donor to answer, recorded as
        asked: each with its confusion label and what the clone would answer."""
        from twinkit.engine import clones

        return clones.ask(self, twin_id, k, strategy, seed)

    def clone_answer(self, twin_id: str, path: Path | str) -> IngestResult:
        """Ingest the donor's answers to asked questions (any other row rejects the file)."""
        from twinkit.engine import clones

        return clones.answer(self, twin_id, path)

    def clone_report(self, twin_id: str, seed: int = 0) -> dict[str, Any]:
        """Cross-validated fidelity of the clone and the donor's personal confusion zone."""
        from twinkit.engine import clones

        return clones.report(self, twin_id, seed)
