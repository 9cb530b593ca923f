"""Configuration errors never show any part of a secret, for every secret setting.

The secret settings are enumerated from ``SettlementSettings`` (every ``SecretStr`` field, the
rails' nested settings included), so a
new one is covered as soon as it exists. Each is given a fresh random value and started through
``pact-settlement serve`` and ``migrate`` (the CLI's entry function) with a configuration that
fails: (a) another check of the model fails, which made pydantic print every value it had read;
(b) production refuses the configuration; (c) the secret itself is malformed. No 6-character
piece of the secret may appear on stdout, stderr or in a log record.
"""

from __future__ import annotations

import logging
import os
import secrets
import typing
from typing import Any

import pytest
from pact_schema.keys import b58encode
from pact_settlement import cli
from pact_settlement.config import SettlementSettings
from pydantic import BaseModel, SecretStr, ValidationError

SETTINGS = SettlementSettings
PREFIX = "PACT_SETTLEMENT_"
EXPECTED_SECRETS = {
    "admin_token",
    "api_token",
    "database_url",
    "evm_operator_key",
    "evm_rpc_url",
    "signing_key",
    "stripe_api_key",
    "stripe_webhook_secret",
}


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _secret_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every SecretStr setting by its variable's name, those of each rail's nested model too
    (``stripe`` → ``api_key``: ``stripe_api_key``)."""
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _secret_fields(annotation, f"{prefix}{name}_")
        elif _is_secret(annotation):
            names.append(prefix + name)
    return names


SECRET_FIELDS = sorted(_secret_fields(SETTINGS))


def _candidates() -> list[tuple[str, str]]:
    """(value, its secret part) in each shape secrets take here, freshly random."""
    password = secrets.token_hex(16)
    hex_key = secrets.token_hex(32)
    seed = b58encode(secrets.token_bytes(32))
    token = secrets.token_urlsafe(32)
    return [
        (token, token),
        (seed, seed),
        ("0x" + hex_key, hex_key),
        (f"postgresql+asyncpg://pact:{password}@db.internal:5432/pact", password),
    ]


def _well_formed(field: str) -> tuple[str, str]:
    """A value the field accepts on its own, so what leaks is not its own error's echo."""
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
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    import pact_schema.serving

    def never(config: Any) -> int:
        raise AssertionError("the configuration was accepted: a server would have started")

    monkeypatch.setattr(pact_schema.serving, "run_server", never)


def test_every_secret_setting_is_a_secret_str() -> None:
    assert set(SECRET_FIELDS) >= EXPECTED_SECRETS


SCENARIOS: dict[str, dict[str, str]] = {
    # another check fails: pydantic used to print the whole input, secrets included
    "another-check-fails": {"ENV": "test", "DEFAULT_RAIL": "stripe"},
    # production refuses what it was given
    "production-refusal": {"ENV": "production"},
    # the secret itself is malformed (and another check fails, should it be accepted)
    "malformed": {"ENV": "test", "DEFAULT_RAIL": "stripe"},
}


@pytest.mark.parametrize("command", ["serve", "migrate"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("field", SECRET_FIELDS)
def test_configuration_errors_never_show_a_secret(
    field: str,
    scenario: str,
    command: str,
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
        try:
            code = cli.main([command])
        except SystemExit as exc:
            code = int(exc.code or 0)
    out = capsys.readouterr()
    shown = out.out + out.err + caplog.text
    assert code == cli.EXIT_USAGE, shown
    assert "configuration error" in out.err
    assert not _leaked(secret, shown), shown
