"""Pick a rail by name (like django-payments' ``provider_factory``)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.rails.base import Rail
from pact_settlement.rails.ledger import LedgerRail

__all__ = ["RAIL_FACTORIES", "UnknownRail", "available_rails", "get_rail"]

RailFactory = Callable[[SettlementSettings, AsyncSession], Rail]

#: name → factory. Stripe and EVM register here in their own issue.
RAIL_FACTORIES: dict[str, RailFactory] = {
    "ledger": lambda _settings, session: LedgerRail(session),
}


class UnknownRail(LookupError):
    pass


def available_rails(settings: SettlementSettings) -> list[str]:
    return [name for name in settings.enabled_rails if name in RAIL_FACTORIES]


def get_rail(name: str, *, settings: SettlementSettings, session: AsyncSession) -> Rail:
    if name not in settings.enabled_rails or name not in RAIL_FACTORIES:
        raise UnknownRail(name)
    return RAIL_FACTORIES[name](settings, session)
