"""Payment profile queries."""

from __future__ import annotations

from typing import Final

from sqlalchemy import delete, select

from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.rails.base import PartyProfile, RailProfiles

__all__ = ["PaymentProfileRepository"]


class PaymentProfileRepository(RepositoryBase[PaymentProfile]):
    model = PaymentProfile

    async def get_for(self, agent_id: str, rail: str) -> PaymentProfile | None:
        return await self.session.get(PaymentProfile, (agent_id, rail))

    async def rail_profile(self, agent_id: str, rail: str) -> PartyProfile | None:
        """The agent's profile on ``rail`` as a rail is given it."""
        return _party(await self.get_for(agent_id, rail))

    async def rail_profiles(self, rail: str, *, buyer: str, seller: str) -> RailProfiles:
        """The parties' profiles on ``rail``, as the rail's ``prepare`` is given them.

        Rails that pay the same kind of account share one profile (``PROFILE_OF``): the ERC-20
        escrow pays the agents' ``evm`` addresses.
        """
        profile_rail = PROFILE_OF.get(rail, rail)
        return RailProfiles(
            buyer=await self.rail_profile(buyer, profile_rail),
            seller=await self.rail_profile(seller, profile_rail),
        )

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


#: rail -> the rail whose payment profile it uses.
PROFILE_OF: Final[dict[str, str]] = {"evm-erc20": "evm"}


def _party(profile: PaymentProfile | None) -> PartyProfile | None:
    if profile is None:
        return None
    return PartyProfile(
        agent_id=profile.agent_id,
        stripe_customer=profile.stripe_customer,
        stripe_payment_method=profile.stripe_payment_method,
        stripe_connect_account=profile.stripe_connect_account,
        evm_address=profile.evm_address,
    )
