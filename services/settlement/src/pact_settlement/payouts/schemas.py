"""Payout API shapes (money as decimal strings)."""

from __future__ import annotations

from datetime import datetime

from pact_schema.keys import PublicKeyB58
from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit.money import decimal_text
from pact_settlement.payouts.models import Payout

__all__ = ["PayoutCreate", "PayoutRead"]


class PayoutCreate(BaseModel):
    """Body of ``POST /v1/accounts/{agent_id}/payouts``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"amount": "12.50"}, {"amount": "40", "asset": "USD", "rail": "stripe"}]
        },
    )

    amount: str = Field(
        description="Decimal string > 0: taken from the agent's available balance in `asset` "
        "(on `evm`/`evm-erc20`: from what the escrow owes the agent's address, less its "
        "payouts still pending)",
        examples=["12.50"],
    )
    asset: str | None = Field(
        default=None,
        max_length=64,
        description="Asset code; omitted: the ledger rail's asset (LEDGER_ASSET). The rail must "
        "move it (else 422 ASSET_MISMATCH).",
    )
    rail: str | None = Field(
        default=None,
        max_length=32,
        description="`ledger` (default: a journal entry to the system payout account, paid by "
        "the operator), `stripe` (a Transfer to the agent's Connect account), `evm` / "
        "`evm-erc20` (exactly `amount` of the credit the escrow deferred for the agent's "
        "evm_address — a push at release it could not make — paid on chain once per payout "
        "id; on-chain releases otherwise pay the seller's address at release, so there is no "
        "ledger balance to pay out).",
    )


class PayoutRead(BaseModel):
    id: str
    agent_id: PublicKeyB58
    rail: str
    asset: str
    amount: str
    destination: str = Field(
        description="where it is paid: `system:payouts` (ledger), a Connect account (acct_…), "
        "an address (0x…, evm)"
    )
    status: str = Field(description="`pending`, `paid` or `failed` (the amount is available again)")
    external_ref: str | None = Field(
        default=None,
        description="the rail's record: journal transaction, Stripe Transfer (tr_…), the "
        "paying transaction's hash (evm)",
    )
    failure_code: str | None = None
    failure_detail: str | None = None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None

    @classmethod
    def of(cls, p: Payout) -> PayoutRead:
        return cls(
            id=p.id,
            agent_id=p.agent_id,
            rail=p.rail,
            asset=p.asset,
            amount=decimal_text(p.amount),
            destination=p.destination,
            status=p.status,
            external_ref=p.external_ref,
            failure_code=p.failure_code,
            failure_detail=p.failure_detail,
            created_at=p.created_at,
            updated_at=p.updated_at,
            resolved_at=p.resolved_at,
        )
