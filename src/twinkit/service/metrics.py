"""Prometheus metrics of one app, on its own registry (two apps in one process never mix).

With ``twinkit serve --workers N`` (N > 1) the workers share prometheus-client's
multiprocess mode: each writes its counts to files in ``PROMETHEUS_MULTIPROC_DIR`` (a
fresh directory that ``serve`` makes and removes, unless that variable is set already),
and a scrape of ``/metrics``, whichever worker answers it, reads the sum over all of them.
Every metric here is a counter or a histogram, which add up across processes. In that
mode the counts live per process, not per registry: one app per process, as ``serve``
runs them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

#: where prometheus-client's multiprocess mode keeps each process's counts
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_FIT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class ServiceMetrics:
    """Every metric the service exports. Routes are labelled by template, never raw path
    (``/v1/twins/{twin_id}``), so a twin id never becomes a label."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "twinkit_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "twinkit_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # The labelled children of the two per-request metrics, by their labels: looking
        # them up in prometheus-client takes a lock and builds a key on every request.
        self._request_counts: dict[tuple[str, str, int], Any] = {}
        self._request_latency: dict[tuple[str, str], Any] = {}
        self.rows_ingested = Counter(
            "twinkit_rows_ingested", "Rows stored by ingest.", ["kind"], registry=r
        )
        self.rows_quarantined = Counter(
            "twinkit_rows_quarantined", "Rows held in quarantine at ingest.", ["kind"], registry=r
        )
        self.rate_limited = Counter(
            "twinkit_rate_limited", "Requests refused with 429 (too many).", registry=r
        )
        self.fits_started = Counter("twinkit_fits_started", "Fit jobs started.", registry=r)
        self.fits_finished = Counter(
            "twinkit_fits_finished",
            "Fit jobs ended, by outcome (done, failed).",
            ["outcome"],
            registry=r,
        )
        self.fit_duration = Histogram(
            "twinkit_fit_duration_seconds",
            "Wall time of a fit job's process, by outcome.",
            ["outcome"],
            buckets=_FIT_BUCKETS,
            registry=r,
        )
        self.promotions = Counter(
            "twinkit_promotions", "Fitted versions promoted to serving.", registry=r
        )
        self.promotions_refused = Counter(
            "twinkit_promotions_refused",
            "Fitted versions not promoted (worse than serving).",
            registry=r,
        )
        self.rollbacks = Counter(
            "twinkit_rollbacks", "Rollbacks to an earlier version.", registry=r
        )
        lookups = Counter(
            "twinkit_forecast_cache_lookups",
            "Forecast requests of a twin that exists, by whether this worker's forecast "
            "cache held the answer (hit) or it was computed (miss).",
            ["result"],
            registry=r,
        )
        #: indexed by hit (True) or miss (False)
        self.forecast_cache = {True: lookups.labels("hit"), False: lookups.labels("miss")}
        self.degraded_predictions = Counter(
            "twinkit_degraded_predictions",
            "Forecasts answered by a fallback because the serving version could not answer, "
            "by what answered (twin: an earlier version; population).",
            ["source"],
            registry=r,
        )

        self.forecast_log_rows = Counter(
            "twinkit_forecast_log_rows",
            "Rows (one per horizon) written to the served forecasts' log, shadows included.",
            registry=r,
        )
        self.forecast_log_dropped = Counter(
            "twinkit_forecast_log_dropped",
            "Served forecasts not logged because the log's writes fell too far behind.",
            registry=r,
        )

        self.drift_detections = Counter(
            "twinkit_drift_detections",
            "Drift detections the monitor recorded, by stream (residuals, misses, input, "
            "agreement).",
            ["stream"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text a Prometheus scrape reads: the sum over every worker process in
        multiprocess mode (see module), else this app's own counts."""
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            combined = CollectorRegistry()
            MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(combined)
        return generate_latest(self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (labels: method, route template)."""
        count = self._request_counts.get((method, route, status))
        if count is None:
            count = self.requests.labels(method, route, str(status))
            self._request_counts[(method, route, status)] = count
        latency = self._request_latency.get((method, route))
        if latency is None:
            latency = self.latency.labels(method, route)
            self._request_latency[(method, route)] = latency
        count.inc()
        latency.observe(seconds)
