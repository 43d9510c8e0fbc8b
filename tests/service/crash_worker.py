"""Fit workers that crash, for the job tests. The child process imports this module by its
plain name, so the test puts this folder on ``sys.path`` before starting the app."""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from typing import Any


def exit_hard(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """Die the way native code does (a segfault, the OOM killer): no answer, no cleanup."""
    os._exit(3)


def sleep_long(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """A fit that never ends (until it is stopped)."""
    time.sleep(600)


def done_soon(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """A fit that answers after a moment, having written nothing."""
    time.sleep(0.2)
    answer.send({"status": "done", "result": {"twin_id": twin_id}})
    answer.close()


def tell_niceness(
    store_url: str, artifacts_dir: str, twin_id: str, params: dict[str, Any], answer: Connection
) -> None:
    """A fit that answers with the CPU niceness its process runs at."""
    answer.send({"status": "done", "result": {"niceness": os.nice(0)}})
    answer.close()


def exit_hard_ingest(store_url: str, artifacts_dir: str, *batch: Any) -> None:
    """An ingest process that dies with its batch (as ``exit_hard``)."""
    os._exit(3)
