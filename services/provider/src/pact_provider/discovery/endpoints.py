"""Identity and operations: ``/.well-known/pact-provider``, health, readiness, metrics."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from pact_provider.errors import PROBLEM_MEDIA_TYPE, problem_document
from pact_provider.jsonio import json_bytes
from pact_provider.openapi import documented_problem
from pact_provider.runtime import RuntimeDep
from pact_provider.settlement_client import READY

__all__ = ["build_router"]

_JSON = "application/json"
_READY_EXAMPLE = {
    "status": "ready",
    "checks": {"config": "ok", "signing_key": "ok", "settlement": "ok"},
}
_REFUSED = "settlement refused the provider's token (HTTP 401)"
_NOT_READY_EXAMPLE = {
    **problem_document(503, "NOT_READY", f"not ready: settlement: {_REFUSED}"),
    "checks": {
        "config": "ok",
        "signing_key": "ok",
        "settlement": _REFUSED,
    },
}


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/.well-known/pact-provider",
        get_provider_identity,
        methods=["GET"],
        tags=["identity"],
        summary="Who this provider is: public key, intents and prices, policy, protocol versions",
        response_class=Response,
        responses={
            200: {
                "description": "Provider discovery document.",
                "content": {_JSON: {"schema": {"type": "object"}}},
            }
        },
    )
    router.add_api_route(
        "/healthz",
        get_health,
        methods=["GET"],
        tags=["operations"],
        summary="Liveness: the process is up",
        response_class=Response,
        responses={
            200: {
                "description": "Alive.",
                "content": {_JSON: {"schema": {"type": "object"}, "example": {"status": "ok"}}},
            }
        },
    )
    router.add_api_route(
        "/readyz",
        get_readiness,
        methods=["GET"],
        tags=["operations"],
        summary="Readiness: configuration loaded, signing key present, the quote store (when "
        "configured) answering, settlement reachable and taking our token "
        "(`?settlement=optional`: without the last)",
        response_class=Response,
        responses={
            200: {
                "description": "Ready; `checks` reports each part.",
                "content": {_JSON: {"schema": {"type": "object"}, "example": _READY_EXAMPLE}},
            },
            503: documented_problem(
                "Not ready: a problem document whose `checks` member says what is missing.",
                {
                    "NOT_READY": {
                        "summary": "Settlement refuses the token",
                        "value": _NOT_READY_EXAMPLE,
                    }
                },
                headers={"Retry-After": {"schema": {"type": "integer"}}},
            ),
        },
    )
    router.add_api_route(
        "/metrics",
        get_metrics,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
    )
    return router


async def get_provider_identity(runtime: RuntimeDep) -> Response:
    return Response(runtime.well_known, media_type=_JSON)


async def get_health() -> Response:
    return Response(b'{"status":"ok"}', media_type=_JSON)


async def get_readiness(
    runtime: RuntimeDep,
    settlement: Annotated[
        Literal["required", "optional"],
        Query(
            description="`optional`: ready as soon as this replica can answer INTENTs, whatever "
            "settlement's state (still reported in `checks`). Kubernetes' readinessProbe uses it, "
            "so a settlement outage does not take the negotiation path out of rotation; ACCEPTs "
            "are then refused with 503 + Retry-After."
        ),
    ] = "required",
) -> Response:
    checks: dict[str, Any] = {
        "config": "ok",
        "signing_key": "ephemeral" if runtime.identity.ephemeral else "ok",
    }
    if runtime.settlement is None:
        checks["settlement"] = "not configured"
    else:
        checks["settlement"] = await runtime.settlement.readiness()
    store_ready = True
    if runtime.quote_store is not None:
        checks["quote_store"] = await runtime.quote_store.readiness()
        store_ready = checks["quote_store"] == READY
    ready = store_ready and (settlement == "optional" or checks["settlement"] == READY)
    if ready:
        return Response(json_bytes({"status": "ready", "checks": checks}), media_type=_JSON)
    missing = "; ".join(f"{part}: {state}" for part, state in checks.items() if state != "ok")
    body = {**problem_document(503, "NOT_READY", f"not ready: {missing}"), "checks": checks}
    return Response(
        json_bytes(body),
        status_code=503,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={"Retry-After": "1"},
    )


async def get_metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
