"""A process killed (SIGKILL) in the middle of a big ingest leaves all of the batch or none.

On each backend: SQLite's file must survive, and PostgreSQL must roll back the transaction
of a client that vanished. The child creates a twin, says ``ingesting``, ingests ~300k rows
in one batch, says ``done`` and then waits to be killed. The parent kills it after a delay,
reopens the store and checks: observations are 0 or the full batch, the ledger verifies, the
store is still writable.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from twinkit.engine import TwinEngine

N_ROWS = 300_000
TWIN = "crash"

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import pandas as pd
    from twinkit.engine import TwinEngine

    url, n = sys.argv[1], int(sys.argv[2])
    engine = TwinEngine(url)
    engine.create_twin("crash", "state")
    frame = pd.DataFrame(
        {
            "twin_id": "crash",
            "time": pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC"),
            "channel": "glucose",
            "value": 100.0 + (np.arange(n) % 97),
        }
    )
    print("ingesting", flush=True)
    engine.ingest(frame, source="big")
    print("done", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.1, 0.35, 0.7])
def test_sigkill_during_ingest_stores_all_or_nothing(db_url: str, delay: float) -> None:
    # Prepare
    url = db_url
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(N_ROWS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline().strip()
        if first != "ingesting":
            _, startup_errors = child.communicate(timeout=30)
            pytest.fail(f"the child failed before ingesting: {first!r}\n{startup_errors}")

        # Execute
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    rest, errors = child.communicate(timeout=30)
    finished = "done" in rest

    # Assert
    assert child.returncode == -signal.SIGKILL, errors
    engine = TwinEngine(url)
    try:
        assert engine.get_twin(TWIN).kind.value == "state"
        stored = int(engine.twin_summary(TWIN)["observations"])
        assert stored in (0, N_ROWS)
        if finished:
            assert stored == N_ROWS
        batches = [e for e in engine.history(TWIN) if e.event == "batch_ingested"]
        assert len(batches) == (1 if stored else 0)
        # still writable: no stale lock, no half-applied state in the way
        after = engine.ingest(
            pd.DataFrame(
                {
                    "twin_id": [TWIN],
                    "time": [pd.Timestamp("2019-01-01T00:00:00Z")],
                    "channel": ["heart_rate"],
                    "value": [60.0],
                }
            )
        )
        assert after.n_stored == 1
        assert engine.twin_summary(TWIN)["observations"] == stored + 1
        report = engine.verify()
        assert report.ok, report.problems
    finally:
        engine.store.dispose()
