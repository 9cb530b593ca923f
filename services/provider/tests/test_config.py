"""Settings: production refuses to start without secrets; keys, lists and price books."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.provider import PROVIDER, SETTLEMENT_TOKEN, SETTLEMENT_URL
from pact_provider.app import create_app
from pact_provider.config import ConfigError, ProviderSettings
from pact_provider.identity import load_identity
from pact_schema import Keypair
from pact_schema.keys import b58encode
from pydantic import ValidationError

STRONG_TOKEN = "Wq3bq9s1xQd0P4uVnZkT7yHc2LmR8eJfA6oGiXw5"


def _production(**values: object) -> ProviderSettings:
    return ProviderSettings(env="production", **values)  # type: ignore[arg-type]


def test_development_is_the_default_and_needs_nothing() -> None:
    settings = ProviderSettings()
    assert settings.env == "development"
    identity = load_identity(settings)
    assert identity.ephemeral


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({}, "SIGNING_KEY"),
        ({"settlement_url": SETTLEMENT_URL, "settlement_token": SETTLEMENT_TOKEN}, "SIGNING_KEY"),
        ({"signing_key": "x", "settlement_token": SETTLEMENT_TOKEN}, "SETTLEMENT_URL"),
        ({"signing_key": "x", "settlement_url": SETTLEMENT_URL}, "SETTLEMENT_TOKEN"),
        (
            {"signing_key": "x", "settlement_url": SETTLEMENT_URL, "settlement_token": "  "},
            "SETTLEMENT_TOKEN",
        ),
    ],
)
def test_production_refuses_to_start_without_key_url_and_token(
    values: dict[str, object], missing: str
) -> None:
    with pytest.raises(ValidationError, match=missing):
        _production(**values)


def test_production_refuses_through_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACT_PROVIDER_ENV", "production")
    with pytest.raises(ValidationError, match="production mode requires"):
        create_app()


def test_production_starts_with_key_url_and_token(tmp_path: Path) -> None:
    key_file = tmp_path / "provider.json"
    PROVIDER.save(key_file)
    settings = _production(
        signing_key_file=key_file,
        settlement_url="https://settlement.test",
        settlement_token=STRONG_TOKEN,
        fulfilment="none",
    )
    identity = load_identity(settings)
    assert identity.keypair.public_key_b58 == PROVIDER.public_key_b58
    assert not identity.ephemeral
    create_app(settings)


def test_production_never_generates_a_key_even_when_validation_is_bypassed() -> None:
    settings = ProviderSettings.model_construct(env="production", previous_keys=[])
    with pytest.raises(ConfigError):
        load_identity(settings)


def test_signing_key_from_env_as_base58_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACT_PROVIDER_SIGNING_KEY", b58encode(PROVIDER.seed))
    identity = load_identity(ProviderSettings())
    assert identity.public_key_b58 == PROVIDER.public_key_b58


def test_unreadable_or_bad_keys_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load"):
        load_identity(ProviderSettings(signing_key_file=tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="cannot load"):
        load_identity(ProviderSettings(signing_key="not-base58-0OIl"))


def test_previous_keys_are_comma_separated_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    other = Keypair.generate().public_key_b58
    monkeypatch.setenv("PACT_PROVIDER_PREVIOUS_KEYS", f" {other} ,")
    identity = load_identity(ProviderSettings(), PROVIDER)
    assert identity.trusted_keys == {PROVIDER.public_key_b58, other}
    for bad in ["abc", f"{other}\n", f"1{other}", "z" * 10_000]:
        with pytest.raises(ValidationError, match="previous_keys"):
            ProviderSettings(previous_keys=[bad])


def test_lists_and_price_book_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACT_PROVIDER_SETTLEMENT_MODES", "hash_reveal")
    monkeypatch.setenv("PACT_PROVIDER_PRICES", '{"weather.data": "0.00009", "x.y": 0.5}')
    monkeypatch.setenv("PACT_PROVIDER_SETTLEMENT_URL", "http://settlement:8001/")
    settings = ProviderSettings()
    assert settings.settlement_modes == ["hash_reveal"]
    assert str(settings.prices["weather.data"]) == "0.00009"
    assert settings.settlement_url == "http://settlement:8001"


@pytest.mark.parametrize(
    "values",
    [
        {"quote_valid_for_ms": 19_999},
        {"quote_valid_for_ms": 200_001},
        {"max_rounds": 4},
        {"price_floor_ratio": "1.5"},
        {"prices": {"a": "0"}},
        {"settlement_url": "ftp://x"},
        {"settlement_modes": ""},
        {"quote_grace_ms": 6_000},
        {"env": "staging"},
    ],
)
def test_invalid_policy_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProviderSettings(**values)  # type: ignore[arg-type]
