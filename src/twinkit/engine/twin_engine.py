"""TwinEngine: ingest -> screen -> store + ledger -> fit -> register -> promote -> predict.

A thin facade: it holds one :class:`~twinkit.engine.context.EngineContext` and calls the
lifecycle's functions on it (``twin_records``, ``ingest``, ``retraction``, ``reads``,
``fitting``, ``population``, ``serving``, ``export``, ``clones``, ``robustness``,
``ledger_view``), none of which imports this module. The CLI and the service reach the
store only through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd

from twinkit import importers
from twinkit.core.forecast import Forecast
from twinkit.core.lazy import require
from twinkit.core.progress import ProgressFn
from twinkit.core.timewindow import TimeWindow
from twinkit.core.twin import Channel, MetadataLimits, Twin, TwinKind
from twinkit.data.importers import read_table
from twinkit.engine import (
    clone_live,
    clone_questions,
    clone_versions,
    cohort,
    fitting,
    forgetting,
    importing,
    ingest,
    ledger_view,
    live,
    monitoring,
    population,
    reads,
    retraction,
    robustness,
    serving,
    twin_records,
)
from twinkit.engine.context import EngineContext
from twinkit.engine.export import export_onnx
from twinkit.engine.fitting import AUTO, FitResult
from twinkit.engine.forgetting import ForgetResult
from twinkit.engine.ingest import IngestResult
from twinkit.engine.jobs import Jobs
from twinkit.engine.model_cache import ModelCache
from twinkit.engine.owners import Owners
from twinkit.engine.population import DEFAULT_POPULATION_MODEL, PopulationResult
from twinkit.engine.retraction import RetractResult
from twinkit.engine.serving import ForecastKey, ServedForecast
from twinkit.engine.sessions import Sessions
from twinkit.importers.nightscout import fetch as fetch_nightscout
from twinkit.models.base import Forecaster
from twinkit.screen import DEFAULT_DECISION_SCREENS, DEFAULT_SIGNAL_SCREENS, FutureTime, Screen
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store
from twinkit.store.integrity import VerifyReport
from twinkit.store.ledger import LedgerEntry
from twinkit.store.model_versions import ModelVersion, PopulationVersion, ServingHead


class TwinEngine:
    """Runs a twin's lifecycle against one store.

    ``store`` is a :class:`Store` or its URL (``artifacts``: the model folder, for a URL;
    beside a SQLite file by default).

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
        artifacts: Path | None = None,
    ) -> None:
        opened = store if isinstance(store, Store) else Store(store, artifacts=artifacts)
        window = time_window or TimeWindow()
        # Readings from the future are held whatever other screens a caller chose: stored,
        # they would become the twin's "latest" data for good.
        future = [s for s in signal_screens if isinstance(s, FutureTime)]
        #: what every lifecycle function works on
        self.context = EngineContext(
            store=opened,
            artifacts=ArtifactStore(opened.artifacts_dir),
            time_window=window,
            signal_screens=(
                tuple(signal_screens) if future else (FutureTime(window), *signal_screens)
            ),
            decision_screens=tuple(decision_screens),
        )
        self.owners = Owners(opened)  # who may use the service, by token
        self.sessions = Sessions(opened)  # the web pages' logins
        self.jobs = Jobs(opened)  # background work the service runs

    @property
    def store(self) -> Store:
        return self.context.store

    @property
    def artifacts(self) -> ArtifactStore:
        return self.context.artifacts

    @property
    def time_window(self) -> TimeWindow:
        """When a reading may have been taken: earlier rejects a batch, later is held."""
        return self.context.time_window

    @property
    def signal_screens(self) -> tuple[Screen, ...]:
        return self.context.signal_screens

    @property
    def decision_screens(self) -> tuple[Screen, ...]:
        return self.context.decision_screens

    @property
    def serving_models(self) -> ModelCache:
        """The models this process keeps for serving (see ``model_cache``)."""
        return self.context.serving_models

    @serving_models.setter
    def serving_models(self, cache: ModelCache) -> None:
        self.context.serving_models = cache

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
        """A new twin of ``owner`` (see :func:`twinkit.engine.twin_records.create_twin`):
        ids are unique per owner, whatever the case of their letters."""
        return twin_records.create_twin(
            self.context, twin_id, kind, owner, metadata, channels, metadata_limits
        )

    def get_twin(self, twin_id: str) -> Twin:
        """The twin ``twin_id`` names: ``owner/id``, or a bare id that one owner uses (in a
        store of one owner, every id). :class:`AmbiguousTwinError` if several owners do."""
        return reads.get_twin(self.context, twin_id)

    def is_twin(self, twin_id: str, uid: str) -> bool:
        """Whether the twin ``twin_id`` names now is the one whose uid is ``uid``."""
        return twin_records.is_twin(self.context, twin_id, uid)

    def list_twins(self, owner: str | None = None) -> list[Twin]:
        return twin_records.list_twins(self.context, owner)

    def twin_summary(self, twin_id: str) -> dict[str, Any]:
        return twin_records.twin_summary(self.context, twin_id)

    def delete_twin(self, twin_id: str) -> list[int]:
        """Delete a twin and its data (the ledger keeps its history); the ids of the jobs
        it cancelled."""
        return twin_records.delete_twin(self.context, twin_id)

    # -- data ---------------------------------------------------------------------------

    def ingest(
        self,
        data: Path | str | pd.DataFrame,
        twin: str | None = None,
        source: str | None = None,
        owner: str | None = None,
    ) -> IngestResult:
        """Validate, screen and store one batch with its ledger entry, atomically (see
        :func:`twinkit.engine.ingest.ingest`); any invalid row stores nothing."""
        return ingest.ingest(self.context, data, twin, source, owner)

    def quarantine(
        self, twin_id: str | None = None, include_released: bool = False
    ) -> list[dict[str, Any]]:
        """Held rows: of one twin, or all (``twin_id`` in each is the twin's store key)."""
        key = None if twin_id is None else self.get_twin(twin_id).key
        return ingest.quarantine(self.context, key, include_released)

    def import_data(
        self,
        format: str,
        paths: Path | str | Sequence[Path | str],
        twin: str,
        owner: str | None = None,
        *,
        rename: Mapping[str, str] | None = None,
        only: Sequence[str] | None = None,
        **options: Any,
    ) -> importing.ImportResult:
        """Import a device or platform export (``twinkit.importers.FORMATS``: dexcom, libre,
        nightscout, fhir, fitbit, apple-health) into the state twin ``twin``: units are
        converted to the twin's, channels it does not declare are left out, and the rows
        are validated, screened and stored with their ledger entry, all or nothing.
        ``options`` are the format's (``tz="Europe/Berlin"``, ``unit``, ``person``, ...);
        ``rename`` maps the importer's channel names to the twin's."""
        files = [str(paths)] if isinstance(paths, Path | str) else [str(p) for p in paths]
        readings = importers.read(format, files if len(files) > 1 else files[0], **options)
        readings = importing.renamed(readings, rename or {})
        recorded = {k: v for k, v in options.items() if k != "progress"}
        return importing.import_readings(
            self.context, readings, twin, owner, only=only, options={**recorded, "rename": rename}
        )

    def import_nightscout(
        self,
        url: str,
        twin: str,
        owner: str | None = None,
        *,
        token: str | None = None,
        api_secret: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        rename: Mapping[str, str] | None = None,
        only: Sequence[str] | None = None,
    ) -> importing.ImportResult:
        """Import a Nightscout site's entries, treatments and devicestatus (by default the
        last 90 days) with an access token or the API secret; as :meth:`import_data`."""
        readings = fetch_nightscout(
            url, token=token, api_secret=api_secret, since=since, until=until
        )
        readings = importing.renamed(readings, rename or {})
        options = {"url": url, "since": since and since.isoformat(), "rename": rename}
        return importing.import_readings(
            self.context, readings, twin, owner, only=only, options=options
        )

    def release(self, quarantine_ids: Sequence[int]) -> int:
        """Store quarantined rows after all; rows timed in the future stay held."""
        return ingest.release(self.context, quarantine_ids)

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
        """Take rows out of a twin's data, recorded in the ledger as a retraction (see
        :mod:`twinkit.engine.retraction`). The next fit does not see the rows."""
        return retraction.retract(
            self.context, twin_id, reason, batch_id, start, end, channels, items
        )

    def signals(self, twin_id: str, channels: Sequence[str] | None = None) -> pd.DataFrame:
        """A twin's stored signals as a wide UTC-indexed frame, a column per channel."""
        return reads.signals(self.context, twin_id, channels)

    def signals_between(
        self,
        twin_id: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        channels: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """A twin's stored signals with ``start <= time <= end`` in long form."""
        return reads.signals_between(self.context, twin_id, start, end, channels)

    def decisions(self, twin_id: str) -> pd.DataFrame:
        """A decision twin's stored decisions: ``item_id``, ``label``, ``features`` (JSON)."""
        return reads.decisions(self.context, twin_id)

    def default_target(self, twin: Twin, frame: pd.DataFrame) -> str:
        return reads.default_target(twin, frame)

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
        update: str | None = None,
        since: pd.Timestamp | str | None = None,
    ) -> FitResult:
        """Fit a new version on the twin's earlier data, score it on its recent data, and
        promote it only if it is not worse there than the serving version (see
        :func:`twinkit.engine.fitting.fit`; ``update`` brings the serving version up to
        date instead, with the data from ``since`` as the new). A decision twin's fit
        trains its clone (see :func:`twinkit.engine.clone_versions.fit_clone`; ``seed`` and
        ``twin_uid`` apply)."""
        return cohort.fit_twin(
            self.context,
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
        self,
        twin_ids: Sequence[str],
        progress: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> tuple[list[FitResult], dict[str, str]]:
        """Fit every twin in turn; those that cannot be fitted come back with the reason."""
        return cohort.fit_cohort(self.context, twin_ids, progress, **kwargs)

    def fit_population(
        self,
        model: str = DEFAULT_POPULATION_MODEL,
        twin_ids: Sequence[str] | None = None,
        target: str = "glucose",
        seed: int = 0,
        params: dict[str, Any] | None = None,
        meta: bool = False,
        owner: str | None = None,
        progress: ProgressFn | None = None,
        federation: population.Federation | None = None,
    ) -> PopulationResult:
        """Train a population prior on state twins (their training parts only): those
        named, else ``owner``'s, pooled with other owners' only if all of them share, or
        trained across sites with ``federation`` (see
        :func:`twinkit.engine.population.fit_population`)."""
        return population.fit_population(
            self.store,
            self.artifacts,
            model,
            twin_ids,
            target,
            seed,
            params=params,
            meta=meta,
            window=self.time_window,
            progress=progress,
            owner=owner,
            federation=federation,
        )

    def priors_of(self, twin_id: str) -> list[int]:
        """The serving population priors that learned from this twin (deleted or not)."""
        return forgetting.priors_of(self.store, twin_id)

    def forget(self, twin_id: str) -> ForgetResult:
        """Retrain every population prior that learned from this twin without it, from
        the last checkpoint before it joined, and withdraw the old ones
        (:func:`twinkit.engine.forgetting.forget`)."""
        return forgetting.forget(self.store, self.artifacts, twin_id, self.time_window)

    def fit_population_deployed(
        self, superlink: str, plan: Any, owner: str = "local", root_certificates: Path | None = None
    ) -> PopulationResult:
        """Run ``plan`` (a :class:`twinkit.federated.Plan`) on the Flower SuperLink at
        ``superlink`` (host:port; TLS checked against ``root_certificates``, else in the
        clear), whose SuperNodes each read their own store, and register the result here as
        ``owner``'s population prior (:func:`twinkit.engine.federation.fit_deployed`)."""
        federation = require("twinkit.engine.federation", "a federated population model")
        connection = federation.Connection(superlink, root_certificates)
        return cast(
            PopulationResult,
            federation.fit_deployed(self.store, self.artifacts, connection, plan, owner),
        )

    def population(
        self, version: int | None = None, owner: str | None = None
    ) -> tuple[PopulationVersion, Forecaster] | None:
        """The newest (or a given) population prior, loaded and checked; None if none.
        With ``owner``, only one that may serve that owner's twins."""
        return population.load_population(self.store, self.artifacts, version, owner)

    def populations(self) -> list[PopulationVersion]:
        return population.populations(self.store)

    def share_population(self, owner: str, share: bool = True) -> bool:
        """Pool ``owner``'s twins with other sharing owners' for shared priors, or stop;
        recorded in the ledger. Whether anything changed."""
        return population.share_population(self.store, owner, share)

    def sharing_owners(self) -> list[str]:
        """The owners who pool their twins for shared population priors."""
        return population.sharing_owners(self.store)

    def load_model(self, version: ModelVersion) -> Forecaster:
        """The fitted model of a registry version; its artifact's sha256 is checked."""
        return reads.load_model(self.context, version)

    def version(self, twin_id: str, version: int | None = None) -> ModelVersion:
        """A registry version of the twin's model: the serving one, or the one named."""
        return reads.version(self.context, twin_id, version)

    def models(self, twin_id: str) -> list[ModelVersion]:
        return reads.versions(self.context, twin_id)

    def export_onnx(self, twin_id: str, path: Path | str, version: int | None = None) -> Path:
        """Export the serving (or a given) version's network to ONNX for edge devices
        (see :func:`twinkit.engine.export.export_onnx`)."""
        return export_onnx(self.context, twin_id, path, version)

    def promote(self, twin_id: str, version: int) -> None:
        """Serve ``version`` by hand (its artifact is checked first)."""
        fitting.promote(self.context, twin_id, version)

    def rollback(self, twin_id: str) -> int:
        """Serve the version that served before the current one; return its number."""
        return fitting.rollback(self.context, twin_id)

    # -- serving ------------------------------------------------------------------------

    def predict(
        self,
        twin_id: str,
        horizons: Sequence[int] = (30, 60),
        version: int | None = None,
        as_of: pd.Timestamp | None = None,
    ) -> Forecast:
        """Forecast with the serving (or a named) version from the twin's latest data, or
        from the data up to ``as_of`` (a backtest)."""
        return serving.predict(self.context, twin_id, horizons, version, as_of)

    def forecast(self, twin_id: str, horizons: Sequence[int] = (30, 60)) -> ServedForecast:
        """What a service answers: :meth:`predict` from the latest data, except that a
        serving artifact that is broken fails over to the previous good version, else the
        population model, marked degraded and recorded in the ledger."""
        return serving.forecast(self.context, twin_id, horizons)

    def serving_head(self, owner: str, twin_id: str) -> ServingHead | None:
        """``owner``'s twin ``twin_id`` as the forecast route needs it, by one statement;
        None if ``owner`` has no such twin (see :func:`twinkit.engine.serving.serving_head`)."""
        return serving.serving_head(self.context, owner, twin_id)

    def forecast_key(self, head: ServingHead, horizons: Sequence[int]) -> ForecastKey | None:
        """The key a forecast of ``head`` is cached by, or None if it cannot be cached."""
        return serving.forecast_key(self.context, head, horizons)

    def forecast_head(self, head: ServingHead, horizons: Sequence[int]) -> ServedForecast:
        """:meth:`forecast` of the twin ``head`` describes, if it is still that owner's
        (else :class:`~twinkit.engine.serving.TwinChangedError`)."""
        return serving.serve_forecast(self.context, head.twin_id, horizons, checked=head)

    def health(self, twin_id: str, window_h: float = live.DEFAULT_WINDOW_H) -> dict[str, Any]:
        """How the twin's served forecasts did once their readings came: live RMSE, MAE,
        bias and 90 % coverage per version and horizon, the previous version's in shadow,
        and the holdout figures the serving version was promoted with. For a decision
        twin, how its clones agreed with the donor's answers as they came
        (:func:`twinkit.engine.clone_live.donor_health`; ``window_h`` does not apply)."""
        twin = self.get_twin(twin_id)
        if twin.kind is TwinKind.DECISION:
            return clone_live.donor_health(self.context, twin)
        live.flush(self.context)
        return {"kind": "state", **live.health(self.context, twin_id, window_h)}

    def monitor_check(
        self,
        twin_id: str,
        window_h: float = monitoring.DEFAULT_CHECK_WINDOW_H,
        detector: str | None = None,
        seed: int = 0,
        refit: bool = True,
    ) -> dict[str, Any]:
        """Look for drift in the twin's streams, record new detections in the ledger, set
        a state twin's live band (its 90 % band rescaled from its scored forecasts), and
        under the ``refit`` policy fit again (see :mod:`twinkit.engine.monitoring`)."""
        live.flush(self.context)
        return monitoring.run(self.context, twin_id, window_h, detector, seed, refit)

    def monitor_policy(self, twin_id: str) -> dict[str, str]:
        """What the monitor does on drift for this twin: ``policy`` and ``detector``."""
        return monitoring.policy(self.context, twin_id)

    def set_monitor_policy(
        self, twin_id: str, policy: str, detector: str | None = None
    ) -> dict[str, str]:
        """Set it: ``alert`` (the default) or ``refit``, and the detector (by default the
        twin kind's); recorded in the ledger."""
        return monitoring.set_policy(self.context, twin_id, policy, detector)

    def changed_twins(self, seen: dict[str, int | None]) -> list[str]:
        """Twins whose data changed since ``seen`` (updated in place)."""
        return monitoring.changed_twins(self.context, seen)

    def flush_forecast_log(self) -> int:
        """Write the served forecasts still waiting to be logged; return the rows added."""
        return live.flush(self.context)

    # -- ledger -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        return ledger_view.verify(self.context)

    def history(self, twin_id: str | None = None, owner: str | None = None) -> list[LedgerEntry]:
        """Ledger entries, or those that concern one twin; as ``owner`` sees them, other
        owners' twins and names only as counts (see :mod:`twinkit.engine.ledger_view`)."""
        return ledger_view.history(self.context, twin_id, owner)

    # -- decision twins (clones) ----------------------------------------------------------

    def clone_queries(
        self, twin_id: str, k: int = 10, strategy: str = "confusion", seed: int = 0
    ) -> list[dict[str, Any]]:
        """The ``k`` items the twin's clone most needs its donor to answer, recorded as
        asked: each with its confusion label and what the clone would answer."""
        return clone_questions.ask(self.context, twin_id, k, strategy, seed)

    def clone_waiting(self, twin_id: str) -> list[dict[str, Any]]:
        """The questions asked and not answered yet, oldest first."""
        return clone_questions.waiting(self.context, twin_id)

    def clone_answer(self, twin_id: str, path: Path | str) -> IngestResult:
        """Ingest the donor's answers to asked questions (any other row rejects the file)."""
        return clone_questions.answer(self.context, twin_id, path)

    def clone_answer_labels(
        self, twin_id: str, labels: Sequence[tuple[str, str]], source: str
    ) -> IngestResult:
        """Ingest the donor's labels for waiting questions, as ``(item_id, label)`` pairs."""
        return clone_questions.answer_labels(self.context, twin_id, labels, source)

    def clone_update(self, twin_id: str, **params: Any) -> dict[str, Any]:
        """Fit a new clone version on the answers so far (through the promotion gate), then
        top up the questions and guess them with the serving version (see
        :func:`twinkit.engine.clone_versions.update_clone`): the service's clone job."""
        return clone_versions.update_clone(self.context, twin_id, **params)

    def decide(
        self, twin_id: str, items: pd.DataFrame | Path | str, source: str | None = None
    ) -> clone_versions.Decisions:
        """What the decision twin's serving clone would choose for each item (``item_id``
        and the features it was trained on; a frame or a CSV/Parquet/JSON-lines file), with
        the probability and whether the item lies in the donor's confusion zone; a broken
        serving artifact fails over as forecasts do (see
        :mod:`twinkit.engine.clone_versions`)."""
        if not isinstance(items, pd.DataFrame):
            source = source or str(items)
            items = read_table(Path(items))
        return clone_versions.decide(self.context, twin_id, items, source or "<items>")

    def clone_labels(self, owner: str) -> list[str]:
        """The labels the donors of ``owner``'s decision twins have given, sorted: those a
        clone of ``owner``'s may answer."""
        frame = clone_questions.decisions(self.context, owner)
        return sorted(frame["label"].astype(str).unique()) if not frame.empty else []

    def clone_report(
        self,
        twin_id: str,
        seed: int = 0,
        truth: Mapping[str, str] | None = None,
        every: int = 100,
    ) -> dict[str, Any]:
        """Cross-validated fidelity of the clone, the donor's personal confusion zone (and
        how it moved, per ``every`` answers), where the clone disagrees with the donor and,
        with ``truth``, the advice figures (see
        :func:`twinkit.engine.clone_questions.report`)."""
        return clone_questions.report(self.context, twin_id, seed, truth, every=every)

    def robustness_items(self, twin_id: str) -> int:
        """How many labelled items a robustness report of the twin would use; refuses at
        once a twin it cannot be made for (see :mod:`twinkit.engine.robustness`)."""
        return len(robustness.labelled_items(self.context, twin_id)[1])

    def robustness_report(self, twin_id: str, **params: Any) -> dict[str, Any]:
        """The robustness report of the twin's clone (see
        :func:`twinkit.engine.robustness.clone_robustness`)."""
        return robustness.clone_robustness(self.context, twin_id, **params)
