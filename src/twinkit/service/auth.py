"""Bearer tokens: who is calling, whether they may, and how fast.

Missing, malformed or repeated ``Authorization`` and unknown tokens answer 401 with
``WWW-Authenticate: Bearer``; the admin token on an owner's route, or an owner's token on
an admin route, answers 403; a token over its rate answers 429 with ``Retry-After``.

Each worker process remembers which owner a token belongs to for ``TOKEN_TTL_S`` seconds
after it looked it up (:class:`TokenCache`), so that a request does not cost a store
lookup: a token that stops being valid (its owner deleted or its token replaced) keeps
working for at most that long in a worker that had looked it up. Unknown tokens are not
remembered, so a new token works at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from twinkit.core.lru import LRU
from twinkit.engine.owners import token_sha256
from twinkit.service.errors import ApiError
from twinkit.service.middleware import CALLER_SCOPE_KEY
from twinkit.service.ratelimit import retry_after

if TYPE_CHECKING:
    from twinkit.service.state import ServiceState

# RFC 6750's b64token after the scheme (the scheme itself is case-insensitive).
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]{1,512}=*)$")


#: seconds a worker trusts a token's owner after looking it up
TOKEN_TTL_S = 5.0
#: tokens remembered per worker
TOKEN_CACHE_CAPACITY = 4096


class TokenCache:
    """Owner names by token sha256, each trusted for ``ttl_s`` after it was looked up;
    at most ``capacity`` of them, least recently used out. ``clock`` is monotonic seconds.

    >>> now = [0.0]
    >>> cache = TokenCache(ttl_s=5.0, clock=lambda: now[0])
    >>> cache.put("d1", "alice"); cache.get("d1")
    'alice'
    >>> now[0] = 5.0; cache.get("d1") is None
    True
    """

    def __init__(
        self,
        ttl_s: float = TOKEN_TTL_S,
        capacity: int = TOKEN_CACHE_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must not be negative")
        self.ttl_s = ttl_s
        self.clock = clock
        # owner name and the clock time it stops being trusted, by token digest
        self._owners = LRU[str, tuple[float, str]](capacity)

    def get(self, digest: str) -> str | None:
        found = self._owners.get(digest, keep=lambda entry: self.clock() < entry[0])
        return None if found is None else found[1]

    def put(self, digest: str, owner: str) -> None:
        if self.ttl_s > 0:
            self._owners.put(digest, (self.clock() + self.ttl_s, owner))

    def clear(self) -> None:
        self._owners.clear()


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
    headers = request.headers.getlist("authorization")
    if not headers:
        raise _unauthorized("missing token: send 'Authorization: Bearer <token>'", None)
    if len(headers) > 1:
        # Which one counts would depend on who reads them (a proxy may read the other).
        raise _unauthorized(
            f"{len(headers)} Authorization headers: send exactly one", "invalid_request"
        )
    header = headers[0]
    found = _BEARER.match(header)
    if found is None:
        raise _unauthorized(
            "malformed Authorization header: expected 'Bearer <token>'", "invalid_request"
        )
    return found.group(1)


def authenticate(request: Request, state: ServiceState) -> Caller:
    """The caller of this request; rate-limited per token before the token is looked up."""
    token = bearer_token(request)
    digest = token_sha256(token)
    wait_s = state.limiter.take(digest)
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
        name = state.tokens.get(digest)
        if name is None:
            owner = state.engine.owners.authenticate(token)
            if owner is None:
                raise _unauthorized("unknown token", "invalid_token")
            name = owner.name
            state.tokens.put(digest, name)
        caller = Caller(name)
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
