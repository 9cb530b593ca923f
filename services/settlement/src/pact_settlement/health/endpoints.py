"""Liveness, readiness and metrics (unauthenticated; restrict with a NetworkPolicy), and
``/v1/whoami``: the cheapest authenticated call, with which a client (the provider's ``/readyz``)
proves its token works without touching any data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pact_settlement.health.schemas import WhoAmI
from pact_settlement.health.service import readiness
from pact_settlement.kit.auth import AnyPrincipal
from pact_settlement.kit.deps import AppMetrics, RuntimeDep
from pact_settlement.kit.errors import (
    PROBLEM_CONTENT_TYPE,
    ProblemCode,
    problem_response,
    settlement_problem,
)
from pact_settlement.kit.openapi import PROBLEM_REF, ok, responses

router = APIRouter(tags=["operations"])

_HEAD = "a7c9d1e30005"  # a migration revision, for the examples
NOT_READY_RESPONSE: dict[str, Any] = {
    "description": "Not ready: a problem document whose extra members are the readiness "
    "report (`ready`, `database`, `migrations`). Retry-After: 1.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {
        PROBLEM_CONTENT_TYPE: {
            "schema": PROBLEM_REF,
            "example": settlement_problem(
                503,
                title="Service unavailable",
                detail="not ready: the database is at migration d249ece3593a, not at "
                f"the head {_HEAD}: run `pact-settlement migrate`",
                code=ProblemCode.NOT_READY.value,
                extra={
                    "ready": False,
                    "database": "ok",
                    "migrations": {"head": _HEAD, "current": "d249ece3593a", "at_head": False},
                },
            ),
        }
    },
}


def _not_ready_detail(report: dict[str, Any]) -> str:
    if report.get("database") != "ok":
        return f"not ready: the database is {report.get('database')} ({report.get('error')})"
    migrations = report.get("migrations") or {}
    return (
        f"not ready: the database is at migration {migrations.get('current')}, not at the head "
        f"{migrations.get('head')}: run `pact-settlement migrate`"
    )


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    responses=responses(success={200: ok("Alive", {"status": "ok"})}),
)
async def get_health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, taking writes, and migrations at head",
    responses=responses(
        success={
            200: ok(
                "Ready",
                {
                    "ready": True,
                    "database": "ok",
                    "migrations": {"head": _HEAD, "current": _HEAD, "at_head": True},
                },
            )
        }
    )
    | {503: NOT_READY_RESPONSE},
)
async def get_readiness(runtime: RuntimeDep) -> JSONResponse:
    metrics = runtime.metrics
    report: dict[str, Any] = await readiness(runtime.engine, runtime.db_health)
    metrics.ready.set(1 if report["ready"] else 0)
    if report["ready"]:
        return JSONResponse(report)
    return problem_response(
        503,
        title="Service unavailable",
        detail=_not_ready_detail(report),
        code=ProblemCode.NOT_READY,
        headers={"Retry-After": "1"},
        extra=report,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def get_metrics(metrics: AppMetrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/whoami",
    response_model=WhoAmI,
    summary="The role of the presented bearer token (no data is read)",
    responses=responses(success={200: ok("The token's role", {"role": "provider"})}),
)
async def get_whoami(principal: AnyPrincipal) -> WhoAmI:
    return WhoAmI(role=principal.role.value)
