"""A buyer's EIP-2612 permit funding an ``evm-erc20`` lock (``PactTokenEscrow.lockWithPermit``).

The buyer signs, off chain, a permit letting the token escrow pull exactly the settlement's
amount from the buyer's own token balance; the settlement request carries it
(``POST /v1/settlements``, ``permit``), and the operator relays it in the lock transaction: the
buyer sends no ``approve`` and pays no gas. The permit is checked against the chain before
anything is recorded, so a permit that could not fund the lock is a 422 ``PERMIT_INVALID``
problem and nothing is locked (docs/decisions.md, decision 18):

- ``owner`` must be the buyer's evm address (the escrow belongs to that address);
- ``value`` must be exactly the amount in the token's base units (``lockWithPermit`` relays it
  as the permit's value);
- ``deadline`` must leave the lock time to be mined (``EVM_RECEIPT_TIMEOUT_S``);
- the signature must recover to ``owner`` over the token's own ``DOMAIN_SEPARATOR()``, this
  escrow as spender and the owner's current ``nonces(owner)``;
- the owner must hold the amount.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit.errors import ProblemCode
from pact_settlement.rails.base import RailSettlement

__all__ = ["PERMIT_INVALID", "Erc20Permit", "PermitFundedRail", "permit_args"]

#: The problem code of a permit that cannot fund the lock (``ProblemCode.PERMIT_INVALID``).
PERMIT_INVALID = ProblemCode.PERMIT_INVALID

_HEX32 = r"^0x[0-9a-fA-F]{64}$"


class Erc20Permit(BaseModel):
    """An EIP-2612 ``permit(owner, spender, value, deadline, v, r, s)`` signed by the buyer,
    with ``spender`` the token escrow (``GET /v1/rails``: ``evm-erc20.contract_address``) and
    ``nonce`` the token's ``nonces(owner)`` when it is signed."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "owner": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "value": "1500000",
                    "deadline": 1764162000,
                    "v": 28,
                    "r": "0x" + "1f" * 32,
                    "s": "0x" + "2e" * 32,
                }
            ]
        },
    )

    owner: str = Field(
        pattern=r"^0x[0-9a-fA-F]{40}$", description="The buyer's evm address (the signer)."
    )
    value: str = Field(
        pattern=r"^[0-9]{1,78}$",
        description="Exactly the settlement's amount in the token's base units (USDC: "
        "amount x 10**6), as a decimal string.",
    )
    deadline: int = Field(ge=0, le=2**64 - 1, description="Unix seconds the permit is valid to.")
    v: int = Field(ge=0, le=255, description="Signature recovery id (27 or 28; 0 or 1 accepted).")
    r: str = Field(pattern=_HEX32, description="Signature r, 0x + 64 hex digits.")
    s: str = Field(pattern=_HEX32, description="Signature s, 0x + 64 hex digits.")


@runtime_checkable
class PermitFundedRail(Protocol):
    """A rail whose lock a buyer can fund with a signed permit (``evm-erc20``)."""

    async def fund_with_permit(self, settlement: RailSettlement, permit: Erc20Permit) -> None:
        """Check ``permit`` against the chain and bind it to the prepared settlement, so the
        lock pulls the amount from the buyer with it; a :class:`RailRefusedError` (code
        ``PERMIT_INVALID``) when it could not fund the lock, nothing bound."""
        ...


def permit_args(permit: Erc20Permit) -> dict[str, Any]:
    """``Permit`` keyword arguments for the gateway."""
    v = permit.v + 27 if permit.v in (0, 1) else permit.v
    return {
        "deadline": permit.deadline,
        "v": v,
        "r": bytes.fromhex(permit.r[2:]),
        "s": bytes.fromhex(permit.s[2:]),
    }
