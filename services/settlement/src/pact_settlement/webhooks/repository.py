"""Received webhook events."""

from __future__ import annotations

from sqlalchemy import select

from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.webhooks.models import WebhookEvent

__all__ = ["WebhookEventRepository"]


class WebhookEventRepository(RepositoryBase[WebhookEvent]):
    model = WebhookEvent

    async def get_by_event(self, source: str, event_id: str) -> WebhookEvent | None:
        return await self.get_one_or_none(
            select(WebhookEvent).where(
                WebhookEvent.source == source, WebhookEvent.event_id == event_id
            )
        )

    async def for_settlement(self, settlement_id: str) -> list[WebhookEvent]:
        return await self.get_all(
            select(WebhookEvent)
            .where(WebhookEvent.settlement_id == settlement_id)
            .order_by(WebhookEvent.received_at, WebhookEvent.id)
        )
