"""Property-based fuzzing of the API with schemathesis against the app's own OpenAPI
document: no generated request, valid or not, may get a 5xx answer, and every answer
conforms to the document.

Each operation gets a fresh app over a fresh SQLite file, holding Alice's state twin with
data and a model (so forecasts answer) and her decision twin with labels. Requests carry
Alice's token, or the admin token on the admin routes; path parameters mostly name her
twins and her job, so that the handlers behind the ownership check are reached, and
sometimes keep the generated value (the 404 path). Background jobs run a worker that exits
at once: the fuzz is about the HTTP layer, and the job tests cover the real workers.

Each answer goes through every check schemathesis has (its defaults: status code, content
type, headers and body as declared; schema-violating requests refused; schema-valid ones
accepted; the required Authorization enforced; undeclared methods answered 405 with
``Allow``; OPTIONS's ``Allow`` as declared), in two phases: the fuzzing phase draws cases
under Hypothesis, the coverage phase walks each operation's boundary values, missing
parameters and undeclared methods. One check is refined, not dropped: a schema-valid
request refused by a rule of the domain that no JSON schema can state (two channels of
one name, a label for a question not asked, a horizon beyond the model's) counts as
accepted by the schema; a refusal by the request validator itself still fails it.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from twinkit.core.errors import TwinkitError
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
#: routes only a decision twin answers (the rest of those naming a twin: a state twin's,
#: or either kind's)
DECISION_ROUTES = ("/clone/", "/robustness", "/decisions")
EITHER_KIND_ROUTES = ("/v1/twins/{twin_id}", "/v1/twins/{twin_id}/history", "/jobs", "/upload")
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
def fuzzed(template: _Template, tmp_path: Path, crash_worker: ModuleType) -> Iterator[_Fuzzed]:
    """A started app over a fresh copy of the template store."""
    quick = crash_worker.exit_hard
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


def _twins_for(path: str) -> list[str]:
    """Alice's twins that the route serves: a clone route asked of a state twin refuses
    it (400), which would say nothing about the schema."""
    if path.endswith(EITHER_KIND_ROUTES):
        return [STATE_TWIN, DECISION_TWIN]
    return [DECISION_TWIN] if any(part in path for part in DECISION_ROUTES) else [STATE_TWIN]


def _domain_errors() -> frozenset[str]:
    """The error types of twinkit's own rules (``TwinkitError`` and its subclasses)."""
    found, todo = set(), [TwinkitError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(found)


def schema_valid_requests_pass_the_schema(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """schemathesis's ``positive_data_acceptance``, except that a refusal by a rule of the
    domain (an error type of twinkit's) counts as accepted by the schema: only a refusal
    by the request validator (``RequestValidationError``) or the HTTP layer fails it."""
    if response.status_code in (400, 422):
        try:
            kind = response.json()["error"]["type"]
        except (ValueError, KeyError, TypeError):
            kind = None
        if kind in _domain_errors():
            return None
    return positive_data_acceptance(ctx, response, case)


def _address(case: Case[Any], path: str, job_id: int, token: str) -> None:
    """Point a generated case at Alice's things, with a valid token.

    The security scheme makes schemathesis send its own (invalid) tokens; the auth tests
    cover those, this test goes past them. A case that leaves the header out on purpose
    (a negative case: the required Authorization missing) keeps it out, and is answered
    401 as it expects.
    """
    params = case.path_parameters or {}
    if "twin_id" in params:
        params["twin_id"] = _pick(params["twin_id"], _twins_for(path))
    if "job_id" in params:
        params["job_id"] = _pick(params["job_id"], [job_id])
    if case.headers is not None and "Authorization" in case.headers:
        case.headers["Authorization"] = f"Bearer {token}"


def _check(case: Case[Any], response: Any) -> None:
    """Every check schemathesis has, positive_data_acceptance refined (see above)."""
    case.validate_response(
        response,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[schema_valid_requests_pass_the_schema],
    )


def _schema(fuzzed: _Fuzzed) -> Any:
    config = schemathesis.Config.from_dict({"seed": SEED})
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app, config=config)


def _token(fuzzed: _Fuzzed, path: str) -> str:
    return ADMIN_TOKEN if path.startswith(ADMIN_PATHS) else fuzzed.alice


# schemathesis's pytest plugin (``schema.parametrize``) fails under pytest 9 (it reads
# ``Function._nodeid``), so the operations are parametrised here and each one's cases are
# drawn from schemathesis's strategy, valid and invalid, under Hypothesis.
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_request_gets_a_server_error(method: str, path: str, fuzzed: _Fuzzed) -> None:
    # Prepare
    operation = _schema(fuzzed)[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    token = _token(fuzzed, path)

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        # Prepare: which of Alice's things the request names, and her token
        _address(case, path, fuzzed.job_id, token)

        # Execute
        response = case.call()

        # Assert
        _check(case, response)

    call()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_boundary_cases_conform(method: str, path: str, fuzzed: _Fuzzed) -> None:
    """The coverage phase: each operation's boundary values, each parameter missing or of
    the wrong type, and the methods it does not declare (405 with Allow)."""
    # Prepare
    schema = _schema(fuzzed)
    operation = schema[path][method]
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    cases = list(
        schema.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=generation,
        )
    )
    token = _token(fuzzed, path)
    failures: list[str] = []

    for case in cases:
        _address(case, path, fuzzed.job_id, token)

        # Execute
        response = case.call()

        # Assert (every case is called; the failures are reported together)
        try:
            _check(case, response)
        except (AssertionError, BaseExceptionGroup) as failure:
            failures.append(str(failure))

    assert cases
    assert not failures, "\n\n".join(failures)


def test_the_fuzz_reaches_alices_twins(fuzzed: _Fuzzed) -> None:
    """The fixture's store holds what the fuzz is meant to reach (else every request would
    stop at a 404 and the fuzz would prove little)."""
    state_twin = fuzzed.state.engine.twin_summary(STATE_TWIN)
    decision_twin = fuzzed.state.engine.twin_summary(DECISION_TWIN)
    assert (state_twin["observations"], state_twin["serving_version"]) == (N_READINGS, 1)
    assert decision_twin["decisions"] == 20
    assert fuzzed.state.engine.jobs.get(fuzzed.job_id).twin_id == STATE_TWIN
