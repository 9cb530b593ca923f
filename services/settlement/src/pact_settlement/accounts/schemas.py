"""Account API shapes (money as decimal strings)."""

from __future__ import annotations

from datetime import datetime

from pact_schema.keys import PublicKeyB58
from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit import examples

__all__ = [
    "AccountRead",
    "DepositCreate",
    "DepositRead",
    "PaymentProfilePut",
    "PaymentProfileRead",
    "TopUpCreate",
    "TopUpRead",
]


class DepositCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": "1.00"}]})

    amount: str = Field(
        description="Decimal string > 0 with at most 18 decimal places", examples=["1.00"]
    )


class AccountRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [examples.account(available="0.99992", locked="0.00008")]}
    )

    agent_id: PublicKeyB58
    available: str
    locked: str
    updated_at: datetime | None = None


class DepositRead(BaseModel):
    deposit_id: str = Field(description="journal transaction id")
    agent_id: PublicKeyB58
    amount: str
    account: AccountRead


class PaymentProfilePut(BaseModel):
    """Body of ``PUT /v1/accounts/{agent_id}/payment-profiles/{rail}``: the fields of that rail."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stripe_customer": "cus_R4nD0mCu5t0m3r",
                    "stripe_payment_method": "pm_1QxY2zAbCdEfGhIjKlMnOpQr",
                },
                {"evm_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"},
            ]
        },
    )

    stripe_customer: str | None = Field(
        default=None, max_length=255, description="stripe: the buyer's Customer id (cus_…)"
    )
    stripe_payment_method: str | None = Field(
        default=None,
        max_length=255,
        description="stripe: a card PaymentMethod attached to that customer (pm_…), charged "
        "off-session",
    )
    evm_address: str | None = Field(
        default=None,
        max_length=42,
        description="evm: the agent's address (0x…, 20 bytes): refunds and slashed bonds go here "
        "when it buys, payments when it sells",
    )


class PaymentProfileRead(BaseModel):
    agent_id: PublicKeyB58
    rail: str
    stripe_customer: str | None = None
    stripe_payment_method: str | None = None
    evm_address: str | None = Field(default=None, description="EIP-55 checksummed")
    created_at: datetime
    updated_at: datetime


class TopUpCreate(BaseModel):
    """Body of ``POST /v1/accounts/{agent_id}/topups``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": "20.00"}]})

    amount: str = Field(
        description="Decimal string: charged on the agent's saved card in STRIPE_CURRENCY and "
        "credited to its balance (1 price unit = 1 currency unit); whole minor units only, at "
        "least Stripe's minimum",
        examples=["20.00"],
    )


class TopUpRead(BaseModel):
    payment_intent: str = Field(description="the Stripe PaymentIntent that was charged")
    agent_id: PublicKeyB58
    amount: str
    currency: str
    amount_minor: int
    deposit_id: str = Field(description="journal transaction of the credit (exactly once)")
    account: AccountRead
