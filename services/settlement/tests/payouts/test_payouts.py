"""Seller payouts through the running app, on SQLite and Postgres: a hostile operator script
retries, races and overdraws; the ledger must pay each payout once and never more than the
available balance."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
from pact_schema import Keypair
from pact_settlement.ledger.service import EXTERNAL_ACCOUNT, LedgerService
from pact_settlement.outbound_webhooks.models import WebhookDelivery
from pact_settlement.payouts.service import LEDGER_PAYOUT_ACCOUNT
from sqlalchemy import select

D = Decimal


def _seller() -> str:
    return Keypair.generate().public_key_b58


async def payout(
    api: Any,
    agent: str,
    body: dict[str, Any],
    *,
    key: str | None,
    auth: dict[str, str] | None = None,
) -> httpx.Response:
    headers = dict(auth if auth is not None else api.admin_auth)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post(f"/v1/accounts/{agent}/payouts", json=body, headers=headers)


async def _ledger(app: Any) -> tuple[list[str], dict[tuple[str, str], tuple[Decimal, Decimal]]]:
    async with app.state.settlement.sessionmaker() as session:
        ledger = LedgerService(session)
        problems = await ledger.integrity_report()
        accounts = await ledger.accounts.all_accounts()
    return problems, {(a.owner, a.asset): (a.available, a.locked) for a in accounts}


async def test_ledger_payout_moves_available_balance_to_the_payout_account(
    api: Any, app: Any
) -> None:
    seller = _seller()
    await api.deposit(seller, "10")
    r = await payout(api, seller, {"amount": "4.25"}, key="po-1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["rail"], body["asset"], body["amount"]) == (
        "paid",
        "ledger",
        "USD",
        "4.25",
    )
    assert body["destination"] == LEDGER_PAYOUT_ACCOUNT
    assert body["external_ref"].startswith("jtx_")
    assert await api.balances(seller) == (D("5.75"), D(0))
    one = await api.client.get(
        f"/v1/accounts/{seller}/payouts/{body['id']}", headers=api.provider_auth
    )
    listed = await api.client.get(f"/v1/accounts/{seller}/payouts", headers=api.provider_auth)
    assert one.json() == body
    assert [p["id"] for p in listed.json()] == [body["id"]]
    other = await api.client.get(
        f"/v1/accounts/{_seller()}/payouts/{body['id']}", headers=api.admin_auth
    )
    assert other.status_code == 404  # another agent's payout is not found under this one
    problems, accounts = await _ledger(app)
    assert problems == []
    assert accounts[(LEDGER_PAYOUT_ACCOUNT, "USD")] == (D("4.25"), D(0))
    assert accounts[(EXTERNAL_ACCOUNT, "USD")] == (D(-10), D(0))


async def test_same_key_answers_the_same_payout_and_another_body_is_409(api: Any) -> None:
    seller = _seller()
    await api.deposit(seller, "3")
    first = await payout(api, seller, {"amount": "1"}, key="po-same")
    again = await payout(api, seller, {"amount": "1"}, key="po-same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert await api.balances(seller) == (D(2), D(0))  # paid once
    changed = await payout(api, seller, {"amount": "2"}, key="po-same")
    assert changed.status_code == 409
    assert changed.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    missing = await payout(api, seller, {"amount": "1"}, key=None)
    assert missing.status_code == 400
    assert await api.balances(seller) == (D(2), D(0))


async def test_payouts_are_for_operators_and_refuse_bad_input_before_anything_is_written(
    api: Any,
) -> None:
    seller = _seller()
    await api.deposit(seller, "1")
    refused = {
        "provider token": (
            await payout(api, seller, {"amount": "1"}, key="k1", auth=api.provider_auth),
            403,
            "FORBIDDEN",
        ),
        "beyond available": (
            await payout(api, seller, {"amount": "1.000000000000000001"}, key="k2"),
            422,
            "INSUFFICIENT_BALANCE",
        ),
        "no account in that asset": (
            await payout(api, _seller(), {"amount": "1"}, key="k3"),
            422,
            "INSUFFICIENT_BALANCE",
        ),
        "lower-case asset": (
            await payout(api, seller, {"amount": "1", "asset": "usd"}, key="k4"),
            422,
            "SCHEMA_VALIDATION_FAILED",
        ),
        "unknown asset": (
            await payout(api, seller, {"amount": "1", "asset": "GBP"}, key="k5"),
            422,
            "ASSET_NOT_SUPPORTED",
        ),
        "rail not enabled": (
            await payout(api, seller, {"amount": "1", "rail": "evm"}, key="k6"),
            422,
            "RAIL_NOT_AVAILABLE",
        ),
        "zero": (
            await payout(api, seller, {"amount": "0"}, key="k7"),
            422,
            "SCHEMA_VALIDATION_FAILED",
        ),
        "exponent": (
            await payout(api, seller, {"amount": "1e0"}, key="k8"),
            422,
            "SCHEMA_VALIDATION_FAILED",
        ),
        "extra field": (
            await payout(api, seller, {"amount": "1", "to": "me"}, key="k9"),
            422,
            "SCHEMA_VALIDATION_FAILED",
        ),
    }
    for what, (response, status, code) in refused.items():
        assert response.status_code == status, (what, response.text)
        assert response.headers["content-type"] == "application/problem+json", what
        assert response.json()["code"] == code, (what, response.text)
    assert await api.balances(seller) == (D(1), D(0))
    listed = await api.client.get(f"/v1/accounts/{seller}/payouts", headers=api.admin_auth)
    assert listed.json() == []
    # the refused key can be used once there is money: nothing was recorded under it
    await api.deposit(seller, "0.000000000000000001")
    ok = await payout(api, seller, {"amount": "1.000000000000000001"}, key="k2")
    assert ok.status_code == 201, ok.text
    assert await api.balances(seller) == (D(0), D(0))


async def test_parallel_payouts_of_one_balance_never_overdraw_it(api: Any, app: Any) -> None:
    """30 payouts of 0.15 race for a balance of 2 (13 fit); each is sent twice at once under
    its key. Exactly 13 are paid, each once; the balance never goes below zero."""
    seller = _seller()
    await api.deposit(seller, "2")
    keys = [f"race-{i}" for i in range(30)]
    responses = await asyncio.gather(
        *(payout(api, seller, {"amount": "0.15"}, key=k) for k in keys + keys)
    )
    assert all(r.status_code in (200, 201, 422) for r in responses), [
        r.text for r in responses if r.status_code not in (200, 201, 422)
    ]
    paid_ids = {r.json()["id"] for r in responses if r.status_code in (200, 201)}
    refused = [r for r in responses if r.status_code == 422]
    assert all(r.json()["code"] == "INSUFFICIENT_BALANCE" for r in refused)
    assert len(paid_ids) == 13
    assert await api.balances(seller) == (D("0.05"), D(0))
    listed = await api.client.get(f"/v1/accounts/{seller}/payouts", headers=api.admin_auth)
    assert {p["id"] for p in listed.json()} == paid_ids
    assert {p["status"] for p in listed.json()} == {"paid"}
    problems, accounts = await _ledger(app)
    assert problems == []
    assert accounts[(seller, "USD")] == (D("0.05"), D(0))


async def test_payout_state_changes_are_outbound_events_in_the_same_transaction(
    api: Any, app: Any
) -> None:
    endpoint = await api.client.post(
        "/v1/webhook-endpoints",
        json={
            "url": "https://integrator.example/hooks",
            "event_types": ["payout.created", "payout.paid", "payout.failed"],
        },
        headers=api.admin_auth,
    )
    assert endpoint.status_code == 201, endpoint.text
    seller = _seller()
    await api.deposit(seller, "1")
    paid = (await payout(api, seller, {"amount": "0.4"}, key="ev-1")).json()
    await payout(api, seller, {"amount": "0.4"}, key="ev-1")  # a replay: no new event
    refused = await payout(api, seller, {"amount": "5"}, key="ev-2")  # rolled back: no event
    assert refused.status_code == 422
    async with app.state.settlement.sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
                )
            )
            .scalars()
            .all()
        )
    import json

    events = [(row.event_type, json.loads(row.body)["data"]["object"]) for row in rows]
    assert [t for t, _ in events] == ["payout.created", "payout.paid"]
    assert all(obj["id"] == paid["id"] and obj["object"] == "payout" for _, obj in events)
    assert events[1][1]["status"] == "paid"


async def test_settlements_and_deposits_name_their_asset(api: Any, pact: Any) -> None:
    buyer = pact.buyer.public_key_b58
    deposit = await api.deposit(buyer, "1")
    assert deposit.json()["asset"] == "USD"
    created = await api.create(pact.accept())
    assert created.status_code == 201, created.text
    assert created.json()["asset"] == "USD"
    account = await api.client.get(f"/v1/accounts/{buyer}?asset=USD", headers=api.admin_auth)
    assert account.json()["asset"] == "USD"
    assert [b["asset"] for b in account.json()["balances"]] == ["USD"]
    for bad, code in (("usd", "SCHEMA_VALIDATION_FAILED"), ("EUR", "ASSET_NOT_SUPPORTED")):
        r = await api.client.post(
            f"/v1/accounts/{buyer}/deposits",
            json={"amount": "1", "asset": bad},
            headers=api.admin_auth,
        )
        assert (r.status_code, r.json()["code"]) == (422, code), r.text
        looked = await api.client.get(f"/v1/accounts/{buyer}?asset={bad}", headers=api.admin_auth)
        assert (looked.status_code, looked.json()["code"]) == (422, code)
