"""Put an event in the outbox: one pending delivery per enabled endpoint that wants it.

Called inside the transaction of the change the event reports (the settlement state machine
calls :func:`enqueue` next to its ``settlement_events`` row), so an event exists exactly when
its change committed: nothing is lost, nothing is sent for a change that rolled back.

Event types are ``<object>.<what happened>`` (``settlement.locked``); payouts add
``payout.created``, ``payout.paid`` and ``payout.failed`` through the same function
(:mod:`pact_settlement.payouts.service`), with the payout as ``data.object``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.time import session_now
from pact_settlement.outbound_webhooks.models import DeliveryStatus, WebhookDelivery
from pact_settlement.outbound_webhooks.repository import WebhookEndpointRepository

__all__ = ["enqueue", "event_body"]


def event_body(event_id: str, event_type: str, created: int, obj: dict[str, Any]) -> str:
    """The JSON every endpoint receives for one event (sorted keys: stable bytes)."""
    return json.dumps(
        {"id": event_id, "type": event_type, "created": created, "data": {"object": obj}},
        sort_keys=True,
        separators=(",", ":"),
    )


async def enqueue(session: AsyncSession, event_type: str, obj: dict[str, Any]) -> str | None:
    """Add the event's deliveries to the session (flushed with the caller's next write);
    returns the event id, or ``None`` when no endpoint wants it."""
    endpoints = await WebhookEndpointRepository.from_session(session).subscribed(event_type)
    if not endpoints:
        return None
    now = session_now(session)
    event_id = new_id("evt")
    body = event_body(event_id, event_type, int(now.timestamp()), obj)
    for endpoint in endpoints:
        session.add(
            WebhookDelivery(
                id=new_id("whd"),
                event_id=event_id,
                endpoint_id=endpoint.id,
                event_type=event_type,
                body=body,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    return event_id
