"""Who is looking at a page: the owner's token in an HttpOnly cookie, and CSRF tokens.

Logging in puts the owner's own token in the ``twinkit_session`` cookie (HttpOnly, so
scripts cannot read it; SameSite=Strict, so other sites' requests do not carry it; Secure
unless ``cookie_secure`` is off). Every page checks it exactly as the API checks a bearer
token: the same rate limit, the same owner lookup; no cookie, or a stale one, leads to
the login page. The admin token cannot log in: pages show twins, and twins are owners'.

Every form that changes something carries a CSRF token in a hidden field, checked on
POST (403 when missing or wrong). For a logged-in owner it is an HMAC of their token
under a key derived from the admin token, so it needs no server-side state and every
worker process checks it alike. The login form, before there is a session, uses a
double-submit cookie (a random value in a cookie and in the form, which must match).
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
from twinkit.core.twin import Twin
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


def csrf_for(state: ServiceState, token: str) -> str:
    """The CSRF token of the session that holds ``token``."""
    return hmac.new(_csrf_key(state), token_sha256(token).encode(), hashlib.sha256).hexdigest()


def set_cookie(state: ServiceState, response: Response, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        value,
        path=path,
        httponly=True,
        secure=state.settings.cookie_secure,
        samesite="strict",
    )


def clear_cookie(state: ServiceState, response: Response, name: str, path: str) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, secure=state.settings.cookie_secure, samesite="strict"
    )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def owner_of(state: ServiceState, token: str) -> Caller | None:
    """The owner whose token this is (rate-limited as the API is), or None."""
    wait_s = state.limiter.take(token_sha256(token))
    if wait_s > 0:
        state.metrics.rate_limited.inc()
        raise PageError(
            429,
            "too many requests with this token; wait and try again",
            {"Retry-After": retry_after(wait_s)},
        )
    if state.is_admin_token(token):
        return None
    owner = state.engine.owners.authenticate(token)
    return Caller(owner.name) if owner is not None else None


def page_session(request: Request, state: StateDep) -> PageSession:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or TOKEN_PATTERN.match(token) is None:
        raise LoginRequired(clear_cookie=token is not None)
    caller = owner_of(state, token)
    if caller is None:  # an owner deleted, or a cookie made by hand
        raise LoginRequired(clear_cookie=True)
    request.scope[CALLER_SCOPE_KEY] = caller.name
    return PageSession(caller, csrf_for(state, token))


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
        twin = state.engine.get_twin(twin_id)
    except NotFoundError:
        twin = None
    if twin is None or twin.owner != session.caller.name:
        raise page_not_found(f"twin {twin_id!r}")
    return twin


PageTwinDep = Annotated[Twin, Depends(page_twin)]
