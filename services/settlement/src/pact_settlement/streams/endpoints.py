"""Streaming API (provider token): checkpoint the buyer's highest voucher, close the stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from pact_settlement.kit import examples
from pact_settlement.kit.auth import ProviderPrincipal
from pact_settlement.kit.deps import RequestId, lifecycle_service
from pact_settlement.kit.openapi import (
    DATABASE_UNAVAILABLE,
    MISSING_IDEMPOTENCY_KEY,
    NOT_FOUND,
    Refusal,
    idempotency_key,
    ok,
    responses,
)
from pact_settlement.kit.params import SettlementRefPath
from pact_settlement.settlements.schemas import SettlementRead
from pact_settlement.streams.schemas import CheckpointBody, CheckpointRead, CloseBody
from pact_settlement.streams.service import StreamService

router = APIRouter(prefix="/v1/settlements", tags=["streaming"])


Service = Annotated[StreamService, Depends(lifecycle_service(StreamService))]
IdempotencyKey = Annotated[
    str | None,
    idempotency_key(
        "Same key and same content → the settlement as it is now (the provider sends "
        "`close-<settlement id>`).",
        required=True,
        example="close-st_01kb0ybq0g7m4n6p8r0s2t4v6w",
    ),
]
VOUCHER_INVALID = Refusal(
    422,
    "VOUCHER_INVALID",
    "Not the buyer's signature, another intent or seller, or above the locked budget",
    "the voucher's paid_amount 0.06 is above the budget 0.05",
)
NOT_STREAMING = Refusal(
    409,
    "STATE_CONFLICT",
    "Not a streaming settlement, or the stream is already closed",
    "settlement st_01kb0ybq0g7m4n6p8r0s2t4v6w is released: the stream is closed and its "
    "vouchers are settled",
    extra={"settlement_id": examples.SETTLEMENT_ID, "state": "released"},
)
_CHECKPOINT_EXAMPLE = {
    "settlement_id": examples.SETTLEMENT_ID,
    "intent_id": "intent-7f3c2a9e-4b1d-4c3e-9f00-6a5b4c3d2e1f",
    "state": "streaming",
    "recorded": True,
    "paid_amount": "0.003",
    "ticks": 3,
    "voucher_seq": 3,
    "voucher_hash_hex": "4c1d9e0a7b3f2e6d5c8a9b0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5",
    "checkpoints": 1,
}


@router.post(
    "/{settlement_ref}/checkpoints",
    response_model=CheckpointRead,
    summary="Record the buyer's highest STREAM_VOUCHER (no money moves)",
    description="Verified against the settlement (buyer signature, intent, seller, at most "
    "the locked budget). Higher than the recorded one → the new checkpoint (`recorded: "
    "true`, kept in the transcript); lower, equal or the same again → nothing changes "
    "(`recorded: false`). The voucher is its own idempotency key.",
    responses=responses(
        VOUCHER_INVALID,
        NOT_STREAMING,
        NOT_FOUND,
        DATABASE_UNAVAILABLE,
        success={200: ok("The current checkpoint", _CHECKPOINT_EXAMPLE)},
    ),
)
async def record_checkpoint(
    settlement_ref: SettlementRefPath,
    body: CheckpointBody,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
) -> CheckpointRead:
    return await service.checkpoint(
        settlement_ref, body.voucher, actor=principal.actor, request_id=request_id
    )


@router.post(
    "/{settlement_ref}/close",
    response_model=SettlementRead,
    summary="Stop the stream: release the highest voucher, refund the rest, in one operation",
    description="The voucher sent (if any) is checkpointed first; then one rail step pays the "
    "seller exactly the highest recorded voucher and refunds the buyer the rest (`released`; "
    "`refunded` when no voucher is above 0), with the stop code in the RECEIPT.",
    responses=responses(
        MISSING_IDEMPOTENCY_KEY,
        VOUCHER_INVALID,
        NOT_STREAMING,
        NOT_FOUND,
        DATABASE_UNAVAILABLE,
        success={200: ok("Closed", examples.settlement("released"))},
    ),
)
async def close_stream(
    settlement_ref: SettlementRefPath,
    body: CloseBody,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
    idempotency_key: IdempotencyKey = None,
) -> SettlementRead:
    return await service.close(
        settlement_ref,
        body,
        idempotency_key=idempotency_key or "",
        actor=principal.actor,
        request_id=request_id,
    )
