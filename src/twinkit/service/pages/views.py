"""The pages: login, the owner's twins, a twin (fan chart, counts, versions, provenance),
and the donor's labeling page of a decision twin.

Server-rendered from ``templates/``; the only script (``static/label.js``) reloads the
labeling page when the clone has finished learning from the donor's answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from twinkit.core.errors import (
    ForecastInputError,
    NotFoundError,
    QuotaExceededError,
    TwinkitError,
    ValidationError,
)
from twinkit.core.twin import Twin, TwinKind
from twinkit.report.fanchart import (
    FAN_HORIZONS,
    STALE_AFTER,
    FanChart,
    LiveChart,
    age_in_words,
    live_chart,
    twin_chart,
)
from twinkit.report.words import in_words
from twinkit.service.deps import StateDep
from twinkit.service.errors import status_of
from twinkit.service.pages.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    LOGIN_PATH,
    SESSION_COOKIE,
    SESSION_ID_PATTERN,
    TOKEN_PATTERN,
    FormDep,
    PageError,
    PageSession,
    PageTwinDep,
    SessionDep,
    check_csrf,
    clear_cookie,
    csrf_for,
    new_login_csrf,
    owner_of,
    page_twin,
    set_cookie,
    start_session,
)
from twinkit.service.routes.clones import (
    clone_queries_public,
    ingest_answers,
    latest_clone_job,
    start_update,
    start_update_if_room,
)
from twinkit.service.routes.ledger import history
from twinkit.service.schemas import CloneAsk
from twinkit.service.state import ServiceState

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
TEMPLATES.env.globals["csrf_field"] = CSRF_FIELD
TEMPLATES.env.globals["in_words"] = in_words
TEMPLATES.env.filters["sure"] = lambda p: sure(float(p))
#: how much of the past the chart shows before the forecast
RECENT = pd.Timedelta(hours=3)
#: ledger entries shown on a twin's page, newest first
HISTORY_SHOWN = 50
LABEL_PREFIX = "label:"
# Pages hold an owner's data: not cached, not framed, no script or style from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(
        request, name, context, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )
    return response


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- login ----------------------------------------------------------------------------------


def _login_form(
    request: Request, state: ServiceState, error: str | None = None, status: int = 200
) -> HTMLResponse:
    nonce = new_login_csrf()
    response = render(
        request, "login.html", {"csrf": nonce, "error": error, "session": None}, status
    )
    set_cookie(state, response, LOGIN_CSRF_COOKIE, nonce, LOGIN_PATH)
    return response


@router.get("/")
def home() -> RedirectResponse:
    return _see_other("/twins")


@router.get(LOGIN_PATH)
def login_page(request: Request, state: StateDep) -> Response:
    return _login_form(request, state)


@router.post(LOGIN_PATH)
def login(request: Request, state: StateDep, form: FormDep) -> Response:
    check_csrf(form, request.cookies.get(LOGIN_CSRF_COOKIE))
    given = form.get("token")
    token = given.strip() if isinstance(given, str) else ""
    if TOKEN_PATTERN.match(token) is None:
        return _login_form(request, state, "that is not a token: paste your owner token", 401)
    if state.is_admin_token(token):
        return _login_form(
            request, state, "the admin token does not open twins: use an owner's token", 401
        )
    caller = owner_of(state, token)
    if caller is None:
        return _login_form(request, state, "unknown token", 401)
    response = _see_other("/twins")
    start_session(state, response, caller.name)
    clear_cookie(state, response, LOGIN_CSRF_COOKIE, LOGIN_PATH)
    return response


@router.post("/logout")
def logout(request: Request, state: StateDep, form: FormDep) -> Response:
    """End the session in the store, so that its cookie opens nothing anywhere any more
    (the owner's token itself stays valid)."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    session_id = cookie if SESSION_ID_PATTERN.match(cookie) else None
    check_csrf(form, csrf_for(state, session_id) if session_id else None)
    if session_id:
        state.engine.sessions.end(session_id)
    response = _see_other(LOGIN_PATH)
    clear_cookie(state, response, SESSION_COOKIE, "/")
    return response


# -- twins ----------------------------------------------------------------------------------


@router.get("/twins")
def twins_page(request: Request, session: SessionDep, state: StateDep) -> Response:
    twins = [state.engine.twin_summary(t.ref) for t in state.engine.list_twins(session.caller.name)]
    return render(request, "twins.html", {"session": session, "twins": twins})


@dataclass(frozen=True)
class ChartView:
    """The fan chart, or why there is none."""

    chart: FanChart | None = None
    target: str = ""
    model: str = ""
    version: int | None = None
    origin: str = ""
    degraded_reason: str | None = None
    missing: str | None = None
    stale: str | None = None  # the last reading is old: how old


def _chart(state: ServiceState, twin: Twin) -> ChartView:
    try:
        try:
            served = state.engine.forecast(twin.ref, FAN_HORIZONS)
        except ForecastInputError:
            served = state.engine.forecast(twin.ref, (30, 60))
    except NotFoundError:
        return ChartView(missing=f"no model yet: start a fit (POST /v1/twins/{twin.id}/fit)")
    except TwinkitError as exc:
        return ChartView(missing=f"no forecast: {exc}")
    if served.degraded:
        state.metrics.degraded_predictions.labels(served.source).inc()
    f = served.forecast
    recent = state.engine.signals_between(twin.ref, f.origin - RECENT, f.origin, [f.target])
    chart = twin_chart(twin, f, recent)
    zone = twin.time_zone
    age = pd.Timestamp.now(tz="UTC") - f.origin
    return ChartView(
        chart=chart,
        target=f.target,
        model=f.model,
        version=f.version,
        origin=f.origin.tz_convert(zone).strftime("%Y-%m-%d %H:%M ") + zone,
        degraded_reason=served.reason if served.degraded else None,
        stale=age_in_words(age) if age > STALE_AFTER else None,
    )


@dataclass(frozen=True)
class HealthView:
    """The live accuracy panel: the health report and its chart (None without scores)."""

    report: dict[str, Any]
    chart: LiveChart | None


def _health(state: ServiceState, twin: Twin) -> HealthView | None:
    try:
        report = state.engine.health(twin.ref)
    except TwinkitError:
        return None
    serving = report["serving"]
    if serving is None:
        return None
    version = serving["version"]

    def line(role: str) -> list[tuple[pd.Timestamp, float]]:
        return [
            (pd.Timestamp(b["start"]), float(b["rmse"]))
            for b in report["series"]
            if b["role"] == role and (role == "shadow" or b["version"] == version)
        ]

    served = line("served")
    chart = live_chart(served, line("shadow"), serving["holdout"].get("score")) if served else None
    return HealthView(report, chart)


@router.get("/twins/{twin_id}")
def twin_page(
    request: Request, twin: PageTwinDep, session: SessionDep, state: StateDep
) -> Response:
    summary = state.engine.twin_summary(twin.ref)
    versions = sorted(state.engine.models(twin.ref), key=lambda v: v.version, reverse=True)
    entries = list(reversed(history(twin, state)))[:HISTORY_SHOWN]
    context: dict[str, Any] = {
        "session": session,
        "twin": twin,
        "summary": summary,
        "versions": versions,
        "entries": entries,
        "chart": _chart(state, twin) if twin.kind is TwinKind.STATE else None,
        "health": _health(state, twin) if twin.kind is TwinKind.STATE else None,
        "waiting": None,
    }
    if twin.kind is TwinKind.DECISION:
        context["waiting"] = len(clone_queries_public(state, twin, session.caller.name).queries)
    return render(request, "twin.html", context)


# -- the donor's labeling page ----------------------------------------------------------------


def _label_page(
    request: Request,
    state: ServiceState,
    session: PageSession,
    twin: Twin,
    problems: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    if twin.kind is not TwinKind.DECISION:
        raise PageError(400, f"twin {twin.id!r} is a state twin: only decision twins have a clone")
    view = clone_queries_public(state, twin, session.caller.name)
    context = {
        "session": session,
        "twin": twin,
        "view": view,
        "problems": problems or [],
        "label_prefix": LABEL_PREFIX,
        "agreement": _measured_agreement(state, twin),
        "scale": _image_scale(view),
    }
    return render(request, "label.html", context, status)


#: the side an item's image is drawn at, at least (CSS pixels): an 8x8 digit is 160 px
IMAGE_SIDE = 160


def _image_scale(view: Any) -> int:
    """Whole-pixel magnification that draws the items' images at least IMAGE_SIDE wide."""
    sides = [max(q.image.width, q.image.height) for q in view.queries if q.image is not None]
    return max(4, -(-IMAGE_SIDE // min(sides))) if sides else 4


def _measured_agreement(state: ServiceState, twin: Twin) -> tuple[float, int] | None:
    """How often the serving clone agreed with the donor on held-out items, and on how many:
    what its probabilities are to be read against (a network's probability is not a
    frequency)."""
    try:
        serving = state.engine.version(twin.ref)
    except TwinkitError:
        return None
    agreement, held = serving.metrics.get("agreement"), serving.metrics.get("held")
    if not isinstance(agreement, int | float) or not isinstance(held, int | float) or not held:
        return None
    return float(agreement), int(held)


def sure(probability: float) -> str:
    """A model's probability as a share a reader can trust: never 0 % or 100 %.

    >>> sure(1.0), sure(0.973), sure(0.004)
    ('>99%', '97%', '<1%')
    """
    if probability >= 0.995:
        return ">99%"
    if probability < 0.005:
        return "<1%"
    return f"{probability:.0%}"


@router.get("/twins/{twin_id}/label")
def label_page(
    request: Request, twin: PageTwinDep, session: SessionDep, state: StateDep
) -> Response:
    return _label_page(request, state, session, twin)


def _posted_twin(twin_id: str, session: PageSession, state: ServiceState, form: FormData) -> Twin:
    """A form's twin, CSRF checked first: a forged request is refused whatever it names."""
    check_csrf(form, session.csrf)
    twin = page_twin(twin_id, session, state)
    if twin.kind is not TwinKind.DECISION:
        raise PageError(400, f"twin {twin.id!r} is a state twin: only decision twins have a clone")
    return twin


@router.post("/twins/{twin_id}/label")
def post_labels(
    request: Request, twin_id: str, session: SessionDep, state: StateDep, form: FormDep
) -> Response:
    """The donor's labels: stored at once, then the clone learns from them in the background."""
    twin = _posted_twin(twin_id, session, state, form)
    answers = [
        (name[len(LABEL_PREFIX) :], value)
        for name, value in form.multi_items()
        if name.startswith(LABEL_PREFIX) and isinstance(value, str) and value
    ]
    if not answers:
        return _label_page(
            request, state, session, twin, ["pick a label for at least one question"], 422
        )
    try:
        ingest_answers(state, twin, session.caller.name, answers, "page")
    except ValidationError as exc:
        problems = [p.message for p in exc.problems]
        return _label_page(request, state, session, twin, problems, 422)
    except TwinkitError as exc:
        raise PageError(status_of(exc), str(exc)) from None
    start_update_if_room(state, twin, session.caller.name, CloneAsk())
    return _see_other(f"/twins/{twin.id}/label")


@router.post("/twins/{twin_id}/label/ask")
def ask_questions(twin_id: str, session: SessionDep, state: StateDep, form: FormDep) -> Response:
    """Start a clone update that asks the clone's next questions."""
    twin = _posted_twin(twin_id, session, state, form)
    try:
        start_update(state, twin, session.caller.name, CloneAsk())
    except QuotaExceededError as exc:
        raise PageError(429, str(exc)) from None
    return _see_other(f"/twins/{twin.id}/label")


@router.get("/twins/{twin_id}/label/status", response_class=JSONResponse)
def label_status(twin: PageTwinDep, session: SessionDep, state: StateDep) -> JSONResponse:
    """What the labeling page's script polls: is the clone still learning?"""
    if twin.kind is not TwinKind.DECISION:
        raise PageError(400, f"twin {twin.id!r} is a state twin: only decision twins have a clone")
    job = latest_clone_job(state, twin, session.caller.name)
    body = {
        "updating": job is not None and job.status.value in ("queued", "running"),
        "job": None if job is None else {"id": job.id, "status": job.status.value},
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


#: every page's path template (for the request metrics' route label)
PAGE_PATHS: tuple[str, ...] = tuple(
    dict.fromkeys(str(getattr(route, "path", "")) for route in router.routes)
)
