"""EVM payouts through the settlement API on anvil (Postgres): an operator script pays a
seller out of the credit the escrow deferred for its address, races duplicate requests and
overdraws. The chain is the balance: every paid payout is on chain under its id with exactly
its amount, nothing is paid twice or beyond the credit, and the ledger is never touched.

The credit is deferred for real before the API is called: the seller cannot receive while the
escrow pays it its part (an address whose code reverts for ether, the test token's blacklist
for the ERC-20), then can again.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fixtures.rails import ANVIL_CHAIN_ID, Chain, anvil_rail_settings, put_profile
from pact_schema import Keypair
from pact_settlement.kit.ids import new_id
from pact_settlement.ledger.models import JournalTransaction
from pact_settlement.rails.evm.gateway import EscrowGateway
from sqlalchemy import func, select

pytestmark = pytest.mark.evm

D = Decimal


@pytest.fixture(params=[pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides(anvil_url: str, anvil_chain: Chain) -> dict[str, Any]:
    return anvil_rail_settings(
        anvil_url,
        anvil_chain,
        evm_chain_id=ANVIL_CHAIN_ID,
        evm_poll_interval_s=0.05,
        workers_enabled=False,
    )


RAILS = {"evm": ("ETH", 10**18), "evm-erc20": ("USDT6", 10**6)}


async def defer_credit(chain: Chain, rail: str, units: int) -> EscrowGateway:
    """``units`` of credit deferred on chain for ``chain.seller`` by a real failed push."""
    native = rail == "evm"
    gateway: EscrowGateway = chain.gateway() if native else chain.token_gateway()
    payee = chain.seller.address
    locked = await gateway.lock_for(
        f"intent-{new_id('t')}", chain.buyer.address, payee, chain.buyer.address,
        int(time.time()) + 3600, units,
    )  # fmt: skip
    await (chain.reject_native(payee) if native else chain.set_blocked(payee))
    await gateway.release_partial(locked.escrow_id, units)
    await (chain.reject_native(payee, False) if native else chain.set_blocked(payee, False))
    assert await gateway.pending_withdrawal(payee) == units
    return gateway


async def payout(api: Any, agent: str, body: dict[str, Any], key: str) -> httpx.Response:
    return await api.client.post(
        f"/v1/accounts/{agent}/payouts",
        json=body,
        headers={**api.admin_auth, "Idempotency-Key": key},
    )


async def on_chain_balance(chain: Chain, rail: str) -> int:
    payee = chain.seller.address
    return await (chain.balance(payee) if rail == "evm" else chain.token_balance(payee))


@pytest.mark.parametrize("rail", ["evm", "evm-erc20"])
async def test_racing_duplicate_payouts_pay_each_once_and_never_beyond_the_credit(
    api: Any, app: Any, anvil_chain: Chain, rail: str
) -> None:
    chain = anvil_chain
    asset, unit = RAILS[rail]
    gateway = await defer_credit(chain, rail, 2 * unit)  # the escrow owes the seller 2
    seller = Keypair.generate().public_key_b58
    await put_profile(api, seller, "evm", {"evm_address": chain.seller.address})
    before = await on_chain_balance(chain, rail)
    body = {"amount": "0.25", "asset": asset, "rail": rail}

    # 10 payouts of 0.25 (2.5 asked of 2 owed), each request sent twice at once
    keys = [f"{rail}-po-{i}" for i in range(10)]
    answers = await asyncio.gather(*(payout(api, seller, body, k) for k in keys for _ in "ab"))
    by_key: dict[str, set[str]] = {}
    refused = 0
    for key, r in zip((k for k in keys for _ in "ab"), answers, strict=True):
        if r.status_code == 422:
            assert r.json()["code"] == "INSUFFICIENT_BALANCE", r.text
            refused += 1
            continue
        assert r.status_code in (200, 201), r.text
        assert r.json()["status"] in ("paid", "pending"), r.text
        by_key.setdefault(key, set()).add(r.json()["id"])
    assert all(len(ids) == 1 for ids in by_key.values())  # a duplicate is the same payout
    listed = await api.client.get(f"/v1/accounts/{seller}/payouts", headers=api.admin_auth)
    payouts = {p["id"]: p for p in listed.json()}
    assert set(payouts) == {i for ids in by_key.values() for i in ids}
    paid = [p for p in payouts.values() if p["status"] == "paid"]
    assert len(paid) == len(payouts)  # the request itself resolved each one
    assert 1 <= len(paid) <= 8
    assert refused >= 4

    # the chain agrees, payout by payout: recorded under its id, exactly its amount
    for p in paid:
        record = await gateway.payout_record(p["id"])
        assert record is not None
        assert (record.payee, record.amount) == (chain.seller.address, unit // 4)
        assert p["external_ref"] == record.tx_hash
        assert p["destination"] == chain.seller.address
    paid_units = len(paid) * unit // 4
    assert await on_chain_balance(chain, rail) == before + paid_units
    assert await gateway.pending_withdrawal(chain.seller.address) == 2 * unit - paid_units

    # the rest of the credit, and not a base unit more
    rest = D(2 * unit - paid_units) / unit
    one_unit_more = format(rest + D(1) / unit, "f")
    over = await payout(api, seller, {**body, "amount": one_unit_more}, f"{rail}-over")
    assert over.status_code == 422
    assert over.json()["code"] == "INSUFFICIENT_BALANCE"
    if rest > 0:  # a racing request may have been refused conservatively (docs/decisions.md)
        last = await payout(api, seller, {**body, "amount": format(rest, "f")}, f"{rail}-rest")
        assert (last.status_code, last.json()["status"]) == (201, "paid"), last.text
    assert await gateway.pending_withdrawal(chain.seller.address) == 0
    assert await on_chain_balance(chain, rail) == before + 2 * unit

    # the ledger holds none of it: no hold, no paid entry, no balance anywhere
    async with app.state.settlement.sessionmaker() as session:
        entries = await session.scalar(
            select(func.count())
            .select_from(JournalTransaction)
            .where(JournalTransaction.kind.like("payout%"))
        )
    assert entries == 0


@pytest.mark.parametrize("rail", ["evm", "evm-erc20"])
async def test_refusals_are_problem_documents_and_record_nothing(
    api: Any, anvil_chain: Chain, rail: str
) -> None:
    chain = anvil_chain
    asset, unit = RAILS[rail]
    await defer_credit(chain, rail, unit)
    seller = Keypair.generate().public_key_b58
    fine = {"amount": "0.5", "asset": asset, "rail": rail}
    no_profile = await payout(api, seller, fine, f"{rail}-np")
    assert (no_profile.status_code, no_profile.json()["code"]) == (
        422,
        "MISSING_REQUIRED_CREDENTIALS",
    )
    await put_profile(api, seller, "evm", {"evm_address": chain.seller.address})
    finer = format(D(1) / (unit * 10), "f")  # a tenth of the escrow's unit
    # wei is the API's own 18 places: finer is malformed; a token's unit is the rail's refusal
    finer_code = "SCHEMA_VALIDATION_FAILED" if rail == "evm" else "AMOUNT_NOT_IN_RAIL_UNITS"
    cases = {
        "beyond the credit": ({**fine, "amount": "1.5"}, "INSUFFICIENT_BALANCE"),
        "finer than the unit": ({**fine, "amount": finer}, finer_code),
        "another asset": ({**fine, "asset": "USD"}, "ASSET_MISMATCH"),
    }
    for what, (body, code) in cases.items():
        r = await payout(api, seller, body, f"{rail}-{what}")
        assert (r.status_code, r.json()["code"]) == (422, code), (what, r.text)
    listed = await api.client.get(f"/v1/accounts/{seller}/payouts", headers=api.admin_auth)
    assert listed.json() == []
