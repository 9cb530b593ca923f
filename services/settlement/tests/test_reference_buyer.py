"""A reference-SDK buyer, in JavaScript, against the real stack: settlement and two provider
replicas sharing the machine's Redis as their quote store, each a process.

The buyer (``services/provider/tests/vectors/reference_buyer.mjs``) speaks the reference HTTP
adapter client's shapes with plain ``fetch``, signs and verifies with tweetnacl + bs58, and
sends bare ACCEPTs: it quotes on one replica, accepts on the other, then commits and reveals
as the reference session does, and checks every envelope. Then the RECEIPT and the v4
transcript of its trades are read as reference tooling would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.processes import clean_env, process
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair, verify_envelope
from pact_schema.keys import b58encode
from pact_schema.transcript_v4 import verify_v4

#: Real service processes: `make test-fast` skips them (conftest.py, SLOW_MARKERS).
pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
BUYER_JS = ROOT / "services/provider/tests/vectors/reference_buyer.mjs"
TOKEN, ADMIN = "ref-provider-token-0123456789abcdef", "ref-admin-token-0123456789abcdef"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def quote_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the machine's Redis, emptied afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL} (TEST_REDIS_URL): {exc}")
    prefix = f"pact-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _get(url: str, **kw: Any) -> Any:
    response = httpx.get(url, timeout=10, **kw)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.node
def test_a_reference_buyer_trades_over_the_adapter_surface_with_bare_accepts(
    fresh_database_url: str, tmp_path: Path, quote_prefix: str
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is required (make install)"
    provider, buyer = Keypair.generate(), Keypair.generate()
    settlement_env = clean_env() | {
        "PACT_SETTLEMENT_ENV": "test",
        "PACT_SETTLEMENT_DATABASE_URL": fresh_database_url,
        "PACT_SETTLEMENT_AUTO_MIGRATE": "true",
        "PACT_SETTLEMENT_API_TOKEN": TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider.public_key_b58,
        "PACT_SETTLEMENT_SWEEP_INTERVAL_S": "0.2",
    }
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with process("pact_settlement.cli", settlement_env, tmp_path) as settlement_url:
        for agent in (buyer, provider):  # the buyer's money, the provider's bond
            httpx.post(
                f"{settlement_url}/v1/accounts/{agent.public_key_b58}/deposits",
                json={"amount": "1"},
                headers=admin,
                timeout=10,
            ).raise_for_status()
        provider_env = clean_env() | {
            "PACT_PROVIDER_SIGNING_KEY": b58encode(provider.seed),
            "PACT_PROVIDER_SETTLEMENT_URL": settlement_url,
            "PACT_PROVIDER_SETTLEMENT_TOKEN": TOKEN,
            "PACT_PROVIDER_QUOTE_STORE_URL": REDIS_URL,
            "PACT_PROVIDER_QUOTE_STORE_PREFIX": quote_prefix,
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            process("pact_provider.cli", provider_env, tmp_path / "a") as replica_a,
            process("pact_provider.cli", provider_env, tmp_path / "b") as replica_b,
        ):
            done = subprocess.run(
                [node, str(BUYER_JS), replica_a, replica_b, buyer.seed.hex()],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)

        assert report["buyer"] == buyer.public_key_b58
        assert report["health"]["sellerId"] == provider.public_key_b58
        assert report["quote"]["open_quote"] is True
        for trade in ("after_quote", "after_intent"):
            seen = report[trade]
            assert seen["settlement_state"] == "delivered", seen
            assert seen["commit_is_reference_rule"] is True
            assert seen["reveal_ok"] is True
            assert seen["reveal_proves_commit"] is True
            assert "observation" in seen["payload"] or "result_sha256" in seen["payload"]
        assert report["unquoted_accept"] == "QUOTE_MISSING"
        assert report["made_up_reveal"].startswith("HTTP 403")
        assert report["stream_chunk"] == "SETTLEMENT_MODE_NOT_ALLOWED"

        # The trades close (the sweeper releases after the 150 ms challenge window) with a
        # RECEIPT a reference buyer reads, and a v4 transcript a reference auditor verifies.
        auth = {"Authorization": f"Bearer {TOKEN}"}
        known = _get(f"{settlement_url}/.well-known/pact-settlement")
        for trade in ("after_quote", "after_intent"):
            ref = f"{settlement_url}/v1/settlements/{report[trade]['settlement_id']}"
            deadline = time.monotonic() + HANG_GUARD_S
            record = _get(ref, headers=auth)
            while record["state"] != "released" and time.monotonic() < deadline:
                time.sleep(0.2)
                record = _get(ref, headers=auth)
            assert record["state"] == "released", record
            receipt = verify_envelope(record["receipt"])
            assert receipt.signer == known["public_key_b58"]
            message = receipt.message_raw
            assert message["receipt_id"] == (
                f"receipt-{report[trade]['intent_id']}-{message['timestamp_ms']}"
            )
            assert message["fulfilled"] is True
            assert Decimal(str(message["paid_amount"])) == Decimal(str(report[trade]["price"]))
            v4 = _get(f"{ref}/transcript", params={"format": "pact-transcript/4.0"}, headers=auth)
            check = verify_v4(v4, settlement_key=known["public_key_b58"])
            assert check.ok, check.lines
            assert [r["agent_id"] for r in v4["rounds"]] == ["seller", "buyer"]
