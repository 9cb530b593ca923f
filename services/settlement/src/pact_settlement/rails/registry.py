"""Pick a rail by name (like django-payments' ``provider_factory``).

External rails (stripe, evm) are built over the app's long-lived gateways, which every session
of the app's sessionmaker carries (:class:`~pact_settlement.rails.clients.RailClients`). The evm
rail's module is imported by its factory, on first use: it pulls in web3 (about two seconds to
import), which an app without the evm rail should not load.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.rails.base import Rail
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.ledger import LedgerRail
from pact_settlement.rails.stripe.rail import StripeRail

__all__ = ["RAIL_FACTORIES", "UnknownRail", "available_rails", "get_rail"]

RailFactory = Callable[[SettlementSettings, AsyncSession], Rail]


def _evm_rail(settings: SettlementSettings, session: AsyncSession) -> Rail:
    from pact_settlement.rails.evm.rail import EvmEscrowRail

    return EvmEscrowRail(session, settings.evm, RailClients.of(session).evm())


#: name → factory.
RAIL_FACTORIES: dict[str, RailFactory] = {
    "ledger": lambda _settings, session: LedgerRail(session),
    "stripe": lambda settings, session: StripeRail(
        session, settings.stripe, RailClients.of(session).stripe()
    ),
    "evm": _evm_rail,
}


class UnknownRail(LookupError):
    pass


def available_rails(settings: SettlementSettings) -> list[str]:
    return [name for name in settings.enabled_rails if name in RAIL_FACTORIES]


def get_rail(name: str, *, settings: SettlementSettings, session: AsyncSession) -> Rail:
    if name not in settings.enabled_rails or name not in RAIL_FACTORIES:
        raise UnknownRail(name)
    return RAIL_FACTORIES[name](settings, session)
