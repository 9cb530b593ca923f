"""Types of the identifiers routes take from paths, queries and bodies.

Each is the wire contract of ``pact_schema`` (intent ids, base58 public keys) or of this
service (rail names), checked by FastAPI before a route runs: anything else is a 422 problem
document, and never reaches a lock name, a query or a column (see the README, "Errors").
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path
from pact_schema.keys import PublicKeyB58
from pact_schema.text import INTENT_ID_MAX_LENGTH, INTENT_ID_PATTERN, IntentId
from pydantic import StringConstraints

__all__ = [
    "RAIL_NAME_PATTERN",
    "AgentIdPath",
    "IntentIdPath",
    "RailName",
    "RailPath",
    "SettlementRefPath",
]

RAIL_NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,31}$"

RailName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=32, pattern=RAIL_NAME_PATTERN)
]
"""A rail's name: lower-case ASCII letters, digits, ``_`` and ``-``, at most 32 characters."""

IntentIdPath = Annotated[
    IntentId,
    Path(
        description="The negotiation's intent_id: 1-128 characters of [A-Za-z0-9._:-], "
        "starting with a letter or digit"
    ),
]
SettlementRefPath = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=1,
        max_length=INTENT_ID_MAX_LENGTH,
        # Every settlement id is also in the intent id alphabet: one pattern admits both.
        pattern=INTENT_ID_PATTERN,
    ),
    Path(
        description="A settlement id (`st_…`), or the intent id (unique per buyer: when "
        "several buyers used it, add `?buyer=` or use the settlement id)"
    ),
]
AgentIdPath = Annotated[
    PublicKeyB58,
    Path(description="The agent's Ed25519 public key, base58 (32 bytes, canonical text)"),
]
RailPath = Annotated[RailName, Path(description="A rail name, e.g. stripe or evm")]
