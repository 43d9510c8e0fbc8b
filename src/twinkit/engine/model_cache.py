"""Fitted models kept in memory for serving, re-checked against their artifact on every use.

Loading a model reads its artifact, checks the sha256 and rebuilds the model: cheap once,
costly on every forecast. :class:`ModelCache` keeps the rebuilt models of one process (a
bounded LRU, by artifact sha256) and re-uses one only while its artifact file is exactly as
it was when it was verified: same inode, size, modification and change times. Replacing,
rewriting, truncating, touching (``os.utime`` moves the change time) or removing the file
drops the entry, and the next use loads and checks the artifact again, so a damaged
artifact still fails its check and the service fails over (see ``serving``).

A file changed within the same filesystem timestamp tick as its verification could keep
its times; as git does for its index ("racy git"), a file changed less than ``settle_s``
seconds before it was verified is not cached but checked again on the next use.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from twinkit.core.lru import LRU
from twinkit.models.base import Forecaster, forecaster_class
from twinkit.store.artifacts import ArtifactStore

#: models kept per process by default; a per-twin linear model takes a few kB, a neural
#: one up to a few MB
DEFAULT_CAPACITY = 1024
#: a file changed more recently than this before its check is checked again next time
DEFAULT_SETTLE_S = 2.0


@dataclass(frozen=True)
class FileState:
    """What a file's ``stat`` says that changes whenever its bytes do."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: os.PathLike[str] | str) -> FileState:
        st = os.stat(path)
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def changed_ns(self) -> int:
        return max(self.mtime_ns, self.ctime_ns)


@dataclass(frozen=True)
class _Entry:
    model: Forecaster
    state: FileState


class ModelCache:
    """Models loaded from ``artifacts`` by sha256, up to ``capacity`` of them (0: none kept).

    Callers share the cached objects: they must only predict with them, never fit them.

    >>> import pathlib, tempfile
    >>> import pandas as pd
    >>> from twinkit.models.persistence import Persistence
    >>> store = ArtifactStore(pathlib.Path(tempfile.mkdtemp()))
    >>> idx = pd.date_range("2026-01-01", periods=60, freq="5min", tz="UTC")
    >>> model = Persistence(max_horizon_min=30).fit(pd.DataFrame({"glucose": range(60)}, idx))
    >>> sha = store.save(*model.get_state())
    >>> cache = ModelCache(store, settle_s=0.0)
    >>> cache.load(sha) is cache.load(sha), cache.stats()
    (True, {'hits': 1, 'misses': 1, 'size': 1})
    """

    def __init__(
        self,
        artifacts: ArtifactStore,
        capacity: int = DEFAULT_CAPACITY,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        if settle_s < 0:
            raise ValueError("settle_s must not be negative")
        self.artifacts = artifacts
        self.settle_ns = int(settle_s * 1e9)
        self._models = LRU[str, _Entry](capacity)

    def load(self, sha256: str) -> Forecaster:
        """The model of artifact ``sha256``; loading it raises as ``ArtifactStore.load``
        does (:class:`~twinkit.core.errors.IntegrityError` for a missing or changed file)."""
        path = self.artifacts.path(sha256)
        try:
            before: FileState | None = FileState.of(path)
        except OSError:
            before = None  # gone or unreadable: the load below says what is wrong
        entry = self._models.get(sha256, keep=lambda e: e.state == before)
        if entry is not None:
            return entry.model
        verified_at = time.time_ns()
        tensors, config = self.artifacts.load(sha256)  # reads the bytes and checks them
        model = forecaster_class(config["model"]).from_state(tensors, config)
        if before is not None and self._settled(before, verified_at, path):
            self._models.put(sha256, _Entry(model, before))
        return model

    def verified_state(self, sha256: str) -> FileState | None:
        """The artifact file's state now, if this cache holds its model verified in exactly
        that state (the next :meth:`load` would be a hit), else None. Something derived
        from the model alone, such as a forecast, may be re-used while this stays the same.
        """
        entry = self._models.peek(sha256)
        if entry is None:
            return None
        try:
            now = FileState.of(self.artifacts.path(sha256))
        except OSError:
            return None
        return now if now == entry.state else None

    def _settled(self, before: FileState, verified_at: int, path: os.PathLike[str]) -> bool:
        """Whether the checked bytes are the ones ``before`` describes, for good: the file
        did not change while it was read, nor shortly before (see module)."""
        try:
            after = FileState.of(path)
        except OSError:
            return False
        return after == before and verified_at - before.changed_ns() >= self.settle_ns

    def clear(self) -> None:
        self._models.clear()

    def stats(self) -> dict[str, int]:
        return self._models.stats()
