"""The service's web pages: a login form, the owner's twins, a twin's page with its
forecast fan chart, and the donor's labeling page (see :mod:`.views` and :mod:`.session`).

Pages live outside ``/v1`` and outside the OpenAPI document; they use the same owners,
tokens and per-owner 404 as the API, with the token held in an HttpOnly cookie.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from twinkit.service.pages.session import (
    LOGIN_PATH,
    SESSION_COOKIE,
    LoginRequired,
    PageError,
    clear_cookie,
)
from twinkit.service.pages.views import PAGE_PATHS, render, router
from twinkit.service.state import ServiceState

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    state = request.app.state.twinkit
    if exc.clear_cookie and isinstance(state, ServiceState):
        clear_cookie(state, response, SESSION_COOKIE, "/")
    return response


def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    context = {"status": exc.status, "message": exc.message, "session": None}
    return render(request, "error.html", context, exc.status, exc.headers)


def install_pages(app: FastAPI) -> None:
    """Serve the pages and their static files from ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(PageError, _page_error)


__all__ = ["PAGE_PATHS", "install_pages"]
