"""ASGI middleware: request ids, access logs, metrics and the last-resort 500; body limits;
the ``Allow`` header of OPTIONS and 405 answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinkit.service.errors import ApiError, error_body, internal_error_body
from twinkit.service.logs import LOGGER_NAME, new_request_id, request_id_var
from twinkit.service.metrics import ServiceMetrics

log = logging.getLogger(LOGGER_NAME)

#: where the auth dependency leaves the caller's name for the access log
CALLER_SCOPE_KEY = "twinkit_caller"
UNMATCHED_ROUTE = "<unmatched>"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RouteTemplates:
    """Finds a request's route template (``/v1/twins/{twin_id}``) from its path, so that
    metrics never take a raw path (a twin id) as a label.

    >>> RouteTemplates(["/v1/twins/{twin_id}"]).match("/v1/twins/p-007")
    '/v1/twins/{twin_id}'
    >>> RouteTemplates(["/v1/twins/{twin_id}"]).match("/v1/twins/p-007/x")
    '<unmatched>'
    """

    #: paths whose template is remembered (a path per twin and route); forgotten when full
    MEMO_SIZE = 16_384

    def __init__(self, templates: Iterable[str]) -> None:
        # Matched here rather than read from the router's scope keys, whose layout differs
        # between FastAPI versions.
        self._compiled = [(compile_path(t)[0], t) for t in dict.fromkeys(templates)]
        self._memo: dict[str, str] = {}

    def match(self, path: str) -> str:
        found = self._memo.get(path)
        if found is None:
            found = next((t for regex, t in self._compiled if regex.match(path)), UNMATCHED_ROUTE)
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[path] = found
        return found


class RequestContextMiddleware:
    """Outermost: gives each request an id (``X-Request-ID`` in and out), times it, counts
    it by route template, logs one JSON line for it, and turns an unexpected exception into
    a 500 that names the request id and nothing else (the traceback goes to the log)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(_header(scope, b"x-request-id"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        route = self.routes.match(str(scope.get("path", "")))
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra=self._fields(scope, route, 500, started))
            if response_started:
                raise  # too late for a clean answer: let the server close the connection
            status = 500
            await JSONResponse(internal_error_body(), status_code=500)(scope, receive, send_with_id)
        else:
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra=self._fields(scope, route, status, started))
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(str(scope.get("method", "")), route, status, elapsed)
            request_id_var.reset(token)

    def _fields(self, scope: Scope, route: str, status: int, started: float) -> dict[str, Any]:
        return {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "route": route,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "caller": scope.get(CALLER_SCOPE_KEY),
        }


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413: at once when ``Content-Length`` says so,
    and while reading when a body streams (chunked) or lies about its length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(
            413, "PayloadTooLarge", f"the request body is larger than {self.max_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (
            not declared.strip().isdigit() or int(declared) > self.max_bytes
        ):
            status, error = (
                (400, error_body("BadRequest", "Content-Length is not a number"))
                if not declared.strip().isdigit()
                else (413, error_body("PayloadTooLarge", str(self._too_large().detail)))
            )
            await JSONResponse(error, status_code=status)(scope, receive, send)
            return
        received = 0
        too_large = self._too_large()
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing untouched and
                    # is answered by the app's handler, like any other error.
                    raise too_large
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            response_started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except ApiError as exc:
            # An app that reads the body outside FastAPI's handlers lets it through: answer
            # it here, the same way.
            if exc is not too_large or response_started:
                raise
            body = error_body("PayloadTooLarge", str(too_large.detail))
            await JSONResponse(body, status_code=413)(scope, receive, send)


#: the methods a route may serve, in the order ``Allow`` names them
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The methods that some route (a mount aside) serves at the path of ``scope``."""
    return [
        method
        for method in HTTP_METHODS
        if any(
            not isinstance(route, Mount)
            and route.matches({**scope, "method": method})[0] is Match.FULL
            for route in routes
        )
    ]


class AllowMiddleware:
    """Answers OPTIONS with ``Allow``, the methods the path serves, and gives every 405
    the same ``Allow``: the router names only the methods of the first route it tried,
    when a path has a route per method (RFC 9110 asks for all of them).

    ``routes`` is the app's list of routes (``app.router.routes``), read at each request
    that needs it, so that routes added after the middleware count too.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    def _allow(self, scope: Scope) -> str | None:
        methods = allowed_methods(self.routes, scope)
        return ", ".join([*methods, "OPTIONS"]) if methods else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            allow = self._allow(scope)
            if allow is not None:
                await Response(status_code=200, headers={"Allow": allow})(scope, receive, send)
                return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self._allow(scope)
                if allow is not None:
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                    ]
                    headers.append((b"allow", allow.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_allow)
