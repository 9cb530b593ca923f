"""Pick a rail by name (like django-payments' ``provider_factory``).

External rails (stripe, evm) are built over the app's long-lived gateways
(:class:`~pact_settlement.rails.clients.RailClients`), which the caller passes in: the request
path, the workers and the webhook handler are each given the app's clients when they are made.
The evm rail's module is imported by its factory, on first use: it pulls in web3 (about two
seconds to import), which an app without the evm rail should not load.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.rails.base import Rail
from pact_settlement.rails.clients import RailClients, RailNotConfiguredError
from pact_settlement.rails.ledger import LedgerRail
from pact_settlement.rails.stripe.rail import StripeRail

__all__ = ["RAIL_FACTORIES", "UnknownRailError", "available_rails", "get_rail"]

RailFactory = Callable[[SettlementSettings, AsyncSession, RailClients | None], Rail]


def _clients(name: str, clients: RailClients | None) -> RailClients:
    if clients is None:
        raise RailNotConfiguredError(
            f"the {name} rail needs the app's rail clients (RailClients); none were given"
        )
    return clients


def _stripe_rail(
    settings: SettlementSettings, session: AsyncSession, clients: RailClients | None
) -> Rail:
    return StripeRail(session, settings.stripe, _clients("stripe", clients).stripe())


def _evm_rail(
    settings: SettlementSettings, session: AsyncSession, clients: RailClients | None
) -> Rail:
    from pact_settlement.rails.evm.rail import EvmEscrowRail

    return EvmEscrowRail(session, settings.evm, _clients("evm", clients).evm())


def _evm_erc20_rail(
    settings: SettlementSettings, session: AsyncSession, clients: RailClients | None
) -> Rail:
    from pact_settlement.rails.evm.token_rail import EvmTokenEscrowRail

    return EvmTokenEscrowRail(session, settings.evm, _clients("evm-erc20", clients).evm_erc20())


#: name → factory.
RAIL_FACTORIES: dict[str, RailFactory] = {
    "ledger": lambda settings, session, _clients: LedgerRail(session, settings.ledger),
    "stripe": _stripe_rail,
    "evm": _evm_rail,
    "evm-erc20": _evm_erc20_rail,
}


class UnknownRailError(LookupError):
    pass


def available_rails(settings: SettlementSettings) -> list[str]:
    return [name for name in settings.enabled_rails if name in RAIL_FACTORIES]


def get_rail(
    name: str,
    *,
    settings: SettlementSettings,
    session: AsyncSession,
    clients: RailClients | None,
) -> Rail:
    """The rail ``name`` bound to ``session``; ``clients`` are the app's gateways (``None``:
    only the ledger rail can be built)."""
    if name not in settings.enabled_rails or name not in RAIL_FACTORIES:
        raise UnknownRailError(name)
    return RAIL_FACTORIES[name](settings, session, clients)
