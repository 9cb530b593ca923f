"""What the Stripe gateway answers: PaymentIntent and refund states, from SDK objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pact_settlement.rails.minor_units import (
    from_stripe_amount,
)
from pact_settlement.rails.stripe.errors import StripeRequestError
from pact_settlement.rails.stripe.ids import as_dict, id_of

__all__ = [
    "AUTHORIZATION_VALIDITY",
    "PaymentStatus",
    "StripePaymentState",
    "StripeRefundState",
]

AUTHORIZATION_VALIDITY: Final = timedelta(days=7)
"""How long Stripe keeps an uncaptured online card authorisation, when it does not say."""

# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


class PaymentStatus(StrEnum):
    """Our reading of a PaymentIntent's ``status``."""

    AUTHORIZED = "authorized"  # requires_capture: funds held, the lock holds
    CAPTURED = "captured"  # succeeded: the seller is paid (release done)
    CANCELED = "canceled"  # canceled: authorisation voided (refund before capture)
    FAILED = "failed"  # requires_payment_method: declined / authentication failed
    REQUIRES_ACTION = "requires_action"  # 3-D Secure etc.: impossible off-session
    REQUIRES_CONFIRMATION = "requires_confirmation"  # created but never confirmed
    PROCESSING = "processing"  # asynchronous payment methods; wait for the webhook

    @classmethod
    def from_stripe(cls, status: str) -> PaymentStatus:
        try:
            return _STATUS_MAP[status]
        except KeyError:
            raise StripeRequestError(f"unknown PaymentIntent status {status!r}") from None


_STATUS_MAP: Final[Mapping[str, PaymentStatus]] = {
    "requires_capture": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.CAPTURED,
    "canceled": PaymentStatus.CANCELED,
    "requires_payment_method": PaymentStatus.FAILED,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "requires_confirmation": PaymentStatus.REQUIRES_CONFIRMATION,
    "processing": PaymentStatus.PROCESSING,
}


@dataclass(frozen=True, slots=True)
class StripePaymentState:
    """What Stripe says about one PaymentIntent (parsed from the API or a webhook)."""

    payment_intent_id: str
    status: PaymentStatus
    stripe_status: str
    amount_minor: int
    amount: Decimal
    currency: str
    settlement_id: str | None
    intent_id: str | None
    customer: str | None
    payment_method: str | None
    latest_charge_id: str | None
    created: datetime
    authorization_expires_at: datetime | None
    last_error_code: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, obj: Any) -> StripePaymentState:
        data = as_dict(obj)
        stripe_status = str(data["status"])
        currency = str(data["currency"]).lower()
        amount_minor = int(data["amount"])
        metadata = {str(k): str(v) for k, v in (data.get("metadata") or {}).items()}
        created = datetime.fromtimestamp(int(data["created"]), UTC)
        charge = data.get("latest_charge")
        charge_id: str | None
        capture_before: int | None = None
        if isinstance(charge, Mapping):
            charge_id = str(charge.get("id")) if charge.get("id") else None
            card = ((charge.get("payment_method_details") or {}).get("card")) or {}
            if card.get("capture_before"):
                capture_before = int(card["capture_before"])
        else:
            charge_id = str(charge) if charge else None
        status = PaymentStatus.from_stripe(stripe_status)
        expires: datetime | None = None
        if status is PaymentStatus.AUTHORIZED:
            expires = (
                datetime.fromtimestamp(capture_before, UTC)
                if capture_before
                else created + AUTHORIZATION_VALIDITY
            )
        error = data.get("last_payment_error") or {}
        payment_method = data.get("payment_method")
        if isinstance(payment_method, Mapping):
            payment_method = payment_method.get("id")
        customer = data.get("customer")
        if isinstance(customer, Mapping):
            customer = customer.get("id")
        return cls(
            payment_intent_id=str(data["id"]),
            status=status,
            stripe_status=stripe_status,
            amount_minor=amount_minor,
            amount=from_stripe_amount(amount_minor, currency),
            currency=currency,
            settlement_id=metadata.get("settlement_id"),
            intent_id=metadata.get("intent_id"),
            customer=str(customer) if customer else None,
            payment_method=str(payment_method) if payment_method else None,
            latest_charge_id=charge_id,
            created=created,
            authorization_expires_at=expires,
            last_error_code=(error.get("decline_code") or error.get("code")) or None,
            metadata=metadata,
        )


@dataclass(frozen=True, slots=True)
class StripeRefundState:
    refund_id: str
    status: str  # succeeded | pending | requires_action | failed | canceled
    amount_minor: int
    currency: str
    payment_intent_id: str | None
    charge_id: str | None

    @classmethod
    def from_stripe(cls, obj: Any) -> StripeRefundState:
        data = as_dict(obj)
        return cls(
            refund_id=str(data["id"]),
            status=str(data.get("status") or ""),
            amount_minor=int(data["amount"]),
            currency=str(data["currency"]).lower(),
            payment_intent_id=id_of(data.get("payment_intent")),
            charge_id=id_of(data.get("charge")),
        )
