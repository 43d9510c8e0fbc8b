"""A bounded, thread-safe least-recently-used map: the one mechanism behind the service's
per-process caches (models, forecasts, tokens)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Up to ``capacity`` values by key (0: none kept), the least recently used out.

    :meth:`get` may be given ``keep``: an entry it rejects is dropped and counts as a miss
    (a model whose file changed, a token past its time).

    >>> cache = LRU[str, str](capacity=1)
    >>> cache.put("a", "A"); cache.put("b", "B")
    >>> cache.get("a"), cache.get("b"), cache.stats()
    (None, 'B', {'hits': 1, 'misses': 1, 'size': 1})
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()  # filled from a thread pool, read on the event loop
        self.hits = 0
        self.misses = 0

    def get(self, key: K, keep: Callable[[V], bool] | None = None) -> V | None:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None and keep is not None and not keep(found):
                del self._entries[key]
                found = None
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def peek(self, key: K) -> V | None:
        """The value under ``key``, or None, without counting or reordering."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._entries)}
