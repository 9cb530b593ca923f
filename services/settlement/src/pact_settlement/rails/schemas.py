"""API shapes of the rails domain (``GET /v1/rails``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RailInfo", "RailList"]


class RailInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "stripe",
                    "default": False,
                    "transactional": False,
                    "currency": "usd",
                    "asset": "USD",
                    "unit": "USD (1 price unit = 1 USD)",
                    "minimum_amount": "0.5",
                    "amount_quantum": "0.01",
                    "rounding": "none: amounts must be whole minor units (else "
                    "AMOUNT_NOT_IN_RAIL_UNITS)",
                    "supports_bond": False,
                    "authorization_validity_s": 604800,
                    "capture_margin_s": 86400,
                    "webhook": "/v1/webhooks/stripe",
                    "webhook_configured": True,
                }
            ]
        }
    )

    name: str
    default: bool = Field(description="used when a settlement request names no rail")
    transactional: bool = Field(
        description="true: moves money inside the service's own database transaction (ledger)"
    )
    currency: str
    asset: str | None = Field(
        default=None,
        description="the asset the rail settles in (LEDGER_ASSET, STRIPE_CURRENCY upper-cased, "
        "EVM_NATIVE_SYMBOL): settlements on it name it",
    )
    unit: str = Field(description="what one unit of a settlement amount is on this rail")
    minimum_amount: str = Field(description="smallest settlement amount accepted (decimal)")
    amount_quantum: str | None = Field(
        default=None,
        description="every amount must be a whole multiple of this (decimal); others are "
        "refused with AMOUNT_NOT_IN_RAIL_UNITS, never rounded",
    )
    rounding: str
    supports_bond: bool = Field(description="can hold the seller's bond (REQUIRE_SELLER_BOND)")
    confirmations: int | None = None
    chain_id: int | None = None
    contract_address: str | None = None
    token_address: str | None = Field(
        default=None, description="the ERC-20 token escrowed (evm-erc20 only)"
    )
    deadline_grace_s: int | None = None
    authorization_validity_s: int | None = None
    capture_margin_s: int | None = None
    webhook: str | None = None
    webhook_configured: bool | None = None
    needs_profile: dict[str, Any] | None = Field(
        default=None,
        description="payment profile fields the buyer/seller need "
        "(PUT /v1/accounts/{agent_id}/payment-profiles/{rail})",
    )


class RailList(BaseModel):
    default_rail: str
    require_seller_bond: bool
    rails: list[RailInfo]
