"""Fixtures of the service tests: an app over a fresh store, tokens, rows to ingest.

The store is a SQLite file, and again a PostgreSQL schema when ``TWINKIT_TEST_PG_URL`` is
set (``make_db_url`` in the top conftest): every service test runs on both backends.

Tests run with ``--import-mode=importlib`` and cannot import this file; annotate the
fixtures in a test's signature with the types spelled out, e.g. ``Callable[[str],
dict[str, str]]`` for ``new_owner``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from twinkit.service import ServiceSettings, create_app
from twinkit.service.state import ServiceState

ADMIN_TOKEN = "admin-token-for-tests-" + "x" * 32

MakeClientFn = Callable[..., TestClient]
FinishedJobFn = Callable[[TestClient, str, dict[str, str]], dict[str, Any]]


@pytest.fixture
def store_url(make_db_url: Callable[[str], str]) -> str:
    """The URL of the app's fresh store (SQLite file or PostgreSQL schema)."""
    return make_db_url("service")


@pytest.fixture
def make_client(store_url: str) -> Iterator[MakeClientFn]:
    """``make_client(fit_worker=..., **settings)``: a started app over the test's store.

    Every client made is shut down (lifespan included) at the end of the test.
    """
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        extra = {"fit_worker": overrides.pop("fit_worker")} if "fit_worker" in overrides else {}
        settings = ServiceSettings(admin_token=SecretStr(ADMIN_TOKEN), **overrides)
        client = TestClient(create_app(store_url, settings, **extra), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
        state_of(client).engine.store.dispose()


def state_of(client: TestClient) -> ServiceState:
    state = cast(FastAPI, client.app).state.twinkit
    assert isinstance(state, ServiceState)
    return state


@pytest.fixture
def crash_worker(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The module of stand-in job entry points (``crash_worker.py``), with its folder on
    ``sys.path`` so that a job's child process can import it by name too."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return importlib.import_module("crash_worker")


@pytest.fixture
def client(make_client: MakeClientFn) -> TestClient:
    return make_client()


@pytest.fixture
def service(client: TestClient) -> ServiceState:
    """The app's state: its engine (the store), metrics, runner."""
    return state_of(client)


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def new_owner(client: TestClient, admin: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """``new_owner(name)``: create an owner through the API; its Authorization header."""

    def make(name: str) -> dict[str, str]:
        answer = client.post("/v1/owners", json={"name": name}, headers=admin)
        assert answer.status_code == 201, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    return make


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Long-format signals as the JSON rows of POST /observations (no twin_id)."""
    return [
        {"time": pd.Timestamp(t).isoformat(), "channel": str(c), "value": float(v)}
        for t, c, v in frame[["time", "channel", "value"]].itertuples(index=False)
    ]


@pytest.fixture
def glucose_rows(cohort_frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Two days of one synthetic person's glucose and carbs, as JSON rows."""
    return rows_of(cohort_frame[cohort_frame["twin_id"] == "synth-001"])


@pytest.fixture
def state_twin(
    client: TestClient, new_owner: Callable[[str], dict[str, str]]
) -> Callable[[str, str], dict[str, str]]:
    """``state_twin(owner, twin_id)``: a state twin (glucose, carbs) of a new owner; the
    owner's Authorization header."""

    def make(owner: str, twin_id: str) -> dict[str, str]:
        headers = new_owner(owner)
        answer = client.post(
            "/v1/twins",
            json={
                "id": twin_id,
                "kind": "state",
                "channels": [{"name": "glucose"}, {"name": "carbs"}],
                "metadata": {"secret": f"marker-{twin_id}"},
            },
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
        return headers

    return make


@pytest.fixture
def app_state() -> Callable[[TestClient], ServiceState]:
    """``app_state(client)``: the state of any client's app (see ``make_client``)."""
    return state_of


def poll_finished(client: TestClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll a job until it is done, failed or cancelled (a child process starts in
    seconds); fail the test after three minutes."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(url, headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {url} did not finish in time: {job}")


@pytest.fixture
def finished_job() -> FinishedJobFn:
    """``finished_job(client, job_url, headers)``: the job once it has ended."""
    return poll_finished
