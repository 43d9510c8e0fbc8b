"""A job queue that takes turns across owners: one owner's flood waits behind itself only."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """First come, first served within an owner; across owners, the one served longest ago
    (or never) goes first.

    An owner with fifteen jobs waiting and an owner with one are served one, one, one...:
    the second owner's job is taken as soon as a worker is free, not after the fifteen,
    even when the first owner's job was taken the moment before the others were queued.

    >>> q: FairQueue[str] = FairQueue()
    >>> for job in ["a1", "a2", "a3"]:
    ...     q.put("alice", job)
    >>> q.put("bob", "b1")
    >>> [q.get(), q.get(), q.get(), q.get()]
    ['a1', 'b1', 'a2', 'a3']
    """

    def __init__(self) -> None:
        self._waiting: dict[str, deque[T]] = {}  # by first arrival
        self._served: dict[str, int] = {}  # owner -> when it was last served (a tick)
        self._tick = 0
        self._ready = threading.Condition()
        self._closed = False

    def put(self, owner: str, item: T) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the queue is closed")
            self._waiting.setdefault(owner, deque()).append(item)
            self._ready.notify()

    def get(self) -> T | None:
        """The next item in turn, waiting for one; None once the queue is closed."""
        with self._ready:
            self._ready.wait_for(lambda: self._waiting or self._closed)
            if self._closed:
                return None
            owner = min(self._waiting, key=lambda o: self._served.get(o, -1))
            items = self._waiting[owner]
            item = items.popleft()
            if not items:
                del self._waiting[owner]
            self._tick += 1
            self._served[owner] = self._tick
            return item

    def close(self) -> list[T]:
        """Wake every waiting ``get`` with None; return the items that were never taken."""
        with self._ready:
            self._closed = True
            left = [item for items in self._waiting.values() for item in items]
            self._waiting.clear()
            self._ready.notify_all()
        return left

    def __len__(self) -> int:
        with self._ready:
            return sum(len(items) for items in self._waiting.values())
