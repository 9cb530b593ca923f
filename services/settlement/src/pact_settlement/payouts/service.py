"""Seller payouts: an agent's available balance paid out through a rail, exactly once.

Write-ahead, like the settlement rail steps (docs/decisions.md, decision 3):

1. In the request's transaction: the ledger **hold** (``payout_hold``: the agent's available
   balance → its locked balance, under the account's row lock, so concurrent payouts of one
   balance serialise and none takes it below zero), the ``payouts`` row ``pending``, the
   ``payout.created`` event and the idempotency record. Not enough available → 422
   ``INSUFFICIENT_BALANCE``, nothing written.
2. The ledger rail has nothing external to call: in the same transaction the held amount
   leaves to the system payout account (``payout_paid``), the payout is ``paid``.
   An external rail (Stripe): step 1 is **committed** first, then the rail is called with no
   transaction open, under the outgoing key ``payout-{id}``; the outcome is recorded in a new
   transaction: ``paid`` (``payout_paid``: locked → ``system:payouts:{rail}``), ``failed``
   (``payout_return``: locked → available again) or, when it is not known (timeout, network,
   crash), left ``pending`` for the reconciler (:func:`reconcile_payout`), which asks the
   rail's own records (``payout_status``) and resolves it, or makes the call again under the
   same key when the rail never saw it.

A rail that holds the payable balance itself (:class:`~pact_settlement.rails.base.CreditPayoutRail`:
the EVM escrows' deferred credit, money that never passed through our ledger) gets no ledger
hold: step 1 checks the amount against what the rail owes the payee now, less the payouts to
that payee still pending (under a lock on the payee, so concurrent requests see each other's
rows), records the payout ``pending`` without a ``hold_transaction_id``, and its resolution
posts nothing; the rail itself pays exactly the amount at most once per payout id, and refuses
anything beyond the credit (docs/decisions.md, decision 17).

Every journal entry has a key derived from the payout id, so a resolution applied twice (a
request and a reconciler racing) posts once; the row is re-read ``FOR UPDATE`` and resolved
only while still ``pending``. State changes enqueue ``payout.created``, ``payout.paid`` and
``payout.failed`` in the same transaction (outbound webhooks).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.accounts.repository import PROFILE_OF, PaymentProfileRepository
from pact_settlement.accounts.service import (
    parse_amount,
    parse_asset,
    validate_agent_id,
)
from pact_settlement.config import SettlementSettings
from pact_settlement.db.locks import lock_names
from pact_settlement.idempotency.service import MAX_KEY_LENGTH, IdempotencyService, fingerprint
from pact_settlement.kit.deadline import time_left
from pact_settlement.kit.errors import (
    BadRequestError,
    NotFoundError,
    ProblemCode,
    RailUnavailableError,
    UnprocessableError,
)
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.money import decimal_text, neg
from pact_settlement.kit.time import session_now
from pact_settlement.ledger.service import Bucket, InsufficientFundsError, LedgerService, Posting
from pact_settlement.outbound_webhooks.outbox import enqueue
from pact_settlement.payouts.models import Payout, PayoutStatus
from pact_settlement.payouts.repository import PayoutRepository
from pact_settlement.payouts.schemas import PayoutCreate, PayoutRead
from pact_settlement.rails.base import (
    CreditPayoutRail,
    PayoutRail,
    RailError,
    RailOpStatus,
    RailPayout,
    RailRefusedError,
    RailResult,
    RailStep,
)
from pact_settlement.rails.clients import RailClients, RailNotConfiguredError
from pact_settlement.rails.registry import UnknownRailError, get_rail

__all__ = [
    "LEDGER_PAYOUT_ACCOUNT",
    "PAYOUT_SCOPE",
    "CreatedPayout",
    "PayoutService",
    "payout_account",
    "reconcile_payout",
    "resolve_payout",
]

log = structlog.get_logger(__name__)

PAYOUT_SCOPE = "accounts.payout"
#: Where paid-out money goes on the ledger (per rail): minus everything paid out by it.
LEDGER_PAYOUT_ACCOUNT = "system:payouts"
#: Longest back-off between two reconciler looks at one unresolved payout.
MAX_BACKOFF = timedelta(hours=1)
A, L = Bucket.AVAILABLE, Bucket.LOCKED


def payout_account(rail: str) -> str:
    """The system account a rail's paid payouts are booked to."""
    return LEDGER_PAYOUT_ACCOUNT if rail == "ledger" else f"{LEDGER_PAYOUT_ACCOUNT}:{rail}"


@dataclass(frozen=True, slots=True)
class CreatedPayout:
    payout: PayoutRead
    created: bool  # False: an identical earlier request's payout
    in_flight: bool  # the rail's answer is not known yet (202)


def rail_payout(p: Payout) -> RailPayout:
    return RailPayout(
        id=p.id, agent_id=p.agent_id, asset=p.asset, amount=p.amount, destination=p.destination
    )


class PayoutService:
    def __init__(
        self, session: AsyncSession, *, settings: SettlementSettings, clients: RailClients | None
    ) -> None:
        self.session = session
        self.settings = settings
        self.clients = clients
        self.payouts = PayoutRepository.from_session(session)
        self.idempotency = IdempotencyService(session)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, agent_id: str, payout_id: str) -> PayoutRead:
        validate_agent_id(agent_id)
        payout = await self.payouts.get_by_id(payout_id)
        if payout is None or payout.agent_id != agent_id:
            raise NotFoundError(f"no payout {payout_id!r} of agent {agent_id}")
        return PayoutRead.of(payout)

    async def list(self, agent_id: str, *, limit: int = 100) -> list[PayoutRead]:
        validate_agent_id(agent_id)
        return [PayoutRead.of(p) for p in await self.payouts.of_agent(agent_id, limit=limit)]

    # -- create ------------------------------------------------------------------------------

    async def create(
        self, agent_id: str, body: PayoutCreate, *, idempotency_key: str | None
    ) -> CreatedPayout:
        validate_agent_id(agent_id)
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise BadRequestError(
                f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required"
            )
        amount = parse_amount(body.amount)
        asset = parse_asset(body.asset, self.settings)
        rail_name = body.rail or "ledger"
        request_fp = fingerprint(
            {
                "agent_id": agent_id,
                "amount": decimal_text(amount),
                "asset": asset,
                "rail": rail_name,
            }
        )
        await lock_names(self.session, f"idem:{PAYOUT_SCOPE}:{idempotency_key}")
        row = await self.idempotency.lookup(PAYOUT_SCOPE, idempotency_key, request_fp)
        if row is not None and row.resource_id is not None:
            earlier = await self.payouts.get_by_id(row.resource_id)
            if earlier is not None:
                return CreatedPayout(PayoutRead.of(earlier), created=False, in_flight=False)

        rail = await self._payout_rail(rail_name, asset)
        payout_id = new_id("po")
        destination = (
            payout_account("ledger") if rail is None else await self._destination(rail, agent_id)
        )
        hold_id: str | None = None  # a rail-held credit: no ledger hold
        if isinstance(rail, CreditPayoutRail):
            await self._check_credit(rail, destination, amount, asset)
        else:
            hold_id = await self._hold(agent_id, payout_id, amount, asset)
        now = session_now(self.session)
        payout = Payout(
            id=payout_id,
            agent_id=agent_id,
            rail=rail_name,
            asset=asset,
            amount=amount,
            destination=destination,
            status=PayoutStatus.PENDING.value,
            idempotency_key=f"payout-{payout_id}",
            request_fingerprint=request_fp,
            hold_transaction_id=hold_id,
            attempts=1,
            lease_until=now + timedelta(seconds=self.settings.reconcile_grace_s),
            created_at=now,
            updated_at=now,
        )
        self.session.add(payout)
        await self.idempotency.record(
            PAYOUT_SCOPE, idempotency_key, request_fp, payout_id, flush=False
        )
        await enqueue(self.session, "payout.created", _event_object(payout))
        await self.session.flush()
        log.info(
            "payout.created",
            payout_id=payout_id,
            agent_id=agent_id,
            rail=rail_name,
            asset=asset,
            amount=decimal_text(amount),
        )
        if rail is None:  # the ledger: nothing external, paid in this transaction
            await resolve_payout(
                self.session,
                payout,
                RailResult(step=_PAYOUT, status=RailOpStatus.SUCCEEDED),
                settings=self.settings,
            )
            return CreatedPayout(PayoutRead.of(payout), created=True, in_flight=False)

        # External rail: the pending payout and its hold are committed before the call.
        await self.session.commit()
        outcome = await _call(rail, payout_snapshot := rail_payout(payout), self.settings)
        locked = await self.payouts.get_for_update(payout_snapshot.id)
        assert locked is not None  # committed above, never deleted
        if locked.status == PayoutStatus.PENDING.value:
            await resolve_payout(self.session, locked, outcome, settings=self.settings)
        in_flight = locked.status == PayoutStatus.PENDING.value
        return CreatedPayout(PayoutRead.of(locked), created=True, in_flight=in_flight)

    async def _hold(self, agent_id: str, payout_id: str, amount: Decimal, asset: str) -> str:
        """The ledger hold (available → locked); 422 ``INSUFFICIENT_BALANCE`` beyond it."""
        try:
            hold, _ = await LedgerService(self.session).post(
                kind="payout_hold",
                idempotency_key=f"payout-{payout_id}-hold",
                postings=[
                    Posting(agent_id, A, neg(amount), asset),
                    Posting(agent_id, L, amount, asset),
                ],
                memo=f"payout {payout_id} held",
            )
        except InsufficientFundsError as exc:
            raise UnprocessableError(
                f"a payout of {decimal_text(amount)} {asset} needs that much available; "
                f"{decimal_text(exc.has)} {asset} is available",
                code=ProblemCode.INSUFFICIENT_BALANCE,
            ) from exc
        return hold.id

    async def _check_credit(
        self, rail: CreditPayoutRail, destination: str, amount: Decimal, asset: str
    ) -> None:
        """What the rail owes ``destination``, less the payouts to it still pending, must cover
        ``amount``; else 422 ``INSUFFICIENT_BALANCE`` and nothing is written. Serialised per
        payee, so two requests never both count the same credit."""
        await lock_names(self.session, f"payout-credit:{rail.name}:{destination.lower()}")
        try:
            owed = await asyncio.wait_for(
                rail.payout_available(destination, amount), self.settings.rail_call_timeout_s
            )
        except RailRefusedError as exc:
            raise UnprocessableError(exc.detail, code=exc.code) from exc
        except (RailError, TimeoutError, OSError) as exc:
            raise RailUnavailableError(
                f"the {rail.name} rail did not say what it owes {destination}: {exc}"
            ) from exc
        pending = await self.payouts.pending_to(rail.name, destination, asset)
        available = owed - pending
        if amount > available:
            raise UnprocessableError(
                f"a payout of {decimal_text(amount)} {asset} on {rail.name} needs that much of "
                f"the credit the escrow holds for {destination}: it owes "
                f"{decimal_text(owed)} {asset}, of which {decimal_text(pending)} {asset} is "
                "in payouts still pending",
                code=ProblemCode.INSUFFICIENT_BALANCE,
            )

    async def _payout_rail(self, name: str, asset: str) -> PayoutRail | None:
        """The rail that pays out (``None``: the ledger itself), or a 422."""
        if name not in self.settings.enabled_rails:
            raise UnprocessableError(
                f"rail {name!r} is not available (enabled: "
                f"{', '.join(self.settings.enabled_rails)})",
                code=ProblemCode.RAIL_NOT_AVAILABLE,
            )
        if name == "ledger":
            return None
        try:
            rail = get_rail(
                name, settings=self.settings, session=self.session, clients=self.clients
            )
        except (UnknownRailError, RailNotConfiguredError) as exc:
            raise UnprocessableError(
                f"rail {name!r} is not available: {exc}", code=ProblemCode.RAIL_NOT_AVAILABLE
            ) from exc
        if not isinstance(rail, PayoutRail):
            raise UnprocessableError(
                f"the {name} rail cannot pay a balance out",
                code=ProblemCode.PAYOUT_NOT_SUPPORTED,
            )
        if rail.asset != asset:
            raise UnprocessableError(
                f"the {name} rail pays out {rail.asset}, not {asset}",
                code=ProblemCode.ASSET_MISMATCH,
            )
        return rail

    async def _destination(self, rail: PayoutRail, agent_id: str) -> str:
        # Rails that pay the same kind of account share one profile (evm-erc20 pays the
        # agent's evm address).
        profile = await PaymentProfileRepository.from_session(self.session).rail_profile(
            agent_id, PROFILE_OF.get(rail.name, rail.name)
        )
        try:
            return rail.payout_destination(profile)
        except RailRefusedError as exc:
            raise UnprocessableError(exc.detail, code=exc.code) from exc


_PAYOUT = RailStep.PAYOUT


def _event_object(p: Payout) -> dict[str, object]:
    """``data.object`` of a ``payout.*`` event."""
    return {"object": "payout", **PayoutRead.of(p).model_dump(mode="json")}


async def _call(rail: PayoutRail, payout: RailPayout, settings: SettlementSettings) -> RailResult:
    """The rail's payout call, bounded; an unknown outcome is a ``pending`` result (the payout
    stays pending for the reconciler), a definite refusal a ``failed`` one."""
    budget = settings.rail_call_timeout_s
    left = time_left(for_rail_call=True)
    if left is not None:
        budget = min(budget, left)
    try:
        return await asyncio.wait_for(
            rail.payout(payout, idempotency_key=f"payout-{payout.id}"), timeout=budget
        )
    except RailError as exc:
        status = RailOpStatus.PENDING if exc.retryable else RailOpStatus.FAILED
        return RailResult(
            step=_PAYOUT, status=status, detail={"code": exc.code, "error": exc.detail}
        )
    except Exception as exc:  # timeout, network, a bug in the gateway: not known, never paid
        log.warning("payout.call_unresolved", payout_id=payout.id, error=repr(exc)[:300])
        return RailResult(
            step=_PAYOUT,
            status=RailOpStatus.PENDING,
            detail={"code": "RAIL_UNAVAILABLE", "error": repr(exc)[:300]},
        )


async def resolve_payout(
    session: AsyncSession,
    payout: Payout,
    outcome: RailResult,
    *,
    settings: SettlementSettings,
) -> None:
    """Apply a rail's answer to a ``pending`` payout (read ``FOR UPDATE`` by the caller):
    ``succeeded`` → paid, ``failed`` → failed and the amount available again, anything else →
    still pending, not looked at again before its next lease."""
    now = session_now(session)
    ledger = LedgerService(session)
    agent, asset, amount = payout.agent_id, payout.asset, payout.amount
    on_ledger = payout.hold_transaction_id is not None  # else held and paid by the rail
    if outcome.status is RailOpStatus.SUCCEEDED:
        paid_id = None
        if on_ledger:
            paid, _ = await ledger.post(
                kind="payout_paid",
                idempotency_key=f"payout-{payout.id}-paid",
                postings=[
                    Posting(agent, L, neg(amount), asset),
                    Posting(payout_account(payout.rail), A, amount, asset),
                ],
                memo=f"payout {payout.id} paid",
            )
            paid_id = paid.id
        payout.status = PayoutStatus.PAID.value
        payout.external_ref = outcome.reference or paid_id
        event = "payout.paid"
    elif outcome.status is RailOpStatus.FAILED:
        if on_ledger:
            await ledger.post(
                kind="payout_return",
                idempotency_key=f"payout-{payout.id}-return",
                postings=[Posting(agent, L, neg(amount), asset), Posting(agent, A, amount, asset)],
                memo=f"payout {payout.id} failed: returned",
            )
        payout.status = PayoutStatus.FAILED.value
        payout.failure_code = str(outcome.detail.get("code") or "PAYOUT_FAILED")[:64]
        payout.failure_detail = str(outcome.detail.get("error") or "the rail refused it")
        event = "payout.failed"
    else:
        backoff = timedelta(seconds=settings.reconcile_grace_s) * (
            2 ** min(max(payout.attempts - 1, 0), 6)
        )
        payout.lease_until = now + min(backoff, MAX_BACKOFF)
        payout.failure_detail = str(outcome.detail.get("error") or "") or None
        payout.updated_at = now
        await session.flush()
        return
    payout.lease_until = None
    payout.updated_at = now
    payout.resolved_at = now
    await enqueue(session, event, _event_object(payout))
    await session.flush()
    log.info(event, payout_id=payout.id, agent_id=agent, rail=payout.rail, asset=asset)


async def reconcile_payout(
    session: AsyncSession,
    payout_id: str,
    *,
    settings: SettlementSettings,
    clients: RailClients | None,
) -> str:
    """Resolve one pending payout from the rail's own records (the reconciler; the caller
    claimed it and commits after). Returns the payout's status afterwards."""
    payout = await PayoutRepository.from_session(session).get_by_id(payout_id)
    if payout is None or payout.status != PayoutStatus.PENDING.value:
        return payout.status if payout is not None else "missing"
    snapshot = rail_payout(payout)
    key = payout.idempotency_key
    await session.commit()  # no transaction open while the rail is asked
    rail = get_rail(payout.rail, settings=settings, session=session, clients=clients)
    if not isinstance(rail, PayoutRail):  # pragma: no cover - recorded only for payout rails
        raise RuntimeError(f"payout {payout_id} is on {payout.rail}, which has no payouts")
    try:
        outcome = await asyncio.wait_for(
            rail.payout_status(snapshot, idempotency_key=key), settings.rail_call_timeout_s
        )
    except RailError as exc:
        outcome = RailResult(
            step=_PAYOUT,
            status=RailOpStatus.PENDING if exc.retryable else RailOpStatus.FAILED,
            detail={"code": exc.code, "error": exc.detail},
        )
    if outcome.status is RailOpStatus.NOT_FOUND:  # the call never reached the rail: make it
        outcome = await _call(rail, snapshot, settings)
    locked = await PayoutRepository.from_session(session).get_for_update(payout_id)
    assert locked is not None
    if locked.status == PayoutStatus.PENDING.value:
        await resolve_payout(session, locked, outcome, settings=settings)
    return locked.status
