"""Account API shapes (money as decimal strings)."""

from __future__ import annotations

from datetime import datetime

from pact_schema.keys import PublicKeyB58
from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit import examples

__all__ = [
    "AccountRead",
    "BalanceRead",
    "DepositCreate",
    "DepositRead",
    "PaymentProfilePut",
    "PaymentProfileRead",
    "TopUpCreate",
    "TopUpRead",
]


_ASSET_DESCRIPTION = (
    "Asset code (2-16 characters A-Z 0-9, e.g. USD, EUR, ETH); omitted: the ledger rail's "
    "asset (LEDGER_ASSET). It must be the asset of an enabled rail (else 422 "
    "ASSET_NOT_SUPPORTED)."
)


class DepositCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": "1.00"}, {"amount": "5", "asset": "EUR"}]},
    )

    amount: str = Field(
        description="Decimal string > 0 with at most 18 decimal places", examples=["1.00"]
    )
    asset: str | None = Field(default=None, max_length=64, description=_ASSET_DESCRIPTION)


class BalanceRead(BaseModel):
    """One asset's balances of an account."""

    asset: str
    available: str
    locked: str
    updated_at: datetime | None = None


class AccountRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [examples.account(available="0.99992", locked="0.00008")]}
    )

    agent_id: PublicKeyB58
    asset: str = Field(description="the asset of `available` and `locked` (`?asset=`)")
    available: str
    locked: str
    updated_at: datetime | None = None
    balances: list[BalanceRead] = Field(
        default_factory=list, description="every asset the agent holds, by asset"
    )


class DepositRead(BaseModel):
    deposit_id: str = Field(description="journal transaction id")
    agent_id: PublicKeyB58
    asset: str
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
    stripe_connect_account: str | None = Field(
        default=None,
        max_length=255,
        description="stripe: the seller's Connect account (acct_…) that payouts are transferred "
        "to; optional (a buyer-only profile has none)",
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
    stripe_connect_account: str | None = None
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
    asset: str | None = Field(
        default=None,
        max_length=64,
        description="The asset credited; omitted: the ledger rail's asset (LEDGER_ASSET). A "
        "top-up charges STRIPE_CURRENCY, so it must be that currency upper-cased (else 422 "
        "ASSET_MISMATCH).",
    )


class TopUpRead(BaseModel):
    payment_intent: str = Field(description="the Stripe PaymentIntent that was charged")
    agent_id: PublicKeyB58
    asset: str
    amount: str
    currency: str
    amount_minor: int
    deposit_id: str = Field(description="journal transaction of the credit (exactly once)")
    account: AccountRead
