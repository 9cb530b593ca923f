"""Delivery API: the seller's COMMIT and REVEAL (provider token), the buyer's challenge
(authenticated by the buyer's signature alone, so it can be exposed through the ingress)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from pact_settlement.delivery.schemas import AbortBody, ChallengeBody, CommitBody, RevealBody
from pact_settlement.delivery.service import DeliveryService
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

router = APIRouter(prefix="/v1/settlements", tags=["delivery"])


Service = Annotated[DeliveryService, Depends(lifecycle_service(DeliveryService))]
IdempotencyKey = Annotated[
    str | None,
    idempotency_key(
        "Same key and same content → the settlement as it is now (the provider sends "
        "`commit-<settlement id>-<commitment>` / `reveal-<settlement id>-<commitment>`).",
        required=True,
        example="commit-st_01kb0ybq0g7m4n6p8r0s2t4v6w-"
        "9a4f3c1e7b2d8a6f5e0c4b3a2d1f9e8c7b6a5d4e3f2c1b0a9f8e7d6c5b4a3f2e",
    ),
]
NOT_THE_SELLER = Refusal(
    403,
    "FAILED_IDENTITY",
    "Not signed by the settlement's seller (the quote's provider key)",
    f"the envelope must be signed by the settlement's seller ({examples.SELLER.public_key_b58}); "
    f"it is signed by {examples.BUYER.public_key_b58}",
)


@router.post(
    "/{settlement_ref}/commit",
    response_model=SettlementRead,
    summary="Record the seller's COMMIT (sha256 of payload_b64 + nonce_b64): locked → committed",
    description="The latency the quote promised is measured here, on this service's clock "
    "(lock → COMMIT). At or after `commit_by_at` the settlement is refunded instead "
    "(`COMMIT_WINDOW_MISSED`, bond returned), answered 200 with the refunded settlement.",
    responses=responses(
        MISSING_IDEMPOTENCY_KEY,
        NOT_THE_SELLER,
        NOT_FOUND,
        Refusal(
            409,
            "STATE_CONFLICT",
            "A different commitment is recorded, or the settlement is not locked",
            "settlement st_01kb0ybq0g7m4n6p8r0s2t4v6w already has a different COMMIT",
            extra={"settlement_id": examples.SETTLEMENT_ID, "state": "committed"},
        ),
        Refusal(
            422,
            "FAILED_IDENTITY",
            "The envelope does not verify (hash, signature, key)",
            "envelope signature does not verify (bad_signature)",
        ),
        DATABASE_UNAVAILABLE,
        success={200: ok("Committed (or the same COMMIT again)", examples.settlement("committed"))},
    ),
)
async def record_commit(
    settlement_ref: SettlementRefPath,
    body: CommitBody,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
    idempotency_key: IdempotencyKey = None,
) -> SettlementRead:
    return await service.commit(
        settlement_ref,
        body.commit,
        idempotency_key=idempotency_key or "",
        actor=principal.actor,
        request_id=request_id,
    )


@router.post(
    "/{settlement_ref}/reveal",
    response_model=SettlementRead,
    summary="Check the seller's REVEAL against the COMMIT: delivered, or refund + slash",
    description="Match before the delivery deadline → `delivered` (challenge window starts; "
    "a zero window releases at once). Mismatch → refund + slash, `FAILED_PROOF`; after the "
    "deadline → refund + slash, `DELIVERY_DEADLINE_MISSED`. Either way 200 with the "
    "settlement (its `receipt` once terminal).",
    responses=responses(
        MISSING_IDEMPOTENCY_KEY,
        NOT_THE_SELLER,
        NOT_FOUND,
        Refusal(
            409,
            "STATE_CONFLICT",
            "No COMMIT yet, or already revealed differently",
            "settlement st_01kb0ybq0g7m4n6p8r0s2t4v6w is locked: a REVEAL needs the COMMIT first",
            extra={"settlement_id": examples.SETTLEMENT_ID, "state": "locked"},
        ),
        Refusal(
            422,
            "SCHEMA_VALIDATION_FAILED",
            "Bad envelope, base64 or intent_id",
            "reveal message: payload_b64 is not standard base64",
        ),
        DATABASE_UNAVAILABLE,
        success={
            200: ok("Delivered (the challenge window runs)", examples.settlement("delivered"))
        },
    ),
)
async def record_reveal(
    settlement_ref: SettlementRefPath,
    body: RevealBody,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
    idempotency_key: IdempotencyKey = None,
) -> SettlementRead:
    return await service.reveal(
        settlement_ref,
        body.reveal,
        idempotency_key=idempotency_key or "",
        actor=principal.actor,
        request_id=request_id,
    )


@router.post(
    "/{settlement_ref}/challenge",
    response_model=SettlementRead,
    summary="The buyer's challenge (a signed REJECT) inside the challenge window",
    description="No bearer token: the envelope must be signed by the settlement's buyer. "
    "Decided objectively from this service's records; upheld → refund + slash (200, terminal, "
    "with the RECEIPT); not upheld → 422 `CHALLENGE_REJECTED`, state unchanged. The same "
    "envelope again gets the same answer.",
    responses=responses(
        Refusal(
            403,
            "FAILED_IDENTITY",
            "Not signed by the settlement's buyer",
            f"the envelope must be signed by the settlement's buyer "
            f"({examples.BUYER.public_key_b58}); it is signed by "
            f"{examples.SELLER.public_key_b58}",
        ),
        NOT_FOUND,
        Refusal(
            409,
            "CHALLENGE_WINDOW_CLOSED",
            "Not delivered, or the challenge window has closed",
            "the challenge window of settlement st_01kb0ybq0g7m4n6p8r0s2t4v6w closed at "
            "2025-11-26T12:00:05.460000+00:00",
            extra={"settlement_id": examples.SETTLEMENT_ID, "state": "delivered"},
        ),
        Refusal(
            422,
            "CHALLENGE_REJECTED",
            "The records do not support the challenge (state unchanged, the verdict recorded)",
            "the REVEAL on record hashes to the COMMIT: FAILED_PROOF is not upheld",
            title="Challenge rejected",
        ),
        DATABASE_UNAVAILABLE,
        success={
            200: ok(
                "Upheld: refunded (or slashed when a bond is held), with the RECEIPT",
                examples.settlement("challenged"),
            )
        },
    ),
)
async def challenge_delivery(
    settlement_ref: SettlementRefPath,
    body: ChallengeBody,
    service: Service,
    request_id: RequestId,
) -> SettlementRead:
    return await service.challenge(settlement_ref, body.challenge, request_id=request_id)


@router.post(
    "/{settlement_ref}/abort",
    response_model=SettlementRead,
    summary="The seller calls the trade off before delivering: full refund, bond returned",
    description="A REJECT signed by the settlement's seller, `code` `FULFILMENT_FAILED` "
    "(default) or `DELIVERY_WINDOW_TOO_SHORT`. Only while `locked` or `committed` (nothing "
    "revealed yet): the buyer is refunded at once and no bond is slashed. The same envelope "
    "again gets the settlement as it is. Takes no Idempotency-Key: the first abort decides.",
    responses=responses(
        NOT_THE_SELLER,
        NOT_FOUND,
        Refusal(
            409,
            "STATE_CONFLICT",
            "Pending, already revealed, or already ended",
            "settlement st_01kb0ybq0g7m4n6p8r0s2t4v6w is delivered: the buyer has the goods, "
            "it can no longer be aborted",
            extra={"settlement_id": examples.SETTLEMENT_ID, "state": "delivered"},
        ),
        Refusal(
            422,
            "SCHEMA_VALIDATION_FAILED",
            "Bad envelope, message or code",
            "abort code must be FULFILMENT_FAILED or DELIVERY_WINDOW_TOO_SHORT, not PRICE_MISMATCH",
        ),
        DATABASE_UNAVAILABLE,
        success={
            200: ok(
                "Refunded in full, bond returned, with the RECEIPT", examples.settlement("aborted")
            )
        },
    ),
)
async def abort_settlement(
    settlement_ref: SettlementRefPath,
    body: AbortBody,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
) -> SettlementRead:
    return await service.abort(
        settlement_ref, body.abort, actor=principal.actor, request_id=request_id
    )
