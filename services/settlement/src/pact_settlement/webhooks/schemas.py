"""Webhook API shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["WebhookAck"]


class WebhookAck(BaseModel):
    received: bool = True
    event_id: str
    outcome: str = Field(
        description="duplicate | ignored | resolved | pending | refunded | credited | no_change "
        "| anomaly"
    )
    settlement_id: str | None = None
