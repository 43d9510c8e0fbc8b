"""The API's routers, one module per resource; all but health live under /v1."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.routing import APIRoute

from twinkit.service.routes import (
    clones,
    data,
    decide,
    health,
    ledger,
    models,
    owners,
    retractions,
    robustness,
    twins,
)

API_PREFIX = "/v1"
#: the versioned API, in the order the OpenAPI document lists it
V1_ROUTERS: tuple[APIRouter, ...] = (
    owners.router,
    twins.router,
    data.router,
    retractions.router,
    models.router,
    decide.router,
    ledger.router,
    robustness.router,
    clones.router,
)
HEALTH_ROUTER = health.router


@dataclass(frozen=True)
class RouteSpec:
    """A route as a client sees it: its full path template and its methods."""

    path: str
    methods: frozenset[str]


def route_specs() -> list[RouteSpec]:
    """Every route the app serves, built from the routers themselves (so a route added to
    a router is never missing here); metrics and the authorization tests use it."""
    mounted = [("", HEALTH_ROUTER), *((API_PREFIX, r) for r in V1_ROUTERS)]
    return [
        RouteSpec(prefix + route.path, frozenset(route.methods or ()))
        for prefix, router in mounted
        for route in router.routes
        if isinstance(route, APIRoute)
    ]


__all__ = ["API_PREFIX", "HEALTH_ROUTER", "V1_ROUTERS", "RouteSpec", "route_specs"]
