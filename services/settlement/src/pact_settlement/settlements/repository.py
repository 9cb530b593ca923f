"""Settlement queries. The only UPDATE of ``state`` is :meth:`compare_and_set_state`, used
exclusively by :mod:`pact_settlement.settlements.state_machine`."""

from __future__ import annotations

import base64
import functools
import json
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, literal, or_, select, tuple_, update

from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.kit.ids import is_our_id
from pact_settlement.kit.repository import (
    RepositoryBase,
    insert_columns,
    insert_params,
    insert_rows,
)
from pact_settlement.rails.models import RailOperation
from pact_settlement.settlements.models import Settlement, SettlementEvent

__all__ = ["SettlementEventRepository", "SettlementRepository", "decode_cursor", "encode_cursor"]


def encode_cursor(created_at: datetime, id_: str) -> str:
    raw = json.dumps([created_at.isoformat(), id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position of an :func:`encode_cursor` cursor; ValueError for anything else (a cursor
    comes from the client: its id must be one of ours and its time aware before either
    reaches a query — a NUL or a naive time there was a 500)."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created, id_ = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(created, str) or not is_our_id(id_):
        raise ValueError("bad cursor")
    position = datetime.fromisoformat(created)
    if position.tzinfo is None:
        raise ValueError("bad cursor")
    return position, id_


# The hot lookups are built once, with bound parameters: constructing a statement costs more
# Python than executing a cached one.
_BY_BUYER_INTENT = select(Settlement).where(
    Settlement.buyer == bindparam("buyer"), Settlement.intent_id == bindparam("intent_id")
)
_BY_ID = select(Settlement).where(Settlement.id == bindparam("settlement_id"))
_BY_ID_FOR_UPDATE = _BY_ID.with_for_update().execution_options(populate_existing=True)
# A create's two lookups in one round trip: the record of its Idempotency-Key and the buyer's
# settlement for its intent id (each unique, so one row, NULLs where there is none).
_ONE = select(literal(1).label("one")).subquery("one")
_REQUEST_AND_INTENT = (
    select(IdempotencyKey, Settlement)
    .select_from(_ONE)
    .outerjoin(
        IdempotencyKey,
        and_(IdempotencyKey.scope == bindparam("scope"), IdempotencyKey.key == bindparam("key")),
    )
    .outerjoin(
        Settlement,
        and_(
            Settlement.buyer == bindparam("buyer"), Settlement.intent_id == bindparam("intent_id")
        ),
    )
)
_EVENTS_OF = (
    select(SettlementEvent)
    .where(SettlementEvent.settlement_id == bindparam("settlement_id"))
    .order_by(SettlementEvent.seq)
)


@functools.cache
def _state_update(columns: frozenset[str]) -> Any:
    """The compare-and-set UPDATE for one set of extra columns (a transition sets a few
    known combinations, so this stays small)."""
    return (
        update(Settlement)
        .where(
            Settlement.id == bindparam("settlement_id"),
            Settlement.state == bindparam("from_state"),
        )
        .values(state=bindparam("to_state"), **{c: bindparam(f"v_{c}") for c in sorted(columns)})
        .execution_options(synchronize_session=False)
    )


_EVENT_COLUMNS = (
    "event",
    "from_state",
    "to_state",
    "actor",
    "reason",
    "data",
    "request_id",
    "created_at",
)
_APPEND_EVENT = (
    insert(SettlementEvent)
    .values(
        settlement_id=bindparam("p_settlement_id"),
        seq=select(func.coalesce(func.max(SettlementEvent.seq), 0) + 1)
        .where(SettlementEvent.settlement_id == bindparam("p_settlement_id"))
        .scalar_subquery(),
        **{column: bindparam(f"p_{column}") for column in _EVENT_COLUMNS},
    )
    .returning(SettlementEvent)
)


_SETTLEMENTS = cast(Table, Settlement.__table__)
_SETTLEMENT_COLUMNS = insert_columns(Settlement)
_EVENTS = cast(Table, SettlementEvent.__table__)
_EVENT_INSERT_COLUMNS = insert_columns(SettlementEvent)


class SettlementRepository(RepositoryBase[Settlement]):
    model = Settlement

    async def insert_now(self, settlement: Settlement) -> None:
        """One INSERT of every column, outside the unit of work: ``settlement`` stays a plain
        object the session does not track (the create writes it once, in its final state)."""
        await insert_rows(
            self.session, _SETTLEMENTS, [insert_params(settlement, _SETTLEMENT_COLUMNS)]
        )

    async def get_by_buyer_intent(self, buyer: str, intent_id: str) -> Settlement | None:
        """The buyer's settlement for ``intent_id`` (unique per buyer)."""
        return await self.get_one_or_none(
            _BY_BUYER_INTENT, {"buyer": buyer, "intent_id": intent_id}
        )

    async def request_and_intent(
        self, scope: str, key: str, buyer: str, intent_id: str
    ) -> tuple[IdempotencyKey | None, Settlement | None]:
        """The idempotency record ``(scope, key)`` and the buyer's settlement for
        ``intent_id``, each ``None`` when there is none, in one statement."""
        row = (
            await self.session.execute(
                _REQUEST_AND_INTENT,
                {"scope": scope, "key": key, "buyer": buyer, "intent_id": intent_id},
            )
        ).one()
        return row[0], row[1]

    async def find_by_intent(
        self, intent_id: str, *, buyer: str | None = None, seller: str | None = None, limit: int = 2
    ) -> list[Settlement]:
        """Settlements for ``intent_id`` (several buyers may use one), narrowed by party."""
        stmt = select(Settlement).where(Settlement.intent_id == intent_id)
        if buyer is not None:
            stmt = stmt.where(Settlement.buyer == buyer)
        if seller is not None:
            stmt = stmt.where(Settlement.seller == seller)
        return await self.get_all(stmt.order_by(Settlement.created_at, Settlement.id).limit(limit))

    async def get_by_id(self, id_: str, *, for_update: bool = False) -> Settlement | None:
        stmt = _BY_ID_FOR_UPDATE if for_update else _BY_ID
        return await self.get_one_or_none(stmt, {"settlement_id": id_})

    @staticmethod
    def _due(now: datetime) -> Any:
        """Open settlements the sweeper must end: delivery deadline passed before a valid
        REVEAL, or challenge window closed after one."""
        return or_(
            and_(Settlement.state == "locked", Settlement.commit_by_at <= now),
            and_(
                Settlement.state.in_(("locked", "committed", "streaming")),
                Settlement.delivery_deadline_at <= now,
            ),
            and_(Settlement.state == "delivered", Settlement.challenge_ends_at <= now),
        )

    async def due_ids(
        self, now: datetime, limit: int, *, retry_now: datetime, max_attempts: int
    ) -> list[str]:
        """Ids of due settlements the sweeper can act on now, by next attempt: when it fell
        due, or, for one whose last rail step failed, when that step may be tried again.

        A settlement whose rail step is in flight (a pending operation: its caller's or the
        reconciler's), failed and waiting for its retry time (``lease_until`` after
        ``retry_now``, the wall clock the leases are written with), or failed
        ``max_attempts`` times (an operator's) is skipped: it cannot be moved on now, and it
        must not hold the front of the queue against the settlements behind it."""
        ops = RailOperation
        blocked = (
            select(ops.id)
            .where(
                ops.settlement_id == Settlement.id,
                or_(
                    ops.status == "pending",
                    and_(
                        ops.status == "failed",
                        or_(ops.lease_until > retry_now, ops.attempts >= max_attempts),
                    ),
                ),
            )
            .exists()
        )
        retry_at = (
            select(func.max(ops.lease_until))
            .where(ops.settlement_id == Settlement.id, ops.status == "failed")
            .scalar_subquery()
        )
        due: dict[str, Any] = {}
        for due_at, condition in (
            (
                Settlement.commit_by_at,
                and_(Settlement.state == "locked", Settlement.commit_by_at <= now),
            ),
            (
                Settlement.delivery_deadline_at,
                and_(
                    Settlement.state.in_(("locked", "committed", "streaming")),
                    Settlement.delivery_deadline_at <= now,
                ),
            ),
            (
                Settlement.challenge_ends_at,
                and_(Settlement.state == "delivered", Settlement.challenge_ends_at <= now),
            ),
        ):
            next_at = func.coalesce(retry_at, due_at).label("next_at")
            stmt = (
                select(Settlement.id, next_at)
                .where(condition, ~blocked)
                .order_by(next_at, Settlement.id)
                .limit(limit)
            )
            for settlement_id, when in (await self.session.execute(stmt)).all():
                key = str(settlement_id)  # a locked one may match twice: keep its earliest
                due[key] = when if key not in due else min(due[key], when)
        return sorted(due, key=due.__getitem__)[:limit]

    async def lock_if_due(self, id_: str, now: datetime) -> Settlement | None:
        """The settlement, row-locked, if it is still due; ``None`` when another worker holds
        it (``SKIP LOCKED`` on Postgres) or it has moved on."""
        stmt = (
            select(Settlement)
            .where(Settlement.id == id_, self._due(now))
            .execution_options(populate_existing=True)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return await self.get_one_or_none(stmt)

    async def raise_checkpoint(
        self, id_: str, recorded: Decimal | None, values: dict[str, Any]
    ) -> bool:
        """Set a streaming settlement's checkpoint columns if its recorded voucher is still
        ``recorded`` (compare-and-set, as for the state)."""
        previous = (
            Settlement.stream_paid_amount.is_(None)
            if recorded is None
            else Settlement.stream_paid_amount == recorded
        )
        result = await self.session.execute(
            update(Settlement)
            .where(Settlement.id == id_, Settlement.state == "streaming", previous)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def compare_and_set_state(
        self, settlement_id: str, from_state: str, to_state: str, values: dict[str, Any]
    ) -> bool:
        """``UPDATE … WHERE id = :id AND state = :from``; False when another writer won."""
        params = {f"v_{k}": v for k, v in values.items()}
        params.update(settlement_id=settlement_id, from_state=from_state, to_state=to_state)
        result = await self.session.execute(_state_update(frozenset(values)), params)
        return bool(getattr(result, "rowcount", 0) == 1)

    async def list(
        self,
        *,
        state: str | None,
        buyer: str | None,
        seller: str | None,
        rail: str | None,
        limit: int,
        cursor: tuple[datetime, str] | None,
    ) -> list[Settlement]:
        stmt = select(Settlement)
        if state:
            stmt = stmt.where(Settlement.state == state)
        if buyer:
            stmt = stmt.where(Settlement.buyer == buyer)
        if seller:
            stmt = stmt.where(Settlement.seller == seller)
        if rail:
            stmt = stmt.where(Settlement.rail == rail)
        if cursor is not None:
            created, id_ = cursor
            # A row-value comparison, so the planner can seek the (…, created_at, id) index
            # from the cursor; the equivalent OR form made it read every older row.
            stmt = stmt.where(tuple_(Settlement.created_at, Settlement.id) < tuple_(created, id_))
        stmt = stmt.order_by(Settlement.created_at.desc(), Settlement.id.desc()).limit(limit)
        return await self.get_all(stmt)


class SettlementEventRepository(RepositoryBase[SettlementEvent]):
    model = SettlementEvent

    async def append(self, settlement_id: str, **values: Any) -> SettlementEvent:
        """Insert the settlement's next event. Its ``seq`` is computed by the INSERT itself and
        returned with the row (no separate ``SELECT max(seq)`` round trip). Writers hold the
        settlement's row lock, and ``(settlement_id, seq)`` is unique, so two writers can
        never take the same number."""
        params = {f"p_{column}": values.get(column) for column in _EVENT_COLUMNS}
        params["p_settlement_id"] = settlement_id
        params["p_data"] = values.get("data") or {}
        return (await self.session.scalars(_APPEND_EVENT, params)).one()

    async def insert_now(self, events: list[SettlementEvent]) -> None:
        """The events, numbered by the caller, in one INSERT outside the unit of work (a new
        settlement's first events: nobody else can append to it yet)."""
        await insert_rows(
            self.session, _EVENTS, [insert_params(e, _EVENT_INSERT_COLUMNS) for e in events]
        )

    async def for_settlement(self, settlement_id: str) -> list[SettlementEvent]:
        return await self.get_all(_EVENTS_OF, {"settlement_id": settlement_id})

    async def for_settlements(self, ids: list[str]) -> dict[str, list[SettlementEvent]]:
        out: dict[str, list[SettlementEvent]] = {i: [] for i in ids}
        if not ids:
            return out
        rows = await self.get_all(
            select(SettlementEvent)
            .where(SettlementEvent.settlement_id.in_(ids))
            .order_by(SettlementEvent.settlement_id, SettlementEvent.seq)
        )
        for row in rows:
            out[row.settlement_id].append(row)
        return out
