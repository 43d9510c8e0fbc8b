"""The ledger: verification of the whole store (admin) and one twin's history (its owner)."""

from __future__ import annotations

from fastapi import APIRouter

from twinkit.service.deps import AdminDep, StateDep, TwinDep
from twinkit.service.routes.responses import AUTH_RESPONSES, TWIN_RESPONSES
from twinkit.service.schemas import LedgerEntryPublic, VerifyPublic

router = APIRouter(tags=["ledger"], responses=AUTH_RESPONSES)


@router.get(
    "/ledger/verify",
    response_model=VerifyPublic,
    summary="Check the chain, the stored data and the model artifacts against the ledger",
)
def verify(_admin: AdminDep, state: StateDep) -> VerifyPublic:
    report = state.engine.verify()
    return VerifyPublic(
        ok=report.ok,
        entries=report.entries,
        batches=report.batches,
        models=report.models,
        problems=report.problems,
    )


@router.get(
    "/twins/{twin_id}/history",
    response_model=list[LedgerEntryPublic],
    summary="The ledger entries of this twin since it was created, oldest first",
    responses=TWIN_RESPONSES,
)
def history(twin: TwinDep, state: StateDep) -> list[LedgerEntryPublic]:
    entries = state.engine.history(twin.ref, owner=twin.owner)
    # An id can be deleted and created again: the earlier twin's entries are not this
    # twin's history. Entries that span owners (a shared prior) show others as counts.
    born = max(
        (i for i, e in enumerate(entries) if e.event == "twin_created" and e.twin_id == twin.key),
        default=0,
    )
    return [LedgerEntryPublic(**e.to_dict()) for e in entries[born:]]
