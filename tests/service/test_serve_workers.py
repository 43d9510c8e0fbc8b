"""`twinkit serve --workers 2` on PostgreSQL: two processes serve one store as one service.

What one worker writes, the other reads: an owner and a twin made through one request are
seen by every later request, whichever worker answers it; ``/metrics`` counts the requests
of both, whichever answers the scrape; SIGINT stops them all and removes the metrics files.
Needs a server (``TWINKIT_TEST_PG_URL``); SQLite is not the store for several server
processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ADMIN_TOKEN = "serve-workers-admin-token-" + "w" * 32
WORKERS = 2
STARTUP_S = 240  # each worker imports torch before it answers; the machine may be busy
N_READS = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path
    tmp: Path  # the server's TMPDIR

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def get(server: Server, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    # A new connection per request, so that either worker may accept it.
    with httpx.Client(base_url=server.base, timeout=30) as client:
        return client.get(path, headers=headers)


def wait_until_both_workers_started(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"twinkit serve exited with {server.process.returncode}:\n{server.log_text()}"
            )
        if server.log_text().count("Application startup complete") >= WORKERS:
            return
        time.sleep(0.5)
    pytest.fail(f"{WORKERS} workers did not start within {STARTUP_S} s:\n{server.log_text()}")


@pytest.fixture
def server(pg_store_url: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / "serve.log"
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "TWINKIT_ADMIN_TOKEN": ADMIN_TOKEN,
        "TWINKIT_HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    env.pop("TWINKIT_DB", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-c", "from twinkit.cli import main; main()"),
                *("serve", "--db", pg_store_url, "--port", str(port)),
                *("--workers", str(WORKERS)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = Server(process, f"http://127.0.0.1:{port}", log, tmp_path)
    try:
        wait_until_both_workers_started(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def requests_served(metrics_text: str, route: str) -> int:
    """The count of GETs of ``route`` answered 200, from /metrics."""
    wanted = ('method="GET"', f'route="{route}"', 'status="200"')
    served = 0
    for labels, value in re.findall(
        r"^twinkit_http_requests_total\{(.*)\} (\S+)$", metrics_text, re.MULTILINE
    ):
        if all(label in labels for label in wanted):
            served += int(float(value))
    return served


def test_two_workers_serve_one_postgresql_store(server: Server) -> None:
    # Prepare: an owner and a twin, each made by one request to whichever worker
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert get(server, "/readyz").status_code == 200
    with httpx.Client(base_url=server.base, timeout=30) as client:
        made = client.post("/v1/owners", json={"name": "clinic-a"}, headers=admin)
        assert made.status_code == 201, made.text
        owner = {"Authorization": f"Bearer {made.json()['token']}"}
    with httpx.Client(base_url=server.base, timeout=30) as client:
        twin = client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=owner)
        assert twin.status_code == 201, twin.text

    # Execute: many reads, each on a new connection
    answers = [get(server, "/v1/twins/p1", headers=owner) for _ in range(N_READS)]
    listed = get(server, "/v1/twins", headers=owner)

    # Assert: every worker sees the owner's token and the twin
    assert [a.status_code for a in answers] == [200] * N_READS, [a.text for a in answers]
    assert {a.json()["id"] for a in answers} == {"p1"}
    assert [t["id"] for t in listed.json()] == ["p1"]
    # Both workers answered reads (each request's log line names its process) ...
    logged = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    readers = {
        entry["pid"]
        for entry in logged
        if entry.get("message") == "request" and entry.get("path") == "/v1/twins/p1"
    }
    assert len(readers) == WORKERS, f"not every worker answered: {readers}"
    # ... and every scrape, whichever worker answers it, counts the reads of both.
    scrapes = [get(server, "/metrics").text for _ in range(2 * WORKERS)]
    assert [requests_served(s, "/v1/twins/{twin_id}") for s in scrapes] == [N_READS] * len(scrapes)
    (metrics_dir,) = (server.tmp / "tmp").glob("twinkit-metrics-*")
    assert (
        sorted(p.name.split("_")[0] for p in metrics_dir.iterdir())
        == ["counter"] * WORKERS + ["histogram"] * WORKERS
    )

    # Execute and Assert: SIGINT stops the supervisor and both workers without an error
    server.process.send_signal(signal.SIGINT)
    code = server.process.wait(timeout=60)
    log = server.log_text()
    assert code == 0, log
    assert log.count("Finished server process") == WORKERS, log
    assert '"level": "error"' not in log, log
    assert list((server.tmp / "tmp").glob("twinkit-metrics-*")) == []
