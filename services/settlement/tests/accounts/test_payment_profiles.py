"""Payment profiles: how an agent pays / is paid on the external rails (admin API)."""

from __future__ import annotations

from typing import Any

import pytest

CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def _url(agent: str, rail: str | None = None) -> str:
    base = f"/v1/accounts/{agent}/payment-profiles"
    return f"{base}/{rail}" if rail else base


async def test_stripe_profile_is_created_then_replaced_and_read_back(api: Any, pact: Any) -> None:
    agent = pact.buyer.public_key_b58
    body = {"stripe_customer": "cus_A1", "stripe_payment_method": "pm_B2"}
    created = await api.client.put(_url(agent, "stripe"), json=body, headers=api.admin_auth)
    assert created.status_code == 201, created.text
    assert created.json()["stripe_customer"] == "cus_A1"
    replaced = await api.client.put(
        _url(agent, "stripe"),
        json={"stripe_customer": "cus_A1", "stripe_payment_method": "pm_C3"},
        headers=api.admin_auth,
    )
    assert replaced.status_code == 200
    read = await api.client.get(_url(agent, "stripe"), headers=api.provider_auth)
    assert read.status_code == 200
    assert read.json()["stripe_payment_method"] == "pm_C3"
    assert read.json()["created_at"] == created.json()["created_at"]
    listed = await api.client.get(_url(agent), headers=api.admin_auth)
    assert [p["rail"] for p in listed.json()] == ["stripe"]


async def test_evm_address_is_stored_checksummed(api: Any, pact: Any) -> None:
    agent = pact.provider.public_key_b58
    response = await api.client.put(
        _url(agent, "evm"), json={"evm_address": CHECKSUMMED.lower()}, headers=api.admin_auth
    )
    assert response.status_code == 201, response.text
    assert response.json()["evm_address"] == CHECKSUMMED


@pytest.mark.parametrize(
    ("rail", "body"),
    [
        ("evm", {"evm_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}),  # bad checksum
        ("evm", {"evm_address": "0x" + "0" * 40}),
        ("evm", {"evm_address": "0x1234"}),
        ("evm", {"evm_address": CHECKSUMMED, "stripe_customer": "cus_X"}),
        ("evm", {}),
        ("stripe", {"stripe_customer": "cus_X"}),
        ("stripe", {"stripe_customer": "acct_X", "stripe_payment_method": "pm_Y"}),
        ("stripe", {"stripe_customer": "cus_X", "stripe_payment_method": "pm_Y; drop"}),
        ("stripe", {"stripe_customer": "cus_X", "stripe_payment_method": "pm_Y", "x": 1}),
    ],
)
async def test_bad_profiles_are_422_and_nothing_is_stored(
    api: Any, pact: Any, rail: str, body: dict[str, Any]
) -> None:
    agent = pact.buyer.public_key_b58
    response = await api.client.put(_url(agent, rail), json=body, headers=api.admin_auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SCHEMA_VALIDATION_FAILED"
    assert (await api.client.get(_url(agent, rail), headers=api.admin_auth)).status_code == 404


async def test_ledger_and_unknown_rails_take_no_profile(api: Any, pact: Any) -> None:
    agent = pact.buyer.public_key_b58
    for rail in ("ledger", "paypal"):
        response = await api.client.put(
            _url(agent, rail), json={"evm_address": CHECKSUMMED}, headers=api.admin_auth
        )
        assert response.status_code == 422
        assert response.json()["code"] == "RAIL_NOT_AVAILABLE"


async def test_only_operators_write_profiles(api: Any, pact: Any) -> None:
    agent = pact.buyer.public_key_b58
    body = {"evm_address": CHECKSUMMED}
    forbidden = await api.client.put(_url(agent, "evm"), json=body, headers=api.provider_auth)
    assert forbidden.status_code == 403
    anonymous = await api.client.put(_url(agent, "evm"), json=body)
    assert anonymous.status_code == 401
    bad_agent = await api.client.put(_url("not-a-key", "evm"), json=body, headers=api.admin_auth)
    assert bad_agent.status_code == 422


async def test_deleted_profile_is_gone(api: Any, pact: Any) -> None:
    agent = pact.buyer.public_key_b58
    await api.client.put(
        _url(agent, "evm"), json={"evm_address": CHECKSUMMED}, headers=api.admin_auth
    )
    deleted = await api.client.delete(_url(agent, "evm"), headers=api.admin_auth)
    assert deleted.status_code == 204
    assert (await api.client.get(_url(agent, "evm"), headers=api.admin_auth)).status_code == 404
    again = await api.client.delete(_url(agent, "evm"), headers=api.admin_auth)
    assert again.status_code == 404
