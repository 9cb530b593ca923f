"""Decoding ``PactEscrow``'s custom errors from wherever web3 or the node put the revert data."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from eth_abi import abi as eth_abi
from eth_utils.crypto import keccak

from pact_settlement.rails.evm.ids import TOKEN_ESCROW, load_artifact, to_hex
from pact_settlement.rails.evm.results import DecodedRevert

__all__ = ["decode_revert", "error_selectors"]

# --------------------------------------------------------------------------------------------
# revert decoding
# --------------------------------------------------------------------------------------------


#: The standard ERC-20 / EIP-2612 errors (ERC-6093, OpenZeppelin's ``IERC20Errors``) a token
#: reverts with inside ``safeTransferFrom``/``permit``; they bubble up through the escrow.
_TOKEN_ERRORS: Final = [
    {
        "type": "error",
        "name": name,
        "inputs": [{"type": t, "name": n} for t, n in inputs],
    }
    for name, inputs in (
        (
            "ERC20InsufficientBalance",
            (("address", "sender"), ("uint256", "balance"), ("uint256", "needed")),
        ),
        (
            "ERC20InsufficientAllowance",
            (("address", "spender"), ("uint256", "allowance"), ("uint256", "needed")),
        ),
        ("ERC2612ExpiredSignature", (("uint256", "deadline"),)),
        ("ERC2612InvalidSigner", (("address", "signer"), ("address", "owner"))),
    )
]


@functools.cache
def _error_table() -> Mapping[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    table: dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    abi = [*load_artifact()["abi"], *load_artifact(TOKEN_ESCROW)["abi"], *_TOKEN_ERRORS]
    for item in abi:
        if item.get("type") != "error":
            continue
        types = tuple(str(i["type"]) for i in item.get("inputs", []))
        names = tuple(str(i.get("name") or f"arg{n}") for n, i in enumerate(item["inputs"]))
        signature = f"{item['name']}({','.join(types)})"
        table[keccak(text=signature)[:4]] = (str(item["name"]), types, names)
    return table


def error_selectors() -> dict[str, str]:
    """``{"AlreadyExists": "0x129bcbc4", ...}`` computed from the artifact's ABI."""
    return {name: to_hex(sel) for sel, (name, _, _) in _error_table().items()}


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
    args = {
        n: (to_hex(v) if isinstance(v, bytes) else v) for n, v in zip(names, values, strict=True)
    }
    return DecodedRevert(name=name, selector=to_hex(data[:4]), args=args)


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
