"""What the enabled rails are and what they accept (``GET /v1/rails``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pact_settlement.config import SettlementSettings
from pact_settlement.rails.registry import available_rails
from pact_settlement.rails.schemas import RailInfo, RailList
from pact_settlement.rails.stripe.rail import describe_stripe

__all__ = ["describe_ledger", "list_rails"]


def describe_ledger(_: SettlementSettings) -> dict[str, Any]:
    return {
        "transactional": True,
        "currency": "ledger balance",
        "unit": "1 price unit (the agent's deposited balance)",
        "minimum_amount": "0.000000000000000001",
        "amount_quantum": "0.000000000000000001",
        "rounding": "none: NUMERIC(38, 18), exact (else AMOUNT_NOT_IN_RAIL_UNITS)",
        "supports_bond": True,
    }


def _describe_evm(settings: SettlementSettings) -> dict[str, Any]:
    # The rail's module imports web3: load it only when the evm rail is enabled.
    from pact_settlement.rails.evm.rail import describe_evm

    return describe_evm(settings.evm)


def _describe_evm_erc20(settings: SettlementSettings) -> dict[str, Any]:
    from pact_settlement.rails.evm.token_rail import describe_evm_erc20

    return describe_evm_erc20(settings.evm)


DESCRIBERS: Final[dict[str, Callable[[SettlementSettings], dict[str, Any]]]] = {
    "ledger": describe_ledger,
    "stripe": lambda settings: describe_stripe(settings.stripe),
    "evm": _describe_evm,
    "evm-erc20": _describe_evm_erc20,
}


#: The asset each rail settles in (``Rail.asset``), read from its settings without building it.
_ASSETS: Final[dict[str, Callable[[SettlementSettings], str]]] = {
    "ledger": lambda settings: settings.ledger.asset,
    "stripe": lambda settings: settings.stripe.currency.upper(),
    "evm": lambda settings: settings.evm.native_symbol,
    "evm-erc20": lambda settings: settings.evm.token_symbol,
}


def list_rails(settings: SettlementSettings) -> RailList:
    rails = []
    for name in available_rails(settings):
        describe = DESCRIBERS.get(name)
        details = (
            describe(settings)
            if describe
            else {
                "transactional": False,
                "currency": "unknown",
                "unit": "unknown",
                "minimum_amount": "0",
                "rounding": "unknown",
                "supports_bond": False,
            }
        )
        rails.append(
            RailInfo(
                name=name,
                default=name == settings.default_rail,
                asset=_ASSETS[name](settings) if name in _ASSETS else None,
                **details,
            )
        )
    return RailList(
        default_rail=settings.default_rail,
        require_seller_bond=settings.require_seller_bond,
        rails=rails,
    )
