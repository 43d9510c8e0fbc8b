"""A twin's models: fit in the background, job status, versions, rollback, forecast.

The forecast route is the hot one. It checks the caller's ownership with the same single
statement that reads what the forecast depends on (no separate twin lookup), answers
from the worker's forecast cache when that holds the answer under the same key, and
otherwise computes it in the thread pool and keeps the JSON it answered.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from twinkit.core.errors import NotFoundError, TwinkitError
from twinkit.core.twin import TwinKind, public_id
from twinkit.engine.jobs import Job
from twinkit.engine.serving import ServedForecast, ServingHead, TwinChangedError
from twinkit.service.deps import OwnerDep, StateDep, TwinDep
from twinkit.service.errors import not_found
from twinkit.service.health_schemas import DecisionHealthPublic, HealthPublic
from twinkit.service.jobs import jsonable
from twinkit.service.routes.responses import AUTH_RESPONSES, CONFLICT_RESPONSES, TWIN_RESPONSES
from twinkit.service.schemas import (
    MAX_ID,
    ErrorPublic,
    FitRequest,
    ForecastPublic,
    Horizon,
    HorizonForecast,
    JobPublic,
    ModelVersionPublic,
    RollbackPublic,
)
from twinkit.service.state import ServiceState

router = APIRouter(
    prefix="/twins/{twin_id}", tags=["models"], responses={**AUTH_RESPONSES, **TWIN_RESPONSES}
)


def job_public(job: Job) -> JobPublic:
    fields = job.to_dict()
    fields["result"] = jsonable(job.result) if job.result is not None else None
    return JobPublic(**fields)


@router.post(
    "/fit",
    status_code=202,
    response_model=JobPublic,
    summary="Start fitting a new version in the background; poll the job it answers",
    description="A state twin fits a forecaster; a decision twin fits its clone (model "
    "auto only: the clone is scored by agreement with the donor's held-out answers).",
    responses={400: {"model": ErrorPublic, "description": "a model a decision twin has not"}},
)
def start_fit(body: FitRequest, twin: TwinDep, caller: OwnerDep, state: StateDep) -> JobPublic:
    if twin.kind is TwinKind.DECISION and body.model != "auto":
        raise TwinkitError(
            f"twin {twin.id!r} is a decision twin: its model is its clone; fit with model auto"
        )
    params: dict[str, Any] = {
        "model": body.model,
        "seed": body.seed,
        "horizons": list(body.horizons),
    }
    if body.update is not None:
        params["update"] = body.update
        params["since"] = None if body.since is None else body.since.isoformat()
    return job_public(state.runner.submit_fit(twin.key, caller.name, params, twin.uid))


@router.get("/jobs", response_model=list[JobPublic], summary="The twin's jobs, oldest first")
def list_jobs(twin: TwinDep, state: StateDep) -> list[JobPublic]:
    return [job_public(j) for j in state.engine.jobs.of_twin(twin.key, twin.uid)]


@router.get("/jobs/{job_id}", response_model=JobPublic, summary="One job's status and result")
def get_job(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)], twin: TwinDep, caller: OwnerDep, state: StateDep
) -> JobPublic:
    try:
        job: Job | None = state.engine.jobs.get(job_id)
    except NotFoundError:
        job = None
    if (
        job is None
        or job.twin_id != twin.key
        or job.owner != caller.name
        or job.twin_uid not in (None, twin.uid)
    ):
        raise not_found(f"job {job_id} of twin {twin.id!r}")
    return job_public(job)


@router.get("/models", response_model=list[ModelVersionPublic], summary="The twin's model versions")
def list_models(twin: TwinDep, state: StateDep) -> list[ModelVersionPublic]:
    return [ModelVersionPublic(**v.to_dict()) for v in state.engine.models(twin.ref)]


@router.post(
    "/models/rollback",
    response_model=RollbackPublic,
    summary="Serve the version that served before the current one",
    responses=CONFLICT_RESPONSES,
)
def rollback(twin: TwinDep, state: StateDep) -> RollbackPublic:
    version = state.engine.rollback(twin.ref)
    state.metrics.rollbacks.inc()
    return RollbackPublic(version=version)


@router.get(
    "/health",
    response_model=HealthPublic | DecisionHealthPublic,
    summary="Live accuracy: how the served forecasts (or a clone's answers) did",
    description="A state twin (`kind` state): per version and horizon, live RMSE, MAE, bias "
    "and 90% coverage of the forecasts the twin served (and of the version before it, in "
    "shadow, from the same data) over `window_h` hours of target time up to the newest scored "
    "reading; the live error per hour; the holdout figures the serving version was promoted "
    "with. A decision twin (`kind` decision): how often the clone serving when each answer "
    "came had chosen the donor's label, overall, recently and per version; the changes of "
    "the donor recorded and the window of answers the clone learns from.",
)
def health(
    twin: TwinDep,
    state: StateDep,
    window_h: Annotated[float, Query(gt=0, le=24 * 366, description="hours")] = 7 * 24.0,
) -> HealthPublic | DecisionHealthPublic:
    report = state.engine.health(twin.ref, window_h)
    report["twin_id"] = report.pop("twin")
    if report["kind"] == "decision":
        return DecisionHealthPublic.model_validate(report)
    return HealthPublic.model_validate(report)


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def forecast_public(twin_id: str, served: ServedForecast) -> ForecastPublic:
    f = served.forecast
    per_horizon = []
    for i, (h, t) in enumerate(zip(f.horizons, f.times, strict=True)):
        quantiles = {f"{q:g}": _finite(v[i]) for q, v in sorted(f.quantiles.items())}
        per_horizon.append(
            HorizonForecast(
                horizon_min=h,
                time=t.isoformat(),
                median=_finite(f.quantiles[0.5][i]),
                mean=_finite(f.mean[i]),
                quantiles=quantiles,
            )
        )
    return ForecastPublic(
        twin_id=twin_id,
        target=f.target,
        origin=f.origin.isoformat(),
        model=f.model,
        version=f.version,
        source="population" if served.source == "population" else "twin",
        degraded=served.degraded,
        degraded_reason=served.reason,
        forecasts=per_horizon,
    )


@router.get(
    "/forecast",
    response_model=ForecastPublic,
    summary="Forecast from the latest data: median, quantiles, model version, degraded flag",
    responses={503: {"model": ErrorPublic, "description": "no version can answer"}},
)
async def forecast(
    twin_id: str,
    caller: OwnerDep,
    state: StateDep,
    horizons: Annotated[
        list[Horizon], Query(min_length=1, max_length=32, description="minutes ahead")
    ] = [30, 60],  # noqa: B006  (FastAPI copies defaults; never mutated)
) -> Response:
    # One indexed statement: blocking the event loop for it costs less than a thread hop.
    head = state.engine.serving_head(caller.name, twin_id)
    if head is None:
        raise not_found(f"twin {twin_id!r}")
    key = state.engine.forecast_key(head, horizons)
    body = state.forecasts.get(key) if key is not None else None
    state.metrics.forecast_cache[body is not None].inc()
    if body is None:
        body = await run_in_threadpool(_compute_forecast, state, head, horizons)
    return Response(body, media_type="application/json")


def _compute_forecast(state: ServiceState, head: ServingHead, horizons: list[int]) -> bytes:
    """The forecast's JSON, kept in the forecast cache when its answer may be re-used."""
    try:
        served = state.engine.forecast_head(head, horizons)
    except TwinChangedError:
        raise not_found(f"twin {public_id(head.twin_id)!r}") from None
    if served.degraded:
        state.metrics.degraded_predictions.labels(served.source).inc()
    body = forecast_public(public_id(head.twin_id), served).model_dump_json().encode("utf-8")
    if served.key is not None:
        state.forecasts.put(served.key, body)
    return body
