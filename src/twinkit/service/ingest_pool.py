"""Batches are decoded and ingested in a separate process, not in the worker that answers.

An upload or a JSON batch costs a worker tens of milliseconds of Python (decoding,
validation, screens, hashing, the ledger): run in the worker's thread pool, that work holds
the GIL that the event loop needs to answer other owners' cached forecasts, so one owner's
uploads raised everyone's latency (issue #16's two-tenant benchmark: p99 2.3x with uploads
alone). Here the work runs in an ingest process ("spawn", its own engine on the same
store): the worker only awaits the answer. The store's write transaction keeps it atomic
as before; the process runs at a slightly lower CPU priority than the worker
(``TWINKIT_INGEST_NICENESS``, 5), so bulk writes yield the cores to the requests that
answer (measured: B's p99 under A's flood 7.5-7.7 ms against 8.5-10.1 ms at equal
priority). If the process dies mid-batch, the transaction is rolled back and the caller
gets 503 (nothing stored), and the next batch starts a new process.

One pool per server process, shared by every app in it and by every store (the child keeps
an engine per store URL, the few last used: ``worker.ingest_upload``). ``processes=0``
ingests in the worker's threads instead (``TWINKIT_INGEST_PROCESSES=0``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pandas as pd
from starlette.concurrency import run_in_threadpool

from twinkit.engine import TwinEngine
from twinkit.engine.ingest import IngestResult
from twinkit.service.errors import ApiError
from twinkit.service.logs import LOGGER_NAME
from twinkit.service.worker import (
    UploadLimits,
    ingest_frame,
    ingest_upload,
    lower_own_priority,
    read_upload,
    ready,
)

log = logging.getLogger(LOGGER_NAME)

DIED = (
    "the ingest process stopped before it answered; nothing of the batch was stored: send it again"
)


# -- the server's side ----------------------------------------------------------------------

_pools: dict[tuple[int, int], ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(processes: int, niceness: int) -> ProcessPoolExecutor:
    with _pools_lock:
        pool = _pools.get((processes, niceness))
        if pool is None:
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=context,
                initializer=lower_own_priority,
                initargs=(niceness,),
            )
            _pools[(processes, niceness)] = pool
        return pool


def _forget(pool: ProcessPoolExecutor) -> None:
    """Drop a broken pool, so that the next batch starts a new one."""
    with _pools_lock:
        for key, known in list(_pools.items()):
            if known is pool:
                del _pools[key]
    pool.shutdown(wait=False, cancel_futures=True)


class IngestPool:
    """Where an app's batches are ingested: ``processes`` ingest processes running
    ``niceness`` below this process's CPU priority (shared with the other apps of this
    server process that ask for the same), or the worker's threads when ``processes`` is 0.
    """

    def __init__(self, engine: TwinEngine, processes: int, niceness: int = 0) -> None:
        self.engine = engine
        self.processes = processes
        self.niceness = niceness

    def warm(self) -> None:
        """Start the processes now (a child imports the libraries: seconds), not at the
        first batch. Does not wait."""
        if self.processes:
            try:
                _pool(self.processes, self.niceness).submit(ready)
            except BrokenProcessPool:
                _forget(_pool(self.processes, self.niceness))  # the first batch starts another

    async def upload(
        self, raw: bytes, name: str, source: str, twin: str, limits: UploadLimits
    ) -> IngestResult:
        """Decode and ingest an upload (see :func:`ingest_upload`)."""
        if not self.processes:
            return await run_in_threadpool(self._upload_here, raw, name, source, twin, limits)
        return await self._run(ingest_upload, raw, name, source, twin, limits)

    async def rows(self, frame: pd.DataFrame, twin: str, source: str) -> IngestResult:
        """Ingest a batch of rows (see :func:`ingest_frame`)."""
        if not self.processes:
            return await run_in_threadpool(self.engine.ingest, frame, twin=twin, source=source)
        return await self._run(ingest_frame, frame, twin, source)

    def _upload_here(
        self, raw: bytes, name: str, source: str, twin: str, limits: UploadLimits
    ) -> IngestResult:
        frame = read_upload(raw, name, source, limits)
        return self.engine.ingest(frame, twin=twin, source=source)

    async def _run(self, work: Any, *args: Any) -> IngestResult:
        """``work(store_url, artifacts_dir, *args)`` in an ingest process. A pool found broken
        before the batch was handed over (its process died idle) is replaced and the batch
        sent to the new one; a process that dies with the batch answers 503."""
        store = self.engine.store
        for _ in range(2):
            pool = _pool(self.processes, self.niceness)
            try:
                future: Future[IngestResult] = pool.submit(
                    work, store.url, str(store.artifacts_dir), *args
                )
            except BrokenProcessPool:
                _forget(pool)
                continue
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                log.error("an ingest process died with a batch; the next starts a new one")
                _forget(pool)
                break
        raise ApiError(503, "IngestUnavailable", DIED)
