"""The ERC-20 escrow rail (``evm-erc20``): :class:`~pact_settlement.rails.evm.rail.EvmEscrowRail`
over ``PactTokenEscrow`` for one token (``EVM_TOKEN_ADDRESS``, e.g. USDC).

Everything the native rail does — prepare, custody lock (``lockFor`` from the operator's token
balance), adopting a buyer-made escrow, bonds, release, refund, slash, partial release,
``withdraw_for``, status from the contract — with amounts in the token's own base unit:
``units = amount * 10**EVM_TOKEN_DECIMALS`` exactly. A price that needs a fraction of a base
unit (USDC: below 0.000001, or 0.0000015) is refused at ``prepare`` with
``AMOUNT_NOT_IN_RAIL_UNITS``, never rounded. Agents use their ``evm`` payment profile (the same
address receives both currencies).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.money import decimal_text
from pact_settlement.rails.evm.rail import EvmEscrowRail
from pact_settlement.rails.evm.settings import EvmSettings
from pact_settlement.rails.evm.token_gateway import TokenEscrowGateway

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
