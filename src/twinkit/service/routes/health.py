"""Liveness, readiness and Prometheus metrics: unauthenticated, for the platform."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from twinkit.service.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The store answers (503 if not)",
    responses={503: {"description": "the store does not answer"}},
)
def readyz(state: StateDep) -> Any:
    problem = state.engine.store.ping()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "problem": problem}, status_code=503)
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics of the server (every worker process)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
