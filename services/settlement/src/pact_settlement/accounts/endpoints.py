"""Accounts API: deposits (admin token), balances (either token), payment profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

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
from pact_settlement.kit import examples
from pact_settlement.kit.auth import AdminPrincipal, AnyPrincipal
from pact_settlement.kit.deps import AppMetrics, RuntimeDep
from pact_settlement.kit.openapi import (
    DATABASE_UNAVAILABLE,
    MISSING_IDEMPOTENCY_KEY,
    Refusal,
    idempotency_key,
    ok,
    responses,
)
from pact_settlement.kit.params import AgentIdPath, RailPath

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


async def get_service(
    runtime: RuntimeDep, session: DBSession, metrics: AppMetrics
) -> AccountService:
    return AccountService(session, metrics=metrics, settings=runtime.settings)


Service = Annotated[AccountService, Depends(get_service)]


async def get_profile_service(session: DBSession) -> PaymentProfileService:
    return PaymentProfileService(session)


ProfileService = Annotated[PaymentProfileService, Depends(get_profile_service)]


async def get_topup_service(runtime: RuntimeDep, session: DBSession) -> TopUpService:
    return TopUpService(
        session,
        sessionmaker=runtime.sessionmaker,
        settings=runtime.settings,
        clients=runtime.rail_clients,
    )


TopUps = Annotated[TopUpService, Depends(get_topup_service)]

KEY_REUSED = Refusal(
    409,
    "IDEMPOTENCY_KEY_REUSED",
    "The Idempotency-Key was used with a different body",
    "this Idempotency-Key was already used with a different request body",
)
UNKNOWN_ASSET = Refusal(
    422,
    "ASSET_NOT_SUPPORTED",
    "No enabled rail settles in this asset",
    "asset GBP is not settled by any enabled rail (supported: USD)",
)
BAD_AMOUNT = Refusal(
    422,
    "SCHEMA_VALIDATION_FAILED",
    "The amount is not plain decimal text greater than 0 (or the agent id is not a key)",
    "amount: not a plain decimal amount (ASCII digits with an optional '-' and one '.'): '1e3'",
)
NO_ACCOUNT = Refusal(
    404,
    "NOT_FOUND",
    "No account for this agent (nothing was ever deposited or settled)",
    f"no account for agent {examples.SELLER.public_key_b58}",
)
NO_PROFILE = Refusal(
    404,
    "NOT_FOUND",
    "No payment profile for this rail",
    f"agent {examples.BUYER.public_key_b58} has no stripe payment profile",
)
_PROFILE = {
    "agent_id": examples.BUYER.public_key_b58,
    "rail": "stripe",
    "stripe_customer": "cus_R4nD0mCu5t0m3r",
    "stripe_payment_method": "pm_1QxY2zAbCdEfGhIjKlMnOpQr",
    "stripe_connect_account": None,
    "evm_address": None,
    "created_at": examples.iso(examples.EXAMPLE_NOW - 86_400_000),
    "updated_at": examples.iso(examples.EXAMPLE_NOW - 86_400_000),
}


@router.post(
    "/{agent_id}/deposits",
    response_model=DepositRead,
    status_code=201,
    summary="Credit an agent's available balance (operators only)",
    responses=responses(
        KEY_REUSED,
        BAD_AMOUNT,
        UNKNOWN_ASSET,
        Refusal(
            422,
            "BALANCE_LIMIT_EXCEEDED",
            "The balance (or the total deposited) would reach 1e20",
            "the balance would reach 1e20 or more, beyond NUMERIC(38, 18)",
        ),
        DATABASE_UNAVAILABLE,
        success={
            201: ok("Credited", examples.deposit()),
            200: ok(
                "Identical replay (same Idempotency-Key)", examples.deposit(), model=DepositRead
            ),
        },
    ),
)
async def create_deposit(
    agent_id: AgentIdPath,
    body: DepositCreate,
    response: Response,
    principal: AdminPrincipal,
    service: Service,
    idempotency_key: Annotated[
        str | None,
        idempotency_key(
            "Optional: with it, the same key and body credit once (a replay answers 200).",
            required=False,
            example="fund-2025-11-26-buyer-7",
        ),
    ] = None,
) -> DepositRead:
    result, created = await service.deposit(
        agent_id, body.amount, asset=body.asset, idempotency_key=idempotency_key
    )
    response.status_code = 201 if created else 200
    return result


@router.get(
    "/{agent_id}",
    response_model=AccountRead,
    summary="An agent's available and locked balances, per asset",
    description=(
        "`available` and `locked` are in `asset` (`?asset=`, default the ledger rail's "
        "asset; zero when the agent holds none of it); `balances` lists every asset the agent "
        "holds."
    ),
    responses=responses(
        NO_ACCOUNT,
        UNKNOWN_ASSET,
        DATABASE_UNAVAILABLE,
        success={200: ok("The balances", examples.account())},
    ),
)
async def get_account(
    agent_id: AgentIdPath,
    principal: AnyPrincipal,
    service: Service,
    asset: Annotated[
        str | None,
        Query(max_length=64, description="Asset code of `available` and `locked` (e.g. USD)"),
    ] = None,
) -> AccountRead:
    return await service.get(agent_id, asset)


@router.put(
    "/{agent_id}/payment-profiles/{rail}",
    response_model=PaymentProfileRead,
    summary="Set how an agent pays / is paid on an external rail (operators only)",
    description=(
        "`stripe`: `stripe_customer` (cus_…) and `stripe_payment_method` (pm_…, attached to "
        "that customer; charged off-session with manual capture when this agent buys), "
        "and/or `stripe_connect_account` (acct_…: where this agent's payouts are "
        "transferred). "
        "`evm`: `evm_address` (returned EIP-55 checksummed): the buyer's refund and "
        "slashed-bond address, the seller's payee address. Settlements recorded earlier keep "
        "the profile they were made with."
    ),
    responses=responses(
        Refusal(
            422,
            "SCHEMA_VALIDATION_FAILED",
            "Bad agent id, rail or profile fields",
            "a stripe profile needs stripe_payment_method",
        ),
        DATABASE_UNAVAILABLE,
        success={
            200: ok("Replaced", _PROFILE),
            201: ok("Created", _PROFILE, model=PaymentProfileRead),
        },
    ),
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
    responses=responses(
        DATABASE_UNAVAILABLE, success={200: ok("The profiles (maybe none)", [_PROFILE])}
    ),
)
async def list_payment_profiles(
    agent_id: AgentIdPath, principal: AnyPrincipal, service: ProfileService
) -> list[PaymentProfileRead]:
    return await service.list(agent_id)


@router.get(
    "/{agent_id}/payment-profiles/{rail}",
    response_model=PaymentProfileRead,
    summary="An agent's payment profile on one rail",
    responses=responses(
        NO_PROFILE, DATABASE_UNAVAILABLE, success={200: ok("The profile", _PROFILE)}
    ),
)
async def get_payment_profile(
    agent_id: AgentIdPath, rail: RailPath, principal: AnyPrincipal, service: ProfileService
) -> PaymentProfileRead:
    return await service.get(agent_id, rail)


@router.delete(
    "/{agent_id}/payment-profiles/{rail}",
    status_code=204,
    summary="Remove an agent's payment profile (operators only)",
    responses=responses(NO_PROFILE, DATABASE_UNAVAILABLE),
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
    responses=responses(
        MISSING_IDEMPOTENCY_KEY,
        Refusal(
            402,
            "INSUFFICIENT_ESCROW",
            "The card was declined",
            "the card was declined: insufficient_funds",
            title="Payment refused",
        ),
        KEY_REUSED,
        UNKNOWN_ASSET,
        Refusal(
            422,
            "ASSET_MISMATCH",
            "The asset is not STRIPE_CURRENCY (what the card is charged in)",
            "a top-up charges USD (STRIPE_CURRENCY) and cannot credit EUR",
        ),
        Refusal(
            422,
            "AMOUNT_BELOW_RAIL_MINIMUM",
            "Below Stripe's minimum charge for STRIPE_CURRENCY",
            "0.25 usd is below Stripe's minimum charge of 0.50 usd",
        ),
        Refusal(
            422,
            "MISSING_REQUIRED_CREDENTIALS",
            "The agent has no stripe payment profile",
            f"agent {examples.BUYER.public_key_b58} has no stripe payment profile",
        ),
        DATABASE_UNAVAILABLE,
        success={
            201: ok("Charged and credited", examples.top_up()),
            200: ok(
                "Identical replay: already charged and credited", examples.top_up(), model=TopUpRead
            ),
        },
    ),
)
async def create_top_up(
    agent_id: AgentIdPath,
    body: TopUpCreate,
    response: Response,
    principal: AdminPrincipal,
    service: TopUps,
    idempotency_key: Annotated[
        str | None,
        idempotency_key(
            "A retry with the same key charges once and credits once.",
            required=True,
            example="topup-2025-11-26-buyer-7",
        ),
    ] = None,
) -> TopUpRead:
    result, created = await service.top_up(
        agent_id, body.amount, asset=body.asset, idempotency_key=idempotency_key
    )
    response.status_code = 201 if created else 200
    return result
