"""Operations: health and readiness, metrics, request ids and JSON logs, body limits, errors
that never leak internals, and `twinkit serve`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from starlette.types import Message

from twinkit.cli.testing import Capture, run
from twinkit.service.errors import error_body
from twinkit.service.logs import JsonFormatter, request_id_var
from twinkit.service.metrics import ServiceMetrics
from twinkit.service.middleware import BodyLimitMiddleware, RequestContextMiddleware, RouteTemplates
from twinkit.service.settings import ServiceSettings
from twinkit.service.state import ServiceState

Headers = dict[str, str]
StateTwinFn = Callable[[str, str], Headers]


def test_healthz_and_readyz(client: TestClient, service: ServiceState, tmp_path: Any) -> None:
    # Prepare
    healthy = client.get("/healthz")
    ready = client.get("/readyz")

    # Execute: the store becomes unreachable
    service.engine.store.engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    unready = client.get("/readyz")

    # Assert
    assert healthy.json() == {"status": "ok"}
    assert ready.json() == {"status": "ready"}
    assert unready.status_code == 503
    assert unready.json()["status"] == "unavailable"
    assert "no/such" not in unready.text
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_template_and_rows(
    client: TestClient, state_twin: StateTwinFn
) -> None:
    # Prepare
    alice = state_twin("alice", "p-secret-id")
    rows = [
        {"time": "2026-01-05T00:00:00Z", "channel": "glucose", "value": 100.0},
        {"time": "2026-01-05T00:05:00Z", "channel": "glucose", "value": 9999.0},
    ]

    # Execute
    client.post("/v1/twins/p-secret-id/observations", json={"rows": rows}, headers=alice)
    client.get("/v1/twins/p-secret-id", headers=alice)
    client.get("/v1/twins/p-secret-id", headers=alice)
    client.get("/v1/no/such/route", headers=alice)
    text = client.get("/metrics").text

    # Assert
    assert (
        'twinkit_http_requests_total{method="GET",route="/v1/twins/{twin_id}",status="200"} 2.0'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert (
        'twinkit_http_request_duration_seconds_count{method="GET",route="/v1/twins/{twin_id}"}'
        in text
    )
    assert 'twinkit_rows_ingested_total{kind="signals"} 1.0' in text
    assert 'twinkit_rows_quarantined_total{kind="signals"} 1.0' in text
    assert "p-secret-id" not in text


def test_each_app_has_its_own_metrics(make_client: Callable[..., TestClient]) -> None:
    first, second = make_client(), make_client()
    first.get("/healthz")
    assert 'route="/healthz"' in first.get("/metrics").text
    assert 'route="/healthz"' not in second.get("/metrics").text


def test_request_ids_come_back_and_are_made_when_missing(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    made = client.get("/healthz")
    unsafe = client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert given.headers["x-request-id"] == "trace-42"
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "a b\tc"


def test_requests_are_logged_with_their_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="twinkit.service"):
        client.get("/v1/twins", headers={"X-Request-ID": "trace-7"})
    record = next(r for r in caplog.records if r.getMessage() == "request")
    line = json.loads(JsonFormatter().format(record))
    assert line["route"] == "/v1/twins"
    assert line["status"] == 401
    assert line["method"] == "GET"
    assert "duration_ms" in line


def test_the_json_formatter_writes_one_object_with_the_request_id() -> None:
    token = request_id_var.set("req-1")
    try:
        record = logging.LogRecord("twinkit.service", logging.INFO, "", 0, "fit %s", ("x",), None)
        record.job_id = 7
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "fit x"
    assert line["request_id"] == "req-1"
    assert line["job_id"] == 7
    assert line["level"] == "info"


@pytest.fixture
def boom(service: ServiceState, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing twins fails the way a database driver does, SQL in the message."""

    def fail(owner: str | None = None) -> list[Any]:
        raise OperationalError("SELECT token_sha256 FROM owners", {}, Exception("disk I/O"))

    monkeypatch.setattr(service.engine, "list_twins", fail)


def test_an_unexpected_error_answers_500_with_the_request_id_only(
    client: TestClient,
    new_owner: Callable[[str], Headers],
    boom: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare
    alice = new_owner("alice")

    # Execute
    with caplog.at_level(logging.ERROR, logger="twinkit.service"):
        answer = client.get("/v1/twins", headers={**alice, "X-Request-ID": "trace-500"})

    # Assert: nothing internal in the answer, everything in the log
    assert answer.status_code == 500
    assert answer.json() == error_body(
        "InternalError",
        "internal error; the server log has the details under request id trace-500",
        request_id="trace-500",
    )
    assert answer.headers["x-request-id"] == "trace-500"
    for leak in ("SELECT", "Traceback", "OperationalError", "token_sha256"):
        assert leak not in answer.text
    logged = [r for r in caplog.records if r.exc_info]
    assert logged
    assert "SELECT token_sha256" in JsonFormatter().format(logged[0])
    metrics = client.get("/metrics").text
    assert 'twinkit_http_requests_total{method="GET",route="/v1/twins",status="500"} 1.0' in metrics


# -- body limits ----------------------------------------------------------------------------


@pytest.fixture
def small(make_client: Callable[..., TestClient], admin: Headers) -> tuple[TestClient, Headers]:
    """A server taking bodies of at most 2 KiB, and an owner with a twin ``p1``."""
    client = make_client(max_body_bytes=2048)
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}
    client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=alice)
    return client, alice


def _rows(n: int) -> dict[str, Any]:
    return {
        "rows": [
            {"time": f"2026-01-05T00:{i % 60:02d}:00Z", "channel": "glucose", "value": 100.0}
            for i in range(n)
        ]
    }


def test_a_body_over_the_limit_answers_413(small: tuple[TestClient, Headers]) -> None:
    client, alice = small
    fits = client.post("/v1/twins/p1/observations", json=_rows(5), headers=alice)
    declared = client.post("/v1/twins/p1/observations", json=_rows(200), headers=alice)
    upload = client.post(
        "/v1/twins/p1/observations/upload",
        files={"file": ("big.csv", b"time,channel,value\n" + b"x" * 5000)},
        headers=alice,
    )
    assert fits.status_code == 200
    assert declared.status_code == 413
    assert declared.json()["error"]["type"] == "PayloadTooLarge"
    assert upload.status_code == 413


def test_a_streamed_body_over_the_limit_answers_413(small: tuple[TestClient, Headers]) -> None:
    # Prepare: no Content-Length at all, the body comes in chunks
    client, alice = small
    chunks = [json.dumps(_rows(200)).encode()[i : i + 512] for i in range(0, 12_800, 512)]

    # Execute
    answer = client.post(
        "/v1/twins/p1/observations",
        content=iter(chunks),
        headers={**alice, "content-type": "application/json"},
    )

    # Assert
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "PayloadTooLarge"


def test_a_body_longer_than_its_content_length_is_cut_off_at_the_limit() -> None:
    # Prepare: an app that reads the whole body, behind the limit; the client claims 10
    # bytes and sends 3000 in three messages
    read: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            read.append(total)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": b"x" * 1000, "more_body": True},
        {"type": "http.request", "body": b"x" * 1000, "more_body": True},
        {"type": "http.request", "body": b"x" * 1000, "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(dict(message))

    limited = RequestContextMiddleware(
        BodyLimitMiddleware(app, max_bytes=1500), ServiceMetrics(), RouteTemplates([])
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "headers": [(b"content-length", b"10")],
    }

    # Execute
    asyncio.run(limited(scope, receive, send))

    # Assert: the app never saw more than the limit plus one message, and the answer is 413
    assert read == [1000]
    assert sent[0]["status"] == 413


# -- twinkit serve --------------------------------------------------------------------------


def test_serve_refuses_to_start_without_an_admin_token(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("TWINKIT_ADMIN_TOKEN", raising=False)
    code, _, err = run(capsys, "serve", "--db", f"{tmp_path}/t.db")
    assert code == 1
    assert "TWINKIT_ADMIN_TOKEN is not set" in " ".join(err.split())


def test_serve_runs_uvicorn_with_the_app_factory_on_the_store(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Prepare
    calls: list[tuple[Any, dict[str, Any]]] = []
    metrics_dirs: list[str] = []
    monkeypatch.setenv("TWINKIT_ADMIN_TOKEN", "t" * 40)
    monkeypatch.setenv("TWINKIT_DB", "elsewhere.db")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def fake_run(app: Any, **kw: Any) -> None:
        calls.append((app, kw))
        metrics_dirs.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert os.path.isdir(metrics_dirs[-1])

    monkeypatch.setattr(uvicorn, "run", fake_run)

    # Execute
    code, _, _ = run(
        capsys, "serve", "--db", f"{tmp_path}/t.db", "--port", "8123", "--workers", "2"
    )

    # Assert
    assert code == 0
    ((app, options),) = calls
    assert app == "twinkit.service.app:app_from_env"
    assert options["factory"] is True
    assert (options["host"], options["port"], options["workers"]) == ("127.0.0.1", 8123, 2)
    assert os.environ["TWINKIT_DB"] == f"sqlite:///{tmp_path}/t.db"
    # the workers counted into one directory, removed when the server stopped
    assert not os.path.exists(metrics_dirs[0])
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_served_worker_freezes_its_start_up_objects_and_sets_the_gil_interval(
    tmp_path: Any,
) -> None:
    # Execute: build a worker's app as `twinkit serve` does, in a process of its own
    code = (
        "import gc; from twinkit.service.app import app_from_env; "
        "import sys; before = gc.get_freeze_count(); app_from_env(); "
        "print(before, gc.get_freeze_count(), sys.getswitchinterval())"
    )
    env = {
        **os.environ,
        "TWINKIT_ADMIN_TOKEN": "t" * 40,
        "TWINKIT_DB": f"{tmp_path}/t.db",
        "TWINKIT_SWITCH_INTERVAL_MS": "2.5",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )

    # Assert: the modules and the app (torch's objects among them) are frozen, and the
    # switch interval is the setting's (by default 1 ms: the event loop gets the GIL back
    # from busy threads five times sooner than with Python's 5 ms)
    assert done.returncode == 0, done.stderr
    before, after, switch = done.stdout.split()
    assert int(before) == 0 and int(after) > 100_000
    assert float(switch) == pytest.approx(0.0025)
    assert ServiceSettings.model_fields["switch_interval_ms"].default == 1.0
