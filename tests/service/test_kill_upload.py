"""A real ``twinkit serve`` killed (SIGKILL, its whole process group) during a large upload
leaves the batch whole or absent.

Four servers on one store, each on a free loopback port, started together (a start takes
seconds). Each round creates a state twin and streams a CSV of 200,000 readings to
``POST /v1/twins/{id}/observations/upload`` of one server from a thread; that server is
killed at one moment of the round, and the next round runs on the next server, over the
store the last one was killed on. The moments: while the body still streams (half of it
sent), just after the body was sent (the batch is parsed and validated), and twice during
the ingest transaction, seen as the store's write-ahead log being written while no answer
has come yet. A first round is let through to time those phases. At the end the store is
opened directly: each twin holds none of its batch or all of it, with a ledger entry only
in the second case, the ledger verifies, and the store still takes writes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from twinkit.engine import TwinEngine

N_ROWS = 200_000
ADMIN_TOKEN = "admin-token-for-the-kill-test-" + "k" * 32
CHUNK = 64 * 1024
BOUNDARY = "twinkit-kill-test-boundary"
STARTUP_S = 90.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _readings_csv(n: int, offset: int) -> bytes:
    """``n`` glucose readings, 5 minutes apart; ``offset`` makes each round's batch differ."""
    times = pd.date_range("2020-01-01", periods=n, freq="5min", tz="UTC")
    frame = pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": "glucose",
            "value": 100 + (np.arange(n) + offset) % 97,
        }
    )
    return frame.to_csv(index=False).encode()


def _multipart(csv: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="readings.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    return head + csv + f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Server:
    """``twinkit serve`` in its own process group (a session), logging to a file."""

    db_url: str
    log: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        # The batch is larger than the default upload limit (100,000 rows) on purpose: the
        # longer its write, the surer the kill lands inside it.
        env = {
            **os.environ,
            "TWINKIT_ADMIN_TOKEN": ADMIN_TOKEN,
            "TWINKIT_MAX_UPLOAD_ROWS": "1000000",
        }
        command = [sys.executable, "-m", "twinkit", "serve", "--db", self.db_url]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited at start:\n{self.log.read_text()}")
            try:
                status, body = self.call("GET", "/readyz")
            except OSError:
                time.sleep(0.1)
                continue
            assert (status, body) == (200, {"status": "ready"})
            return
        raise AssertionError(f"the server did not answer in {STARTUP_S} s")

    def kill(self) -> None:
        """SIGKILL the server's whole process group, as an OOM killer or a power cut would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, body=payload, headers=headers)
            answer = conn.getresponse()
            return answer.status, json.loads(answer.read() or b"null")
        finally:
            conn.close()


class Upload(threading.Thread):
    """Streams one multipart upload in chunks; with ``pause_at`` it stops after that many
    bytes until ``resume`` is set (here: once the server is dead)."""

    def __init__(self, port: int, twin: str, token: str, body: bytes, pause_at: int | None):
        super().__init__(daemon=True)
        self.port, self.twin, self.token, self.body = port, twin, token, body
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.body_sent_at: float | None = None
        self.answered_at: float | None = None
        self.status: int | None = None
        self.error: str | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.putrequest("POST", f"/v1/twins/{self.twin}/observations/upload")
            conn.putheader("Authorization", f"Bearer {self.token}")
            conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
            conn.putheader("Content-Length", str(len(self.body)))
            conn.endheaders()
            for start in range(0, len(self.body), CHUNK):
                if self.pause_at is not None and start >= self.pause_at:
                    self.paused.set()
                    self.resume.wait(120)
                conn.send(self.body[start : start + CHUNK])
            self.body_sent_at = time.monotonic()
            answer = conn.getresponse()
            answer.read()
            self.answered_at, self.status = time.monotonic(), answer.status
        except OSError as exc:  # the server died under us
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()


def _wal_mtime(wal: Path) -> int:
    try:
        return wal.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _wait_for(condition: Any, timeout: float = 60.0, every: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


@dataclass
class Round:
    twin: str
    moment: str
    outcome: str = ""  # where the kill landed, as observed
    status: int | None = None


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Four servers on one store, started together (a start takes seconds, most of it
    imports), each to be killed in turn; any still running at the end is killed."""
    url = f"sqlite:///{tmp_path}/kill.db"
    TwinEngine(url).store.dispose()  # the schema, made once before the servers race for it
    started = [Server(url, tmp_path / f"server-{i}.log") for i in range(4)]
    for srv in started:
        srv.launch()
    try:
        for srv in started:
            srv.wait_ready()
        yield started
    finally:
        for srv in started:
            if srv.process is not None and srv.process.poll() is None:
                srv.kill()


@pytest.mark.slow
def test_sigkill_during_a_large_upload_leaves_the_batch_whole_or_absent(
    tmp_path: Path, servers: list[Server]
) -> None:
    # Prepare
    wal = tmp_path / "kill.db-wal"
    first = servers[0]
    _, owner = first.call("POST", "/v1/owners", ADMIN_TOKEN, {"name": "uploader"})
    token = owner["token"]
    rounds: list[Round] = []

    def new_twin(server: Server, moment: str) -> tuple[Round, bytes]:
        twin = f"big-{len(rounds)}"
        spec = {"id": twin, "kind": "state", "channels": [{"name": "glucose"}]}
        assert server.call("POST", "/v1/twins", token, spec)[0] == 201
        rounds.append(Round(twin, moment))
        return rounds[-1], _multipart(_readings_csv(N_ROWS, offset=len(rounds)))

    # Execute 1: a round let through, to time the phases (body sent -> writing -> answer)
    calm, body = new_twin(first, "not killed")
    wal_before = _wal_mtime(wal)
    upload = Upload(first.port, calm.twin, token, body, pause_at=None)
    upload.start()
    assert _wait_for(lambda: upload.body_sent_at is not None or not upload.is_alive())
    assert _wait_for(lambda: _wal_mtime(wal) != wal_before or not upload.is_alive())
    writing_at = time.monotonic()
    upload.join(timeout=120)
    assert upload.status == 200, (upload.error, first.log.read_text()[-2000:])
    assert upload.body_sent_at is not None and upload.answered_at is not None
    calm.status, calm.outcome = upload.status, "answered"
    write_s = upload.answered_at - writing_at
    timings = {
        "body_sent_to_writing_s": round(writing_at - upload.body_sent_at, 3),
        "writing_to_answer_s": round(write_s, 3),
    }

    def kill_round(
        server: Server, moment: str, pause_at: int | None, when_writing: float | None
    ) -> None:
        """One upload, killed: at ``pause_at`` bytes, or ``when_writing`` x the measured
        write time after the log is first written, or (both None) right after the body."""
        this, body = new_twin(server, moment)
        before = _wal_mtime(wal)
        up = Upload(server.port, this.twin, token, body, pause_at=pause_at)
        up.start()
        if pause_at is not None:
            assert up.paused.wait(60)
        else:
            assert _wait_for(lambda: up.body_sent_at is not None or not up.is_alive())
            if when_writing is not None:
                _wait_for(lambda: _wal_mtime(wal) != before or not up.is_alive())
                time.sleep(when_writing * write_s)
        writing = _wal_mtime(wal) != before
        server.kill()
        up.resume.set()
        up.join(timeout=30)
        assert not up.is_alive()
        this.status = up.status
        if up.body_sent_at is None:
            this.outcome = "body still streaming"
        elif up.status is not None:
            this.outcome = "after the answer"
        else:
            this.outcome = "mid-ingest, writing" if writing else "body received, before writing"

    # Execute 2: the kills; each next round runs on a server that goes on over the store
    # the last one was killed on
    kill_round(first, "half of the body sent", pause_at=len(body) // 2, when_writing=None)
    kill_round(servers[1], "just after the body", pause_at=None, when_writing=None)
    kill_round(servers[2], "early in the ingest transaction", pause_at=None, when_writing=0.1)
    kill_round(servers[3], "late in the ingest transaction", pause_at=None, when_writing=0.6)

    # Assert: each batch whole or absent; the ledger agrees and verifies
    report = {"timings": timings, "rounds": [r.__dict__ for r in rounds]}
    engine = TwinEngine(first.db_url)
    try:
        for r in rounds:
            stored = int(engine.twin_summary(r.twin)["observations"])
            batches = [e for e in engine.history(r.twin) if e.event == "batch_ingested"]
            assert stored in (0, N_ROWS), (r, stored, report)
            assert len(batches) == (1 if stored else 0), (r, report)
            if r.status == 200:
                assert stored == N_ROWS, (r, report)
            if r.outcome == "body still streaming":
                assert stored == 0, (r, report)
        verified = engine.verify()
        assert verified.ok, verified.problems
        after = engine.ingest(
            pd.DataFrame(
                {"time": ["2019-01-01T00:00:00Z"], "channel": ["glucose"], "value": [90.0]}
            ),
            twin=rounds[-1].twin,
        )
        assert after.n_stored == 1
    finally:
        engine.store.dispose()
    outcomes = [r.outcome for r in rounds]
    assert outcomes[:2] == ["answered", "body still streaming"], report
    # Where practical: the write phase lasts about a second on this data, so a kill timed
    # inside it lands inside it unless the machine stalls the server for that long.
    assert "mid-ingest, writing" in outcomes, report
    print(json.dumps(report, indent=1))  # what timings the kills got, for the record
