"""Identity and operations: ``/.well-known/pact-provider``, health, readiness, metrics."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from pact_provider.jsonio import json_bytes
from pact_provider.runtime import RuntimeDep
from pact_provider.settlement_client import READY

__all__ = ["build_router"]

_JSON = "application/json"


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/.well-known/pact-provider",
        well_known,
        methods=["GET"],
        tags=["identity"],
        summary="Who this provider is: public key, intents and prices, policy, protocol versions",
        response_class=Response,
        responses={200: {"description": "Provider discovery document.", "content": {_JSON: {}}}},
    )
    router.add_api_route(
        "/healthz",
        healthz,
        methods=["GET"],
        tags=["operations"],
        summary="Liveness: the process is up",
        response_class=Response,
    )
    router.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        tags=["operations"],
        summary="Readiness: configuration loaded, signing key present, the quote store (when "
        "configured) answering, settlement reachable and taking our token "
        "(`?settlement=optional`: without the last)",
        response_class=Response,
        responses={503: {"description": "Not ready; `checks` says what is missing."}},
    )
    router.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
    )
    return router


async def well_known(runtime: RuntimeDep) -> Response:
    return Response(runtime.well_known, media_type=_JSON)


async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=_JSON)


async def readyz(
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
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return Response(json_bytes(body), status_code=200 if ready else 503, media_type=_JSON)


async def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
