"""Agent accounts: deposits (admin) and balances. Agent ids are base58 Ed25519 keys."""

from __future__ import annotations

from decimal import Decimal

import structlog
from pact_schema import FailureCode, KeyFormatError
from pact_schema.keys import b58decode
from pact_schema.money import WireMoneyError, parse_decimal_text
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.accounts.schemas import AccountRead, DepositRead
from pact_settlement.db.locks import lock_names
from pact_settlement.idempotency.service import MAX_KEY_LENGTH, IdempotencyService, fingerprint
from pact_settlement.kit.errors import BadRequest, NotFound, Unprocessable
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.money import MoneyError, decimal_text, to_money
from pact_settlement.kit.observability import Metrics
from pact_settlement.ledger.service import LedgerService

__all__ = ["AccountService", "validate_agent_id"]

DEPOSIT_SCOPE = "accounts.deposit"
log = structlog.get_logger(__name__)


def validate_agent_id(agent_id: str) -> str:
    try:
        raw = b58decode(agent_id)
    except KeyFormatError as exc:
        raise Unprocessable(f"agent_id is not base58: {agent_id!r}") from exc
    if len(raw) != 32:
        raise Unprocessable("agent_id must be a base58 Ed25519 public key (32 bytes)")
    return agent_id


def parse_amount(text: str) -> Decimal:
    try:
        value = parse_decimal_text(text)
        value = to_money(value)
    except (WireMoneyError, MoneyError) as exc:
        raise Unprocessable(f"amount: {exc}", code=FailureCode.SCHEMA_VALIDATION_FAILED) from exc
    if value <= 0:
        raise Unprocessable("amount must be greater than 0")
    return value


class AccountService:
    def __init__(self, session: AsyncSession, *, metrics: Metrics) -> None:
        self.session = session
        self.metrics = metrics
        self.ledger = LedgerService(session)
        self.idempotency = IdempotencyService(session)

    async def get(self, agent_id: str) -> AccountRead:
        validate_agent_id(agent_id)
        account = await self.ledger.account(agent_id)
        if account is None:
            raise NotFound(f"no account for agent {agent_id}")
        return AccountRead(
            agent_id=agent_id,
            available=decimal_text(account.available),
            locked=decimal_text(account.locked),
            updated_at=account.updated_at,
        )

    async def deposit(
        self, agent_id: str, amount_text: str, *, idempotency_key: str | None
    ) -> tuple[DepositRead, bool]:
        validate_agent_id(agent_id)
        amount = parse_amount(amount_text)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
        ledger_key = f"deposit-{new_id('dep')}"
        if idempotency_key is not None:
            request_fp = fingerprint({"agent_id": agent_id, "amount": decimal_text(amount)})
            await lock_names(self.session, f"idem:{DEPOSIT_SCOPE}:{idempotency_key}")
            row = await self.idempotency.lookup(DEPOSIT_SCOPE, idempotency_key, request_fp)
            if row is not None and row.response is not None:
                return DepositRead.model_validate(row.response), False
            ledger_key = f"deposit-key-{idempotency_key}"
        transaction = await self.ledger.deposit(agent_id, amount, idempotency_key=ledger_key)
        result = DepositRead(
            deposit_id=transaction.id,
            agent_id=agent_id,
            amount=decimal_text(amount),
            account=await self.get(agent_id),
        )
        if idempotency_key is not None:
            row = await self.idempotency.record(
                DEPOSIT_SCOPE, idempotency_key, request_fp, transaction.id
            )
            await self.idempotency.complete(row, 201, result.model_dump(mode="json"))
        self.metrics.deposits.inc()
        log.info("account.deposited", agent_id=agent_id, amount=decimal_text(amount))
        return result, True
