"""A buyer-funded lock at create: the buyer's EIP-2612 permit handed to the rail that takes it
(``evm-erc20``), checked and bound in the recording transaction, before anything is committed
or sent; any refusal is a 422 ``PERMIT_INVALID`` and the request leaves nothing behind."""

from __future__ import annotations

from pact_settlement.kit.errors import ProblemCode, UnprocessableError
from pact_settlement.rails.base import Rail, RailRefusedError, RailSettlement
from pact_settlement.rails.evm.permit import Erc20Permit, PermitFundedRail

__all__ = ["fund_with_permit"]


async def fund_with_permit(rail: Rail, settlement: RailSettlement, permit: Erc20Permit) -> None:
    if not isinstance(rail, PermitFundedRail):
        raise UnprocessableError(
            f"rail {rail.name!r} takes no permit: only an evm-erc20 lock can be funded by the "
            "buyer's EIP-2612 permit",
            code=ProblemCode.PERMIT_INVALID,
        )
    try:
        await rail.fund_with_permit(settlement, permit)
    except RailRefusedError as exc:
        raise UnprocessableError(exc.detail, code=exc.code) from exc
