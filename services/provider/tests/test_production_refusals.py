"""`pact-provider serve` in production refuses unsafe settings: one clear line each.

Weak settlement tokens (README "Production refusals": pact_schema.token_policy), a plaintext
settlement URL unless PACT_PROVIDER_ALLOW_PLAINTEXT_SETTLEMENT says it is in-cluster traffic,
and the demo fulfilment (explicit or by default).
"""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.provider import PROVIDER
from pact_provider import cli
from pact_schema.keys import b58encode

STRONG_TOKEN = "Wq3bq9s1xQd0P4uVnZkT7yHc2LmR8eJfA6oGiXw5"
PRODUCTION = {
    "PACT_PROVIDER_ENV": "production",
    "PACT_PROVIDER_SIGNING_KEY": b58encode(PROVIDER.seed),
    "PACT_PROVIDER_SETTLEMENT_URL": "https://settlement.internal:8001",
    "PACT_PROVIDER_SETTLEMENT_TOKEN": STRONG_TOKEN,
    "PACT_PROVIDER_FULFILMENT": "none",
}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the server would have been started with (nothing listens in these tests)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run_server", lambda config: calls.append({"config": config}) or 0)
    return calls


def _serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str | None
) -> tuple[int, list[str]]:
    for name, value in {**PRODUCTION, **env}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    code = cli.main(["serve"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_safe_production_configuration_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    code, err = _serve(monkeypatch, capsys)
    assert (code, err) == (0, [])
    assert len(served) == 1


@pytest.mark.parametrize(
    ("env", "variable", "reason"),
    [
        ({"PACT_PROVIDER_SETTLEMENT_TOKEN": "x" * 47 + "y"}, "SETTLEMENT_TOKEN", "entropy"),
        ({"PACT_PROVIDER_SETTLEMENT_TOKEN": "Zx9-Qw2"}, "SETTLEMENT_TOKEN", "fewer than 32"),
        (
            {"PACT_PROVIDER_SETTLEMENT_TOKEN": "0123456789abcdefghij" * 2},
            "SETTLEMENT_TOKEN",
            "repeated",
        ),
        (
            {"PACT_PROVIDER_SETTLEMENT_TOKEN": "change-me-settlement-api-token-at-least-24-chars"},
            "SETTLEMENT_TOKEN",
            "placeholder",
        ),
        (
            {"PACT_PROVIDER_SETTLEMENT_URL": "http://settlement.internal:8001"},
            "SETTLEMENT_URL",
            "ALLOW_PLAINTEXT_SETTLEMENT",
        ),
        ({"PACT_PROVIDER_FULFILMENT": "demo"}, "FULFILMENT=demo", "demo payloads"),
        ({"PACT_PROVIDER_FULFILMENT": None}, "FULFILMENT=demo (the default)", "demo payloads"),
    ],
)
def test_production_refuses_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[Any],
    env: dict[str, str | None],
    variable: str,
    reason: str,
) -> None:
    code, err = _serve(monkeypatch, capsys, **env)
    assert code == cli.EXIT_CONFIG
    assert len(err) == 1, err
    assert err[0].startswith(f"pact-provider: configuration error: PACT_PROVIDER_{variable}")
    assert reason in err[0]
    assert not served


def test_plaintext_settlement_is_allowed_when_declared_in_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    code, err = _serve(
        monkeypatch,
        capsys,
        PACT_PROVIDER_SETTLEMENT_URL="http://pact-settlement:8001",
        PACT_PROVIDER_ALLOW_PLAINTEXT_SETTLEMENT="true",
    )
    assert (code, err) == (0, [])


def test_every_refusal_gets_its_own_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    code, err = _serve(
        monkeypatch,
        capsys,
        PACT_PROVIDER_SETTLEMENT_TOKEN="a" * 40,
        PACT_PROVIDER_SETTLEMENT_URL="http://settlement:8001",
        PACT_PROVIDER_FULFILMENT=None,
    )
    assert code == cli.EXIT_CONFIG
    assert [line.split(": ")[2].split(" ")[0] for line in err] == [
        "PACT_PROVIDER_SETTLEMENT_TOKEN",
        "PACT_PROVIDER_SETTLEMENT_URL",
        "PACT_PROVIDER_FULFILMENT=demo",
    ]
