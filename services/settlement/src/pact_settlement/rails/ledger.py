"""The mock ledger rail: real double-entry bookkeeping in the service's own database."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pact_schema import FailureCode
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.money import add, decimal_text, neg
from pact_settlement.ledger.service import (
    Bucket,
    CheckedPosting,
    InsufficientFundsError,
    LedgerService,
    Posting,
)
from pact_settlement.rails.assets import check_asset
from pact_settlement.rails.base import (
    CheckedMovement,
    RailError,
    RailInsufficientFundsError,
    RailOpStatus,
    RailResult,
    RailSettlement,
    RailStep,
)

__all__ = ["LedgerRail", "LedgerSettings"]

A, L = Bucket.AVAILABLE, Bucket.LOCKED


class LedgerSettings(BaseModel):
    """The ledger rail's settings (``PACT_SETTLEMENT_LEDGER_<FIELD>``), nested in
    :class:`~pact_settlement.config.SettlementSettings` as ``settings.ledger``."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    asset: str = Field(
        default="USD",
        description="The asset ledger-rail settlements are in, and deposits default to (a code "
        "of 2-16 characters A-Z 0-9: USD, EUR, USDC). Existing rows keep the asset they were "
        "recorded with.",
    )

    @field_validator("asset")
    @classmethod
    def _asset(cls, value: str) -> str:
        return check_asset(value)


@dataclass(frozen=True, slots=True)
class _LedgerMovement:
    """A ledger posting checked by :meth:`LedgerRail.check_lock`, written by :meth:`write`."""

    ledger: LedgerService
    step: RailStep
    settlement: RailSettlement
    idempotency_key: str
    checked: CheckedPosting

    @property
    def reference(self) -> str:
        return self.checked.transaction_id

    async def write(self) -> RailResult:
        transaction = await self.ledger.write(
            self.checked,
            kind=self.step.value,
            idempotency_key=self.idempotency_key,
            settlement_id=self.settlement.id,
            memo=f"{self.step.value} {self.settlement.intent_id}",
        )
        return RailResult(
            step=self.step,
            status=RailOpStatus.SUCCEEDED,
            reference=transaction.id,
            detail={"replayed": False},
        )


class LedgerRail:
    """Lock = available → locked on the same account; release/refund/slash unwind it. Every
    leg is in the settlement's asset."""

    name = "ledger"
    transactional = True
    supports_bond = True

    def __init__(self, session: AsyncSession, settings: LedgerSettings | None = None) -> None:
        self.ledger = LedgerService(session)
        self.asset = (settings or LedgerSettings()).asset

    async def _post(
        self, step: RailStep, s: RailSettlement, key: str, postings: list[Posting]
    ) -> RailResult:
        transaction, created = await self.ledger.post(
            kind=step.value,
            idempotency_key=key,
            postings=postings,
            settlement_id=s.id,
            memo=f"{step.value} {s.intent_id}",
        )
        return RailResult(
            step=step,
            status=RailOpStatus.SUCCEEDED,
            reference=transaction.id,
            detail={"replayed": not created},
        )

    @staticmethod
    def _lock_postings(s: RailSettlement) -> list[Posting]:
        postings = [
            Posting(s.buyer, A, neg(s.amount), s.asset),
            Posting(s.buyer, L, s.amount, s.asset),
        ]
        if s.bond > 0:
            postings += [
                Posting(s.seller, A, neg(s.bond), s.asset),
                Posting(s.seller, L, s.bond, s.asset),
            ]
        return postings

    @staticmethod
    def _lock_refused(s: RailSettlement, exc: InsufficientFundsError) -> RailError:
        if exc.owner == s.buyer:
            return RailInsufficientFundsError(
                f"buyer {s.buyer}: {decimal_text(s.amount)} {s.asset} needed, "
                f"{decimal_text(exc.has)} available"
            )
        return RailInsufficientFundsError(
            f"seller {s.seller}: a bond of {decimal_text(s.bond)} {s.asset} needed, "
            f"{decimal_text(exc.has)} available",
            code=FailureCode.BOND_INSUFFICIENT,
        )

    async def lock(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        try:
            return await self._post(RailStep.LOCK, s, idempotency_key, self._lock_postings(s))
        except InsufficientFundsError as exc:
            raise self._lock_refused(s, exc) from exc

    async def check_lock(
        self, settlement: RailSettlement, *, idempotency_key: str
    ) -> CheckedMovement:
        """The lock of a settlement new in this transaction (its key cannot have been used):
        checked, accounts row-locked, nothing written (:class:`CheckingRail`)."""
        s = settlement
        try:
            checked = await self.ledger.check(self._lock_postings(s))
        except InsufficientFundsError as exc:
            raise self._lock_refused(s, exc) from exc
        return _LedgerMovement(self.ledger, RailStep.LOCK, s, idempotency_key, checked)

    def _bond_back_to(self, s: RailSettlement, owner: str) -> list[Posting]:
        if s.bond <= 0:
            return []
        return [Posting(s.seller, L, neg(s.bond), s.asset), Posting(owner, A, s.bond, s.asset)]

    async def release(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        postings = [
            Posting(s.buyer, L, neg(s.amount), s.asset),
            Posting(s.seller, A, s.amount, s.asset),
        ]
        postings += self._bond_back_to(s, s.seller)
        return await self._post(RailStep.RELEASE, s, idempotency_key, postings)

    async def refund(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        postings = [
            Posting(s.buyer, L, neg(s.amount), s.asset),
            Posting(s.buyer, A, s.amount, s.asset),
        ]
        postings += self._bond_back_to(s, s.seller)
        return await self._post(RailStep.REFUND, s, idempotency_key, postings)

    async def slash(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        postings = [
            Posting(s.buyer, L, neg(s.amount), s.asset),
            Posting(s.buyer, A, s.amount, s.asset),
        ]
        postings += self._bond_back_to(s, s.buyer)
        return await self._post(RailStep.SLASH, s, idempotency_key, postings)

    async def release_partial(self, s: RailSettlement, amount: Decimal, key: str) -> RailResult:
        """One journal transaction: the held amount leaves the buyer's locked bucket, ``amount``
        goes to the seller, the remainder back to the buyer, the bond back to the seller."""
        if not Decimal(0) < amount <= s.amount:
            raise RailError(
                FailureCode.SETTLEMENT_FAILED,
                f"a partial release of {decimal_text(amount)} is outside (0, "
                f"{decimal_text(s.amount)}]",
            )
        rest = add(s.amount, neg(amount))
        postings = [
            Posting(s.buyer, L, neg(s.amount), s.asset),
            Posting(s.seller, A, amount, s.asset),
        ]
        if rest > 0:
            postings.append(Posting(s.buyer, A, rest, s.asset))
        postings += self._bond_back_to(s, s.seller)
        return await self._post(RailStep.RELEASE_PARTIAL, s, key, postings)

    async def status(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        transaction = await self.ledger.journal.get_by_key(idempotency_key)
        step = RailStep(idempotency_key.rsplit("-", 1)[-1])
        if transaction is None:
            return RailResult(step=step, status=RailOpStatus.NOT_FOUND)
        return RailResult(step=step, status=RailOpStatus.SUCCEEDED, reference=transaction.id)
