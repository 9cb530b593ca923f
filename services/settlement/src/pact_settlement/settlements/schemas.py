"""API shapes of the settlements domain. Money is a decimal string on the wire."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pact_schema.keys import PublicKeyB58
from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit import examples
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.params import RailName
from pact_settlement.kit.time import to_ms
from pact_settlement.rails.evm.permit import Erc20Permit
from pact_settlement.settlements.models import Settlement, SettlementEvent

__all__ = [
    "SettlementCreate",
    "SettlementEventRead",
    "SettlementPage",
    "SettlementRead",
]


class SettlementCreate(BaseModel):
    """Body of ``POST /v1/settlements``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"accept": examples.accept_envelope(), "rail": "ledger"}]},
    )

    accept: dict[str, Any] = Field(
        description=(
            "The buyer-signed ACCEPT envelope exactly as signed; its message carries the "
            "provider-signed ASK envelope in `quote`."
        )
    )
    rail: RailName | None = Field(
        default=None, description="Rail to settle on (default: the service's DEFAULT_RAIL)."
    )
    permit: Erc20Permit | None = Field(
        default=None,
        description=(
            "`evm-erc20` only: the buyer's EIP-2612 permit funding the lock from its own token "
            "balance instead of the operator's custody (spender: the rail's "
            "`contract_address`, value: exactly the amount in the token's base units). "
            "Checked against the chain before anything is recorded: a permit that could not "
            "fund the lock is a 422 `PERMIT_INVALID` and nothing is locked. Not part of the "
            "request fingerprint."
        ),
    )
    provider_quote: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Only for a bare ACCEPT that carries no `quote` (a reference-SDK buyer): the "
            "provider-signed ASK for this buyer, intent and price, supplied by the provider. "
            "Verified like a carried quote; not part of the request fingerprint."
        ),
    )


class SettlementEventRead(BaseModel):
    seq: int
    event: str = Field(examples=["settlement.locked"])
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: SettlementEvent) -> SettlementEventRead:
        return cls(
            seq=row.seq,
            event=row.event,
            from_state=row.from_state,
            to_state=row.to_state,
            actor=row.actor,
            reason=row.reason,
            data=row.data or {},
            created_at=row.created_at,
        )


class SettlementRead(BaseModel):
    """A settlement; every route that answers one documents it at the state it answers in
    (examples: ``kit/examples.py``)."""

    id: str
    intent_id: str
    state: str = Field(
        description="pending|locked|committed|delivered|released|refunded|slashed|failed"
    )
    rail: str
    asset: str = Field(
        description="what amount and bond are in: the rail's asset (LEDGER_ASSET, "
        "STRIPE_CURRENCY upper-cased, EVM_NATIVE_SYMBOL) when the settlement was recorded",
        examples=["USD"],
    )
    amount: str = Field(description="agreed price, decimal string")
    bond: str = Field(description="the quote's bond_required, decimal string")
    bond_locked: str = Field(description="seller bond actually held (0 unless required)")
    buyer: PublicKeyB58 = Field(description="buyer agent id: the ACCEPT signer's base58 key")
    seller: PublicKeyB58 = Field(description="seller agent id: the ASK signer's base58 key")
    settlement_mode: str
    proof_type: str
    delivery_deadline_at: datetime
    delivery_deadline_ms: int
    challenge_window_ms: int
    quote_expires_at: datetime
    failure_code: str | None
    failure_detail: str | None
    locked_at: datetime | None = Field(description="when the funds were locked")
    commit_by_at: datetime | None = Field(
        description="no COMMIT by then: refunded in full, COMMIT_WINDOW_MISSED (the quote's "
        "expiry + COMMIT_GRACE_MS, at most the delivery deadline)"
    )
    committed_at: datetime | None = Field(
        description="when the seller's COMMIT was recorded; the promised latency is measured "
        "from locked_at to it"
    )
    commit_hash_hex: str | None = Field(
        description="the seller's COMMIT: sha256(payload_b64 + nonce_b64)"
    )
    reveal_hash_hex: str | None = Field(
        description="sha256(payload_b64 + nonce_b64) of the REVEAL received (the payload is "
        "not kept)"
    )
    delivered_at: datetime | None
    challenge_ends_at: datetime | None = Field(
        description="end of the buyer's challenge window; the sweeper releases after it"
    )
    receipt: dict[str, Any] | None = Field(
        description="the signed RECEIPT envelope (settlement key, see /.well-known/"
        "pact-settlement) once the settlement is terminal"
    )
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    events: list[SettlementEventRead]

    @classmethod
    def of(cls, s: Settlement, events: list[SettlementEvent]) -> SettlementRead:
        return cls(
            id=s.id,
            intent_id=s.intent_id,
            state=s.state,
            rail=s.rail,
            asset=s.asset,
            amount=decimal_text(s.amount),
            bond=decimal_text(s.bond),
            bond_locked=decimal_text(s.bond_locked),
            buyer=s.buyer,
            seller=s.seller,
            settlement_mode=s.settlement_mode,
            proof_type=s.proof_type,
            delivery_deadline_at=s.delivery_deadline_at,
            delivery_deadline_ms=s.delivery_deadline_ms or to_ms(s.delivery_deadline_at),
            challenge_window_ms=s.challenge_window_ms,
            quote_expires_at=s.quote_expires_at,
            failure_code=s.failure_code,
            failure_detail=s.failure_detail,
            locked_at=s.locked_at,
            commit_by_at=s.commit_by_at,
            committed_at=s.committed_at,
            commit_hash_hex=s.commit_hash_hex,
            reveal_hash_hex=s.reveal_hash_hex,
            delivered_at=s.delivered_at,
            challenge_ends_at=s.challenge_ends_at,
            receipt=json.loads(s.receipt_json) if s.receipt_json else None,
            created_at=s.created_at,
            updated_at=s.updated_at,
            closed_at=s.closed_at,
            events=[SettlementEventRead.of(e) for e in events],
        )


class SettlementPage(BaseModel):
    items: list[SettlementRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
