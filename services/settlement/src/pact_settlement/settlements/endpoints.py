"""Settlements API (thin routes: parse, call one service method, return a schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pact_schema.keys import PublicKeyB58

from pact_settlement.db.session import DBSession
from pact_settlement.kit.auth import AnyPrincipal, ProviderPrincipal
from pact_settlement.kit.deps import AppMetrics, Clock, RequestId, Settings
from pact_settlement.kit.openapi import AUTH_ERRORS, problem_doc
from pact_settlement.kit.params import RailName, SettlementRefPath
from pact_settlement.settlements.schemas import SettlementCreate, SettlementPage, SettlementRead
from pact_settlement.settlements.service import SettlementService
from pact_settlement.settlements.state_machine import SettlementState
from pact_settlement.transcripts.service import TranscriptService

router = APIRouter(prefix="/v1/settlements", tags=["settlements"])


async def get_service(
    session: DBSession, settings: Settings, metrics: AppMetrics, clock: Clock, request: Request
) -> SettlementService:
    return SettlementService(
        session,
        settings=settings,
        metrics=metrics,
        now_ms=clock,
        applier=request.app.state.applier,
    )


Service = Annotated[SettlementService, Depends(get_service)]


@router.post(
    "",
    response_model=SettlementRead,
    status_code=201,
    summary="Verify a signed ACCEPT and lock the buyer's funds",
    responses={
        200: {"description": "Identical replay: the existing settlement", "model": SettlementRead},
        202: {
            "description": "Recorded; an external rail's lock is in flight (state `pending`), "
            "on the first answer and on replays until it resolves. Poll GET or resend the same "
            "request.",
            "model": SettlementRead,
        },
        400: problem_doc("Missing Idempotency-Key", "BAD_REQUEST"),
        402: problem_doc(
            "Funds could not be locked; the settlement is recorded as failed",
            "INSUFFICIENT_ESCROW",
        ),
        409: problem_doc(
            "Different request for an existing intent_id, or a reused Idempotency-Key",
            "DUPLICATE_INTENT",
        ),
        422: problem_doc("Bad envelope, signature, quote or request body", "PRICE_MISMATCH"),
        **AUTH_ERRORS,
    },
)
async def create_settlement(
    body: SettlementCreate,
    response: Response,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required. e.g. accept-<sha256 hex of the ACCEPT message>; same key + "
            "same body → same answer",
            max_length=255,
        ),
    ] = None,
) -> SettlementRead:
    result = await service.create(
        accept=body.accept,
        rail=body.rail,
        provider_quote=body.provider_quote,
        idempotency_key=idempotency_key or "",
        actor=principal.actor,
        request_id=request_id,
    )
    response.status_code = 202 if result.in_flight else 201 if result.created else 200
    return result.settlement


@router.get(
    "",
    response_model=SettlementPage,
    summary="List settlements, newest first (cursor pagination)",
    responses={400: problem_doc("Bad cursor", "BAD_REQUEST"), **AUTH_ERRORS},
)
async def list_settlements(
    principal: AnyPrincipal,
    service: Service,
    settings: Settings,
    state: SettlementState | None = None,
    buyer: Annotated[PublicKeyB58 | None, Query(description="buyer key, base58")] = None,
    seller: Annotated[PublicKeyB58 | None, Query(description="seller key, base58")] = None,
    rail: Annotated[RailName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> SettlementPage:
    return await service.list(
        state=state,
        buyer=buyer,
        seller=seller,
        rail=rail,
        limit=min(limit, settings.page_size_max),
        cursor=cursor,
    )


BuyerFilter = Annotated[
    PublicKeyB58 | None,
    Query(description="buyer key, base58: narrows an intent id that several buyers used"),
]


TranscriptFormat = Literal["pact-settlement-transcript/1", "pact-transcript/4.0"]


@router.get(
    "/{settlement_ref}/transcript",
    summary="The settlement's signed envelopes and events, for audit (pact verify-transcript)",
    description="`format=pact-settlement-transcript/1` (default): every signed envelope "
    "verbatim, the events and the settlement. `format=pact-transcript/4.0`: the reference "
    "ecosystem's v4 transcript (hash-chained rounds, `final_hash`, a `failure_event` with the "
    'v4 taxonomy code for refunds, slashes and failures); see the README, "v4 transcripts".',
    responses={
        404: problem_doc("Unknown settlement", "NOT_FOUND"),
        409: problem_doc("The intent id names several buyers' settlements", "AMBIGUOUS_INTENT_ID"),
        **AUTH_ERRORS,
    },
)
async def get_transcript(
    settlement_ref: SettlementRefPath,
    principal: AnyPrincipal,
    session: DBSession,
    request: Request,
    buyer: BuyerFilter = None,
    transcript_format: Annotated[
        TranscriptFormat,
        Query(alias="format", description="the transcript format"),
    ] = "pact-settlement-transcript/1",
) -> dict[str, Any]:
    service = TranscriptService(
        session, settlement_public_key_b58=request.app.state.receipts.public_key_b58
    )
    if transcript_format == "pact-transcript/4.0":
        return await service.document_v4(settlement_ref, buyer=buyer)
    return await service.document(settlement_ref, buyer=buyer)


@router.get(
    "/{settlement_ref}",
    response_model=SettlementRead,
    summary="One settlement with its event trail",
    responses={
        404: problem_doc("Unknown settlement", "NOT_FOUND"),
        409: problem_doc("The intent id names several buyers' settlements", "AMBIGUOUS_INTENT_ID"),
        **AUTH_ERRORS,
    },
)
async def get_settlement(
    settlement_ref: SettlementRefPath,
    principal: AnyPrincipal,
    service: Service,
    buyer: BuyerFilter = None,
) -> SettlementRead:
    return await service.get(settlement_ref, buyer=buyer)
