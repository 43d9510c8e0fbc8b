"""What a job's child process runs: its own engine on the same store, nothing shared.

The child is started with multiprocessing's "spawn", so it shares no memory, threads or
database connections with the server; if the work crashes the child (even in native code),
the server only sees the child's exit code. Each job kind has its entry point here, all
with the same arguments: (store_url, artifacts_dir, twin_id, params, answer pipe).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from twinkit.core.errors import TwinGoneError, TwinkitError
from twinkit.engine import TwinEngine

UNEXPECTED = "the {kind} raised an unexpected error; the server log has its traceback"
#: the key of a child's params that holds the uid of the twin the job was asked for
TWIN_UID = "twin_uid"


#: how much lower than the server's a job's CPU priority is (``nice``; 0 keeps it equal):
#: training yields the cores to the workers answering requests
DEFAULT_JOB_NICENESS = 10


def _lower_priority() -> None:
    """Lower this (child) process's CPU priority by ``TWINKIT_JOB_NICENESS`` (default
    :data:`DEFAULT_JOB_NICENESS`); a no-op where the OS has no ``nice``."""
    raw = os.environ.get("TWINKIT_JOB_NICENESS", str(DEFAULT_JOB_NICENESS))
    try:
        niceness = max(0, min(19, int(raw)))
    except ValueError:
        niceness = DEFAULT_JOB_NICENESS
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
    _lower_priority()
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
    """Retrain a decision twin's clone on its donor's labels, top up its questions and send
    its guesses (as for :func:`twinkit.engine.clone_questions.refresh`)."""
    _answer(
        "clone update",
        store_url,
        artifacts_dir,
        answer,
        lambda engine: engine.clone_refresh(twin_id, **params),
        (twin_id, params.get(TWIN_UID)),
    )
