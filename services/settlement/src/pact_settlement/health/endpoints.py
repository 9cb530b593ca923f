"""Liveness, readiness and metrics (unauthenticated; restrict with a NetworkPolicy)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pact_settlement.health.service import readiness
from pact_settlement.kit.deps import AppMetrics

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
