"""Twins: create, list and read your own, delete."""

from __future__ import annotations

import math

from fastapi import APIRouter, Response

from twinkit.core.twin import Channel, MetadataLimits
from twinkit.service.deps import OwnerDep, StateDep, TwinDep
from twinkit.service.routes.responses import AUTH_RESPONSES, CONFLICT_RESPONSES, TWIN_RESPONSES
from twinkit.service.schemas import ChannelIn, TwinCreate, TwinPublic

router = APIRouter(prefix="/twins", tags=["twins"], responses=AUTH_RESPONSES)


def to_channel(spec: ChannelIn) -> Channel:
    """A declared channel; a known name (glucose...) without a range gets its default."""
    known = Channel.parse(spec.name)
    if spec.low is None and spec.high is None:
        return Channel(
            spec.name, spec.unit if spec.unit is not None else known.unit, known.low, known.high
        )
    return Channel(
        spec.name,
        spec.unit or "",
        -math.inf if spec.low is None else spec.low,
        math.inf if spec.high is None else spec.high,
    )


def twin_public(state: StateDep, twin_id: str) -> TwinPublic:
    return TwinPublic(**state.engine.twin_summary(twin_id))


@router.post(
    "",
    status_code=201,
    response_model=TwinPublic,
    summary="Create a twin owned by the caller",
    responses=CONFLICT_RESPONSES,
)
def create_twin(body: TwinCreate, caller: OwnerDep, state: StateDep) -> TwinPublic:
    channels = [to_channel(c) for c in body.channels]
    settings = state.settings
    limits = MetadataLimits(
        settings.max_metadata_bytes, settings.max_metadata_keys, settings.max_metadata_depth
    )
    twin = state.engine.create_twin(
        body.id, body.kind, caller.name, body.metadata, channels, metadata_limits=limits
    )
    return twin_public(state, twin.ref)


@router.get("", response_model=list[TwinPublic], summary="List the caller's twins")
def list_twins(caller: OwnerDep, state: StateDep) -> list[TwinPublic]:
    return [twin_public(state, t.ref) for t in state.engine.list_twins(owner=caller.name)]


@router.get(
    "/{twin_id}",
    response_model=TwinPublic,
    summary="A twin, with its counts and serving version",
    responses=TWIN_RESPONSES,
)
def get_twin(twin: TwinDep, state: StateDep) -> TwinPublic:
    return twin_public(state, twin.ref)


@router.delete(
    "/{twin_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a twin and everything stored for it (the ledger keeps its history)",
    responses=TWIN_RESPONSES,
)
def delete_twin(twin: TwinDep, state: StateDep) -> Response:
    # Its jobs end as cancelled in the store; this process stops the children it runs.
    state.runner.cancel(state.engine.delete_twin(twin.ref))
    return Response(status_code=204)
