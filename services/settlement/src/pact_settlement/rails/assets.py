"""Asset codes: which money an account, a journal leg, a settlement or a payout holds.

An asset is named by one canonical code: 2-16 characters of ``A-Z 0-9``, the first a letter
(``USD``, ``EUR``, ``ETH``, ``USDC``). A rail names the asset it settles in (``Rail.asset``): the
ledger rail its ``LEDGER_ASSET`` setting, Stripe its ``STRIPE_CURRENCY`` upper-cased, the EVM
escrow its ``EVM_NATIVE_SYMBOL``. The ledger keeps one account per (owner, asset), and a journal
transaction's legs sum to zero per asset, so one asset's money never moves into another's
account (checked in code and by the database).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ASSET_PATTERN", "AssetCodeError", "check_asset"]

ASSET_PATTERN: Final = r"^[A-Z][A-Z0-9]{1,15}$"
_ASSET_RE: Final = re.compile(ASSET_PATTERN)


class AssetCodeError(ValueError):
    """Not a canonical asset code."""


def check_asset(value: object) -> str:
    """``value`` when it is a canonical asset code, else :class:`AssetCodeError` (lower case is
    refused, not folded: one asset has one name)."""
    if not isinstance(value, str) or _ASSET_RE.fullmatch(value) is None:
        shown = repr(value)[:40]
        raise AssetCodeError(
            f"asset must be 2-16 characters of A-Z and 0-9 starting with a letter "
            f"(USD, EUR, ETH, USDC): {shown}"
        )
    return value
