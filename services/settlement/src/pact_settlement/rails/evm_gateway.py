"""Thin async adapter over web3.py for the on-chain escrow rail (``PactEscrow``).

The gateway knows nothing about our database; the EVM :class:`Rail` wraps it.

Why :class:`~web3.AsyncWeb3`: the settlement service is asyncio end to end, and web3's async
API gives real non-blocking JSON-RPC over HTTP (aiohttp) and an in-process async tester
provider, so no thread pool is needed and nonce allocation can be guarded by an
:class:`asyncio.Lock` in the same loop — and, across the processes and replicas that send with
the same operator key, by a :class:`NonceGuard` (the service's is database-backed:
:mod:`pact_settlement.rails.evm_nonces`).

Escrow identity is deterministic and derived from our ids, so the rail can record it as
pending *before* sending anything::

    intent_id_bytes32 = keccak256(utf8(intent_id))                       # intent_id_to_bytes32
    escrow_id         = keccak256(abi.encode(intent_id_bytes32, buyer, seller))   # escrow_id

Transactions are signed locally with the operator key (never ``eth_sendTransaction``): nonce
from the node's ``pending`` count while holding the gateway's lock and the :class:`NonceGuard`
(one sender per account at a time, everywhere; one retry on "nonce too low"),
EIP-1559 fees when the latest block has a base fee and legacy ``gasPrice`` otherwise, a gas
estimate (which doubles as a free pre-flight that surfaces custom errors) plus a margin, then
the receipt, then ``confirmations`` blocks (re-checking the receipt's block hash for reorgs).
A receipt with ``status == 0`` is a failure; its custom error is recovered by replaying the
call at the receipt's block.

Custom errors (``contracts/README.md``) are decoded from the revert data wherever web3 or the
node put it (``ContractCustomError.data`` from JSON-RPC nodes, ``ContractLogicError.data``
dicts from ganache's ``eth_estimateGas``, raw bytes in the exception chain from eth-tester) and
mapped to typed errors with failure codes -- or to success where the error means "already
done":

- ``lock_for`` + ``AlreadyExists``: success (``already_done=True``) if the stored escrow is
  exactly ours (intent, buyer, seller, beneficiary, amount, deadline), else
  :class:`EscrowConflictError`;
- ``release``/``refund``/``slash`` + ``NotLocked(current)``: success if ``current`` is the
  state the action leads to, :class:`EscrowNotFoundError` if never locked, else
  :class:`EscrowConflictError` (another action finished it first);
- ``NotOperator``/``NotAuthorized``/``NotOwner``: :class:`EscrowConfigurationError`;
- ``ZeroAmount``/``ZeroAddress``/``InvalidDeadline``/``DeadlineNotPassed``:
  :class:`EscrowBadRequestError`;
- ``TransferFailed``: :class:`EscrowTransferFailedError` (``SETTLEMENT_FAILED``).

Reconciliation after a crash: :meth:`EscrowGateway.get_escrow` gives the contract's current
state for the escrow id; :meth:`EscrowGateway.find_events` lists its ``Locked`` /
``BondPosted`` / ``Released`` / ``Refunded`` / ``Slashed`` / ``PaymentDeferred`` logs with
transaction hashes. State ``NONE`` is not proof that the lock never happened while a
transaction recorded through ``on_submitted`` is still ``pending`` according to
:meth:`EscrowGateway.transaction_status` (or :meth:`EscrowGateway.pending_transaction_count`
is non-zero): wait for it instead of re-sending. Re-running any action is safe: it converges
as described above (a second ``lock_for`` with the same terms is a no-op success).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast

from eth_abi import abi as eth_abi
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pact_schema.codes import FailureCode
from web3 import AsyncWeb3
from web3.exceptions import TimeExhausted, TransactionNotFound

__all__ = [
    "ARTIFACT_PATH",
    "DecodedRevert",
    "EscrowBadRequestError",
    "EscrowConfigurationError",
    "EscrowConflictError",
    "EscrowEvent",
    "EscrowGateway",
    "EscrowGatewayError",
    "EscrowInsufficientFundsError",
    "EscrowNotFoundError",
    "EscrowRevertError",
    "EscrowState",
    "EscrowStatus",
    "EscrowTransferFailedError",
    "EscrowTransientError",
    "EscrowTxFailedError",
    "EscrowTxResult",
    "EscrowTxTimeoutError",
    "NonceGuard",
    "ProcessNonceGuard",
    "add_operator",
    "decode_revert",
    "deploy",
    "error_selectors",
    "escrow_id",
    "intent_id_to_bytes32",
    "load_artifact",
]

ARTIFACT_PATH: Final = Path(__file__).with_name("evm_artifact") / "PactEscrow.json"
MAX_UINT64: Final = 2**64 - 1

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


@functools.cache
def load_artifact() -> Mapping[str, Any]:
    """The committed ``PactEscrow`` build artifact (``abi``, ``bytecode``, ...)."""
    return cast(Mapping[str, Any], json.loads(ARTIFACT_PATH.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------------------------


def _b32(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value.startswith(("0x", "0X")) else value
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{what} must be 32 bytes or 0x-prefixed hex: {value!r}") from None
    else:
        raw = bytes(value)
    if len(raw) != 32:
        raise ValueError(f"{what} must be exactly 32 bytes, got {len(raw)}")
    return raw


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def intent_id_to_bytes32(intent_id: str) -> bytes:
    """``keccak256`` of the UTF-8 intent id: the contract's ``bytes32 intentId``.

    Hashing (not padding) accepts intent ids of any length and alphabet and still gives a
    fixed, collision-resistant key; the original string is in our database and in the
    ``Locked`` event's escrow id derivation, so nothing is lost.
    """
    if not isinstance(intent_id, str) or not intent_id:
        raise ValueError("intent_id must be a non-empty string")
    return keccak(text=intent_id)


def escrow_id(intent_id_bytes32: bytes | str, buyer: str, seller: str) -> bytes:
    """``keccak256(abi.encode(intentId, buyer, seller))``, the contract's ``escrowIdOf``."""
    encoded = eth_abi.encode(
        ["bytes32", "address", "address"],
        [
            _b32(intent_id_bytes32, "intent id"),
            to_checksum_address(buyer),
            to_checksum_address(seller),
        ],
    )
    return keccak(encoded)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


class EscrowStatus(IntEnum):
    NONE = 0
    LOCKED = 1
    RELEASED = 2
    REFUNDED = 3
    SLASHED = 4

    @property
    def is_terminal(self) -> bool:
        return self in (EscrowStatus.RELEASED, EscrowStatus.REFUNDED, EscrowStatus.SLASHED)


@dataclass(frozen=True, slots=True)
class EscrowState:
    """``getEscrow(escrowId)``: all zero with status ``NONE`` if never locked."""

    escrow_id: str
    intent_id: str
    buyer: ChecksumAddress
    seller: ChecksumAddress
    beneficiary: ChecksumAddress
    amount_wei: int
    bond_wei: int
    delivery_deadline: int
    status: EscrowStatus

    @property
    def exists(self) -> bool:
        return self.status is not EscrowStatus.NONE


@dataclass(frozen=True, slots=True)
class EscrowTxResult:
    """Outcome of an action. ``already_done``: the chain already had this outcome (a replay);
    then ``tx_hash`` is ``None`` unless a transaction was mined and reverted."""

    action: str
    escrow_id: str
    tx_hash: str | None
    block_number: int | None
    gas_used: int | None
    already_done: bool
    state: EscrowState


@dataclass(frozen=True, slots=True)
class EscrowEvent:
    name: str
    escrow_id: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DecodedRevert:
    name: str
    selector: str
    args: Mapping[str, Any]


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


class EscrowGatewayError(Exception):
    """Base of every error the gateway raises.

    ``retryable``: the same action may succeed later. ``outcome_unknown``: a transaction may
    have been broadcast (``tx_hash``); reconcile from the chain before doing anything else.
    """

    failure_code: FailureCode = FailureCode.SETTLEMENT_FAILED
    retryable: bool = False
    outcome_unknown: bool = False

    def __init__(self, message: str, *, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class EscrowRevertError(EscrowGatewayError):
    """The contract reverted with a known custom error."""

    def __init__(self, message: str, *, revert: DecodedRevert, tx_hash: str | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash)
        self.revert = revert


class EscrowConfigurationError(EscrowRevertError):
    """The operator key is not allowed to do this (NotOperator/NotAuthorized/NotOwner)."""


class EscrowBadRequestError(EscrowRevertError):
    """Bad arguments: zero amount or address, deadline not in the future, ..."""

    failure_code = FailureCode.FAILED_ESCROW


class EscrowTransferFailedError(EscrowRevertError):
    """A recipient rejected the payment (``TransferFailed``); the action was rolled back."""


class EscrowConflictError(EscrowGatewayError):
    """The escrow exists but is not ours / was finished by another action."""

    failure_code = FailureCode.FAILED_ESCROW

    def __init__(self, message: str, *, state: EscrowState, tx_hash: str | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash)
        self.state = state


class EscrowNotFoundError(EscrowGatewayError):
    """No escrow was ever locked under this id."""

    failure_code = FailureCode.FAILED_ESCROW


class EscrowInsufficientFundsError(EscrowGatewayError):
    """The operator account cannot pay value + gas."""

    failure_code = FailureCode.INSUFFICIENT_ESCROW


class EscrowTxFailedError(EscrowGatewayError):
    """Mined with ``status == 0`` and no decodable custom error (e.g. out of gas)."""


class EscrowTransientError(EscrowGatewayError):
    """The node could not be reached or answered with a transient error: retry later."""

    retryable = True

    def __init__(self, message: str, *, outcome_unknown: bool, tx_hash: str | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash)
        self.outcome_unknown = outcome_unknown


class EscrowTxTimeoutError(EscrowTransientError):
    """The transaction was broadcast but no (confirmed) receipt came in time."""

    def __init__(self, message: str, *, tx_hash: str) -> None:
        super().__init__(message, outcome_unknown=True, tx_hash=tx_hash)


_CONFIG_ERRORS: Final = frozenset({"NotOperator", "NotAuthorized", "NotOwner", "Reentrancy"})
_BAD_REQUEST_ERRORS: Final = frozenset(
    {"ZeroAmount", "ZeroAddress", "InvalidDeadline", "DeadlineNotPassed", "NothingToWithdraw"}
)


# --------------------------------------------------------------------------------------------
# revert decoding
# --------------------------------------------------------------------------------------------


@functools.cache
def _error_table() -> Mapping[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    table: dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    for item in load_artifact()["abi"]:
        if item.get("type") != "error":
            continue
        types = tuple(str(i["type"]) for i in item.get("inputs", []))
        names = tuple(str(i.get("name") or f"arg{n}") for n, i in enumerate(item["inputs"]))
        signature = f"{item['name']}({','.join(types)})"
        table[keccak(text=signature)[:4]] = (str(item["name"]), types, names)
    return table


def error_selectors() -> dict[str, str]:
    """``{"AlreadyExists": "0x129bcbc4", ...}`` computed from the artifact's ABI."""
    return {name: _hex(sel) for sel, (name, _, _) in _error_table().items()}


_BYTES_REPR_RE: Final = re.compile(r"""(b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")\s*$""")


def _candidate_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        if value.startswith("0x") and len(value) >= 10:
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                return None
        # eth-tester's eth_call: "execution reverted: b'\\x17+>\\r...'" (a bytes repr)
        match = _BYTES_REPR_RE.search(value)
        if match is not None:
            try:
                literal = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                return None
            return literal if isinstance(literal, bytes) else None
    return None


def _decode_data(data: bytes) -> DecodedRevert | None:
    entry = _error_table().get(data[:4])
    if entry is None:
        return None
    name, types, names = entry
    try:
        values = eth_abi.decode(list(types), data[4:]) if types else ()
    except Exception:  # malformed payload: the selector alone is not trustworthy enough
        return None
    args = {n: (_hex(v) if isinstance(v, bytes) else v) for n, v in zip(names, values, strict=True)}
    return DecodedRevert(name=name, selector=_hex(data[:4]), args=args)


def decode_revert(error: BaseException | bytes | str) -> DecodedRevert | None:
    """Find and decode a ``PactEscrow`` custom error in an exception (chain) or raw data."""
    if not isinstance(error, BaseException):
        raw = _candidate_bytes(error)
        return _decode_data(raw) if raw else None
    stack: list[Any] = [error]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, Mapping):
            stack.extend(item.values())
            continue
        if isinstance(item, (list, tuple)):
            stack.extend(item)
            continue
        raw = _candidate_bytes(item)
        if raw is not None:
            decoded = _decode_data(raw)
            if decoded is not None:
                return decoded
            continue
        if isinstance(item, BaseException):
            stack.append(getattr(item, "data", None))
            stack.extend(item.args)
            stack.append(item.__cause__)
            stack.append(item.__context__)
    return None


# --------------------------------------------------------------------------------------------
# transaction sending
# --------------------------------------------------------------------------------------------


class _CallbackFailed(Exception):
    """``on_submitted`` raised: nothing was broadcast; re-raised to the caller unchanged."""


class _Reverted(Exception):
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


class _TxSender:
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
                    raise _Reverted(revert, None, str(exc)) from exc
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
        """Sign, broadcast, wait for a confirmed receipt. Raises ``_Reverted`` on a revert."""
        try:
            chain_id = await self.chain_id()
            async with self._nonce_lock, self._nonce_guard.hold(chain_id, self.address):
                tx_hash = await self._sign_and_broadcast(fn, value, chain_id, on_submitted)
        except (_Reverted, EscrowGatewayError):
            raise
        except _CallbackFailed as exc:
            raise cast(BaseException, exc.__cause__) from None
        except Exception as exc:
            raise self._translate(exc, tx_hash=None, broadcast=False) from exc
        receipt = await self._wait_confirmed(tx_hash)
        if int(receipt["status"]) == 0:
            revert = await self._replay_revert(fn, value, receipt)
            raise _Reverted(revert, tx_hash, f"transaction {tx_hash} reverted")
        return receipt

    async def _sign_and_broadcast(
        self, fn: Any, value: int, chain_id: int, on_submitted: OnSubmitted | None
    ) -> str:
        for attempt in (0, 1):
            nonce = await self._allocate_nonce()
            tx = await self._build(fn, value, nonce, chain_id)
            signed = self.account.sign_transaction(tx)
            tx_hash = _hex(bytes(signed.hash))
            if on_submitted is not None:
                try:
                    await on_submitted(tx_hash)
                except Exception as exc:
                    self._next_nonce = None
                    raise _CallbackFailed() from exc
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
                if revert is not None:  # nodes that execute on submission (ganache's default)
                    raise _Reverted(revert, None, message) from exc
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
) -> ChecksumAddress:
    """Deploy ``PactEscrow`` from ``deployer`` (the owner) and authorise ``operators``."""
    artifact = load_artifact()
    sender = _TxSender(
        w3,
        deployer,
        confirmations=confirmations,
        receipt_timeout_s=receipt_timeout_s,
        poll_interval_s=poll_interval_s,
    )
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    try:
        receipt = await sender.send(factory.constructor())
    except _Reverted as exc:
        raise EscrowTxFailedError(f"deployment reverted: {exc}", tx_hash=exc.tx_hash) from exc
    address = to_checksum_address(receipt["contractAddress"])
    for operator in operators:
        await add_operator(w3, deployer, address, operator, _sender=sender)
    return address


async def add_operator(
    w3: AsyncWeb3[Any],
    owner: LocalAccount,
    contract_address: str,
    operator: str,
    *,
    _sender: _TxSender | None = None,
) -> None:
    """``addOperator(operator)`` signed by the contract owner (idempotent on chain)."""
    sender = _sender or _TxSender(w3, owner, poll_interval_s=0.1)
    contract = w3.eth.contract(
        address=to_checksum_address(contract_address), abi=load_artifact()["abi"]
    )
    try:
        await sender.send(contract.functions.addOperator(to_checksum_address(operator)))
    except _Reverted as exc:
        if exc.revert is not None and exc.revert.name == "NotOwner":
            raise EscrowConfigurationError(
                f"{owner.address} is not the owner of {contract_address}",
                revert=exc.revert,
                tx_hash=exc.tx_hash,
            ) from exc
        raise EscrowTxFailedError(f"addOperator failed: {exc}", tx_hash=exc.tx_hash) from exc


# --------------------------------------------------------------------------------------------
# the gateway
# --------------------------------------------------------------------------------------------

_ACTION_TARGET: Final = {
    "release": EscrowStatus.RELEASED,
    "refund": EscrowStatus.REFUNDED,
    "slash": EscrowStatus.SLASHED,
}
_ESCROW_EVENTS: Final = ("Locked", "BondPosted", "Released", "Refunded", "Slashed")
_EXTRA_EVENTS: Final = ("PaymentDeferred",)


class EscrowGateway:
    """``PactEscrow`` operations signed by the settlement operator's key."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        contract_address: str,
        operator_account: LocalAccount,
        confirmations: int = 1,
        receipt_timeout_s: float = 120,
        *,
        confirmation_timeout_s: float | None = None,
        poll_interval_s: float = 0.5,
        gas_limit: int | None = None,
        gas_margin_pct: int = 25,
        max_priority_fee_wei: int | None = None,
        fee_mode: Literal["auto", "eip1559", "legacy"] = "auto",
        expected_chain_id: int | None = None,
        log_chunk_blocks: int = 10_000,
        nonce_guard: NonceGuard | None = None,
    ) -> None:
        self.w3 = w3
        self.address = to_checksum_address(contract_address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self.log_chunk_blocks = log_chunk_blocks
        self._sender = _TxSender(
            w3,
            operator_account,
            confirmations=confirmations,
            receipt_timeout_s=receipt_timeout_s,
            confirmation_timeout_s=confirmation_timeout_s,
            poll_interval_s=poll_interval_s,
            gas_limit=gas_limit,
            gas_margin_pct=gas_margin_pct,
            max_priority_fee_wei=max_priority_fee_wei,
            fee_mode=fee_mode,
            expected_chain_id=expected_chain_id,
            nonce_guard=nonce_guard,
        )

    @property
    def operator(self) -> ChecksumAddress:
        return self._sender.address

    # -- ids -------------------------------------------------------------------------------

    @staticmethod
    def intent_id_to_bytes32(intent_id: str) -> bytes:
        return intent_id_to_bytes32(intent_id)

    @staticmethod
    def escrow_id(intent_id: str | bytes, buyer: str, seller: str) -> str:
        """0x-hex escrow id; ``intent_id`` is our string id (hashed) or the raw 32 bytes."""
        return _hex(escrow_id(_intent_bytes(intent_id), buyer, seller))

    # -- actions ---------------------------------------------------------------------------

    async def lock_for(
        self,
        intent_id: str | bytes,
        buyer: str,
        seller: str,
        beneficiary: str,
        deadline_s: int,
        amount_wei: int,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        """Operator custody lock: escrow ``amount_wei`` for ``buyer`` -> ``seller``."""
        if isinstance(amount_wei, bool) or not isinstance(amount_wei, int) or amount_wei <= 0:
            raise ValueError(f"amount_wei must be a positive int, got {amount_wei!r}")
        if isinstance(deadline_s, bool) or not isinstance(deadline_s, int):
            raise ValueError("deadline_s must be an int (unix seconds)")
        if not 0 < deadline_s <= MAX_UINT64:
            raise ValueError("deadline_s must fit in uint64")
        intent_raw = _intent_bytes(intent_id)
        buyer_c, seller_c = to_checksum_address(buyer), to_checksum_address(seller)
        beneficiary_c = to_checksum_address(beneficiary)
        eid = _hex(escrow_id(intent_raw, buyer_c, seller_c))
        fn = self.contract.functions.lockFor(
            intent_raw, buyer_c, seller_c, beneficiary_c, deadline_s
        )
        try:
            receipt = await self._sender.send(fn, value=amount_wei, on_submitted=on_submitted)
        except _Reverted as exc:
            if exc.revert is not None and exc.revert.name == "AlreadyExists":
                state = await self.get_escrow(eid)
                mine = (
                    state.intent_id == _hex(intent_raw)
                    and state.buyer == buyer_c
                    and state.seller == seller_c
                    and state.beneficiary == beneficiary_c
                    and state.amount_wei == amount_wei
                    and state.delivery_deadline == deadline_s
                )
                if mine:
                    return EscrowTxResult("lock", eid, exc.tx_hash, None, None, True, state)
                raise EscrowConflictError(
                    f"escrow {eid} already exists with different terms", state=state
                ) from exc
            raise self._revert_error("lock", eid, exc) from exc
        return await self._result("lock", eid, receipt)

    async def post_bond(
        self,
        escrow_id_hex: str | bytes,
        amount_wei: int,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        """Operator adds ``amount_wei`` to the seller bond (not idempotent: adds each time)."""
        if isinstance(amount_wei, bool) or not isinstance(amount_wei, int) or amount_wei <= 0:
            raise ValueError(f"amount_wei must be a positive int, got {amount_wei!r}")
        raw = _b32(escrow_id_hex, "escrow id")
        fn = self.contract.functions.postBond(raw)
        try:
            receipt = await self._sender.send(fn, value=amount_wei, on_submitted=on_submitted)
        except _Reverted as exc:
            if exc.revert is not None and exc.revert.name == "NotLocked":
                await self._not_locked(raw, "post_bond", None, exc)
            raise self._revert_error("post_bond", _hex(raw), exc) from exc
        return await self._result("post_bond", _hex(raw), receipt)

    async def release(
        self, escrow_id_hex: str | bytes, *, on_submitted: OnSubmitted | None = None
    ) -> EscrowTxResult:
        """Seller gets amount + bond. Converges if already released."""
        return await self._finish("release", escrow_id_hex, on_submitted)

    async def refund(
        self, escrow_id_hex: str | bytes, *, on_submitted: OnSubmitted | None = None
    ) -> EscrowTxResult:
        """Buyer gets amount back, seller its bond. Converges if already refunded."""
        return await self._finish("refund", escrow_id_hex, on_submitted)

    async def slash(
        self, escrow_id_hex: str | bytes, *, on_submitted: OnSubmitted | None = None
    ) -> EscrowTxResult:
        """Buyer gets amount back, the beneficiary fixed at lock time gets the bond."""
        return await self._finish("slash", escrow_id_hex, on_submitted)

    # -- reads -----------------------------------------------------------------------------

    async def get_escrow(
        self, escrow_id_hex: str | bytes, *, block_identifier: int | str = "latest"
    ) -> EscrowState:
        raw = _b32(escrow_id_hex, "escrow id")
        try:
            values = await self.contract.functions.getEscrow(raw).call(
                block_identifier=cast(Any, block_identifier)
            )
        except Exception as exc:
            raise self._sender._translate(exc, tx_hash=None, broadcast=False) from exc
        intent, buyer, seller, beneficiary, amount, bond, deadline, status = values
        return EscrowState(
            escrow_id=_hex(raw),
            intent_id=_hex(bytes(intent)),
            buyer=to_checksum_address(buyer),
            seller=to_checksum_address(seller),
            beneficiary=to_checksum_address(beneficiary),
            amount_wei=int(amount),
            bond_wei=int(bond),
            delivery_deadline=int(deadline),
            status=EscrowStatus(int(status)),
        )

    async def is_operator(self, address: str | None = None) -> bool:
        target = to_checksum_address(address or self.operator)
        return bool(await self.contract.functions.isOperator(target).call())

    async def transaction_status(
        self, tx_hash: str
    ) -> Literal["unknown", "pending", "succeeded", "failed"]:
        """What the node knows of a transaction we broadcast (hash from ``on_submitted``).

        ``unknown``: the node never saw it or dropped it, so it can be re-sent; ``pending``:
        in the mempool, wait; ``succeeded``/``failed``: mined with status 1/0 (confirmations
        not counted here).
        """
        try:
            receipt = await self.w3.eth.get_transaction_receipt(cast(Any, tx_hash))
        except TransactionNotFound:
            receipt = None
        if receipt is not None and receipt.get("blockNumber") is not None:
            return "succeeded" if int(receipt["status"]) == 1 else "failed"
        try:
            await self.w3.eth.get_transaction(cast(Any, tx_hash))
        except TransactionNotFound:
            return "unknown"
        return "pending"

    async def pending_transaction_count(self) -> int:
        """Operator transactions broadcast but not yet mined (``pending`` - ``latest`` nonce).

        Relies on the node counting its mempool in the ``pending`` nonce (geth, erigon,
        anvil do; eth-tester does not): prefer :meth:`transaction_status` with a recorded hash.
        """
        pending = await self.w3.eth.get_transaction_count(self.operator, "pending")
        latest = await self.w3.eth.get_transaction_count(self.operator, "latest")
        return max(0, int(pending) - int(latest))

    async def find_events(
        self,
        escrow_id_hex: str | bytes,
        *,
        from_block: int = 0,
        to_block: int | None = None,
    ) -> list[EscrowEvent]:
        """This escrow's logs in chain order (queried in ``log_chunk_blocks`` windows)."""
        raw = _b32(escrow_id_hex, "escrow id")
        names = (*_ESCROW_EVENTS, *_EXTRA_EVENTS)
        topic_to_name = {_event_topic(self.contract, n): n for n in names}
        last = int(await self.w3.eth.block_number) if to_block is None else to_block
        events: list[EscrowEvent] = []
        start = from_block
        while start <= last:
            end = min(last, start + self.log_chunk_blocks - 1)
            logs = await self.w3.eth.get_logs(
                cast(
                    Any,
                    {
                        "address": self.address,
                        "fromBlock": start,
                        "toBlock": end,
                        "topics": [list(topic_to_name), _hex(raw)],
                    },
                )
            )
            for log in logs:
                name = topic_to_name.get(_hex(bytes(log["topics"][0])))
                if name is None:
                    continue
                decoded = getattr(self.contract.events, name)().process_log(log)
                args = {
                    k: (_hex(v) if isinstance(v, bytes) else v) for k, v in decoded["args"].items()
                }
                events.append(
                    EscrowEvent(
                        name=name,
                        escrow_id=_hex(raw),
                        block_number=int(log["blockNumber"]),
                        block_hash=_hex(bytes(log["blockHash"])),
                        tx_hash=_hex(bytes(log["transactionHash"])),
                        log_index=int(log["logIndex"]),
                        args=args,
                    )
                )
            start = end + 1
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    # -- internals -------------------------------------------------------------------------

    async def _finish(
        self, action: str, escrow_id_hex: str | bytes, on_submitted: OnSubmitted | None
    ) -> EscrowTxResult:
        raw = _b32(escrow_id_hex, "escrow id")
        fn = getattr(self.contract.functions, action)(raw)
        try:
            receipt = await self._sender.send(fn, on_submitted=on_submitted)
        except _Reverted as exc:
            if exc.revert is not None and exc.revert.name == "NotLocked":
                return await self._not_locked(raw, action, _ACTION_TARGET[action], exc)
            raise self._revert_error(action, _hex(raw), exc) from exc
        return await self._result(action, _hex(raw), receipt)

    async def _not_locked(
        self, raw: bytes, action: str, target: EscrowStatus | None, exc: _Reverted
    ) -> EscrowTxResult:
        state = await self.get_escrow(raw)
        if target is not None and state.status is target:
            return EscrowTxResult(action, _hex(raw), exc.tx_hash, None, None, True, state)
        if state.status is EscrowStatus.NONE:
            raise EscrowNotFoundError(
                f"cannot {action}: escrow {_hex(raw)} was never locked", tx_hash=exc.tx_hash
            ) from exc
        raise EscrowConflictError(
            f"cannot {action}: escrow {_hex(raw)} is already {state.status.name}",
            state=state,
            tx_hash=exc.tx_hash,
        ) from exc

    def _revert_error(self, action: str, eid: str, exc: _Reverted) -> EscrowGatewayError:
        revert = exc.revert
        if revert is None:
            return EscrowTxFailedError(
                f"{action} on escrow {eid} reverted without a known error: {exc}",
                tx_hash=exc.tx_hash,
            )
        message = f"{action} on escrow {eid} reverted with {revert.name}{dict(revert.args)}"
        if revert.name in _CONFIG_ERRORS:
            return EscrowConfigurationError(message, revert=revert, tx_hash=exc.tx_hash)
        if revert.name in _BAD_REQUEST_ERRORS:
            return EscrowBadRequestError(message, revert=revert, tx_hash=exc.tx_hash)
        if revert.name == "TransferFailed":
            return EscrowTransferFailedError(message, revert=revert, tx_hash=exc.tx_hash)
        return EscrowRevertError(message, revert=revert, tx_hash=exc.tx_hash)

    async def _result(self, action: str, eid: str, receipt: Mapping[str, Any]) -> EscrowTxResult:
        state = await self.get_escrow(eid, block_identifier=int(receipt["blockNumber"]))
        return EscrowTxResult(
            action=action,
            escrow_id=eid,
            tx_hash=_hex(bytes(receipt["transactionHash"])),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            already_done=False,
            state=state,
        )


def _intent_bytes(intent_id: str | bytes) -> bytes:
    """A ``str`` is always one of our intent ids (hashed); ``bytes`` are the raw bytes32."""
    if isinstance(intent_id, str):
        return intent_id_to_bytes32(intent_id)
    return _b32(intent_id, "intent id")


def _event_topic(contract: Any, name: str) -> str:
    for item in contract.abi:
        if item.get("type") == "event" and item.get("name") == name:
            types = ",".join(str(i["type"]) for i in item["inputs"])
            return _hex(keccak(text=f"{name}({types})"))
    raise KeyError(name)  # pragma: no cover
