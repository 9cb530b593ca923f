"""Configuration errors never show any part of a secret, for every secret setting.

The secret settings are enumerated from ``ProviderSettings`` (every ``SecretStr`` field), so a
new one is covered as soon as it exists. Each is given a fresh random value and started through
``pact-provider serve`` (the CLI's entry function) with a configuration that fails: (a) another
check of the model fails, which made pydantic print every value it had read; (b) production
refuses the configuration; (c) the secret itself is malformed. No 6-character piece of the
secret may appear on stdout, stderr or in a log record.
"""

from __future__ import annotations

import logging
import secrets
import typing
from typing import Any

import pytest
from pact_provider import cli
from pact_provider.config import ProviderSettings
from pact_schema.keys import b58encode
from pydantic import SecretStr, ValidationError

SETTINGS = ProviderSettings
PREFIX = "PACT_PROVIDER_"
EXPECTED_SECRETS = {"settlement_token", "signing_key", "quote_store_url"}


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


SECRET_FIELDS = sorted(
    name for name, info in SETTINGS.model_fields.items() if _is_secret(info.annotation)
)


def _candidates() -> list[tuple[str, str]]:
    """(value, its secret part) in each shape secrets take here, freshly random."""
    seed = b58encode(secrets.token_bytes(32))
    token = secrets.token_urlsafe(32)
    password = secrets.token_hex(16)  # a Redis URL's password
    return [(token, token), (seed, seed), (f"redis://:{password}@redis:6379/0", password)]


def _well_formed(field: str) -> tuple[str, str]:
    for value, secret in _candidates():
        try:
            SETTINGS(**{field: value})
        except ValidationError:
            continue
        return value, secret
    raise AssertionError(f"no well-formed sample for {field}: add its shape to _candidates()")


def _leaked(secret: str, text: str, size: int = 6) -> list[str]:
    pieces = {secret[i : i + size] for i in range(len(secret) - size + 1)}
    return sorted(piece for piece in pieces if piece in text)


@pytest.fixture(autouse=True)
def _never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(config: Any) -> int:
        raise AssertionError("the configuration was accepted: a server would have started")

    monkeypatch.setattr(cli, "run_server", never)


def test_every_secret_setting_is_a_secret_str() -> None:
    assert set(SECRET_FIELDS) >= EXPECTED_SECRETS


SCENARIOS: dict[str, dict[str, str]] = {
    "another-check-fails": {"QUOTE_GRACE_MS": "6000", "MAX_CLOCK_SKEW_MS": "5000"},
    "production-refusal": {"ENV": "production", "SETTLEMENT_URL": "http://settlement:8001"},
    "malformed": {"QUOTE_GRACE_MS": "6000", "MAX_CLOCK_SKEW_MS": "5000"},
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("field", SECRET_FIELDS)
def test_configuration_errors_never_show_a_secret(
    field: str,
    scenario: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    value, secret = _well_formed(field)
    if scenario == "malformed":
        value = value.replace(secret, "!" + secret + "/")
    for name, setting in SCENARIOS[scenario].items():
        monkeypatch.setenv(PREFIX + name, setting)
    monkeypatch.setenv(PREFIX + field.upper(), value)
    with caplog.at_level(logging.DEBUG):
        code = cli.main(["serve"])
    out = capsys.readouterr()
    shown = out.out + out.err + caplog.text
    assert code == cli.EXIT_CONFIG, shown
    assert "configuration error" in out.err
    assert not _leaked(secret, shown), shown


def test_a_malformed_signing_key_is_refused_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key is checked when the app is built (not by the settings class): same rule."""
    secret = b58encode(secrets.token_bytes(32))
    monkeypatch.setenv(PREFIX + "SIGNING_KEY", secret[:20] + "0OIl" + secret[20:])
    assert cli.main(["serve"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "cannot load the provider signing key" in err
    assert not _leaked(secret, err)
    assert "Invalid character" not in err  # not even the one character that is not base58
