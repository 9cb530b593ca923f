"""The Stripe gateway's errors, and the translation of the SDK's into them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pact_schema.codes import FailureCode

from pact_settlement.rails.stripe.ids import id_of

if TYPE_CHECKING:
    import stripe

    from pact_settlement.rails.stripe.results import StripePaymentState

__all__ = [
    "StripeConfigurationError",
    "StripeDeclinedError",
    "StripeGatewayError",
    "StripeIdempotencyConflictError",
    "StripeRequestError",
    "StripeTransientError",
    "StripeUnexpectedStateError",
    "StripeWebhookError",
    "sdk_errors",
]

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class StripeGatewayError(Exception):
    """Base of every error the gateway raises.

    ``retryable``: the same call (same idempotency key) may succeed later.
    ``outcome_unknown``: the request may have reached Stripe; keep the step pending and
    reconcile (retry with the same key, or retrieve) rather than assuming it failed.
    """

    failure_code: FailureCode = FailureCode.SETTLEMENT_FAILED
    retryable: bool = False
    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        stripe_code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stripe_code = stripe_code
        self.http_status = http_status
        self.request_id = request_id


class StripeDeclinedError(StripeGatewayError):
    """The card was declined (or needs authentication the buyer cannot give off-session)."""

    def __init__(
        self,
        message: str,
        *,
        decline_code: str | None,
        payment_intent_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id
        self.failure_code = (
            FailureCode.INSUFFICIENT_ESCROW
            if decline_code == "insufficient_funds"
            else FailureCode.FAILED_ESCROW
        )


class StripeTransientError(StripeGatewayError):
    """Network failure, timeout, rate limit or Stripe 5xx: retry the same step later."""

    retryable = True

    def __init__(self, message: str, *, outcome_unknown: bool, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.outcome_unknown = outcome_unknown


class StripeConfigurationError(StripeGatewayError):
    """Bad or under-privileged API key: an operator has to fix the configuration."""


class StripeIdempotencyConflictError(StripeGatewayError):
    """The same idempotency key was used earlier with different parameters."""


class StripeRequestError(StripeGatewayError):
    """Stripe refused the request as invalid (unknown object, bad parameter, ...)."""


class StripeUnexpectedStateError(StripeRequestError):
    """The PaymentIntent is in a state that does not allow the step (e.g. capture after cancel)."""

    def __init__(self, message: str, *, state: StripePaymentState, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.state = state


class StripeWebhookError(StripeGatewayError):
    """Missing, malformed, forged or stale webhook: answer 400 and change nothing."""

    failure_code = FailureCode.FAILED_IDENTITY


def _translate(exc: stripe.StripeError, *, mutating: bool) -> StripeGatewayError:
    import stripe

    common: dict[str, Any] = {
        "stripe_code": exc.code,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
    }
    message = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.CardError):
        body: Mapping[str, Any] = exc.json_body if isinstance(exc.json_body, Mapping) else {}
        err: Mapping[str, Any] = body.get("error") or {}
        return StripeDeclinedError(
            message,
            decline_code=err.get("decline_code") or exc.code,
            payment_intent_id=id_of(err.get("payment_intent")),
            **common,
        )
    if isinstance(exc, stripe.RateLimitError):
        # 429: Stripe did not process the request.
        return StripeTransientError(message, outcome_unknown=False, **common)
    if isinstance(exc, stripe.APIConnectionError):
        return StripeTransientError(message, outcome_unknown=mutating, **common)
    if isinstance(exc, stripe.IdempotencyError):
        return StripeIdempotencyConflictError(message, **common)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return StripeConfigurationError(message, **common)
    if isinstance(exc, stripe.InvalidRequestError):
        return StripeRequestError(message, **common)
    if isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500:
        return StripeTransientError(message, outcome_unknown=mutating, **common)
    return StripeGatewayError(message, **common)


@contextmanager
def sdk_errors(*, mutating: bool) -> Iterator[None]:
    """Raise the SDK's errors as ours: an ``InvalidRequestError`` as :class:`StripeRequestError`."""
    import stripe

    try:
        yield
    except stripe.StripeError as exc:
        raise _translate(exc, mutating=mutating) from exc
