"""The service's monitor thread: it writes the served forecasts' log off the request path,
and checks the twins whose data changed for drift.

A forecast route only records what it served (in memory, see
:mod:`twinkit.engine.live`); this thread writes those records, with the shadow forecasts
of the version before, every ``flush_s`` seconds, and once more when the server stops.
Every ``check_s`` seconds (``TWINKIT_MONITOR_INTERVAL_S``; 0 turns it off) it runs
:func:`twinkit.engine.monitoring.check` on each twin (state or decision) whose data
changed since its last round; a new detection counts in ``twinkit_drift_detections``
(by stream kind, never by twin), and under a twin's ``refit`` policy it queues a fit job
for the twin's owner, which the job slots run like any other (quotas and turns included).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from twinkit.core.errors import TwinkitError
from twinkit.engine.twin_engine import TwinEngine
from twinkit.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

#: seconds between two writes of the forecast log
FLUSH_INTERVAL_S = 0.25

#: queues a fit job: (twin key, owner, params, twin uid)
SubmitFit = Callable[[str, str, dict[str, object], str], object]


class Monitor:
    """Runs in one daemon thread per server process; :meth:`close` stops it."""

    def __init__(
        self,
        engine: TwinEngine,
        metrics: ServiceMetrics,
        check_s: float = 0.0,
        submit_fit: SubmitFit | None = None,
        flush_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.check_s = check_s
        self.flush_s = flush_s
        self.submit_fit = submit_fit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: the data watermark of each twin at the last check round
        self._seen: dict[str, int | None] = {}
        self._next_check = time.monotonic() + check_s
        # Requests only record; this thread writes.
        engine.context.forecast_log.autoflush = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="twinkit-monitor", daemon=True)
            self._thread.start()

    def tick(self) -> int:
        """Write the waiting forecast records; return the log rows added."""
        book = self.engine.context.forecast_log
        dropped = book.dropped
        added = self.engine.flush_forecast_log()
        self.metrics.forecast_log_rows.inc(added)
        if book.dropped > dropped:
            self.metrics.forecast_log_dropped.inc(book.dropped - dropped)
        return added

    def check_round(self) -> dict[str, int]:
        """Check every twin whose data changed since the last round (the automatic
        rollback's test, then drift); return how many were checked, failed, had new
        detections, got a fit job and were rolled back."""
        counts = {"checked": 0, "failed": 0, "drifted": 0, "refits": 0, "rolled_back": 0}
        for key in self.engine.changed_twins(self._seen):
            try:
                result = self.engine.monitor_check(key, refit=False)
            except TwinkitError as exc:  # a twin without data or gone: the others go on
                counts["failed"] += 1
                log.info("monitor: twin %s not checked: %s", key, exc)
                continue
            counts["checked"] += 1
            if (result.get("rollback") or {}).get("rolled_back_to") is not None:
                counts["rolled_back"] += 1
                self.metrics.rollbacks.inc()
            for detection in result["new"]:
                kind = str(detection["stream"]).split(":")[0]
                self.metrics.drift_detections.labels(kind).inc()
            if result["new"]:
                counts["drifted"] += 1
            # a new detection's refit, or a follow-up while a change is new
            if result.get("refit_since") is not None and self.submit_fit is not None:
                twin = self.engine.get_twin(key)
                try:
                    params = {
                        "model": "auto",
                        "seed": 0,
                        "update": "auto",
                        "since": result["refit_since"],
                    }
                    self.submit_fit(key, twin.owner, params, twin.uid)
                except TwinkitError as exc:  # e.g. the owner's job quota is full
                    log.info("monitor: no refit of %s: %s", key, exc)
                else:
                    counts["refits"] += 1
        return counts

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.tick()
                if self.check_s > 0 and time.monotonic() >= self._next_check:
                    self._next_check = time.monotonic() + self.check_s
                    self.check_round()
            except Exception:  # keep monitoring: the next round may succeed
                log.exception("monitor round failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.tick()
