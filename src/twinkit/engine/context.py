"""What every lifecycle function works on: one store, its artifacts, the caches and the
settings of one engine. The modules of ``engine/`` are functions on an
:class:`EngineContext`; :class:`~twinkit.engine.twin_engine.TwinEngine` is a thin facade
that holds one and calls them, so no module here imports the facade."""

from __future__ import annotations

from dataclasses import dataclass, field

from twinkit.core.timewindow import TimeWindow
from twinkit.engine.forecast_book import ForecastLog
from twinkit.engine.model_cache import ModelCache
from twinkit.screen import Screen
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store


@dataclass
class EngineContext:
    """The store (``store``), the model artifacts beside it (``artifacts``), when a reading
    may have been taken (``time_window``), the screens ingest runs, and the models this
    process keeps for serving (``serving_models``), and the served forecasts waiting to be
    logged (``forecast_log``)."""

    store: Store
    artifacts: ArtifactStore
    time_window: TimeWindow
    signal_screens: tuple[Screen, ...]
    decision_screens: tuple[Screen, ...]
    serving_models: ModelCache = field(init=False)
    forecast_log: ForecastLog = field(init=False)

    def __post_init__(self) -> None:
        self.serving_models = ModelCache(self.artifacts)
        self.forecast_log = ForecastLog()
