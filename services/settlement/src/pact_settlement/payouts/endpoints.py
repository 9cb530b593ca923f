"""Payouts API: an operator pays a seller's available balance out (admin token); either token
reads. Why operators only: services/settlement/README.md, "Threat model"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from pact_settlement.db.session import DBSession
from pact_settlement.kit import examples
from pact_settlement.kit.auth import AdminPrincipal, AnyPrincipal
from pact_settlement.kit.deps import RuntimeDep
from pact_settlement.kit.openapi import (
    DATABASE_UNAVAILABLE,
    MISSING_IDEMPOTENCY_KEY,
    Refusal,
    idempotency_key,
    ok,
    responses,
)
from pact_settlement.kit.params import AgentIdPath
from pact_settlement.payouts.schemas import PayoutCreate, PayoutRead
from pact_settlement.payouts.service import PayoutService

router = APIRouter(prefix="/v1/accounts", tags=["payouts"])


async def get_service(runtime: RuntimeDep, session: DBSession) -> PayoutService:
    return PayoutService(session, settings=runtime.settings, clients=runtime.rail_clients)


Service = Annotated[PayoutService, Depends(get_service)]
PayoutIdPath = Annotated[
    str, Path(min_length=1, max_length=40, pattern=r"^po_[a-z0-9]+$", description="A payout id")
]
_PAID = examples.payout("paid")


@router.post(
    "/{agent_id}/payouts",
    response_model=PayoutRead,
    status_code=201,
    summary="Pay an agent's available balance out (operators only)",
    description=(
        "Holds `amount` of the agent's available `asset` balance and pays it out on `rail`: "
        "`ledger` (a journal entry to the system payout account `system:payouts`; paid at "
        "once), `stripe` (a Transfer to the agent's Connect account, its stripe payment "
        "profile's `stripe_connect_account`). The payout is recorded `pending` with the hold "
        "before any rail call; 201 `paid` or `failed` (the amount is available again), 202 "
        "`pending` while the rail's answer is unknown (the reconciler resolves it). "
        "`Idempotency-Key` is required: the same key and body answer the same payout (200)."
    ),
    responses=responses(
        MISSING_IDEMPOTENCY_KEY,
        Refusal(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "The Idempotency-Key was used with a different body",
            "this Idempotency-Key was already used with a different request body",
        ),
        Refusal(
            422,
            "INSUFFICIENT_BALANCE",
            "The available balance does not cover the amount (on evm/evm-erc20: what the "
            "escrow owes the agent's address, less its payouts still pending); nothing recorded",
            "a payout of 50 USD needs that much available; 12.5 USD is available",
        ),
        Refusal(
            422,
            "ASSET_NOT_SUPPORTED",
            "No enabled rail settles in this asset",
            "asset GBP is not settled by any enabled rail (supported: USD)",
        ),
        Refusal(
            422,
            "ASSET_MISMATCH",
            "The rail pays out another asset",
            "the stripe rail pays out EUR, not USD",
        ),
        Refusal(
            422,
            "PAYOUT_NOT_SUPPORTED",
            "The rail cannot pay a balance out",
            "the example rail cannot pay a balance out",
        ),
        Refusal(
            422,
            "MISSING_REQUIRED_CREDENTIALS",
            "The agent has no payout destination on the rail",
            f"agent {examples.SELLER.public_key_b58} has no stripe_connect_account",
        ),
        Refusal(
            422,
            "RAIL_NOT_AVAILABLE",
            "The rail is unknown or not enabled",
            "rail 'evm' is not available (enabled: ledger)",
        ),
        Refusal(
            503,
            "RAIL_UNAVAILABLE",
            "The chain did not say what the escrow owes the agent (evm, evm-erc20); nothing "
            "recorded: resend the same request after Retry-After",
            "the evm rail did not say what it owes 0x70997970C51812dc3A010C7d01b50e0d17dc79C8: "
            "chain unavailable",
            title="Service unavailable",
        ),
        DATABASE_UNAVAILABLE,
        success={
            201: ok("Paid (or failed, the amount available again)", _PAID),
            200: ok("Identical replay: the same payout", _PAID, model=PayoutRead),
            202: ok("Pending: the rail's answer is not known yet", examples.payout("pending")),
        },
    ),
)
async def create_payout(
    agent_id: AgentIdPath,
    body: PayoutCreate,
    response: Response,
    principal: AdminPrincipal,
    service: Service,
    idempotency_key: Annotated[
        str | None,
        idempotency_key(
            "Required: a retry with the same key and body pays out once.",
            required=True,
            example="payout-2025-11-26-seller-3",
        ),
    ] = None,
) -> PayoutRead:
    result = await service.create(agent_id, body, idempotency_key=idempotency_key)
    response.status_code = 202 if result.in_flight else 201 if result.created else 200
    return result.payout


@router.get(
    "/{agent_id}/payouts",
    response_model=list[PayoutRead],
    summary="An agent's payouts, newest first (at most 100)",
    responses=responses(DATABASE_UNAVAILABLE, success={200: ok("The payouts", [_PAID])}),
)
async def list_payouts(
    agent_id: AgentIdPath, principal: AnyPrincipal, service: Service
) -> list[PayoutRead]:
    return await service.list(agent_id)


@router.get(
    "/{agent_id}/payouts/{payout_id}",
    response_model=PayoutRead,
    summary="One payout",
    responses=responses(
        Refusal(
            404,
            "NOT_FOUND",
            "No such payout of this agent",
            f"no payout 'po_01kb0ybd3f5h7k9m1p3r5t7v9x' of agent {examples.BUYER.public_key_b58}",
        ),
        DATABASE_UNAVAILABLE,
        success={200: ok("The payout", _PAID)},
    ),
)
async def get_payout(
    agent_id: AgentIdPath, payout_id: PayoutIdPath, principal: AnyPrincipal, service: Service
) -> PayoutRead:
    return await service.get(agent_id, payout_id)
