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
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.time import session_now
from pact_settlement.outbound_webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from pact_settlement.outbound_webhooks.repository import WebhookEndpointRepository

__all__ = ["enqueue", "enqueue_many", "event_body"]


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
    return _add(session, endpoints, event_type, obj, _ids(len(endpoints)))


async def enqueue_many(session: AsyncSession, events: list[tuple[str, dict[str, Any]]]) -> None:
    """:func:`enqueue` for several events of one change, in order, with one look at the
    endpoints (a create that records its settlement and its lock together). Deliveries are
    sent in id order within their due time, so the batch's ids are made in ascending order:
    made within one millisecond, random ids would not keep the events' order."""
    if not events:
        return
    enabled = await WebhookEndpointRepository.from_session(session).enabled()
    wanted = [
        [e for e in enabled if not e.event_types or event_type in e.event_types]
        for event_type, _ in events
    ]
    ids = _ids(sum(len(w) for w in wanted))
    for (event_type, obj), endpoints in zip(events, wanted, strict=True):
        _add(session, endpoints, event_type, obj, ids)


def _ids(count: int) -> Iterator[str]:
    return iter(sorted(new_id("whd") for _ in range(count)))


def _add(
    session: AsyncSession,
    endpoints: list[WebhookEndpoint],
    event_type: str,
    obj: dict[str, Any],
    ids: Iterator[str],
) -> str | None:
    if not endpoints:
        return None
    now = session_now(session)
    event_id = new_id("evt")
    body = event_body(event_id, event_type, int(now.timestamp()), obj)
    for endpoint in endpoints:
        session.add(
            WebhookDelivery(
                id=next(ids),
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
