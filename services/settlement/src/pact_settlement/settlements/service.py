"""Settlement business rules: create (verify → record → lock), read, list.

Create, in one transaction owned by the request:

1. fingerprint the body; take named locks on the Idempotency-Key and the intent id;
2. an identical earlier request (same key, or same intent id with the same body) → replay it,
   *before* any time check, so a replay works after the quote expired;
3. re-verify the ACCEPT and the carried ASK (:mod:`.verification`);
4. a different request for an existing intent id → 409;
5. insert the settlement (``pending``) with its first event, the transcripts and the
   idempotency record; record the rail ``lock`` operation as pending;
6. lock through the two-phase rail-step executor (:mod:`.rail_steps`): on the ledger, inside a
   SAVEPOINT of this transaction (a refusal moves nothing); on an external rail, the pending
   settlement and operation are committed first and the rail is called outside any
   transaction. Success → ``locked``; refusal → ``failed`` with the refusal recorded and
   committed (the same request replays the same refusal); unknown outcome → 202, ``pending``
   until the reconciler resolves it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

import structlog
from pact_schema import FailureCode
from pact_schema.keys import KeyFormatError, check_public_key
from pact_schema.text import is_intent_id
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.accounts.repository import PaymentProfileRepository
from pact_settlement.config import SettlementSettings
from pact_settlement.db.locks import lock_names
from pact_settlement.idempotency.service import MAX_KEY_LENGTH, IdempotencyService, fingerprint
from pact_settlement.kit.errors import (
    BadRequestError,
    ConflictError,
    ProblemCode,
    SettlementError,
    UnprocessableError,
)
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.repository import batched_writes
from pact_settlement.kit.time import from_ms
from pact_settlement.rails.base import (
    PartialReleaseRail,
    PreparingRail,
    RailRefusedError,
    RailStep,
)
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.evm.permit import Erc20Permit
from pact_settlement.rails.registry import UnknownRailError, get_rail
from pact_settlement.rails.repository import RailOperationRepository
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.funding import fund_with_permit
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.models import Settlement, SettlementEvent
from pact_settlement.settlements.rail_steps import (
    PlannedTransition,
    RailStepExecutor,
    StepPlan,
    StepStatus,
    TransitionApplier,
    rail_view,
)
from pact_settlement.settlements.repository import (
    SettlementEventRepository,
    SettlementRepository,
    decode_cursor,
    encode_cursor,
)
from pact_settlement.settlements.schemas import SettlementPage, SettlementRead
from pact_settlement.settlements.state_machine import SettlementEventType, SettlementState
from pact_settlement.settlements.verification import (
    STREAMING_REFUSAL,
    AcceptRefusedError,
    VerifiedAccept,
    VerifyPolicy,
    is_streaming,
    verify_accept,
)
from pact_settlement.transcripts.models import Transcript
from pact_settlement.transcripts.repository import TranscriptRepository

__all__ = ["CreateResult", "EscrowRefusedError", "SettlementService", "complete_create_record"]

CREATE_SCOPE = "settlements.create"
log = structlog.get_logger(__name__)


def _is_public_key(value: object) -> TypeGuard[str]:
    if not isinstance(value, str):
        return False
    try:
        check_public_key(value)
    except KeyFormatError:
        return False
    return True


class EscrowRefusedError(SettlementError):
    """The rail definitively refused to hold the funds (402); the settlement is ``failed``.

    Also for declines that are not about funds: the outcome is final and replays give the same
    answer, so it must not look like a transient 5xx that callers would retry.
    """

    status = 402
    title = "Escrow could not be locked"
    default_code = FailureCode.INSUFFICIENT_ESCROW


@dataclass(frozen=True, slots=True)
class CreateResult:
    settlement: SettlementRead
    created: bool
    in_flight: bool = False  # the rail lock's outcome is not known yet (202)


class SettlementService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        now_ms: Callable[[], int],
        applier: TransitionApplier | None = None,
        clients: RailClients | None = None,
    ) -> None:
        self.session = session
        self.clients = clients  # the app's gateways, for the stripe and evm rails
        self.applier = applier or TransitionApplier(metrics)
        self.settings = settings
        self.metrics = metrics
        self.now_ms = now_ms
        self.settlements = SettlementRepository.from_session(session)
        self.events = SettlementEventRepository.from_session(session)
        self.transcripts = TranscriptRepository.from_session(session)
        self.rail_ops = RailOperationRepository.from_session(session)
        self.idempotency = IdempotencyService(session)

    # ------------------------------------------------------------------ reads

    async def read(self, settlement: Settlement) -> SettlementRead:
        return SettlementRead.of(settlement, await self.events.for_settlement(settlement.id))

    async def get(self, ref: str, *, buyer: str | None = None) -> SettlementRead:
        """The settlement ``ref`` names: a settlement id, or an intent id (see
        :mod:`.lookup`), narrowed by ``buyer`` when several buyers used that intent id."""
        return await self.read(await find_settlement(self.settlements, ref, buyer=buyer))

    async def list(
        self,
        *,
        state: SettlementState | None,
        buyer: str | None,
        seller: str | None,
        rail: str | None,
        limit: int,
        cursor: str | None,
    ) -> SettlementPage:
        position = None
        if cursor:
            try:
                position = decode_cursor(cursor)
            except (ValueError, TypeError) as exc:
                raise BadRequestError("cursor is not valid", code=ProblemCode.BAD_REQUEST) from exc
        rows = await self.settlements.list(
            state=state.value if state else None,
            buyer=buyer,
            seller=seller,
            rail=rail,
            limit=limit + 1,
            cursor=position,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        events = await self.events.for_settlements([r.id for r in rows])
        items = [SettlementRead.of(r, events[r.id]) for r in rows]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return SettlementPage(items=items, next_cursor=next_cursor)

    # ----------------------------------------------------------------- create

    def _policy(self) -> VerifyPolicy:
        s = self.settings
        return VerifyPolicy(
            trusted_provider_keys=frozenset(s.provider_keys),
            grace_ms=s.max_clock_skew_ms,
            max_delivery_window_ms=s.max_delivery_window_ms,
            max_challenge_window_ms=s.max_challenge_window_ms,
        )

    async def create(
        self,
        *,
        accept: dict[str, Any],
        rail: str | None,
        idempotency_key: str,
        actor: str,
        request_id: str | None = None,
        provider_quote: dict[str, Any] | None = None,
        permit: Erc20Permit | None = None,
    ) -> CreateResult:
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise BadRequestError(
                f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required"
            )
        request_fp = fingerprint({"accept": accept, "rail": rail})
        # Unverified hints, good enough to serialise and look up: the real buyer and intent
        # id are checked by verify_accept before anything is written.
        message = accept.get("message")
        raw_intent = message.get("intent_id") if isinstance(message, dict) else None
        raw_buyer = accept.get("signer_public_key_b58")
        # Only a valid intent id and buyer key name a lock or a row; anything else is refused
        # by the verification below before the database sees it.
        hint: tuple[str, str] | None = None
        if is_intent_id(raw_intent) and _is_public_key(raw_buyer):
            hint = (raw_buyer, raw_intent)

        await lock_names(
            self.session,
            f"idem:{CREATE_SCOPE}:{idempotency_key}",
            *([f"intent:{hint[0]}:{hint[1]}"] if hint else []),
        )
        replay, existing = await self._replay(idempotency_key, request_fp, hint)
        if replay is not None:
            self.metrics.settlements.labels("replayed", replay.rail).inc()
            # As a first answer would: 202 while the lock is still in flight.
            pending = replay.state == SettlementState.PENDING
            return CreateResult(await self.read(replay), created=False, in_flight=pending)

        rail_name = rail or self.settings.default_rail
        rail_label = rail_name if rail_name in self.settings.enabled_rails else "other"
        try:
            verified = verify_accept(
                accept,
                policy=self._policy(),
                now_ms=self.now_ms(),
                provider_quote=provider_quote,
            )
        except AcceptRefusedError as exc:
            self.metrics.settlements.labels("refused", rail_label).inc()
            log.info(
                "settlement.refused",
                code=exc.code,
                detail=exc.detail,
                intent_id=hint[1] if hint else None,
            )
            raise UnprocessableError(exc.detail, code=exc.code) from exc
        try:
            rail_impl = get_rail(
                rail_name, settings=self.settings, session=self.session, clients=self.clients
            )
        except UnknownRailError as exc:
            raise UnprocessableError(
                f"rail {rail_name!r} is not available (enabled: "
                f"{', '.join(self.settings.enabled_rails)})",
                code=ProblemCode.RAIL_NOT_AVAILABLE,
            ) from exc
        streaming = is_streaming(verified.accept)
        if streaming and not isinstance(rail_impl, PartialReleaseRail):
            self.metrics.settlements.labels("refused", rail_label).inc()
            raise UnprocessableError(
                STREAMING_REFUSAL.format(rail=rail_name),
                code=FailureCode.SETTLEMENT_MODE_NOT_ALLOWED,
            )
        if hint != (verified.buyer, verified.accept.intent_id):
            existing = await self.settlements.get_by_buyer_intent(
                verified.buyer, verified.accept.intent_id
            )
        if existing is not None:
            raise ConflictError(
                f"this buyer already has a settlement for intent_id {existing.intent_id!r}, "
                "made by a different request",
                code=ProblemCode.DUPLICATE_INTENT,
                extra={"settlement_id": existing.id},
            )

        settlement = self._build(
            verified,
            rail_name,
            rail_impl.asset,
            request_fp,
            # A stream has no fault to slash for: the buyer pays what it signed for, no more.
            hold_bond=self.settings.require_seller_bond
            and rail_impl.supports_bond
            and not streaming,
        )
        created = {
            "amount": decimal_text(verified.amount),
            "bond": decimal_text(verified.bond),
            "rail": rail_name,
            "asset": rail_impl.asset,
        }
        plan = StepPlan(
            step=RailStep.LOCK,
            on_succeeded=PlannedTransition(
                SettlementEventType.STREAM_OPENED if streaming else SettlementEventType.LOCKED
            ),
            on_failed=PlannedTransition(SettlementEventType.LOCK_FAILED),
            actor=actor,
            request_id=request_id,
            request_key=idempotency_key,  # completed by the reconciler if in flight
        )
        executor = RailStepExecutor(
            self.session,
            settings=self.settings,
            metrics=self.metrics,
            applier=self.applier,
            rail=rail_impl,
        )
        if not isinstance(rail_impl, PreparingRail):
            # The ledger: settlement, lock and answer written at once, in their final state,
            # as one statement (batched_writes) after the checks and reads.
            view: SettlementRead | None = None
            with _duplicate_intent(verified):
                async with batched_writes(self.session):
                    done = await executor.run_on_new(settlement, plan, created=created)
                    if done is not None:
                        view = await self._answer_at_once(
                            settlement, done[1], verified, idempotency_key, request_fp
                        )
            if done is not None:
                executor.count_new(settlement, plan, done[0])
            if view is not None:
                self.metrics.settlements.labels("created", settlement.rail).inc()
                log.info(
                    "settlement.locked",
                    intent_id=settlement.intent_id,
                    settlement_id=settlement.id,
                    rail=settlement.rail,
                    amount=decimal_text(settlement.amount),
                    bond_locked=decimal_text(settlement.bond_locked),
                )
                return CreateResult(view, created=True)
        await self._record(settlement, verified, created, actor, request_id)
        if isinstance(rail_impl, PreparingRail):
            # In the recording transaction, before anything is committed or sent: a refusal
            # leaves nothing behind (the request's transaction rolls back).
            try:
                profiles = await PaymentProfileRepository.from_session(self.session).rail_profiles(
                    rail_name, buyer=settlement.buyer, seller=settlement.seller
                )
                await rail_impl.prepare(rail_view(settlement), profiles)
            except RailRefusedError as exc:
                self.metrics.settlements.labels("refused", rail_label).inc()
                raise UnprocessableError(exc.detail, code=exc.code) from exc
        if permit is not None:  # a buyer-funded lock; refused before anything is committed
            await fund_with_permit(rail_impl, rail_view(settlement), permit)
        idem_row = await self.idempotency.record(
            CREATE_SCOPE, idempotency_key, request_fp, settlement.id, flush=False
        )
        outcome = await executor.run(settlement, plan, new_settlement=True)
        if outcome.status is StepStatus.FAILED:
            self.metrics.settlements.labels("failed", rail_name).inc()
            error = self._failure_error(settlement, persist=True)
            await self.idempotency.complete(idem_row, error.status, error.to_problem())
            log.warning(
                "settlement.lock_failed",
                intent_id=settlement.intent_id,
                rail=rail_name,
                amount=decimal_text(settlement.amount),
                code=settlement.failure_code,
            )
            raise error
        view = await self.read(settlement)
        if outcome.status is StepStatus.IN_FLIGHT:
            # The lock was sent (or may have been) but its outcome is not known yet: 202, the
            # settlement stays ``pending`` until this request's retry or the reconciler
            # resolves it. A replay returns the settlement as it is then.
            self.metrics.settlements.labels("pending", rail_name).inc()
            log.info(
                "settlement.lock_in_flight",
                intent_id=settlement.intent_id,
                settlement_id=settlement.id,
                rail=rail_name,
            )
            return CreateResult(view, created=True, in_flight=True)
        self.metrics.settlements.labels("created", rail_name).inc()
        await self.idempotency.complete(idem_row, 201, view.model_dump(mode="json"))
        log.info(
            "settlement.locked",
            intent_id=settlement.intent_id,
            settlement_id=settlement.id,
            rail=rail_name,
            amount=decimal_text(settlement.amount),
            bond_locked=decimal_text(settlement.bond_locked),
        )
        return CreateResult(view, created=True)

    async def _replay(
        self, idempotency_key: str, request_fp: str, hint: tuple[str, str] | None
    ) -> tuple[Settlement | None, Settlement | None]:
        """``(replay, existing)``: the settlement an identical earlier request made (answer it
        again), else the settlement the same buyer already has for the intent id, made by a
        different request (a 409 once the new request is verified), else ``(None, None)``."""
        by_intent: Settlement | None = None
        if hint is None:
            row = await self.idempotency.lookup(CREATE_SCOPE, idempotency_key, request_fp)
        else:  # both lookups in one round trip
            row, by_intent = await self.settlements.request_and_intent(
                CREATE_SCOPE, idempotency_key, *hint
            )
            IdempotencyService.check(row, request_fp)
        settlement: Settlement | None = None
        existing: Settlement | None = None
        if row is not None and row.resource_id is not None:
            settlement = (
                by_intent
                if by_intent is not None and by_intent.id == row.resource_id
                else await self.settlements.get_by_id(row.resource_id)
            )
        elif by_intent is not None:
            existing = by_intent
            if existing.request_fingerprint == request_fp:
                settlement, existing = existing, None
        if settlement is None:
            return None, existing
        if settlement.state == SettlementState.FAILED:
            raise self._failure_error(settlement, persist=False)
        return settlement, None

    @staticmethod
    def _failure_error(settlement: Settlement, *, persist: bool) -> SettlementError:
        code = settlement.failure_code or FailureCode.FAILED_ESCROW
        detail = settlement.failure_detail or "the escrow lock failed"
        extra = {
            "settlement_id": settlement.id,
            "intent_id": settlement.intent_id,
            "state": "failed",
        }
        return EscrowRefusedError(detail, code=code, extra=extra, persist=persist)

    async def _answer_at_once(
        self,
        settlement: Settlement,
        events: builtins.list[SettlementEvent],
        verified: VerifiedAccept,
        idempotency_key: str,
        request_fp: str,
    ) -> SettlementRead:
        """The rest of a create whose lock was made with the settlement
        (:meth:`RailStepExecutor.run_on_new`): the transcripts, and the idempotency record
        written once with its 201 answer."""
        await self.transcripts.insert_now(self._transcripts(settlement, verified))
        view = SettlementRead.of(settlement, events)
        await self.idempotency.record_answered(
            CREATE_SCOPE,
            idempotency_key,
            request_fp,
            settlement.id,
            201,
            view.model_dump(mode="json"),
        )
        return view

    def _transcripts(
        self, settlement: Settlement, verified: VerifiedAccept
    ) -> builtins.list[Transcript]:
        """The ACCEPT and the ASK it carries, as transcript entries."""
        return [
            self.transcripts.entry(
                settlement_id=settlement.id,
                kind="ACCEPT",
                envelope=verified.envelope.raw,
                message_hash_hex=verified.envelope.envelope.message_hash_hex,
                signer=verified.buyer,
            ),
            self.transcripts.entry(
                settlement_id=settlement.id,
                kind="ASK",
                envelope=verified.terms.envelope,
                message_hash_hex=str(verified.terms.envelope["message_hash_hex"]),
                signer=verified.seller,
            ),
        ]

    def _build(
        self,
        verified: VerifiedAccept,
        rail_name: str,
        asset: str,
        request_fp: str,
        *,
        hold_bond: bool,
    ) -> Settlement:
        """The settlement the verified ACCEPT makes, not written yet; the quote's bond is
        held when ``hold_bond`` (the setting asks for it and the rail can hold one)."""
        accept = verified.accept
        bond_locked = verified.bond if hold_bond else Decimal(0)
        return Settlement(
            id=new_id("st"),
            intent_id=accept.intent_id,
            rail=rail_name,
            asset=asset,
            amount=verified.amount,
            bond=verified.bond,
            bond_locked=bond_locked,
            buyer=verified.buyer,
            seller=verified.seller,
            settlement_mode=accept.settlement_mode,
            proof_type=accept.proof_type,
            challenge_window_ms=accept.challenge_window_ms,
            delivery_deadline_ms=accept.delivery_deadline_ms,
            delivery_deadline_at=from_ms(accept.delivery_deadline_ms),
            quote_expires_at=from_ms(verified.terms.ask.expires_at_ms),
            # A stream has no COMMIT: it runs until it is closed or its delivery deadline.
            commit_by_at=None
            if is_streaming(accept)
            else from_ms(
                min(
                    accept.delivery_deadline_ms,
                    verified.terms.ask.expires_at_ms + self.settings.commit_grace_ms,
                )
            ),
            accept_hash=verified.envelope.envelope.message_hash_hex.lower(),
            request_fingerprint=request_fp,
        )

    async def _record(
        self,
        settlement: Settlement,
        verified: VerifiedAccept,
        created: dict[str, Any],
        actor: str,
        request_id: str | None,
    ) -> None:
        """Record the settlement ``pending`` with its transcripts (the general path: the lock
        is made afterwards by the rail-step executor)."""
        # No SAVEPOINT: on a unique violation the whole request rolls back (the 409 below is
        # not persisted), so there is nothing to keep.
        with _duplicate_intent(verified):
            await state_machine.start(
                self.session, settlement, actor=actor, request_id=request_id, data=created
            )
        for row in self._transcripts(settlement, verified):
            # flushed with the idempotency record and the rail operation, before the rail call
            self.session.add(row)


#: How the databases name a violation of ``uq_settlements_buyer_intent_id`` (Postgres names
#: the constraint, SQLite its columns).
_DUPLICATE_INTENT_MARKS = (
    "uq_settlements_buyer_intent_id",
    "settlements.buyer, settlements.intent_id",
)


@contextmanager
def _duplicate_intent(verified: VerifiedAccept) -> Iterator[None]:
    """A unique violation of (buyer, intent id) on the settlement's insert: a concurrent
    writer won despite the named lock (409). Any other integrity error in the create's writes
    (the double-entry check, an asset mismatch) is a defect, never a buyer's duplicate, and
    is not disguised as one."""
    try:
        yield
    except IntegrityError as exc:
        if not any(mark in str(exc.orig) for mark in _DUPLICATE_INTENT_MARKS):
            raise
        raise ConflictError(
            f"this buyer already has a settlement for intent_id {verified.accept.intent_id!r}",
            code=ProblemCode.DUPLICATE_INTENT,
        ) from exc


async def complete_create_record(
    session: AsyncSession, settlement: Settlement, idempotency_key: str
) -> None:
    """The create answered 202 while its lock was in flight; the lock is now resolved (by the
    reconciler or a webhook): its idempotency record gets the answer a first request would
    have had — 201 with the settlement, or the refusal's problem document."""
    idempotency = IdempotencyService(session)
    row = await idempotency.incomplete(CREATE_SCOPE, idempotency_key)
    if row is None or row.resource_id != settlement.id:
        return
    if settlement.state == SettlementState.PENDING:
        return
    if settlement.state == SettlementState.FAILED:
        error = SettlementService._failure_error(settlement, persist=False)
        await idempotency.complete(row, error.status, error.to_problem())
        return
    events = await SettlementEventRepository.from_session(session).for_settlement(settlement.id)
    view = SettlementRead.of(settlement, events)
    await idempotency.complete(row, 201, view.model_dump(mode="json"))
