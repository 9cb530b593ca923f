"""What the escrow gateway answers: escrow states, transaction results, events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_typing import ChecksumAddress

__all__ = ["DecodedRevert", "EscrowEvent", "EscrowState", "EscrowStatus", "EscrowTxResult"]

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
