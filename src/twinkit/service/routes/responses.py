"""The error answers routes share, for the OpenAPI document (clients and schema tests)."""

from __future__ import annotations

from typing import Any

from twinkit.service.schemas import ErrorPublic

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description}


#: any route that needs a token
AUTH_RESPONSES: Responses = {
    400: _error("a body that cannot be read (JSON that is not UTF-8), or a bad Content-Length"),
    401: _error("no token, a malformed one, or one that is not known"),
    403: _error("the wrong kind of token (admin or owner)"),
    422: _error("malformed request, or a rejected batch"),
    429: _error("too many requests with this token; see Retry-After"),
}
#: a route that names a twin
TWIN_RESPONSES: Responses = {404: _error("no such twin among the caller's")}
#: a route that takes a body large enough to matter
BODY_RESPONSES: Responses = {413: _error("the body is larger than the server takes")}
CONFLICT_RESPONSES: Responses = {409: _error("conflicts with what is stored")}
