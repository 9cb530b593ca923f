"""The hash_reveal commitment, exactly as the reference SDK computes it.

``commit_hash_hex = sha256(utf8(payload_b64 + nonce_b64))`` in lowercase hex: the hash of the
two base64 *texts* concatenated, not of the decoded bytes (reference
``packages/sdk/src/exchange/commit.ts``). A REVEAL proves a COMMIT when the commitment
recomputed from the REVEAL's two strings equals ``commit_hash_hex``, compared ignoring hex
case. Everything in this project that makes or checks a commitment (provider, settlement,
buyer client, ``pact verify-transcript``) goes through these two functions.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["commit_hash_hex", "reveal_matches"]


def commit_hash_hex(payload_b64: str, nonce_b64: str) -> str:
    """The commitment to a payload and nonce, given as the base64 strings a REVEAL carries."""
    return hashlib.sha256((payload_b64 + nonce_b64).encode("utf-8")).hexdigest()


def reveal_matches(commitment_hex: str, payload_b64: str, nonce_b64: str) -> bool:
    """True when the REVEAL's strings hash to ``commitment_hex`` (hex case ignored)."""
    expected = commitment_hex.lower().encode("ascii", "replace")
    return hmac.compare_digest(commit_hash_hex(payload_b64, nonce_b64).encode("ascii"), expected)
