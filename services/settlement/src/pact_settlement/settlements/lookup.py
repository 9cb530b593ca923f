"""Which settlement a URL names: ``/v1/settlements/{ref}`` takes a settlement id or an intent id.

A settlement id (``st_`` + 26 base32 characters, from :func:`pact_settlement.kit.ids.new_id`)
names exactly one settlement. An intent id is unique per buyer only, so it may name several;
the caller narrows it by party (the buyer who signed a challenge, the seller who signed a
COMMIT, or ``?buyer=``), and a reference that still names more than one is refused with 409
``AMBIGUOUS_INTENT_ID`` listing the settlement ids to use instead.
"""

from __future__ import annotations

import re

from pact_settlement.kit.errors import ConflictError, NotFoundError, ProblemCode
from pact_settlement.kit.ids import SETTLEMENT_ID_PATTERN
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.repository import SettlementRepository

__all__ = ["find_settlement"]

_SETTLEMENT_ID = re.compile(SETTLEMENT_ID_PATTERN)


async def find_settlement(
    repo: SettlementRepository,
    ref: str,
    *,
    buyer: str | None = None,
    seller: str | None = None,
    for_update: bool = False,
) -> Settlement:
    """The one settlement ``ref`` names (row-locked with ``for_update``), or a 404 / 409.

    ``buyer`` / ``seller`` only narrow an intent id that several settlements share: a
    reference naming exactly one settlement is returned whoever asks, so the caller's own
    signer check answers a wrong party with 403, not a misleading 404.
    """
    settlement = await repo.get_by_id(ref) if _SETTLEMENT_ID.fullmatch(ref) else None
    if settlement is None:
        # An intent id may be shaped like a settlement id (the alphabets overlap): a
        # reference naming an existing settlement id is that settlement, anything else an
        # intent id.
        matches = await repo.find_by_intent(ref)
        if len(matches) > 1 and (buyer is not None or seller is not None):
            matches = await repo.find_by_intent(ref, buyer=buyer, seller=seller)
        if len(matches) > 1:
            raise ConflictError(
                f"intent_id {ref!r} names settlements of more than one buyer; use the "
                "settlement id instead",
                code=ProblemCode.AMBIGUOUS_INTENT_ID,
                extra={"settlement_ids": [s.id for s in matches]},
            )
        settlement = matches[0] if matches else None
    if settlement is None:
        raise NotFoundError(f"no settlement {ref!r}")
    if for_update:
        locked = await repo.get_by_id(settlement.id, for_update=True)
        assert locked is not None  # settlements are never deleted
        return locked
    return settlement
