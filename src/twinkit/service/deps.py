"""Dependencies of the routes, as typed aliases: the app's state, the caller, their twin.

The state and caller dependencies are ``async``: they do not block (a token's owner is
looked up in the store only once per few seconds, see ``auth``), and FastAPI runs a
plain ``def`` dependency in its thread pool, a thread hop per dependency per request.
The twin's lookup reads the store, so it stays a ``def`` and runs in the pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twinkit.core.errors import NotFoundError
from twinkit.core.twin import Twin, twin_key
from twinkit.service.auth import Caller, authenticate, require_admin, require_owner
from twinkit.service.errors import not_found
from twinkit.service.state import ServiceState

# Declares the scheme in the OpenAPI document; the header is read by `authenticate`, which
# answers 401 (not FastAPI's 403) and applies the rate limit.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An owner's token (POST /v1/owners) or the admin token (TWINKIT_ADMIN_TOKEN).",
)


async def get_state(request: Request) -> ServiceState:
    state = request.app.state.twinkit
    if not isinstance(state, ServiceState):
        raise TypeError("the app was not built by twinkit.service.create_app")
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def _caller(
    request: Request,
    state: StateDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Caller:
    return authenticate(request, state)


CallerDep = Annotated[Caller, Depends(_caller)]


async def _owner(caller: CallerDep) -> Caller:
    return require_owner(caller)


async def _admin(caller: CallerDep) -> Caller:
    return require_admin(caller)


OwnerDep = Annotated[Caller, Depends(_owner)]
AdminDep = Annotated[Caller, Depends(_admin)]


def owned_twin(twin_id: str, caller: OwnerDep, state: StateDep) -> Twin:
    """The twin named in the path, if the caller owns it. Another owner's twin answers
    exactly as a twin that does not exist, so that no one learns which ids are taken."""
    try:
        # The caller's own id space: another owner's twin of the same id is not looked at.
        twin = state.engine.get_twin(twin_key(caller.name, twin_id))
    except NotFoundError:
        twin = None
    if twin is None or twin.owner != caller.name:
        raise not_found(f"twin {twin_id!r}")
    return twin


TwinDep = Annotated[Twin, Depends(owned_twin)]
