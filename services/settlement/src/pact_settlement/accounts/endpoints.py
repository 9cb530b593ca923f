"""Accounts API: deposits (admin token) and balances (either token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from pact_settlement.accounts.schemas import AccountRead, DepositCreate, DepositRead
from pact_settlement.accounts.service import AccountService
from pact_settlement.db.session import DBSession
from pact_settlement.kit.auth import AdminPrincipal, AnyPrincipal
from pact_settlement.kit.deps import AppMetrics
from pact_settlement.kit.openapi import AUTH_ERRORS, problem_doc

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


async def get_service(session: DBSession, metrics: AppMetrics) -> AccountService:
    return AccountService(session, metrics=metrics)


Service = Annotated[AccountService, Depends(get_service)]


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
    agent_id: str,
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
async def get_account(agent_id: str, principal: AnyPrincipal, service: Service) -> AccountRead:
    return await service.get(agent_id)
