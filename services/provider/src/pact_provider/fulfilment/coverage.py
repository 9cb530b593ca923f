"""The start-up check that every priced intent type is delivered by something.

An intent in the price book that no handler delivers would be quoted and accepted, lock the
buyer's money and then be refunded: production refuses to start with it, development warns.
(An INTENT for such a type is refused before any quote either way: ``Fulfiller.can_fulfil``.)
"""

from __future__ import annotations

from pact_provider.config import ConfigError, ProviderSettings
from pact_provider.fulfilment.handlers import HandlerBook
from pact_provider.negotiation.pricing import PriceBook
from pact_provider.observability import Logger

__all__ = ["check_coverage", "coverage_problem"]


def coverage_problem(price_book: PriceBook, handlers: HandlerBook | None) -> str | None:
    """One line naming the priced intent types nothing here delivers; None when all are."""
    if handlers is None:
        return None  # FULFILMENT=none: another process delivers, through the settlement API
    missing = handlers.unfulfilled(price_book.prices)
    if not missing:
        return None
    return (
        f"priced intent types that nothing here delivers: {', '.join(missing)} (add a route "
        "in the price book's `routes`, a handler, or remove the price)"
    )


def check_coverage(
    settings: ProviderSettings, price_book: PriceBook, handlers: HandlerBook | None, log: Logger
) -> None:
    """Refuse (production) or warn (development) about priced intents nothing delivers."""
    problem = coverage_problem(price_book, handlers)
    if problem is None:
        return
    if settings.env == "production":
        raise ConfigError(problem)
    log.warning("pact.fulfilment.unfulfilled_prices", message=problem)
