"""Rail bindings: the external identities one settlement is bound to on its rail.

Written when the settlement is recorded (in the same transaction as its pending ``lock``
operation), *before* the rail is called, so every later call — the lock itself, a retry, the
reconciler after a crash, release/refund/slash days later — uses exactly the same arguments
even if the agent's payment profile changes in between:

* Stripe: :class:`~pact_settlement.rails.stripe.StripeBindingParams` (customer, card, currency,
  amount); ``external_id`` is the PaymentIntent id once known; ``hold_expires_at`` is when the
  card authorisation lapses (provisional ``now + 7 days`` until Stripe answers, then Stripe's
  own figure).
* EVM: :class:`~pact_settlement.rails.evm.EvmBindingParams` (addresses, on-chain deadline,
  amount and bond in wei, contract); ``external_id`` is the escrow id (deterministic, known up
  front).

Each rail reads and writes ``params`` only through its own typed model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from pact_settlement.db.base import Base
from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.kit.time import UTCDateTime, session_now

__all__ = ["RailBinding", "RailBindingRepository"]


class RailBinding(Base):
    __tablename__ = "rail_bindings"

    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlements.id"), primary_key=True)
    rail: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_rail_bindings_rail_hold", "rail", "hold_expires_at"),)


class RailBindingRepository(RepositoryBase[RailBinding]):
    model = RailBinding

    async def get_for(self, settlement_id: str) -> RailBinding | None:
        return await self.session.get(RailBinding, settlement_id)

    async def create(
        self,
        *,
        settlement_id: str,
        rail: str,
        params: dict[str, Any],
        external_id: str | None = None,
        hold_expires_at: datetime | None = None,
    ) -> RailBinding:
        now = session_now(self.session)
        return await self.add(
            RailBinding(
                settlement_id=settlement_id,
                rail=rail,
                external_id=external_id,
                params=params,
                hold_expires_at=hold_expires_at,
                created_at=now,
                updated_at=now,
            )
        )

    async def update(
        self,
        binding: RailBinding,
        *,
        external_id: str | None = None,
        hold_expires_at: datetime | None = None,
    ) -> None:
        if external_id is not None:
            binding.external_id = external_id
        if hold_expires_at is not None:
            binding.hold_expires_at = hold_expires_at
        binding.updated_at = session_now(self.session)
        await self.session.flush()

    async def by_external_id(self, rail: str, external_id: str) -> RailBinding | None:
        return await self.get_one_or_none(
            select(RailBinding).where(
                RailBinding.rail == rail, RailBinding.external_id == external_id
            )
        )
