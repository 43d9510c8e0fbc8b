"""A twin's data: ingest (JSON rows or a file), read back, quarantine.

Every row goes to the twin in the URL: the ingest pipeline is called with that twin, so a
file whose ``twin_id`` column names any other twin is rejected as a whole (422), before
anything is stored.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, File, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from twinkit.core.errors import NotFoundError, TooLargeError
from twinkit.core.twin import TwinKind
from twinkit.engine.ingest import IngestResult
from twinkit.service.deps import OwnerDep, StateDep, TwinDep
from twinkit.service.errors import ApiError
from twinkit.service.routes.responses import (
    AUTH_RESPONSES,
    BODY_RESPONSES,
    CONFLICT_RESPONSES,
    TWIN_RESPONSES,
)
from twinkit.service.schemas import (
    DecisionPage,
    DecisionPublic,
    ErrorPublic,
    IngestPublic,
    IsoDateTime,
    ObservationBatch,
    QuarantinePublic,
    ReleasePublic,
    ReleaseRequest,
    SignalPage,
    SignalPublic,
)
from twinkit.service.state import ServiceState
from twinkit.service.worker import UploadLimits

router = APIRouter(
    prefix="/twins/{twin_id}", tags=["data"], responses={**AUTH_RESPONSES, **TWIN_RESPONSES}
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


def _signal_frame(body: ObservationBatch) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [r.time for r in body.rows],
            "channel": [r.channel for r in body.rows],
            "value": [r.value for r in body.rows],
        }
    )


def _counted(state: ServiceState, result: IngestResult, kind: str) -> IngestPublic:
    if not result.already_ingested:
        state.metrics.rows_ingested.labels(kind).inc(result.n_stored)
        state.metrics.rows_quarantined.labels(kind).inc(result.n_quarantined)
    fields = result.to_dict()
    fields.pop("twins")  # only ever this twin
    return IngestPublic(**fields)


def upload_name(filename: str | None) -> str:
    """An uploaded file's name as the ledger keeps it: its base name, plain characters.

    >>> upload_name("../x/readings 2026.CSV")
    'readings_2026.CSV'
    """
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("_", base)[:200] or "upload"


@router.post(
    "/observations",
    response_model=IngestPublic,
    summary="Ingest signal rows (a state twin's readings)",
    responses=BODY_RESPONSES,
)
async def post_observations(
    body: ObservationBatch, twin: TwinDep, caller: OwnerDep, state: StateDep
) -> IngestPublic:
    source = f"api:{caller.name}:rows"
    limit = state.settings.max_upload_rows
    if len(body.rows) > limit:
        raise TooLargeError(source, "rows", limit, UploadLimits.setting("rows"))
    # Up to 100k rows: made into a frame off the event loop, as the ingest itself runs.
    frame = await run_in_threadpool(_signal_frame, body)
    result = await state.ingest.rows(frame, twin.ref, source)
    return _counted(state, result, "signals")


@router.post(
    "/observations/upload",
    response_model=IngestPublic,
    summary="Ingest a file (.csv, .parquet, .jsonl): signals or decisions, as `twinkit ingest`",
    responses={
        **BODY_RESPONSES,
        413: {
            "model": ErrorPublic,
            "description": "the body is larger than the server takes, or the file has more "
            "rows, columns or cells than its limits (TWINKIT_MAX_UPLOAD_ROWS, _COLUMNS, _CELLS)",
        },
    },
)
async def upload_observations(
    file: Annotated[UploadFile, File(description="the batch; twin_id may be left out")],
    twin: TwinDep,
    caller: OwnerDep,
    state: StateDep,
) -> IngestPublic:
    name = upload_name(file.filename)
    source = f"api:{caller.name}:{name}"
    settings = state.settings
    limits = UploadLimits(
        settings.max_upload_rows, settings.max_upload_columns, settings.max_upload_cells
    )
    result = await state.ingest.upload(await file.read(), name, source, twin.ref, limits)
    return _counted(state, result, "signals" if twin.kind is TwinKind.STATE else "decisions")


def utc_timestamp(moment: datetime | None) -> pd.Timestamp | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # as at ingest: a time without offset is UTC
    return pd.Timestamp(moment).tz_convert("UTC")


@router.get(
    "/data",
    response_model=SignalPage,
    summary="A state twin's stored signals in a time range, oldest first, paged",
)
def get_data(
    twin: TwinDep,
    state: StateDep,
    start: Annotated[IsoDateTime | None, Query(description="inclusive; ISO-8601")] = None,
    end: Annotated[IsoDateTime | None, Query(description="inclusive; ISO-8601")] = None,
    channel: Annotated[list[str] | None, Query(description="only these (repeatable)")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> SignalPage:
    rows = state.engine.signals_between(twin.ref, utc_timestamp(start), utc_timestamp(end), channel)
    truncated = len(rows) > limit
    next_start = None
    if truncated:
        # Cut between two times, never inside one, so that the next page loses nothing.
        cut = rows["time"].iloc[limit]
        kept = rows[rows["time"] < cut]
        if kept.empty:  # more rows share the first time than the limit: give them all
            kept, cut = rows[rows["time"] == cut], cut + pd.Timedelta(1, "us")
        rows, next_start = kept, cut.isoformat()
    return SignalPage(
        twin_id=twin.id,
        rows=[
            SignalPublic(time=t.isoformat(), channel=str(c), value=float(v))
            for t, c, v in rows.itertuples(index=False)
        ],
        truncated=truncated,
        next_start=next_start,
    )


@router.get(
    "/decisions",
    response_model=DecisionPage,
    summary="A decision twin's stored decisions, by item id",
)
def get_decisions(
    twin: TwinDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> DecisionPage:
    stored = state.engine.decisions(twin.ref).head(limit)
    return DecisionPage(
        twin_id=twin.id,
        rows=[
            DecisionPublic(item_id=str(i), label=str(lbl), features=json.loads(f))
            for i, lbl, f in stored.itertuples(index=False)
        ],
    )


@router.get(
    "/quarantine",
    response_model=list[QuarantinePublic],
    summary="Rows of this twin held back at ingest, with the reason",
)
def list_quarantine(
    twin: TwinDep, state: StateDep, include_released: bool = False
) -> list[QuarantinePublic]:
    return [QuarantinePublic(**row) for row in state.engine.quarantine(twin.ref, include_released)]


@router.post(
    "/quarantine/release",
    response_model=ReleasePublic,
    summary="Store quarantined rows of this twin after all",
    responses=CONFLICT_RESPONSES,
)
def release_quarantine(body: ReleaseRequest, twin: TwinDep, state: StateDep) -> ReleasePublic:
    mine = {row["id"]: row for row in state.engine.quarantine(twin.ref, include_released=True)}
    others = sorted(set(body.ids) - set(mine))
    if others:
        # Ids of other twins' rows answer as ids that do not exist.
        raise NotFoundError(f"no quarantined row(s) of twin {twin.id!r} with id {others}")
    done = sorted(i for i in set(body.ids) if mine[i]["released_at"] is not None)
    if done:
        raise ApiError(409, "Conflict", f"quarantined row(s) {done} were released already")
    return ReleasePublic(released=state.engine.release(body.ids))
