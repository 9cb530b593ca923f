"""Liveness, readiness and metrics (unauthenticated; restrict with a NetworkPolicy), and
``/v1/whoami``: the cheapest authenticated call, with which a client (the provider's ``/readyz``)
proves its token works without touching any data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pact_settlement.health.schemas import WhoAmI
from pact_settlement.health.service import readiness
from pact_settlement.kit.auth import AnyPrincipal
from pact_settlement.kit.deps import AppMetrics
from pact_settlement.kit.openapi import AUTH_ERRORS

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, taking writes, and migrations at head",
    responses={503: {"description": "Not ready (body says why)"}},
)
async def readyz(request: Request, metrics: AppMetrics) -> JSONResponse:
    report: dict[str, Any] = await readiness(request.app.state.engine, request.app.state.db_health)
    metrics.ready.set(1 if report["ready"] else 0)
    return JSONResponse(
        report,
        status_code=200 if report["ready"] else 503,
        headers=None if report["ready"] else {"Retry-After": "1"},
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics_endpoint(metrics: AppMetrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/whoami",
    response_model=WhoAmI,
    summary="The role of the presented bearer token (no data is read)",
    responses={401: AUTH_ERRORS[401]},
)
async def whoami(principal: AnyPrincipal) -> WhoAmI:
    return WhoAmI(role=principal.role.value)
