"""Property-based fuzzing of the API with schemathesis against the app's own OpenAPI
document: no generated request, valid or not, may get a 5xx answer.

Each operation gets a fresh app over a fresh SQLite file, holding Alice's state twin with
data and a model (so forecasts answer) and her decision twin with labels. Requests carry
Alice's token, or the admin token on the admin routes; path parameters mostly name her
twins and her job, so that the handlers behind the ownership check are reached, and
sometimes keep the generated value (the 404 path). Background jobs run a worker that exits
at once: the fuzz is about the HTTP layer, and the job tests cover the real workers.

Besides "no 5xx", each answer is checked against the document: its status code is one the
operation declares, its content type and its body match what is declared for it.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from twinkit.engine import TwinEngine
from twinkit.service import ServiceSettings, create_app
from twinkit.service.routes import route_specs
from twinkit.service.state import ServiceState
from twinkit.store.db import Store

ADMIN_TOKEN = "admin-token-for-fuzzing-" + "z" * 32
STATE_TWIN, DECISION_TWIN = "alice-p1", "alice-d1"
#: examples per operation in the fuzzing phase; the whole file stays well under 2 minutes
MAX_EXAMPLES = 20
SEED = 20260601
ADMIN_PATHS = ("/v1/owners", "/v1/ledger/verify")
DECISIONS_CSV = "item_id,f1,f2,label\n" + "".join(
    f"i{i:02d},{i % 7 / 7:.3f},{i % 5 / 5:.3f},{'yes' if i % 3 else 'no'}\n" for i in range(20)
)


N_READINGS = 288
#: one day of 5-minute glucose readings
SIGNALS_CSV = "time,channel,value\n" + "".join(
    f"2026-01-05T{5 * i // 60:02d}:{5 * i % 60:02d}:00Z,glucose,{110 + i % 40}\n"
    for i in range(N_READINGS)
)


class _Fuzzed:
    """The app under test and what the test needs to address it."""

    def __init__(self, app: FastAPI, alice: str, job_id: int) -> None:
        self.app = app
        self.alice = alice
        self.job_id = job_id

    @property
    def state(self) -> ServiceState:
        state = self.app.state.twinkit
        assert isinstance(state, ServiceState)
        return state


@dataclass(frozen=True)
class _Template:
    """A store made once per module, copied for each operation: Alice's token and job id."""

    folder: Path
    alice: str
    job_id: int


def _engine_in(folder: Path) -> TwinEngine:
    return TwinEngine(Store(f"sqlite:///{folder}/fuzz.db", artifacts=folder / "artifacts"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> _Template:
    folder = tmp_path_factory.mktemp("fuzz-template")
    engine = _engine_in(folder)
    _, token = engine.owners.create("alice")
    engine.create_twin(STATE_TWIN, "state", "alice", {"note": "fuzzed"})
    engine.create_twin(DECISION_TWIN, "decision", "alice", {})
    signals = folder / "signals.csv"
    signals.write_text(SIGNALS_CSV)
    engine.ingest(signals, twin=STATE_TWIN)
    decisions = folder / "decisions.csv"
    decisions.write_text(DECISIONS_CSV)
    engine.ingest(decisions, twin=DECISION_TWIN)
    engine.fit(STATE_TWIN, model="persistence")
    job = engine.jobs.create(STATE_TWIN, "alice", "fit", {"model": "persistence"}, "elsewhere:1")
    engine.store.dispose()
    return _Template(folder, token, job.id)


@pytest.fixture
def fuzzed(
    template: _Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_Fuzzed]:
    """A started app over a fresh copy of the template store."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    quick = importlib.import_module("crash_worker").exit_hard
    folder = tmp_path / "store"
    shutil.copytree(template.folder, folder)
    settings_ = ServiceSettings.model_validate(
        {"admin_token": ADMIN_TOKEN, "rate_limit_per_minute": 1e9, "rate_limit_burst": 1_000_000}
    )
    app = create_app(_engine_in(folder), settings_)
    fuzz = _Fuzzed(app, template.alice, template.job_id)
    for kind in fuzz.state.runner.entry_points:  # fits, robustness reports, clone updates
        fuzz.state.runner.entry_points[kind] = quick
    yield fuzz
    fuzz.state.runner.close()
    fuzz.state.engine.store.dispose()


#: every operation the app documents (test_auth checks route_specs is exactly that)
OPERATIONS = sorted((method, spec.path) for spec in route_specs() for method in spec.methods)


def _pick(generated: Any, choices: list[Any]) -> Any:
    """Mostly one of ``choices``, chosen by the generated value; a quarter of the time the
    generated value itself. Deterministic, so a failure replays."""
    digest = hashlib.sha256(repr(generated).encode()).digest()[0]
    return generated if digest % 4 == 0 else choices[digest % len(choices)]


# schemathesis's pytest plugin (``schema.parametrize``) fails under pytest 9 (it reads
# ``Function._nodeid``), so the operations are parametrised here and each one's cases are
# drawn from schemathesis's strategy, valid and invalid, under Hypothesis.
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_request_gets_a_server_error(method: str, path: str, fuzzed: _Fuzzed) -> None:
    # Prepare
    config = schemathesis.Config.from_dict({"seed": SEED})
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app, config=config)
    operation = schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    token = ADMIN_TOKEN if path.startswith(ADMIN_PATHS) else fuzzed.alice

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        # Prepare: which of Alice's things the request names
        params = case.path_parameters or {}
        if "twin_id" in params:
            params["twin_id"] = _pick(params["twin_id"], [STATE_TWIN, DECISION_TWIN])
        if "job_id" in params:
            params["job_id"] = _pick(params["job_id"], [fuzzed.job_id])

        # The security scheme makes schemathesis send its own (invalid) tokens; the auth
        # tests cover those, this test goes past them.
        case.headers["Authorization"] = f"Bearer {token}"

        # Execute
        response = case.call()

        # Assert
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    call()


def test_the_fuzz_reaches_alices_twins(fuzzed: _Fuzzed) -> None:
    """The fixture's store holds what the fuzz is meant to reach (else every request would
    stop at a 404 and the fuzz would prove little)."""
    state_twin = fuzzed.state.engine.twin_summary(STATE_TWIN)
    decision_twin = fuzzed.state.engine.twin_summary(DECISION_TWIN)
    assert (state_twin["observations"], state_twin["serving_version"]) == (N_READINGS, 1)
    assert decision_twin["decisions"] == 20
    assert fuzzed.state.engine.jobs.get(fuzzed.job_id).twin_id == STATE_TWIN
