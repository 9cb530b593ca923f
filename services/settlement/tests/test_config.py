"""Settings refuse development defaults outside development."""

from __future__ import annotations

import logging

import pytest
from pact_settlement.config import DEV_ADMIN_TOKEN, DEV_API_TOKEN, SettlementSettings
from pydantic import ValidationError

KEY = "4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi"  # 32 bytes, base58
STRONG_A = "pV3x9QeL0tKzR7wNa2Bc5YhJ8mUo4GfD1sTiE6rW"
STRONG_B = "qM8c2ZkP5vXn1RbHe7LwT0yQa4JgS9uFo3DiC6tN"
DATABASE = "postgresql+asyncpg://pact:pw@db.internal:5432/pact"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PACT_SETTLEMENT_"):
            monkeypatch.delenv(name)


def test_development_uses_documented_dev_tokens_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        settings = SettlementSettings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == DEV_API_TOKEN
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == DEV_ADMIN_TOKEN
    assert "dev_tokens" in caplog.text
    assert settings.resolved_database_url == "sqlite+aiosqlite:///.dev/settlement.sqlite3"
    assert settings.should_auto_migrate is True
    assert settings.max_clock_skew_ms == 5000
    assert settings.require_seller_bond is True  # the seller's bond is held where a rail can


def test_env_vars_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACT_SETTLEMENT_PROVIDER_KEYS", f" {KEY} ,")
    monkeypatch.setenv("PACT_SETTLEMENT_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    monkeypatch.setenv("PACT_SETTLEMENT_REQUIRE_SELLER_BOND", "false")
    settings = SettlementSettings()
    assert settings.provider_keys == [KEY]
    assert settings.require_seller_bond is False
    assert settings.should_auto_migrate is False


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"api_token": STRONG_A},
        {"api_token": DEV_API_TOKEN, "admin_token": STRONG_B},
        {"api_token": STRONG_A, "admin_token": "short"},
        {"api_token": STRONG_A, "admin_token": STRONG_A},
        {"api_token": STRONG_A, "admin_token": STRONG_B, "provider_keys": []},
    ],
)
def test_production_refuses_missing_or_placeholder_secrets(overrides: dict[str, object]) -> None:
    values: dict[str, object] = {
        "env": "production",
        "provider_keys": [KEY],
        "database_url": DATABASE,
        **overrides,
    }
    with pytest.raises(ValidationError):
        SettlementSettings(**values)  # type: ignore[arg-type]


def test_production_accepts_real_secrets() -> None:
    settings = SettlementSettings(
        env="production",  # type: ignore[arg-type]
        api_token=STRONG_A,  # type: ignore[arg-type]
        admin_token=STRONG_B,  # type: ignore[arg-type]
        provider_keys=[KEY],
        database_url=DATABASE,  # type: ignore[arg-type]
    )
    assert settings.env == "production"


def test_bad_provider_keys_and_rails_are_refused() -> None:
    with pytest.raises(ValidationError):
        SettlementSettings(provider_keys=["not-base58-0OIl"])
    with pytest.raises(ValidationError):
        SettlementSettings(provider_keys=["abc"])
    with pytest.raises(ValidationError):
        SettlementSettings(default_rail="stripe")


def test_the_request_budget_nests_inside_the_providers() -> None:
    """Issue 13 item 2: a request ends (503 at worst) before the provider stops waiting, and
    each database bound fits inside the request's budget."""
    from pact_provider.config import ProviderSettings

    settings = SettlementSettings()
    provider_budget = ProviderSettings.model_fields["settlement_timeout_s"].default
    assert settings.request_timeout_s < provider_budget
    assert settings.db_pool_timeout_s < settings.request_timeout_s
    assert settings.db_lock_timeout_ms < settings.db_statement_timeout_ms
    assert settings.db_statement_timeout_ms < settings.db_command_timeout_s * 1000
    assert settings.db_command_timeout_s < settings.request_timeout_s


@pytest.mark.parametrize(
    "overrides",
    [
        {"db_statement_timeout_ms": 5_000, "db_command_timeout_s": 5},
        {"db_idle_in_transaction_timeout_ms": 20_000},  # not above RAIL_CALL_TIMEOUT_S (30 s)
        {
            "db_idle_in_transaction_timeout_ms": 9_000,
            "rail_call_timeout_s": 5,
            "request_timeout_s": 10,
        },
        {"request_timeout_s": 90},  # the idle-in-transaction bound would be shorter
    ],
)
def test_timeouts_that_do_not_nest_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="must exceed"):
        SettlementSettings(**overrides)  # type: ignore[arg-type]


def test_the_erc20_rail_names_what_it_is_missing_and_reads_its_token_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACT_SETTLEMENT_ENABLED_RAILS", "ledger,evm-erc20")
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_RPC_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_OPERATOR_KEY", "0x" + "11" * 32)
    with pytest.raises(ValidationError) as info:
        SettlementSettings()
    text = str(info.value)
    assert "the evm-erc20 rail needs" in text
    assert "PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS" in text
    assert "PACT_SETTLEMENT_EVM_TOKEN_ADDRESS" in text
    assert "EVM_CONTRACT_ADDRESS" not in text  # the native escrow is not needed for it

    escrow = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS", escrow)
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_TOKEN_ADDRESS", escrow.lower())
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_TOKEN_DECIMALS", "6")
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_TOKEN_SYMBOL", "USDC")
    evm = SettlementSettings().evm
    assert (evm.token_escrow_address, evm.token_address) == (escrow, escrow)  # checksummed
    assert (evm.token_decimals, evm.token_symbol) == (6, "USDC")


def test_a_token_address_with_a_wrong_checksum_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "PACT_SETTLEMENT_EVM_TOKEN_ADDRESS", "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    )
    with pytest.raises(ValidationError, match="EVM_TOKEN_ADDRESS"):
        SettlementSettings()
