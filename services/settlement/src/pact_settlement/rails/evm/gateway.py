"""Thin async adapter over web3.py for the on-chain escrow rail (``PactEscrow``).

The gateway knows nothing about our database; the EVM :class:`Rail` wraps it.

Why :class:`~web3.AsyncWeb3`: the settlement service is asyncio end to end, and web3's async
API gives real non-blocking JSON-RPC over HTTP (aiohttp) and an in-process async tester
provider, so no thread pool is needed and nonce allocation can be guarded by an
:class:`asyncio.Lock` in the same loop — and, across the processes and replicas that send with
the same operator key, by a :class:`NonceGuard` (the service's is database-backed:
:mod:`pact_settlement.rails.evm.nonces`).

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
dicts from some nodes' ``eth_estimateGas``, raw bytes in the exception chain from eth-tester) and
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

from collections.abc import Mapping
from typing import Any, Final, Literal, Self, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound

from pact_settlement.rails.evm.errors import (
    BAD_REQUEST_ERRORS,
    CONFIG_ERRORS,
    TOKEN_FUNDS_ERRORS,
    EscrowBadRequestError,
    EscrowConfigurationError,
    EscrowConflictError,
    EscrowGatewayError,
    EscrowInsufficientFundsError,
    EscrowNotFoundError,
    EscrowRevertError,
    EscrowTransferFailedError,
    EscrowTxFailedError,
)
from pact_settlement.rails.evm.ids import (
    escrow_id,
    intent_bytes,
    intent_id_to_bytes32,
    load_artifact,
    to_bytes32,
    to_hex,
)
from pact_settlement.rails.evm.results import (
    EscrowEvent,
    EscrowState,
    EscrowStatus,
    EscrowTxResult,
    PayoutRecord,
    WithdrawalResult,
)
from pact_settlement.rails.evm.sender import NonceGuard, OnSubmitted, RevertedError, TxSender

__all__ = ["MAX_UINT64", "EscrowGateway", "positive_amount"]

MAX_UINT64: Final = 2**64 - 1

# --------------------------------------------------------------------------------------------
# the gateway
# --------------------------------------------------------------------------------------------

_ACTION_TARGET: Final = {
    "release": EscrowStatus.RELEASED,
    "refund": EscrowStatus.REFUNDED,
    "slash": EscrowStatus.SLASHED,
}
_ESCROW_EVENTS: Final = (
    "Locked",
    "BondPosted",
    "Released",
    "PartiallyReleased",
    "Refunded",
    "Slashed",
)
_EXTRA_EVENTS: Final = ("PaymentDeferred",)


def positive_amount(value: int, what: str = "amount_wei") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


class EscrowGateway:
    """``PactEscrow`` operations signed by the settlement operator's key."""

    #: The contract's committed artifact (``ids.load_artifact``); the ERC-20 gateway overrides.
    artifact_name: str = "PactEscrow"

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
        self.contract = w3.eth.contract(
            address=self.address, abi=load_artifact(self.artifact_name)["abi"]
        )
        self.log_chunk_blocks = log_chunk_blocks
        self._sender = TxSender(
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

    @classmethod
    def with_sender(cls, sender: TxSender, contract_address: str, **kwargs: Any) -> Self:
        """A gateway over an existing sender (one per operator key, shared by the native and
        the ERC-20 gateway so their transactions share one nonce lock)."""
        gateway = cls(sender.w3, contract_address, sender.account, **kwargs)
        gateway._sender = sender
        return gateway

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
        return to_hex(escrow_id(intent_bytes(intent_id), buyer, seller))

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
        positive_amount(amount_wei)
        _check_deadline(deadline_s)
        intent_raw = intent_bytes(intent_id)
        buyer_c, seller_c = to_checksum_address(buyer), to_checksum_address(seller)
        beneficiary_c = to_checksum_address(beneficiary)
        fn = self.contract.functions.lockFor(
            intent_raw, buyer_c, seller_c, beneficiary_c, deadline_s
        )
        return await self._send_lock(
            fn, intent_raw, buyer_c, seller_c, beneficiary_c, deadline_s, amount_wei,
            value=amount_wei, on_submitted=on_submitted,
        )  # fmt: skip

    async def _send_lock(
        self,
        fn: Any,
        intent_raw: bytes,
        buyer_c: ChecksumAddress,
        seller_c: ChecksumAddress,
        beneficiary_c: ChecksumAddress,
        deadline_s: int,
        amount: int,
        *,
        value: int = 0,
        token: ChecksumAddress | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        """Send a lock; ``AlreadyExists`` with exactly these terms is a success (a replay)."""
        eid = to_hex(escrow_id(intent_raw, buyer_c, seller_c))
        try:
            receipt = await self._sender.send(fn, value=value, on_submitted=on_submitted)
        except RevertedError as exc:
            if exc.revert is not None and exc.revert.name == "AlreadyExists":
                state = await self.get_escrow(eid)
                mine = (
                    state.intent_id == to_hex(intent_raw)
                    and state.buyer == buyer_c
                    and state.seller == seller_c
                    and state.beneficiary == beneficiary_c
                    and state.amount_wei == amount
                    and state.delivery_deadline == deadline_s
                    and state.token == token
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
        positive_amount(amount_wei)
        raw = to_bytes32(escrow_id_hex, "escrow id")
        fn, value = self._bond_call(raw, amount_wei)
        try:
            receipt = await self._sender.send(fn, value=value, on_submitted=on_submitted)
        except RevertedError as exc:
            if exc.revert is not None and exc.revert.name == "NotLocked":
                await self._not_locked(raw, "post_bond", None, exc)
            raise self._revert_error("post_bond", to_hex(raw), exc) from exc
        return await self._result("post_bond", to_hex(raw), receipt)

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

    async def release_partial(
        self,
        escrow_id_hex: str | bytes,
        seller_amount: int,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> EscrowTxResult:
        """Seller gets ``seller_amount`` + bond, the buyer the rest of the amount, in one
        transaction. Converges if already partially released with this same seller amount;
        any other finished state (or another amount) is :class:`EscrowConflictError`."""
        if isinstance(seller_amount, bool) or not isinstance(seller_amount, int):
            raise ValueError(f"seller_amount must be an int, got {seller_amount!r}")
        if seller_amount < 0:
            raise ValueError("seller_amount must not be negative")
        raw = to_bytes32(escrow_id_hex, "escrow id")
        fn = self.contract.functions.releasePartial(raw, seller_amount)
        action = "release_partial"
        try:
            receipt = await self._sender.send(fn, on_submitted=on_submitted)
        except RevertedError as exc:
            if exc.revert is not None and exc.revert.name == "NotLocked":
                state = await self.get_escrow(raw)
                paid = await self.partial_seller_amount(raw)
                if state.status is EscrowStatus.PARTIALLY_RELEASED and paid == seller_amount:
                    return EscrowTxResult(action, to_hex(raw), exc.tx_hash, None, None, True, state)
                await self._not_locked(raw, action, None, exc)
            raise self._revert_error(action, to_hex(raw), exc) from exc
        return await self._result(action, to_hex(raw), receipt)

    async def withdraw_for(
        self, payee: str, *, on_submitted: OnSubmitted | None = None
    ) -> WithdrawalResult:
        """Pay ``payee`` its deferred credit (``withdrawFor``: the money only goes to ``payee``).

        Nothing pending: no transaction, amount 0 (so a retried payout pays nothing twice).
        """
        payee_c = to_checksum_address(payee)
        pending = await self.pending_withdrawal(payee_c)
        if pending == 0:
            return WithdrawalResult(payee_c, 0, None, self._token_address())
        try:
            receipt = await self._sender.send(
                self._withdraw_call(payee_c), on_submitted=on_submitted
            )
        except RevertedError as exc:
            if exc.revert is not None and exc.revert.name == "NothingToWithdraw":
                return WithdrawalResult(payee_c, 0, exc.tx_hash, self._token_address())
            raise self._revert_error("withdraw_for", payee_c, exc) from exc
        return WithdrawalResult(
            payee_c, pending, to_hex(bytes(receipt["transactionHash"])), self._token_address()
        )

    async def pay_out(
        self,
        payout_id: str | bytes,
        payee: str,
        amount: int,
        *,
        on_submitted: OnSubmitted | None = None,
    ) -> PayoutRecord:
        """``payOut``: pay ``payee`` exactly ``amount`` of its deferred credit, as payout
        ``payout_id`` (our id, hashed like an intent id, or the raw 32 bytes).

        Idempotent on the id: the escrow records each payout and refuses a second one
        (``PayoutExists``), which is a success here when the record is exactly this payout
        (``already_done``), and :class:`EscrowConflictError`-like
        :class:`EscrowBadRequestError` otherwise. More than the credit:
        :class:`EscrowBadRequestError` (``InsufficientCredit``), nothing paid."""
        positive_amount(amount, "amount")
        raw = intent_bytes(payout_id)
        payee_c = to_checksum_address(payee)
        try:
            receipt = await self._sender.send(
                self._pay_out_call(raw, payee_c, amount), on_submitted=on_submitted
            )
        except RevertedError as exc:
            if exc.revert is not None and exc.revert.name == "PayoutExists":
                record = await self.payout_record(raw)
                mine = (payee_c, amount, self._token_address())
                if record is not None and (record.payee, record.amount, record.token) == mine:
                    return record
                raise EscrowBadRequestError(
                    f"payout {to_hex(raw)} was already paid with other terms: {record}",
                    revert=exc.revert,
                    tx_hash=exc.tx_hash,
                ) from exc
            raise self._revert_error("pay_out", to_hex(raw), exc) from exc
        return PayoutRecord(
            to_hex(raw),
            payee_c,
            amount,
            self._token_address(),
            to_hex(bytes(receipt["transactionHash"])),
        )

    # -- reads -----------------------------------------------------------------------------

    async def payout_record(self, payout_id: str | bytes) -> PayoutRecord | None:
        """The escrow's record of payout ``payout_id`` (``payouts``), with the hash of the
        transaction that paid it (its ``PaidOut`` log); ``None``: never paid."""
        raw = intent_bytes(payout_id)
        try:
            values = await self.contract.functions.payouts(raw).call()
        except Exception as exc:
            raise self._sender._translate(exc, tx_hash=None, broadcast=False) from exc
        payee, token, amount = self._decode_payout(values)
        if int(payee, 16) == 0:
            return None
        return PayoutRecord(
            to_hex(raw),
            to_checksum_address(payee),
            amount,
            token,
            await self._paid_out_tx(raw),
            already_done=True,
        )

    async def _paid_out_tx(self, raw: bytes) -> str | None:
        """The transaction whose ``PaidOut`` log names payout ``raw`` (indexed topic 1)."""
        topic = _event_topic(self.contract, "PaidOut")
        last = int(await self.w3.eth.block_number)
        end = last
        while end >= 0:  # newest first: a payout being looked up is usually recent
            start = max(0, end - self.log_chunk_blocks + 1)
            logs = await self.w3.eth.get_logs(
                cast(
                    Any,
                    {
                        "address": self.address,
                        "fromBlock": start,
                        "toBlock": end,
                        "topics": [topic, to_hex(raw)],
                    },
                )
            )
            if logs:
                return to_hex(bytes(logs[-1]["transactionHash"]))
            end = start - 1
        return None

    async def pending_withdrawal(self, payee: str) -> int:
        """Deferred credit of ``payee`` (``pendingWithdrawals``), claimable by ``withdraw_for``."""
        return int(
            await self.contract.functions.pendingWithdrawals(to_checksum_address(payee)).call()
        )

    async def partial_seller_amount(self, escrow_id_hex: str | bytes) -> int:
        """What ``releasePartial`` paid the seller (without the bond); 0 before it ran."""
        raw = to_bytes32(escrow_id_hex, "escrow id")
        return int(await self.contract.functions.sellerAmountOf(raw).call())

    async def get_escrow(
        self, escrow_id_hex: str | bytes, *, block_identifier: int | str = "latest"
    ) -> EscrowState:
        raw = to_bytes32(escrow_id_hex, "escrow id")
        try:
            values = await self.contract.functions.getEscrow(raw).call(
                block_identifier=cast(Any, block_identifier)
            )
        except Exception as exc:
            raise self._sender._translate(exc, tx_hash=None, broadcast=False) from exc
        return self._decode_escrow(raw, values)

    # -- what differs between the native and the ERC-20 escrow -----------------------------

    def _decode_escrow(self, raw: bytes, values: Any) -> EscrowState:
        intent, buyer, seller, beneficiary, amount, bond, deadline, status = values
        return EscrowState(
            escrow_id=to_hex(raw),
            intent_id=to_hex(bytes(intent)),
            buyer=to_checksum_address(buyer),
            seller=to_checksum_address(seller),
            beneficiary=to_checksum_address(beneficiary),
            amount_wei=int(amount),
            bond_wei=int(bond),
            delivery_deadline=int(deadline),
            status=EscrowStatus(int(status)),
        )

    def _bond_call(self, raw: bytes, amount: int) -> tuple[Any, int]:
        """The ``postBond`` call and the value it sends."""
        return self.contract.functions.postBond(raw), amount

    def _withdraw_call(self, payee: ChecksumAddress) -> Any:
        return self.contract.functions.withdrawFor(payee)

    def _pay_out_call(self, raw: bytes, payee: ChecksumAddress, amount: int) -> Any:
        return self.contract.functions.payOut(raw, payee, amount)

    def _decode_payout(self, values: Any) -> tuple[str, ChecksumAddress | None, int]:
        """``payouts(id)`` as (payee, token, amount)."""
        payee, amount = values
        return str(payee), None, int(amount)

    def _token_address(self) -> ChecksumAddress | None:
        return None

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
        raw = to_bytes32(escrow_id_hex, "escrow id")
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
                        "topics": [list(topic_to_name), to_hex(raw)],
                    },
                )
            )
            for log in logs:
                name = topic_to_name.get(to_hex(bytes(log["topics"][0])))
                if name is None:
                    continue
                decoded = getattr(self.contract.events, name)().process_log(log)
                args = {
                    k: (to_hex(v) if isinstance(v, bytes) else v)
                    for k, v in decoded["args"].items()
                }
                events.append(
                    EscrowEvent(
                        name=name,
                        escrow_id=to_hex(raw),
                        block_number=int(log["blockNumber"]),
                        block_hash=to_hex(bytes(log["blockHash"])),
                        tx_hash=to_hex(bytes(log["transactionHash"])),
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
        raw = to_bytes32(escrow_id_hex, "escrow id")
        fn = getattr(self.contract.functions, action)(raw)
        try:
            receipt = await self._sender.send(fn, on_submitted=on_submitted)
        except RevertedError as exc:
            if exc.revert is not None and exc.revert.name == "NotLocked":
                return await self._not_locked(raw, action, _ACTION_TARGET[action], exc)
            raise self._revert_error(action, to_hex(raw), exc) from exc
        return await self._result(action, to_hex(raw), receipt)

    async def _not_locked(
        self, raw: bytes, action: str, target: EscrowStatus | None, exc: RevertedError
    ) -> EscrowTxResult:
        state = await self.get_escrow(raw)
        if target is not None and state.status is target:
            return EscrowTxResult(action, to_hex(raw), exc.tx_hash, None, None, True, state)
        if state.status is EscrowStatus.NONE:
            raise EscrowNotFoundError(
                f"cannot {action}: escrow {to_hex(raw)} was never locked", tx_hash=exc.tx_hash
            ) from exc
        raise EscrowConflictError(
            f"cannot {action}: escrow {to_hex(raw)} is already {state.status.name}",
            state=state,
            tx_hash=exc.tx_hash,
        ) from exc

    def _revert_error(self, action: str, eid: str, exc: RevertedError) -> EscrowGatewayError:
        revert = exc.revert
        if revert is None:
            return EscrowTxFailedError(
                f"{action} on escrow {eid} reverted without a known error: {exc}",
                tx_hash=exc.tx_hash,
            )
        message = f"{action} on escrow {eid} reverted with {revert.name}{dict(revert.args)}"
        if revert.name in CONFIG_ERRORS:
            return EscrowConfigurationError(message, revert=revert, tx_hash=exc.tx_hash)
        if revert.name in BAD_REQUEST_ERRORS:
            return EscrowBadRequestError(message, revert=revert, tx_hash=exc.tx_hash)
        if revert.name in TOKEN_FUNDS_ERRORS:
            return EscrowInsufficientFundsError(message, tx_hash=exc.tx_hash)
        if revert.name == "TransferFailed":
            return EscrowTransferFailedError(message, revert=revert, tx_hash=exc.tx_hash)
        return EscrowRevertError(message, revert=revert, tx_hash=exc.tx_hash)

    async def _result(self, action: str, eid: str, receipt: Mapping[str, Any]) -> EscrowTxResult:
        state = await self.get_escrow(eid, block_identifier=int(receipt["blockNumber"]))
        return EscrowTxResult(
            action=action,
            escrow_id=eid,
            tx_hash=to_hex(bytes(receipt["transactionHash"])),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            already_done=False,
            state=state,
        )


def _check_deadline(deadline_s: int) -> None:
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, int):
        raise ValueError("deadline_s must be an int (unix seconds)")
    if not 0 < deadline_s <= MAX_UINT64:
        raise ValueError("deadline_s must fit in uint64")


def _event_topic(contract: Any, name: str) -> str:
    for item in contract.abi:
        if item.get("type") == "event" and item.get("name") == name:
            types = ",".join(str(i["type"]) for i in item["inputs"])
            return to_hex(keccak(text=f"{name}({types})"))
    raise KeyError(name)  # pragma: no cover
