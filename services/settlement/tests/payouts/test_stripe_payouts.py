"""Stripe payouts: a Transfer to the seller's Connect account.

Against localstripe, as far as it goes: localstripe (1.15) has no Connect accounts and no
Transfers API (``POST /v1/transfers`` answers 404), so a stripe payout there must end
``failed`` with the amount available again, never ``paid``. The paths localstripe cannot
serve (a Transfer made, a crash after it, the reconciler finding it by ``transfer_group``) run
against a recording stand-in of the gateway's two Transfer calls, with the real rail, service,
ledger and reconciler around it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fixtures.rails import STRIPE_KEY, localstripe_requests, put_profile
from pact_schema import Keypair
from pact_settlement.app import create_app
from pact_settlement.ledger.service import LedgerService
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.stripe.errors import StripeTransientError
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.workers.reconciler import Reconciler

pytestmark = [pytest.mark.stripe]

D = Decimal
CONNECT = {"stripe_connect_account": "acct_1QxY2zSellerPayouts"}


def _settings_with(settings: Any, **changes: Any) -> Any:
    return settings.model_copy(update=changes)


@pytest.fixture
def settings_overrides(localstripe_url: str) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": "whsec_test_payouts",
    }


async def payout(api: Any, agent: str, body: dict[str, Any], key: str) -> httpx.Response:
    return await api.client.post(
        f"/v1/accounts/{agent}/payouts",
        json=body,
        headers={**api.admin_auth, "Idempotency-Key": key},
    )


async def test_localstripe_has_no_transfers_so_the_payout_fails_and_the_money_stays(
    api: Any, localstripe_url: str
) -> None:
    seller = Keypair.generate().public_key_b58
    await api.deposit(seller, "30")
    await put_profile(api, seller, "stripe", CONNECT)  # a seller: Connect account, no card
    key = f"po-{uuid.uuid4()}"
    r = await payout(api, seller, {"amount": "12.50", "rail": "stripe"}, key)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "failed"
    assert body["failure_code"] == "PAYOUT_NOT_SUPPORTED"
    assert "no Transfers API" in body["failure_detail"]
    assert body["destination"] == CONNECT["stripe_connect_account"]
    assert await api.balances(seller) == (D(30), D(0))  # returned, nothing paid
    sent = [
        q for q in await localstripe_requests(localstripe_url) if q.get("path") == "/v1/transfers"
    ]
    assert [q.get("idempotency_key") for q in sent][-1:] == [f"payout-{body['id']}"]
    again = await payout(api, seller, {"amount": "12.50", "rail": "stripe"}, key)
    assert (again.status_code, again.json()["id"]) == (200, body["id"])  # not tried again


async def test_a_stripe_payout_needs_a_connect_account_and_the_rails_currency(
    api: Any,
) -> None:
    seller = Keypair.generate().public_key_b58
    await api.deposit(seller, "5")
    none = await payout(api, seller, {"amount": "1", "rail": "stripe"}, "no-profile")
    assert (none.status_code, none.json()["code"]) == (422, "MISSING_REQUIRED_CREDENTIALS")
    await put_profile(
        api,
        seller,
        "stripe",
        {"stripe_customer": "cus_OnlyACard", "stripe_payment_method": "pm_card"},
    )
    card_only = await payout(api, seller, {"amount": "1", "rail": "stripe"}, "card-only")
    assert (card_only.status_code, card_only.json()["code"]) == (
        422,
        "MISSING_REQUIRED_CREDENTIALS",
    )
    bad = await api.client.put(
        f"/v1/accounts/{seller}/payment-profiles/stripe",
        json={"stripe_connect_account": "ba_not_an_account"},
        headers=api.admin_auth,
    )
    assert bad.status_code == 422
    assert await api.balances(seller) == (D(5), D(0))


async def test_stripe_payout_in_another_asset_than_stripe_currency_is_refused(
    settings: Any, clock: Any
) -> None:
    """LEDGER_ASSET EUR, STRIPE_CURRENCY usd: EUR balances cannot leave through Stripe, and a
    top-up (charged in USD) cannot credit EUR."""
    app = create_app(
        _settings_with(settings, ledger=settings.ledger.model_copy(update={"asset": "EUR"})),
        clock=clock,
    )
    admin = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    seller = Keypair.generate().public_key_b58
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://settlement"
        ) as client,
    ):
        assert (
            await client.post(
                f"/v1/accounts/{seller}/deposits", json={"amount": "5"}, headers=admin
            )
        ).json()["asset"] == "EUR"
        await client.put(
            f"/v1/accounts/{seller}/payment-profiles/stripe", json=CONNECT, headers=admin
        )
        r = await client.post(
            f"/v1/accounts/{seller}/payouts",
            json={"amount": "1", "rail": "stripe"},
            headers={**admin, "Idempotency-Key": "eur-out"},
        )
        assert (r.status_code, r.json()["code"]) == (422, "ASSET_MISMATCH"), r.text
        topup = await client.post(
            f"/v1/accounts/{seller}/topups",
            json={"amount": "20"},
            headers={**admin, "Idempotency-Key": "eur-topup"},
        )
        assert (topup.status_code, topup.json()["code"]) == (422, "ASSET_MISMATCH"), topup.text
        usd = await client.post(
            f"/v1/accounts/{seller}/deposits", json={"amount": "2", "asset": "USD"}, headers=admin
        )
        assert usd.status_code == 201, usd.text
        looked = (await client.get(f"/v1/accounts/{seller}", headers=admin)).json()
        assert (looked["asset"], looked["available"]) == ("EUR", "5")
        assert {b["asset"]: b["available"] for b in looked["balances"]} == {"EUR": "5", "USD": "2"}


class TransferRecorder(StripeGateway):
    """The real gateway with its two Transfer calls kept in memory, the way Stripe keeps
    them: idempotent on the key, listed by ``transfer_group``. ``lose_answer``: the next
    Transfer is made but its answer never arrives (a crash or timeout right after)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made: dict[str, dict[str, Any]] = {}  # idempotency key → transfer
        self.lose_answer = False

    async def transfer(
        self,
        payout_id: str,
        amount: Decimal,
        destination: str,
        *,
        idempotency_key: str,
        currency: str | None = None,
    ) -> dict[str, Any]:
        if idempotency_key not in self.made:
            self.made[idempotency_key] = {
                "id": f"tr_{len(self.made) + 1}",
                "amount": amount,
                "destination": destination,
                "transfer_group": payout_id,
                "reversed": False,
                "created": len(self.made),
            }
        if self.lose_answer:
            self.lose_answer = False
            raise StripeTransientError("connection reset", outcome_unknown=True)
        return self.made[idempotency_key]

    async def find_transfers(self, payout_id: str) -> list[dict[str, Any]]:
        return [t for t in self.made.values() if t["transfer_group"] == payout_id]


@pytest.fixture
async def recorded(
    settings: Any, clock: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, TransferRecorder]]:
    gateway = TransferRecorder(STRIPE_KEY, api_base=settings.stripe.api_base)
    app = create_app(settings, clock=clock, rail_clients=RailClients(settings, stripe=gateway))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://settlement"
        ) as client,
    ):
        yield app, client, gateway
    await gateway.aclose()


async def test_a_transfer_whose_answer_was_lost_is_paid_once_by_the_reconciler(
    recorded: tuple[Any, httpx.AsyncClient, TransferRecorder], settings: Any, clock: Any
) -> None:
    app, client, gateway = recorded
    admin = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    seller = Keypair.generate().public_key_b58
    await client.post(f"/v1/accounts/{seller}/deposits", json={"amount": "10"}, headers=admin)
    await client.put(f"/v1/accounts/{seller}/payment-profiles/stripe", json=CONNECT, headers=admin)
    headers = {**admin, "Idempotency-Key": "lost-answer"}
    ok = await client.post(
        f"/v1/accounts/{seller}/payouts", json={"amount": "3", "rail": "stripe"}, headers=headers
    )
    assert (ok.status_code, ok.json()["status"], ok.json()["external_ref"]) == (201, "paid", "tr_1")

    gateway.lose_answer = True
    lost = await client.post(
        f"/v1/accounts/{seller}/payouts",
        json={"amount": "4", "rail": "stripe"},
        headers={**admin, "Idempotency-Key": "lost-answer-2"},
    )
    assert lost.status_code == 202, lost.text
    assert lost.json()["status"] == "pending"
    account = (await client.get(f"/v1/accounts/{seller}", headers=admin)).json()
    assert (account["available"], account["locked"]) == ("3", "4")  # held while unknown
    retry = await client.post(
        f"/v1/accounts/{seller}/payouts",
        json={"amount": "4", "rail": "stripe"},
        headers={**admin, "Idempotency-Key": "lost-answer-2"},
    )
    assert (retry.status_code, retry.json()["id"]) == (200, lost.json()["id"])

    runtime = app.state.settlement
    reconciler = Reconciler(
        runtime.sessionmaker,
        settings=settings,
        metrics=runtime.metrics,
        clients=runtime.rail_clients,
    )
    assert await reconciler.run_once() == 0  # its lease (RECONCILE_GRACE_S) has not run out
    clock.offset_ms += int(settings.reconcile_grace_s * 1000) + 1
    assert await reconciler.run_once() == 1
    done = (
        await client.get(f"/v1/accounts/{seller}/payouts/{lost.json()['id']}", headers=admin)
    ).json()
    assert (done["status"], done["external_ref"]) == ("paid", "tr_2")
    assert len(gateway.made) == 2  # one Transfer per payout, never a second
    account = (await client.get(f"/v1/accounts/{seller}", headers=admin)).json()
    assert (account["available"], account["locked"]) == ("3", "0")
    async with runtime.sessionmaker() as session:
        assert await LedgerService(session).integrity_report() == []
    assert await reconciler.run_once() == 0
