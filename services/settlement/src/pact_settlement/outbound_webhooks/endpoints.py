"""``/v1/webhook-endpoints``: integrators' endpoints for our events (operators' token)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from pact_settlement.db.session import DBSession
from pact_settlement.kit.auth import AdminPrincipal
from pact_settlement.kit.deps import Settings
from pact_settlement.kit.openapi import Refusal, ok, responses
from pact_settlement.outbound_webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointOut,
)
from pact_settlement.outbound_webhooks.service import WebhookEndpointService

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


async def get_service(session: DBSession, settings: Settings) -> WebhookEndpointService:
    return WebhookEndpointService(session, settings)


Service = Annotated[WebhookEndpointService, Depends(get_service)]
EndpointId = Annotated[
    str, Path(pattern=r"^whe_[0-9a-hjkmnp-tv-z]{26}$", description="The endpoint's id")
]
EventId = Annotated[
    str, Path(pattern=r"^evt_[0-9a-hjkmnp-tv-z]{26}$", description="The event's id")
]

_ENDPOINT = {
    "id": "whe_01kb0ybq0g7m4n6p8r0s2t4v6w",
    "url": "https://integrator.example/pact-events",
    "description": "settlement updates",
    "event_types": [],
    "enabled": True,
    "created_at_ms": 1764763200000,
}
_DELIVERY = {
    "id": "whd_01kb0ybq0g7m4n6p8r0s2t4v6w",
    "event_id": "evt_01kb0ybq0g7m4n6p8r0s2t4v6w",
    "endpoint_id": "whe_01kb0ybq0g7m4n6p8r0s2t4v6w",
    "event_type": "settlement.released",
    "status": "failed",
    "attempts": 12,
    "next_attempt_at_ms": None,
    "last_status_code": 503,
    "last_error": "HTTP 503",
    "delivered_at_ms": None,
    "created_at_ms": 1764763200000,
}
_NO_ENDPOINT = Refusal(
    404,
    "NOT_FOUND",
    "No such endpoint (or event)",
    "no webhook endpoint whe_01kb0ybq0g7m4n6p8r0s2t4v6w",
)


@router.post(
    "",
    status_code=201,
    response_model=EndpointCreated,
    summary="Register an endpoint; the answer carries its signing secret, shown once",
    responses=responses(
        Refusal(
            422,
            "SCHEMA_VALIDATION_FAILED",
            "Not an http(s) URL, or (production) a private address",
            "a webhook endpoint url is http:// or https:// with a host",
        ),
        success={
            201: ok(
                "Registered",
                {**_ENDPOINT, "secret": "whsec_8Zq3vYtK1mXoR2pLw7HcN4sDfG6jB0aEuV9iT5yQkMo"},
            )
        },
    ),
)
async def register_webhook_endpoint(
    principal: AdminPrincipal, service: Service, body: EndpointCreate
) -> EndpointCreated:
    endpoint = await service.register(body)
    return EndpointCreated(**EndpointOut.of(endpoint).model_dump(), secret=endpoint.secret)


@router.get(
    "",
    response_model=EndpointList,
    summary="Registered endpoints (never their secrets)",
    responses=responses(success={200: ok("The endpoints", {"data": [_ENDPOINT]})}),
)
async def list_webhook_endpoints(principal: AdminPrincipal, service: Service) -> EndpointList:
    return EndpointList(data=[EndpointOut.of(e) for e in await service.endpoints.listed()])


@router.get(
    "/{endpoint_id}",
    response_model=EndpointOut,
    summary="One endpoint",
    responses=responses(_NO_ENDPOINT, success={200: ok("The endpoint", _ENDPOINT)}),
)
async def get_webhook_endpoint(
    principal: AdminPrincipal, service: Service, endpoint_id: EndpointId
) -> EndpointOut:
    return EndpointOut.of(await service.get(endpoint_id))


@router.delete(
    "/{endpoint_id}",
    response_model=EndpointOut,
    summary="Disable an endpoint: no new events; queued deliveries are still sent",
    responses=responses(
        _NO_ENDPOINT, success={200: ok("Disabled", {**_ENDPOINT, "enabled": False})}
    ),
)
async def disable_webhook_endpoint(
    principal: AdminPrincipal, service: Service, endpoint_id: EndpointId
) -> EndpointOut:
    return EndpointOut.of(await service.disable(endpoint_id))


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=DeliveryList,
    summary="The endpoint's deliveries, newest first",
    responses=responses(_NO_ENDPOINT, success={200: ok("Deliveries", {"data": [_DELIVERY]})}),
)
async def list_webhook_deliveries(
    principal: AdminPrincipal,
    service: Service,
    endpoint_id: EndpointId,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryList:
    rows = await service.deliveries_of(endpoint_id, status=status, limit=limit)
    return DeliveryList(data=[DeliveryOut.of(d) for d in rows])


@router.post(
    "/{endpoint_id}/events/{event_id}/replay",
    response_model=DeliveryOut,
    summary="Send an event to this endpoint again (failed or not), with fresh attempts",
    responses=responses(
        _NO_ENDPOINT,
        success={
            200: ok(
                "Queued",
                {
                    **_DELIVERY,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at_ms": 1764763260000,
                },
            )
        },
    ),
)
async def replay_webhook_event(
    principal: AdminPrincipal, service: Service, endpoint_id: EndpointId, event_id: EventId
) -> DeliveryOut:
    return DeliveryOut.of(await service.replay(endpoint_id, event_id))
