"""Settlements API (thin routes: parse, call one service method, return a schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pact_schema.keys import PublicKeyB58

from pact_settlement.db.session import DBSession
from pact_settlement.kit import examples
from pact_settlement.kit.auth import AnyPrincipal, ProviderPrincipal
from pact_settlement.kit.deps import RequestId, RuntimeDep, Settings, lifecycle_service
from pact_settlement.kit.openapi import (
    DATABASE_UNAVAILABLE,
    MISSING_IDEMPOTENCY_KEY,
    NOT_FOUND,
    Refusal,
    idempotency_key,
    ok,
    responses,
)
from pact_settlement.kit.params import RailName, SettlementRefPath
from pact_settlement.settlements.schemas import SettlementCreate, SettlementPage, SettlementRead
from pact_settlement.settlements.service import SettlementService
from pact_settlement.settlements.state_machine import SettlementState
from pact_settlement.transcripts.service import TranscriptService

router = APIRouter(prefix="/v1/settlements", tags=["settlements"])


Service = Annotated[SettlementService, Depends(lifecycle_service(SettlementService))]
AMBIGUOUS = Refusal(
    409,
    "AMBIGUOUS_INTENT_ID",
    "The intent id names several buyers' settlements: use the settlement id or ?buyer=",
    "intent_id 'intent-7f3c2a9e-5b1d-4c8e-9a2f-0d6b3e8c1f47' names settlements of more than "
    "one buyer; use the settlement id instead",
    extra={"settlement_ids": ["st_01kb0ybq0g7m4n6p8r0s2t4v6w", "st_01kb0yc2h5j7k9m1n3p5q7r9s1"]},
)


@router.post(
    "",
    response_model=SettlementRead,
    status_code=201,
    summary="Verify a signed ACCEPT and lock the buyer's funds",
    description="Re-verifies the buyer's ACCEPT and the provider-signed ASK it carries, records "
    "the settlement and locks the agreed price on the rail. The same request again (same "
    "`Idempotency-Key` and body, even after the quote expired) answers the same settlement.",
    responses=responses(
        MISSING_IDEMPOTENCY_KEY,
        Refusal(
            402,
            "INSUFFICIENT_ESCROW",
            "The funds could not be locked: the settlement is recorded as failed, with a RECEIPT",
            "0.00008 needed, 0.00002 available",
            extra={"settlement_id": examples.SETTLEMENT_ID, "intent_id": examples.INTENT_ID},
        ),
        Refusal(
            409,
            "DUPLICATE_INTENT",
            "This buyer already has a settlement for the intent id, made by another request",
            "this buyer already has a settlement for intent_id "
            "'intent-7f3c2a9e-5b1d-4c8e-9a2f-0d6b3e8c1f47'",
        ),
        Refusal(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "The Idempotency-Key was used with a different body",
            "this Idempotency-Key was already used with a different request body",
        ),
        Refusal(
            422,
            "PRICE_MISMATCH",
            "The ACCEPT does not take the quote as offered (also QUOTE_EXPIRED, QUOTE_INVALID, "
            "UNTRUSTED_ISSUER, FAILED_IDENTITY, ...: see the README's error table)",
            "agreed_price 0.00007 differs from the quoted price 0.00008",
        ),
        Refusal(
            422,
            "QUOTE_EXPIRED",
            "The carried quote expired at this service's clock",
            "the quote expired at 1764158418000 (now 1764158425000)",
        ),
        Refusal(
            422,
            "PERMIT_INVALID",
            "The buyer's EIP-2612 `permit` could not fund the lock (wrong owner, value not the "
            "amount, expired, bad signature, too few tokens, a rail other than evm-erc20); "
            "nothing recorded",
            "the permit's value 1000000 is below the amount, 1500000 base units of USDC: it "
            "must be exactly the amount (the escrow relays it as the permit's value)",
        ),
        Refusal(
            503,
            "RAIL_UNAVAILABLE",
            "The chain did not answer the permit's check; nothing recorded: resend the same "
            "request after Retry-After",
            "the chain did not answer the permit's check: chain unavailable",
            title="Service unavailable",
        ),
        DATABASE_UNAVAILABLE,
        success={
            201: ok("Created: the funds are locked", examples.settlement("locked")),
            200: ok(
                "Identical replay: the settlement as it is now",
                examples.settlement("locked"),
                model=SettlementRead,
            ),
            202: ok(
                "Recorded, `pending`: an external rail's lock is in flight, on the first answer "
                "and on replays until it resolves. Poll GET or resend the same request.",
                examples.settlement("pending"),
                model=SettlementRead,
            ),
        },
    ),
)
async def create_settlement(
    body: SettlementCreate,
    response: Response,
    principal: ProviderPrincipal,
    service: Service,
    request_id: RequestId,
    idempotency_key: Annotated[
        str | None,
        idempotency_key(
            "The provider sends `accept-<sha256 hex of the ACCEPT message>`; the same key and "
            "body get the same answer.",
            required=True,
            example="accept-3f1c9e4b2a7d6c5e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7",
        ),
    ] = None,
) -> SettlementRead:
    result = await service.create(
        accept=body.accept,
        rail=body.rail,
        provider_quote=body.provider_quote,
        permit=body.permit,
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
    responses=responses(
        Refusal(
            400, "BAD_REQUEST", "The cursor is not one this service made", "cursor is not valid"
        ),
        DATABASE_UNAVAILABLE,
        success={200: ok("One page, newest first", examples.settlement_page())},
    ),
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
    "verbatim, in protocol order (quote, accept, commit, abort, reveal, challenge, receipt), "
    "the events and the settlement; `pact verify-transcript` checks them offline. "
    "`format=pact-transcript/4.0`: the reference ecosystem's v4 transcript (hash-chained "
    "rounds, `final_hash`, a `failure_event` with the v4 taxonomy code for refunds, slashes and "
    'failures). See docs/protocol.md, Transcripts, and the README, "v4 transcripts".',
    responses=responses(
        NOT_FOUND,
        AMBIGUOUS,
        DATABASE_UNAVAILABLE,
        success={200: ok("The transcript", examples.transcript())},
    ),
)
async def get_settlement_transcript(
    settlement_ref: SettlementRefPath,
    principal: AnyPrincipal,
    session: DBSession,
    runtime: RuntimeDep,
    buyer: BuyerFilter = None,
    transcript_format: Annotated[
        TranscriptFormat,
        Query(alias="format", description="the transcript format"),
    ] = "pact-settlement-transcript/1",
) -> dict[str, Any]:
    service = TranscriptService(session, settlement_public_key_b58=runtime.receipts.public_key_b58)
    if transcript_format == "pact-transcript/4.0":
        return await service.document_v4(settlement_ref, buyer=buyer)
    return await service.document(settlement_ref, buyer=buyer)


@router.get(
    "/{settlement_ref}",
    response_model=SettlementRead,
    summary="One settlement with its event trail",
    responses=responses(
        NOT_FOUND,
        AMBIGUOUS,
        DATABASE_UNAVAILABLE,
        success={200: ok("The settlement (here: released)", examples.settlement("released"))},
    ),
)
async def get_settlement(
    settlement_ref: SettlementRefPath,
    principal: AnyPrincipal,
    service: Service,
    buyer: BuyerFilter = None,
) -> SettlementRead:
    return await service.get(settlement_ref, buyer=buyer)
