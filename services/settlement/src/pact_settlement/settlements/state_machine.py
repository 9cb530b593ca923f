"""The settlement state machine: the ONLY code that changes ``settlements.state``.

One table of allowed transitions and one :func:`transition`, which issues
``UPDATE settlements SET state = :to … WHERE id = :id AND state = :from`` and appends a
``settlement_events`` row in the same transaction. "No row changed" means another writer moved
the settlement first: :class:`TransitionConflict` (HTTP 409). An event that the table does not
allow from the current state raises :class:`InvalidTransition` (409) and changes nothing.

::

    pending ─lock─▶ locked ─COMMIT─▶ committed ─REVEAL ok─▶ delivered ─window closed─▶ released
       │              │                 │                        │
       └─refused─▶ failed               │                        │
                      ├── fault ────────┴──────── refund ─▶ refunded ◀─┤  (no bond held)
                      └── fault ────────┴──────── slash ──▶ slashed  ◀─┘  (bond held)

A streaming settlement (docs/protocol.md, "Streaming") has its own path::

    pending ─lock─▶ streaming ─close (highest voucher > 0)─▶ released   (part paid, rest refunded)
                        └───── close (no voucher, or 0) ─────▶ refunded

While ``streaming``, :func:`checkpoint` records the buyer's highest voucher (no state change;
a lower or equal one changes nothing), and the close releases exactly that voucher's amount.

Faults are objective only: a missed delivery deadline, an invalid proof (hash mismatch), an
upheld challenge (FAILED_PROOF, DELIVERY_DEADLINE_MISSED, LATENCY_BREACH).

Terminal: released, refunded, slashed, failed. Every settlement ends in exactly one.
:func:`note` appends an event that changes no state (e.g. a rejected challenge).

Every state change (:func:`start`, :func:`transition`) also puts an outbound webhook event in
the outbox, in the same transaction (``outbound_webhooks/outbox.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from pact_settlement.kit.errors import ConflictError, ProblemCode
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.time import session_now
from pact_settlement.outbound_webhooks import outbox
from pact_settlement.settlements.models import Settlement, SettlementEvent
from pact_settlement.settlements.repository import (
    SettlementEventRepository,
    SettlementRepository,
)

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "InvalidTransitionError",
    "SettlementEventType",
    "SettlementState",
    "TransitionConflictError",
    "allowed_events",
    "check",
    "checkpoint",
    "note",
    "start",
    "start_resolved",
    "target_of",
    "transition",
]


class SettlementState(StrEnum):
    PENDING = "pending"  # recorded; the rail lock is being made
    LOCKED = "locked"  # buyer funds (and seller bond) held
    COMMITTED = "committed"  # the seller's COMMIT (sha256 of payload_b64 + nonce_b64) is recorded
    DELIVERED = "delivered"  # valid proof received; challenge window running
    RELEASED = "released"  # paid to the seller; bond returned
    REFUNDED = "refunded"  # returned to the buyer; bond returned to the seller
    SLASHED = "slashed"  # returned to the buyer; seller bond paid to the buyer
    FAILED = "failed"  # the lock never happened (insufficient escrow, rail refusal)
    STREAMING = "streaming"  # the budget is locked; vouchers are checkpointed until the close


class SettlementEventType(StrEnum):
    CREATED = "settlement.created"
    LOCKED = "settlement.locked"
    LOCK_FAILED = "settlement.lock_failed"
    COMMITTED = "settlement.committed"
    DELIVERED = "settlement.delivered"
    RELEASED = "settlement.released"
    REFUNDED = "settlement.refunded"
    SLASHED = "settlement.slashed"
    STREAM_OPENED = "settlement.stream_opened"
    STREAM_CHECKPOINT = "settlement.stream_checkpoint"
    STREAM_CLOSED = "settlement.stream_closed"


S, E = SettlementState, SettlementEventType

TRANSITIONS: Mapping[tuple[SettlementState, SettlementEventType], SettlementState] = {
    (S.PENDING, E.LOCKED): S.LOCKED,
    (S.PENDING, E.LOCK_FAILED): S.FAILED,
    (S.LOCKED, E.COMMITTED): S.COMMITTED,
    (S.LOCKED, E.REFUNDED): S.REFUNDED,
    (S.LOCKED, E.SLASHED): S.SLASHED,
    (S.COMMITTED, E.DELIVERED): S.DELIVERED,
    (S.COMMITTED, E.REFUNDED): S.REFUNDED,
    (S.COMMITTED, E.SLASHED): S.SLASHED,
    (S.DELIVERED, E.RELEASED): S.RELEASED,
    (S.DELIVERED, E.REFUNDED): S.REFUNDED,
    (S.DELIVERED, E.SLASHED): S.SLASHED,
    (S.PENDING, E.STREAM_OPENED): S.STREAMING,
    (S.STREAMING, E.STREAM_CLOSED): S.RELEASED,
    (S.STREAMING, E.REFUNDED): S.REFUNDED,
}

TERMINAL_STATES = frozenset({S.RELEASED, S.REFUNDED, S.SLASHED, S.FAILED})

#: Columns a transition may set together with the state (everything else is immutable here).
_TRANSITION_COLUMNS = frozenset(
    {
        "failure_code",
        "failure_detail",
        "locked_at",
        "commit_hash_hex",
        "committed_at",
        "reveal_hash_hex",
        "delivered_at",
        "challenge_ends_at",
        "receipt_json",
        "stream_chunks",
        "stream_stop_code",
        "stream_stop_reason",
    }
)


class InvalidTransitionError(ConflictError):
    default_code = ProblemCode.STATE_CONFLICT


class TransitionConflictError(ConflictError):
    """Another transaction changed the settlement's state first (a lost race)."""

    default_code = ProblemCode.STATE_CONFLICT


def allowed_events(state: SettlementState) -> list[SettlementEventType]:
    return [event for (origin, event) in TRANSITIONS if origin is state]


def target_of(settlement: Settlement, event: SettlementEventType) -> SettlementState:
    """The state ``event`` would move ``settlement`` to, or :class:`InvalidTransition`."""
    current = SettlementState(settlement.state)
    target = TRANSITIONS.get((current, event))
    if target is None:
        raise InvalidTransitionError(
            f"settlement {settlement.intent_id} is {current}; {event} is not allowed "
            f"(allowed: {', '.join(allowed_events(current)) or 'none, it is final'})",
            extra={"state": current.value},
        )
    return target


def check(settlement: Settlement, event: SettlementEventType) -> bool:
    """Whether the table allows ``event`` from the settlement's current state."""
    return (SettlementState(settlement.state), event) in TRANSITIONS


async def start(
    session: AsyncSession,
    settlement: Settlement,
    *,
    actor: str,
    request_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> SettlementEvent:
    """Insert a new settlement in its initial state, with its first event."""
    now = session_now(session)
    settlement.state = S.PENDING.value
    settlement.created_at = now
    settlement.updated_at = now
    await SettlementRepository.from_session(session).add(settlement, flush=False)
    event = SettlementEvent(
        settlement_id=settlement.id,
        seq=1,
        event=E.CREATED.value,
        from_state=None,
        to_state=S.PENDING.value,
        actor=actor,
        data=data or {},
        request_id=request_id,
        created_at=now,
    )
    await _publish(session, settlement, E.CREATED, None)
    return await SettlementEventRepository.from_session(session).add(event)


async def start_resolved(
    session: AsyncSession,
    settlement: Settlement,
    event: SettlementEventType,
    *,
    actor: str,
    request_id: str | None = None,
    data: dict[str, Any] | None = None,
    reason: str | None = None,
    event_data: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> list[SettlementEvent]:
    """:func:`start` and :func:`transition` along ``event`` in one write, for a settlement
    whose first transition happens in the transaction that records it (a lock made inside
    it): the row is inserted directly in the state ``event`` leads to from ``pending``, with
    both events (``settlement.created``, then ``event``) and both outbox entries. The
    ``pending`` row would never be visible outside the transaction, so it is never written;
    what commits is exactly what :func:`start` then :func:`transition` would have left.
    ``settlement`` is not added to the session (Core INSERTs, no unit of work)."""
    target = TRANSITIONS.get((S.PENDING, event))
    if target is None:
        raise InvalidTransitionError(
            f"a new settlement cannot start with {event}",
            extra={"state": S.PENDING.value},
        )
    values = dict(values or {})
    unknown = set(values) - _TRANSITION_COLUMNS
    if unknown:
        raise ValueError(f"a transition cannot set {sorted(unknown)}")
    now = session_now(session)
    settlement.state = target.value
    settlement.created_at = now
    settlement.updated_at = now
    for key, value in values.items():
        setattr(settlement, key, value)
    if target in TERMINAL_STATES:
        settlement.closed_at = now
    base = {"settlement_id": settlement.id, "actor": actor, "request_id": request_id}
    events = [
        SettlementEvent(
            **base,
            seq=1,
            event=E.CREATED.value,
            from_state=None,
            to_state=S.PENDING.value,
            reason=None,
            data=data or {},
            created_at=now,
        ),
        SettlementEvent(
            **base,
            seq=2,
            event=event.value,
            from_state=S.PENDING.value,
            to_state=target.value,
            reason=reason,
            data=event_data or {},
            created_at=now,
        ),
    ]
    await SettlementRepository.from_session(session).insert_now(settlement)
    await SettlementEventRepository.from_session(session).insert_now(events)
    await outbox.enqueue_many(
        session,
        [
            (E.CREATED.value, _payload(settlement, S.PENDING, None, failure_code=None)),
            (event.value, _payload(settlement, target, S.PENDING)),
        ],
    )
    return events


async def transition(
    session: AsyncSession,
    settlement: Settlement,
    event: SettlementEventType,
    *,
    actor: str,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> SettlementEvent:
    """Move ``settlement`` along ``event`` atomically, or raise a typed 409."""
    current = SettlementState(settlement.state)
    target = target_of(settlement, event)
    values = dict(values or {})
    unknown = set(values) - _TRANSITION_COLUMNS
    if unknown:
        raise ValueError(f"a transition cannot set {sorted(unknown)}")
    now = session_now(session)
    values["updated_at"] = now
    if target in TERMINAL_STATES:
        values["closed_at"] = now
    repo = SettlementRepository.from_session(session)
    if not await repo.compare_and_set_state(settlement.id, current.value, target.value, values):
        raise TransitionConflictError(
            f"settlement {settlement.intent_id} changed state concurrently; re-read and retry",
            extra={"state": current.value},
        )
    set_committed_value(settlement, "state", target.value)
    for key, value in values.items():
        set_committed_value(settlement, key, value)
    await _publish(session, settlement, event, current)
    return await SettlementEventRepository.from_session(session).append(
        settlement.id,
        event=event.value,
        from_state=current.value,
        to_state=target.value,
        actor=actor,
        reason=reason,
        data=data or {},
        request_id=request_id,
        created_at=now,
    )


async def checkpoint(
    session: AsyncSession,
    settlement: Settlement,
    *,
    paid_amount: Decimal,
    ticks: int,
    voucher_seq: int,
    voucher_hash_hex: str,
    actor: str,
    request_id: str | None = None,
) -> bool:
    """Record a higher voucher on a ``streaming`` settlement (the caller holds its row lock
    and has verified the voucher). ``False``, and nothing written, when the settlement is not
    streaming or the recorded voucher is already as high: vouchers only ever go up."""
    if SettlementState(settlement.state) is not S.STREAMING:
        return False
    recorded = settlement.stream_paid_amount
    if recorded is not None and paid_amount <= recorded:
        return False
    values = {
        "stream_paid_amount": paid_amount,
        "stream_ticks": ticks,
        "stream_voucher_seq": voucher_seq,
        "stream_voucher_hash": voucher_hash_hex,
        "stream_checkpoints": (settlement.stream_checkpoints or 0) + 1,
        "updated_at": session_now(session),
    }
    repo = SettlementRepository.from_session(session)
    if not await repo.raise_checkpoint(settlement.id, recorded, values):
        raise TransitionConflictError(
            f"settlement {settlement.intent_id} changed concurrently; re-read and retry",
            extra={"state": settlement.state},
        )
    for key, value in values.items():
        set_committed_value(settlement, key, value)
    await note(
        session,
        settlement,
        E.STREAM_CHECKPOINT.value,
        actor=actor,
        data={
            "paid_amount": decimal_text(paid_amount),
            "ticks": ticks,
            "voucher_seq": voucher_seq,
            "voucher_hash": voucher_hash_hex,
        },
        request_id=request_id,
    )
    return True


async def note(
    session: AsyncSession,
    settlement: Settlement,
    event: str,
    *,
    actor: str,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> SettlementEvent:
    """Append an event that changes no state (``from_state = to_state``), e.g. a rejected
    challenge. The caller holds the settlement's row lock, as for :func:`transition`."""
    return await SettlementEventRepository.from_session(session).append(
        settlement.id,
        event=event,
        from_state=settlement.state,
        to_state=settlement.state,
        actor=actor,
        reason=reason,
        data=data or {},
        request_id=request_id,
        created_at=session_now(session),
    )


async def _publish(
    session: AsyncSession,
    settlement: Settlement,
    event: SettlementEventType,
    previous: SettlementState | None,
) -> None:
    await outbox.enqueue(
        session, event.value, _payload(settlement, SettlementState(settlement.state), previous)
    )


_UNSET: Any = object()


def _payload(
    settlement: Settlement,
    state: SettlementState,
    previous: SettlementState | None,
    *,
    failure_code: str | None = _UNSET,
) -> dict[str, Any]:
    """The outbound webhook's settlement object, as of the change to ``state``."""
    return {
        "object": "settlement",
        "id": settlement.id,
        "intent_id": settlement.intent_id,
        "state": state.value,
        "previous_state": previous.value if previous is not None else None,
        "rail": settlement.rail,
        "amount": decimal_text(settlement.amount),
        "buyer": settlement.buyer,
        "seller": settlement.seller,
        "failure_code": settlement.failure_code if failure_code is _UNSET else failure_code,
    }
