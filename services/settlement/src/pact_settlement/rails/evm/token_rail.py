"""The ERC-20 escrow rail (``evm-erc20``): :class:`~pact_settlement.rails.evm.rail.EvmEscrowRail`
over ``PactTokenEscrow`` for one token (``EVM_TOKEN_ADDRESS``, e.g. USDC).

Everything the native rail does — prepare, custody lock (``lockFor`` from the operator's token
balance), adopting a buyer-made escrow, bonds, release, refund, slash, partial release,
``withdraw_for``, status from the contract — with amounts in the token's own base unit:
``units = amount * 10**EVM_TOKEN_DECIMALS`` exactly. A price that needs a fraction of a base
unit (USDC: below 0.000001, or 0.0000015) is refused at ``prepare`` with
``AMOUNT_NOT_IN_RAIL_UNITS``, never rounded. Agents use their ``evm`` payment profile (the same
address receives both currencies).

A buyer may fund the lock itself with an EIP-2612 permit instead (``permit`` on
``POST /v1/settlements``): :meth:`EvmTokenEscrowRail.fund_with_permit` checks it against the
chain in the recording transaction and binds it, and the lock relays it
(``lockWithPermit``: the amount comes from the buyer's own balance, no approve, no buyer gas).
See :mod:`pact_settlement.rails.evm.permit`.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.errors import RailUnavailableError
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.time import session_now
from pact_settlement.rails.base import RailRefusedError, RailSettlement
from pact_settlement.rails.bindings import RailBindingRepository
from pact_settlement.rails.evm.errors import EscrowGatewayError
from pact_settlement.rails.evm.permit import PERMIT_INVALID, Erc20Permit, permit_args
from pact_settlement.rails.evm.rail import EvmBindingParams, EvmEscrowRail
from pact_settlement.rails.evm.results import EscrowTxResult
from pact_settlement.rails.evm.settings import EvmSettings
from pact_settlement.rails.evm.token_gateway import Permit, TokenEscrowGateway

__all__ = ["EvmTokenEscrowRail", "describe_evm_erc20"]


class EvmTokenEscrowRail(EvmEscrowRail):
    name = "evm-erc20"

    def __init__(
        self, session: AsyncSession, settings: EvmSettings, gateway: TokenEscrowGateway
    ) -> None:
        super().__init__(session, settings, gateway)
        self.token_gateway = gateway

    @property
    def asset(self) -> str:
        """The token's symbol (``EVM_TOKEN_SYMBOL``, e.g. USDC)."""
        return self.settings.token_symbol

    @property
    def units_per_price_unit(self) -> int:
        return int(10**self.settings.token_decimals)

    @property
    def unit_name(self) -> str:
        return f"base units of {self.settings.token_symbol}"

    @property
    def token(self) -> str | None:
        return self.token_gateway.token_address

    # -- a buyer-funded lock: the buyer's EIP-2612 permit ----------------------------------

    async def fund_with_permit(self, settlement: RailSettlement, permit: Erc20Permit) -> None:
        """Check ``permit`` against the chain and the prepared binding, then bind it: the lock
        relays it (``lockWithPermit``) instead of locking from the operator's custody."""
        repo = RailBindingRepository.from_session(self.session)
        binding = await repo.get_for(settlement.id)
        if binding is None or binding.rail != self.name:  # pragma: no cover - prepare made it
            raise RailRefusedError(PERMIT_INVALID, "the settlement was not prepared on evm-erc20")
        p = EvmBindingParams.model_validate(binding.params)
        owner = to_checksum_address(permit.owner)
        value = int(permit.value)
        if owner != p.buyer:
            raise RailRefusedError(
                PERMIT_INVALID,
                f"the permit's owner {owner} is not the buyer's evm address {p.buyer}: the "
                "escrow pulls the amount from the buyer",
            )
        if value != p.amount_wei:
            relation = "below" if value < p.amount_wei else "above"
            raise RailRefusedError(
                PERMIT_INVALID,
                f"the permit's value {value} is {relation} the amount, {p.amount_wei} base units "
                f"of {self.settings.token_symbol}: it must be exactly the amount (the escrow "
                "relays it as the permit's value)",
            )
        margin = timedelta(seconds=self.settings.receipt_timeout_s)
        earliest = math.ceil((session_now(self.session) + margin).timestamp())
        if permit.deadline < earliest:
            raise RailRefusedError(
                PERMIT_INVALID,
                f"the permit expires at {permit.deadline}, before the lock can be mined (it "
                f"must be valid until at least {earliest}, unix seconds)",
            )
        signed = Permit(**permit_args(permit))
        try:
            signer = await self.token_gateway.permit_signer(owner, value, signed)
            held = await self.token_gateway.token_balance(owner)
        except EscrowGatewayError as exc:
            raise RailUnavailableError(
                f"the chain did not answer the permit's check: {exc}"
            ) from exc
        if signer != owner:
            raise RailRefusedError(
                PERMIT_INVALID,
                f"the permit's signature is not {owner}'s permit for this escrow "
                f"({self.token_gateway.address}), value {value}, its current nonce and this "
                f"token ({self.token_gateway.token_address}) on this chain",
            )
        if held < value:
            raise RailRefusedError(
                PERMIT_INVALID,
                f"the buyer {owner} holds {held} base units of {self.settings.token_symbol}, "
                f"less than the amount {value}",
            )
        binding.params = p.model_copy(update={"permit": permit}).stored()
        await repo.update(binding)

    async def _lock_new(self, s: RailSettlement, p: EvmBindingParams) -> EscrowTxResult:
        if p.permit is None:
            return await super()._lock_new(s, p)
        return await self.token_gateway.lock_with_permit(
            s.intent_id, p.buyer, p.seller, p.beneficiary, p.deadline_s, p.amount_wei,
            Permit(**permit_args(p.permit)),
        )  # fmt: skip


def describe_evm_erc20(settings: EvmSettings) -> dict[str, Any]:
    quantum = decimal_text(Decimal(1).scaleb(-settings.token_decimals))
    return {
        "transactional": False,
        "currency": f"{settings.token_symbol} (ERC-20, {settings.token_decimals} decimals)",
        "unit": f"1 price unit = 1 {settings.token_symbol}",
        "minimum_amount": quantum,
        "amount_quantum": quantum,
        "rounding": "none: amounts needing a fraction of the token's base unit are refused "
        "(AMOUNT_NOT_IN_RAIL_UNITS)",
        "supports_bond": True,
        "confirmations": settings.confirmations,
        "chain_id": settings.chain_id,
        "contract_address": settings.token_escrow_address,
        "token_address": settings.token_address,
        "deadline_grace_s": settings.deadline_grace_s,
        "needs_profile": {"buyer": ["evm_address"], "seller": ["evm_address"]},
    }
