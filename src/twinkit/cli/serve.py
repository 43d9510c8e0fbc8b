"""`twinkit serve`: the HTTP API over the store, with uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated

import typer

from twinkit.cli.common import DbOption, app, engine_for, err
from twinkit.core.errors import TwinkitError

#: what each uvicorn worker imports and calls to build its app
APP_FACTORY = "twinkit.service.app:app_from_env"
WORKER_STARTUP_S = 120


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each with its own rate limits; one /metrics).")
    ] = 1,
) -> None:
    """Serve the REST API (/v1, OpenAPI at /docs). Needs TWINKIT_ADMIN_TOKEN."""
    try:
        import uvicorn

        from twinkit.service.app import load_settings
        from twinkit.service.logs import configure_logging
        from twinkit.service.metrics import MULTIPROC_ENV
    except ImportError as exc:
        raise TwinkitError(
            f"the service needs its extra dependencies ({exc.name} is missing): "
            "pip install 'twinkit[service]'"
        ) from None
    if workers < 1:
        raise TwinkitError("--workers must be at least 1")
    settings = load_settings()  # no admin token, no service: checked before anything starts
    engine = engine_for(db)  # opens (and if need be creates) the store once, here
    if engine.store.is_memory:
        raise TwinkitError("twinkit serve needs a store file or server, not an in-memory database")
    # The workers build their app from the environment: the same store for all of them.
    os.environ["TWINKIT_DB"] = engine.store.url
    # Several workers count into files of one directory, so any of them can answer a
    # scrape with the whole server's counts (twinkit.service.metrics). The variable must be
    # set before a worker imports prometheus-client: the workers are spawned, so it is.
    metrics_dir = None
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="twinkit-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    configure_logging()
    err.print(
        f"serving {engine.store.display_url} on http://{host}:{port} ({workers} worker(s), "
        f"{settings.fit_workers} fit(s) at a time each)"
    )
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # uvloop and httptools when installed (uvicorn[standard]), else asyncio and h11:
            # the C parser and loop cost a fraction of the pure-Python ones per request.
            loop="auto",
            http="auto",
            access_log=False,  # the app logs each request itself, with its request id
            log_config=None,  # keep the JSON logging configured above
            # A worker imports torch before it answers; uvicorn's default of 5 s would kill
            # it on a busy machine and start it again, for ever.
            timeout_worker_healthcheck=WORKER_STARTUP_S,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ[MULTIPROC_ENV]
