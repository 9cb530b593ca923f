"""``pact-settlement evm-deploy`` against a real JSON-RPC node (anvil)."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from pact_settlement.cli import main
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.token_gateway import TokenEscrowGateway
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

pytestmark = pytest.mark.evm


def test_evm_deploy_deploys_funds_and_authorises_the_operator(
    anvil_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = Account.create()
    extra = Account.create()
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_RPC_URL", anvil_url)
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_OPERATOR_KEY", operator.key.hex())
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_CHAIN_ID", "31337")
    code = main(["evm-deploy", "--fund", "2", "--operator", extra.address])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS=0x")
    assert lines[1].startswith("PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS=0x")
    address = lines[0].split("=", 1)[1]
    token_escrow = lines[1].split("=", 1)[1]

    async def check() -> tuple[bool, bool, int]:
        provider = AsyncHTTPProvider(anvil_url)
        try:
            gw = EscrowGateway(AsyncWeb3(provider), address, operator)
            token_gw = TokenEscrowGateway(
                gw.w3, token_escrow, operator, "0x" + "11" * 20
            )  # any token: only the role is read
            assert await token_gw.is_operator()
            assert await token_gw.is_operator(extra.address)
            return (
                await gw.is_operator(),
                await gw.is_operator(extra.address),
                int(await gw.w3.eth.get_balance(operator.address)),
            )
        finally:
            await provider.disconnect()

    is_operator, extra_is_operator, balance = asyncio.run(check())
    assert is_operator
    assert extra_is_operator
    assert 0 < balance < 2 * 10**18  # funded, minus the deployment's gas


def test_evm_deploy_refuses_the_wrong_chain(
    anvil_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACT_SETTLEMENT_EVM_CHAIN_ID", "1")
    with pytest.raises(SystemExit, match="chain 31337"):
        main(["evm-deploy", "--rpc-url", anvil_url, "--key", Account.create().key.hex()])


def test_evm_deploy_needs_a_node_and_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PACT_SETTLEMENT_EVM_RPC_URL", raising=False)
    monkeypatch.delenv("PACT_SETTLEMENT_EVM_OPERATOR_KEY", raising=False)
    with pytest.raises(SystemExit, match="EVM_RPC_URL"):
        main(["evm-deploy"])
