"""GET /v1/settlements/{intent_id} and the filtered, cursor-paginated list."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pact_schema import Keypair


async def test_get_unknown_settlement_is_404(api: Any, client: Any) -> None:
    response = await client.get("/v1/settlements/intent-nope", headers=api.provider_auth)
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


async def test_get_returns_state_money_parties_and_events(api: Any, pact: Any) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(price=Decimal("0.25"), bond=Decimal("0.5"))
    assert (await api.create(accept)).status_code == 201
    body = await api.settlement(accept["message"]["intent_id"])
    assert body["amount"] == "0.25"
    assert body["bond"] == "0.5"
    assert body["state"] == "locked"
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert body["events"][-1]["event"] == "settlement.locked"
    admin = await api.client.get(
        f"/v1/settlements/{accept['message']['intent_id']}", headers=api.admin_auth
    )
    assert admin.status_code == 200


async def test_list_filters_and_paginates_with_a_cursor(api: Any, pact: Any) -> None:
    other_buyer = Keypair(bytes(32 * [3]))
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(other_buyer.public_key_b58, "0.0001")
    created = []
    for _ in range(5):
        accept = pact.accept()
        assert (await api.create(accept)).status_code == 201
        created.append(accept["message"]["intent_id"])
    failed = pact.accept(buyer=other_buyer, price=Decimal("0.001"))
    assert (await api.create(failed)).status_code == 402

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "state": "locked"}
        if cursor:
            params["cursor"] = cursor
        page = await api.client.get("/v1/settlements", params=params, headers=api.provider_auth)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["intent_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))

    by_buyer = await api.client.get(
        "/v1/settlements",
        params={"buyer": other_buyer.public_key_b58},
        headers=api.provider_auth,
    )
    items = by_buyer.json()["items"]
    assert [(i["intent_id"], i["state"]) for i in items] == [
        (failed["message"]["intent_id"], "failed")
    ]
    by_state = await api.client.get(
        "/v1/settlements", params={"state": "failed"}, headers=api.provider_auth
    )
    assert len(by_state.json()["items"]) == 1


async def test_bad_list_parameters_are_4xx(api: Any) -> None:
    for params in ({"cursor": "!!!"}, {"state": "limbo"}, {"limit": 0}):
        response = await api.client.get("/v1/settlements", params=params, headers=api.provider_auth)
        assert 400 <= response.status_code < 500, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
