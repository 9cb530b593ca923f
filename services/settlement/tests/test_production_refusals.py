"""`pact-settlement serve`/`migrate` in production refuse unsafe settings, one clear line each:
the embedded SQLite default database and weak, placeholder or development tokens
(pact_schema.token_policy). And GET /v1/whoami, the authenticated call the provider's /readyz
makes to prove its token."""

from __future__ import annotations

from typing import Any

import pytest
from pact_schema import Keypair
from pact_schema.keys import b58encode
from pact_settlement import cli
from pact_settlement.config import DEV_API_TOKEN

API = "aT4vQ9xL2mR7cK0pZ5wN8bE3yH6jU1sDqW"
ADMIN = "bG7nW2qX9kF4tM0vJ5rC8zL3hS6pY1dAeR"
PRODUCTION = {
    "PACT_SETTLEMENT_ENV": "production",
    "PACT_SETTLEMENT_API_TOKEN": API,
    "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN,
    "PACT_SETTLEMENT_PROVIDER_KEYS": Keypair(bytes(range(1, 33))).public_key_b58,
    "PACT_SETTLEMENT_SIGNING_KEY": b58encode(bytes(range(2, 34))),
    "PACT_SETTLEMENT_DATABASE_URL": "postgresql+asyncpg://pact:pw@db.internal:5432/pact",
}


@pytest.fixture(autouse=True)
def _production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PACT_SETTLEMENT_"):
            monkeypatch.delenv(name)
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What `serve` would have run (no server listens in these tests)."""
    import pact_schema.serving

    calls: list[Any] = []
    monkeypatch.setattr(pact_schema.serving, "run_server", lambda config: calls.append(config) or 0)
    return calls


def _start(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: Any
) -> tuple[int, list[str]]:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(f"PACT_SETTLEMENT_{name}", raising=False)
        else:
            monkeypatch.setenv(f"PACT_SETTLEMENT_{name}", value)
    try:
        code = cli.main([command])
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_safe_production_configuration_serves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    assert _start("serve", monkeypatch, capsys) == (0, [])
    assert len(served) == 1


@pytest.mark.parametrize("command", ["serve", "migrate"])
@pytest.mark.parametrize(
    ("env", "variable", "reason"),
    [
        ({"DATABASE_URL": None}, "DATABASE_URL", "refuses the embedded SQLite default"),
        ({"API_TOKEN": "t" * 40}, "API_TOKEN", "repeated"),
        ({"ADMIN_TOKEN": "admin-" + "a" * 30}, "ADMIN_TOKEN", "entropy"),
        ({"ADMIN_TOKEN": "Qx8-short-Tz3"}, "ADMIN_TOKEN", "fewer than 32"),
        (
            {"API_TOKEN": "change-me-settlement-api-token-at-least-24-chars"},
            "API_TOKEN",
            "placeholder",
        ),
        ({"API_TOKEN": DEV_API_TOKEN}, "API_TOKEN", "development default"),
        ({"PROVIDER_KEYS": None}, "PROVIDER_KEYS", "required in production"),
    ],
)
def test_production_refuses_with_one_clear_line(
    command: str,
    env: dict[str, str | None],
    variable: str,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[Any],
) -> None:
    code, err = _start(command, monkeypatch, capsys, **env)
    assert code == cli.EXIT_USAGE
    assert len(err) == 1, err
    assert err[0].startswith(f"pact-settlement: configuration error: PACT_SETTLEMENT_{variable}")
    assert reason in err[0]
    assert not served


def test_an_explicit_sqlite_database_is_a_deliberate_choice_and_allowed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[Any],
    tmp_path: Any,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'settlement.sqlite3'}"
    assert _start("serve", monkeypatch, capsys, DATABASE_URL=url) == (0, [])


def test_every_refusal_gets_its_own_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    code, err = _start(
        "serve", monkeypatch, capsys, API_TOKEN="x" * 33, ADMIN_TOKEN="y" * 33, DATABASE_URL=None
    )
    assert code == cli.EXIT_USAGE
    assert [line.split(": ")[2].split(" ")[0] for line in err] == [
        "PACT_SETTLEMENT_API_TOKEN",
        "PACT_SETTLEMENT_ADMIN_TOKEN",
        "PACT_SETTLEMENT_DATABASE_URL",
    ]


def test_a_missing_receipt_key_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    code, err = _start("serve", monkeypatch, capsys, SIGNING_KEY=None)
    assert code == cli.EXIT_USAGE
    assert len(err) == 1
    assert "SIGNING_KEY_FILE or PACT_SETTLEMENT_SIGNING_KEY is required in production" in err[0]
