"""An EVM payout while the chain does not answer: the credit cannot be read, so the request
is a 503 ``RAIL_UNAVAILABLE`` problem (``Retry-After``) and nothing is recorded; the same
request works once the chain is back."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.processes import free_port
from fixtures.rails import put_profile
from pact_schema import Keypair

pytestmark = pytest.mark.evm

#: A well-formed key and contract address; nothing listens on the RPC port.
OPERATOR_KEY = "0x" + "11" * 32
ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "evm"],
        "evm_rpc_url": f"http://127.0.0.1:{free_port()}",
        "evm_operator_key": OPERATOR_KEY,
        "evm_contract_address": ESCROW,
        "evm_receipt_timeout_s": 1,
        "rail_call_timeout_s": 2,
        "workers_enabled": False,
    }


async def test_a_payout_the_chain_cannot_answer_is_a_503_and_records_nothing(api: Any) -> None:
    seller = Keypair.generate().public_key_b58
    await put_profile(api, seller, "evm", {"evm_address": "0x" + "5e" * 20})
    r = await api.client.post(
        f"/v1/accounts/{seller}/payouts",
        json={"amount": "0.5", "asset": "ETH", "rail": "evm"},
        headers={**api.admin_auth, "Idempotency-Key": "po-unreachable"},
    )
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "RAIL_UNAVAILABLE"
    assert r.headers["Retry-After"] == "1"
    listed = await api.client.get(f"/v1/accounts/{seller}/payouts", headers=api.admin_auth)
    assert listed.json() == []
