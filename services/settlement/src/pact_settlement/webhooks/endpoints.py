"""Webhooks from rails. No bearer token: the Stripe signature is the authentication."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from pact_settlement.kit.openapi import Refusal, ok, responses
from pact_settlement.runtime import RuntimeDep
from pact_settlement.webhooks.schemas import WebhookAck
from pact_settlement.webhooks.service import StripeWebhookService

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


async def get_stripe_service(runtime: RuntimeDep) -> StripeWebhookService:
    return StripeWebhookService(
        runtime.sessionmaker,
        settings=runtime.settings,
        metrics=runtime.metrics,
        clients=runtime.rail_clients,
        applier=runtime.applier,  # the lifecycle's: it also signs RECEIPTs
    )


StripeService = Annotated[StripeWebhookService, Depends(get_stripe_service)]


@router.post(
    "/stripe",
    response_model=WebhookAck,
    summary="Stripe events (signed with the endpoint secret); advances settlements",
    description=(
        "Configure this URL as a Stripe webhook endpoint for `payment_intent.*` events and set "
        "its signing secret as `PACT_SETTLEMENT_STRIPE_WEBHOOK_SECRET`. The `Stripe-Signature` "
        "header is verified over the raw body (300 s tolerance); a missing, forged or stale "
        "signature is 400 and changes nothing. The event is only a hint: the PaymentIntent is "
        "retrieved and its current state applied, so duplicated and out-of-order events are "
        "harmless."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The Stripe event, exactly as Stripe sent it (the signature covers "
            "the raw bytes).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    responses=responses(
        Refusal(
            400,
            "FAILED_IDENTITY",
            "Missing, malformed, forged or stale Stripe-Signature",
            "the Stripe-Signature does not match the payload",
        ),
        Refusal(
            404, "NOT_FOUND", "The stripe rail is not enabled", "the stripe rail is not enabled"
        ),
        Refusal(
            503,
            "SETTLEMENT_FAILED",
            "Stripe or the database is unavailable: Stripe redelivers",
            "Stripe could not be reached; redeliver the event",
            title="Rail unavailable",
        ),
        success={
            200: ok(
                "Received (a duplicate or an event of no concern is acknowledged too)",
                {
                    "received": True,
                    "event_id": "evt_1QxY2zAbCdEfGhIjKlMnOpQr",
                    "outcome": "resolved",
                    "settlement_id": "st_01kb0ybq0g7m4n6p8r0s2t4v6w",
                },
            )
        },
    ),
)
async def receive_stripe_webhook(
    request: Request,
    service: StripeService,
    stripe_signature: Annotated[
        str | None, Header(alias="Stripe-Signature", include_in_schema=True)
    ] = None,
) -> WebhookAck:
    return await service.receive(await request.body(), stripe_signature)
