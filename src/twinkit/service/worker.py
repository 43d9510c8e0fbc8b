"""What the server's child processes run: their own engine on the same store, nothing shared.

A child is started with multiprocessing's "spawn", so it shares no memory, threads or
database connections with the server; if the work crashes the child (even in native code),
the server only sees the child's exit code. Each job kind has its entry point here, all
with the same arguments: (store_url, artifacts_dir, twin_id, params, answer pipe). The
ingest processes (:mod:`twinkit.service.ingest_pool`) run :func:`ingest_upload` and
:func:`ingest_frame`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pandas as pd

from twinkit.core.errors import TooLargeError, TwinGoneError, TwinkitError
from twinkit.data.importers import read_table_bytes
from twinkit.engine import TwinEngine
from twinkit.engine.ingest import IngestResult

UNEXPECTED = "the {kind} raised an unexpected error; the server log has its traceback"
#: the key of a child's params that holds the uid of the twin the job was asked for
TWIN_UID = "twin_uid"


#: how much lower than the server's a job's CPU priority is (``nice``; 0 keeps it equal):
#: training yields the cores to the workers answering requests
DEFAULT_JOB_NICENESS = 10


def job_niceness() -> int:
    """``TWINKIT_JOB_NICENESS`` within 0-19 (:data:`DEFAULT_JOB_NICENESS` if unset or not
    a number)."""
    raw = os.environ.get("TWINKIT_JOB_NICENESS", str(DEFAULT_JOB_NICENESS))
    try:
        return max(0, min(19, int(raw)))
    except ValueError:
        return DEFAULT_JOB_NICENESS


def lower_priority(pid: int | None) -> None:
    """Give the (child) process ``pid`` a CPU priority :func:`job_niceness` below this
    process's. The server calls it right after starting a child, so that even the child's
    start-up (imports of the model libraries: seconds of CPU) yields the cores to the
    workers answering requests. A no-op where the OS has no priorities, or the child is gone.
    """
    niceness = job_niceness()
    if not niceness or pid is None or not hasattr(os, "setpriority"):
        return
    try:
        base = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, base + niceness))
    except (ProcessLookupError, PermissionError):
        pass  # ended already, or not ours to change


def lower_own_priority(niceness: int) -> None:
    """Lower this process's CPU priority by ``niceness`` (an ingest process's first act,
    before it imports anything heavy); a no-op at 0 or where the OS has no ``nice``."""
    if niceness and hasattr(os, "nice"):
        os.nice(niceness)


def _answer(
    kind: str,
    store_url: str,
    artifacts_dir: str,
    answer: Connection,
    work: Callable[[TwinEngine], dict[str, Any]],
    twin: tuple[str, str | None] | None = None,
) -> None:
    """Run ``work`` on a fresh engine and send ``{"status": "done", "result": ...}``,
    ``{"status": "failed", "error": ...}`` or, when ``twin`` (id, uid) is not the twin
    that has the id now, ``{"status": "cancelled", "error": ...}`` on the pipe."""
    try:
        engine = TwinEngine(store_url, artifacts=Path(artifacts_dir))
        twin_id, uid = twin if twin is not None else ("", None)
        if uid is not None and not engine.is_twin(twin_id, uid):
            raise TwinGoneError(f"twin {twin_id!r} was deleted before the {kind} ran")
        result = work(engine)
    except TwinGoneError as exc:
        answer.send({"status": "cancelled", "error": str(exc)})
    except TwinkitError as exc:
        answer.send({"status": "failed", "error": str(exc)})
    except Exception:
        # The owner sees a plain message; multiprocessing prints the traceback to the
        # server's stderr and the child exits with code 1.
        answer.send({"status": "failed", "error": UNEXPECTED.format(kind=kind)})
        raise
    else:
        answer.send({"status": "done", "result": result})
    finally:
        answer.close()


def run_fit(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """Fit ``twin_id`` with ``params`` (as for ``TwinEngine.fit``) and send the outcome."""
    _answer(
        "fit",
        store_url,
        artifacts_dir,
        answer,
        lambda engine: engine.fit(twin_id, **params).to_dict(),
        (twin_id, params.get(TWIN_UID)),
    )


def run_robustness(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """Make the robustness report of a decision twin's clone with ``params`` (as for
    :func:`twinkit.engine.robustness.clone_robustness`) and send it."""
    uid = params.pop(TWIN_UID, None)
    _answer(
        "robustness report",
        store_url,
        artifacts_dir,
        answer,
        lambda engine: engine.robustness_report(twin_id, **params),
        (twin_id, uid),
    )


def run_clone(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """Fit a new version of a decision twin's clone on its donor's answers (through the
    promotion gate), top up its questions and send the serving version's guesses (as for
    :func:`twinkit.engine.clone_versions.update_clone`)."""
    _answer(
        "clone update",
        store_url,
        artifacts_dir,
        answer,
        lambda engine: engine.clone_update(twin_id, **params),
        (twin_id, params.get(TWIN_UID)),
    )


# -- batches (uploads, JSON rows) ingested by the server's ingest processes -------------

#: engines an ingest process keeps open (by store URL and artifacts folder), the last used
ENGINES_KEPT = 4


@dataclass(frozen=True)
class UploadLimits:
    """An upload's limits and the settings that set them (for the 413's message)."""

    max_rows: int
    max_columns: int
    max_cells: int

    @staticmethod
    def setting(what: str) -> str:
        """The environment variable of a limit: rows, columns or cells."""
        return f"TWINKIT_MAX_UPLOAD_{what.upper()}"


def read_upload(raw: bytes, name: str, source: str, limits: UploadLimits) -> pd.DataFrame:
    """An uploaded file as a frame; over a limit, :class:`TooLargeError` (413) naming the
    setting, before the file is decoded."""
    try:
        return read_table_bytes(
            raw,
            name,
            source,
            max_rows=limits.max_rows,
            max_columns=limits.max_columns,
            max_cells=limits.max_cells,
        )
    except TooLargeError as exc:
        raise exc.naming(UploadLimits.setting(exc.what)) from None


_engines: OrderedDict[tuple[str, str], TwinEngine] = OrderedDict()


def _engine(store_url: str, artifacts_dir: str) -> TwinEngine:
    key = (store_url, artifacts_dir)
    engine = _engines.pop(key, None)
    if engine is None:
        engine = TwinEngine(store_url, artifacts=Path(artifacts_dir))
    _engines[key] = engine
    while len(_engines) > ENGINES_KEPT:
        _, old = _engines.popitem(last=False)
        old.store.dispose()
    return engine


def ingest_upload(
    store_url: str,
    artifacts_dir: str,
    raw: bytes,
    name: str,
    source: str,
    twin: str,
    limits: UploadLimits,
) -> IngestResult:
    """Decode an upload and ingest it into ``twin`` (its ``owner/id``)."""
    frame = read_upload(raw, name, source, limits)
    return _engine(store_url, artifacts_dir).ingest(frame, twin=twin, source=source)


def ingest_frame(
    store_url: str, artifacts_dir: str, frame: pd.DataFrame, twin: str, source: str
) -> IngestResult:
    """Ingest a batch already made into a frame (the JSON rows) into ``twin``."""
    return _engine(store_url, artifacts_dir).ingest(frame, twin=twin, source=source)


def ready() -> bool:
    """Nothing: a task that starts an ingest process before its first batch."""
    return True
