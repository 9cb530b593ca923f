"""Settings: one pydantic-settings class, env prefix ``PACT_SETTLEMENT_``.

Every field is documented here and in the README's settings table. Outside ``development``
the class refuses missing tokens, the documented development tokens, and an empty provider
allow-list, so a production pod can never start with a placeholder secret.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pact_schema.http_settings import HttpServerSettings
from pact_schema.keys import SECRET_KEY_BYTES, KeyFormatError, PublicKeyB58, b58decode
from pact_schema.token_policy import token_weakness
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pact_settlement.rails.evm.settings import EvmSettings
from pact_settlement.rails.ledger import LedgerSettings
from pact_settlement.rails.stripe.settings import StripeSettings

__all__ = ["DEV_ADMIN_TOKEN", "DEV_API_TOKEN", "RAIL_SETTINGS", "Environment", "SettlementSettings"]

log = logging.getLogger(__name__)

#: Development-only token defaults (documented in the README). Refused outside development.
DEV_API_TOKEN = "dev-settlement-api-token"  # noqa: S105 - documented placeholder, refused in prod
DEV_ADMIN_TOKEN = "dev-settlement-admin-token"  # noqa: S105 - documented placeholder


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


#: Rails with settings of their own: ``settings.<name>``, variables ``PACT_SETTLEMENT_<NAME>_*``.
RAIL_SETTINGS = ("ledger", "stripe", "evm")


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SettlementSettings(BaseSettings, HttpServerSettings):
    """Configuration of the settlement service (env vars ``PACT_SETTLEMENT_<FIELD>``)."""

    model_config = SettingsConfigDict(
        env_prefix="PACT_SETTLEMENT_",
        env_file=None,
        # PACT_SETTLEMENT_STRIPE_API_KEY → stripe.api_key: split once, after the rail's name.
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        validate_default=True,
        # Never echo a value in an error: a model-level check would print every setting read,
        # tokens and keys included (pact_schema.settings_errors renders the errors).
        hide_input_in_errors=True,
    )

    env: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="development | test | production. Production refuses dev defaults.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy async URL (postgresql+asyncpg://… or sqlite+aiosqlite:///…); a secret "
            "(it carries the password). Unset: an embedded SQLite file at SQLITE_PATH "
            "(refused in production: name the database explicitly)."
        ),
    )
    sqlite_path: Path = Field(
        default=Path(".dev/settlement.sqlite3"),
        description="SQLite file used when DATABASE_URL is unset (relative to the working dir).",
    )
    auto_migrate: bool | None = Field(
        default=None,
        description=(
            "Run `alembic upgrade head` at startup. Unset: yes for SQLite, no for Postgres "
            "(run `pact-settlement migrate`, e.g. as a k8s Job, before the pods start)."
        ),
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the provider (create settlements, read).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of operators (deposits, read). Must differ from API_TOKEN.",
    )
    provider_keys: Annotated[list[PublicKeyB58], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base58 Ed25519 keys whose ASKs this service honours "
        "(each exactly a 32-byte key in canonical base58).",
    )
    default_rail: str = Field(default="ledger", description="Rail used when a request names none.")
    enabled_rails: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ledger"],
        description="Comma-separated rails a request may name.",
    )
    max_clock_skew_ms: int = Field(
        default=5_000,
        ge=0,
        le=600_000,
        description="Grace for clock differences when checking quote/ACCEPT validity windows.",
    )
    require_seller_bond: bool = Field(
        default=True,
        description="Lock the quote's bond_required from the seller (the provider key's "
        "account) beside the buyer's funds, on rails that can hold a bond (ledger, evm); the "
        "stripe rail cannot (a card authorisation holds only the buyer's money), so its "
        "settlements carry none. A seller who cannot cover the bond is refused "
        "(BOND_INSUFFICIENT) and nothing is locked.",
    )
    max_delivery_window_ms: int = Field(
        default=86_400_000,
        gt=0,
        description="Refuse ACCEPTs whose delivery_deadline_ms is further away than this.",
    )
    max_challenge_window_ms: int = Field(
        default=86_400_000,
        ge=0,
        description="Refuse ACCEPTs whose challenge_window_ms is longer than this.",
    )
    commit_grace_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=3_600_000,
        description="How long after its quote expires a locked settlement may still get the "
        "seller's COMMIT (a buyer may resend its ACCEPT while the quote is valid; the provider "
        "then delivers). No COMMIT by then (or by the delivery deadline, if sooner): refunded "
        "to the buyer, bond returned, COMMIT_WINDOW_MISSED.",
    )
    db_pool_size: int = Field(default=10, ge=1, description="Postgres connection pool size.")
    db_max_overflow: int = Field(default=10, ge=0, description="Extra Postgres connections.")
    db_pool_timeout_s: float = Field(
        default=2.0, gt=0, description="Seconds to wait for a pooled connection before 503."
    )
    db_lock_timeout_ms: int = Field(
        default=2_000,
        ge=0,
        description="Postgres lock_timeout for requests (0: none); a longer wait answers 503.",
    )
    db_statement_timeout_ms: int = Field(
        default=3_000,
        ge=0,
        description="Postgres statement_timeout for requests (0: none). Not applied to migrate.",
    )
    db_idle_in_transaction_timeout_ms: int = Field(
        default=60_000,
        ge=0,
        description=(
            "Postgres idle_in_transaction_session_timeout (0: none): the server ends a session "
            "left idle inside a transaction (a frozen or partitioned process) and frees its "
            "locks. Must exceed RAIL_CALL_TIMEOUT_S and REQUEST_TIMEOUT_S."
        ),
    )
    db_command_timeout_s: float = Field(
        default=4.0,
        gt=0,
        le=600,
        description=(
            "Client-side bound on connecting and on any one database command (asyncpg "
            "command_timeout): what ends a command when the server cannot answer at all "
            "(frozen, partitioned). Must exceed DB_STATEMENT_TIMEOUT_MS."
        ),
    )
    request_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description=(
            "Budget of one HTTP request, end to end: past it the answer is 503 "
            "DEADLINE_EXCEEDED with Retry-After and the request's transaction is rolled back. "
            "Keep it below the provider's SETTLEMENT_TIMEOUT_S."
        ),
    )
    write_refusal_hold_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "/readyz answers 503 this long after the database last refused a write (read-only, "
            "disk full): such a database still connects and reads."
        ),
    )
    max_body_bytes: int = Field(
        default=262_144, ge=1024, description="Largest request body accepted (413 above)."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=15_000, ge=0, description="How long a SQLite writer waits for the write lock."
    )
    # -- per rail: each rail owns its settings model; the variables keep their flat names ----
    ledger: LedgerSettings = Field(
        default_factory=LedgerSettings,
        description="The ledger rail (PACT_SETTLEMENT_LEDGER_<FIELD>).",
    )
    stripe: StripeSettings = Field(
        default_factory=StripeSettings,
        description="The stripe rail (PACT_SETTLEMENT_STRIPE_<FIELD>).",
    )
    evm: EvmSettings = Field(
        default_factory=EvmSettings,
        description="The evm rail (PACT_SETTLEMENT_EVM_<FIELD>).",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description=(
            "Key file (pact-keypair/1 JSON or a bare base58 seed) of the settlement service's "
            "own Ed25519 key, which signs RECEIPTs. Unset in development: generated once into "
            "`settlement-signing.key` next to the SQLite file and reused (with a warning); in "
            "test: an ephemeral key; in production the service refuses to start without this "
            "or SIGNING_KEY (`migrate` does not need it)."
        ),
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="The RECEIPT signing key as a base58 32-byte seed (instead of a file).",
    )
    workers_enabled: bool = Field(
        default=True,
        description="Run the deadline sweeper and the reconciler inside the app (asyncio tasks).",
    )
    sweep_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Seconds between sweeps (expired deadlines, closed challenge windows).",
    )
    reconcile_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between reconciler passes."
    )
    reconcile_grace_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "A pending rail operation is left to its caller this long before the reconciler "
            "takes it; must exceed RAIL_CALL_TIMEOUT_S."
        ),
    )
    rail_call_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for one external rail call; then the operation stays pending.",
    )
    rail_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description=(
            "Attempts per rail operation (first call, reconciler retries, sweeps re-opening a "
            "failed release/refund/slash) before it is left to an operator."
        ),
    )
    worker_max_backoff_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Longest pause of a worker whose passes fail because the database is unavailable "
            "or refuses writes (the pause doubles from its interval up to this)."
        ),
    )
    webhook_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="Seconds between outbound webhook passes."
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="Longest wait for an integrator's endpoint to answer one delivery.",
    )
    webhook_max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description=(
            "Deliveries of one event to one endpoint before it is marked failed (replayable)."
        ),
    )
    webhook_retry_base_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description=(
            "First retry pause of a failed delivery; doubles per attempt (capped at an hour), "
            "with full jitter."
        ),
    )
    webhook_allow_private_urls: bool = Field(
        default=False,
        description=(
            "Allow webhook endpoints on loopback/private/link-local addresses in production "
            "(refused there by default: SSRF). Other environments always allow them."
        ),
    )
    worker_batch_size: int = Field(
        default=100, ge=1, le=10_000, description="Settlements/operations per worker pass."
    )
    transcript_max_envelope_bytes: int = Field(
        default=65_536,
        ge=0,
        description=(
            "A REVEAL envelope larger than this (canonical JSON) is not kept in the transcript; "
            "its sha256 and size are, with the payload's."
        ),
    )
    log_level: str = Field(default="INFO", description="Python log level name.")
    log_json: bool = Field(default=True, description="JSON log lines (false: console format).")
    page_size_max: int = Field(default=100, ge=1, le=1000, description="Largest list page.")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        text = value.get_secret_value().strip()
        try:
            make_url(text)
        except (ArgumentError, ValueError):
            # sqlalchemy's message quotes the URL, password included: say it without it.
            raise ValueError(
                "PACT_SETTLEMENT_DATABASE_URL is not a SQLAlchemy URL "
                "(driver://user:password@host:port/database)"
            ) from None
        return SecretStr(text)

    @model_validator(mode="before")
    @classmethod
    def _rail_keywords(cls, data: Any) -> Any:
        """``stripe_api_key=…`` (the variable's own name) as ``stripe={"api_key": …}``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for rail in RAIL_SETTINGS:
            prefix = f"{rail}_"
            flat = {k[len(prefix) :]: data.pop(k) for k in list(data) if k.startswith(prefix)}
            if flat:
                nested = data.get(rail)
                if isinstance(nested, BaseModel):
                    nested = nested.model_dump()
                data[rail] = {**(nested or {}), **flat}
        return data

    @field_validator("provider_keys", "enabled_rails", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @model_validator(mode="after")
    def _check_secrets(self) -> Self:
        if self.default_rail not in self.enabled_rails:
            raise ValueError(f"DEFAULT_RAIL {self.default_rail!r} is not in ENABLED_RAILS")
        if self.env is Environment.DEVELOPMENT:
            defaults = []
            if self.api_token is None:
                self.api_token = SecretStr(DEV_API_TOKEN)
                defaults.append("PACT_SETTLEMENT_API_TOKEN")
            if self.admin_token is None:
                self.admin_token = SecretStr(DEV_ADMIN_TOKEN)
                defaults.append("PACT_SETTLEMENT_ADMIN_TOKEN")
            if defaults:
                log.warning(
                    "settlement.config.dev_tokens: %s unset; using the documented development "
                    "defaults (refused outside development)",
                    ", ".join(defaults),
                )
        elif self.env is Environment.PRODUCTION:
            problems = self._production_refusals()
            if problems:
                raise ValueError("\n".join(problems))
        else:
            for name, secret in (("API_TOKEN", self.api_token), ("ADMIN_TOKEN", self.admin_token)):
                if secret is None:
                    raise ValueError(f"PACT_SETTLEMENT_{name} is required in {self.env}")
                if secret.get_secret_value() in (DEV_API_TOKEN, DEV_ADMIN_TOKEN):
                    raise ValueError(
                        f"PACT_SETTLEMENT_{name} is a development default; set a real secret"
                    )
        assert self.api_token is not None
        assert self.admin_token is not None
        if self.api_token.get_secret_value() == self.admin_token.get_secret_value():
            raise ValueError("PACT_SETTLEMENT_API_TOKEN and ADMIN_TOKEN must differ")
        self._check_rails()
        self._check_workers()
        self._check_timeouts()
        return self

    # -- production refusals (one line each, README "Production refusals") ----------------

    def _production_refusals(self) -> list[str]:
        """Everything production mode refuses, one line per problem (no values quoted)."""
        problems = []
        for name, secret in (("API_TOKEN", self.api_token), ("ADMIN_TOKEN", self.admin_token)):
            value = secret.get_secret_value() if secret is not None else ""
            if not value.strip():
                problems.append(f"PACT_SETTLEMENT_{name} is required in production")
            elif value in (DEV_API_TOKEN, DEV_ADMIN_TOKEN):
                problems.append(
                    f"PACT_SETTLEMENT_{name} is a development default; set a real secret"
                )
            elif (weakness := token_weakness(value)) is not None:
                problems.append(f"PACT_SETTLEMENT_{name} is too weak: {weakness}")
        if not self.provider_keys:
            problems.append("PACT_SETTLEMENT_PROVIDER_KEYS is required in production")
        if self.database_url is None:
            # An explicit sqlite+aiosqlite:// URL stays possible (a deliberate single-node
            # install); the default is a file in the working directory nobody chose.
            problems.append(
                "PACT_SETTLEMENT_DATABASE_URL is unset: production refuses the embedded SQLite "
                "default database; set a PostgreSQL URL (postgresql+asyncpg://…)"
            )
        return problems

    def _check_timeouts(self) -> None:
        """The request budget's parts must nest (README "Failure behaviour")."""
        if self.db_statement_timeout_ms and (
            self.db_command_timeout_s * 1000 <= self.db_statement_timeout_ms
        ):
            raise ValueError(
                "PACT_SETTLEMENT_DB_COMMAND_TIMEOUT_S must exceed DB_STATEMENT_TIMEOUT_MS (the "
                "server's own timeout should end a slow statement cleanly first)"
            )
        longest_ms = max(self.rail_call_timeout_s, self.request_timeout_s) * 1000
        if self.db_idle_in_transaction_timeout_ms and (
            self.db_idle_in_transaction_timeout_ms <= longest_ms
        ):
            raise ValueError(
                "PACT_SETTLEMENT_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS must exceed "
                "RAIL_CALL_TIMEOUT_S and REQUEST_TIMEOUT_S"
            )

    def _check_workers(self) -> None:
        if self.reconcile_grace_s <= self.rail_call_timeout_s:
            raise ValueError(
                "PACT_SETTLEMENT_RECONCILE_GRACE_S must exceed RAIL_CALL_TIMEOUT_S (the reconciler "
                "must not take an operation whose first call may still be running)"
            )
        if self.signing_key is not None:
            try:
                raw = b58decode(
                    self.signing_key.get_secret_value().strip(), max_bytes=SECRET_KEY_BYTES
                )
            except KeyFormatError as exc:
                raise ValueError("PACT_SETTLEMENT_SIGNING_KEY is not base58") from exc
            if len(raw) not in (32, 64):
                raise ValueError("PACT_SETTLEMENT_SIGNING_KEY must be a 32-byte base58 seed")

    def _check_rails(self) -> None:
        """An enabled external rail must be able to work; production needs its webhooks too."""
        production = self.env is Environment.PRODUCTION
        if "stripe" in self.enabled_rails:
            if not self.stripe.configured:
                raise ValueError("PACT_SETTLEMENT_STRIPE_API_KEY is required for the stripe rail")
            if production and (
                self.stripe.webhook_secret is None
                or not self.stripe.webhook_secret.get_secret_value()
            ):
                raise ValueError(
                    "PACT_SETTLEMENT_STRIPE_WEBHOOK_SECRET is required in production for the "
                    "stripe rail"
                )
            held_ms = self.max_delivery_window_ms + self.max_challenge_window_ms
            if held_ms > (7 * 86_400 - self.stripe.capture_margin_s) * 1000:
                log.warning(
                    "settlement.config.stripe_hold_window: MAX_DELIVERY_WINDOW_MS + "
                    "MAX_CHALLENGE_WINDOW_MS exceed the card authorisation validity minus "
                    "STRIPE_CAPTURE_MARGIN_S; the sweeper will capture or cancel such "
                    "settlements before their authorisation expires"
                )
        for rail, missing in (
            ("evm", self.evm.missing()),
            ("evm-erc20", self.evm.missing_token()),
        ):
            if rail not in self.enabled_rails:
                continue
            if production and self.evm.chain_id is None:
                missing.append("EVM_CHAIN_ID")
            if missing:
                raise ValueError(
                    f"the {rail} rail needs "
                    + ", ".join(f"PACT_SETTLEMENT_{name}" for name in missing)
                )
        evm_enabled = bool({"evm", "evm-erc20"} & set(self.enabled_rails))
        if evm_enabled and self.evm.receipt_timeout_s >= self.rail_call_timeout_s:
            log.warning(
                "settlement.config.evm_timeouts: EVM_RECEIPT_TIMEOUT_S (%s) is not below "
                "RAIL_CALL_TIMEOUT_S (%s): a lock waiting for its confirmations is answered "
                "202 (pending) and finished by the reconciler",
                self.evm.receipt_timeout_s,
                self.rail_call_timeout_s,
            )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.sqlite_path}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate
