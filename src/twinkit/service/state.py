"""What one app holds: the engine, its settings, metrics, rate limiter, job runner, ingest
pool, monitor and the caches of one worker process (token owners, forecast answers)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from twinkit.engine import TwinEngine
from twinkit.engine.serving import ForecastCache
from twinkit.service.auth import TokenCache
from twinkit.service.ingest_pool import IngestPool
from twinkit.service.jobs import JobRunner
from twinkit.service.metrics import ServiceMetrics
from twinkit.service.monitor import Monitor
from twinkit.service.ratelimit import RateLimiter
from twinkit.service.settings import ServiceSettings


@dataclass
class ServiceState:
    engine: TwinEngine
    settings: ServiceSettings
    metrics: ServiceMetrics
    limiter: RateLimiter
    runner: JobRunner
    #: where batches are decoded and ingested (see ``ingest_pool``)
    ingest: IngestPool
    #: writes the served forecasts' log (see ``monitor``)
    monitor: Monitor
    #: token sha256 -> owner name, trusted for a few seconds (see ``auth``)
    tokens: TokenCache = field(default_factory=TokenCache)
    #: forecast answers (JSON) by what they depend on (see ``engine.serving``)
    forecasts: ForecastCache[bytes] = field(default_factory=ForecastCache)
    _admin_sha256: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        secret = self.settings.admin_token.get_secret_value().encode("utf-8")
        self._admin_sha256 = hashlib.sha256(secret).digest()

    def is_admin_token(self, token: str) -> bool:
        """Constant time: both sides are hashed to the same length first."""
        given = hashlib.sha256(token.encode("utf-8")).digest()
        return hmac.compare_digest(given, self._admin_sha256)
