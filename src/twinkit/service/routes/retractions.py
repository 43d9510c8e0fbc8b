"""Retractions: take wrong rows out of a twin's data, recorded in the ledger."""

from __future__ import annotations

from fastapi import APIRouter

from twinkit.service.deps import StateDep, TwinDep
from twinkit.service.routes.data import utc_timestamp
from twinkit.service.routes.responses import AUTH_RESPONSES, TWIN_RESPONSES
from twinkit.service.schemas import RetractionPublic, RetractionRequest

router = APIRouter(
    prefix="/twins/{twin_id}",
    tags=["data"],
    responses={**AUTH_RESPONSES, **TWIN_RESPONSES},
)


@router.post(
    "/retractions",
    response_model=RetractionPublic,
    summary="Retract rows of the twin's data (a batch, a time range, items), with a reason",
)
def retract(body: RetractionRequest, twin: TwinDep, state: StateDep) -> RetractionPublic:
    result = state.engine.retract(
        twin.ref,
        body.reason,
        batch_id=body.batch_id,
        start=utc_timestamp(body.start),
        end=utc_timestamp(body.end),
        channels=body.channels,
        items=body.items,
    )
    return RetractionPublic(**result.to_dict())
