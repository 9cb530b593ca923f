"""Wire models of the webhook endpoint routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit.time import to_ms
from pact_settlement.outbound_webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "DeliveryList",
    "DeliveryOut",
    "EndpointCreate",
    "EndpointCreated",
    "EndpointList",
    "EndpointOut",
]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) URL that receives the events")
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Event types to receive (e.g. `settlement.released`); empty: all",
    )


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    created_at_ms: int

    @classmethod
    def of(cls, e: WebhookEndpoint) -> EndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            event_types=list(e.event_types or []),
            enabled=e.enabled,
            created_at_ms=to_ms(e.created_at),
        )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret: shown this once, never again")


class EndpointList(BaseModel):
    data: list[EndpointOut]


def _ms(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    endpoint_id: str
    event_type: str
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    next_attempt_at_ms: int | None = Field(description="When a pending delivery is next tried")
    last_status_code: int | None
    last_error: str | None
    delivered_at_ms: int | None
    created_at_ms: int

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event_id=d.event_id,
            endpoint_id=d.endpoint_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at_ms=_ms(d.next_attempt_at) if d.status == "pending" else None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            delivered_at_ms=_ms(d.delivered_at),
            created_at_ms=to_ms(d.created_at),
        )


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
