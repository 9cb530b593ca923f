"""The Stripe rail's settings (``PACT_SETTLEMENT_STRIPE_<FIELD>``), nested in
:class:`~pact_settlement.config.SettlementSettings` as ``settings.stripe``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pact_settlement.rails.minor_units import STRIPE_MINIMUM_CHARGE

__all__ = ["StripeSettings"]


class StripeSettings(BaseModel):
    """PaymentIntents with manual capture (and card top-ups)."""

    model_config = ConfigDict(extra="ignore", validate_default=True, hide_input_in_errors=True)

    api_key: SecretStr | None = Field(
        default=None,
        description="Stripe secret key (sk_live_… / sk_test_…). Required when 'stripe' is enabled.",
    )
    api_base: str | None = Field(
        default=None,
        description="Stripe API base URL; unset: api.stripe.com. localstripe in development.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret (whsec_…) of the /v1/webhooks/stripe endpoint. Required in "
        "production when 'stripe' is enabled; unset elsewhere: webhooks are refused (400).",
    )
    currency: str = Field(
        default="usd",
        description="Currency the Stripe rail charges settlement amounts in (ISO 4217).",
    )
    capture_margin_s: int = Field(
        default=86_400,
        ge=0,
        le=518_400,
        description="How long before a card authorisation expires (about 7 days after the lock) "
        "the sweeper captures (delivered) or cancels (not delivered) it.",
    )
    webhook_tolerance_s: int = Field(
        default=300, ge=1, description="Largest age of a webhook's signed timestamp."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Stripe HTTP timeout.")
    max_network_retries: int = Field(
        default=2, ge=0, le=10, description="SDK retries (same idempotency key) on network errors."
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        code = value.strip().lower()
        if code not in STRIPE_MINIMUM_CHARGE:
            raise ValueError(
                f"STRIPE_CURRENCY {value!r} has no known Stripe minimum; use one of "
                + ", ".join(sorted(STRIPE_MINIMUM_CHARGE))
            )
        return code

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())
