"""The whole path as real processes: `pact negotiate --accept` → provider → settlement →
locked → the provider's COMMIT/REVEAL → delivered → the app's own sweeper releases after the
challenge window, with a RECEIPT that verifies against /.well-known/pact-settlement.

The provider runs as its own process (settlement never imports it); the buyer is the `pact`
CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fixtures.processes import clean_env, process
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair, verify_envelope
from pact_schema.keys import b58encode
from pact_schema.transcript import verify_transcript

#: Real service processes: `make test-fast` skips them (conftest.py, SLOW_MARKERS).
pytestmark = pytest.mark.processes

TOKEN, ADMIN = "e2e-provider-token-0123456789abcdef", "e2e-admin-token-0123456789abcdef"


def test_negotiate_accept_delivers_and_the_sweeper_releases(
    fresh_database_url: str, tmp_path: Path
) -> None:
    provider = Keypair.generate()
    buyer = Keypair.generate()
    buyer.save(tmp_path / "buyer.json")

    settlement_env = clean_env() | {
        "PACT_SETTLEMENT_ENV": "test",
        "PACT_SETTLEMENT_DATABASE_URL": fresh_database_url,
        "PACT_SETTLEMENT_AUTO_MIGRATE": "true",
        "PACT_SETTLEMENT_API_TOKEN": TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider.public_key_b58,
        "PACT_SETTLEMENT_SWEEP_INTERVAL_S": "0.2",
    }
    with process("pact_settlement.cli", settlement_env, tmp_path) as settlement_url:
        deposit = httpx.post(
            f"{settlement_url}/v1/accounts/{buyer.public_key_b58}/deposits",
            json={"amount": "1"},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
        assert deposit.status_code == 201, deposit.text
        # The seller's bond (REQUIRE_SELLER_BOND, on by default) comes from the provider key's
        # account: an operator funds it before the provider sells.
        bond_float = httpx.post(
            f"{settlement_url}/v1/accounts/{provider.public_key_b58}/deposits",
            json={"amount": "1"},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
        assert bond_float.status_code == 201, bond_float.text
        provider_env = clean_env() | {
            "PACT_PROVIDER_SIGNING_KEY": b58encode(provider.seed),
            "PACT_PROVIDER_SETTLEMENT_URL": settlement_url,
            "PACT_PROVIDER_SETTLEMENT_TOKEN": TOKEN,
        }
        with process("pact_provider.cli", provider_env, tmp_path) as provider_url:
            args = [sys.executable, "-m", "pact_schema.cli", "negotiate", provider_url]
            args += ["--intent", "weather.data", "--scope", "NYC", "--max-price", "1"]
            args += ["--accept", "--key-file", str(tmp_path / "buyer.json")]
            human = subprocess.run(
                args, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
            )
            assert human.returncode == 0, human.stdout + human.stderr
            assert "state=delivered" in human.stdout, human.stdout
            as_json = subprocess.run(
                [*args, "--json"], capture_output=True, text=True, timeout=60, check=False
            )
            assert as_json.returncode == 0, as_json.stdout + as_json.stderr
        result = json.loads(as_json.stdout)
        assert result["outcome"] == "ACCEPTED"
        summary = result["accept_reply"]["message"]["settlement"]
        assert summary["state"] == "delivered"
        price = Decimal(result["price"])

        auth = {"Authorization": f"Bearer {TOKEN}"}
        url = f"{settlement_url}/v1/settlements/{result['intent_id']}"
        record = httpx.get(url, headers=auth, timeout=10).json()
        # Delivered, or already released: the 0.2 s sweeper releases once the 5 s challenge
        # window has closed, and on a loaded machine that can come before this read.
        assert record["state"] in ("delivered", "released"), record
        assert record["buyer"] == buyer.public_key_b58
        assert record["seller"] == provider.public_key_b58
        assert Decimal(record["amount"]) == price
        # Two negotiations, both delivered: the buyer paid twice. What is still locked is the
        # price of each settlement not yet released, read after the account (the sweeper only
        # moves settlements from delivered to released, so it can only lower that count).
        account = httpx.get(
            f"{settlement_url}/v1/accounts/{buyer.public_key_b58}",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        ).json()
        page = httpx.get(
            f"{settlement_url}/v1/settlements",
            params={"buyer": buyer.public_key_b58},
            headers=auth,
            timeout=10,
        ).json()
        states = sorted(item["state"] for item in page["items"])
        assert len(states) == 2, states
        assert set(states) <= {"delivered", "released"}, states
        assert Decimal(account["available"]) == 1 - 2 * price
        assert Decimal(account["locked"]) >= price * states.count("delivered")
        assert Decimal(account["locked"]) in (2 * price, price, 0)

        # The app's sweeper releases once the 5 s challenge window has closed (the wait is a
        # hang guard: a loaded machine runs the 0.2 s sweeper late).
        give_up = time.monotonic() + HANG_GUARD_S
        while record["state"] == "delivered" and time.monotonic() < give_up:
            time.sleep(0.3)
            record = httpx.get(url, headers=auth, timeout=10).json()
        assert record["state"] == "released", record
        known = httpx.get(f"{settlement_url}/.well-known/pact-settlement", timeout=10).json()
        receipt = verify_envelope(record["receipt"])
        assert receipt.signer == known["public_key_b58"]
        assert receipt.message_raw["fulfilled"] is True
        transcript = httpx.get(f"{url}/transcript", headers=auth, timeout=10).json()
        assert verify_transcript(transcript, settlement_key=known["public_key_b58"]).ok
