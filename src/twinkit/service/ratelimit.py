"""Per-token rate limiting: a token bucket per key, in this process only.

Each server process (``twinkit serve --workers N``) keeps its own buckets, so a token may
make up to N times the configured rate across the workers; a limit shared by every worker
would need a shared store (e.g. Redis) and is not built.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_MAX_KEYS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` requests per second on average, ``burst`` at once, per key.

    >>> clock = [0.0]
    >>> limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: clock[0])
    >>> [limiter.take("k") for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> clock[0] = 1.0
    >>> limiter.take("k")
    0.0
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def take(self, key: str) -> float:
        """Spend one request of ``key``: 0.0 if allowed, else the seconds to wait."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_KEYS:
                    self._forget_idle(now)
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that have refilled completely: they hold no information."""
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


def retry_after(wait_s: float) -> str:
    """The Retry-After header: whole seconds, at least 1.

    >>> retry_after(0.2), retry_after(2.5)
    ('1', '3')
    """
    return str(max(1, math.ceil(wait_s)))
