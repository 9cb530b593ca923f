"""Accounts API: deposits (admin token), balances (either token), payment profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from pact_settlement.accounts.schemas import (
    AccountRead,
    DepositCreate,
    DepositRead,
    PaymentProfilePut,
    PaymentProfileRead,
    TopUpCreate,
    TopUpRead,
)
from pact_settlement.accounts.service import AccountService, PaymentProfileService, TopUpService
from pact_settlement.db.session import DBSession
from pact_settlement.kit.auth import AdminPrincipal, AnyPrincipal
from pact_settlement.kit.deps import AppMetrics
from pact_settlement.kit.openapi import AUTH_ERRORS, problem_doc
from pact_settlement.kit.params import AgentIdPath, RailPath

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


async def get_service(session: DBSession, metrics: AppMetrics) -> AccountService:
    return AccountService(session, metrics=metrics)


Service = Annotated[AccountService, Depends(get_service)]


async def get_profile_service(session: DBSession) -> PaymentProfileService:
    return PaymentProfileService(session)


ProfileService = Annotated[PaymentProfileService, Depends(get_profile_service)]


async def get_topup_service(request: Request, session: DBSession) -> TopUpService:
    state = request.app.state
    return TopUpService(
        session,
        sessionmaker=state.sessionmaker,
        settings=state.settings,
        clients=state.rail_clients,
    )


TopUps = Annotated[TopUpService, Depends(get_topup_service)]


@router.post(
    "/{agent_id}/deposits",
    response_model=DepositRead,
    status_code=201,
    summary="Credit an agent's available balance (operators only)",
    responses={
        200: {"description": "Identical replay (same Idempotency-Key)", "model": DepositRead},
        409: problem_doc("Idempotency-Key reused with a different body", "IDEMPOTENCY_KEY_REUSED"),
        422: problem_doc("Bad agent id or amount", "SCHEMA_VALIDATION_FAILED"),
        **AUTH_ERRORS,
    },
)
async def deposit(
    agent_id: AgentIdPath,
    body: DepositCreate,
    response: Response,
    principal: AdminPrincipal,
    service: Service,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="optional; makes the deposit idempotent"),
    ] = None,
) -> DepositRead:
    result, created = await service.deposit(agent_id, body.amount, idempotency_key=idempotency_key)
    response.status_code = 201 if created else 200
    return result


@router.get(
    "/{agent_id}",
    response_model=AccountRead,
    summary="An agent's available and locked balances",
    responses={404: problem_doc("No account for this agent", "NOT_FOUND"), **AUTH_ERRORS},
)
async def get_account(
    agent_id: AgentIdPath, principal: AnyPrincipal, service: Service
) -> AccountRead:
    return await service.get(agent_id)


@router.put(
    "/{agent_id}/payment-profiles/{rail}",
    response_model=PaymentProfileRead,
    summary="Set how an agent pays / is paid on an external rail (operators only)",
    description=(
        "`stripe`: `stripe_customer` (cus_…) and `stripe_payment_method` (pm_…, attached to "
        "that customer; charged off-session with manual capture when this agent buys). "
        "`evm`: `evm_address` (returned EIP-55 checksummed): the buyer's refund and "
        "slashed-bond address, the seller's payee address. Settlements recorded earlier keep "
        "the profile they were made with."
    ),
    responses={
        201: {"description": "Created", "model": PaymentProfileRead},
        422: problem_doc("Bad agent id, rail or profile fields", "SCHEMA_VALIDATION_FAILED"),
        **AUTH_ERRORS,
    },
)
async def put_payment_profile(
    agent_id: AgentIdPath,
    rail: RailPath,
    body: PaymentProfilePut,
    response: Response,
    principal: AdminPrincipal,
    service: ProfileService,
) -> PaymentProfileRead:
    result, created = await service.put(agent_id, rail, body)
    response.status_code = 201 if created else 200
    return result


@router.get(
    "/{agent_id}/payment-profiles",
    response_model=list[PaymentProfileRead],
    summary="An agent's payment profiles",
    responses={422: problem_doc("Bad agent id", "SCHEMA_VALIDATION_FAILED"), **AUTH_ERRORS},
)
async def list_payment_profiles(
    agent_id: AgentIdPath, principal: AnyPrincipal, service: ProfileService
) -> list[PaymentProfileRead]:
    return await service.list(agent_id)


@router.get(
    "/{agent_id}/payment-profiles/{rail}",
    response_model=PaymentProfileRead,
    summary="An agent's payment profile on one rail",
    responses={404: problem_doc("No profile for this rail", "NOT_FOUND"), **AUTH_ERRORS},
)
async def get_payment_profile(
    agent_id: AgentIdPath, rail: RailPath, principal: AnyPrincipal, service: ProfileService
) -> PaymentProfileRead:
    return await service.get(agent_id, rail)


@router.delete(
    "/{agent_id}/payment-profiles/{rail}",
    status_code=204,
    summary="Remove an agent's payment profile (operators only)",
    responses={404: problem_doc("No profile for this rail", "NOT_FOUND"), **AUTH_ERRORS},
)
async def delete_payment_profile(
    agent_id: AgentIdPath, rail: RailPath, principal: AdminPrincipal, service: ProfileService
) -> Response:
    await service.delete(agent_id, rail)
    return Response(status_code=204)


@router.post(
    "/{agent_id}/topups",
    response_model=TopUpRead,
    status_code=201,
    summary="Pre-fund an agent's balance with one Stripe charge (operators only)",
    description=(
        "Charges `amount` now on the agent's saved card (its stripe payment profile) in "
        "`STRIPE_CURRENCY` and credits the same amount to its ledger balance, so micropayment "
        "settlements (below Stripe's minimum charge) run on the ledger rail against it. "
        "`Idempotency-Key` is required: a retry charges once and credits once."
    ),
    responses={
        200: {"description": "Identical replay: already charged and credited", "model": TopUpRead},
        400: problem_doc("Missing Idempotency-Key", "BAD_REQUEST", 400),
        402: problem_doc("The card was declined", "INSUFFICIENT_ESCROW", 402),
        422: problem_doc(
            "Bad amount, below Stripe's minimum, no stripe profile, stripe rail off",
            "AMOUNT_BELOW_RAIL_MINIMUM",
            422,
        ),
        **AUTH_ERRORS,
    },
)
async def top_up(
    agent_id: AgentIdPath,
    body: TopUpCreate,
    response: Response,
    principal: AdminPrincipal,
    service: TopUps,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="required")
    ] = None,
) -> TopUpRead:
    result, created = await service.top_up(agent_id, body.amount, idempotency_key=idempotency_key)
    response.status_code = 201 if created else 200
    return result
