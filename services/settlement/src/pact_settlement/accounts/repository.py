"""Payment profile queries."""

from __future__ import annotations

from sqlalchemy import delete, select

from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.kit.repository import RepositoryBase

__all__ = ["PaymentProfileRepository"]


class PaymentProfileRepository(RepositoryBase[PaymentProfile]):
    model = PaymentProfile

    async def get_for(self, agent_id: str, rail: str) -> PaymentProfile | None:
        return await self.session.get(PaymentProfile, (agent_id, rail))

    async def list_for(self, agent_id: str) -> list[PaymentProfile]:
        return await self.get_all(
            select(PaymentProfile)
            .where(PaymentProfile.agent_id == agent_id)
            .order_by(PaymentProfile.rail)
        )

    async def remove(self, agent_id: str, rail: str) -> bool:
        result = await self.session.execute(
            delete(PaymentProfile)
            .where(PaymentProfile.agent_id == agent_id, PaymentProfile.rail == rail)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))
