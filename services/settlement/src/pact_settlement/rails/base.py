"""The rail interface: how money is actually held and moved for a settlement.

A rail receives a :class:`RailSettlement` (the amounts and parties, never an ORM object) and
an idempotency key derived from our own ids (``settlement-{id}-{step}``) that it must pass to
the underlying system, so a repeated call after a crash cannot move money twice. Each call
returns a :class:`RailResult` or raises :class:`RailError`.

``transactional`` rails (the mock ledger) write in the caller's database transaction: the
pending record, the movement and the state transition commit together. Non-transactional
rails (Stripe, EVM) are called with the ``rail_operations`` row already committed as
``pending``; the reconciler resolves it from ``status()`` after a crash.

Nothing calls a rail directly: every step goes through
:class:`pact_settlement.settlements.rail_steps.RailStepExecutor` (``run`` for a new step,
``reconcile`` for a pending one), whose docstring is the contract a rail must honour:
idempotent on the key, ``status(key)`` from the rail's own records, ``RailError(retryable=
True)`` (or any other exception / a ``pending`` result) when the outcome is not known yet.

A rail may also implement :class:`PreparingRail`: ``prepare()`` runs in the transaction that
records the settlement, before the pending ``lock`` operation is committed and before any
external call. It is given the parties' payment profiles on the rail (:class:`RailProfiles`),
refuses what the rail can never do (:class:`RailRefused`: an amount below the rail's minimum, a
missing payment profile, a bond the rail cannot hold) and snapshots the exact arguments every
later call will use.

Rails import nothing of settlements, accounts or delivery (an import-linter contract in
``make lint``): what they need arrives through these types, their own settings model and the
gateway they are constructed with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pact_schema import FailureCode

__all__ = [
    "CheckedMovement",
    "CheckingRail",
    "CreditPayoutRail",
    "PartialReleaseRail",
    "PartyProfile",
    "PayoutRail",
    "PreparingRail",
    "Rail",
    "RailError",
    "RailInsufficientFundsError",
    "RailOpStatus",
    "RailPayout",
    "RailProfiles",
    "RailRefusedError",
    "RailResult",
    "RailSettlement",
    "RailStep",
]


class RailStep(StrEnum):
    LOCK = "lock"
    RELEASE = "release"
    REFUND = "refund"
    SLASH = "slash"
    PAYOUT = "payout"  # a seller payout (``payouts`` table), never a settlement's operation
    RELEASE_PARTIAL = "release_partial"  # streaming: pay the seller part, refund the rest


class RailOpStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class RailSettlement:
    """What a rail needs to know about a settlement."""

    id: str
    intent_id: str
    buyer: str
    seller: str
    amount: Decimal
    bond: Decimal  # the seller bond held for this settlement (0 when none was required)
    asset: str  # what the amount and the bond are in (the rail's asset when it was recorded)
    delivery_deadline_at: datetime
    challenge_window: timedelta

    @property
    def challenge_ends_at(self) -> datetime:
        """The latest moment a release may still be due: the money is held at least until then."""
        return self.delivery_deadline_at + self.challenge_window


@dataclass(frozen=True, slots=True)
class PartyProfile:
    """An agent's payment profile on one rail (what an operator set with
    ``PUT /v1/accounts/{agent_id}/payment-profiles/{rail}``)."""

    agent_id: str
    stripe_customer: str | None = None
    stripe_payment_method: str | None = None
    stripe_connect_account: str | None = None
    evm_address: str | None = None


@dataclass(frozen=True, slots=True)
class RailProfiles:
    """The buyer's and the seller's profiles on the rail being prepared (``None``: not set)."""

    buyer: PartyProfile | None
    seller: PartyProfile | None


@dataclass(frozen=True, slots=True)
class RailResult:
    step: RailStep
    status: RailOpStatus
    reference: str | None = None  # journal transaction id, PaymentIntent id, tx hash, …
    detail: dict[str, Any] = field(default_factory=dict)


class RailError(Exception):
    """A rail refused or failed a call. ``retryable`` failures leave the operation pending."""

    def __init__(self, code: str, detail: str, *, retryable: bool = False) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retryable = retryable


class RailRefusedError(RailError):
    """Refused up front by :meth:`PreparingRail.prepare`: nothing was recorded or sent (422)."""


class RailInsufficientFundsError(RailError):
    def __init__(self, detail: str, *, code: str = FailureCode.INSUFFICIENT_ESCROW) -> None:
        super().__init__(code, detail)


@runtime_checkable
class Rail(Protocol):
    name: str
    transactional: bool
    supports_bond: bool
    """Whether the rail can hold the seller's bond; settlement asks for one only then."""

    @property
    def asset(self) -> str:
        """The asset the rail settles in (:mod:`pact_settlement.rails.assets`); a settlement
        recorded on the rail names it."""
        ...

    async def lock(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        """Hold the buyer's amount (and the seller's bond, when non-zero)."""
        ...

    async def release(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        """Pay the held amount to the seller and return the seller's bond."""
        ...

    async def refund(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        """Return the held amount to the buyer and the bond to the seller."""
        ...

    async def slash(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        """Return the held amount to the buyer and pay the seller's bond to the buyer."""
        ...

    async def status(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        """What the rail's own records say about the call made with ``idempotency_key``."""
        ...


@dataclass(frozen=True, slots=True)
class RailPayout:
    """What a rail needs to know about a seller payout (never the ORM object)."""

    id: str
    agent_id: str
    asset: str
    amount: Decimal
    destination: str  # the rail's payee: a Stripe Connect account (acct_…), an address (0x…)


@runtime_checkable
class PayoutRail(Protocol):
    """A rail that can pay a seller's balance out (``POST /v1/accounts/{agent}/payouts``).

    The payouts service holds the amount on the ledger (or, for a :class:`CreditPayoutRail`,
    checks it against what the rail owes the payee) and commits the payout ``pending``
    before :meth:`payout` is called with no transaction open; :meth:`payout_status` answers the
    reconciler from the rail's own records after a crash. Both are idempotent on
    ``idempotency_key`` (``payout-{id}``): a repeated call never pays twice.
    """

    name: str
    asset: str

    def payout_destination(self, profile: PartyProfile | None) -> str:
        """The payee taken from the seller's payment profile on the rail, or
        :class:`RailRefusedError` (nothing is recorded)."""
        ...

    async def payout(self, payout: RailPayout, *, idempotency_key: str) -> RailResult:
        """Pay ``payout.amount`` of ``payout.asset`` to ``payout.destination``."""
        ...

    async def payout_status(self, payout: RailPayout, *, idempotency_key: str) -> RailResult:
        """What the rail's records say about the payout made with ``idempotency_key``."""
        ...


@runtime_checkable
class CreditPayoutRail(PayoutRail, Protocol):
    """A payout rail whose payable balance is held by the rail itself, not on our ledger: the
    EVM escrows' deferred credit (``pendingWithdrawals``), which never passed through the
    ledger. The payouts service takes no ledger hold for it: it checks the amount against
    :meth:`payout_available` (less the payouts still pending to the same payee) and the rail
    refuses on chain anything beyond the credit (docs/decisions.md, decision 17)."""

    async def payout_available(self, destination: str, amount: Decimal) -> Decimal:
        """What the rail owes ``destination`` now, in the rail's asset; a
        :class:`RailRefusedError` when ``amount`` cannot be paid in the rail's units."""
        ...


@runtime_checkable
class PreparingRail(Protocol):
    async def prepare(self, settlement: RailSettlement, profiles: RailProfiles) -> None:
        """Check and snapshot, in the recording transaction, before the first call.

        Raises :class:`RailRefused` for a settlement this rail can never carry.
        """
        ...


@runtime_checkable
class PartialReleaseRail(Protocol):
    """A rail that can settle a stream (docs/protocol.md, "Streaming"): rails without it
    refuse ``settlement_mode: streaming`` at create (``SETTLEMENT_MODE_NOT_ALLOWED``)."""

    async def release_partial(self, s: RailSettlement, amount: Decimal, key: str) -> RailResult:
        """Pay the seller ``amount`` (0 < amount <= ``s.amount``) of the held amount, refund
        the buyer the remainder and return the seller's bond, as ONE operation, idempotent on
        ``key`` (a repeat returns the first call's result and moves nothing)."""
        ...


@runtime_checkable
class CheckedMovement(Protocol):
    """A movement a :class:`CheckingRail` accepted and has not written yet."""

    @property
    def reference(self) -> str:
        """The rail's reference for the movement once written (known before it is)."""
        ...

    async def write(self) -> RailResult:
        """Write the movement in the caller's transaction; it cannot be refused any more."""
        ...


@runtime_checkable
class CheckingRail(Protocol):
    """A ``transactional`` rail that can check a lock before writing anything: the settlement
    executor's one-go create (``RailStepExecutor.run_on_new``) writes the settlement in its
    locked state with the lock, never as ``pending`` first."""

    async def check_lock(
        self, settlement: RailSettlement, *, idempotency_key: str
    ) -> CheckedMovement:
        """The lock checked (its accounts row-locked in the caller's transaction), nothing
        written; :class:`RailError` when the rail refuses it."""
        ...
