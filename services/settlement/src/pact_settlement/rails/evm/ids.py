"""Escrow identity: the contract artifact; intent and escrow ids as ``PactEscrow`` derives them."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from eth_abi import abi as eth_abi
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

__all__ = [
    "ARTIFACT_PATH",
    "TOKEN_ESCROW",
    "escrow_id",
    "intent_bytes",
    "intent_id_to_bytes32",
    "load_artifact",
    "to_bytes32",
    "to_hex",
]

ARTIFACT_DIR: Final = Path(__file__).parents[1] / "evm_artifact"
ARTIFACT_PATH: Final = ARTIFACT_DIR / "PactEscrow.json"
#: The ERC-20 sibling of ``PactEscrow`` (same lifecycle and escrow ids, token given at lock).
TOKEN_ESCROW: Final = "PactTokenEscrow"  # noqa: S105 (a contract name)


@functools.cache
def load_artifact(name: str = "PactEscrow") -> Mapping[str, Any]:
    """A committed build artifact (``abi``, ``bytecode``, ...): ``PactEscrow`` by default,
    ``PactTokenEscrow`` for the ERC-20 escrow (``contracts/compile.mjs`` writes both)."""
    if name not in ("PactEscrow", TOKEN_ESCROW):
        raise ValueError(f"no artifact named {name!r}")
    path = ARTIFACT_DIR / f"{name}.json"
    return cast(Mapping[str, Any], json.loads(path.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------------------------


def to_bytes32(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value.startswith(("0x", "0X")) else value
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{what} must be 32 bytes or 0x-prefixed hex: {value!r}") from None
    else:
        raw = bytes(value)
    if len(raw) != 32:
        raise ValueError(f"{what} must be exactly 32 bytes, got {len(raw)}")
    return raw


def to_hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def intent_id_to_bytes32(intent_id: str) -> bytes:
    """``keccak256`` of the UTF-8 intent id: the contract's ``bytes32 intentId``.

    Hashing (not padding) accepts intent ids of any length and alphabet and still gives a
    fixed, collision-resistant key; the original string is in our database and in the
    ``Locked`` event's escrow id derivation, so nothing is lost.
    """
    if not isinstance(intent_id, str) or not intent_id:
        raise ValueError("intent_id must be a non-empty string")
    return keccak(text=intent_id)


def escrow_id(intent_id_bytes32: bytes | str, buyer: str, seller: str) -> bytes:
    """``keccak256(abi.encode(intentId, buyer, seller))``, the contract's ``escrowIdOf``."""
    encoded = eth_abi.encode(
        ["bytes32", "address", "address"],
        [
            to_bytes32(intent_id_bytes32, "intent id"),
            to_checksum_address(buyer),
            to_checksum_address(seller),
        ],
    )
    return keccak(encoded)


def intent_bytes(intent_id: str | bytes) -> bytes:
    """A ``str`` is always one of our intent ids (hashed); ``bytes`` are the raw bytes32."""
    if isinstance(intent_id, str):
        return intent_id_to_bytes32(intent_id)
    return to_bytes32(intent_id, "intent id")
