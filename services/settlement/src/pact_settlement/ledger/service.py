"""Double-entry postings with balance checks under row locks.

A posting is one journal transaction: legs on (account, bucket) that sum to zero per asset.
An account is one owner's holding of one asset, so a leg's asset picks the account: money
never moves into another asset's account. The service checks the sums, locks every touched
account row (``SELECT … FOR UPDATE``, fixed order), refuses to take an agent balance below
zero, then writes the transaction, its legs and the new balances in the caller's
transaction. The same ``idempotency_key`` never posts twice (unique in the database).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.money import add, decimal_text, fits, neg, to_money, total
from pact_settlement.kit.time import session_now
from pact_settlement.ledger.models import JournalLeg, JournalTransaction, LedgerAccount
from pact_settlement.ledger.repository import (
    AccountKey,
    JournalRepository,
    LedgerAccountRepository,
)
from pact_settlement.rails.assets import AssetCodeError, check_asset

__all__ = [
    "EXTERNAL_ACCOUNT",
    "BalanceLimitExceededError",
    "Bucket",
    "CheckedPosting",
    "InsufficientFundsError",
    "LedgerError",
    "LedgerService",
    "Posting",
    "check_ledger_asset",
]

#: The system account deposits come from (its balance is minus everything deposited).
EXTERNAL_ACCOUNT = "system:external"
_ZERO = Decimal(0)


def check_ledger_asset(asset: str) -> str:
    """A posting's asset, or :class:`LedgerError` (a programming error: callers validate)."""
    try:
        return check_asset(asset)
    except AssetCodeError as exc:
        raise LedgerError(str(exc)) from exc


class Bucket(StrEnum):
    AVAILABLE = "available"
    LOCKED = "locked"


class LedgerError(ValueError):
    """A posting breaks a ledger invariant (unbalanced, zero leg, …): a programming error."""


class InsufficientFundsError(Exception):
    def __init__(
        self, owner: str, bucket: Bucket, needed: Decimal, has: Decimal, *, asset: str
    ) -> None:
        super().__init__(
            f"{owner}: {decimal_text(needed)} {asset} needed, {decimal_text(has)} {bucket.value}"
        )
        self.owner = owner
        self.asset = asset
        self.bucket = bucket
        self.needed = needed
        self.has = has


class BalanceLimitExceededError(Exception):
    """A posting would take a balance past what a money column holds (1e20): refused before
    anything is written. Only deposits can get there (all money enters through them, and the
    external account, minus everything deposited, is checked like any other)."""

    def __init__(self, owner: str, bucket: Bucket) -> None:
        super().__init__(
            f"the {bucket.value} balance of {owner} would reach 1e20, beyond what the ledger holds"
        )
        self.owner = owner
        self.bucket = bucket


@dataclass(frozen=True, slots=True)
class Posting:
    owner: str
    bucket: Bucket
    amount: Decimal
    asset: str


@dataclass(frozen=True, slots=True)
class CheckedPosting:
    """A posting :meth:`LedgerService.check` accepted: its accounts are row-locked in the
    caller's transaction, nothing is written yet. ``transaction_id`` is the id
    :meth:`LedgerService.write` will give the journal transaction (known before it exists, so
    rows written first can refer to it)."""

    transaction_id: str
    postings: list[Posting]
    accounts: dict[AccountKey, LedgerAccount]
    balances: dict[AccountKey, tuple[Decimal, Decimal]]


class LedgerService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.accounts = LedgerAccountRepository.from_session(session)
        self.journal = JournalRepository.from_session(session)

    async def post(
        self,
        *,
        kind: str,
        idempotency_key: str,
        postings: list[Posting],
        settlement_id: str | None = None,
        memo: str | None = None,
    ) -> tuple[JournalTransaction, bool]:
        """Post once; return the journal transaction and whether it was created now."""
        existing = await self.journal.get_by_key(idempotency_key)
        if existing is not None:
            return existing, False
        checked = await self.check(postings)
        transaction = await self.write(
            checked,
            kind=kind,
            idempotency_key=idempotency_key,
            settlement_id=settlement_id,
            memo=memo,
        )
        return transaction, True

    async def check(self, postings: list[Posting]) -> CheckedPosting:
        """The first half of :meth:`post`, for a key that cannot have been used (the caller
        knows it is new): the postings validated, every touched account row-locked (opened
        first if it is the owner's first movement of that asset) and the new balances
        computed. Raises :class:`InsufficientFundsError` or
        :class:`BalanceLimitExceededError` with nothing written; :meth:`write` writes it."""
        postings = [
            Posting(p.owner, p.bucket, to_money(p.amount), check_ledger_asset(p.asset))
            for p in postings
        ]
        if len(postings) < 2:
            raise LedgerError("a journal transaction needs at least two legs")
        if any(p.amount == 0 for p in postings):
            raise LedgerError("journal legs must be non-zero")
        for asset in {p.asset for p in postings}:
            if total(p.amount for p in postings if p.asset == asset) != 0:
                raise LedgerError(f"journal legs must sum to zero per asset ({asset} does not)")

        keys = {(p.owner, p.asset) for p in postings}
        locked = await self.accounts.lock_by_keys(keys)
        missing = keys - locked.keys()
        if missing:  # first movement of these assets for these owners: open, then lock
            for owner, asset in sorted(missing):
                if owner.startswith("system:"):
                    await self.accounts.ensure(owner, asset, kind="system", allow_negative=True)
                else:
                    await self.accounts.ensure(owner, asset, kind="agent")
            locked = await self.accounts.lock_by_keys(keys)

        delta: dict[AccountKey, dict[Bucket, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for p in postings:
            key = (p.owner, p.asset)
            delta[key][p.bucket] = add(delta[key][p.bucket], p.amount)
        new_balances: dict[AccountKey, tuple[Decimal, Decimal]] = {}
        for key in sorted(delta):
            owner, asset = key
            account = locked[key]
            available = add(account.available, delta[key][Bucket.AVAILABLE])
            held = add(account.locked, delta[key][Bucket.LOCKED])
            if not account.allow_negative:
                if available < 0:
                    raise InsufficientFundsError(
                        owner,
                        Bucket.AVAILABLE,
                        neg(delta[key][Bucket.AVAILABLE]),
                        account.available,
                        asset=asset,
                    )
                if held < 0:
                    raise InsufficientFundsError(
                        owner,
                        Bucket.LOCKED,
                        neg(delta[key][Bucket.LOCKED]),
                        account.locked,
                        asset=asset,
                    )
            if not fits(available):
                raise BalanceLimitExceededError(owner, Bucket.AVAILABLE)
            if not fits(held):
                raise BalanceLimitExceededError(owner, Bucket.LOCKED)
            new_balances[key] = (available, held)
        return CheckedPosting(new_id("jtx"), postings, locked, new_balances)

    async def write(
        self,
        checked: CheckedPosting,
        *,
        kind: str,
        idempotency_key: str,
        settlement_id: str | None = None,
        memo: str | None = None,
    ) -> JournalTransaction:
        """The second half of :meth:`post`: the journal transaction (id
        ``checked.transaction_id``), its legs and the new balances, in the caller's
        transaction (three statements; the deferred trigger checks the legs at commit)."""
        transaction = JournalTransaction(
            id=checked.transaction_id,
            kind=kind,
            idempotency_key=idempotency_key,
            settlement_id=settlement_id,
            memo=memo,
            created_at=session_now(self.session),
        )
        locked = checked.accounts
        legs = [
            JournalLeg(
                transaction_id=transaction.id,
                account_id=locked[(p.owner, p.asset)].id,
                bucket=p.bucket.value,
                amount=p.amount,
                asset=p.asset,
            )
            for p in checked.postings
        ]
        await self.journal.insert(transaction, legs)
        await self.accounts.set_many_balances(
            [(locked[key], available, held) for key, (available, held) in checked.balances.items()]
        )
        return transaction

    async def deposit(
        self, owner: str, amount: Decimal, *, asset: str, idempotency_key: str
    ) -> JournalTransaction:
        transaction, _ = await self.post(
            kind="deposit",
            idempotency_key=idempotency_key,
            postings=[
                Posting(EXTERNAL_ACCOUNT, Bucket.AVAILABLE, neg(amount), asset),
                Posting(owner, Bucket.AVAILABLE, amount, asset),
            ],
            memo=f"deposit of {asset} to {owner}",
        )
        return transaction

    async def deposit_fits(self, owner: str, amount: Decimal, *, asset: str) -> bool:
        """Whether a deposit of ``amount`` to ``owner`` would keep every balance storable now
        (read without locks: a check before an external charge; :meth:`post` checks again)."""
        for name, delta in ((owner, amount), (EXTERNAL_ACCOUNT, neg(amount))):
            account = await self.accounts.get_by_owner(name, asset)
            current = account.available if account is not None else _ZERO
            if not fits(add(current, delta)):
                return False
        return True

    async def account(self, owner: str, asset: str) -> LedgerAccount | None:
        return await self.accounts.get_by_owner(owner, asset)

    async def accounts_of(self, owner: str) -> list[LedgerAccount]:
        """``owner``'s accounts, one per asset it ever held."""
        return await self.accounts.of_owner(owner)

    async def integrity_report(self) -> list[str]:
        """Problems found by recomputing every balance from the legs (empty = consistent)."""
        problems: list[str] = []
        accounts = {a.id: a for a in await self.accounts.all_accounts()}
        sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        per_tx: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for leg in await self.journal.all_legs():
            key = (leg.account_id, leg.bucket)
            sums[key] = add(sums[key], leg.amount)
            per_tx[(leg.transaction_id, leg.asset)] = add(
                per_tx[(leg.transaction_id, leg.asset)], leg.amount
            )
            account = accounts.get(leg.account_id)
            if account is not None and account.asset != leg.asset:
                problems.append(
                    f"leg {leg.id} is {leg.asset} on {account.owner}'s {account.asset} account"
                )
        for (tx_id, asset), tx_sum in per_tx.items():
            if tx_sum != 0:
                problems.append(f"journal transaction {tx_id} sums to {tx_sum} {asset}")
        for account in accounts.values():
            for bucket, balance in (("available", account.available), ("locked", account.locked)):
                from_legs = sums[(account.id, bucket)]
                if from_legs != balance:
                    problems.append(
                        f"{account.owner} {account.asset} {bucket} is {balance}, "
                        f"legs say {from_legs}"
                    )
        return problems
