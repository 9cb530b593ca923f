"""Register endpoints, list them and their deliveries, replay a delivery."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import Environment, SettlementSettings
from pact_settlement.kit.errors import NotFoundError
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.time import session_now
from pact_settlement.outbound_webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from pact_settlement.outbound_webhooks.repository import (
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)
from pact_settlement.outbound_webhooks.schemas import EndpointCreate
from pact_settlement.outbound_webhooks.signing import new_secret
from pact_settlement.outbound_webhooks.urls import check_url

__all__ = ["WebhookEndpointService"]


class WebhookEndpointService:
    def __init__(self, session: AsyncSession, settings: SettlementSettings) -> None:
        self.session = session
        self.settings = settings
        self.endpoints = WebhookEndpointRepository.from_session(session)
        self.deliveries = WebhookDeliveryRepository.from_session(session)

    async def register(self, body: EndpointCreate) -> WebhookEndpoint:
        await check_url(
            body.url,
            allow_private=self.settings.env is not Environment.PRODUCTION
            or self.settings.webhook_allow_private_urls,
        )
        now = session_now(self.session)
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            url=body.url,
            secret=new_secret(),
            description=body.description,
            event_types=sorted(set(body.event_types)),
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        await self.endpoints.add(endpoint)
        await self.session.commit()
        return endpoint

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        endpoint = await self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise NotFoundError(f"no webhook endpoint {endpoint_id}")
        return endpoint

    async def disable(self, endpoint_id: str) -> WebhookEndpoint:
        """No new events are queued for it; deliveries already queued are still sent."""
        endpoint = await self.get(endpoint_id)
        endpoint.enabled = False
        endpoint.updated_at = session_now(self.session)
        await self.session.commit()
        return endpoint

    async def deliveries_of(
        self, endpoint_id: str, *, status: str | None, limit: int
    ) -> list[WebhookDelivery]:
        await self.get(endpoint_id)
        return list(await self.deliveries.of_endpoint(endpoint_id, status=status, limit=limit))

    async def replay(self, endpoint_id: str, event_id: str) -> WebhookDelivery:
        """Send the event again now, with a fresh attempt budget, whatever its status: a
        receiver that dedups by event id ignores a copy it already has."""
        await self.get(endpoint_id)
        delivery = await self.deliveries.of_event(endpoint_id, event_id)
        if delivery is None:
            raise NotFoundError(f"no event {event_id} for webhook endpoint {endpoint_id}")
        now = session_now(self.session)
        delivery.status = DeliveryStatus.PENDING.value
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.delivered_at = None
        delivery.updated_at = now
        await self.session.commit()
        return delivery
