"""Ask a decision twin: what would its person choose for these items?"""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from twinkit.service.deps import StateDep, TwinDep
from twinkit.service.routes.responses import AUTH_RESPONSES, TWIN_RESPONSES
from twinkit.service.schemas import DecideRequest, DecisionsPublic, ErrorPublic

router = APIRouter(
    prefix="/twins/{twin_id}",
    tags=["decisions"],
    responses={**AUTH_RESPONSES, **TWIN_RESPONSES},
)


@router.post(
    "/decide",
    response_model=DecisionsPublic,
    summary="What the person would choose for each item, by the twin's serving clone",
    responses={
        400: {"model": ErrorPublic, "description": "not a decision twin"},
        422: {"model": ErrorPublic, "description": "an item lacks a feature, or has others"},
    },
)
def decide(body: DecideRequest, twin: TwinDep, state: StateDep) -> DecisionsPublic:
    rows = [{"item_id": item.item_id, **item.features} for item in body.items]
    answers = state.engine.decide(twin.ref, pd.DataFrame(rows), source="request")
    return DecisionsPublic(**answers.to_dict())
