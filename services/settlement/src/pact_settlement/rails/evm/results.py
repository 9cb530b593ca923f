"""What the escrow gateway answers: escrow states, transaction results, events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_typing import ChecksumAddress

__all__ = [
    "DecodedRevert",
    "EscrowEvent",
    "EscrowState",
    "EscrowStatus",
    "EscrowTxResult",
    "PayoutRecord",
    "WithdrawalResult",
]

# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


class EscrowStatus(IntEnum):
    NONE = 0
    LOCKED = 1
    RELEASED = 2
    REFUNDED = 3
    SLASHED = 4
    PARTIALLY_RELEASED = 5  # releasePartial: the seller got part, the buyer the rest

    @property
    def is_terminal(self) -> bool:
        return self is not EscrowStatus.NONE and self is not EscrowStatus.LOCKED


@dataclass(frozen=True, slots=True)
class EscrowState:
    """``getEscrow(escrowId)``: all zero with status ``NONE`` if never locked.

    ``amount_wei``/``bond_wei`` are in the escrow's smallest unit: wei on ``PactEscrow``, the
    token's own base unit (USDC: 10**-6) on ``PactTokenEscrow``, whose escrows also name their
    ``token`` (``None`` on the native escrow).
    """

    escrow_id: str
    intent_id: str
    buyer: ChecksumAddress
    seller: ChecksumAddress
    beneficiary: ChecksumAddress
    amount_wei: int
    bond_wei: int
    delivery_deadline: int
    status: EscrowStatus
    token: ChecksumAddress | None = None

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
class WithdrawalResult:
    """``withdrawFor(payee)``: ``amount`` paid to ``payee`` (0 and no transaction when nothing
    was pending, so a repeated payout is a no-op)."""

    payee: ChecksumAddress
    amount: int
    tx_hash: str | None
    token: ChecksumAddress | None = None


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    """``payOut(payoutId, …)`` as the escrow recorded it (``payouts(payoutId)``): paid
    ``amount`` (the escrow's smallest unit) to ``payee``; ``tx_hash`` of the paying
    transaction when known. ``already_done``: the chain had it before this call (a replay)."""

    payout_id: str
    payee: ChecksumAddress
    amount: int
    token: ChecksumAddress | None
    tx_hash: str | None
    already_done: bool = False


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
