"""The FastAPI app: every capability of TwinEngine over HTTP, for many owners at once."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError as SettingsError

from twinkit import __version__
from twinkit.core.errors import TwinkitError
from twinkit.engine import TwinEngine
from twinkit.service.docs import install_docs
from twinkit.service.errors import install_error_handlers
from twinkit.service.ingest_pool import IngestPool
from twinkit.service.jobs import FitWorker, JobRunner
from twinkit.service.logs import configure_logging
from twinkit.service.metrics import ServiceMetrics
from twinkit.service.middleware import (
    AllowMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
    RouteTemplates,
)
from twinkit.service.monitor import Monitor
from twinkit.service.pages import PAGE_PATHS, install_pages
from twinkit.service.ratelimit import RateLimiter
from twinkit.service.routes import API_PREFIX, HEALTH_ROUTER, V1_ROUTERS, route_specs
from twinkit.service.settings import MAKE_TOKEN, ServiceSettings
from twinkit.service.state import ServiceState
from twinkit.service.worker import run_fit

DESCRIPTION = """\
Each owner reaches only their own twins: every route that names a twin answers 404 for
another owner's twin, exactly as for one that does not exist. Authenticate with
`Authorization: Bearer <token>`; the administrator creates owners (`POST /v1/owners`) and
each owner's token is shown once. Errors answer `{"error": {"type", "message", "problems"}}`.
"""


def load_settings(**overrides: Any) -> ServiceSettings:
    """Settings from the arguments, else ``TWINKIT_*`` variables; a clear error if the admin
    token is missing or weak (there is no default admin token)."""
    try:
        return ServiceSettings(**overrides)
    except SettingsError as exc:
        raise TwinkitError(f"the service cannot start: {_settings_problems(exc)}") from None


def _settings_problems(exc: SettingsError) -> str:
    problems = []
    for e in exc.errors():
        name = ".".join(str(p) for p in e["loc"])
        if name == "admin_token" and (e["type"] == "missing" or e.get("input") == ""):
            problems.append(
                "TWINKIT_ADMIN_TOKEN is not set, and there is no default admin token; "
                f"make one with: {MAKE_TOKEN}"
            )
        else:
            message = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"TWINKIT_{name.upper()}: {message}")
    return "; ".join(problems)


def create_app(
    engine: TwinEngine | str | None = None,
    settings: ServiceSettings | None = None,
    fit_worker: FitWorker = run_fit,
) -> FastAPI:
    """The app over ``engine`` (a TwinEngine or a store URL; default ``$TWINKIT_DB``).

    ``settings`` default to :func:`load_settings`. ``fit_worker`` is the function a fit
    job's child process runs (it must be importable by name, as "spawn" starts the child
    afresh); tests replace it to make the child crash.
    """
    engine = engine if isinstance(engine, TwinEngine) else TwinEngine(engine)
    if engine.store.is_memory:
        raise TwinkitError(
            "the service needs a store that its fit processes can open too: a SQLite file "
            "or a PostgreSQL URL, not an in-memory database"
        )
    settings = settings or load_settings()
    metrics = ServiceMetrics()
    runner = JobRunner(
        engine,
        metrics,
        settings.fit_workers,
        settings.fit_timeout_s,
        worker=fit_worker,
        max_jobs_per_owner=settings.max_jobs_per_owner,
    )
    state = ServiceState(
        engine=engine,
        settings=settings,
        metrics=metrics,
        limiter=RateLimiter(settings.rate_limit_per_minute / 60.0, settings.rate_limit_burst),
        runner=runner,
        ingest=IngestPool(engine, settings.ingest_processes, settings.ingest_niceness),
        monitor=Monitor(engine, metrics, settings.monitor_interval_s, runner.submit_fit),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.runner.recover_orphans()
        state.ingest.warm()
        state.monitor.start()
        yield
        state.runner.close()
        state.monitor.close()

    app = FastAPI(
        title="twinkit",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_docs serves them without a CDN
        redoc_url=None,
    )
    app.state.twinkit = state
    install_error_handlers(app)
    app.include_router(HEALTH_ROUTER)
    for router in V1_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    install_pages(app)
    install_docs(app)
    # The last added is the outermost: request ids and metrics see every answer, 413 too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AllowMiddleware, routes=app.router.routes)
    templates = RouteTemplates([*(spec.path for spec in route_specs()), *PAGE_PATHS])
    app.add_middleware(RequestContextMiddleware, metrics=metrics, routes=templates)
    return app


def app_from_env() -> FastAPI:
    """What ``twinkit serve`` runs in each worker: the store of ``$TWINKIT_DB``, settings
    from ``TWINKIT_*``, JSON logs."""
    configure_logging()
    settings = load_settings()
    app = create_app(settings=settings)
    # What is loaded by now (modules, torch's among them: some 300,000 objects) lives as
    # long as the worker. Frozen, the collector no longer walks it: a full collection of
    # it took 100-300 ms on a 2-core machine and would stall every request the worker
    # had in hand; under load, a worker's full collections then took at most about 50 ms.
    gc.collect()
    gc.freeze()
    # Ingests and computed forecasts run in the thread pool and hold the GIL in long
    # stretches of pandas work; the event loop, which answers cached forecasts in a few
    # hundred microseconds, waited up to the default 5 ms switch interval each time it
    # needed the GIL back. The default here, 1 ms, did best of 0.5, 1, 2 and 5 ms in
    # benchmarks/service_load.py (interleaved runs on one machine; docs/benchmarks.md):
    # 500 forecasts/s with readings arriving at the CGM rate had p99 26-32 ms at 1 ms,
    # 52 ms at 5 ms.
    sys.setswitchinterval(settings.switch_interval_ms / 1000.0)
    return app
