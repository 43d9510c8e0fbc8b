"""What a fit job's child process runs: its own engine on the same store, nothing shared.

The child is started with multiprocessing's "spawn", so it shares no memory, threads or
database connections with the server; if training crashes the child (even in native code),
the server only sees the child's exit code.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from twinkit.core.errors import TwinkitError
from twinkit.engine import TwinEngine
from twinkit.store.db import Store

UNEXPECTED = "the fit raised an unexpected error; the server log has its traceback"


def run_fit(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """Fit ``twin_id`` with ``params`` (as for ``TwinEngine.fit``) and send the outcome:
    ``{"status": "done", "result": ...}`` or ``{"status": "failed", "error": ...}``."""
    try:
        engine = TwinEngine(Store(store_url, artifacts=Path(artifacts_dir)))
        result = engine.fit(twin_id, **params)
    except TwinkitError as exc:
        answer.send({"status": "failed", "error": str(exc)})
    except Exception:
        # The owner sees a plain message; multiprocessing prints the traceback to the
        # server's stderr and the child exits with code 1.
        answer.send({"status": "failed", "error": UNEXPECTED})
        raise
    else:
        answer.send({"status": "done", "result": result.to_dict()})
    finally:
        answer.close()
