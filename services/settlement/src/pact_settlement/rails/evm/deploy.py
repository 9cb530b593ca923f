"""Deploying ``PactEscrow`` / ``PactTokenEscrow`` and adding operators (the CLI's
``evm-deploy``, tests, dev)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from pact_settlement.rails.evm.errors import EscrowConfigurationError, EscrowTxFailedError
from pact_settlement.rails.evm.ids import load_artifact
from pact_settlement.rails.evm.sender import RevertedError, TxSender

__all__ = ["add_operator", "deploy"]

# --------------------------------------------------------------------------------------------
# deploy (tests, dev)
# --------------------------------------------------------------------------------------------


async def deploy(
    w3: AsyncWeb3[Any],
    deployer: LocalAccount,
    *,
    operators: Sequence[str] = (),
    confirmations: int = 1,
    receipt_timeout_s: float = 60,
    poll_interval_s: float = 0.1,
    contract: str = "PactEscrow",
) -> ChecksumAddress:
    """Deploy ``contract`` (``PactEscrow``, or ``PactTokenEscrow`` for the ERC-20 escrow) from
    ``deployer`` (the owner / admin) and authorise ``operators``."""
    artifact = load_artifact(contract)
    sender = TxSender(
        w3,
        deployer,
        confirmations=confirmations,
        receipt_timeout_s=receipt_timeout_s,
        poll_interval_s=poll_interval_s,
    )
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    try:
        receipt = await sender.send(factory.constructor())
    except RevertedError as exc:
        raise EscrowTxFailedError(f"deployment reverted: {exc}", tx_hash=exc.tx_hash) from exc
    address = to_checksum_address(receipt["contractAddress"])
    for operator in operators:
        await add_operator(w3, deployer, address, operator, _sender=sender, contract=contract)
    return address


async def add_operator(
    w3: AsyncWeb3[Any],
    owner: LocalAccount,
    contract_address: str,
    operator: str,
    *,
    _sender: TxSender | None = None,
    contract: str = "PactEscrow",
) -> None:
    """``addOperator(operator)`` signed by the contract owner (idempotent on chain)."""
    sender = _sender or TxSender(w3, owner, poll_interval_s=0.1)
    escrow = w3.eth.contract(
        address=to_checksum_address(contract_address), abi=load_artifact(contract)["abi"]
    )
    try:
        await sender.send(escrow.functions.addOperator(to_checksum_address(operator)))
    except RevertedError as exc:
        if exc.revert is not None and exc.revert.name in (
            "NotOwner",
            "AccessControlUnauthorizedAccount",
        ):
            raise EscrowConfigurationError(
                f"{owner.address} is not the owner of {contract_address}",
                revert=exc.revert,
                tx_hash=exc.tx_hash,
            ) from exc
        raise EscrowTxFailedError(f"addOperator failed: {exc}", tx_hash=exc.tx_hash) from exc
