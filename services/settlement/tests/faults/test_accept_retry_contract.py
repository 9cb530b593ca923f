"""The provider's 503 says "send the same ACCEPT again": that must work, and a trade whose buyer
never comes back must not keep the buyer's money locked.

Real provider and settlement processes on Postgres. Settlement is made slow on purpose: the
test holds the advisory lock settlement takes for the (buyer, intent id), so the create waits
while the provider's settlement budget (1 s) runs out and it answers 503. The lock is released
once the ACCEPT is older than the provider's MAX_CLOCK_SKEW_MS; settlement then completes
the create the provider gave up on.

* the buyer resends the very same signed ACCEPT: it is answered with the settlement's outcome
  (replayed, not created twice), delivered, and the payload proves the commitment;
* the buyer never resends: nobody delivers, and the commit window refunds the buyer in full,
  with no slash, long before the delivery deadline would have.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.faults import RELAXED_TIMEOUTS, asyncpg_dsn
from fixtures.processes import clean_env, process
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair, now_ms, reveal_matches, sign_message, verify_envelope
from pact_schema.keys import b58encode

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

TOKEN, ADMIN = "retry-provider-token-0123456789abcdef", "retry-admin-token-0123456789abcdef"
SKEW_MS = 1_000
SETTLEMENT_BUDGET_S = 1.0


@pytest.fixture
def backend() -> str:
    return "postgres"


class Stack:
    def __init__(self, settlement_url: str, provider_url: str, database_url: str) -> None:
        self.settlement_url = settlement_url
        self.provider_url = provider_url
        self.database_url = database_url
        self.admin = {"Authorization": f"Bearer {ADMIN}"}

    def balances(self, agent: str) -> tuple[Decimal, Decimal]:
        body = httpx.get(
            f"{self.settlement_url}/v1/accounts/{agent}", headers=self.admin, timeout=10
        ).json()
        return Decimal(body["available"]), Decimal(body["locked"])

    def settlement(self, buyer: str, intent_id: str) -> dict[str, Any] | None:
        response = httpx.get(
            f"{self.settlement_url}/v1/settlements/{intent_id}",
            params={"buyer": buyer},
            headers=self.admin,
            timeout=10,
        )
        return None if response.status_code == 404 else response.json()

    def deposit(self, agent: Keypair, amount: str = "1") -> None:
        httpx.post(
            f"{self.settlement_url}/v1/accounts/{agent.public_key_b58}/deposits",
            json={"amount": amount},
            headers=self.admin,
            timeout=10,
        ).raise_for_status()

    def pact(self, envelope: dict[str, Any], timeout: float = 30) -> httpx.Response:
        return httpx.post(f"{self.provider_url}/pact", json=envelope, timeout=timeout)


@contextmanager
def stack(
    database_url: str, tmp_path: Path, provider: Keypair, **provider_env: str
) -> Iterator[Stack]:
    settlement_env = clean_env() | {
        "PACT_SETTLEMENT_ENV": "test",
        "PACT_SETTLEMENT_DATABASE_URL": database_url,
        "PACT_SETTLEMENT_AUTO_MIGRATE": "true",
        "PACT_SETTLEMENT_API_TOKEN": TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider.public_key_b58,
        "PACT_SETTLEMENT_SWEEP_INTERVAL_S": "0.2",
        "PACT_SETTLEMENT_COMMIT_GRACE_MS": "1000",
        # The create must wait out the held lock (released after ~1 s), not time out on it.
        **RELAXED_TIMEOUTS,
    }
    with ExitStack() as stack_:
        settlement_url = stack_.enter_context(
            process("pact_settlement.cli", settlement_env, tmp_path)
        )
        env = clean_env() | {
            "PACT_PROVIDER_SIGNING_KEY": b58encode(provider.seed),
            "PACT_PROVIDER_SETTLEMENT_URL": settlement_url,
            "PACT_PROVIDER_SETTLEMENT_TOKEN": TOKEN,
            "PACT_PROVIDER_SETTLEMENT_TIMEOUT_S": str(SETTLEMENT_BUDGET_S),
            "PACT_PROVIDER_SETTLEMENT_ATTEMPTS": "1",
            "PACT_PROVIDER_MAX_CLOCK_SKEW_MS": str(SKEW_MS),
            "PACT_PROVIDER_QUOTE_GRACE_MS": "500",
            **provider_env,
        }
        provider_url = stack_.enter_context(process("pact_provider.cli", env, tmp_path))
        yield Stack(settlement_url, provider_url, database_url)


class IntentLock:
    """Holds settlement's advisory lock for (buyer, intent id) from another connection."""

    def __init__(self, database_url: str, buyer: str, intent_id: str) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.name = f"intent:{buyer}:{intent_id}"
        self.loop = asyncio.new_event_loop()
        self.conn: Any = None

    def __enter__(self) -> IntentLock:
        import asyncpg

        self.conn = self.loop.run_until_complete(asyncpg.connect(self.dsn))
        self.loop.run_until_complete(
            self.conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", self.name)
        )
        return self

    def release(self) -> None:
        if self.conn is not None:
            self.loop.run_until_complete(self.conn.close())  # drops the session lock
            self.conn = None

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.loop.close()


def _message(kind: str, intent_id: str, **fields: Any) -> dict[str, Any]:
    sent = now_ms()
    return {
        "protocol_version": "pact/1.0",
        "type": kind,
        "intent_id": intent_id,
        "sent_at_ms": sent,
        **fields,
    }


def _quote_then_accept(s: Stack, buyer: Keypair, delivery_in_ms: int) -> tuple[str, dict]:
    intent_id = f"intent-{uuid.uuid4()}"
    intent = _message(
        "INTENT",
        intent_id,
        intent="weather.data",
        scope="NYC",
        constraints={"latency_ms": 1000, "freshness_sec": 60},
        max_price=0.001,
        settlement_mode="hash_reveal",
    )
    intent["expires_at_ms"] = intent["sent_at_ms"] + 60_000
    ask = s.pact(sign_message(intent, buyer)).json()
    assert ask["message"]["type"] == "ASK", ask
    accept = _message(
        "ACCEPT",
        intent_id,
        agreed_price=ask["message"]["price"],
        settlement_mode="hash_reveal",
        proof_type="hash_reveal",
        challenge_window_ms=0,
        quote=ask,
    )
    accept["delivery_deadline_ms"] = accept["sent_at_ms"] + delivery_in_ms
    accept["expires_at_ms"] = ask["message"]["expires_at_ms"]
    return intent_id, sign_message(accept, buyer)


def _gave_up_with_503(s: Stack, accept: dict[str, Any]) -> None:
    started = time.monotonic()
    refused = s.pact(accept)
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"].isdigit()
    assert time.monotonic() - started < SETTLEMENT_BUDGET_S + 5  # bounded by the budget
    # Make the resend older than the provider's clock skew, which used to refuse it.
    while now_ms() <= accept["message"]["sent_at_ms"] + SKEW_MS + 100:
        time.sleep(0.05)


def _wait_for(what: str, bound_s: float, check: Any) -> Any:
    deadline = time.monotonic() + bound_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {bound_s} s"
        time.sleep(0.1)


def test_a_resent_accept_after_a_503_is_delivered_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    provider, buyer = Keypair.generate(), Keypair.generate()
    with stack(fresh_database_url, tmp_path, provider) as s:
        s.deposit(buyer)
        s.deposit(provider)  # its account holds the bond (the default)
        intent_id, accept = _quote_then_accept(s, buyer, delivery_in_ms=120_000)
        with IntentLock(s.database_url, buyer.public_key_b58, intent_id) as lock:
            _gave_up_with_503(s, accept)
            lock.release()
        # settlement completes the create the provider gave up on
        _wait_for("the abandoned create", 15, lambda: s.settlement(buyer.public_key_b58, intent_id))
        answer = s.pact(accept)
        # The provider's settlement budget is 1 s: on a loaded machine the resend may hit it
        # too, and its answer is then the documented one (503, resend the same ACCEPT).
        deadline = time.monotonic() + HANG_GUARD_S
        while answer.status_code == 503:
            assert answer.json()["code"] == "SETTLEMENT_UNAVAILABLE", answer.text
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
            answer = s.pact(accept)
        reply = verify_envelope(answer.json()).message_raw
        assert reply["type"] == "ACCEPT", reply
        assert reply["settlement"]["state"] in ("delivered", "released")
        delivery = reply["delivery"]
        assert reveal_matches(
            delivery["commit_hash_hex"], delivery["payload_b64"], delivery["nonce_b64"]
        )
        again = verify_envelope(s.pact(accept).json()).message_raw
        assert again["settlement"]["id"] == reply["settlement"]["id"]  # replayed, not doubled
        price = Decimal(str(reply["agreed_price"]))
        released = _wait_for(
            "the release",
            10,
            lambda: (
                (r := s.settlement(buyer.public_key_b58, intent_id)) and r["state"] == "released"
            ),
        )
        assert released
        assert s.balances(buyer.public_key_b58) == (Decimal(1) - price, Decimal(0))
        # the bond float back, plus the price: the bond was held once, returned once
        assert s.balances(provider.public_key_b58) == (Decimal(1) + price, Decimal(0))


def test_a_buyer_who_never_resends_is_refunded_promptly_without_a_slash(
    fresh_database_url: str, tmp_path: Path
) -> None:
    provider, buyer = Keypair.generate(), Keypair.generate()
    with stack(
        fresh_database_url,
        tmp_path,
        provider,
        PACT_PROVIDER_MIN_DELIVERY_WINDOW_MS="2000",
        PACT_PROVIDER_FULFILMENT_TIMEOUT_S="1",
    ) as s:
        s.deposit(buyer)
        s.deposit(provider)
        intent_id, accept = _quote_then_accept(s, buyer, delivery_in_ms=6_000)
        with IntentLock(s.database_url, buyer.public_key_b58, intent_id) as lock:
            _gave_up_with_503(s, accept)
            lock.release()
        # The abandoned create may still commit after the lock is released, for as long as
        # settlement's request budget (REQUEST_TIMEOUT_S, default 5 s) lets it run: "no
        # settlement" is an outcome only once that budget has passed.
        create_may_run_until = time.monotonic() + 5.0 + 1.0

        def settled_back() -> bool:
            record = s.settlement(buyer.public_key_b58, intent_id)
            if record is None and time.monotonic() < create_may_run_until:
                return False
            if record is not None and record["state"] not in ("refunded", "failed"):
                return False
            return s.balances(buyer.public_key_b58) == (Decimal(1), Decimal(0))

        # The commit window ends at the delivery deadline here (6 s), plus a sweep.
        # A generous bound: a loaded machine slows the sweep, and nothing else would refund it.
        _wait_for("the refund", 60, settled_back)
        record = s.settlement(buyer.public_key_b58, intent_id)
        if record is not None:  # the create completed after the provider gave up
            assert record["state"] == "refunded"
            assert record["failure_code"] == "COMMIT_WINDOW_MISSED"
        assert s.balances(provider.public_key_b58) == (Decimal(1), Decimal(0))
