"""Bearer tokens: who is calling, whether they may, and how fast.

Missing or malformed ``Authorization`` and unknown tokens answer 401 with
``WWW-Authenticate: Bearer``; the admin token on an owner's route, or an owner's token on
an admin route, answers 403; a token over its rate answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request

from twinkit.engine.owners import token_sha256
from twinkit.service.errors import ApiError
from twinkit.service.middleware import CALLER_SCOPE_KEY
from twinkit.service.ratelimit import retry_after
from twinkit.service.state import ServiceState

# RFC 6750's b64token after the scheme (the scheme itself is case-insensitive).
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]{1,512}=*)$")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: an owner (by name) or the administrator."""

    name: str
    is_admin: bool = False


def _unauthorized(message: str, error: str | None) -> ApiError:
    challenge = 'Bearer realm="twinkit"' + (f', error="{error}"' if error else "")
    return ApiError(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})


def bearer_token(request: Request) -> str:
    """The token of the ``Authorization: Bearer <token>`` header, or 401."""
    header = request.headers.get("authorization")
    if header is None:
        raise _unauthorized("missing token: send 'Authorization: Bearer <token>'", None)
    found = _BEARER.match(header)
    if found is None:
        raise _unauthorized(
            "malformed Authorization header: expected 'Bearer <token>'", "invalid_request"
        )
    return found.group(1)


def authenticate(request: Request, state: ServiceState) -> Caller:
    """The caller of this request; rate-limited per token before the token is looked up."""
    token = bearer_token(request)
    wait_s = state.limiter.take(token_sha256(token))
    if wait_s > 0:
        state.metrics.rate_limited.inc()
        raise ApiError(
            429,
            "TooManyRequests",
            "too many requests with this token; wait and try again",
            headers={"Retry-After": retry_after(wait_s)},
        )
    if state.is_admin_token(token):
        caller = Caller("<admin>", is_admin=True)
    else:
        owner = state.engine.owners.authenticate(token)
        if owner is None:
            raise _unauthorized("unknown token", "invalid_token")
        caller = Caller(owner.name)
    request.scope[CALLER_SCOPE_KEY] = caller.name
    return caller


def require_owner(caller: Caller) -> Caller:
    if caller.is_admin:
        raise ApiError(
            403,
            "Forbidden",
            "the admin token manages owners and the ledger; twins need their owner's token",
        )
    return caller


def require_admin(caller: Caller) -> Caller:
    if not caller.is_admin:
        raise ApiError(403, "Forbidden", "this route needs the admin token")
    return caller
