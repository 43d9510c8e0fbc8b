"""The served forecasts one engine holds until :func:`twinkit.engine.live.flush` writes
them (see :mod:`twinkit.engine.live`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from twinkit.core.forecast import Forecast
from twinkit.core.lru import LRU

#: served forecasts held in memory at most while they wait to be written; older ones go
DEFAULT_LOG_CAPACITY = 50_000


@dataclass(frozen=True)
class Served:
    """One served forecast waiting to be logged: the twin's store key, the version that
    answered, the model's grid step (the width of the bin each horizon forecasts), and the
    live band's scale at each of its horizons (None: the model's own band was served)."""

    twin_key: str
    version: int
    step_min: float
    forecast: Forecast
    band_scales: tuple[float, ...] | None = None


class ForecastLog:
    """Served forecasts waiting for :func:`flush`, and what it needs to remember.

    ``autoflush`` (the default) writes each one as it is recorded; the service turns it
    off and flushes from its monitor thread. If writes fall behind by more than
    ``capacity`` forecasts, the oldest are dropped and counted (``dropped``).
    """

    def __init__(self, autoflush: bool = True, capacity: int = DEFAULT_LOG_CAPACITY) -> None:
        self.autoflush = autoflush
        self.capacity = capacity
        self._pending: list[Served] = []
        self._lock = threading.Lock()
        self.flushing = threading.Lock()  # one flush at a time
        #: (twin key, serving version, seq of the last serving change) -> shadow version
        self.shadows: LRU[tuple[str, int, int], tuple[int | None]] = LRU(10_000)
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def add(self, served: Served) -> None:
        with self._lock:
            self._pending.append(served)
            excess = len(self._pending) - self.capacity
            if excess > 0:
                del self._pending[:excess]
                self.dropped += excess

    def take(self) -> list[Served]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def stats(self) -> dict[str, int]:
        return {
            "pending": len(self),
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
        }
