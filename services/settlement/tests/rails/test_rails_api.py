"""GET /v1/rails and the rail settings."""

from __future__ import annotations

from typing import Any

import pytest
from pact_settlement.config import SettlementSettings
from pydantic import ValidationError

OPERATOR_KEY = "0x" + "11" * 32
CONTRACT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
EXTERNAL = {
    "enabled_rails": ["ledger", "stripe", "evm"],
    "default_rail": "stripe",
    "stripe_api_key": "sk_test_rails_api",
    "stripe_currency": "EUR",
    "stripe_webhook_secret": "whsec_rails_api",
    "evm_rpc_url": "http://127.0.0.1:8545",
    "evm_operator_key": OPERATOR_KEY,
    "evm_contract_address": CONTRACT.lower(),
    "evm_chain_id": 1337,
    "evm_confirmations": 3,
}


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("settings_overrides", [EXTERNAL])
async def test_rails_lists_each_enabled_rail_with_its_limits(api: Any) -> None:
    response = await api.client.get("/v1/rails", headers=api.provider_auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["default_rail"] == "stripe"
    assert body["require_seller_bond"] is False
    rails = {r["name"]: r for r in body["rails"]}
    assert list(rails) == ["ledger", "stripe", "evm"]
    assert rails["ledger"]["transactional"] is True
    assert rails["ledger"]["minimum_amount"] == "0.000000000000000001"
    stripe = rails["stripe"]
    assert stripe["default"] is True
    assert (stripe["currency"], stripe["minimum_amount"], stripe["supports_bond"]) == (
        "eur",
        "0.5",
        False,
    )
    assert stripe["amount_quantum"] == "0.01"  # whole cents only: nothing is rounded
    assert stripe["rounding"].startswith("none")
    assert stripe["authorization_validity_s"] == 7 * 86_400
    assert stripe["webhook_configured"] is True
    evm = rails["evm"]
    assert (evm["confirmations"], evm["chain_id"], evm["contract_address"]) == (3, 1337, CONTRACT)
    assert evm["supports_bond"] is True
    assert evm["minimum_amount"] == "0.000000000000000001"
    assert "whsec" not in response.text
    assert "11111111" not in response.text
    admin = await api.client.get("/v1/rails", headers=api.admin_auth)
    assert admin.status_code == 200
    assert (await api.client.get("/v1/rails")).status_code == 401


async def test_only_enabled_rails_are_listed(api: Any) -> None:
    body = (await api.client.get("/v1/rails", headers=api.admin_auth)).json()
    assert [r["name"] for r in body["rails"]] == ["ledger"]


def test_enabled_external_rails_need_their_settings() -> None:
    with pytest.raises(ValidationError, match="STRIPE_API_KEY"):
        SettlementSettings(enabled_rails=["ledger", "stripe"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="EVM_RPC_URL"):
        SettlementSettings(enabled_rails=["ledger", "evm"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="STRIPE_CURRENCY"):
        SettlementSettings(stripe_currency="xyz")
    with pytest.raises(ValidationError, match="EVM_OPERATOR_KEY"):
        SettlementSettings(evm_operator_key="0x1234")  # type: ignore[arg-type]


def test_production_needs_the_webhook_secret_and_the_chain_id() -> None:
    base: dict[str, Any] = {
        "env": "production",
        "api_token": "aT4vQ9xL2mR7cK0pZ5wN8bE3yH6jU1sD",
        "admin_token": "bG7nW2qX9kF4tM0vJ5rC8zL3hS6pY1dA",
        "database_url": "postgresql+asyncpg://pact:pw@db.internal:5432/pact",
        "provider_keys": ["GcQfK48DV9BzDuDeCyV2sShbAAY4vqmK8JSj1NBrwoVZ"],
        "signing_key": "GcQfK48DV9BzDuDeCyV2sShbAAY4vqmK8JSj1NBrwoVZ",
    }
    stripe = {"enabled_rails": ["ledger", "stripe"], "stripe_api_key": "sk_live_x"}
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET"):
        SettlementSettings(**base, **stripe)
    assert SettlementSettings(**base, **stripe, stripe_webhook_secret="whsec_x")
    evm = {k: v for k, v in EXTERNAL.items() if k.startswith("evm_") and k != "evm_chain_id"}
    with pytest.raises(ValidationError, match="EVM_CHAIN_ID"):
        SettlementSettings(**base, enabled_rails=["ledger", "evm"], **evm)
    assert SettlementSettings(**base, enabled_rails=["ledger", "evm"], **evm, evm_chain_id=1)


def test_the_operator_key_is_never_shown() -> None:
    settings = SettlementSettings(**dict(EXTERNAL.items()))
    assert OPERATOR_KEY not in repr(settings)
    assert "whsec_rails_api" not in repr(settings)
