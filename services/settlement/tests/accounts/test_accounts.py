"""Deposits (admin) and balances."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest


async def test_deposit_credits_available_and_account_reads_as_strings(api: Any, pact: Any) -> None:
    agent = pact.buyer.public_key_b58
    response = await api.deposit(agent, "1.00")
    assert response.status_code == 201
    body = response.json()
    assert body["amount"] == "1"
    at = body["account"]["updated_at"]
    assert body["asset"] == "USD"
    assert body["account"] == {
        "agent_id": agent,
        "asset": "USD",
        "available": "1",
        "locked": "0",
        "updated_at": at,
        "balances": [{"asset": "USD", "available": "1", "locked": "0", "updated_at": at}],
    }
    await api.deposit(agent, "0.000000000000000001")
    assert await api.balances(agent) == (Decimal("1.000000000000000001"), Decimal(0))


async def test_deposit_with_idempotency_key_applies_once(api: Any, pact: Any) -> None:
    agent = pact.buyer.public_key_b58
    first = await api.deposit(agent, "2", key="dep-1")
    second = await api.deposit(agent, "2", key="dep-1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["deposit_id"] == second.json()["deposit_id"]
    assert await api.balances(agent) == (Decimal(2), Decimal(0))
    conflict = await api.client.post(
        f"/v1/accounts/{agent}/deposits",
        json={"amount": "3"},
        headers={**api.admin_auth, "Idempotency-Key": "dep-1"},
    )
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize("amount", ["0", "-1", "abc", "NaN", "Infinity", "1e-19", "1e30", ""])
async def test_bad_deposit_amounts_are_422(api: Any, pact: Any, amount: str) -> None:
    response = await api.client.post(
        f"/v1/accounts/{pact.buyer.public_key_b58}/deposits",
        json={"amount": amount},
        headers=api.admin_auth,
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SCHEMA_VALIDATION_FAILED"


async def test_deposit_amount_must_be_a_string(api: Any, pact: Any) -> None:
    response = await api.client.post(
        f"/v1/accounts/{pact.buyer.public_key_b58}/deposits",
        json={"amount": 1.5},
        headers=api.admin_auth,
    )
    assert response.status_code == 422


async def test_bad_agent_id_is_422_and_unknown_account_is_404(api: Any, pact: Any) -> None:
    response = await api.client.get("/v1/accounts/not-a-key!", headers=api.admin_auth)
    assert response.status_code == 422
    response = await api.client.get(
        f"/v1/accounts/{pact.other_provider.public_key_b58}", headers=api.provider_auth
    )
    assert response.status_code == 404


async def test_deposits_need_the_admin_token(api: Any, pact: Any) -> None:
    response = await api.client.post(
        f"/v1/accounts/{pact.buyer.public_key_b58}/deposits",
        json={"amount": "1"},
        headers=api.provider_auth,
    )
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
