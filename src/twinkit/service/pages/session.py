"""Who is looking at a page: a server-side login session named by an HttpOnly cookie, and
CSRF tokens.

Logging in with an owner's token starts a session in the store (``engine.sessions``) and
puts its random id, never the token, in the ``twinkit_session`` cookie (HttpOnly, so
scripts cannot read it; SameSite=Strict, so other sites' requests do not carry it; Secure
unless ``cookie_secure`` is off; Max-Age the session's lifetime). Every page looks the id
up in the store, rate-limited as the API's tokens are, so a session ended in one worker
process (logout, expiry, its owner deleted) is ended in all of them at the next request;
no cookie, or a dead one, leads to the login page. The admin token cannot log in: pages
show twins, and twins are owners'.

Every form that changes something carries a CSRF token in a hidden field, checked on
POST (403 when missing or wrong). For a logged-in owner it is an HMAC of the session id's
hash under a key derived from the admin token, so every worker process computes it alike.
The login form, before there is a session, uses a double-submit cookie (a random value in
a cookie and in the form, which must match).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from twinkit.core.errors import NotFoundError
from twinkit.core.twin import Twin, twin_key
from twinkit.engine.owners import token_sha256
from twinkit.service.auth import Caller
from twinkit.service.deps import StateDep
from twinkit.service.middleware import CALLER_SCOPE_KEY
from twinkit.service.ratelimit import retry_after
from twinkit.service.state import ServiceState

SESSION_COOKIE = "twinkit_session"
LOGIN_CSRF_COOKIE = "twinkit_login_csrf"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/login"
# The characters of a bearer token (RFC 6750's b64token); anything else is no token.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9\-._~+/]{1,512}=*$")
# What ``new_session_id`` makes (43 URL-safe characters); anything else is no session.
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{43}$")


class LoginRequired(Exception):
    """No usable session: the page answers with a redirect to the login form."""

    def __init__(self, clear_cookie: bool) -> None:
        super().__init__("log in first")
        self.clear_cookie = clear_cookie


class PageError(Exception):
    """A page that cannot be shown: an HTML error page with this status and message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def page_not_found(what: str) -> PageError:
    """As the API: another owner's twin is answered exactly as one that does not exist."""
    return PageError(404, f"no {what}")


@dataclass(frozen=True)
class PageSession:
    """A logged-in owner, and the CSRF token their forms must carry."""

    caller: Caller
    csrf: str


def _csrf_key(state: ServiceState) -> bytes:
    secret = state.settings.admin_token.get_secret_value().encode("utf-8")
    return hmac.new(secret, b"twinkit pages csrf v1", hashlib.sha256).digest()


def csrf_for(state: ServiceState, session_id: str) -> str:
    """The CSRF token of the session ``session_id``."""
    digest = token_sha256(session_id).encode()
    return hmac.new(_csrf_key(state), digest, hashlib.sha256).hexdigest()


def set_cookie(
    state: ServiceState,
    response: Response,
    name: str,
    value: str,
    path: str,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=state.settings.cookie_secure,
        samesite="strict",
    )


def start_session(state: ServiceState, response: Response, owner: str) -> None:
    """Log ``owner`` in: a new session in the store, its id in the response's cookie."""
    session_id = state.engine.sessions.start(owner)
    lifetime_s = int(state.engine.sessions.lifetime.total_seconds())
    set_cookie(state, response, SESSION_COOKIE, session_id, "/", max_age=lifetime_s)


def clear_cookie(state: ServiceState, response: Response, name: str, path: str) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, secure=state.settings.cookie_secure, samesite="strict"
    )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def _take_request(state: ServiceState, key: str, what: str) -> None:
    """Spend one request of ``key`` (the sha256 of a token or session id), or 429."""
    wait_s = state.limiter.take(key)
    if wait_s > 0:
        state.metrics.rate_limited.inc()
        raise PageError(
            429,
            f"too many requests with this {what}; wait and try again",
            {"Retry-After": retry_after(wait_s)},
        )


def owner_of(state: ServiceState, token: str) -> Caller | None:
    """The owner whose token this is (rate-limited as the API is), or None."""
    _take_request(state, token_sha256(token), "token")
    if state.is_admin_token(token):
        return None
    owner = state.engine.owners.authenticate(token)
    return Caller(owner.name) if owner is not None else None


def page_session(request: Request, state: StateDep) -> PageSession:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or SESSION_ID_PATTERN.match(session_id) is None:
        raise LoginRequired(clear_cookie=session_id is not None)
    _take_request(state, token_sha256(session_id), "session")
    # No cache: the store is the one place a logout or an expiry is known to every worker.
    owner = state.engine.sessions.owner_of(session_id)
    if owner is None:  # logged out, expired, its owner deleted, or a cookie made by hand
        raise LoginRequired(clear_cookie=True)
    request.scope[CALLER_SCOPE_KEY] = owner
    return PageSession(Caller(owner), csrf_for(state, session_id))


SessionDep = Annotated[PageSession, Depends(page_session)]


async def read_form(request: Request) -> FormData:
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]


def check_csrf(form: FormData, expected: str | None) -> None:
    """403 unless the form's CSRF field equals ``expected`` (compared in constant time)."""
    given = form.get(CSRF_FIELD)
    if (
        not isinstance(given, str)
        or not expected
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise PageError(
            403, "the form's CSRF token is missing or wrong: reload the page and send it again"
        )


def page_twin(twin_id: str, session: SessionDep, state: StateDep) -> Twin:
    """The twin of the page's path, if the logged-in owner owns it."""
    try:
        twin = state.engine.get_twin(twin_key(session.caller.name, twin_id))
    except NotFoundError:
        twin = None
    if twin is None or twin.owner != session.caller.name:
        raise page_not_found(f"twin {twin_id!r}")
    return twin


PageTwinDep = Annotated[Twin, Depends(page_twin)]
