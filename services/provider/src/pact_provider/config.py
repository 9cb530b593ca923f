"""Provider settings: one pydantic-settings class, env prefix ``PACT_PROVIDER_``.

Every field is documented here and in the README's settings table. ``production`` mode refuses
to start without a signing key, a settlement URL and a settlement token; ``development`` (the
default, so the README's bare run command works) makes an ephemeral key with a loud warning.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pact_schema.http_settings import HttpServerSettings
from pact_schema.keys import PublicKeyB58
from pact_schema.money import AmountText
from pact_schema.token_policy import token_weakness
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "DEFAULT_LATENCY_MS",
    "DEFAULT_PRICE",
    "DEFAULT_PRICES",
    "ConfigError",
    "Environment",
    "ProviderSettings",
]

Environment = Literal["development", "production"]
SettlementMode = Literal["hash_reveal", "streaming"]

DEFAULT_PRICE = Decimal("0.0001")
DEFAULT_LATENCY_MS = 5_000
DEFAULT_PRICES: dict[str, Decimal] = {
    "weather.data": Decimal("0.00008"),
    "compute.inference": Decimal("0.00012"),
    "data.query": Decimal("0.00005"),
}

# The reference SDK's firm-quote range.
MIN_QUOTE_VALID_FOR_MS = 20_000
MAX_QUOTE_VALID_FOR_MS = 200_000


class ConfigError(ValueError):
    """The configuration cannot be used (a key file cannot be read, a price book is invalid)."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ProviderSettings(BaseSettings, HttpServerSettings):
    """Settings of one provider replica. All replicas of one provider share them."""

    model_config = SettingsConfigDict(
        env_prefix="PACT_PROVIDER_",
        extra="ignore",
        frozen=True,
        validate_default=True,
        # Never echo a value in an error: a model-level check would print every setting read,
        # the signing key and token included (pact_schema.settings_errors renders the errors).
        hide_input_in_errors=True,
    )

    env: Environment = Field(
        default="development",
        description="`development` or `production`. Production refuses to start without "
        "SIGNING_KEY_FILE/SIGNING_KEY, SETTLEMENT_URL and SETTLEMENT_TOKEN, with a weak token, "
        "a plaintext SETTLEMENT_URL (unless ALLOW_PLAINTEXT_SETTLEMENT) or the demo fulfilment.",
    )

    # --- identity -----------------------------------------------------------------------------
    signing_key_file: Path | None = Field(
        default=None,
        description="Path of the provider's Ed25519 key file (as written by `pact keygen`).",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="The provider's Ed25519 secret as base58 (32-byte seed or 64-byte secret "
        "key), for secret stores. Used when SIGNING_KEY_FILE is unset.",
    )
    previous_keys: Annotated[list[PublicKeyB58], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base58 public keys of earlier provider keys whose quotes "
        "are still honoured (key rotation). Each exactly a 32-byte key in canonical base58.",
    )

    # --- settlement ---------------------------------------------------------------------------
    settlement_url: str | None = Field(
        default=None,
        description="Base URL of the settlement service, e.g. http://settlement:8001. Unset: "
        "ACCEPTs are refused with SETTLEMENT_FAILED (development only).",
    )
    settlement_token: SecretStr | None = Field(
        default=None, description="Bearer token the provider presents to the settlement service."
    )
    settlement_timeout_s: float = Field(
        default=8.0,
        gt=0,
        le=120,
        description="Total time budget for forwarding one ACCEPT, retries included (seconds).",
    )
    settlement_connect_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Connect timeout of one settlement attempt."
    )
    settlement_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per ACCEPT on 5xx/429/timeouts."
    )
    settlement_backoff_s: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description="Backoff before the 2nd attempt; doubles for each further attempt.",
    )
    settlement_retry_after_s: int = Field(
        default=2,
        ge=1,
        le=3600,
        description="Retry-After (seconds) of the 503 sent when settlement is unavailable.",
    )
    settlement_rail: str | None = Field(
        default=None,
        description="Rail settlement should use (e.g. `ledger`, `stripe`, `evm`) when the buyer's "
        "ACCEPT names none in its signed `rail` field. Unset: settlement's DEFAULT_RAIL.",
    )
    settlement_max_connections: int = Field(
        default=100, ge=1, le=10_000, description="Connection pool size towards settlement."
    )

    # --- production hygiene -------------------------------------------------------------------
    allow_plaintext_settlement: bool = Field(
        default=False,
        description="Allow an http:// SETTLEMENT_URL in production, for in-cluster traffic on a "
        "private network (the bearer token then travels unencrypted). Off: production "
        "refuses a SETTLEMENT_URL without TLS.",
    )

    # --- pricing ------------------------------------------------------------------------------
    prices: dict[str, AmountText] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description='Price book as JSON, e.g. {"weather.data": "0.00008"} (plain decimal '
        "strings or JSON numbers).",
    )
    default_price: AmountText = Field(
        default=DEFAULT_PRICE,
        gt=0,
        description="List price of intent types not in the book (plain decimal).",
    )
    latency_ms: int = Field(
        default=DEFAULT_LATENCY_MS,
        ge=0,
        le=3_600_000,
        description="The delivery latency every ASK promises (ms from the funds locking to "
        "the provider's COMMIT, measured by settlement), unless the price book gives the "
        "intent type its own `latency_ms`. A buyer's `constraints.latency_ms` never changes "
        "it: the provider signs only promises it chose.",
    )
    price_book_file: Path | None = Field(
        default=None,
        description="TOML or JSON file with `prices` (table: intent type -> price, or -> "
        "{price, latency_ms}) and optional `default_price`, `latency_ms`; replaces PRICES "
        "(and DEFAULT_PRICE / LATENCY_MS when given).",
    )
    restrict_intents: bool = Field(
        default=False,
        description="Refuse (INTENT_NOT_ALLOWED) intent types that are not in the price book.",
    )
    settlement_modes: Annotated[list[SettlementMode], NoDecode] = Field(
        default_factory=lambda: list[SettlementMode](["hash_reveal"]),
        description="Comma-separated settlement modes offered. Offer streaming only with a "
        "stream handler (STREAM_MODULE or create_app(stream_handler=...)); settlement's rails "
        "release part of a lock (ledger, Stripe partial capture, both EVM escrows), and a rail "
        "that cannot refuses a streaming ACCEPT with SETTLEMENT_MODE_NOT_ALLOWED.",
    )
    price_floor_ratio: AmountText = Field(
        default=Decimal("0.8"),
        gt=0,
        le=1,
        description="Lowest price a BID can win, as a fraction of the opening list price.",
    )
    max_rounds: int = Field(
        default=3, ge=1, le=3, description="ASK rounds per negotiation (protocol maximum 3)."
    )

    # --- policy -------------------------------------------------------------------------------
    quote_valid_for_ms: int = Field(
        default=20_000,
        ge=MIN_QUOTE_VALID_FOR_MS,
        le=MAX_QUOTE_VALID_FOR_MS,
        description="How long an ASK is firm (ms), within the reference's 20 000 to 200 000.",
    )
    max_clock_skew_ms: int = Field(
        default=5_000,
        ge=0,
        le=600_000,
        description="Largest allowed |sent_at_ms - provider clock| of an incoming message.",
    )
    quote_grace_ms: int = Field(
        default=1_000,
        ge=0,
        le=60_000,
        description="How long after its expires_at_ms a quote is still honoured, for clock "
        "differences between replicas (never more than MAX_CLOCK_SKEW_MS).",
    )
    reply_ttl_ms: int = Field(
        default=60_000,
        gt=0,
        le=3_600_000,
        description="expires_at_ms - sent_at_ms of the REJECTs and ACCEPT acks the provider signs.",
    )
    lenient_accept: bool = Field(
        default=False,
        description="Accept a bare ACCEPT (no `quote`) when agreed_price is at least the highest "
        "price any intent can cost. Off: such ACCEPTs get QUOTE_MISSING.",
    )
    max_negotiation_ms: int = Field(
        default=300_000,
        ge=1_000,
        le=3_600_000,
        description="Longest a negotiation may run, from the round-1 ASK: a later BID (provider "
        "clock) or an ACCEPT signed later (its sent_at_ms) gets DURATION_EXCEEDED. The "
        "reference policy's max_total_duration_ms, whose default this is.",
    )

    # --- quote store (optional, shared by the replicas) ----------------------------------------
    quote_store_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (redis:// or rediss://, optionally with a password and database "
        "number) of a store every replica shares. Set: every signed ASK is stored by (buyer "
        "key, intent id) until it expires, and a bare ACCEPT (no `quote`, as reference-SDK "
        "buyers send) is honoured when it matches a stored quote; running streams' vouchers "
        "are kept there, so any replica takes them (docs/decisions.md, decision 19). Unset: "
        "purely stateless.",
    )
    quote_store_prefix: str = Field(
        default="pact:quotes:",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9:._-]+$",
        description="Key prefix in the quote store (several providers may share one Redis).",
    )
    quote_store_timeout_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="Longest one quote-store call may take; past it the request is answered "
        "503 QUOTE_STORE_UNAVAILABLE (with Retry-After) rather than a quote a bare ACCEPT "
        "could not find.",
    )
    max_body_bytes: int = Field(
        default=65_536, ge=1_024, le=16 * 1024 * 1024, description="Largest accepted POST body."
    )
    min_delivery_window_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=86_400_000,
        description="Least time between an ACCEPT's arrival and its delivery_deadline_ms that "
        "the provider needs to lock, fulfil, COMMIT and REVEAL; a nearer deadline is refused "
        "(DELIVERY_WINDOW_TOO_SHORT) before any funds lock. Stated in every ASK as "
        "`min_delivery_window_ms`.",
    )

    # --- fulfilment ---------------------------------------------------------------------------
    fulfilment: Literal["demo", "none"] = Field(
        default="demo",
        description="After settlement locks the funds: `demo` delivers with the built-in "
        "made-up handlers (commit + reveal through settlement; refused in production); `none` "
        "leaves delivery to another process using the settlement API. Ignored when "
        "UPSTREAM_URL or FULFILMENT_MODULE is set.",
    )
    fulfilment_module: str | None = Field(
        default=None,
        description="Python module with `HANDLERS` (intent type -> async handler taking a "
        "`FulfilmentRequest`, returning bytes) and optional `DEFAULT_HANDLER`; replaces the "
        "demo handlers.",
    )
    upstream_url: str | None = Field(
        default=None,
        description="Base URL of the seller's own HTTP API (reverse-proxy fulfilment): after "
        "the funds lock, the provider calls it as the price book's `routes` table says "
        "(method, path template filled from the INTENT's `scope`, headers, timeout) and "
        "delivers the response body. A 4xx/5xx or an unreachable upstream refunds the buyer "
        "at once (FULFILMENT_FAILED). Replaces the demo handlers.",
    )
    stream_module: str | None = Field(
        default=None,
        description="Streaming: Python module exposing `STREAM_HANDLER`, an async generator "
        "function taking a `pact_provider.streaming.service.StreamRequest` and yielding the "
        "stream's chunks (bytes, one per tick). Without it (or create_app(stream_handler=...)) "
        "no stream is served.",
    )
    stream_credit_ticks: int = Field(
        default=1,
        ge=0,
        le=1_000,
        description="Streaming: how many chunks may be sent ahead of the buyer's vouchers "
        "(the most the seller risks unpaid); 0 sends a chunk only once it is paid for.",
    )
    stream_checkpoint_ticks: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="Streaming: present the buyer's highest voucher to settlement every this "
        "many ticks (a crash loses at most these ticks' money; fewer settlement calls when "
        "larger). The close always presents the highest one.",
    )
    stream_voucher_timeout_ms: int = Field(
        default=10_000,
        ge=10,
        le=600_000,
        description="Streaming: how long the seller waits for the voucher that pays for the "
        "next chunk before it stops the stream (SELLER_STOPPED) and settles what was paid.",
    )
    payload_retention_s: int = Field(
        default=3_600,
        ge=60,
        le=30 * 86_400,
        description="How long after the delivery deadline a committed payload is kept (in the "
        "quote store, or in this process without one), so a resent ACCEPT is answered with "
        "the very bytes committed.",
    )
    fulfilment_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Longest a fulfilment handler may take to produce the payload; past it "
        "the trade is called off (FULFILMENT_FAILED) and the buyer refunded at once.",
    )

    # --- operations ---------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest log level written (JSON lines on stdout)."
    )
    log_json: bool = Field(
        default=True,
        description="JSON lines (false: one readable line per event, as settlement's console "
        "format; `make run` uses it).",
    )

    @field_validator("previous_keys", "settlement_modes", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("quote_store_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().strip().startswith(("redis://", "rediss://")):
            raise ValueError("quote_store_url must start with redis:// or rediss://")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("settlement_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("settlement_url must start with http:// or https://")
        return value

    @field_validator("upstream_url")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream_url must start with http:// or https://")
        return value

    @field_validator("prices")
    @classmethod
    def _positive_prices(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for name, price in value.items():
            if not name or not price.is_finite() or price <= 0:
                raise ValueError(f"price of {name!r} must be a positive number")
        return value

    @field_validator("settlement_modes")
    @classmethod
    def _some_mode(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one settlement mode must be offered")
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> ProviderSettings:
        if self.quote_grace_ms > self.max_clock_skew_ms:
            raise ValueError("quote_grace_ms must not exceed max_clock_skew_ms")
        if self.min_delivery_window_ms <= self.fulfilment_timeout_s * 1000:
            raise ValueError(
                "min_delivery_window_ms must leave room for fulfilment_timeout_s and the "
                "settlement calls"
            )
        if self.upstream_url and self.fulfilment_module:
            raise ValueError(
                "set one of PACT_PROVIDER_UPSTREAM_URL and PACT_PROVIDER_FULFILMENT_MODULE: "
                "each replaces the other's handlers"
            )
        if self.env != "production":
            return self
        missing = []
        if not self.has_signing_key:
            missing.append("PACT_PROVIDER_SIGNING_KEY_FILE or PACT_PROVIDER_SIGNING_KEY")
        if self.settlement_url is None:
            missing.append("PACT_PROVIDER_SETTLEMENT_URL")
        if not _secret(self.settlement_token):
            missing.append("PACT_PROVIDER_SETTLEMENT_TOKEN")
        problems = ["production mode requires " + ", ".join(missing)] if missing else []
        problems += self._production_refusals()
        if problems:
            raise ValueError("\n".join(problems))  # one line each
        return self

    def _production_refusals(self) -> list[str]:
        """What production refuses besides missing secrets (README "Production refusals")."""
        problems = []
        token = _secret(self.settlement_token)
        if token and (weakness := token_weakness(token)) is not None:
            problems.append(f"PACT_PROVIDER_SETTLEMENT_TOKEN is too weak: {weakness}")
        url = self.settlement_url or ""
        if url.startswith("http://") and not self.allow_plaintext_settlement:
            problems.append(
                "PACT_PROVIDER_SETTLEMENT_URL is plaintext http://, so the settlement token "
                "would travel unencrypted: use https://, or set "
                "PACT_PROVIDER_ALLOW_PLAINTEXT_SETTLEMENT=true for in-cluster traffic"
            )
        if self.fulfilment == "demo" and not self.sells_own_api:
            problems.append(
                "PACT_PROVIDER_FULFILMENT=demo (the default) delivers made-up demo payloads: "
                "set PACT_PROVIDER_UPSTREAM_URL (your API), PACT_PROVIDER_FULFILMENT_MODULE, "
                "or PACT_PROVIDER_FULFILMENT=none (another process delivers)"
            )
        return problems

    @property
    def sells_own_api(self) -> bool:
        """True when the seller's own handlers deliver (an upstream API or a module)."""
        return bool(self.upstream_url or self.fulfilment_module)

    @property
    def has_signing_key(self) -> bool:
        """True when SIGNING_KEY_FILE or a non-blank SIGNING_KEY is configured."""
        return self.signing_key_file is not None or bool(_secret(self.signing_key))

    @property
    def quote_store_url_value(self) -> str | None:
        return _secret(self.quote_store_url) or None

    @property
    def settlement_token_value(self) -> str | None:
        return _secret(self.settlement_token) or None


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""
