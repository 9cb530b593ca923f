"""SQL for endpoints and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update

from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.outbound_webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = ["WebhookDeliveryRepository", "WebhookEndpointRepository"]

_PENDING = DeliveryStatus.PENDING.value


_ENABLED = select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))


class WebhookEndpointRepository(RepositoryBase[WebhookEndpoint]):
    model = WebhookEndpoint

    async def subscribed(self, event_type: str) -> list[WebhookEndpoint]:
        rows = await self.enabled()
        return [e for e in rows if not e.event_types or event_type in e.event_types]

    async def enabled(self) -> list[WebhookEndpoint]:
        return await self.get_all(_ENABLED)

    async def listed(self) -> list[WebhookEndpoint]:
        return await self.get_all(
            select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )


class WebhookDeliveryRepository(RepositoryBase[WebhookDelivery]):
    model = WebhookDelivery

    async def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookDelivery]:
        """Pending deliveries due by ``now``, leased until ``lease_until`` and counted as an
        attempt (a process killed mid-send still used one). ``SKIP LOCKED`` on Postgres:
        replicas take disjoint batches; the caller commits the claim before sending."""
        statement = (
            select(WebhookDelivery)
            .where(WebhookDelivery.status == _PENDING, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        rows = await self.get_all(statement)
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = lease_until
            row.updated_at = now
        await self.session.flush()
        return rows

    async def settle(
        self,
        delivery_id: str,
        *,
        attempts: int,
        values: dict[str, object],
    ) -> bool:
        """Record an attempt's outcome, only while the row is still the claim we made (a
        replay or another replica's later claim changes ``attempts``)."""
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == _PENDING,
                WebhookDelivery.attempts == attempts,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def of_endpoint(
        self, endpoint_id: str, *, status: str | None, limit: int
    ) -> Sequence[WebhookDelivery]:
        statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if status is not None:
            statement = statement.where(WebhookDelivery.status == status)
        statement = statement.order_by(
            WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()
        ).limit(limit)
        return await self.get_all(statement)

    async def of_event(self, endpoint_id: str, event_id: str) -> WebhookDelivery | None:
        return await self.get_one_or_none(
            select(WebhookDelivery).where(
                WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.event_id == event_id
            )
        )
