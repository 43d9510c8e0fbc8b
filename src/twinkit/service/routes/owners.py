"""Owners and their tokens (the administrator's routes), and an owner's own settings."""

from __future__ import annotations

from fastapi import APIRouter

from twinkit.service.deps import AdminDep, OwnerDep, StateDep
from twinkit.service.routes.responses import AUTH_RESPONSES, CONFLICT_RESPONSES
from twinkit.service.schemas import OwnerCreate, OwnerCreated, OwnerPublic, PopulationSharing

router = APIRouter(prefix="/owners", tags=["owners"], responses=AUTH_RESPONSES)


@router.post(
    "",
    status_code=201,
    response_model=OwnerCreated,
    summary="Create an owner; the answer holds its token, shown this once",
    responses=CONFLICT_RESPONSES,
)
def create_owner(body: OwnerCreate, _admin: AdminDep, state: StateDep) -> OwnerCreated:
    owner, token = state.engine.owners.create(body.name)
    return OwnerCreated(name=owner.name, created_at=owner.created_at, token=token)


@router.get("", response_model=list[OwnerPublic], summary="List owners (never their tokens)")
def list_owners(_admin: AdminDep, state: StateDep) -> list[OwnerPublic]:
    return [OwnerPublic(**o.to_dict()) for o in state.engine.owners.list()]


@router.get(
    "/me/population-sharing",
    response_model=PopulationSharing,
    summary="Whether your twins are pooled with other sharing owners' for population priors",
)
def get_sharing(caller: OwnerDep, state: StateDep) -> PopulationSharing:
    return PopulationSharing(share=caller.name in state.engine.sharing_owners())


@router.put(
    "/me/population-sharing",
    response_model=PopulationSharing,
    summary="Share your twins' data for population priors with other sharing owners, or stop",
    description="By default a population prior pools one owner's twins. An owner who shares "
    "gets priors pooled over every sharing owner's twins, and its twins' data go into theirs. "
    "Stopping makes every prior that pooled your twins with others' serve no one. Recorded "
    "in the ledger.",
)
def put_sharing(body: PopulationSharing, caller: OwnerDep, state: StateDep) -> PopulationSharing:
    state.engine.share_population(caller.name, body.share)
    return PopulationSharing(share=body.share)
