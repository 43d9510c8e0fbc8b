"""Owners and their tokens: the administrator's routes."""

from __future__ import annotations

from fastapi import APIRouter

from twinkit.service.deps import AdminDep, StateDep
from twinkit.service.routes.responses import AUTH_RESPONSES, CONFLICT_RESPONSES
from twinkit.service.schemas import OwnerCreate, OwnerCreated, OwnerPublic

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
