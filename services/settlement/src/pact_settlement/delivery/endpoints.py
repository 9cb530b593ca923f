"""Delivery API: the seller's COMMIT and REVEAL (provider token), the buyer's challenge
(authenticated by the buyer's signature alone, so it can be exposed through the ingress)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from pact_settlement.db.session import DBSession
from pact_settlement.delivery.schemas import AbortBody, ChallengeBody, CommitBody, RevealBody
from pact_settlement.delivery.service import DeliveryService
from pact_settlement.kit.auth import ProviderPrincipal
from pact_settlement.kit.deps import AppMetrics, Clock, RequestId, Settings
from pact_settlement.kit.openapi import AUTH_ERRORS, problem_doc
from pact_settlement.kit.params import SettlementRefPath
from pact_settlement.settlements.lifecycle import LifecycleApplier
from pact_settlement.settlements.schemas import SettlementRead

router = APIRouter(prefix="/v1/settlements", tags=["delivery"])


async def _applier(request: Request) -> LifecycleApplier:
    applier: LifecycleApplier = request.app.state.applier
    return applier


async def get_service(
    session: DBSession,
    settings: Settings,
    metrics: AppMetrics,
    clock: Clock,
    applier: Annotated[LifecycleApplier, Depends(_applier)],
) -> DeliveryService:
    return DeliveryService(
        session, settings=settings, metrics=metrics, applier=applier, now_ms=clock
    )


Service = Annotated[DeliveryService, Depends(get_service)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Required; same key + same content → the settlement as it is now",
        max_length=255,
    ),
]
_COMMON: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Missing Idempotency-Key", "BAD_REQUEST", 400),
    404: problem_doc("Unknown settlement", "NOT_FOUND", 404),
}


@router.post(
    "/{settlement_ref}/commit",
    response_model=SettlementRead,
    summary="Record the seller's COMMIT (sha256 of payload_b64 + nonce_b64): locked → committed",
    responses={
        **_COMMON,
        403: problem_doc("Not signed by the settlement's seller", "FAILED_IDENTITY", 403),
        409: problem_doc(
            "A different commitment is recorded, or the settlement is not locked",
            "STATE_CONFLICT",
            409,
        ),
        422: problem_doc("Bad envelope, signature, message or intent_id", "FAILED_IDENTITY", 422),
        **AUTH_ERRORS,
    },
)
async def commit(
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
    responses={
        **_COMMON,
        403: problem_doc("Not signed by the settlement's seller", "FAILED_IDENTITY", 403),
        409: problem_doc("No COMMIT yet, or already revealed differently", "STATE_CONFLICT", 409),
        422: problem_doc(
            "Bad envelope, signature, base64 or intent_id", "SCHEMA_VALIDATION_FAILED", 422
        ),
        **AUTH_ERRORS,
    },
)
async def reveal(
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
    responses={
        403: problem_doc("Not signed by the settlement's buyer", "FAILED_IDENTITY", 403),
        404: problem_doc("Unknown settlement", "NOT_FOUND", 404),
        409: problem_doc(
            "Not delivered, or the challenge window has closed", "CHALLENGE_WINDOW_CLOSED", 409
        ),
        422: problem_doc(
            "The records do not support the challenge (or a malformed one)",
            "CHALLENGE_REJECTED",
            422,
        ),
        503: AUTH_ERRORS[503],
    },
)
async def challenge(
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
    "again gets the settlement as it is.",
    responses={
        **_COMMON,
        403: problem_doc("Not signed by the settlement's seller", "FAILED_IDENTITY", 403),
        409: problem_doc("Pending, already revealed, or already ended", "STATE_CONFLICT", 409),
        422: problem_doc("Bad envelope, message or code", "SCHEMA_VALIDATION_FAILED", 422),
        **AUTH_ERRORS,
    },
)
async def abort(
    settlement_ref: SettlementRefPath,
    body: AbortBody,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
) -> SettlementRead:
    return await service.abort(
        settlement_ref, body.abort, actor=principal.actor, request_id=request_id
    )
