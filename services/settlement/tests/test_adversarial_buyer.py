"""A hostile buyer, chosen by Hypothesis, against the provider and settlement apps together.

The buyer picks its INTENT's constraints (a latency of 0 included), intent ids (hostile ones
included), bids, the ACCEPT's deadline and challenge window (some too short to meet), whether
it tampers with the ACCEPT, resends it, challenges (on every objective ground) and how much
time passes between steps. Both apps share one clock the test drives; the provider reaches
settlement over HTTP (ASGI), the buyer reaches both over HTTP. After every run the sweeper
ends whatever is still open, and the promises the product rests on must hold:

* no 5xx from either service;
* a buyer holding a payload got it only for a settlement that was delivered with a valid proof
  and ends released (there is no valid proof failure to refund it for: the provider is honest);
* a released settlement has a REVEAL on record that proves its COMMIT (pay only on proof);
* money is conserved: the buyer paid exactly the prices of its released settlements, the seller
  received exactly those, nothing stays locked, and the ledger balances.

On SQLite and Postgres.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pact_provider.app import create_app as create_provider
from pact_provider.config import ProviderSettings
from pact_schema import Keypair, reveal_matches, sign_message, verify_envelope
from pact_settlement.workers.sweeper import Sweeper

T0 = 1_800_000_000_000
SELLER_FUNDS = Decimal("1")
BUYER_FUNDS = Decimal("1")
HOSTILE_IDS = [
    "a/b",
    "..",
    "x\u0000y",
    "tab\there",
    "ünïcode-🗽",
    "intent-" + "z" * 300,
    " spaced ",
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"require_seller_bond": True, "commit_grace_ms": 5_000}


@dataclass
class Trade:
    intent_id: str
    latency_ms: int
    freshness_sec: int
    urgent: bool | None
    bids: list[str]
    delivery_in_ms: int
    challenge_window_ms: int
    tamper: str
    resend_after_ms: int | None
    challenge: str | None
    challenge_after_ms: int
    pause_ms: int


@dataclass
class Seen:
    statuses: list[int] = field(default_factory=list)
    payloads: dict[str, str] = field(default_factory=dict)  # settlement id → commit hash


def _intent_ids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda: f"intent-{uuid.uuid4()}"),
        st.builds(lambda: str(uuid.uuid4())),
        st.sampled_from(HOSTILE_IDS),
    )


trades = st.builds(
    Trade,
    intent_id=_intent_ids(),
    latency_ms=st.sampled_from([0, 1, 49, 50, 5_000, 60_000]),
    freshness_sec=st.sampled_from([0, 9, 60]),
    urgent=st.sampled_from([None, True, False]),
    bids=st.lists(st.sampled_from(["0.00001", "0.00007", "0.000079"]), max_size=3),
    delivery_in_ms=st.sampled_from([0, 500, 29_999, 30_000, 31_000, 120_000, 86_400_000]),
    challenge_window_ms=st.sampled_from([0, 5_000]),
    tamper=st.sampled_from(["none", "none", "none", "price", "no_quote", "other_buyer"]),
    resend_after_ms=st.one_of(st.none(), st.sampled_from([0, 6_000, 19_000, 40_000])),
    challenge=st.one_of(
        st.none(), st.sampled_from(["FAILED_PROOF", "DELIVERY_DEADLINE_MISSED", "LATENCY_BREACH"])
    ),
    challenge_after_ms=st.sampled_from([0, 1_000, 6_000]),
    pause_ms=st.sampled_from([0, 100, 25_000]),
)


class Buyer:
    """Signs as the buyer (or, to tamper, as another buyer) and keeps the last verified reply
    envelope verbatim, to carry the provider's ASK in the next message."""

    def __init__(self, provider: httpx.AsyncClient, clock: Any, seen: Seen) -> None:
        self.key = Keypair.generate()
        self.other = Keypair.generate()
        self.provider = provider
        self.clock = clock
        self.seen = seen
        self.last_reply: dict[str, Any] | None = None

    def sign(self, message: dict[str, Any], key: Keypair | None = None) -> dict[str, Any]:
        return sign_message(message, key or self.key, signed_at_ms=self.clock())

    async def send(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        response = await self.provider.post("/pact", json=envelope)
        self.seen.statuses.append(response.status_code)
        if response.status_code != 200:
            return None
        self.last_reply = response.json()
        return verify_envelope(self.last_reply).message_raw


async def _run(trade: Trade, buyer: Buyer, settlement: httpx.AsyncClient, clock: Any) -> None:
    now = clock()
    intent = {
        "protocol_version": "pact/1.0",
        "type": "INTENT",
        "intent_id": trade.intent_id,
        "intent": "weather.data",
        "scope": {"city": "NYC"},
        "constraints": {"latency_ms": trade.latency_ms, "freshness_sec": trade.freshness_sec},
        "max_price": 0.001,
        "settlement_mode": "hash_reveal",
        "sent_at_ms": now,
        "expires_at_ms": now + 60_000,
    }
    if trade.urgent is not None:
        intent["urgent"] = trade.urgent
    ask = await buyer.send(buyer.sign(intent))
    if ask is None or ask["type"] != "ASK":
        return
    ask_envelope = buyer.last_reply
    for bid_price in trade.bids:
        now = clock()
        bid = {
            "protocol_version": "pact/1.0",
            "type": "BID",
            "intent_id": trade.intent_id,
            "price": float(bid_price),
            "unit": "request",
            "latency_ms": ask["latency_ms"],
            "valid_for_ms": 20_000,
            "bond_required": ask["bond_required"],
            "sent_at_ms": now,
            "expires_at_ms": now + 20_000,
            "quote": ask_envelope,
        }
        countered = await buyer.send(buyer.sign(bid))
        if countered is None or countered["type"] != "ASK":
            break
        ask, ask_envelope = countered, buyer.last_reply
    clock.fixed_ms += trade.pause_ms
    now = clock()
    accept: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "ACCEPT",
        "intent_id": trade.intent_id,
        "agreed_price": ask["price"],
        "settlement_mode": "hash_reveal",
        "proof_type": "hash_reveal",
        "challenge_window_ms": trade.challenge_window_ms,
        "delivery_deadline_ms": now + trade.delivery_in_ms,
        "sent_at_ms": now,
        "expires_at_ms": ask["expires_at_ms"],
        "quote": ask_envelope,
    }
    signer = None
    if trade.tamper == "price":
        accept["agreed_price"] = float(Decimal(str(ask["price"])) / 2)
    elif trade.tamper == "no_quote":
        del accept["quote"]
    elif trade.tamper == "other_buyer":
        signer = buyer.other  # a quote made for someone else
    accept_envelope = buyer.sign(accept, signer)
    answers = [await buyer.send(accept_envelope)]
    if trade.resend_after_ms is not None:
        clock.fixed_ms += trade.resend_after_ms
        answers.append(await buyer.send(accept_envelope))
    for answer in answers:
        if answer is None or answer["type"] != "ACCEPT":
            continue
        delivery = answer.get("delivery") or {}
        if "payload_b64" in delivery:
            assert reveal_matches(
                delivery["commit_hash_hex"], delivery["payload_b64"], delivery["nonce_b64"]
            )
            buyer.seen.payloads[answer["settlement"]["id"]] = delivery["commit_hash_hex"]
    if trade.challenge is not None:
        clock.fixed_ms += trade.challenge_after_ms
        now = clock()
        challenge = {
            "protocol_version": "pact/1.0",
            "type": "REJECT",
            "intent_id": trade.intent_id,
            "reason": "I say so",
            "code": trade.challenge,
            "sent_at_ms": now,
            "expires_at_ms": now + 60_000,
        }
        response = await settlement.post(
            f"/v1/settlements/{_path(trade.intent_id)}/challenge",
            json={"challenge": buyer.sign(challenge)},
            params={"buyer": buyer.key.public_key_b58},
        )
        buyer.seen.statuses.append(response.status_code)


def _path(intent_id: str) -> str:
    return quote(intent_id, safe="")


@pytest.fixture
def shared_clock(clock: Any) -> Any:
    clock.fixed_ms = T0
    return clock


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(trades, min_size=1, max_size=3))
async def test_a_hostile_buyer_never_gets_goods_for_free_nor_strands_money(
    plan: list[Trade], app: Any, client: httpx.AsyncClient, api: Any, pact: Any, shared_clock: Any
) -> None:
    clock = shared_clock
    seen = Seen()
    provider_app = create_provider(
        ProviderSettings(
            settlement_url="http://settlement",
            settlement_token="test-provider-token-0123456789abcdef",
            settlement_backoff_s=0.0,
        ),
        keypair=pact.provider,
        clock=clock,
        settlement_transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
    )
    async with (
        provider_app.router.lifespan_context(provider_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=provider_app, raise_app_exceptions=False),
            base_url="http://provider",
        ) as provider,
    ):
        buyer = Buyer(provider, clock, seen)
        seller = pact.provider.public_key_b58
        seller_before = await api.balances(seller)
        await api.deposit(buyer.key.public_key_b58, str(BUYER_FUNDS))
        await api.deposit(buyer.other.public_key_b58, str(BUYER_FUNDS))
        await api.deposit(seller, str(SELLER_FUNDS))
        for trade in plan:
            await _run(trade, buyer, client, clock)

        # Everything still open ends: far past every deadline and window, swept to the end.
        clock.fixed_ms += 3 * 86_400_000
        state = app.state.settlement
        sweeper = Sweeper(
            state.sessionmaker,
            settings=state.settings,
            metrics=state.metrics,
            applier=state.applier,
            clock=clock,
        )
        for _ in range(3 * len(plan) + 2):  # each pass ends what is due; bounded
            report = await sweeper.run_once()
            assert report.errors == 0
            if not report.handled:
                break

    assert all(status < 500 for status in seen.statuses), seen.statuses
    listing = await client.get(
        "/v1/settlements",
        params={"buyer": buyer.key.public_key_b58, "limit": 100},
        headers=api.admin_auth,
    )
    assert listing.status_code == 200
    records = {r["id"]: r for r in listing.json()["items"]}
    paid = Decimal(0)
    for record in records.values():
        assert record["state"] in ("released", "refunded", "slashed", "failed"), record
        if record["state"] == "released":
            assert record["reveal_hash_hex"] == record["commit_hash_hex"] is not None
            paid += Decimal(record["amount"])
    for settlement_id, commitment in seen.payloads.items():
        held = records[settlement_id]
        assert held["state"] == "released", held  # goods only for a paid, proven delivery
        assert held["commit_hash_hex"] == commitment
    assert await api.balances(buyer.key.public_key_b58) == (BUYER_FUNDS - paid, Decimal(0))
    assert await api.balances(buyer.other.public_key_b58) == (BUYER_FUNDS, Decimal(0))
    expected_seller = seller_before[0] + seller_before[1] + SELLER_FUNDS + paid
    assert await api.balances(seller) == (expected_seller, Decimal(0))
