"""The full buyer flow on each external rail, as real processes.

`pact negotiate … --accept` (the buyer CLI) → provider → settlement locks on the rail (a
PaymentIntent authorised on the buyer's saved card / ether escrowed in PactEscrow) → the
provider's COMMIT/REVEAL → delivered → the settlement's own sweeper releases after the
challenge window (capture / on-chain release), with a RECEIPT that verifies.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from fixtures.processes import clean_env, process
from fixtures.rails import ANVIL_CHAIN_ID, STRIPE_KEY, CardFactory, Chain
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair, verify_envelope
from pact_schema.keys import b58encode
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.rails.evm.token_gateway import TokenEscrowGateway
from pact_settlement.rails.minor_units import to_wei
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

TOKEN, ADMIN = "e2e-rails-provider-token-0123456789", "e2e-rails-admin-token-0123456789ab"


@pytest.fixture(params=[pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def settlement_env(database_url: str, provider: Keypair, rails: dict[str, str]) -> dict[str, str]:
    return clean_env() | {
        "PACT_SETTLEMENT_ENV": "test",
        "PACT_SETTLEMENT_DATABASE_URL": database_url,
        "PACT_SETTLEMENT_AUTO_MIGRATE": "true",
        "PACT_SETTLEMENT_API_TOKEN": TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider.public_key_b58,
        "PACT_SETTLEMENT_SWEEP_INTERVAL_S": "0.2",
        "PACT_SETTLEMENT_LOG_JSON": "false",
        # A lock that mines a transaction can outlast the 5 s request budget on a busy machine
        # (the answer would be 202 pending); these tests are about the flow, not that budget.
        # It stays below the provider's SETTLEMENT_TIMEOUT_S, as the settings require.
        "PACT_SETTLEMENT_REQUEST_TIMEOUT_S": "20",
        **rails,
    }


def provider_env(settlement_url: str, provider: Keypair, prices: str | None) -> dict[str, str]:
    env = clean_env() | {
        "PACT_PROVIDER_SIGNING_KEY": b58encode(provider.seed),
        "PACT_PROVIDER_SETTLEMENT_URL": settlement_url,
        "PACT_PROVIDER_SETTLEMENT_TOKEN": TOKEN,
        # A lock on a rail (a chain, a card network) can outlast the provider's default budget
        # on a busy machine; these tests are not about that budget, and the buyer waits 30 s.
        "PACT_PROVIDER_SETTLEMENT_TIMEOUT_S": "25",
    }
    if prices:
        env["PACT_PROVIDER_PRICES"] = prices
    return env


async def put_profile(url: str, agent: str, rail: str, body: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.put(
            f"{url}/v1/accounts/{agent}/payment-profiles/{rail}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
    assert response.status_code in (200, 201), response.text


async def negotiate(provider_url: str, key_file: Path, max_price: str, cwd: Path) -> Any:
    args = [sys.executable, "-m", "pact_schema.cli", "negotiate", provider_url]
    args += ["--intent", "weather.data", "--scope", "NYC", "--max-price", max_price]
    args += ["--accept", "--key-file", str(key_file), "--json", "--timeout", "30"]
    done = await asyncio.to_thread(
        subprocess.run, args, capture_output=True, text=True, timeout=90, check=False, cwd=cwd
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "ACCEPTED", result
    assert result["accept_reply"]["message"]["settlement"]["state"] == "delivered", result
    return result


async def released(settlement_url: str, intent_id: str) -> dict[str, Any]:
    """Wait for the settlement's own sweeper to release after the challenge window."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"{settlement_url}/v1/settlements/{intent_id}"
        record: dict[str, Any] = (await client.get(url, headers=auth)).json()
        give_up = time.monotonic() + HANG_GUARD_S
        while record["state"] in ("locked", "committed", "delivered") and (
            time.monotonic() < give_up
        ):
            await asyncio.sleep(0.3)
            record = (await client.get(url, headers=auth)).json()
        known = (await client.get(f"{settlement_url}/.well-known/pact-settlement")).json()
    assert record["state"] == "released", record
    receipt = verify_envelope(record["receipt"])
    assert receipt.signer == known["public_key_b58"]
    assert receipt.message_raw["fulfilled"] is True
    return record


@pytest.mark.stripe
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
async def test_buyer_flow_on_stripe_authorises_then_captures_the_card(
    fresh_database_url: str,
    tmp_path: Path,
    localstripe_url: str,
    saved_card: CardFactory,
    stripe_raw: stripe.StripeClient,
) -> None:
    provider, buyer = Keypair.generate(), Keypair.generate()
    buyer.save(tmp_path / "buyer.json")
    rails = {
        "PACT_SETTLEMENT_ENABLED_RAILS": "ledger,stripe",
        "PACT_SETTLEMENT_DEFAULT_RAIL": "stripe",
        "PACT_SETTLEMENT_STRIPE_API_KEY": STRIPE_KEY,
        "PACT_SETTLEMENT_STRIPE_API_BASE": localstripe_url,
        "PACT_SETTLEMENT_STRIPE_WEBHOOK_SECRET": "whsec_e2e",
    }
    env = settlement_env(fresh_database_url, provider, rails)
    with process("pact_settlement.cli", env, tmp_path) as settlement_url:
        card = await saved_card()
        await put_profile(
            settlement_url,
            buyer.public_key_b58,
            "stripe",
            {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
        )
        prices = json.dumps({"weather.data": "1.25"})
        with process(
            "pact_provider.cli", provider_env(settlement_url, provider, prices), tmp_path
        ) as provider_url:
            result = await negotiate(provider_url, tmp_path / "buyer.json", "2", tmp_path)
        record = await released(settlement_url, result["intent_id"])
    assert (record["rail"], record["amount"]) == ("stripe", "1.25")
    [locked] = [e for e in record["events"] if e["event"] == "settlement.locked"]
    pi = await stripe_raw.v1.payment_intents.retrieve_async(locked["data"]["rail_reference"])
    assert (pi.status, pi.capture_method, pi.amount) == ("succeeded", "manual", 125)
    assert pi.metadata["settlement_id"] == record["id"]


@pytest.mark.evm
async def test_buyer_flow_on_evm_escrows_then_releases_on_chain(
    fresh_database_url: str, tmp_path: Path, anvil_url: str, anvil_chain: Chain
) -> None:
    chain = anvil_chain
    provider, buyer = Keypair.generate(), Keypair.generate()
    buyer.save(tmp_path / "buyer.json")
    rails = {
        "PACT_SETTLEMENT_ENABLED_RAILS": "ledger,evm",
        "PACT_SETTLEMENT_DEFAULT_RAIL": "evm",
        "PACT_SETTLEMENT_EVM_RPC_URL": anvil_url,
        "PACT_SETTLEMENT_EVM_OPERATOR_KEY": chain.operator.key.hex(),
        "PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS": chain.escrow,
        "PACT_SETTLEMENT_EVM_CHAIN_ID": str(ANVIL_CHAIN_ID),
        "PACT_SETTLEMENT_EVM_POLL_INTERVAL_S": "0.05",
    }
    seller_before = await chain.balance(chain.seller)
    env = settlement_env(fresh_database_url, provider, rails)
    with process("pact_settlement.cli", env, tmp_path) as settlement_url:
        await put_profile(
            settlement_url, buyer.public_key_b58, "evm", {"evm_address": chain.buyer.address}
        )
        await put_profile(
            settlement_url, provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
        )
        with process(
            "pact_provider.cli", provider_env(settlement_url, provider, None), tmp_path
        ) as provider_url:
            result = await negotiate(provider_url, tmp_path / "buyer.json", "1", tmp_path)
        record = await released(settlement_url, result["intent_id"])
    price_wei = to_wei(Decimal(record["amount"]))
    # REQUIRE_SELLER_BOND is on by default and the escrow can hold a bond: the operator posted
    # it for the seller, and the release pays it back to the seller with the price.
    bond_wei = to_wei(Decimal(record["bond_locked"]))
    assert bond_wei > 0
    assert record["rail"] == "evm"
    assert await chain.balance(chain.seller) == seller_before + price_wei + bond_wei
    rpc = AsyncHTTPProvider(anvil_url)
    try:
        gateway = EscrowGateway(AsyncWeb3(rpc), chain.escrow, chain.operator)
        eid = gateway.escrow_id(record["intent_id"], chain.buyer.address, chain.seller.address)
        state = await gateway.get_escrow(eid)
        assert (state.status, state.amount_wei) == (EscrowStatus.RELEASED, price_wei)
        assert [e.name for e in await gateway.find_events(eid)] == [
            "Locked",
            "BondPosted",
            "Released",
        ]
    finally:
        await rpc.disconnect()


@pytest.mark.evm
async def test_buyer_flow_on_evm_erc20_escrows_the_token_then_releases_on_chain(
    fresh_database_url: str, tmp_path: Path, anvil_url: str, anvil_chain: Chain
) -> None:
    """Both services as processes, the ERC-20 rail: the price is escrowed in a USDC-like token
    (6 decimals) and released to the seller in that token; no ether moves to the seller."""
    chain = anvil_chain
    assert chain.token is not None
    assert chain.token_escrow is not None
    provider, buyer = Keypair.generate(), Keypair.generate()
    buyer.save(tmp_path / "buyer.json")
    rails = {
        "PACT_SETTLEMENT_ENABLED_RAILS": "ledger,evm-erc20",
        "PACT_SETTLEMENT_DEFAULT_RAIL": "evm-erc20",
        "PACT_SETTLEMENT_EVM_RPC_URL": anvil_url,
        "PACT_SETTLEMENT_EVM_OPERATOR_KEY": chain.operator.key.hex(),
        "PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS": chain.token_escrow,
        "PACT_SETTLEMENT_EVM_TOKEN_ADDRESS": chain.token,
        "PACT_SETTLEMENT_EVM_TOKEN_DECIMALS": "6",
        "PACT_SETTLEMENT_EVM_TOKEN_SYMBOL": "USDT6",
        "PACT_SETTLEMENT_EVM_CHAIN_ID": str(ANVIL_CHAIN_ID),
        "PACT_SETTLEMENT_EVM_POLL_INTERVAL_S": "0.05",
    }
    seller_tokens = await chain.token_balance(chain.seller)
    seller_eth = await chain.balance(chain.seller)
    env = settlement_env(fresh_database_url, provider, rails)
    with process("pact_settlement.cli", env, tmp_path) as settlement_url:
        await put_profile(
            settlement_url, buyer.public_key_b58, "evm", {"evm_address": chain.buyer.address}
        )
        await put_profile(
            settlement_url, provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
        )
        with process(
            "pact_provider.cli", provider_env(settlement_url, provider, None), tmp_path
        ) as provider_url:
            result = await negotiate(provider_url, tmp_path / "buyer.json", "1", tmp_path)
        record = await released(settlement_url, result["intent_id"])
    assert record["rail"] == "evm-erc20"
    price_units = int(Decimal(record["amount"]).scaleb(6))
    bond_units = int(Decimal(record["bond_locked"]).scaleb(6))
    assert price_units > 0
    assert bond_units > 0
    assert await chain.token_balance(chain.seller) == seller_tokens + price_units + bond_units
    assert await chain.balance(chain.seller) == seller_eth
    rpc = AsyncHTTPProvider(anvil_url)
    try:
        w3 = AsyncWeb3(rpc)
        gateway = TokenEscrowGateway(w3, chain.token_escrow, chain.operator, chain.token)
        eid = gateway.escrow_id(record["intent_id"], chain.buyer.address, chain.seller.address)
        state = await gateway.get_escrow(eid)
        assert (state.status, state.token, state.amount_wei) == (
            EscrowStatus.RELEASED,
            chain.token,
            price_units,
        )
    finally:
        await rpc.disconnect()
