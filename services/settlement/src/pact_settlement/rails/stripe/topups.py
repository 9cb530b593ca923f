"""Card top-ups of a ledger balance: one automatic-capture PaymentIntent per top-up request.

The accounts service decides whether a top-up may happen (the ledger has room for it) and
credits the ledger; this module turns the amount into Stripe's units, charges the agent's saved
card and says what happened in the rail's terms: :class:`RailRefused` before anything is sent,
:class:`TopUpDeclinedError` / :class:`TopUpKeyReusedError` for Stripe's refusals, a retryable
:class:`RailError` when the outcome is not known yet (retry with the same key).

The charge's idempotency key is derived from the agent and the request's ``Idempotency-Key``,
so a retried request charges once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from pact_schema import FailureCode

from pact_settlement.kit.errors import ProblemCode
from pact_settlement.rails.base import PartyProfile, RailError, RailRefusedError
from pact_settlement.rails.minor_units import (
    AmountBelowRailMinimumError,
    AmountError,
    to_stripe_amount,
)
from pact_settlement.rails.stripe.errors import (
    StripeDeclinedError,
    StripeGatewayError,
    StripeIdempotencyConflictError,
)
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.rails.stripe.results import PaymentStatus
from pact_settlement.rails.stripe.settings import StripeSettings

__all__ = [
    "TOPUP_PURPOSE",
    "StripeTopUps",
    "TopUpCharge",
    "TopUpDeclinedError",
    "TopUpKeyReusedError",
]

#: ``metadata.pact_purpose`` of a top-up's PaymentIntent (the webhook credits those).
TOPUP_PURPOSE: Final = "pact_topup"


@dataclass(frozen=True, slots=True)
class TopUpCharge:
    payment_intent_id: str
    stripe_status: str
    captured: bool  # else still processing: credited when Stripe confirms it
    currency: str
    amount_minor: int


class TopUpDeclinedError(RailError):
    """The card was declined (or would need the buyer's authentication)."""


class TopUpKeyReusedError(RailError):
    """The idempotency key was used for a different top-up (amount or card)."""


class StripeTopUps:
    """Top-ups through the app's Stripe gateway (``gateway`` is called on first charge)."""

    def __init__(self, settings: StripeSettings, gateway: Callable[[], StripeGateway]) -> None:
        self.settings = settings
        self._gateway = gateway

    @property
    def currency(self) -> str:
        return self.settings.currency

    def amount_minor(self, amount: Decimal) -> int:
        """The amount in Stripe's integer units, exactly; :class:`RailRefused` otherwise."""
        try:
            return to_stripe_amount(amount, self.currency, rounding=None)
        except AmountBelowRailMinimumError as exc:
            raise RailRefusedError(FailureCode.AMOUNT_BELOW_RAIL_MINIMUM, str(exc)) from exc
        except AmountError as exc:
            raise RailRefusedError(
                exc.failure_code,
                f"a top-up must be whole {self.currency.upper()} minor units: {exc}",
            ) from exc

    async def charge(
        self,
        agent_id: str,
        amount: Decimal,
        profile: PartyProfile | None,
        *,
        idempotency_key: str,
    ) -> TopUpCharge:
        """Charge ``amount`` to the agent's saved card now (automatic capture)."""
        amount_minor = self.amount_minor(amount)
        if profile is None or not profile.stripe_customer or not profile.stripe_payment_method:
            raise RailRefusedError(
                FailureCode.MISSING_REQUIRED_CREDENTIALS,
                f"agent {agent_id} has no stripe payment profile",
            )
        digest = hashlib.sha256(f"{agent_id}\n{idempotency_key}".encode()).hexdigest()[:40]
        try:
            state = await self._gateway().charge(
                amount,
                profile.stripe_customer,
                profile.stripe_payment_method,
                {"pact_purpose": TOPUP_PURPOSE, "agent_id": agent_id},
                idempotency_key=f"topup-{digest}",
                currency=self.currency,
            )
        except StripeIdempotencyConflictError as exc:
            raise TopUpKeyReusedError(
                ProblemCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used for a different top-up (amount or card)",
            ) from exc
        except StripeDeclinedError as exc:
            raise TopUpDeclinedError(
                exc.failure_code,
                f"the card was declined ({exc.decline_code or 'no reason given'})",
            ) from exc
        except StripeGatewayError as exc:
            if exc.retryable or exc.outcome_unknown:
                raise RailError(
                    FailureCode.SETTLEMENT_FAILED,
                    f"Stripe did not answer ({exc}); retry with the same Idempotency-Key",
                    retryable=True,
                ) from exc
            raise RailError(FailureCode.FAILED_ESCROW, f"Stripe refused the charge: {exc}") from exc
        return TopUpCharge(
            payment_intent_id=state.payment_intent_id,
            stripe_status=state.stripe_status,
            captured=state.status is PaymentStatus.CAPTURED,
            currency=self.currency,
            amount_minor=amount_minor,
        )
