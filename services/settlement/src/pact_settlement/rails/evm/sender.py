"""Signing and sending the operator's transactions: nonces (:class:`NonceGuard`), fees, gas,
receipts and confirmations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Protocol, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import TimeExhausted, TransactionNotFound

from pact_settlement.rails.evm.errors import (
    EscrowGatewayError,
    EscrowInsufficientFundsError,
    EscrowTransientError,
    EscrowTxTimeoutError,
)
from pact_settlement.rails.evm.ids import to_hex
from pact_settlement.rails.evm.results import DecodedRevert
from pact_settlement.rails.evm.revert import decode_revert

__all__ = ["NonceGuard", "OnSubmitted", "ProcessNonceGuard", "RevertedError", "TxSender"]

OnSubmitted = Callable[[str], Awaitable[None]]
"""Called with the signed transaction's hash just before it is broadcast."""


class NonceGuard(Protocol):
    """One sender per account at a time, across every process and replica sending with it.

    ``hold`` is entered after the gateway's own lock, around reading the nonce from the node,
    signing and broadcasting (so the next holder's ``pending`` count includes the last
    transaction); it raises :class:`EscrowTransientError` when it cannot be taken."""

    def hold(self, chain_id: int, address: str) -> AbstractAsyncContextManager[None]: ...


class ProcessNonceGuard:
    """Nothing beyond the gateway's own lock: right when one process sends with the key (the
    CLI, tests); several processes need a shared guard."""

    @asynccontextmanager
    async def hold(self, chain_id: int, address: str) -> AsyncIterator[None]:
        yield


# --------------------------------------------------------------------------------------------
# transaction sending
# --------------------------------------------------------------------------------------------


class _CallbackFailedError(Exception):
    """``on_submitted`` raised: nothing was broadcast; re-raised to the caller unchanged."""


class RevertedError(Exception):
    def __init__(self, revert: DecodedRevert | None, tx_hash: str | None, detail: str) -> None:
        super().__init__(detail)
        self.revert = revert
        self.tx_hash = tx_hash


def _is_nonce_too_low(message: str) -> bool:
    m = message.lower()
    return (
        "nonce too low" in m
        or "invalid transaction nonce" in m
        or "correct nonce" in m
        or "replacement transaction underpriced" in m
    )


def _is_already_known(message: str) -> bool:
    m = message.lower()
    return "already known" in m or "known transaction" in m or "already imported" in m


def _is_insufficient_funds(message: str) -> bool:
    m = message.lower()
    return (
        "insufficient funds" in m
        or "sender doesn't have enough funds" in m
        or "cannot afford" in m  # eth-tester
    )


def _is_transport_error(exc: BaseException) -> bool:
    from web3.exceptions import (
        ProviderConnectionError,
        RequestTimedOut,
        TooManyRequests,
    )

    return isinstance(
        exc, (OSError, TimeoutError, ProviderConnectionError, RequestTimedOut, TooManyRequests)
    ) or type(exc).__module__.startswith("aiohttp")


class TxSender:
    """Signs with one local key, allocates nonces, sends, waits for confirmed receipts."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        account: LocalAccount,
        *,
        confirmations: int = 1,
        receipt_timeout_s: float = 120,
        confirmation_timeout_s: float | None = None,
        poll_interval_s: float = 0.5,
        gas_limit: int | None = None,
        gas_margin_pct: int = 25,
        max_priority_fee_wei: int | None = None,
        fee_mode: Literal["auto", "eip1559", "legacy"] = "auto",
        expected_chain_id: int | None = None,
        nonce_guard: NonceGuard | None = None,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be >= 1 (1 = included in a block)")
        self.w3 = w3
        self.account = account
        self.confirmations = confirmations
        self.receipt_timeout_s = receipt_timeout_s
        self.confirmation_timeout_s = (
            confirmation_timeout_s
            if confirmation_timeout_s is not None
            else max(receipt_timeout_s, 30.0 * confirmations)
        )
        self.poll_interval_s = poll_interval_s
        self.gas_limit = gas_limit
        self.gas_margin_pct = gas_margin_pct
        self.max_priority_fee_wei = max_priority_fee_wei
        self.fee_mode = fee_mode
        self.expected_chain_id = expected_chain_id
        self._chain_id: int | None = None
        self._nonce_lock = asyncio.Lock()
        self._nonce_guard: NonceGuard = nonce_guard or ProcessNonceGuard()
        self._next_nonce: int | None = None

    @property
    def address(self) -> ChecksumAddress:
        return to_checksum_address(self.account.address)

    async def chain_id(self) -> int:
        if self._chain_id is None:
            chain_id = int(await self.w3.eth.chain_id)
            if self.expected_chain_id is not None and chain_id != self.expected_chain_id:
                raise EscrowGatewayError(
                    f"node is on chain {chain_id}, configured for {self.expected_chain_id}; "
                    "refusing to sign for the wrong chain"
                )
            self._chain_id = chain_id
        return self._chain_id

    async def _fees(self) -> dict[str, int]:
        mode = self.fee_mode
        base_fee: int | None = None
        if mode in ("auto", "eip1559"):
            latest = await self.w3.eth.get_block("latest")
            raw_base = latest.get("baseFeePerGas")
            base_fee = int(raw_base) if raw_base is not None else None
            if base_fee is None and mode == "eip1559":
                raise EscrowGatewayError("fee_mode=eip1559 but the node's blocks have no base fee")
        if base_fee is None:
            return {"gasPrice": int(await self.w3.eth.gas_price)}
        priority = self.max_priority_fee_wei
        if priority is None:
            try:
                priority = int(await self.w3.eth.max_priority_fee)
            except Exception:  # node without eth_maxPriorityFeePerGas
                priority = 1_000_000_000
        return {"maxPriorityFeePerGas": priority, "maxFeePerGas": 2 * base_fee + priority}

    async def _allocate_nonce(self) -> int:
        pending = int(await self.w3.eth.get_transaction_count(self.address, "pending"))
        if self._next_nonce is not None and self._next_nonce > pending:
            return self._next_nonce
        return pending

    async def _build(self, fn: Any, value: int, nonce: int, chain_id: int) -> dict[str, Any]:
        call = {"from": self.address, "value": value}
        if self.gas_limit is not None:
            gas = self.gas_limit
        else:
            try:
                estimate = int(await fn.estimate_gas(call))
            except Exception as exc:
                if _is_transport_error(exc):
                    raise
                revert = decode_revert(exc)
                if revert is not None or "revert" in str(exc).lower():
                    raise RevertedError(revert, None, str(exc)) from exc
                raise
            gas = estimate * (100 + self.gas_margin_pct) // 100
        params: dict[str, Any] = {
            **call,
            "nonce": nonce,
            "chainId": chain_id,
            "gas": gas,
            **(await self._fees()),
        }
        return cast(dict[str, Any], await fn.build_transaction(params))

    async def send(
        self, fn: Any, *, value: int = 0, on_submitted: OnSubmitted | None = None
    ) -> dict[str, Any]:
        """Sign, broadcast, wait for a confirmed receipt. Raises ``Reverted`` on a revert."""
        try:
            chain_id = await self.chain_id()
            async with self._nonce_lock, self._nonce_guard.hold(chain_id, self.address):
                tx_hash = await self._sign_and_broadcast(fn, value, chain_id, on_submitted)
        except (RevertedError, EscrowGatewayError):
            raise
        except _CallbackFailedError as exc:
            raise cast(BaseException, exc.__cause__) from None
        except Exception as exc:
            raise self._translate(exc, tx_hash=None, broadcast=False) from exc
        receipt = await self._wait_confirmed(tx_hash)
        if int(receipt["status"]) == 0:
            revert = await self._replay_revert(fn, value, receipt)
            raise RevertedError(revert, tx_hash, f"transaction {tx_hash} reverted")
        return receipt

    async def _sign_and_broadcast(
        self, fn: Any, value: int, chain_id: int, on_submitted: OnSubmitted | None
    ) -> str:
        for attempt in (0, 1):
            nonce = await self._allocate_nonce()
            tx = await self._build(fn, value, nonce, chain_id)
            signed = self.account.sign_transaction(tx)
            tx_hash = to_hex(bytes(signed.hash))
            if on_submitted is not None:
                try:
                    await on_submitted(tx_hash)
                except Exception as exc:
                    self._next_nonce = None
                    raise _CallbackFailedError() from exc
            try:
                await self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                message = str(exc)
                if _is_already_known(message):
                    self._next_nonce = nonce + 1
                    return tx_hash
                self._next_nonce = None
                if attempt == 0 and _is_nonce_too_low(message):
                    continue
                revert = decode_revert(exc)
                if revert is not None:  # nodes that execute on submission (some dev nodes do)
                    raise RevertedError(revert, None, message) from exc
                if _is_transport_error(exc):
                    # It may or may not have reached the node.
                    raise EscrowTransientError(
                        f"broadcast of {tx_hash} failed: {exc}",
                        outcome_unknown=True,
                        tx_hash=tx_hash,
                    ) from exc
                raise self._translate(exc, tx_hash=None, broadcast=False) from exc
            self._next_nonce = nonce + 1
            return tx_hash
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(
        self, exc: BaseException, *, tx_hash: str | None, broadcast: bool
    ) -> EscrowGatewayError:
        message = str(exc)
        if _is_insufficient_funds(message):
            return EscrowInsufficientFundsError(
                f"operator {self.address} cannot pay value + gas: {message}", tx_hash=tx_hash
            )
        if _is_transport_error(exc) or isinstance(exc, TimeExhausted):
            return EscrowTransientError(
                f"node unavailable: {message}", outcome_unknown=broadcast, tx_hash=tx_hash
            )
        return EscrowGatewayError(f"{type(exc).__name__}: {message}", tx_hash=tx_hash)

    async def _wait_confirmed(self, tx_hash: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            receipt = await self.w3.eth.wait_for_transaction_receipt(
                cast(Any, tx_hash),
                timeout=self.receipt_timeout_s,
                poll_latency=self.poll_interval_s,
            )
        except TimeExhausted as exc:
            self._next_nonce = None  # the transaction may have been dropped
            raise EscrowTxTimeoutError(
                f"no receipt for {tx_hash} within {self.receipt_timeout_s}s", tx_hash=tx_hash
            ) from exc
        except Exception as exc:
            raise self._translate(exc, tx_hash=tx_hash, broadcast=True) from exc
        deadline = loop.time() + self.confirmation_timeout_s
        try:
            while True:
                head = int(await self.w3.eth.block_number)
                if head - int(receipt["blockNumber"]) + 1 >= self.confirmations:
                    if self.confirmations == 1:
                        return dict(receipt)
                    # Reorg check: is the receipt still in the same block?
                    try:
                        again = await self.w3.eth.get_transaction_receipt(cast(Any, tx_hash))
                    except TransactionNotFound:
                        again = None
                    if again is not None and again["blockHash"] == receipt["blockHash"]:
                        return dict(again)
                    if again is not None:
                        receipt = again
                        continue
                if loop.time() > deadline:
                    raise EscrowTxTimeoutError(
                        f"{tx_hash} did not reach {self.confirmations} confirmations within "
                        f"{self.confirmation_timeout_s}s",
                        tx_hash=tx_hash,
                    )
                await asyncio.sleep(self.poll_interval_s)
        except EscrowGatewayError:
            raise
        except Exception as exc:
            raise self._translate(exc, tx_hash=tx_hash, broadcast=True) from exc

    async def _replay_revert(
        self, fn: Any, value: int, receipt: Mapping[str, Any]
    ) -> DecodedRevert | None:
        try:
            await fn.call(
                {"from": self.address, "value": value},
                block_identifier=int(receipt["blockNumber"]),
            )
        except Exception as exc:
            return decode_revert(exc)
        return None
