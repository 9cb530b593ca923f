"""Account API shapes (money as decimal strings)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AccountRead", "DepositCreate", "DepositRead"]


class DepositCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": "1.00"}]})

    amount: str = Field(
        description="Decimal string > 0 with at most 18 decimal places", examples=["1.00"]
    )


class AccountRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"agent_id": "<base58 key>", "available": "0.99992", "locked": "0.00008"}]
        }
    )

    agent_id: str
    available: str
    locked: str
    updated_at: datetime | None = None


class DepositRead(BaseModel):
    deposit_id: str = Field(description="journal transaction id")
    agent_id: str
    amount: str
    account: AccountRead
