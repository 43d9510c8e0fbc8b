"""Running jobs (fits, robustness reports): a thread per job slot claims a job from the
store's shared queue and waits on a child process that does the work.

Requests never wait on training: ``submit`` records a queued job and returns (or refuses
it, past the owner's quota of unfinished jobs). Each server process has ``fit_workers``
job slots, threads that claim queued jobs of every kind from the store (any server
process's, owners in turn over the whole store: :func:`twinkit.store.jobs.claim_next`),
so a slot that comes free anywhere takes the next owner's job. A slot starts a child
process ("spawn") running the kind's entry point (:data:`JOB_WORKERS`) at a lower CPU
priority, waits for its answer on a pipe, and records the outcome in the jobs table. A
child that crashes, is killed or runs past the timeout fails its job; the server goes on
serving. Queued jobs outlive a server that stops: the next one to run claims them.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from twinkit.core.twin import public_id, twin_key
from twinkit.engine import TwinEngine
from twinkit.engine.jobs import Job
from twinkit.service.logs import LOGGER_NAME
from twinkit.service.metrics import ServiceMetrics
from twinkit.service.worker import (
    TWIN_UID,
    lower_priority,
    run_clone,
    run_fit,
    run_robustness,
)

log = logging.getLogger(LOGGER_NAME)

#: a child's entry point: (store_url, artifacts_dir, twin_id, params, answer pipe)
JobWorker = Callable[[str, str, str, dict[str, Any], Connection], None]
FitWorker = JobWorker
#: the entry point of each job kind
JOB_WORKERS: Mapping[str, JobWorker] = {
    "fit": run_fit,
    "robustness": run_robustness,
    "clone": run_clone,
}
#: how often an idle job slot looks for jobs that other server processes accepted, in s
CLAIM_POLL_S = 0.25
STOPPED_DURING = (
    "the server stopped while the job ran; the twin's model list shows whether a version "
    "was registered"
)


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and infinities as None.

    >>> import numpy as np
    >>> jsonable({"a": np.float64(1.5), "b": [float("nan"), np.int64(2)]})
    {'a': 1.5, 'b': [None, 2]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _exit_reason(kind: str, code: int | None) -> str:
    if code is None:
        return f"the {kind} process did not end"
    if code < 0:
        return f"the {kind} process was killed by signal {-code}"
    return f"the {kind} process ended without an answer (exit code {code})"


class JobRunner:
    """Runs jobs for one server process (see the module docstring). ``worker`` is the fit
    jobs' entry point; the other kinds run theirs from :data:`JOB_WORKERS`."""

    def __init__(
        self,
        engine: TwinEngine,
        metrics: ServiceMetrics,
        workers: int = 1,
        timeout_s: float = 3600.0,
        worker: FitWorker = run_fit,
        max_jobs_per_owner: int | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.timeout_s = timeout_s
        #: an owner's queued and running jobs at most (all server processes of the store)
        self.max_jobs_per_owner = max_jobs_per_owner
        #: the child's entry point of each job kind
        self.entry_points = {**JOB_WORKERS, "fit": worker}
        # host:pid:instance; the instance tells apart two apps of one process (tests).
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._wake = threading.Condition()  # a job was submitted here, or close()
        self._running: dict[int, BaseProcess] = {}
        self._claimed: set[int] = set()  # jobs this runner has claimed and not yet recorded
        self._cancelled: set[int] = set()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve, name=f"twinkit-job-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- the server's side ----------------------------------------------------------------

    def submit(
        self,
        kind: str,
        twin_id: str,
        owner: str,
        params: dict[str, Any],
        twin_uid: str | None = None,
    ) -> Job:
        """Record a queued job of ``kind`` (a key of :data:`JOB_WORKERS`) for ``owner``'s twin
        stored under the key ``twin_id`` whose uid is ``twin_uid`` in the shared queue and
        wake a free slot of this process; return at once. The child is told the uid
        (``params["twin_uid"]``): work for a twin deleted meanwhile writes nothing."""
        if kind not in self.entry_points:
            raise ValueError(f"no job kind {kind!r}; known: {sorted(self.entry_points)}")
        job = self.engine.jobs.create(
            twin_id, owner, kind, params, None, twin_uid, self.max_jobs_per_owner
        )
        with self._wake:
            self._wake.notify()
        return job

    def submit_fit(
        self, twin_id: str, owner: str, params: dict[str, Any], twin_uid: str | None = None
    ) -> Job:
        """Record a queued fit job and hand it to the pool; return at once."""
        return self.submit("fit", twin_id, owner, params, twin_uid)

    def cancel(self, job_ids: list[int]) -> None:
        """Stop the children of these jobs if this process runs them (their records were
        ended as cancelled already, by the twin's deletion); queued ones will not start."""
        with self._lock:
            for job_id in job_ids:
                if job_id not in self._claimed:
                    continue  # another runner's, or never claimed: it will not start
                self._cancelled.add(job_id)  # a child started after this is stopped too
                process = self._running.get(job_id)
                if process is not None:
                    process.terminate()

    def recover_orphans(self) -> list[int]:
        """Fail the unfinished jobs of server processes on this host that are gone.

        Jobs of other hosts are left alone: whether their server lives cannot be told here.
        """
        host = socket.gethostname()
        orphans = []
        for job in self.engine.jobs.unfinished():
            parts = (job.runner or "").rsplit(":", 2)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if not _pid_alive(int(parts[1])):
                self.engine.jobs.fail(job.id, STOPPED_DURING)
                orphans.append(job.id)
        if orphans:
            log.warning("failed jobs of a stopped server", extra={"jobs": orphans})
        return orphans

    def close(self) -> None:
        """Stop: running children are terminated (their jobs fail), queued jobs stay queued
        for the next server; waits for the threads."""
        with self._lock:
            self._stopping.set()
            for process in self._running.values():
                process.terminate()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join()

    # -- one job, in a worker thread ------------------------------------------------------

    def _serve(self) -> None:
        """A job slot: claim the next job in the owners' turn, run it, until close()."""
        kinds = sorted(self.entry_points)
        while not self._stopping.is_set():
            try:
                job = self.engine.jobs.claim(self.runner_id, kinds)
            except Exception:
                log.exception("cannot claim a job from the store")
                job = None
            if job is None:
                with self._wake:
                    if not self._stopping.is_set():
                        self._wake.wait(timeout=CLAIM_POLL_S)
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        params = job.params if job.twin_uid is None else {**job.params, TWIN_UID: job.twin_uid}
        # The child addresses the twin as owner/id, which names it whatever its key.
        ref = twin_key(job.owner, public_id(job.twin_id))
        with self._lock:
            self._claimed.add(job.id)
        try:
            self._run_job(job.id, job.kind, ref, params)
        except Exception:
            # The thread must go on serving: log the error at least (the store was
            # unreachable, say, when the outcome was to be recorded).
            log.exception("job runner error", extra={"job_id": job.id, "kind": job.kind})
        finally:
            with self._lock:
                self._claimed.discard(job.id)
                self._cancelled.discard(job.id)

    def _run_job(self, job_id: int, kind: str, twin_id: str, params: dict[str, Any]) -> None:
        """Run a job this runner claimed (it is marked running already)."""
        if kind == "fit":
            self.metrics.fits_started.inc()
        started = time.perf_counter()
        try:
            answer = self._run_child(job_id, kind, twin_id, params)
        except OSError:
            # No process could be started (out of memory or pids): the job must not stay
            # "running" for ever.
            log.exception(f"cannot start a {kind} process", extra={"job_id": job_id})
            answer = {
                "status": "failed",
                "error": f"the {kind} could not be started; see the server log",
            }
        self._record(job_id, kind, answer, time.perf_counter() - started)

    def _run_child(
        self, job_id: int, kind: str, twin_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        reader, writer = self._context.Pipe(duplex=False)
        store = self.engine.store
        process = self._context.Process(
            target=self.entry_points[kind],
            args=(store.url, str(store.artifacts_dir), twin_id, params, writer),
            name=f"twinkit-{kind}-{job_id}",
        )
        process.start()
        lower_priority(process.pid)  # before the child's imports, which cost seconds of CPU
        writer.close()  # the child holds the only write end: its exit means end of file
        with self._lock:
            self._running[job_id] = process
            if self._stopping.is_set() or job_id in self._cancelled:
                # close() or a cancel came between the check and the start
                process.terminate()
        try:
            return self._wait(kind, process, reader)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
                self._cancelled.discard(job_id)
            reader.close()

    def _wait(self, kind: str, process: BaseProcess, reader: Connection) -> dict[str, Any]:
        """The child's answer, or why there is none; the child is gone when this returns."""
        answer: dict[str, Any] | None = None
        if wait([reader], timeout=self.timeout_s):
            try:
                answer = reader.recv()
            except (EOFError, OSError):
                answer = None  # ended without a word: crashed or killed
        else:
            process.terminate()
            process.join(timeout=10)
            if process.exitcode is None:
                process.kill()
            process.join()
            return {
                "status": "failed",
                "error": f"the {kind} took longer than {self.timeout_s:g} s",
            }
        process.join(timeout=30)
        if process.exitcode is None:  # answered but hangs on: it has nothing left to do
            process.kill()
            process.join()
        if answer is None:
            stopped = self._stopping.is_set()
            return {
                "status": "failed",
                "error": STOPPED_DURING if stopped else _exit_reason(kind, process.exitcode),
            }
        return answer

    def _record(self, job_id: int, kind: str, answer: dict[str, Any], seconds: float) -> None:
        if answer.get("status") == "cancelled":
            self.engine.jobs.cancel(job_id, str(answer.get("error") or "the twin is gone"))
            log.info(f"{kind} job cancelled", extra={"job_id": job_id})
            return
        outcome = "done" if answer.get("status") == "done" else "failed"
        result = jsonable(answer.get("result") or {}) if outcome == "done" else {}
        if kind == "fit":
            self.metrics.fits_finished.labels(outcome).inc()
            self.metrics.fit_duration.labels(outcome).observe(seconds)
            if outcome == "done" and result.get("promoted"):
                self.metrics.promotions.inc()
            elif outcome == "done":
                self.metrics.promotions_refused.inc()
        if outcome == "done":
            self.engine.jobs.finish(job_id, result)
        else:
            error = str(answer.get("error") or f"the {kind} failed")
            self.engine.jobs.fail(job_id, error)
        log.info(
            f"{kind} job ended",
            extra={"job_id": job_id, "outcome": outcome, "seconds": round(seconds, 2)},
        )
